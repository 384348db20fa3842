//! Every checker can fail: each test feeds one checker a fabricated history
//! that breaks its invariant (and, where it helps, the same history without
//! the fault, which must pass).

use bytes::Bytes;
use std::collections::BTreeMap;
use tern_broker::{Broker, BrokerConfig, BrokerEvent};
use tern_codec::{
    ConnAck, Connect, ConnectProperties, Disconnect, MqttString, Packet, PacketId, ProtocolVersion,
    PubAck, Publish, PublishProperties, QoS, ReasonCode, Subscribe, SubscribeFilter,
    SubscriptionOptions, Will, WillProperties,
};
use tern_session::{ClientEvent, CloseReason, Instant, QueueLimits, Rule, Violation};
use tern_sim::{
    check::{
        Bounds, Checker, Delivery, Expiry, Integrity, Limits, Order, PacketIds, Retained, Verdict,
        Wills,
    },
    model::{Model, MsgId, Obs, Role},
};

/// Client 0 publishes, client 1 is a durable subscriber, client 2 a will
/// watcher, client 3 the retained probe.
struct Feed {
    model: Model,
    checker: Box<dyn Checker>,
    now: Instant,
    broker: Broker,
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text.to_string()).unwrap()
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn publish(msg: MsgId, topic: &str, qos: QoS, id: Option<u16>, dup: bool) -> Publish {
    Publish {
        topic: s(topic),
        qos,
        dup,
        packet_id: id.map(pid),
        payload: msg.payload(0),
        ..Publish::default()
    }
}

fn message(publish: Publish) -> ClientEvent {
    ClientEvent::Message { publish, ack: None }
}

fn connect(client_id: &str, clean_start: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        client_id: s(client_id),
        properties: ConnectProperties {
            session_expiry_interval: Some(u32::MAX),
            ..Default::default()
        },
        ..Connect::default()
    }))
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![SubscribeFilter {
            filter: s(filter),
            options: SubscriptionOptions::with_qos(qos),
        }],
    })
}

impl Feed {
    fn new(checker: impl Checker + 'static) -> Self {
        let roles = vec![
            Role::General,
            Role::Durable,
            Role::WillWatcher,
            Role::RetainedProbe,
        ];
        let ids = (0..4).map(|i| format!("c{i}")).collect();
        Self {
            model: Model::new(roles, ids),
            checker: Box::new(checker),
            now: Instant::from_secs(1),
            broker: Broker::new(BrokerConfig::default(), Instant::ZERO),
        }
    }

    fn at(&mut self, secs_from_start: f64) -> &mut Self {
        self.now = Instant::from_nanos((secs_from_start * 1e9) as u64);
        self
    }

    fn obs(&mut self, obs: Obs<'_>) -> Verdict {
        self.model.observe(self.now, &obs);
        self.checker.observe(self.now, &self.model, &obs)
    }

    fn ok(&mut self, obs: Obs<'_>) -> &mut Self {
        if let Err(e) = self.obs(obs) {
            panic!("unexpected complaint: {e}");
        }
        self
    }

    fn finish(&mut self) -> Verdict {
        self.model.advance(self.now);
        self.checker.finish(self.now, &self.model, &self.broker)
    }

    /// Client `c` connects on link `c + 1` (the broker processes CONNECT
    /// and reports Connected).
    fn connected(&mut self, c: usize, session_present: bool) -> &mut Self {
        let link = c as u64 + 1;
        let id = format!("c{c}");
        self.ok(Obs::BrokerProcessed {
            client: c,
            link,
            packet: &connect(&id, false),
        });
        let event = BrokerEvent::Connected {
            conn: conn_id(&mut self.broker),
            client_id: s(&id),
            version: ProtocolVersion::V5,
            session_present,
        };
        self.ok(Obs::Broker {
            client: Some(c),
            link: Some(link),
            event: &event,
        })
    }

    /// The broker processes `packet` from client `c`.
    fn processed(&mut self, c: usize, packet: Packet) -> &mut Self {
        self.ok(Obs::BrokerProcessed {
            client: c,
            link: c as u64 + 1,
            packet: &packet,
        })
    }

    /// Client 0 publishes `msg` and the broker routes it.
    fn published(&mut self, msg: MsgId, topic: &str, qos: QoS) -> &mut Self {
        let p = publish(
            msg,
            topic,
            qos,
            (qos != QoS::AtMostOnce).then_some(msg.seq as u16 + 1),
            false,
        );
        self.ok(Obs::AppPublish {
            client: 0,
            msg,
            publish: &p,
            packet_id: p.packet_id,
        });
        self.processed(0, Packet::Publish(p))
    }
}

