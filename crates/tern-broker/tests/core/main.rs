//! The broker core, sans-IO: clients from tern-session exchange real bytes
//! with it on a virtual clock. Each test checks one behaviour, named by the
//! specification statement where there is one.

mod net;

use core::time::Duration;
use net::Net;
use tern_broker::BrokerConfig;
use tern_codec::{
    ConnectProperties, DisconnectProperties, MqttString, Packet, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubscriptionOptions, UserProperty, Will,
    WillProperties,
};
use tern_session::{ClientEvent, CloseReason, ConnectOptions};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).unwrap()
}

fn persistent(id: &str, version: ProtocolVersion, expiry: u32) -> ConnectOptions {
    ConnectOptions {
        version,
        keep_alive: 0,
        clean_start: false,
        properties: ConnectProperties {
            session_expiry_interval: version.is_v5().then_some(expiry),
            ..Default::default()
        },
        ..ConnectOptions::new(s(id))
    }
}

fn published_reasons(net: &Net, i: usize) -> Vec<ReasonCode> {
    net.clients[i]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published { reason_code, .. } => Some(*reason_code),
            _ => None,
        })
        .collect()
}

#[test]
fn delivered_qos_is_the_lower_of_published_and_granted() {
    let mut net = Net::default();
    let sub = net.client("sub", V5);
    let publ = net.client("pub", V5);
    net.connect(sub);
    net.connect(publ);
    assert_eq!(
        net.subscribe_with(
            sub,
            "a/b",
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            None
        ),
        vec![ReasonCode::GrantedQos1]
    );
    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        net.publish(publ, "a/b", &n.to_string(), qos, false);
    }
    let got: Vec<_> = net.received(sub).into_iter().map(|m| (m.1, m.2)).collect();
    assert_eq!(
        got,
        vec![
            ("0".into(), QoS::AtMostOnce),
            ("1".into(), QoS::AtLeastOnce),
            ("2".into(), QoS::AtLeastOnce)
        ]
    );
    assert_eq!(
        published_reasons(&net, publ),
        vec![ReasonCode::Success, ReasonCode::Success]
    );
}

#[test]
fn mixed_versions_exchange_messages_and_properties_reach_only_v5() {
    let mut net = Net::default();
    let old = net.client("old", V311);
    let new = net.client("new", V5);
    let publ = net.client("pub", V5);
    for c in [old, new, publ] {
        net.connect(c);
    }
    net.subscribe(old, "t/#", QoS::ExactlyOnce);
    net.subscribe(new, "t/#", QoS::ExactlyOnce);
    let props = PublishProperties {
        content_type: Some(s("text/plain")),
        response_topic: Some(s("reply/here")),
        correlation_data: Some("c-1".into()),
        user_properties: vec![
            UserProperty::new(s("b"), s("2")),
            UserProperty::new(s("a"), s("1")),
            UserProperty::new(s("b"), s("3")),
        ]
        .into(),
        ..Default::default()
    };
    net.publish_msg(
        publ,
        Publish {
            topic: s("t/x"),
            qos: QoS::ExactlyOnce,
            payload: "hello".into(),
            properties: props.clone().into(),
            ..Publish::default()
        },
    );
    assert_eq!(
        net.received(old),
        vec![("t/x".into(), "hello".into(), QoS::ExactlyOnce, false)]
    );
    let m = &net.messages(new)[0];
    // [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]
    assert_eq!(m.properties.content_type, props.content_type);
    assert_eq!(m.properties.response_topic, props.response_topic);
    assert_eq!(m.properties.correlation_data, props.correlation_data);
    assert_eq!(m.properties.user_properties, props.user_properties);
}

