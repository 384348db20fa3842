//! The client end to end against real brokers: Debian's mosquitto
//! (`/usr/sbin/mosquitto`) and Tern's own (`tern_broker::server`, in
//! process), each started by each test on free ports. Every test body runs
//! against both (`both_brokers!` makes `mosquitto::NAME` and `tern::NAME`):
//! MQTT 3.1.1 and 5.0, every QoS, retained messages, wills, persistent
//! sessions, reconnection with session resume, manual acknowledgement,
//! WebSocket, refusals.

mod support;

use std::{future::IntoFuture, time::Duration};
use support::{
    broker::{Kind, TestBroker},
    mosquitto::Mosquitto,
    proxy::{Mode, Proxy},
    within,
};
use tern_client::{Client, Error, Message, Messages, Options, State};
use tern_codec::{MqttString, ProtocolVersion, QoS, ReasonCode, Will};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn options(url: &str, id: &str, version: ProtocolVersion) -> Options {
    Options::from_url(url)
        .unwrap()
        .client_id(id)
        .unwrap()
        .version(version)
        .reconnect(None)
}

async fn connect(options: Options) -> (Client, Messages) {
    within("connect", Client::connect(options))
        .await
        .expect("connected to mosquitto")
}

async fn next(messages: &mut Messages) -> Message {
    within("a message", messages.recv())
        .await
        .expect("the stream is open")
}

async fn every_qos_both_versions(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let (sub, mut messages) = connect(options(&broker.url(), "sub", version)).await;
        let suback = sub
            .subscribe([("q/#", QoS::ExactlyOnce), ("other", QoS::AtLeastOnce)])
            .await
            .unwrap();
        assert_eq!(
            suback.reason_codes,
            vec![ReasonCode::GrantedQos2, ReasonCode::GrantedQos1]
        );
        let (publisher, _) = connect(options(&broker.url(), "pub", version)).await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let topic = format!("q/{}", qos.as_u8());
            let published = publisher
                .publish(&topic, format!("at {qos:?}"), qos, false)
                .await
                .unwrap();
            assert_eq!(published.qos, qos);
            assert_eq!(
                published.reason_code,
                ReasonCode::Success,
                "{version:?} {qos:?}"
            );
            assert_eq!(published.packet_id.is_some(), qos != QoS::AtMostOnce);
            let m = next(&mut messages).await;
            assert_eq!(m.topic, topic.as_str());
            assert_eq!(m.payload, format!("at {qos:?}"));
            assert_eq!(m.qos, qos);
            assert!(!m.retain);
        }
        let unsuback = sub.unsubscribe(["q/#"]).await.unwrap();
        assert_eq!(unsuback.reason_codes, vec![ReasonCode::Success]);
        publisher.disconnect().await.unwrap();
        sub.disconnect().await.unwrap();
        assert!(
            messages.recv().await.is_none(),
            "the stream ends with the client"
        );
    }
}

async fn v5_reason_codes_and_properties_come_through(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    let (client, mut messages) = connect(options(&broker.url(), "props", V5)).await;
    // Nobody subscribes yet: mosquitto says so in PUBACK.
    let published = client
        .publish("lonely", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(published.reason_code, ReasonCode::NoMatchingSubscribers);
    assert!(published.is_success());
    let unsuback = client.unsubscribe(["never/subscribed"]).await.unwrap();
    assert_eq!(
        unsuback.reason_codes,
        vec![ReasonCode::NoSubscriptionExisted]
    );

    client
        .subscribe([("props", QoS::AtLeastOnce)])
        .subscription_id(tern_codec::SubscriptionId::new(42).unwrap())
        .await
        .unwrap();
    client
        .publish("props", "{}", QoS::AtLeastOnce, false)
        .user_property("unit", "celsius")
        .content_type("application/json")
        .response_topic("replies")
        .correlation_data("c-1")
        .message_expiry(60)
        .await
        .unwrap();
    let m = next(&mut messages).await;
    let p = &m.properties;
    assert_eq!(p.user_properties.len(), 1);
    assert_eq!(p.user_properties.get(0).unwrap().key, "unit");
    assert_eq!(p.user_properties.get(0).unwrap().value, "celsius");
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("replies"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"c-1"[..]));
    assert!(p.message_expiry_interval.is_some_and(|s| s <= 60));
    assert_eq!(
        p.subscription_identifiers
            .iter()
            .map(|s| s.get())
            .collect::<Vec<_>>(),
        vec![42]
    );
}

