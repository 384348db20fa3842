//! The client against a scripted fake broker, for what a real broker cannot
//! be made to do: refuse with a chosen code, drop the connection in the
//! middle of a flow, forget a session, ignore PINGREQ, flood a slow
//! consumer, hold back acknowledgements.

mod support;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::{num::NonZeroU16, time::Duration};
use support::{
    fake::{FakeBroker, Peer},
    mosquitto::free_port,
    still_pending, within,
};
use tern_client::{Backoff, Client, Error, Message, Messages, Options, State, Timeout};
use tern_codec::{
    ConnAck, ConnAckProperties, Disconnect, MqttString, Packet, PacketId, ProtocolVersion, PubAck,
    PubComp, PubRec, Publish, QoS, ReasonCode, SubAck, UnsubAck,
};
use tern_session::QueueLimits;
use tokio::{io::AsyncWriteExt, sync::watch};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Reconnects at once, so the tests do not wait for the backoff.
fn fast() -> Option<Backoff> {
    Some(Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        seed: Some(1),
        ..Backoff::default()
    })
}

fn options(broker: &FakeBroker) -> Options {
    Options::from_url(&broker.url())
        .unwrap()
        .client_id("fake-test")
        .unwrap()
        .reconnect(None)
}

/// Connects the client to `broker`, answering CONNACK with `connack`.
async fn connect_with(
    broker: &FakeBroker,
    options: Options,
    connack: ConnAck,
) -> (Client, Messages, Peer) {
    let connecting = tokio::spawn(Client::connect(options));
    let mut peer = broker.accept().await;
    peer.recv_connect().await;
    peer.send(Packet::ConnAck(Box::new(connack))).await;
    let (client, messages) = within("connect", connecting)
        .await
        .unwrap()
        .expect("connected");
    (client, messages, peer)
}

async fn connect(broker: &FakeBroker, options: Options) -> (Client, Messages, Peer) {
    connect_with(broker, options, ConnAck::default()).await
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn publish(topic: &'static str, qos: QoS, packet_id: Option<u16>, payload: &'static str) -> Packet {
    Packet::Publish(Publish {
        topic: MqttString::from_static(topic),
        qos,
        packet_id: packet_id.map(id),
        payload: Bytes::from_static(payload.as_bytes()),
        ..Publish::default()
    })
}

async fn wait_for_state(
    states: &mut watch::Receiver<State>,
    what: &str,
    f: impl FnMut(&State) -> bool,
) -> State {
    within(what, states.wait_for(f))
        .await
        .expect("the client task is alive")
        .clone()
}

#[tokio::test]
async fn connack_refusals_are_the_error_of_connect_with_their_reason_code() {
    for (version, code, text) in [
        (
            V5,
            ReasonCode::BadUserNameOrPassword,
            "0x86 Bad User Name or Password",
        ),
        (V5, ReasonCode::NotAuthorized, "0x87 Not authorized"),
        (V5, ReasonCode::Banned, "0x8A Banned"),
        (
            V311,
            ReasonCode::BadUserNameOrPassword,
            "0x86 Bad User Name or Password",
        ),
        (V311, ReasonCode::NotAuthorized, "0x87 Not authorized"),
        (
            V311,
            ReasonCode::UnsupportedProtocolVersion,
            "0x84 Unsupported Protocol Version",
        ),
    ] {
        let broker = FakeBroker::start().await;
        let connecting = tokio::spawn(Client::connect(options(&broker).version(version)));
        let mut peer = broker.accept().await;
        assert_eq!(peer.recv_connect().await.protocol, version);
        peer.connack(false, code, ConnAckProperties::default())
            .await;
        let error = within("connect", connecting).await.unwrap().unwrap_err();
        assert!(
            matches!(error, Error::ConnectionRefused(c) if c == code),
            "{version:?}: {error:?}"
        );
        assert_eq!(error.to_string(), format!("connection refused: {text}"));
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_named_in_the_error() {
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let error = Client::connect(Options::from_url(&url).unwrap())
        .await
        .unwrap_err();
    let addr = format!("127.0.0.1:{port}");
    assert!(
        matches!(&error, Error::Unreachable { addr: a, .. } if *a == addr),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("broker unreachable at {addr}: ")),
        "{error}"
    );
    assert!(matches!(
        Client::connect(Options::new(tern_client::Address::tcp("127.0.0.1", port)))
            .await
            .unwrap_err(),
        Error::Unreachable { .. }
    ));
}

#[tokio::test]
async fn mqtt_3_1_3_7_an_empty_client_id_needs_a_clean_session_on_3_1_1() {
    // Refused before any connection is attempted: the port has no listener,
    // so anything else would be Unreachable.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let persistent = |version| {
        Options::from_url(&url)
            .unwrap()
            .version(version)
            .client_id("")
            .unwrap()
            .clean_start(false)
    };
    let error = Client::connect(persistent(ProtocolVersion::V3_1_1))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidOptions(_)), "{error:?}");
    // MQTT 5 allows it (the broker assigns an identifier).
    let error = Client::connect(persistent(ProtocolVersion::V5))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
}