#[test]
fn mqtt_3_3_4_2_overlapping_subscriptions_deliver_once_with_every_identifier() {
    let mut net = Net::default();
    let sub = net.client("sub", V5);
    let publ = net.client("pub", V5);
    net.connect(sub);
    net.connect(publ);
    net.subscribe_with(
        sub,
        "a/+",
        SubscriptionOptions::with_qos(QoS::AtMostOnce),
        Some(7),
    );
    net.subscribe_with(
        sub,
        "a/#",
        SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        Some(9),
    );
    net.publish(publ, "a/b", "x", QoS::ExactlyOnce, false);
    let got = net.messages(sub);
    assert_eq!(got.len(), 1, "one delivery per client");
    assert_eq!(got[0].qos, QoS::ExactlyOnce, "the highest granted QoS");
    let mut ids: Vec<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![7, 9], "[MQTT-3.3.4-3]");
}

#[test]
fn mqtt_4_7_2_1_dollar_topics_and_sys_publishing() {
    let mut net = Net::default();
    let sub = net.client("sub", V5);
    let publ = net.client("pub", V5);
    net.connect(sub);
    net.connect(publ);
    net.subscribe(sub, "#", QoS::AtMostOnce);
    net.subscribe(sub, "+/x", QoS::AtMostOnce);
    net.publish(publ, "$internal/x", "a", QoS::AtMostOnce, false);
    assert!(
        net.received(sub).is_empty(),
        "a first-level wildcard never matches $"
    );
    // Clients may not publish to $SYS.
    net.subscribe(sub, "$SYS/#", QoS::AtMostOnce);
    net.publish(publ, "$SYS/fake", "a", QoS::AtLeastOnce, false);
    assert!(net.received(sub).is_empty());
    assert_eq!(
        published_reasons(&net, publ),
        vec![ReasonCode::NotAuthorized]
    );
}

#[test]
fn qos1_publish_with_no_subscribers_is_acknowledged_with_0x10() {
    let mut net = Net::default();
    let publ = net.client("pub", V5);
    net.connect(publ);
    net.publish(publ, "nobody/home", "x", QoS::AtLeastOnce, false);
    assert_eq!(
        published_reasons(&net, publ),
        vec![ReasonCode::NoMatchingSubscribers]
    );
}

#[test]
fn mqtt_3_8_3_3_no_local_and_retain_as_published() {
    let mut net = Net::default();
    let me = net.client("me", V5);
    let other = net.client("other", V5);
    net.connect(me);
    net.connect(other);
    net.subscribe_with(
        me,
        "t",
        SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
        },
        None,
    );
    net.subscribe_with(
        other,
        "t",
        SubscriptionOptions {
            retain_as_published: true,
            ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
        },
        None,
    );
    net.publish(me, "t", "own", QoS::AtLeastOnce, true);
    assert!(net.received(me).is_empty(), "no local");
    assert_eq!(
        net.received(other),
        vec![("t".into(), "own".into(), QoS::AtLeastOnce, true)]
    );
    // Without retain-as-published the flag is cleared [MQTT-3.3.1-12].
    let plain = net.client("plain", V5);
    net.connect(plain);
    net.subscribe_with(
        plain,
        "t",
        SubscriptionOptions::with_qos(QoS::AtMostOnce),
        None,
    );
    net.clear_events(plain);
    net.publish(other, "t", "again", QoS::AtMostOnce, true);
    assert_eq!(
        net.received(plain),
        vec![("t".into(), "again".into(), QoS::AtMostOnce, false)]
    );
}

