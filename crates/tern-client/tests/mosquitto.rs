//! The client against Debian's mosquitto broker (`/usr/sbin/mosquitto`),
//! started by each test on free ports: MQTT 3.1.1 and 5.0, every QoS,
//! retained messages, wills, persistent sessions, manual acknowledgement,
//! WebSocket, refusals.

mod support;

use std::time::Duration;
use support::{mosquitto::Mosquitto, within};
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

#[tokio::test]
async fn every_qos_both_versions() {
    let broker = Mosquitto::start();
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

#[tokio::test]
async fn v5_reason_codes_and_properties_come_through() {
    let broker = Mosquitto::start();
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
    assert_eq!(p.user_properties[0].key, "unit");
    assert_eq!(p.user_properties[0].value, "celsius");
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

#[tokio::test]
async fn retained_messages_reach_later_subscribers_until_cleared() {
    let broker = Mosquitto::start();
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

#[tokio::test]
async fn the_will_is_published_when_the_connection_dies() {
    let broker = Mosquitto::start();
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
        let (_client, _messages) = std::thread::spawn(move || {
            let out = runtime.block_on(Client::connect(dying)).unwrap();
            runtime.shutdown_background();
            out
        })
        .join()
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

#[tokio::test]
async fn a_persistent_session_resumes_with_the_messages_queued_for_it() {
    let broker = Mosquitto::start();
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

#[tokio::test]
async fn manual_acks_hold_back_the_puback_until_the_application_acks() {
    let broker = Mosquitto::start();
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
    again.ack(ReasonCode::Success).await.unwrap();
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

#[tokio::test]
async fn websocket_transport() {
    let broker = Mosquitto::start_with_websocket();
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

#[tokio::test]
async fn refusals_name_the_reason_code() {
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

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    let mut broker = Mosquitto::start();
    let port = broker.port;
    let fast = tern_client::Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..Default::default()
    };
    let (client, mut messages) =
        connect(options(&broker.url(), "phoenix", V5).reconnect(Some(fast))).await;
    client
        .subscribe([("back", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut states = client.state_changes();
    drop(broker); // killed
    within(
        "the client to notice",
        states.wait_for(|s| matches!(s, State::Disconnected { .. })),
    )
    .await
    .unwrap();
    broker = Mosquitto::start_on(port);
    // mosquitto forgot everything: the client subscribes again by itself.
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
    // it proves mosquitto has handled it.
    client.subscribe([("sync", QoS::AtMostOnce)]).await.unwrap();
    let (publisher, _) = connect(options(&broker.url(), "witness", V5)).await;
    publisher
        .publish("back", "hello again", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next(&mut messages).await.payload, "hello again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_publishes_through_small_queues() {
    const EACH: usize = 500;
    let broker = Mosquitto::start();
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