/// A connection id from a real broker (they cannot be made up).
fn conn_id(broker: &mut Broker) -> tern_broker::ConnId {
    broker.accept(Instant::ZERO)
}

// ---- integrity ----

#[test]
fn integrity_catches_a_phantom_message() {
    let mut f = Feed::new(Integrity::default());
    f.processed(1, subscribe("t/#", QoS::AtLeastOnce));
    let phantom = message(publish(
        MsgId::msg(0, 99),
        "t/a",
        QoS::AtLeastOnce,
        Some(1),
        false,
    ));
    let e = f
        .obs(Obs::ClientEvent {
            client: 1,
            event: &phantom,
        })
        .unwrap_err();
    assert!(e.contains("never published"), "{e}");
}

#[test]
fn integrity_catches_a_message_no_filter_matches() {
    let mut f = Feed::new(Integrity::default());
    f.processed(1, subscribe("t/b", QoS::AtLeastOnce));
    let m = MsgId::msg(0, 0);
    f.published(m, "t/a", QoS::AtLeastOnce);
    let e = f
        .obs(Obs::ClientEvent {
            client: 1,
            event: &message(publish(m, "t/a", QoS::AtLeastOnce, Some(1), false)),
        })
        .unwrap_err();
    assert!(e.contains("none of its filters"), "{e}");
}

#[test]
fn integrity_catches_a_duplicate_qos2_delivery() {
    let mut f = Feed::new(Integrity::default());
    f.processed(1, subscribe("t/#", QoS::ExactlyOnce));
    let m = MsgId::msg(0, 0);
    f.published(m, "t/a", QoS::ExactlyOnce);
    // One flow from the broker, then its resend.
    let first = publish(m, "t/a", QoS::ExactlyOnce, Some(7), false);
    let resend = publish(m, "t/a", QoS::ExactlyOnce, Some(7), true);
    f.ok(Obs::BrokerSent {
        client: 1,
        link: 2,
        packet: &Packet::Publish(first.clone()),
    });
    f.ok(Obs::BrokerSent {
        client: 1,
        link: 2,
        packet: &Packet::Publish(resend.clone()),
    });
    f.ok(Obs::ClientEvent {
        client: 1,
        event: &message(first),
    });
    let e = f
        .obs(Obs::ClientEvent {
            client: 1,
            event: &message(resend),
        })
        .unwrap_err();
    assert!(e.contains("QoS 2 2 times"), "{e}");
}

// ---- delivery ----

#[test]
fn delivery_catches_a_lost_qos1_message_to_a_durable_subscriber() {
    let mut f = Feed::new(Delivery::default());
    f.connected(1, false)
        .processed(1, subscribe("t/#", QoS::AtLeastOnce));
    f.published(MsgId::msg(0, 0), "t/a", QoS::AtLeastOnce);
    f.published(MsgId::msg(0, 1), "t/a", QoS::AtLeastOnce);
    f.ok(Obs::ClientEvent {
        client: 1,
        event: &message(publish(
            MsgId::msg(0, 0),
            "t/a",
            QoS::AtLeastOnce,
            Some(1),
            false,
        )),
    });
    let e = f.finish().unwrap_err();
    assert!(e.contains("never received 1") && e.contains("m0:1"), "{e}");
}

#[test]
fn delivery_catches_a_qos2_message_delivered_twice() {
    let mut f = Feed::new(Delivery::default());
    f.connected(1, false)
        .processed(1, subscribe("t/#", QoS::ExactlyOnce));
    let m = MsgId::msg(0, 0);
    f.published(m, "t/a", QoS::ExactlyOnce);
    let got = message(publish(m, "t/a", QoS::ExactlyOnce, Some(1), false));
    f.ok(Obs::ClientEvent {
        client: 1,
        event: &got,
    });
    assert!(f.finish().is_ok(), "once is right");
    f.ok(Obs::ClientEvent {
        client: 1,
        event: &got,
    });
    let e = f.finish().unwrap_err();
    assert!(e.contains("2 times; it was routed 1 times"), "{e}");
}