#[test]
fn retained_messages_set_replace_clear_and_retain_handling() {
    let mut net = Net::default();
    let publ = net.client("pub", V5);
    net.connect(publ);
    net.publish(publ, "r/1", "first", QoS::AtLeastOnce, true);
    net.publish(publ, "r/1", "second", QoS::AtLeastOnce, true);
    net.publish(publ, "r/2", "other", QoS::AtMostOnce, true);
    net.publish(publ, "r/2", "", QoS::AtMostOnce, true); // clears [MQTT-3.3.1-6]
    assert_eq!(net.broker.retained_count(), 1);

    let sub = net.client("sub", V5);
    net.connect(sub);
    net.subscribe(sub, "r/#", QoS::ExactlyOnce);
    // [MQTT-3.3.1-9]: the retained message, with RETAIN set.
    assert_eq!(
        net.received(sub),
        vec![("r/1".into(), "second".into(), QoS::AtLeastOnce, true)]
    );

    // Retain handling 1: only for a new subscription; 2: never.
    net.clear_events(sub);
    let if_new = SubscriptionOptions {
        retain_handling: RetainHandling::SendAtSubscribeIfNew,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    net.subscribe_with(sub, "r/#", if_new, None);
    assert!(net.received(sub).is_empty(), "the subscription existed");
    net.subscribe_with(sub, "r/+", if_new, None);
    assert_eq!(net.received(sub).len(), 1, "a new subscription");
    net.clear_events(sub);
    let never = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    net.subscribe_with(sub, "r/1", never, None);
    assert!(net.received(sub).is_empty());
}

#[test]
fn shared_subscriptions_take_turns_and_fall_back_to_offline_members() {
    let mut net = Net::default();
    let a = net.client_with(persistent("a", V5, 600));
    let b = net.client_with(persistent("b", V311, 0));
    let publ = net.client("pub", V5);
    for c in [a, b, publ] {
        net.connect(c);
    }
    net.subscribe(a, "$share/g/jobs/#", QoS::AtLeastOnce);
    net.subscribe(b, "$share/g/jobs/#", QoS::AtLeastOnce); // 3.1.1 clients may share too
    for n in 0..4 {
        net.publish(publ, "jobs/x", &n.to_string(), QoS::AtLeastOnce, false);
    }
    let got_a: Vec<_> = net.received(a).into_iter().map(|m| m.1).collect();
    let got_b: Vec<_> = net.received(b).into_iter().map(|m| m.1).collect();
    assert_eq!(got_a.len(), 2, "{got_a:?} / {got_b:?}");
    assert_eq!(got_b.len(), 2);
    // With `a` offline, everything goes to `b`; with both offline, `a`
    // (persistent) queues it.
    net.drop_link(a);
    net.clear_events(b);
    net.publish(publ, "jobs/y", "only-b", QoS::AtLeastOnce, false);
    assert_eq!(net.received(b).len(), 1);
    net.drop_link(b);
    net.publish(publ, "jobs/z", "queued", QoS::AtLeastOnce, false);
    net.clear_events(a);
    net.connect(a);
    assert_eq!(
        net.received(a).into_iter().map(|m| m.1).collect::<Vec<_>>(),
        vec!["queued"]
    );
}

#[test]
fn mqtt_3_1_4_3_take_over_disconnects_the_old_connection_with_0x8e() {
    let mut net = Net::default();
    let first = net.client_with(persistent("same", V5, 600));
    net.connect(first);
    net.subscribe(first, "t", QoS::AtLeastOnce);
    let second = net.client_with(persistent("same", V5, 600));
    net.connect(second);
    let closes: Vec<_> = net.clients[first]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Closed(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        closes,
        vec![CloseReason::PeerDisconnected {
            reason_code: ReasonCode::SessionTakenOver,
            reason_string: None
        }]
    );
    // The new connection resumed the session and its subscription.
    assert!(net.clients[second].events.iter().any(|e| matches!(
        e,
        ClientEvent::Connected {
            session_present: true,
            ..
        }
    )));
    let publ = net.client("pub", V5);
    net.connect(publ);
    net.publish(publ, "t", "x", QoS::AtLeastOnce, false);
    assert_eq!(net.received(second).len(), 1);
}

#[test]
fn persistent_sessions_queue_offline_messages_in_order() {
    for version in [V311, V5] {
        let mut net = Net::default();
        let sub = net.client_with(persistent("sub", version, 600));
        let publ = net.client("pub", V5);
        net.connect(sub);
        net.connect(publ);
        net.subscribe(sub, "q/#", QoS::ExactlyOnce);
        net.drop_link(sub);
        for n in 0..5 {
            let qos = [QoS::AtLeastOnce, QoS::ExactlyOnce][n % 2];
            net.publish(publ, "q/a", &n.to_string(), qos, false);
        }
        net.publish(publ, "q/a", "qos0", QoS::AtMostOnce, false); // not queued by default
        net.clear_events(sub);
        net.connect(sub);
        assert!(net.clients[sub].events.iter().any(|e| matches!(
            e,
            ClientEvent::Connected {
                session_present: true,
                ..
            }
        )));
        let got: Vec<_> = net.received(sub).into_iter().map(|m| m.1).collect();
        assert_eq!(got, vec!["0", "1", "2", "3", "4"], "{version}");
    }
}

#[test]
fn session_expiry_removes_the_session() {
    let mut net = Net::default();
    let sub = net.client_with(persistent("sub", V5, 10));
    net.connect(sub);
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    net.drop_link(sub);
    assert_eq!(net.broker.session_count(), 1);
    net.advance(Duration::from_millis(9_999));
    assert_eq!(net.broker.session_count(), 1);
    net.advance(Duration::from_millis(1));
    assert_eq!(net.broker.session_count(), 0);
    assert_eq!(net.broker.subscription_count(), 0);
    net.clear_events(sub);
    net.connect(sub);
    assert!(net.clients[sub].events.iter().any(|e| matches!(
        e,
        ClientEvent::Connected {
            session_present: false,
            ..
        }
    )));
}

fn with_will(id: &str, delay: Option<u32>, expiry: u32) -> ConnectOptions {
    ConnectOptions {
        will: Some(Will {
            topic: s("wills"),
            payload: format!("{id} is gone").into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: delay,
                ..Default::default()
            },
        }),
        ..persistent(id, V5, expiry)
    }
}