#[tokio::test]
async fn a_broker_that_never_sends_connack_times_out() {
    let broker = FakeBroker::start().await;
    let connecting = tokio::spawn(Client::connect(
        options(&broker).connect_timeout(Duration::from_millis(300)),
    ));
    let mut peer = broker.accept().await;
    peer.recv_connect().await;
    let error = within("connect", connecting).await.unwrap().unwrap_err();
    assert!(
        matches!(error, Error::Timeout(Timeout::Connect)),
        "{error:?}"
    );
    peer.until_closed().await;
}

#[tokio::test]
async fn a_connection_dropped_mid_qos2_completes_the_publish_once_on_the_next() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect(
        &broker,
        options(&broker).session_expiry(300).reconnect(fast()),
    )
    .await;
    let mut states = client.state_changes();
    let publishing = tokio::spawn({
        let client = client.clone();
        async move { client.publish("a/b", "once", QoS::ExactlyOnce, false).await }
    });
    let Packet::Publish(p) = peer.recv_skipping_pings().await else {
        panic!("expected PUBLISH")
    };
    let pid = p.packet_id.expect("QoS 2 has an identifier");
    peer.send(Packet::PubRec(PubRec::new(pid))).await;
    assert_eq!(
        peer.recv_skipping_pings().await,
        Packet::PubRel(tern_codec::PubRel::new(pid))
    );
    drop(peer); // cut before PUBCOMP
    let state = wait_for_state(&mut states, "the lost connection", |s| {
        matches!(s, State::Disconnected { .. } | State::Connecting)
    })
    .await;
    assert!(!publishing.is_finished(), "no PUBCOMP yet: {state:?}");

    // The client comes back and resumes its persistent session.
    let mut peer = broker.accept().await;
    let connect = peer.recv_connect().await;
    assert!(!connect.clean_start, "a persistent session is resumed");
    assert_eq!(connect.client_id, "fake-test");
    peer.connack(true, ReasonCode::Success, ConnAckProperties::default())
        .await;
    // Only the release is repeated [MQTT-4.3.3-6] (tern-session's rule).
    assert_eq!(
        peer.recv_skipping_pings().await,
        Packet::PubRel(tern_codec::PubRel::new(pid))
    );
    wait_for_state(&mut states, "the reconnection", |s| {
        matches!(
            s,
            State::Connected {
                session_present: true,
                ..
            }
        )
    })
    .await;
    assert!(!publishing.is_finished(), "the flow is not complete yet");
    peer.send(Packet::PubComp(PubComp::new(pid))).await;
    let published = within("the publish", publishing).await.unwrap().unwrap();
    assert_eq!(published.packet_id, Some(pid));
    assert_eq!(published.qos, QoS::ExactlyOnce);
    assert_eq!(published.reason_code, ReasonCode::Success);

    // Exactly once: nothing else about that message follows.
    client.disconnect().await.unwrap();
    assert_eq!(
        peer.until_closed().await,
        vec![Packet::Disconnect(Box::new(Disconnect::new(
            ReasonCode::Success
        )))]
    );
    assert!(matches!(client.state(), State::Closed { error: None }));
}

#[tokio::test]
async fn a_lost_session_is_rebuilt_subscriptions_and_unacknowledged_messages() {
    let broker = FakeBroker::start().await;
    let (client, mut messages, mut peer) = connect(
        &broker,
        options(&broker).session_expiry(300).reconnect(fast()),
    )
    .await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe([("x/#", QoS::AtLeastOnce)]).await }
    });
    let Packet::Subscribe(sub) = peer.recv_skipping_pings().await else {
        panic!("expected SUBSCRIBE")
    };
    peer.send(Packet::SubAck(SubAck {
        packet_id: sub.packet_id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::GrantedQos1],
    }))
    .await;
    let suback = within("SUBACK", subscribing).await.unwrap().unwrap();
    assert_eq!(suback.reason_codes, vec![ReasonCode::GrantedQos1]);

    let publishing = tokio::spawn({
        let client = client.clone();
        async move { client.publish("t", "again", QoS::AtLeastOnce, false).await }
    });
    let Packet::Publish(first) = peer.recv_skipping_pings().await else {
        panic!("expected PUBLISH")
    };
    drop(peer); // never acknowledged

    // The broker comes back without the session (Session Present 0).
    let mut peer = broker.accept().await;
    assert!(!peer.recv_connect().await.clean_start);
    peer.connack(false, ReasonCode::Success, ConnAckProperties::default())
        .await;
    let mut resubscribed = None;
    let mut republished = None;
    while resubscribed.is_none() || republished.is_none() {
        match peer.recv_skipping_pings().await {
            Packet::Subscribe(s) => resubscribed = Some(s),
            Packet::Publish(p) => republished = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (resubscribed, republished) = (resubscribed.unwrap(), republished.unwrap());
    assert_eq!(resubscribed.filters.len(), 1);
    assert_eq!(resubscribed.filters[0].filter, "x/#");
    assert_eq!(resubscribed.filters[0].options.qos, QoS::AtLeastOnce);
    assert_eq!(republished.payload, first.payload);
    assert!(!republished.dup, "a new message for a new session");
    peer.send(Packet::SubAck(SubAck {
        packet_id: resubscribed.packet_id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::GrantedQos1],
    }))
    .await;
    peer.send(Packet::PubAck(PubAck::new(republished.packet_id.unwrap())))
        .await;
    let published = within("the publish", publishing).await.unwrap().unwrap();
    assert_eq!(published.reason_code, ReasonCode::Success);

    // The restored subscription delivers.
    peer.send(publish("x/1", QoS::AtLeastOnce, Some(9), "hello"))
        .await;
    let message = within("the message", messages.recv()).await.unwrap();
    assert_eq!(message.topic, "x/1");
    assert_eq!(message.payload, "hello");
    assert_eq!(
        peer.recv_skipping_pings().await,
        Packet::PubAck(PubAck::new(id(9)))
    );
}

