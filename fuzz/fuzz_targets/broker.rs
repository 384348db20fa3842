//! The broker core driven by arbitrary packet sequences from several
//! connections, interleaved with closes, time and backpressure, as the tokio
//! shell would drive it: it never panics, every packet it emits encodes for
//! its connection's version, it never asks to be woken in the past, and what
//! it holds stays bounded.
//!
//! Packets are built from small alphabets of client ids, topics and filters
//! (so sessions collide, subscriptions match, take-overs and shared groups
//! happen), plus arbitrary packets and raw bytes for the decoder's edges.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::{num::NonZeroU16, time::Duration};
use tern_broker::{Broker, BrokerConfig, BrokerEvent, ConnId, OutputCredit};
use tern_codec::{
    Connect, Disconnect, MqttString, Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, PublishProperties, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeFilter,
    SubscriptionId, SubscriptionOptions, Unsubscribe, Will, arbitrary_packet,
};
use tern_session::{Instant, QueueLimits};

const CLIENTS: [&str; 4] = ["", "c1", "c2", "c3"];
const TOPICS: [&str; 6] = ["a", "a/b", "a/c", "b", "$SYS/x", "$app/y"];
const FILTERS: [&str; 8] = [
    "#",
    "a/#",
    "a/+",
    "+/b",
    "$share/g/a/#",
    "$share/g/#",
    "a/b",
    "$SYS/#",
];
const MAX_PACKET: usize = 4096;
const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

#[derive(Debug, Arbitrary)]
enum Op {
    Accept,
    Connect {
        conn: u8,
        version: u8,
        client: u8,
        clean: bool,
        keep_alive: u8,
        expiry: Option<u8>,
        will: Option<(u8, u8, u8, bool)>,
        receive_maximum: Option<u8>,
        maximum_packet_size: Option<u16>,
    },
    Subscribe {
        conn: u8,
        id: u16,
        filter: u8,
        qos: u8,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: u8,
        subscription_id: Option<u8>,
    },
    Unsubscribe {
        conn: u8,
        id: u16,
        filter: u8,
    },
    Publish {
        conn: u8,
        topic: u8,
        qos: u8,
        retain: bool,
        id: u16,
        payload: u16,
        expiry: Option<u8>,
        alias: Option<u8>,
    },
    Ack {
        conn: u8,
        kind: u8,
        id: u16,
    },
    Ping {
        conn: u8,
    },
    Disconnect {
        conn: u8,
        with_will: bool,
        expiry: Option<u8>,
    },
    Arbitrary {
        conn: u8,
        seed: Vec<u8>,
    },
    Raw {
        conn: u8,
        bytes: Vec<u8>,
    },
    Split {
        conn: u8,
        at: u8,
    },
    Close {
        conn: u8,
    },
    Advance {
        millis: u16,
    },
    /// The shell wrote this many of a connection's bytes (at most what it
    /// was handed).
    Written {
        conn: u8,
        bytes: u16,
    },
    Shutdown,
}

struct Link {
    id: ConnId,
    version: ProtocolVersion,
    /// Bytes handed to the core and not yet consumed (a partial packet).
    input: BytesMut,
    /// Deliver the next packet in two reads, cut here.
    split: Option<usize>,
    open: bool,
    /// Bytes the core handed out for it and the shell has not written.
    unwritten: usize,
    /// The core said `PauseReading` (and not yet `ResumeReading`): bytes
    /// arriving wait in `input`, as they would in the socket.
    paused: bool,
}

struct Harness {
    broker: Broker,
    now: Instant,
    links: Vec<Link>,
    queue_limit: usize,
    inflight_limit: usize,
    /// The core's output credit.
    high_water: usize,
}

fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n % 3).unwrap_or(QoS::AtMostOnce)
}

fn string(s: &str) -> MqttString {
    MqttString::try_from(s.to_string()).expect("valid")
}

impl Harness {
    fn link(&mut self, conn: u8) -> Option<usize> {
        if self.links.is_empty() {
            return None;
        }
        Some(conn as usize % self.links.len())
    }