#[test]
fn wills_follow_the_rules() {
    let mut net = Net::default();
    let watcher = net.client("watcher", V5);
    net.connect(watcher);
    net.subscribe(watcher, "wills", QoS::AtLeastOnce);

    // Socket drop: published.
    let a = net.client_with(with_will("a", None, 0));
    net.connect(a);
    net.drop_link(a);
    assert_eq!(net.received(watcher).len(), 1);

    // Normal DISCONNECT: not published; 0x04: published.
    for (code, expect) in [
        (ReasonCode::Success, 1),
        (ReasonCode::DisconnectWithWill, 2),
    ] {
        let c = net.client_with(with_will("b", None, 0));
        net.connect(c);
        let now = net.now;
        net.session(c)
            .disconnect(now, code, DisconnectProperties::default())
            .unwrap();
        net.run();
        assert_eq!(net.received(watcher).len(), expect, "{code}");
    }

    // Will delay: cancelled by a reconnect in time [MQTT-3.1.3-9]...
    let d = net.client_with(with_will("d", Some(5), 600));
    net.connect(d);
    net.drop_link(d);
    net.advance(Duration::from_secs(4));
    net.connect(d);
    net.advance(Duration::from_secs(10));
    assert_eq!(net.received(watcher).len(), 2);
    // ...published after the delay otherwise...
    net.drop_link(d);
    net.advance(Duration::from_millis(4_999));
    assert_eq!(net.received(watcher).len(), 2);
    net.advance(Duration::from_millis(1));
    assert_eq!(net.received(watcher).len(), 3);
    // ...and at session end when that comes first.
    let e = net.client_with(with_will("e", Some(100), 3));
    net.connect(e);
    net.drop_link(e);
    net.advance(Duration::from_secs(3));
    assert_eq!(net.received(watcher).len(), 4);
    assert!(net.received(watcher)[3].1.contains("e is gone"));
}

#[test]
fn mqtt_3_2_2_16_an_empty_client_id_is_assigned() {
    let mut net = Net::default();
    let c = net.client("", V5);
    net.connect(c);
    let assigned = net.clients[c].events.iter().find_map(|e| match e {
        ClientEvent::Connected { connack, .. } => {
            connack.properties.assigned_client_identifier.clone()
        }
        _ => None,
    });
    assert!(assigned.is_some_and(|id| id.starts_with("tern-")));
}