#[tokio::test]
async fn a_broker_that_never_answers_pingreq_times_out() {
    let broker = FakeBroker::start().await;
    let (client, mut messages, mut peer) =
        connect(&broker, options(&broker).keep_alive(Duration::from_secs(1))).await;
    let mut states = client.state_changes();
    assert_eq!(peer.recv().await, Packet::PingReq);
    // No PINGRESP.
    let state = wait_for_state(&mut states, "the keep-alive timeout", |s| {
        matches!(s, State::Closed { .. })
    })
    .await;
    assert!(
        matches!(
            state,
            State::Closed {
                error: Some(Error::Timeout(Timeout::KeepAlive))
            }
        ),
        "{state:?}"
    );
    assert!(
        within("the end of the stream", messages.recv())
            .await
            .is_none()
    );
    let error = client
        .publish("t", "late", QoS::AtMostOnce, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Timeout(Timeout::KeepAlive)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "keep alive timed out: no answer from the broker"
    );
    peer.until_closed().await;
}

#[tokio::test]
async fn a_slow_consumer_stops_the_reads() {
    const MESSAGES: usize = 2048;
    const SIZE: usize = 64 * 1024;
    let broker = FakeBroker::start().await;
    let (_client, mut messages, peer) =
        connect(&broker, options(&broker).message_capacity(4)).await;
    let Peer { mut stream, .. } = peer;
    let packet = Packet::Publish(Publish {
        topic: MqttString::from_static("flood"),
        payload: Bytes::from(vec![7u8; SIZE]),
        ..Publish::default()
    });
    let mut bytes = BytesMut::new();
    packet.encode(V5, &mut bytes).unwrap();
    let total = MESSAGES * bytes.len();
    let (progress_tx, mut progress) = watch::channel(0usize);
    let flooding = tokio::spawn(async move {
        let mut written = 0;
        for _ in 0..MESSAGES {
            stream.write_all(&bytes).await.expect("write");
            written += bytes.len();
            progress_tx.send_replace(written);
        }
        stream
    });
    // Nobody reads `messages`: the broker's writes must stall. (Stalling is
    // the absence of progress, so it is seen as a quiet half second.)
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(500), progress.changed()).await
    {}
    let stalled_at = *progress.borrow();
    // Kernel socket buffers on loopback can hold tens of MiB; the client
    // itself holds 4 + 1 messages and one read buffer.
    assert!(
        stalled_at < total / 2,
        "the broker wrote {stalled_at} of {total} bytes: the client kept reading"
    );
    assert!(!flooding.is_finished());
    // Now consume: everything arrives, in order, and the broker finishes.
    for n in 0..MESSAGES {
        let m = within("a message", messages.recv()).await.expect("message");
        assert_eq!(m.payload.len(), SIZE, "message {n}");
    }
    let _stream = within("the flood to finish", flooding).await.unwrap();
}

#[tokio::test]
async fn try_publish_reports_backpressure_instead_of_waiting() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect_with(
        &broker,
        options(&broker)
            .queue(QueueLimits {
                max_messages: 1,
                ..QueueLimits::default()
            })
            .command_capacity(1),
        ConnAck {
            properties: ConnAckProperties {
                receive_maximum: NonZeroU16::new(1),
                ..Default::default()
            },
            ..ConnAck::default()
        },
    )
    .await;
    // Room for four: one in flight, one queued, one held by the task, one
    // in the request channel. Each is taken as soon as the task can, so
    // wait for the first to reach the broker before filling the rest.
    let mut pending = vec![
        client
            .try_publish("w", "1", QoS::AtLeastOnce, false)
            .unwrap(),
    ];
    let Packet::Publish(first) = peer.recv_skipping_pings().await else {
        panic!("expected PUBLISH")
    };
    let mut refused = 0;
    for n in 2..=10 {
        match client.try_publish("w", n.to_string(), QoS::AtLeastOnce, false) {
            Ok(p) => pending.push(p),
            Err(Error::Backpressure) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        // Let the task take what it can before the next try.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(
        pending.len(),
        4,
        "one in flight, one queued, one held, one waiting"
    );
    assert_eq!(refused, 6);
    // Acknowledging drains them in order; every pending publish completes.
    peer.send(Packet::PubAck(PubAck::new(first.packet_id.unwrap())))
        .await;
    for n in 2..=4 {
        let Packet::Publish(p) = peer.recv_skipping_pings().await else {
            panic!("expected PUBLISH")
        };
        assert_eq!(p.payload, n.to_string());
        peer.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
            .await;
    }
    for p in pending {
        let done = within("a pending publish", p).await.unwrap();
        assert_eq!(done.reason_code, ReasonCode::Success);
    }
    // With room again, it is taken.
    assert!(
        client
            .try_publish("w", "again", QoS::AtLeastOnce, false)
            .is_ok()
    );
}

