//! Publisher backpressure in the broker core: a publisher outrunning an
//! online subscriber is stopped at the packet that half-fills the
//! subscriber's queue, and read again once it drains, so QoS 1 messages are
//! not dropped; without it (the core's default) the queue overflows. A
//! subscriber that does not read is one whose bytes are not reported
//! written: with no output credit to spare, its messages wait in its queue.

use bytes::{Bytes, BytesMut};
use core::time::Duration;
use tern_broker::{Broker, BrokerConfig, BrokerEvent, ConnId, OutputCredit};
use tern_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use tern_session::{Instant, QueueLimits};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;
const QUEUE: usize = 100;
const MESSAGES: u16 = 1000;

fn encode(packet: Packet, out: &mut BytesMut) {
    let version = match &packet {
        Packet::Connect(c) => c.protocol,
        _ => V,
    };
    packet.encode(version, out).unwrap();
}

struct Setup {
    broker: Broker,
    publisher: ConnId,
    subscriber: ConnId,
    /// Every packet the subscriber got, decoded.
    received: Vec<Packet>,
    /// The subscriber does not read: its bytes are not reported written.
    stalled: bool,
    /// Its bytes not reported written.
    held: usize,
}

impl Setup {
    fn new(backpressure: Option<Duration>) -> Self {
        let mut config = BrokerConfig {
            sys_interval: None,
            publisher_backpressure: backpressure,
            // A connection whose bytes are not written gets nothing more.
            output_credit: Some(OutputCredit {
                high_water: 0,
                low_water: 0,
            }),
            ..BrokerConfig::default()
        };
        config.server.queue = QueueLimits {
            max_messages: QUEUE,
            ..QueueLimits::default()
        };
        let mut broker = Broker::new(config, Instant::ZERO);
        let subscriber = connect(&mut broker, "sub");
        let publisher = connect(&mut broker, "pub");
        let mut s = Self {
            broker,
            publisher,
            subscriber,
            received: Vec::new(),
            stalled: false,
            held: 0,
        };
        let mut buf = BytesMut::new();
        subscribe_t(&mut buf);
        s.broker.handle_bytes(Instant::ZERO, s.subscriber, &mut buf);
        s.drain(Instant::ZERO);
        s.received.clear();
        s
    }

    /// The subscriber stops reading.
    fn stall(&mut self) {
        self.stalled = true;
    }

    /// The subscriber reads again: what it was sent is written.
    fn unstall(&mut self) {
        self.stalled = false;
        self.broker
            .handle_written(self.subscriber, std::mem::take(&mut self.held));
    }

    /// Drains transmits (writing them, but the stalled subscriber's, and
    /// recording the subscriber's) and events; returns the connections
    /// the core resumed reading.
    fn drain(&mut self, now: Instant) -> Vec<ConnId> {
        while let Some(t) = self.broker.poll_transmit(now) {
            let len = t.packet.encoded_len(t.version);
            if t.conn == self.subscriber && self.stalled {
                self.held += len;
            } else {
                self.broker.handle_written(t.conn, len);
            }
            if t.conn == self.subscriber {
                self.received.push(t.packet);
            }
        }
        let mut resumed = Vec::new();
        while let Some(e) = self.broker.poll_event() {
            if let BrokerEvent::ResumeReading(conn) = e {
                resumed.push(conn);
            }
        }
        resumed
    }

    /// The subscriber acknowledges everything it got.
    fn ack_all(&mut self, now: Instant) {
        let mut buf = BytesMut::new();
        for p in &self.received {
            if let Packet::Publish(Publish {
                packet_id: Some(id),
                ..
            }) = p
            {
                encode(Packet::PubAck(PubAck::new(*id)), &mut buf);
            }
        }
        self.broker.handle_bytes(now, self.subscriber, &mut buf);
    }

    fn payloads(&self) -> Vec<u16> {
        self.received
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(u16::from_be_bytes([p.payload[0], p.payload[1]])),
                _ => None,
            })
            .collect()
    }
}