#[test]
fn mqtt_3_3_2_5_messages_expire_in_offline_queues() {
    let mut net = Net::default();
    let sub = net.client_with(persistent("sub", V5, 600));
    let publ = net.client("pub", V5);
    net.connect(sub);
    net.connect(publ);
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    net.drop_link(sub);
    for (payload, expiry) in [("short", 2), ("long", 60)] {
        net.publish_msg(
            publ,
            Publish {
                topic: s("t"),
                qos: QoS::AtLeastOnce,
                payload: payload.into(),
                properties: PublishProperties {
                    message_expiry_interval: Some(expiry),
                    ..Default::default()
                }
                .into(),
                ..Publish::default()
            },
        );
    }
    net.advance(Duration::from_secs(5));
    net.clear_events(sub);
    net.connect(sub);
    let got = net.messages(sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, "long");
    assert_eq!(
        got[0].properties.message_expiry_interval,
        Some(55),
        "[MQTT-3.3.2-6]"
    );
}

#[test]
fn a_retained_message_expires_on_time_in_a_subscribers_queue() {
    // Retained at t=1s with a 5 s Message Expiry Interval: it expires at 6s.
    // Output credit of nothing: a connection whose client does not read
    // gets nothing more.
    let mut net = Net::new(BrokerConfig {
        sys_interval: None,
        output_credit: Some(tern_broker::OutputCredit {
            high_water: 0,
            low_water: 0,
        }),
        ..BrokerConfig::default()
    });
    let publ = net.client("pub", V5);
    let early = net.client("early", V5);
    let late = net.client("late", V5);
    for c in [publ, early, late] {
        net.connect(c);
    }
    net.publish_msg(
        publ,
        Publish {
            topic: s("t"),
            qos: QoS::AtLeastOnce,
            retain: true,
            payload: "r".into(),
            properties: PublishProperties {
                message_expiry_interval: Some(5),
                ..Default::default()
            }
            .into(),
            ..Publish::default()
        },
    );
    // Both subscribe at 1.9s while their connections are backed up: the
    // retained copies wait in their queues.
    net.advance(Duration::from_millis(900));
    for c in [early, late] {
        let conn = net.clients[c].conn.unwrap();
        net.stall(conn);
        let now = net.now;
        net.session(c)
            .subscribe(
                now,
                vec![tern_codec::SubscribeFilter {
                    filter: s("t"),
                    options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                }],
                Default::default(),
            )
            .unwrap();
    }
    net.run();
    // At 5.4s 0.6 s are left: the copy goes out with an interval of 1 s.
    net.advance(Duration::from_millis(3500));
    let conn = net.clients[early].conn.unwrap();
    net.unstall(conn);
    net.run();
    let got = net.messages(early);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].properties.message_expiry_interval,
        Some(1),
        "[MQTT-3.3.2-6]"
    );
    // At 6.4s it has expired: never sent [MQTT-3.3.2-5].
    net.advance(Duration::from_millis(1000));
    let conn = net.clients[late].conn.unwrap();
    net.unstall(conn);
    net.run();
    assert!(net.messages(late).is_empty(), "[MQTT-3.3.2-5]");
}

#[test]
fn sys_topics_are_published_as_retained_messages() {
    let mut net = Net::new(BrokerConfig {
        sys_interval: Some(Duration::from_secs(2)),
        ..BrokerConfig::default()
    });
    let c = net.client("watcher", V311);
    net.connect(c);
    net.advance(Duration::from_secs(2));
    net.subscribe(c, "$SYS/broker/clients/connected", QoS::AtMostOnce);
    assert_eq!(
        net.received(c),
        vec![(
            "$SYS/broker/clients/connected".into(),
            "1".into(),
            QoS::AtMostOnce,
            true
        )]
    );
}

#[test]
fn a_protocol_error_closes_only_that_connection() {
    let mut net = Net::default();
    let good = net.client("good", V5);
    let bad = net.client("bad", V5);
    net.connect(good);
    net.connect(bad);
    net.subscribe(good, "t", QoS::AtMostOnce);
    // A second CONNECT [MQTT-3.1.0-2].
    let conn = net.clients[bad].conn.unwrap();
    let now = net.now;
    net.broker.handle_packet(
        now,
        conn,
        Packet::Connect(Box::new(ConnectOptions::new(s("bad")).connect_packet())),
    );
    net.run();
    assert!(net.closed_by_broker.contains(&conn));
    assert!(net.sent.iter().any(|(c, p)| *c == conn
        && matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::ProtocolError)));
    let publ = net.client("pub", V5);
    net.connect(publ);
    net.publish(publ, "t", "still here", QoS::AtMostOnce, false);
    assert_eq!(net.received(good).len(), 1);
}