/// A message forwarded as it is (a bridge's): on backpressure it comes
/// back whole, nothing is sent twice, and what reaches the broker has the
/// properties given and the packet identifier the session chose (the one
/// given, and DUP, are ignored: it is a new PUBLISH) [MQTT-2.2.1-3].
#[tokio::test]
async fn try_publish_message_gives_the_message_back_on_backpressure() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect_with(
        &broker,
        options(&broker)
            .queue(QueueLimits {
                max_messages: 1,
                ..QueueLimits::default()
            })
            .command_capacity(1),
        ConnAck {
            properties: ConnAckProperties {
                receive_maximum: NonZeroU16::new(1),
                ..Default::default()
            },
            ..ConnAck::default()
        },
    )
    .await;
    let message = |n: u32| {
        let mut p = Publish::new(
            MqttString::try_from("w").unwrap(),
            n.to_string(),
            QoS::AtLeastOnce,
        );
        p.packet_id = PacketId::new(999);
        p.dup = true;
        p.properties.get_mut().content_type = Some(MqttString::try_from("text/n").unwrap());
        p
    };
    let first_pending = client.try_publish_message(message(1)).unwrap();
    let Packet::Publish(first) = peer.recv_skipping_pings().await else {
        panic!("expected PUBLISH")
    };
    assert!(!first.dup);
    assert_ne!(first.packet_id, PacketId::new(999));
    assert_eq!(
        first
            .properties
            .content_type
            .as_ref()
            .map(MqttString::as_str),
        Some("text/n")
    );
    // Fill it up: one queued, one held, one waiting; then the rest come back.
    let mut pending = vec![first_pending];
    let mut returned = Vec::new();
    for n in 2..=10 {
        match client.try_publish_message(message(n)) {
            Ok(p) => pending.push(p),
            Err((Error::Backpressure, back)) => returned.push(back),
            Err((e, _)) => panic!("{e}"),
        }
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(pending.len(), 4);
    let payloads: Vec<_> = returned.iter().map(|p| p.payload.clone()).collect();
    assert_eq!(payloads, ["5", "6", "7", "8", "9", "10"]);
    assert!(returned.iter().all(|p| p.properties.content_type.is_some()));
    peer.send(Packet::PubAck(PubAck::new(first.packet_id.unwrap())))
        .await;
    for n in 2..=4 {
        let Packet::Publish(p) = peer.recv_skipping_pings().await else {
            panic!("expected PUBLISH")
        };
        assert_eq!(p.payload, n.to_string());
        peer.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
            .await;
    }
    for p in pending {
        within("a pending publish", p).await.unwrap();
    }
    // A message given back is sent as it was, once there is room.
    let again = client.publish_message(returned.remove(0));
    let sending = tokio::spawn(async move { again.await });
    let Packet::Publish(p) = peer.recv_skipping_pings().await else {
        panic!("expected PUBLISH")
    };
    assert_eq!(p.payload, "5");
    assert_eq!(
        p.properties.content_type.as_ref().map(MqttString::as_str),
        Some("text/n")
    );
    peer.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
        .await;
    within("the publish", sending).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_full_window_makes_publish_wait_then_complete() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect_with(
        &broker,
        options(&broker).queue(QueueLimits {
            max_messages: 1,
            ..QueueLimits::default()
        }),
        ConnAck {
            properties: ConnAckProperties {
                receive_maximum: NonZeroU16::new(1),
                ..Default::default()
            },
            ..ConnAck::default()
        },
    )
    .await;
    // One in flight (Receive Maximum 1), one queued (queue of 1), one held
    // by the client task, one in the request channel.
    let publishing = tokio::spawn({
        let client = client.clone();
        async move {
            futures_util::future::join4(
                client
                    .publish("w", "1", QoS::AtLeastOnce, false)
                    .into_future(),
                client
                    .publish("w", "2", QoS::AtLeastOnce, false)
                    .into_future(),
                client
                    .publish("w", "3", QoS::AtLeastOnce, false)
                    .into_future(),
                client
                    .publish("w", "4", QoS::AtLeastOnce, false)
                    .into_future(),
            )
            .await
        }
    });
    let mut ids = Vec::new();
    for n in 1..=4 {
        let Packet::Publish(p) = peer.recv_skipping_pings().await else {
            panic!("expected PUBLISH")
        };
        assert_eq!(p.payload, n.to_string());
        // The window is full: nothing else comes until this is acknowledged.
        still_pending(
            "the next PUBLISH",
            Duration::from_millis(200),
            peer.recv_skipping_pings(),
        )
        .await;
        assert!(!publishing.is_finished());
        let pid = p.packet_id.unwrap();
        ids.push(pid);
        peer.send(Packet::PubAck(PubAck::new(pid))).await;
    }
    let (a, b, c, d) = within("the publishes", publishing).await.unwrap();
    for (result, pid) in [a, b, c, d].into_iter().zip(ids) {
        let published = result.unwrap();
        assert_eq!(published.packet_id, Some(pid));
        assert!(published.is_success());
    }
}