    /// Encodes a packet with the link's version and hands it to the core.
    fn send(&mut self, conn: u8, packet: Packet) {
        let Some(i) = self.link(conn) else { return };
        let version = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => self.links[i].version,
        };
        let mut bytes = BytesMut::new();
        if packet.encode(version, &mut bytes).is_err() {
            return; // not valid for this version: the client could not send it
        }
        if let Packet::Connect(c) = &packet {
            self.links[i].version = c.protocol;
        }
        self.bytes(i, &bytes);
    }

    fn bytes(&mut self, i: usize, bytes: &[u8]) {
        let cut = self.links[i]
            .split
            .take()
            .map_or(bytes.len(), |at| at.min(bytes.len()));
        for part in [&bytes[..cut], &bytes[cut..]] {
            let link = &mut self.links[i];
            if part.is_empty() || !link.open {
                continue;
            }
            link.input.extend_from_slice(part);
            if link.paused {
                continue;
            }
            self.broker.handle_bytes(self.now, link.id, &mut link.input);
            self.drain();
            // What stays of an open connection's input is part of one packet:
            // memory per connection is bounded by the maximum packet size.
            let link = &self.links[i];
            assert!(
                !link.open || link.paused || link.input.len() <= MAX_PACKET + 5,
                "{} bytes held for an open connection",
                link.input.len()
            );
        }
    }

    fn drain(&mut self) {
        let mut sent_to = std::collections::BTreeMap::<ConnId, usize>::new();
        while let Some(t) = self.broker.poll_transmit(self.now) {
            // Everything the core emits is valid for the connection's version.
            let mut out = BytesMut::new();
            t.packet
                .encode(t.version, &mut out)
                .unwrap_or_else(|e| panic!("the core emitted an invalid {:?}: {e}", t.packet));
            assert_eq!(Some(t.version), self.broker.version(t.conn));
            // Bounded output per input: the queue and the in-flight window,
            // plus answers to what this input could hold.
            let n = sent_to.entry(t.conn).or_default();
            *n += 1;
            assert!(
                *n <= self.queue_limit + self.inflight_limit + 4096,
                "runaway output to one connection"
            );
            // Output credit: what the shell holds unwritten for a
            // connection stays below the high-water mark plus one packet.
            assert_eq!(out.len(), t.packet.encoded_len(t.version));
            if let Some(link) = self.links.iter_mut().find(|l| l.id == t.conn) {
                assert!(
                    link.unwritten <= self.high_water,
                    "a transmit for a connection past its credit"
                );
                link.unwritten += out.len();
                assert_eq!(link.unwritten, self.broker.unwritten(t.conn));
            }
        }
        let mut resumed = Vec::new();
        while let Some(event) = self.broker.poll_event() {
            match event {
                BrokerEvent::Close(id) => {
                    if let Some(link) = self.links.iter_mut().find(|l| l.id == id) {
                        link.open = false;
                    }
                    self.broker.handle_closed(self.now, id);
                }
                BrokerEvent::PauseReading(id) | BrokerEvent::ResumeReading(id) => {
                    let pause = matches!(event, BrokerEvent::PauseReading(_));
                    if let Some(i) = self.links.iter().position(|l| l.id == id && l.open) {
                        // Each change is said once.
                        assert_ne!(self.links[i].paused, pause, "{event:?} twice");
                        self.links[i].paused = pause;
                        if !pause {
                            resumed.push(i);
                        }
                    }
                }
                _ => {}
            }
        }
        // Read again: first what waited.
        for i in resumed {
            let link = &mut self.links[i];
            if link.open && !link.paused && !link.input.is_empty() {
                self.broker.handle_bytes(self.now, link.id, &mut link.input);
                self.drain();
            }
        }
    }

    fn advance(&mut self, millis: u16) {
        self.now = self.now + Duration::from_millis(u64::from(millis) * 10);
        self.broker.handle_timeout(self.now);
        // Every deadline that had passed has been handled: a shell that
        // re-arms its timer from `poll_timeout` would otherwise spin.
        if let Some(t) = self.broker.poll_timeout() {
            assert!(
                t > self.now,
                "handle_timeout left a passed deadline: {t} <= {}",
                self.now
            );
        }
        self.drain();
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Accept => {
                if self.links.len() < 16 {
                    let id = self.broker.accept(self.now);
                    self.links.push(Link {
                        id,
                        version: ProtocolVersion::V5,
                        input: BytesMut::new(),
                        split: None,
                        open: true,
                        unwritten: 0,
                        paused: false,
                    });
                    self.drain();
                }
            }
            Op::Connect {
                conn,
                version,
                client,
                clean,
                keep_alive,
                expiry,
                will,
                receive_maximum,
                maximum_packet_size,
            } => {
                let protocol = VERSIONS[version as usize % 3];
                let mut c = Connect {
                    protocol,
                    clean_start: clean,
                    keep_alive: u16::from(keep_alive % 4),
                    client_id: string(CLIENTS[client as usize % CLIENTS.len()]),
                    ..Connect::default()
                };
                if protocol.is_v5() {
                    c.properties.session_expiry_interval = expiry.map(|e| u32::from(e % 4));
                    c.properties.receive_maximum =
                        receive_maximum.and_then(|r| NonZeroU16::new(u16::from(r % 8)));
                    c.properties.maximum_packet_size =
                        maximum_packet_size.and_then(|m| std::num::NonZeroU32::new(u32::from(m)));
                    c.properties.topic_alias_maximum = Some(2);
                }
                if let Some((topic, delay, q, retain)) = will {
                    let mut w = Will {
                        topic: string(TOPICS[topic as usize % TOPICS.len()]),
                        payload: Bytes::from_static(b"will"),
                        qos: qos(q),
                        retain,
                        ..Will::default()
                    };
                    if protocol.is_v5() {
                        w.properties.will_delay_interval = Some(u32::from(delay % 4));
                    }
                    c.will = Some(w);
                }
                self.send(conn, Packet::Connect(Box::new(c)));
            }
            Op::Subscribe {
                conn,
                id,
                filter,
                qos: q,
                no_local,
                retain_as_published,
                retain_handling,
                subscription_id,
            } => {
                let mut s = Subscribe {
                    packet_id: pid(id),
                    properties: Default::default(),
                    filters: vec![SubscribeFilter {
                        filter: string(FILTERS[filter as usize % FILTERS.len()]),
                        options: SubscriptionOptions {
                            qos: qos(q),
                            no_local,
                            retain_as_published,
                            retain_handling: match retain_handling % 3 {
                                0 => RetainHandling::SendAtSubscribe,
                                1 => RetainHandling::SendAtSubscribeIfNew,
                                _ => RetainHandling::DoNotSend,
                            },
                        },
                    }],
                };
                s.properties.subscription_identifier =
                    subscription_id.and_then(|i| SubscriptionId::new(u32::from(i) + 1));
                self.send(conn, Packet::Subscribe(s));
            }
            Op::Unsubscribe { conn, id, filter } => {
                let u = Unsubscribe {
                    packet_id: pid(id),
                    properties: Default::default(),
                    filters: vec![string(FILTERS[filter as usize % FILTERS.len()])],
                };
                self.send(conn, Packet::Unsubscribe(u));
            }
            Op::Publish {
                conn,
                topic,
                qos: q,
                retain,
                id,
                payload,
                expiry,
                alias,
            } => {
                let q = qos(q);
                let p = Publish {
                    qos: q,
                    retain,
                    topic: string(TOPICS[topic as usize % TOPICS.len()]),
                    packet_id: (q != QoS::AtMostOnce).then(|| pid(id)),
                    properties: PublishProperties {
                        message_expiry_interval: expiry.map(|e| u32::from(e % 4)),
                        topic_alias: alias.and_then(|a| NonZeroU16::new(u16::from(a % 4))),
                        ..PublishProperties::default()
                    }
                    .into(),
                    payload: Bytes::from(vec![7u8; usize::from(payload % 3000)]),
                    ..Publish::default()
                };
                self.send(conn, Packet::Publish(p));
            }
            Op::Ack { conn, kind, id } => {
                let id = pid(id % 8 + 1);
                let packet = match kind % 4 {
                    0 => Packet::PubAck(PubAck::new(id)),
                    1 => Packet::PubRec(PubRec::new(id)),
                    2 => Packet::PubRel(PubRel::new(id)),
                    _ => Packet::PubComp(PubComp::new(id)),
                };
                self.send(conn, packet);
            }
            Op::Ping { conn } => self.send(conn, Packet::PingReq),
            Op::Disconnect {
                conn,
                with_will,
                expiry,
            } => {
                let mut d = Disconnect::new(if with_will {
                    ReasonCode::DisconnectWithWill
                } else {
                    ReasonCode::Success
                });
                d.properties.session_expiry_interval = expiry.map(|e| u32::from(e % 4));
                self.send(conn, Packet::Disconnect(Box::new(d)));
            }
            Op::Arbitrary { conn, seed } => {
                let Some(i) = self.link(conn) else { return };
                let mut u = Unstructured::new(&seed);
                if let Ok(packet) = arbitrary_packet(&mut u, self.links[i].version) {
                    self.send(conn, packet);
                }
            }
            Op::Raw { conn, bytes } => {
                if let Some(i) = self.link(conn) {
                    self.bytes(i, &bytes);
                }
            }
            Op::Split { conn, at } => {
                if let Some(i) = self.link(conn) {
                    self.links[i].split = Some(usize::from(at));
                }
            }
            Op::Close { conn } => {
                if let Some(i) = self.link(conn) {
                    let link = &mut self.links[i];
                    if link.open {
                        link.open = false;
                        self.broker.handle_closed(self.now, link.id);
                        self.drain();
                    }
                }
            }
            Op::Advance { millis } => self.advance(millis),
            Op::Written { conn, bytes } => {
                if let Some(i) = self.link(conn) {
                    let link = &mut self.links[i];
                    let n = usize::from(bytes).min(link.unwritten);
                    link.unwritten -= n;
                    self.broker.handle_written(link.id, n);
                    self.drain();
                }
            }
            Op::Shutdown => {
                self.broker.shutdown(self.now);
                self.drain();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut config = BrokerConfig::default();
    config.server.connect_timeout = Duration::from_secs(2);
    config.server.receive_maximum = NonZeroU16::new(4).unwrap();
    config.server.maximum_packet_size = MAX_PACKET as u32;
    config.server.topic_alias_maximum = 2;
    config.server.outgoing_topic_aliases = 2;
    config.server.queue = QueueLimits {
        max_messages: 8,
        max_bytes: 8 * 1024,
        ..QueueLimits::default()
    };
    config.queue_qos0_offline = u.arbitrary().unwrap_or(false);
    config.sys_interval = Some(Duration::from_secs(1));
    // Production backpressure, with a credit small enough to reach.
    let high_water = usize::from(u.arbitrary::<u16>().unwrap_or(0) % 4096);
    config.output_credit = Some(OutputCredit {
        high_water,
        low_water: high_water / 4,
    });
    if u.arbitrary().unwrap_or(false) {
        config.publisher_backpressure = Some(Duration::from_secs(1));
    }
    let mut h = Harness {
        broker: Broker::new(config, Instant::ZERO),
        now: Instant::ZERO,
        links: Vec::new(),
        queue_limit: 8,
        inflight_limit: 4,
        high_water,
    };
    let mut ops = 0;
    while let Ok(op) = u.arbitrary::<Op>() {
        h.apply(op);
        ops += 1;
        if ops > 256 || u.is_empty() {
            break;
        }
    }
    // Everyone leaves and a day passes: the connections are all gone, and
    // only sessions that outlive a day (3.1.1 persistent ones) may remain.
    for i in 0..h.links.len() {
        if h.links[i].open {
            h.links[i].open = false;
            h.broker.handle_closed(h.now, h.links[i].id);
            h.drain();
        }
    }
    h.advance(u16::MAX);
    for _ in 0..3 {
        h.now = h.now + Duration::from_secs(86_400);
        h.broker.handle_timeout(h.now);
        h.drain();
    }
    assert_eq!(h.broker.connection_count(), 0, "connections leaked");
    assert!(
        h.broker.session_count() <= CLIENTS.len() + ops,
        "sessions leaked"
    );
});