#[test]
fn a_session_is_visible_online_and_offline() {
    let mut net = Net::default();
    let sub = net.client_with(persistent("watched", V5, 600));
    let publ = net.client("pub", V5);
    net.connect(sub);
    net.connect(publ);
    net.subscribe(sub, "a/#", QoS::AtLeastOnce);
    assert_eq!(
        net.broker.session("watched").unwrap().subscriptions().len(),
        1
    );
    net.drop_link(sub);
    net.publish(publ, "a/b", "queued", QoS::AtLeastOnce, false);
    let offline = net.broker.session("watched").expect("offline session");
    assert_eq!(offline.queue_len(), 1);
    assert!(net.broker.session("nobody").is_none());
}

/// A store that outlives the broker using it, as a restart needs.
#[derive(Clone, Default)]
struct SharedStore(std::sync::Arc<std::sync::Mutex<tern_broker::MemoryStore>>);

impl tern_broker::Store for SharedStore {
    fn put_retained(&mut self, t: &tern_topic::TopicName, m: &tern_broker::RetainedMessage) {
        self.0.lock().unwrap().put_retained(t, m);
    }
    fn remove_retained(&mut self, t: &tern_topic::TopicName) {
        self.0.lock().unwrap().remove_retained(t);
    }
    fn put_session(&mut self, s: &tern_session::ServerSession, expiry: u32) {
        self.0.lock().unwrap().put_session(s, expiry);
    }
    fn remove_session(&mut self, id: &MqttString) {
        self.0.lock().unwrap().remove_session(id);
    }
    fn put_offline_state(
        &mut self,
        id: &MqttString,
        expires_at: Option<tern_session::Instant>,
        will: Option<(&Will, tern_session::Instant)>,
    ) {
        self.0
            .lock()
            .unwrap()
            .put_offline_state(id, expires_at, will);
    }
    fn load(&mut self) -> tern_broker::StoredState {
        self.0.lock().unwrap().load()
    }
}

#[test]
fn a_graceful_restart_keeps_messages_queued_for_offline_sessions() {
    let config = BrokerConfig {
        sys_interval: None,
        ..BrokerConfig::default()
    };
    let store = SharedStore::default();
    let start = |net: &Net| {
        tern_broker::Broker::with_hooks(
            config.clone(),
            net.now,
            Box::new(store.clone()),
            Box::new(tern_broker::AllowAll),
        )
    };
    let mut net = Net::new(config.clone());
    net.broker = start(&net);
    let sub = net.client_with(persistent("sub", V5, u32::MAX));
    let publ = net.client("pub", V5);
    net.connect(sub);
    net.connect(publ);
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    net.drop_link(sub);
    // Queued while the subscriber is offline, after its session was stored.
    net.publish(publ, "t", "queued", QoS::AtLeastOnce, false);
    net.broker.shutdown(net.now);
    net.run();
    net.broker = start(&net);
    net.clear_events(sub);
    net.connect(sub);
    assert_eq!(
        net.received(sub),
        vec![("t".into(), "queued".into(), QoS::AtLeastOnce, false)]
    );
}

#[test]
fn a_graceful_restart_keeps_a_will_waiting_for_its_delay() {
    let config = BrokerConfig {
        sys_interval: None,
        ..BrokerConfig::default()
    };
    let store = SharedStore::default();
    let start = |net: &Net| {
        tern_broker::Broker::with_hooks(
            config.clone(),
            net.now,
            Box::new(store.clone()),
            Box::new(tern_broker::AllowAll),
        )
    };
    let mut net = Net::new(config.clone());
    net.broker = start(&net);
    let watcher = net.client_with(persistent("watcher", V5, u32::MAX));
    let d = net.client_with(with_will("d", Some(5), 600));
    net.connect(watcher);
    net.subscribe(watcher, "wills", QoS::AtLeastOnce);
    net.connect(d);
    net.drop_link(d);
    net.advance(Duration::from_secs(1));
    net.broker.shutdown(net.now);
    net.run();
    net.broker = start(&net);
    net.connect(watcher);
    net.advance(Duration::from_secs(3));
    assert!(net.received(watcher).is_empty(), "not before its delay");
    net.advance(Duration::from_secs(2));
    assert_eq!(net.received(watcher).len(), 1, "[MQTT-3.1.3-9]");
}