#[tokio::test]
async fn publish_completes_with_the_brokers_reason_code() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect(&broker, options(&broker)).await;
    for (qos, reason, final_reason) in [
        (QoS::AtLeastOnce, ReasonCode::NoMatchingSubscribers, None),
        (QoS::AtLeastOnce, ReasonCode::NotAuthorized, None),
        (QoS::ExactlyOnce, ReasonCode::QuotaExceeded, None),
        (
            QoS::ExactlyOnce,
            ReasonCode::NoMatchingSubscribers,
            Some(ReasonCode::Success),
        ),
    ] {
        let publishing = tokio::spawn({
            let client = client.clone();
            async move { client.publish("r", "x", qos, false).await }
        });
        let Packet::Publish(p) = peer.recv_skipping_pings().await else {
            panic!("expected PUBLISH")
        };
        let pid = p.packet_id.unwrap();
        match qos {
            QoS::AtLeastOnce => {
                peer.send(Packet::PubAck(PubAck::with_reason(pid, reason)))
                    .await
            }
            _ => {
                peer.send(Packet::PubRec(PubRec::with_reason(pid, reason)))
                    .await;
                if let Some(code) = final_reason {
                    assert!(matches!(
                        peer.recv_skipping_pings().await,
                        Packet::PubRel(_)
                    ));
                    peer.send(Packet::PubComp(PubComp::with_reason(pid, code)))
                        .await;
                }
            }
        }
        let published = within("the publish", publishing).await.unwrap().unwrap();
        // A QoS 2 message was accepted at PUBREC; its code is the one reported.
        assert_eq!(published.reason_code, reason, "{qos:?}");
        assert_eq!(published.is_success(), reason.is_success());
    }
    assert_eq!(
        client
            .publish("r", "x", QoS::AtMostOnce, false)
            .await
            .unwrap()
            .reason_code,
        ReasonCode::Success
    );
    let error = client
        .publish("bad/#", "x", QoS::AtMostOnce, false)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Publish(_)), "{error:?}");
}

#[tokio::test]
async fn subscribe_and_unsubscribe_complete_with_a_code_per_filter() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect(&broker, options(&broker)).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .subscribe([
                    ("a", QoS::AtMostOnce),
                    ("b", QoS::ExactlyOnce),
                    ("c", QoS::AtLeastOnce),
                ])
                .subscription_id(tern_codec::SubscriptionId::new(7).unwrap())
                .user_property("k", "v")
                .await
        }
    });
    let Packet::Subscribe(sub) = peer.recv_skipping_pings().await else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(
        sub.properties.subscription_identifier.map(|s| s.get()),
        Some(7)
    );
    assert_eq!(sub.properties.user_properties.len(), 1);
    let codes = vec![
        ReasonCode::Success,
        ReasonCode::GrantedQos2,
        ReasonCode::NotAuthorized,
    ];
    peer.send(Packet::SubAck(SubAck {
        packet_id: sub.packet_id,
        properties: Default::default(),
        reason_codes: codes.clone(),
    }))
    .await;
    assert_eq!(
        within("SUBACK", subscribing)
            .await
            .unwrap()
            .unwrap()
            .reason_codes,
        codes
    );

    let unsubscribing = tokio::spawn({
        let client = client.clone();
        async move { client.unsubscribe(["a", "zzz"]).await }
    });
    let Packet::Unsubscribe(unsub) = peer.recv_skipping_pings().await else {
        panic!("expected UNSUBSCRIBE")
    };
    assert_eq!(unsub.filters, vec!["a", "zzz"]);
    let codes = vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted];
    peer.send(Packet::UnsubAck(UnsubAck {
        packet_id: unsub.packet_id,
        properties: Default::default(),
        reason_codes: codes.clone(),
    }))
    .await;
    assert_eq!(
        within("UNSUBACK", unsubscribing)
            .await
            .unwrap()
            .unwrap()
            .reason_codes,
        codes
    );
}