#[test]
fn delivery_ignores_messages_routed_before_the_subscription() {
    let mut f = Feed::new(Delivery::default());
    f.connected(1, false);
    f.published(MsgId::msg(0, 0), "t/a", QoS::AtLeastOnce);
    f.processed(1, subscribe("t/#", QoS::AtLeastOnce));
    assert!(f.finish().is_ok());
}

#[test]
fn delivery_catches_a_lost_durable_session() {
    let mut f = Feed::new(Delivery::default());
    let connack = |sp| ClientEvent::Connected {
        session_present: sp,
        connack: Box::new(ConnAck::default()),
    };
    f.ok(Obs::ClientEvent {
        client: 1,
        event: &connack(false),
    });
    let e = f
        .obs(Obs::ClientEvent {
            client: 1,
            event: &connack(false),
        })
        .unwrap_err();
    assert!(e.contains("lost its session"), "{e}");
}

// ---- order ----

#[test]
fn order_catches_an_out_of_order_pair() {
    let mut f = Feed::new(Order::default());
    f.processed(1, subscribe("t/#", QoS::AtLeastOnce));
    let (a, b) = (MsgId::msg(0, 0), MsgId::msg(0, 1));
    f.published(a, "t/a", QoS::AtLeastOnce);
    f.published(b, "t/a", QoS::AtLeastOnce);
    for m in [b, a] {
        f.ok(Obs::ClientEvent {
            client: 1,
            event: &message(publish(m, "t/a", QoS::AtLeastOnce, Some(1), false)),
        });
    }
    let e = f.finish().unwrap_err();
    assert!(e.contains("m0:0 after m0:1"), "{e}");
}

#[test]
fn order_catches_the_broker_routing_against_publish_order() {
    let mut f = Feed::new(Order::default());
    let (a, b) = (MsgId::msg(0, 0), MsgId::msg(0, 1));
    for m in [a, b] {
        let p = publish(m, "t/a", QoS::AtLeastOnce, Some(m.seq as u16 + 1), false);
        f.ok(Obs::AppPublish {
            client: 0,
            msg: m,
            publish: &p,
            packet_id: p.packet_id,
        });
    }
    for m in [b, a] {
        f.processed(
            0,
            Packet::Publish(publish(
                m,
                "t/a",
                QoS::AtLeastOnce,
                Some(m.seq as u16 + 1),
                false,
            )),
        );
    }
    let e = f.finish().unwrap_err();
    assert!(e.contains("against publish order"), "{e}");
}

// ---- packet identifiers ----

#[test]
fn packet_ids_catch_an_identifier_handed_out_twice() {
    let mut f = Feed::new(PacketIds::new(10));
    let p = publish(MsgId::msg(0, 0), "t", QoS::AtLeastOnce, Some(1), false);
    f.ok(Obs::AppPublish {
        client: 0,
        msg: MsgId::msg(0, 0),
        publish: &p,
        packet_id: Some(pid(1)),
    });
    let e = f
        .obs(Obs::AppRequest {
            client: 0,
            packet_id: pid(1),
        })
        .unwrap_err();
    assert!(e.contains("still in flight"), "{e}");
}

#[test]
fn packet_ids_catch_the_broker_reusing_an_open_identifier() {
    let mut f = Feed::new(PacketIds::new(10));
    f.connected(1, false);
    let first = Packet::Publish(publish(
        MsgId::msg(0, 0),
        "t",
        QoS::AtLeastOnce,
        Some(3),
        false,
    ));
    f.ok(Obs::BrokerSent {
        client: 1,
        link: 2,
        packet: &first,
    });
    let second = Packet::Publish(publish(
        MsgId::msg(0, 1),
        "t",
        QoS::AtLeastOnce,
        Some(3),
        false,
    ));
    let e = f
        .obs(Obs::BrokerSent {
            client: 1,
            link: 2,
            packet: &second,
        })
        .unwrap_err();
    assert!(e.contains("identifier 3, still in flight"), "{e}");
    // Once the PUBACK is processed the identifier may be used again.
    let mut f = Feed::new(PacketIds::new(10));
    f.connected(1, false);
    f.ok(Obs::BrokerSent {
        client: 1,
        link: 2,
        packet: &first,
    });
    f.processed(1, Packet::PubAck(PubAck::new(pid(3))));
    f.ok(Obs::BrokerSent {
        client: 1,
        link: 2,
        packet: &second,
    });
}