/// Connects a client (its CONNACK is drained by the next `drain`).
fn connect(broker: &mut Broker, id: &str) -> ConnId {
    let conn = broker.accept(Instant::ZERO);
    let mut buf = BytesMut::new();
    encode(
        Packet::Connect(Box::new(Connect {
            protocol: V,
            clean_start: true,
            client_id: MqttString::try_from(id.to_string()).unwrap(),
            ..Connect::default()
        })),
        &mut buf,
    );
    broker.handle_bytes(Instant::ZERO, conn, &mut buf);
    conn
}

/// `MESSAGES` QoS 1 PUBLISHes to `t`, numbered in their payloads.
fn flood() -> BytesMut {
    let mut buf = BytesMut::new();
    for n in 0..MESSAGES {
        encode(
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: MqttString::from_static("t"),
                packet_id: PacketId::new(n + 1),
                payload: Bytes::copy_from_slice(&n.to_be_bytes()),
                ..Publish::default()
            }),
            &mut buf,
        );
    }
    buf
}

#[test]
fn a_blocked_publisher_resumes_as_the_queue_drains_and_nothing_is_dropped() {
    let mut s = Setup::new(Some(Duration::from_secs(1)));
    let now = Instant::from_secs(1);
    // The subscriber's connection takes nothing: its messages queue.
    s.stall();
    let mut input = flood();
    s.broker.handle_bytes(now, s.publisher, &mut input);
    assert!(s.broker.is_blocked(s.publisher), "the queue is half full");
    assert!(!input.is_empty(), "the rest waits in the caller's buffer");
    let queued = s.broker.session("sub").unwrap().queue_len();
    assert_eq!(
        queued,
        QUEUE / 2,
        "stopped at the packet that half-filled it"
    );
    // More bytes handed in while blocked are not consumed.
    let before = input.len();
    s.broker.handle_bytes(now, s.publisher, &mut input);
    assert_eq!(input.len(), before);

    let mut rounds = 0;
    while !input.is_empty() {
        rounds += 1;
        assert!(rounds < 1000, "no progress");
        s.unstall();
        let resumed = s.drain(now);
        s.ack_all(now);
        s.stall();
        if resumed.contains(&s.publisher) {
            assert!(!s.broker.is_blocked(s.publisher));
            s.broker.handle_bytes(now, s.publisher, &mut input);
        }
    }
    // The last ones go out as the in-flight window (20 for a 3.1.1
    // client) frees.
    while s.payloads().len() < usize::from(MESSAGES) {
        rounds += 1;
        assert!(rounds < 1000, "no progress");
        s.unstall();
        s.drain(now);
        s.ack_all(now);
    }
    assert_eq!(s.payloads(), (0..MESSAGES).collect::<Vec<_>>());
    assert_eq!(s.broker.stats().messages_dropped, 0);
    assert_eq!(s.broker.session("sub").unwrap().dropped_queue_full(), 0);
}

#[test]
fn without_backpressure_a_full_queue_drops() {
    let mut s = Setup::new(None);
    s.stall();
    let mut input = flood();
    s.broker
        .handle_bytes(Instant::from_secs(1), s.publisher, &mut input);
    assert!(input.is_empty());
    assert!(!s.broker.is_blocked(s.publisher));
    assert_eq!(
        s.broker.stats().messages_dropped,
        u64::from(MESSAGES) - QUEUE as u64
    );
}