#[tokio::test]
async fn manual_acks_carry_the_reason_and_leave_in_arrival_order() {
    let broker = FakeBroker::start().await;
    let (_client, mut messages, mut peer) =
        connect(&broker, options(&broker).manual_acks(true)).await;
    for n in 1..=3 {
        peer.send(publish("m", QoS::AtLeastOnce, Some(n), "x"))
            .await;
    }
    let mut got: Vec<Message> = Vec::new();
    for _ in 0..3 {
        got.push(within("a message", messages.recv()).await.unwrap());
    }
    assert!(got.iter().all(Message::needs_ack));
    still_pending(
        "a PUBACK before any ack",
        Duration::from_millis(200),
        peer.recv(),
    )
    .await;
    // Acknowledged out of order, with reasons; the third is dropped unacknowledged.
    let mut third = got.pop().unwrap();
    let mut second = got.pop().unwrap();
    let mut first = got.pop().unwrap();
    assert_eq!(
        second.ack(ReasonCode::Success).await.unwrap(),
        tern_client::Acked::Sent
    );
    still_pending(
        "a PUBACK while the first is undecided",
        Duration::from_millis(200),
        peer.recv(),
    )
    .await;
    first.ack(ReasonCode::NotAuthorized).await.unwrap();
    assert!(!first.needs_ack());
    let acker = third.take_acker().expect("QoS 1 with manual acks");
    assert_eq!(acker.packet_id(), id(3));
    drop(acker);
    for (n, code) in [
        (1, ReasonCode::NotAuthorized),
        (2, ReasonCode::Success),
        (3, ReasonCode::Success),
    ] {
        assert_eq!(
            peer.recv_skipping_pings().await,
            Packet::PubAck(PubAck::with_reason(id(n), code))
        );
    }
    // Acknowledging again is refused by the session.
    assert!(
        matches!(
            first.ack(ReasonCode::Success).await,
            Ok(tern_client::Acked::NothingToDo)
        ),
        "no handle left: nothing to do"
    );
}

#[tokio::test]
async fn an_ack_that_went_stale_across_a_reconnect_is_reported_not_failed() {
    let broker = FakeBroker::start().await;
    let (client, mut messages, mut peer) = connect(
        &broker,
        options(&broker)
            .session_expiry(300)
            .reconnect(fast())
            .manual_acks(true),
    )
    .await;
    let mut states = client.state_changes();
    peer.send(publish("m", QoS::AtLeastOnce, Some(1), "x"))
        .await;
    let mut message = within("the message", messages.recv()).await.unwrap();
    drop(peer);
    let mut peer = broker.accept().await;
    peer.recv_connect().await;
    peer.connack(true, ReasonCode::Success, ConnAckProperties::default())
        .await;
    wait_for_state(&mut states, "the reconnection", |s| {
        matches!(s, State::Connected { .. })
    })
    .await;
    // The broker will send the message again; this ack has nothing left
    // to acknowledge, and says so without an error.
    assert_eq!(
        message.ack(ReasonCode::Success).await.unwrap(),
        tern_client::Acked::Stale
    );
    // The resend is acknowledged as usual.
    peer.send(publish("m", QoS::AtLeastOnce, Some(1), "x"))
        .await;
    let mut again = within("the resend", messages.recv()).await.unwrap();
    assert_eq!(
        again.ack(ReasonCode::Success).await.unwrap(),
        tern_client::Acked::Sent
    );
    assert_eq!(
        peer.recv_skipping_pings().await,
        Packet::PubAck(PubAck::new(id(1)))
    );
}

#[tokio::test]
async fn refusals_on_reconnect_retry_when_transient_and_stop_when_not() {
    let broker = FakeBroker::start().await;
    let (client, mut messages, peer) = connect(&broker, options(&broker).reconnect(fast())).await;
    let mut states = client.state_changes();
    drop(peer);
    let mut peer = broker.accept().await;
    assert!(
        peer.recv_connect().await.clean_start,
        "not persistent: clean start"
    );
    peer.connack(false, ReasonCode::ServerUnavailable, Default::default())
        .await;
    let state = wait_for_state(&mut states, "a retry", |s| {
        matches!(
            s,
            State::Disconnected {
                error: Error::ConnectionRefused(_),
                ..
            }
        )
    })
    .await;
    let State::Disconnected { retry_in, .. } = state else {
        unreachable!()
    };
    assert!(retry_in <= Duration::from_millis(24), "{retry_in:?}");
    let mut peer = broker.accept().await;
    peer.recv_connect().await;
    peer.connack(false, ReasonCode::NotAuthorized, Default::default())
        .await;
    let state = wait_for_state(&mut states, "the end", |s| {
        matches!(s, State::Closed { .. })
    })
    .await;
    assert!(
        matches!(
            state,
            State::Closed {
                error: Some(Error::ConnectionRefused(ReasonCode::NotAuthorized))
            }
        ),
        "{state:?}"
    );
    assert!(
        within("the end of the stream", messages.recv())
            .await
            .is_none()
    );
}