#[test]
fn packet_ids_catch_a_window_above_receive_maximum() {
    let mut f = Feed::new(PacketIds::new(1));
    f.connected(0, false);
    for n in 1..=2 {
        let p = Packet::Publish(publish(
            MsgId::msg(0, n),
            "t",
            QoS::AtLeastOnce,
            Some(n as u16),
            false,
        ));
        let r = f.obs(Obs::ClientSent {
            client: 0,
            link: 1,
            packet: &p,
        });
        if n == 2 {
            let e = r.unwrap_err();
            assert!(e.contains("Receive Maximum 1"), "{e}");
        }
    }
}

#[test]
fn packet_ids_catch_a_flow_left_open() {
    let mut f = Feed::new(PacketIds::new(10));
    let p = publish(MsgId::msg(0, 0), "t", QoS::AtLeastOnce, Some(1), false);
    f.ok(Obs::AppPublish {
        client: 0,
        msg: MsgId::msg(0, 0),
        publish: &p,
        packet_id: Some(pid(1)),
    });
    f.ok(Obs::ClientEvent {
        client: 0,
        event: &ClientEvent::Connected {
            session_present: true,
            connack: Box::new(ConnAck::default()),
        },
    });
    let e = f.finish().unwrap_err();
    assert!(e.contains("flows still open"), "{e}");
}

// ---- retained ----

#[test]
fn retained_catches_a_wrong_retained_set() {
    let want: BTreeMap<String, MsgId> = [("t/a".to_string(), MsgId::msg(0, 1))].into();
    let right: BTreeMap<String, Vec<MsgId>> = [("t/a".to_string(), vec![MsgId::msg(0, 1)])].into();
    assert!(Retained::compare(&want, &right, 0).is_ok());
    let stale: BTreeMap<String, Vec<MsgId>> = [("t/a".to_string(), vec![MsgId::msg(0, 0)])].into();
    assert!(Retained::compare(&want, &stale, 0).is_err());
    assert!(Retained::compare(&want, &BTreeMap::new(), 0).is_err());
    assert!(
        Retained::compare(&want, &BTreeMap::new(), 1).is_ok(),
        "dropped by a small queue"
    );
    assert!(
        Retained::compare(&BTreeMap::new(), &right, 0).is_err(),
        "a cleared topic"
    );
}

#[test]
fn retained_follows_the_last_retained_publish_and_clears() {
    let mut f = Feed::new(Retained::default());
    let retained = |m: MsgId, payload: Option<Bytes>| {
        let mut p = publish(m, "t/a", QoS::AtLeastOnce, Some(m.seq as u16 + 1), false);
        p.retain = true;
        if let Some(payload) = payload {
            p.payload = payload;
        }
        p
    };
    for (m, payload) in [
        (MsgId::msg(0, 0), None),
        (MsgId::msg(0, 1), Some(Bytes::new())),
    ] {
        let p = retained(m, payload);
        f.ok(Obs::AppPublish {
            client: 0,
            msg: m,
            publish: &p,
            packet_id: p.packet_id,
        });
        f.processed(0, Packet::Publish(p));
    }
    // The empty payload cleared it: the probe expects nothing but gets m0:0.
    f.processed(3, subscribe("#", QoS::ExactlyOnce));
    let mut stale = retained(MsgId::msg(0, 0), None);
    stale.packet_id = Some(pid(1));
    f.ok(Obs::ClientEvent {
        client: 3,
        event: &message(stale),
    });
    let e = f.finish().unwrap_err();
    assert!(e.contains("expected nothing"), "{e}");
}

// ---- wills ----

fn will_connect(delay: u32) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        client_id: s("c0"),
        properties: ConnectProperties {
            session_expiry_interval: Some(600),
            ..Default::default()
        },
        will: Some(Will {
            topic: s("will/c0"),
            payload: MsgId::will(0, 0).payload(0),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(delay),
                ..Default::default()
            },
        }),
        ..Connect::default()
    }))
}

fn ended(f: &mut Feed, reason: CloseReason) {
    let event = BrokerEvent::Disconnected {
        conn: conn_id(&mut f.broker),
        client_id: Some(s("c0")),
        reason,
    };
    f.ok(Obs::Broker {
        client: Some(0),
        link: Some(1),
        event: &event,
    });
}

fn will_feed(delay: u32) -> Feed {
    let mut f = Feed::new(Wills::default());
    f.processed(2, subscribe("will/#", QoS::ExactlyOnce));
    f.processed(0, will_connect(delay));
    let event = BrokerEvent::Connected {
        conn: conn_id(&mut f.broker),
        client_id: s("c0"),
        version: ProtocolVersion::V5,
        session_present: false,
    };
    f.ok(Obs::Broker {
        client: Some(0),
        link: Some(1),
        event: &event,
    });
    f
}