#[test]
fn a_subscriber_that_does_not_read_holds_a_publisher_up_to_the_time_limit_only() {
    let mut s = Setup::new(Some(Duration::from_secs(1)));
    s.stall();
    let mut input = flood();
    let t0 = Instant::from_secs(1);
    s.broker.handle_bytes(t0, s.publisher, &mut input);
    assert!(s.broker.is_blocked(s.publisher));
    // The subscriber never reads: the deadline releases the publisher.
    assert_eq!(s.broker.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    s.broker.handle_timeout(t0 + Duration::from_millis(999));
    assert!(s.drain(t0 + Duration::from_millis(999)).is_empty());
    let t1 = t0 + Duration::from_secs(1);
    s.broker.handle_timeout(t1);
    assert_eq!(s.drain(t1), vec![s.publisher]);
    assert!(!s.broker.is_blocked(s.publisher));
    // The stalled subscriber blocks no one any more: a slow reader slows
    // only itself, and its full queue drops. (One message went out before
    // its credit ran out: in flight, it counts against the queue too.)
    s.broker.handle_bytes(t1, s.publisher, &mut input);
    assert!(input.is_empty());
    assert!(!s.broker.is_blocked(s.publisher));
    assert_eq!(
        s.broker.stats().messages_dropped,
        u64::from(MESSAGES) - QUEUE as u64
    );
    // Once its queue drains it counts again (20 in flight at a time).
    while s.broker.session("sub").unwrap().held().0 > 0 {
        s.unstall();
        s.drain(t1);
        s.ack_all(t1);
    }
    s.stall();
    s.drain(t1);
    let mut input = flood();
    let t2 = t1 + Duration::from_secs(1);
    s.broker.handle_bytes(t2, s.publisher, &mut input);
    assert!(s.broker.is_blocked(s.publisher));
}

#[test]
fn a_publisher_is_read_again_when_the_subscriber_leaves() {
    let mut s = Setup::new(Some(Duration::from_secs(1)));
    s.stall();
    let mut input = flood();
    let now = Instant::from_secs(1);
    s.broker.handle_bytes(now, s.publisher, &mut input);
    assert!(s.broker.is_blocked(s.publisher));
    s.broker.handle_closed(now, s.subscriber);
    assert_eq!(s.drain(now), vec![s.publisher]);
    s.broker.handle_bytes(now, s.publisher, &mut input);
    assert!(input.is_empty(), "no subscriber: nothing blocks");
}

#[test]
fn output_credit_pauses_a_connection_that_does_not_read_and_resumes_it_at_low_water() {
    let credit = OutputCredit::default();
    let mut s = Setup::new(None);
    // This broker's credit is the production default.
    let mut config = s.broker.config().clone();
    config.output_credit = Some(credit);
    s.broker = Broker::new(config, Instant::ZERO);
    let publisher = connect(&mut s.broker, "pub");
    let reader = connect(&mut s.broker, "reader");
    let mut buf = BytesMut::new();
    encode(
        Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("t"),
                options: SubscriptionOptions::default(),
            }],
        }),
        &mut buf,
    );
    s.broker.handle_bytes(Instant::ZERO, reader, &mut buf);
    let mut unwritten = 0;
    let mut events = Vec::new();
    let drain = |b: &mut Broker, unwritten: &mut usize, events: &mut Vec<BrokerEvent>| {
        while let Some(t) = b.poll_transmit(Instant::ZERO) {
            let len = t.packet.encoded_len(t.version);
            if t.conn == reader {
                *unwritten += len; // it reads nothing
            } else {
                b.handle_written(t.conn, len);
            }
        }
        while let Some(e) = b.poll_event() {
            events.push(e);
        }
    };
    drain(&mut s.broker, &mut unwritten, &mut events);
    // QoS 0 messages of 1 KiB, until the reader's output is backed up.
    let mut sent = 0;
    while !events.contains(&BrokerEvent::PauseReading(reader)) {
        sent += 1;
        assert!(sent < 1000, "never paused");
        let mut buf = BytesMut::new();
        encode(
            Packet::Publish(Publish {
                topic: MqttString::from_static("t"),
                payload: Bytes::from(vec![0u8; 1024]),
                ..Publish::default()
            }),
            &mut buf,
        );
        s.broker.handle_bytes(Instant::ZERO, publisher, &mut buf);
        drain(&mut s.broker, &mut unwritten, &mut events);
    }
    assert!(unwritten > credit.high_water);
    assert_eq!(s.broker.unwritten(reader), unwritten);
    assert!(s.broker.is_reading_paused(reader));
    assert!(!s.broker.is_reading_paused(publisher));
    // Written down to just above low water: still paused, and nothing more
    // was handed out.
    s.broker
        .handle_written(reader, unwritten - credit.low_water - 1);
    unwritten = credit.low_water + 1;
    drain(&mut s.broker, &mut unwritten, &mut events);
    assert_eq!(unwritten, credit.low_water + 1);
    assert!(!events.contains(&BrokerEvent::ResumeReading(reader)));
    // At low water: read again, and the queued messages flow.
    s.broker.handle_written(reader, 1);
    drain(&mut s.broker, &mut unwritten, &mut events);
    assert!(events.contains(&BrokerEvent::ResumeReading(reader)));
    assert!(unwritten > credit.low_water);
}