#[tokio::test]
async fn disconnect_sends_the_reason_and_closes() {
    let broker = FakeBroker::start().await;
    let (client, mut messages, mut peer) = connect(&broker, options(&broker)).await;
    client
        .disconnect()
        .reason(ReasonCode::DisconnectWithWill)
        .await
        .unwrap();
    assert_eq!(
        peer.until_closed().await,
        vec![Packet::Disconnect(Box::new(Disconnect::new(
            ReasonCode::DisconnectWithWill
        )))]
    );
    assert!(matches!(client.state(), State::Closed { error: None }));
    assert!(messages.recv().await.is_none());
    assert!(matches!(
        client.publish("t", "x", QoS::AtMostOnce, false).await,
        Err(Error::Closed)
    ));
    // Disconnecting twice is harmless.
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn dropping_every_handle_disconnects() {
    let broker = FakeBroker::start().await;
    let (client, messages, mut peer) = connect(&broker, options(&broker)).await;
    drop(client);
    // The stream alone keeps the connection: a subscriber may only read.
    peer.send(publish("still", QoS::AtMostOnce, None, "here"))
        .await;
    let mut messages = messages;
    assert_eq!(
        within("a message", messages.recv()).await.unwrap().topic,
        "still"
    );
    drop(messages);
    assert_eq!(
        peer.until_closed().await,
        vec![Packet::Disconnect(Box::new(Disconnect::new(
            ReasonCode::Success
        )))]
    );
}

#[tokio::test]
async fn a_protocol_violation_closes_with_its_reason_code() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect(&broker, options(&broker)).await;
    let mut states = client.state_changes();
    // A second CONNACK is not allowed.
    peer.send(Packet::from(ConnAck::default())).await;
    let state = wait_for_state(&mut states, "the close", |s| {
        matches!(s, State::Closed { .. })
    })
    .await;
    let State::Closed {
        error: Some(Error::Protocol(violation)),
    } = state
    else {
        panic!("{state:?}")
    };
    assert_eq!(
        violation,
        tern_session::Violation::Rule(tern_session::Rule::SecondConnAck)
    );
    assert_eq!(
        peer.until_closed().await,
        vec![Packet::Disconnect(Box::new(Disconnect::new(
            ReasonCode::ProtocolError
        )))]
    );
}

/// A WebSocket fake: MQTT bytes cut across frames, and frames holding
/// several packets.
#[tokio::test]
#[allow(
    clippy::result_large_err,
    reason = "tungstenite's handshake callback type"
)]
async fn websocket_frames_carry_a_byte_stream() {
    use tokio_tungstenite::tungstenite::{
        Message as Ws,
        handshake::server::{Request, Response},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws =
            tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, mut resp: Response| {
                assert_eq!(req.uri().path(), "/mqtt");
                let protocols = req.headers().get("sec-websocket-protocol").unwrap();
                assert_eq!(protocols, "mqtt");
                resp.headers_mut()
                    .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
                Ok(resp)
            })
            .await
            .unwrap();
        let mut inbound = BytesMut::new();
        let mut next_packet = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
            if let Some(p) = Packet::decode(&mut inbound, V5, u32::MAX).unwrap() {
                return p;
            }
            match ws.next().await.unwrap().unwrap() {
                Ws::Binary(b) => inbound.extend_from_slice(&b),
                other => panic!("non-binary frame {other:?}"),
            }
        };
        assert!(matches!(next_packet(&mut ws).await, Packet::Connect(_)));
        let mut out = BytesMut::new();
        Packet::from(ConnAck::default())
            .encode(V5, &mut out)
            .unwrap();
        for n in 1..=2 {
            publish(
                "ws/t",
                QoS::AtMostOnce,
                None,
                if n == 1 { "one" } else { "two" },
            )
            .encode(V5, &mut out)
            .unwrap();
        }
        // CONNACK split in two frames; the rest (two PUBLISHes) in one.
        let out = out.freeze();
        ws.send(Ws::Binary(out.slice(..1))).await.unwrap();
        ws.send(Ws::Binary(out.slice(1..3))).await.unwrap();
        ws.send(Ws::Binary(out.slice(3..))).await.unwrap();
        let Packet::Publish(p) = next_packet(&mut ws).await else {
            panic!()
        };
        assert_eq!(p.payload, "back");
        let p = next_packet(&mut ws).await;
        assert_eq!(
            p,
            Packet::Disconnect(Box::new(Disconnect::new(ReasonCode::Success)))
        );
    });
    let url = format!("ws://127.0.0.1:{port}/mqtt");
    let (client, mut messages) = within(
        "connect",
        Client::connect(Options::from_url(&url).unwrap().reconnect(None)),
    )
    .await
    .unwrap();
    for expected in ["one", "two"] {
        let m = within("a message", messages.recv()).await.unwrap();
        assert_eq!(m.payload, expected);
    }
    client
        .publish("ws/back", "back", QoS::AtMostOnce, false)
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    within("the server script", server).await.unwrap();
}

#[tokio::test]
async fn a_connection_dropped_right_after_connack_keeps_backing_off() {
    let broker = FakeBroker::start().await;
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        jitter: 0.0,
        ..Backoff::default()
    };
    let (client, _messages, peer) =
        connect(&broker, options(&broker).reconnect(Some(backoff))).await;
    let mut states = client.state_changes();
    drop(peer);
    for expected in [50, 100, 200, 400, 400] {
        let state = wait_for_state(&mut states, "the drop", |s| {
            matches!(s, State::Disconnected { .. })
        })
        .await;
        let State::Disconnected { retry_in, .. } = state else {
            unreachable!()
        };
        assert_eq!(retry_in, Duration::from_millis(expected));
        // Accepted, and dropped at once.
        let (peer, _) = broker.accept_connected(false).await;
        wait_for_state(&mut states, "the reconnection", |s| {
            matches!(s, State::Connected { .. })
        })
        .await;
        drop(peer);
    }
}