async fn retained_messages_reach_later_subscribers_until_cleared(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let (publisher, _) = connect(options(&broker.url(), "retainer", version)).await;
        publisher
            .publish("kept", "last value", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        let (sub, mut messages) = connect(options(&broker.url(), "late", version)).await;
        sub.subscribe([("kept", QoS::AtLeastOnce)]).await.unwrap();
        let m = next(&mut messages).await;
        assert!(m.retain, "{version:?}");
        assert_eq!(m.payload, "last value");
        // An empty retained message clears it.
        publisher
            .publish("kept", "", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        let cleared = next(&mut messages).await;
        assert!(cleared.payload.is_empty());
        sub.disconnect().await.unwrap();
        let (sub, mut messages) = connect(options(&broker.url(), "later", version)).await;
        sub.subscribe([("kept", QoS::AtLeastOnce), ("marker", QoS::AtLeastOnce)])
            .await
            .unwrap();
        publisher
            .publish("marker", "m", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        // Had a retained message remained, it would have come before the marker.
        assert_eq!(next(&mut messages).await.topic, "marker");
    }
}

async fn the_will_is_published_when_the_connection_dies(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let (watcher, mut messages) = connect(options(&broker.url(), "watcher", version)).await;
        watcher
            .subscribe([("wills/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let will = Will {
            topic: MqttString::from_static("wills/dying"),
            payload: "gone".into(),
            qos: QoS::AtLeastOnce,
            ..Will::default()
        };
        // The dying client runs on its own runtime; shutting that down drops
        // the socket without DISCONNECT, as a crash would.
        let url = broker.url();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dying = options(&url, "dying", version).will(will.clone());
        // (On a blocking thread: Tern's broker runs on this test's runtime.)
        let (_client, _messages) = tokio::task::spawn_blocking(move || {
            let out = runtime.block_on(Client::connect(dying)).unwrap();
            runtime.shutdown_background();
            out
        })
        .await
        .unwrap();
        let m = next(&mut messages).await;
        assert_eq!(m.topic, "wills/dying", "{version:?}");
        assert_eq!(m.payload, "gone");

        if version.is_v5() {
            // MQTT 5: a DISCONNECT with 0x04 asks for the will too.
            let (client, _) = connect(options(&url, "leaving", version).will(will.clone())).await;
            client
                .disconnect()
                .reason(ReasonCode::DisconnectWithWill)
                .await
                .unwrap();
            assert_eq!(next(&mut messages).await.payload, "gone");
        }
        // A normal DISCONNECT discards it.
        let (client, _) = connect(options(&url, "polite", version).will(will)).await;
        client.disconnect().await.unwrap();
        watcher
            .publish("wills/marker", "m", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(next(&mut messages).await.topic, "wills/marker");
    }
}

async fn a_persistent_session_resumes_with_the_messages_queued_for_it(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let persistent = |clean| {
            let o = options(&broker.url(), "persistent", version).clean_start(clean);
            if version.is_v5() {
                o.session_expiry(300)
            } else {
                o
            }
        };
        // MQTT 3.1.1 keeps a session only without Clean Session; MQTT 5
        // keeps one after a clean start too, for its expiry interval.
        let (client, _) = connect(persistent(version.is_v5())).await;
        client
            .subscribe([("inbox", QoS::AtLeastOnce)])
            .await
            .unwrap();
        client.disconnect().await.unwrap();

        let (publisher, _) = connect(options(&broker.url(), "sender", version)).await;
        publisher
            .publish("inbox", "while you were away", QoS::AtLeastOnce, false)
            .await
            .unwrap();

        let (client, mut messages) = connect(persistent(false)).await;
        assert!(
            matches!(
                client.state(),
                State::Connected {
                    session_present: true,
                    ..
                }
            ),
            "{version:?}: {:?}",
            client.state()
        );
        let m = next(&mut messages).await;
        assert_eq!(m.payload, "while you were away");
        client.disconnect().await.unwrap();
    }
}

async fn manual_acks_hold_back_the_puback_until_the_application_acks(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    let subscriber = |clean| {
        options(&broker.url(), "careful", V5)
            .clean_start(clean)
            .session_expiry(300)
            .manual_acks(true)
    };
    let (client, mut messages) = connect(subscriber(true)).await;
    client
        .subscribe([("work", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let (publisher, _) = connect(options(&broker.url(), "boss", V5)).await;
    publisher
        .publish("work", "job 1", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let mut m = next(&mut messages).await;
    assert!(m.needs_ack());
    let unacked = m.take_acker().unwrap();
    client.disconnect().await.unwrap();
    drop(unacked); // too late: that connection is gone

    // Not acknowledged: mosquitto sends it again on the resumed session.
    let (client, mut messages) = connect(subscriber(false)).await;
    let mut again = next(&mut messages).await;
    assert_eq!(again.payload, "job 1");
    assert!(again.dup, "a redelivery");
    // A PUBACK with an error reason code still ends the flow
    // [MQTT-4.3.2-4]: the application refuses the job, nothing comes again.
    again
        .ack(ReasonCode::ImplementationSpecificError)
        .await
        .unwrap();
    client.disconnect().await.unwrap();

    // Acknowledged now: nothing comes a third time.
    let (client, mut messages) = connect(subscriber(false)).await;
    publisher
        .publish("work", "job 2", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let mut m = next(&mut messages).await;
    assert_eq!(m.payload, "job 2", "job 1 is not delivered again");
    m.ack(ReasonCode::Success).await.unwrap();
    client.disconnect().await.unwrap();
}

async fn websocket_transport(kind: Kind) {
    let broker = TestBroker::start_with_websocket(kind).await;
    for version in [V311, V5] {
        let (client, mut messages) = connect(options(&broker.ws_url(), "ws", version)).await;
        client
            .subscribe([("ws/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        // Larger than one read, to cross buffer edges. (Not much larger:
        // mosquitto 2.0 sends to WebSocket clients one chunk per turn of its
        // ~100 ms service loop.)
        let big = vec![b'x'; 20_000];
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let published = client
                .publish("ws/t", big.clone(), qos, false)
                .await
                .unwrap();
            assert!(published.is_success());
            let m = next(&mut messages).await;
            assert_eq!(m.payload.len(), big.len());
            assert_eq!(m.qos, qos);
        }
        client.disconnect().await.unwrap();
    }
}

async fn refusals_name_the_reason_code(kind: Kind) {
    match kind {
        Kind::Mosquitto => {
            let broker = Mosquitto::start_with(false, "allow_anonymous false\n");
            for version in [V311, V5] {
                let error = Client::connect(options(&broker.url(), "stranger", version))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(error, Error::ConnectionRefused(ReasonCode::NotAuthorized)),
                    "{version:?}: {error:?}"
                );
                assert_eq!(error.to_string(), "connection refused: 0x87 Not authorized");
            }
        }
        Kind::Tern => {
            // Tern allows anonymous clients; it refuses what the protocol
            // makes it refuse.
            let broker = TestBroker::start(kind).await;
            // 3.1.1: an empty client identifier needs a clean session
            // [MQTT-3.1.3-7]: the client refuses before sending anything.
            // (Tern's answer to a client that sends it anyway, return code
            // 0x02 [MQTT-3.1.3-8], is tested with raw packets in
            // tern-broker's tests and the conformance suite.)
            let error = Client::connect(
                Options::from_url(&broker.url())
                    .unwrap()
                    .version(V311)
                    .clean_start(false)
                    .reconnect(None),
            )
            .await
            .unwrap_err();
            assert!(matches!(error, Error::InvalidOptions(_)), "{error:?}");
            // MQTT 5: no enhanced authentication method is offered.
            let properties = tern_codec::ConnectProperties {
                authentication_method: Some(MqttString::from_static("SCRAM-SHA-1")),
                ..Default::default()
            };
            let error = Client::connect(options(&broker.url(), "scram", V5).properties(properties))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::ConnectionRefused(ReasonCode::BadAuthenticationMethod)
                ),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                "connection refused: 0x8C Bad authentication method"
            );
        }
    }
}

fn fast_reconnect() -> Option<tern_client::Backoff> {
    Some(tern_client::Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..Default::default()
    })
}

async fn reconnects_after_the_broker_restarts(kind: Kind) {
    let mut broker = TestBroker::start(kind).await;
    let (client, mut messages) =
        connect(options(&broker.url(), "phoenix", V5).reconnect(fast_reconnect())).await;
    client
        .subscribe([("back", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut states = client.state_changes();
    broker.stop().await;
    within(
        "the client to notice",
        states.wait_for(|s| matches!(s, State::Disconnected { .. })),
    )
    .await
    .unwrap();
    broker.restart().await;
    // The broker forgot everything: the client subscribes again by itself.
    within(
        "the reconnection",
        states.wait_for(|s| {
            matches!(
                s,
                State::Connected {
                    session_present: false,
                    ..
                }
            )
        }),
    )
    .await
    .unwrap();
    // The SUBSCRIBE went out right after CONNACK; a request answered after
    // it proves the broker has handled it.
    client.subscribe([("sync", QoS::AtMostOnce)]).await.unwrap();
    let (publisher, _) = connect(options(&broker.url(), "witness", V5)).await;
    publisher
        .publish("back", "hello again", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next(&mut messages).await.payload, "hello again");
}

/// Options for a client whose session outlives its connections and that
/// reconnects at once.
fn resumable(url: &str, id: &str, version: ProtocolVersion) -> Options {
    let o = options(url, id, version)
        .clean_start(false)
        .reconnect(fast_reconnect());
    if version.is_v5() {
        o.session_expiry(300)
    } else {
        o
    }
}

/// Waits until the client is connected again on a resumed session.
async fn resumed(client: &Client) {
    let mut states = client.state_changes();
    within(
        "a reconnection with the session resumed",
        states.wait_for(|s| {
            matches!(
                s,
                State::Connected {
                    session_present: true,
                    ..
                }
            )
        }),
    )
    .await
    .unwrap();
}

async fn pending_publishes_complete_once_after_a_lost_connection(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let proxy = Proxy::start(([127, 0, 0, 1], broker.port()).into()).await;
        let (watcher, mut messages) =
            connect(options(&broker.url(), "lost-acks-watch", version)).await;
        watcher
            .subscribe([("lost/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        let (publisher, _) = connect(resumable(&proxy.url(), "lost-acks", version)).await;
        // The broker gets both messages, the publisher none of the acks.
        proxy.set(Mode::LoseReplies);
        let one = tokio::spawn({
            let p = publisher.clone();
            async move { p.publish("lost/1", "one", QoS::AtLeastOnce, false).await }
        });
        let two = tokio::spawn({
            let p = publisher.clone();
            async move { p.publish("lost/2", "two", QoS::ExactlyOnce, false).await }
        });
        // QoS 1 reaches subscribers on receipt; QoS 2 on receipt (Tern) or
        // on PUBREL (mosquitto), so "two" may come now or after the cut.
        let mut twos = 0;
        loop {
            let m = next(&mut messages).await;
            match m.topic.as_str() {
                "lost/1" => break,
                "lost/2" => twos += 1,
                other => panic!("unexpected {other}"),
            }
        }
        assert!(
            !one.is_finished() && !two.is_finished(),
            "the acks were lost"
        );
        // The connection dies; the client comes back on its session and
        // finishes both flows: the futures complete, once each.
        proxy.cut();
        resumed(&publisher).await;
        let one = within("the QoS 1 publish", one).await.unwrap().unwrap();
        let two = within("the QoS 2 publish", two).await.unwrap().unwrap();
        assert!(one.is_success() && two.is_success(), "{one:?} {two:?}");
        // QoS 2 is delivered exactly once; QoS 1 at least once (the resent
        // PUBLISH may be delivered again).
        publisher
            .publish("lost/marker", "m", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        loop {
            let m = next(&mut messages).await;
            match m.topic.as_str() {
                "lost/marker" => break,
                "lost/1" => assert_eq!(m.payload, "one"),
                "lost/2" => twos += 1,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(twos, 1, "{version:?}: QoS 2 delivered {twos} times");
        publisher.disconnect().await.unwrap();
        watcher.disconnect().await.unwrap();
    }
}

async fn unacknowledged_deliveries_come_again_after_a_lost_connection(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let proxy = Proxy::start(([127, 0, 0, 1], broker.port()).into()).await;
        let (sub, mut messages) = connect(resumable(&proxy.url(), "lost-puback", version)).await;
        sub.subscribe([("again/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        let (publisher, _) = connect(options(&broker.url(), "again-pub", version)).await;
        // The subscriber's PUBACK and PUBREC never reach the broker.
        proxy.set(Mode::LoseRequests);
        publisher
            .publish("again/1", "one", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        publisher
            .publish("again/2", "two", QoS::ExactlyOnce, false)
            .await
            .unwrap();
        let first = next(&mut messages).await;
        assert_eq!((first.topic.as_str(), first.dup), ("again/1", false));
        let second = next(&mut messages).await;
        assert_eq!(second.topic, "again/2");
        proxy.cut();
        resumed(&sub).await;
        // The broker sends the QoS 1 message again, with DUP
        // [MQTT-4.4.0-1]; the QoS 2 one it sends again too, but the client
        // already has it and does not hand it over twice.
        let again = next(&mut messages).await;
        assert_eq!(
            (again.topic.as_str(), again.dup),
            ("again/1", true),
            "{version:?}"
        );
        publisher
            .publish("again/marker", "m", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(
            next(&mut messages).await.topic,
            "again/marker",
            "{version:?}"
        );
        sub.disconnect().await.unwrap();
    }
}

async fn many_concurrent_publishes_through_small_queues(kind: Kind) {
    const EACH: usize = 500;
    // What is tested is the client's small queues. Tern's broker refuses
    // (0x97) QoS 1/2 messages once a subscriber's queue holds
    // `max_queued_messages` (1,000 by default, in flight included), which
    // all 1,000 of these could reach before the slow subscriber reads:
    // give it room.
    let broker = match kind {
        Kind::Tern => {
            TestBroker::start_tern_with(|s| s.limits.max_queued_messages = 20 * EACH).await
        }
        Kind::Mosquitto => TestBroker::start(kind).await,
    };
    let (sub, mut messages) =
        connect(options(&broker.url(), "many-sub", V5).message_capacity(4)).await;
    sub.subscribe([("many/#", QoS::ExactlyOnce)]).await.unwrap();
    let (publisher, _) = connect(
        options(&broker.url(), "many-pub", V5)
            .command_capacity(4)
            .queue(tern_session::QueueLimits {
                max_messages: 8,
                ..Default::default()
            }),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..EACH {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let publisher = publisher.clone();
            tasks.spawn(async move {
                let topic = format!("many/{}", qos.as_u8());
                publisher.publish(&topic, n.to_string(), qos, false).await
            });
        }
    }
    // Read while publishing: the subscriber's stream is tiny.
    let mut seen = [vec![false; EACH], vec![false; EACH]];
    for _ in 0..2 * EACH {
        let m = next(&mut messages).await;
        let n: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        let lane = usize::from(m.qos == QoS::ExactlyOnce);
        assert!(!seen[lane][n], "{:?} {n} delivered twice", m.qos);
        seen[lane][n] = true;
    }
    while let Some(done) = within("the publishes", tasks.join_next()).await {
        let published = done.unwrap().unwrap();
        assert_eq!(published.reason_code, ReasonCode::Success);
    }
    assert!(seen.iter().flatten().all(|s| *s));
}

async fn topic_aliases_both_ways_keep_the_topics(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    // Both clients use aliases towards the broker and accept them from it
    // (Tern's broker sends them; mosquitto does not, which is allowed).
    let aliasing = |id| {
        let mut o = options(&broker.url(), id, V5).properties(tern_codec::ConnectProperties {
            topic_alias_maximum: Some(2),
            ..Default::default()
        });
        o.session.outgoing_topic_aliases = 2;
        o
    };
    let (sub, mut messages) = connect(aliasing("alias-sub")).await;
    sub.subscribe([("aliased/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let (publisher, _) = connect(aliasing("alias-pub")).await;
    let topics = [
        "aliased/a/rather/long/topic",
        "aliased/a/rather/long/topic",
        "aliased/b",
        "aliased/c",
        "aliased/a/rather/long/topic",
        "aliased/b",
    ];
    for (n, topic) in topics.iter().enumerate() {
        let qos = if n % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        publisher
            .publish(topic, n.to_string(), qos, false)
            .await
            .unwrap();
    }
    for (n, topic) in topics.iter().enumerate() {
        let m = next(&mut messages).await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            (*topic, n.to_string().as_bytes())
        );
        assert_eq!(
            m.properties.topic_alias, None,
            "aliases stay inside the client"
        );
    }
}

/// Tern's broker only: a configured maximum keep alive.
#[tokio::test]
async fn the_client_keeps_to_the_server_keep_alive_mqtt_3_2_2_21() {
    let broker = TestBroker::start_tern_with(|s| s.limits.max_keep_alive = Some(1)).await;
    // Asks for 60 s; told 1 s. Were it to keep to 60 s, the broker would
    // close it after 1.5 s of silence.
    let (client, mut messages) =
        connect(options(&broker.url(), "obedient", V5).keep_alive(Duration::from_secs(60))).await;
    match client.state() {
        State::Connected { connack, .. } => {
            assert_eq!(connack.properties.server_keep_alive, Some(1))
        }
        other => panic!("{other:?}"),
    }
    let mut states = client.state_changes();
    states.borrow_and_update();
    // The behaviour under test is the passing of time: three keep-alive
    // periods without a state change.
    support::still_pending(
        "a state change",
        Duration::from_millis(3500),
        states.changed(),
    )
    .await;
    client
        .subscribe([("still/here", QoS::AtLeastOnce)])
        .await
        .unwrap();
    client
        .publish("still/here", "yes", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next(&mut messages).await.payload, "yes");
}

/// Tern's broker only: a small Receive Maximum and Topic Alias Maximum,
/// which it enforces by closing the connection (0x93, 0x94).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_keeps_to_the_brokers_receive_maximum_mqtt_3_3_4_7() {
    let broker = TestBroker::start_tern_with(|s| {
        s.limits.max_inflight = std::num::NonZeroU16::new(2).unwrap();
        s.limits.topic_alias_maximum = 1;
    })
    .await;
    let mut o = options(&broker.url(), "patient", V5);
    // Asks for more aliases than the broker allows: it must use at most 1.
    o.session.outgoing_topic_aliases = 8;
    let (client, _) = connect(o).await;
    let mut states = client.state_changes();
    states.borrow_and_update();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200u32 {
        let client = client.clone();
        tasks.spawn(async move {
            let qos = if n % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let topic = format!("window/{}", n % 3);
            client.publish(&topic, n.to_string(), qos, false).await
        });
    }
    while let Some(done) = within("the publishes", tasks.join_next()).await {
        let published = done.unwrap().unwrap();
        assert_eq!(published.reason_code, ReasonCode::NoMatchingSubscribers);
    }
    // One connection all along: the broker never had to close it.
    assert!(
        !states.has_changed().unwrap(),
        "the connection changed state: {:?}",
        client.state()
    );
}

/// Tern's broker only: a small Maximum Packet Size.
#[tokio::test]
async fn the_client_refuses_to_send_over_the_brokers_maximum_packet_size_mqtt_3_2_2_15() {
    let broker = TestBroker::start_tern_with(|s| s.limits.max_packet_size = 1024).await;
    let (client, mut messages) = connect(options(&broker.url(), "modest", V5)).await;
    client
        .subscribe([("size/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut states = client.state_changes();
    states.borrow_and_update();
    let error = within(
        "the refusal",
        client
            .publish("size/big", vec![b'x'; 2000], QoS::AtLeastOnce, false)
            .into_future(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Publish(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("exceeds the server's maximum packet size 1024"),
        "{error}"
    );
    // Refused locally; the connection is still there and still works.
    client
        .publish("size/small", "fits", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next(&mut messages).await.topic, "size/small");
    assert!(!states.has_changed().unwrap(), "{:?}", client.state());
}

/// Tern's broker only: Maximum QoS 1 and no retained messages, which it
/// enforces by closing the connection (0x9B, 0x9A).
#[tokio::test]
async fn the_client_keeps_to_maximum_qos_and_retain_available_mqtt_3_2_2_11_and_14() {
    let broker = TestBroker::start_tern_with(|s| {
        s.limits.maximum_qos = QoS::AtLeastOnce;
        s.limits.retain_available = false;
    })
    .await;
    let (client, mut messages) = connect(options(&broker.url(), "limited", V5)).await;
    client
        .subscribe([("lim/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut states = client.state_changes();
    states.borrow_and_update();
    let qos2 = within(
        "a QoS 2 publish",
        client
            .publish("lim/q2", "two", QoS::ExactlyOnce, false)
            .into_future(),
    )
    .await;
    let retained = within(
        "a retained publish",
        client
            .publish("lim/r", "kept", QoS::AtLeastOnce, true)
            .into_future(),
    )
    .await;
    // Refused by the client, before anything is sent.
    assert!(matches!(qos2, Err(Error::Publish(_))), "{qos2:?}");
    assert!(matches!(retained, Err(Error::Publish(_))), "{retained:?}");
    client
        .publish("lim/after", "fine", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next(&mut messages).await.topic, "lim/after");
    assert!(!states.has_changed().unwrap(), "{:?}", client.state());
}

/// `Client::connect` returns once the state says `Connected` (it used to
/// return a moment before, so `state()` could still say `Connecting`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_returns_with_the_state_connected() {
    let broker = TestBroker::start(Kind::Tern).await;
    for n in 0..50 {
        let (client, _) = connect(options(&broker.url(), &format!("prompt-{n}"), V5)).await;
        assert!(
            matches!(client.state(), State::Connected { .. }),
            "attempt {n}: {:?}",
            client.state()
        );
        client.disconnect().await.unwrap();
    }
}

async fn shared_subscriptions_split_the_messages(kind: Kind) {
    let broker = TestBroker::start(kind).await;
    for version in [V311, V5] {
        let (a, mut a_messages) = connect(options(&broker.url(), "worker-a", version)).await;
        let (b, mut b_messages) = connect(options(&broker.url(), "worker-b", version)).await;
        for worker in [&a, &b] {
            let suback = worker
                .subscribe([("$share/workers/jobs/+", QoS::AtLeastOnce)])
                .await
                .unwrap();
            assert_eq!(suback.reason_codes, vec![ReasonCode::GrantedQos1]);
        }
        let (publisher, _) = connect(options(&broker.url(), "dispatcher", version)).await;
        const N: usize = 10;
        for n in 0..N {
            publisher
                .publish("jobs/x", n.to_string(), QoS::AtLeastOnce, false)
                .await
                .unwrap();
        }
        // Every job once, to one worker or the other, and both get some.
        let mut seen = [false; N];
        let (mut from_a, mut from_b) = (0, 0);
        while from_a + from_b < N {
            let m = tokio::select! {
                m = a_messages.recv() => { from_a += 1; m }
                m = b_messages.recv() => { from_b += 1; m }
                () = tokio::time::sleep(support::PATIENCE) => panic!("a job is missing"),
            };
            let n: usize = std::str::from_utf8(&m.unwrap().payload)
                .unwrap()
                .parse()
                .unwrap();
            assert!(!seen[n], "{version:?}: job {n} twice");
            seen[n] = true;
        }
        assert!(from_a > 0 && from_b > 0, "{version:?}: {from_a} / {from_b}");
        for c in [a, b, publisher] {
            c.disconnect().await.unwrap();
        }
    }
}

/// Tern's broker only (mosquitto 2.0 sends WebSocket clients one chunk per
/// turn of its service loop, which makes this slow): large messages over
/// `ws://` both ways, several in flight.
#[tokio::test]
async fn large_messages_over_websocket() {
    let broker = TestBroker::start_with_websocket(Kind::Tern).await;
    let (client, mut messages) = connect(options(&broker.ws_url(), "ws-large", V5)).await;
    client
        .subscribe([("wsl/#", QoS::ExactlyOnce)])
        .await
        .unwrap();
    let payloads: Vec<Vec<u8>> = (0..4u8)
        .map(|n| (0..600_000u32).map(|i| (i % 251) as u8 ^ n).collect())
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, payload) in payloads.iter().enumerate() {
        let client = client.clone();
        let payload = payload.clone();
        tasks.spawn(async move {
            let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][n % 3];
            client
                .publish(&format!("wsl/{n}"), payload, qos, false)
                .await
        });
    }
    let mut seen = [false; 4];
    for _ in 0..4 {
        let m = next(&mut messages).await;
        let n: usize = m.topic.strip_prefix("wsl/").unwrap().parse().unwrap();
        assert!(m.payload == payloads[n], "message {n} intact");
        seen[n] = true;
    }
    assert!(seen.iter().all(|s| *s));
    while let Some(done) = within("the publishes", tasks.join_next()).await {
        assert!(done.unwrap().unwrap().is_success());
    }
}

/// `mosquitto::NAME` and `tern::NAME` for each test body `NAME(kind)`.
macro_rules! both_brokers {
    ($($name:ident),* $(,)?) => {
        mod mosquitto {
            use super::*;
            $(#[tokio::test]
            async fn $name() {
                super::$name(Kind::Mosquitto).await
            })*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_concurrent_publishes_through_small_queues() {
                super::many_concurrent_publishes_through_small_queues(Kind::Mosquitto).await
            }
        }
        mod tern {
            use super::*;
            $(#[tokio::test]
            async fn $name() {
                super::$name(Kind::Tern).await
            })*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_concurrent_publishes_through_small_queues() {
                super::many_concurrent_publishes_through_small_queues(Kind::Tern).await
            }
        }
    };
}

both_brokers!(
    every_qos_both_versions,
    v5_reason_codes_and_properties_come_through,
    retained_messages_reach_later_subscribers_until_cleared,
    the_will_is_published_when_the_connection_dies,
    a_persistent_session_resumes_with_the_messages_queued_for_it,
    manual_acks_hold_back_the_puback_until_the_application_acks,
    websocket_transport,
    refusals_name_the_reason_code,
    reconnects_after_the_broker_restarts,
    pending_publishes_complete_once_after_a_lost_connection,
    unacknowledged_deliveries_come_again_after_a_lost_connection,
    topic_aliases_both_ways_keep_the_topics,
    shared_subscriptions_split_the_messages,
);