/// Issue 13: the time limit is per publisher, not per slow subscriber.
/// Two subscribers that do not read: the publisher is held up once, for
/// the limit (both are stalled when it passes), not once per subscriber
/// in turn; their queues drop instead.
#[test]
fn a_publisher_is_held_up_to_the_time_limit_once_however_many_subscribers_stall() {
    let mut s = Setup::new(Some(Duration::from_secs(1)));
    // A second subscriber that never acknowledges: its queue fills behind
    // its in-flight window, alongside the first one's.
    let second = connect(&mut s.broker, "sub-2");
    let mut buf = BytesMut::new();
    subscribe_t(&mut buf);
    s.broker.handle_bytes(Instant::ZERO, second, &mut buf);
    s.drain(Instant::ZERO);

    s.stall();
    let mut input = flood();
    let t0 = Instant::from_secs(1);
    s.broker.handle_bytes(t0, s.publisher, &mut input);
    s.drain(t0);
    assert!(s.broker.is_blocked(s.publisher));
    let t1 = t0 + Duration::from_secs(1);
    s.broker.handle_timeout(t1);
    assert!(s.drain(t1).contains(&s.publisher));

    s.broker.handle_bytes(t1, s.publisher, &mut input);
    s.drain(t1);
    assert!(!s.broker.is_blocked(s.publisher), "held once, not again");
    assert!(input.is_empty(), "everything was read");
    assert!(s.broker.session("sub-2").unwrap().dropped_queue_full() > 0);
}

/// Issue 13: subscribers that do not read fill up at different times (the
/// kernel took more from one socket than from another). One whose queue is
/// not yet half full when the time limit passes, but whose socket takes no
/// more bytes, is stalled with the one waited on, so the publisher is not
/// held again by it, back to back.
#[test]
fn a_subscriber_taking_no_bytes_when_the_limit_passes_is_stalled_too() {
    let limit = Duration::from_secs(1);
    let mut s = Setup::new(Some(limit));
    s.stall();
    let mut input = flood();
    // The first 30 messages reach the first subscriber only.
    let mut first = input.split_to(input.len() * 30 / usize::from(MESSAGES));
    let t0 = Instant::from_secs(1);
    s.broker.handle_bytes(t0, s.publisher, &mut first);
    assert!(first.is_empty());
    // A second subscriber that never reads: its bytes are never written.
    let second = connect(&mut s.broker, "sub-2");
    let mut buf = BytesMut::new();
    subscribe_t(&mut buf);
    s.broker.handle_bytes(t0, second, &mut buf);
    let drain = |s: &mut Setup, now| {
        while let Some(t) = s.broker.poll_transmit(now) {
            if t.conn != s.subscriber && t.conn != second {
                let len = t.packet.encoded_len(t.version);
                s.broker.handle_written(t.conn, len);
            }
        }
        while s.broker.poll_event().is_some() {}
    };
    drain(&mut s, t0);
    s.broker.handle_bytes(t0, s.publisher, &mut input);
    drain(&mut s, t0);
    assert!(s.broker.is_blocked(s.publisher), "held by the first");
    let (len, _) = s.broker.session("sub-2").unwrap().held();
    assert!(
        len > 0 && len < QUEUE / 2,
        "the second is not half full: {len}"
    );

    let t1 = t0 + limit;
    s.broker.handle_timeout(t1);
    drain(&mut s, t1);
    assert!(!s.broker.is_blocked(s.publisher));
    s.broker.handle_bytes(t1, s.publisher, &mut input);
    drain(&mut s, t1);
    assert!(
        !s.broker.is_blocked(s.publisher),
        "not held again by the second"
    );
    assert!(input.is_empty(), "everything was read");
    assert!(s.broker.session("sub-2").unwrap().dropped_queue_full() > 0);
}

/// SUBSCRIBE to `t` at QoS 1 (packet id 1), encoded into `buf`.
fn subscribe_t(buf: &mut BytesMut) {
    encode(
        Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("t"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            }],
        }),
        buf,
    );
}