#[tokio::test]
async fn invalid_filters_are_refused_before_they_are_sent() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect(&broker, options(&broker)).await;
    for bad in ["a/#/b", "a+", "$share/g", "$share//x"] {
        let error = client
            .subscribe([(bad, QoS::AtMostOnce)])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::InvalidFilter { filter, .. } if filter == bad),
            "{bad}: {error:?}"
        );
    }
    let error = client.unsubscribe(["x/#/"]).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid topic filter \"x/#/\": "),
        "{error}"
    );
    client.disconnect().await.unwrap();
    assert_eq!(
        peer.until_closed().await,
        vec![Packet::Disconnect(Box::new(Disconnect::new(
            ReasonCode::Success
        )))],
        "nothing was sent"
    );
}

#[tokio::test]
async fn unacknowledged_messages_go_again_with_dup_on_a_resumed_session() {
    let broker = FakeBroker::start().await;
    let (client, _messages, mut peer) = connect(
        &broker,
        options(&broker).session_expiry(60).reconnect(fast()),
    )
    .await;
    let publishing = tokio::spawn({
        let client = client.clone();
        async move {
            futures_util::future::join(
                client
                    .publish("d", "one", QoS::AtLeastOnce, false)
                    .into_future(),
                client
                    .publish("d", "two", QoS::ExactlyOnce, false)
                    .into_future(),
            )
            .await
        }
    });
    let mut first = Vec::new();
    for _ in 0..2 {
        let Packet::Publish(p) = peer.recv_skipping_pings().await else {
            panic!("expected PUBLISH")
        };
        assert!(!p.dup);
        first.push(p);
    }
    drop(peer);
    let mut peer = broker.accept().await;
    peer.recv_connect().await;
    peer.connack(true, ReasonCode::Success, ConnAckProperties::default())
        .await;
    for original in &first {
        let Packet::Publish(again) = peer.recv_skipping_pings().await else {
            panic!("expected PUBLISH")
        };
        assert!(again.dup, "a resend carries DUP [MQTT-3.3.1-1]");
        assert_eq!(again.packet_id, original.packet_id);
        assert_eq!(again.payload, original.payload);
    }
    let (one, two) = (first[0].packet_id.unwrap(), first[1].packet_id.unwrap());
    peer.send(Packet::PubAck(PubAck::new(one))).await;
    peer.send(Packet::PubRec(PubRec::new(two))).await;
    assert_eq!(
        peer.recv_skipping_pings().await,
        Packet::PubRel(tern_codec::PubRel::new(two))
    );
    peer.send(Packet::PubComp(PubComp::new(two))).await;
    let (a, b) = within("the publishes", publishing).await.unwrap();
    assert_eq!(a.unwrap().packet_id, Some(one));
    assert_eq!(b.unwrap().packet_id, Some(two));
}

/// SCRAM-SHA-256 against a broker that does not hold the credential: it
/// plays the exchange (with a credential from another password) and
/// "accepts", but cannot sign the final step, so the client refuses to
/// count itself connected (RFC 5802 §5's mutual authentication).
#[tokio::test]
async fn scram_refuses_a_broker_that_cannot_prove_the_credential() {
    use tern_codec::{Auth, AuthProperties};
    use tern_session::scram::{ClientFirst, ScramCredential, ScramServer};
    let broker = FakeBroker::start().await;
    let options = options(&broker)
        .scram_sha256("alice", b"wonderland")
        .unwrap();
    let connecting = tokio::spawn(Client::connect(options));
    let mut peer = broker.accept().await;
    let connect = peer.recv_connect().await;
    let method = connect.properties.authentication_method.clone();
    assert_eq!(method.as_ref().map(|m| m.as_str()), Some("SCRAM-SHA-256"));
    let first = ClientFirst::parse(&connect.properties.authentication_data.unwrap()).unwrap();
    assert_eq!(first.username, "alice");
    let impostor = ScramCredential::derive(b"guess", b"salt", 4096);
    let (server, server_first) = ScramServer::start(&first, impostor, "fake").unwrap();
    peer.send(Packet::Auth(Box::new(Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: method.clone(),
            authentication_data: Some(Bytes::from(server_first)),
            ..Default::default()
        },
    })))
    .await;
    let client_final = match peer.recv().await {
        Packet::Auth(a) => a.properties.authentication_data.unwrap(),
        other => panic!("expected AUTH, got {other:?}"),
    };
    // The impostor cannot check the proof either.
    assert!(server.finish(&client_final).is_err());
    peer.send(Packet::ConnAck(Box::new(ConnAck {
        properties: ConnAckProperties {
            authentication_method: method,
            authentication_data: Some(Bytes::from_static(
                b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            )),
            ..Default::default()
        },
        ..ConnAck::default()
    })))
    .await;
    match within("connect", connecting).await.unwrap() {
        Err(Error::Auth(why)) => assert!(why.contains("server signature"), "{why}"),
        other => panic!("expected Error::Auth, got {other:?}"),
    }
}