#[test]
fn wills_catch_a_missing_will() {
    let mut f = will_feed(0);
    f.at(5.0);
    ended(&mut f, CloseReason::TransportClosed);
    f.at(10.0);
    let e = f.finish().unwrap_err();
    assert!(e.contains("never received"), "{e}");
}

#[test]
fn wills_catch_a_will_after_a_normal_disconnect() {
    let mut f = will_feed(0);
    f.processed(
        0,
        Packet::Disconnect(Box::new(Disconnect::new(ReasonCode::Success))),
    );
    f.at(5.0);
    ended(
        &mut f,
        CloseReason::PeerDisconnected {
            reason_code: ReasonCode::Success,
            reason_string: None,
        },
    );
    let will = publish(
        MsgId::will(0, 0),
        "will/c0",
        QoS::AtLeastOnce,
        Some(1),
        false,
    );
    let e = f
        .obs(Obs::BrokerSent {
            client: 2,
            link: 3,
            packet: &Packet::Publish(will),
        })
        .unwrap_err();
    assert!(e.contains("expects no will"), "{e}");
}

#[test]
fn wills_catch_a_will_sent_before_its_delay() {
    let mut f = will_feed(10);
    f.at(5.0);
    ended(&mut f, CloseReason::KeepAliveTimeout);
    f.at(9.0);
    let will = publish(
        MsgId::will(0, 0),
        "will/c0",
        QoS::AtLeastOnce,
        Some(1),
        false,
    );
    let e = f
        .obs(Obs::BrokerSent {
            client: 2,
            link: 3,
            packet: &Packet::Publish(will.clone()),
        })
        .unwrap_err();
    assert!(e.contains("Pending"), "{e}");
    // At 15s it is due.
    f.at(15.0);
    f.ok(Obs::BrokerSent {
        client: 2,
        link: 3,
        packet: &Packet::Publish(will.clone()),
    });
    f.ok(Obs::ClientEvent {
        client: 2,
        event: &message(will),
    });
    assert!(f.finish().is_ok());
}

// ---- expiry ----

#[test]
fn expiry_catches_an_expired_message_sent_on() {
    let mut f = Feed::new(Expiry::default());
    let m = MsgId::msg(0, 0);
    let mut p = publish(m, "t", QoS::AtLeastOnce, Some(1), false);
    p.properties = PublishProperties {
        message_expiry_interval: Some(5),
        ..Default::default()
    }
    .into();
    f.at(1.0);
    f.ok(Obs::AppPublish {
        client: 0,
        msg: m,
        publish: &p,
        packet_id: p.packet_id,
    });
    f.processed(0, Packet::Publish(p.clone()));
    // 2.5 s later: 2.5 s left, sent as 3.
    f.at(3.5);
    let mut out = p.clone();
    out.properties.message_expiry_interval = Some(3);
    f.ok(Obs::BrokerSent {
        client: 1,
        link: 2,
        packet: &Packet::Publish(out.clone()),
    });
    // Sent with the interval it arrived with: wrong [MQTT-3.3.2-6].
    out.properties.message_expiry_interval = Some(5);
    let e = f
        .obs(Obs::BrokerSent {
            client: 1,
            link: 2,
            packet: &Packet::Publish(out.clone()),
        })
        .unwrap_err();
    assert!(e.contains("Some(5)"), "{e}");
    // Sent after it expired [MQTT-3.3.2-5].
    f.at(6.5);
    out.properties.message_expiry_interval = Some(1);
    assert!(
        f.obs(Obs::BrokerSent {
            client: 1,
            link: 2,
            packet: &Packet::Publish(out),
        })
        .is_err()
    );
}

// ---- bounds ----

#[test]
fn bounds_catch_a_protocol_violation() {
    let limits = Limits {
        queue: QueueLimits::default(),
        broker_receive_maximum: 10,
    };
    let mut f = Feed::new(Bounds::new(limits));
    let event = ClientEvent::Closed(CloseReason::ProtocolViolation(Violation::Rule(
        Rule::PubRelWithoutPubRec,
    )));
    let e = f
        .obs(Obs::ClientEvent {
            client: 0,
            event: &event,
        })
        .unwrap_err();
    assert!(e.contains("broke a rule"), "{e}");
}