#[test]
fn a_graceful_restart_does_not_extend_offline_sessions() {
    let config = BrokerConfig {
        sys_interval: None,
        ..BrokerConfig::default()
    };
    let store = SharedStore::default();
    let start = |net: &Net| {
        tern_broker::Broker::with_hooks(
            config.clone(),
            net.now,
            Box::new(store.clone()),
            Box::new(tern_broker::AllowAll),
        )
    };
    let mut net = Net::new(config.clone());
    net.broker = start(&net);
    // The session ends 10 s after the link drops; its will (delay 100 s)
    // goes out then [MQTT-3.1.3-9].
    let watcher = net.client_with(persistent("watcher", V5, u32::MAX));
    let e = net.client_with(with_will("e", Some(100), 10));
    net.connect(watcher);
    net.subscribe(watcher, "wills", QoS::AtLeastOnce);
    net.connect(e);
    net.drop_link(e);
    net.advance(Duration::from_secs(8));
    net.broker.shutdown(net.now);
    net.run();
    net.broker = start(&net);
    net.connect(watcher);
    assert_eq!(net.broker.session_count(), 2);
    net.advance(Duration::from_secs(3));
    assert_eq!(net.broker.session_count(), 1, "ended 10 s after the drop");
    assert_eq!(net.received(watcher).len(), 1, "with its will");
}

/// mosquitto's try_private: a 3.1.1 CONNECT with protocol level 0x84 is a
/// bridge. Its subscriptions get No Local and Retain As Published, as
/// mosquitto gives them (so what it sends is not echoed back to it, and
/// retained messages keep their flag across), and what it publishes is
/// marked with Tern's bridged property, so that no Tern bridge sends it out
/// again (a Tern rule: 3.1.1 carries no properties of its own).
#[test]
fn a_try_private_bridge_gets_no_local_retain_as_published_and_its_messages_marked() {
    let mut net = Net::default();
    let bridge = net.client_with(ConnectOptions {
        version: V311,
        try_private: true,
        ..ConnectOptions::new(s("bridge"))
    });
    let plain = net.client("plain", V311);
    let watcher = net.client("watcher", V5);
    for i in [bridge, plain, watcher] {
        net.connect(i);
        net.subscribe(i, "t/#", QoS::AtLeastOnce);
    }
    net.clear_events(bridge);
    net.clear_events(plain);
    net.clear_events(watcher);

    net.publish(bridge, "t/in", "from-remote", QoS::AtLeastOnce, true);
    assert!(net.received(bridge).is_empty(), "No Local for the bridge");
    assert_eq!(
        net.received(plain),
        vec![("t/in".into(), "from-remote".into(), QoS::AtLeastOnce, false)],
        "a plain 3.1.1 subscriber: the retain flag cleared [MQTT-3.3.1-9]"
    );
    let marked = net.messages(watcher);
    assert_eq!(marked.len(), 1);
    assert!(
        marked[0]
            .properties
            .user_properties
            .iter()
            .any(|p| p.key.as_str() == tern_broker::BRIDGED_PROPERTY),
        "marked as bridged: {:?}",
        marked[0].properties
    );

    net.publish(plain, "t/out", "to-remote", QoS::AtLeastOnce, true);
    assert_eq!(
        net.received(bridge),
        vec![("t/out".into(), "to-remote".into(), QoS::AtLeastOnce, true)],
        "Retain As Published for the bridge"
    );
    assert_eq!(
        net.received(plain).len(),
        2,
        "a plain client has no No Local"
    );
}
