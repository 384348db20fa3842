//! The core's storage seam on its own: with durability on, a retained
//! PUBLISH becomes a storage batch, and its PUBACK waits until the shell
//! reports that batch synced; acknowledgements behind it wait too (arrival
//! order); with durability off there are no batches and nothing waits.

use tern_broker::{Broker, BrokerConfig, ConnId, StoreBatch, StoreOp};
use tern_codec::{Connect, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use tern_session::Instant;

fn broker(durable: bool) -> Broker {
    Broker::new(
        BrokerConfig {
            durable,
            ..BrokerConfig::default()
        },
        Instant::ZERO,
    )
}

fn connected(b: &mut Broker) -> ConnId {
    let conn = b.accept(Instant::ZERO);
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: MqttString::from_static("pub"),
            ..Connect::default()
        })),
    );
    assert!(matches!(
        transmits(b).as_slice(),
        [Packet::ConnAck(a)] if a.reason_code == ReasonCode::Success
    ));
    conn
}

fn publish(b: &mut Broker, conn: ConnId, id: u16, retain: bool, payload: &'static [u8]) {
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain,
            topic: MqttString::from_static("plant/7/temp"),
            packet_id: Some(tern_codec::PacketId::new(id).unwrap()),
            payload: bytes::Bytes::from_static(payload),
            ..Publish::default()
        }),
    );
}

fn transmits(b: &mut Broker) -> Vec<Packet> {
    let mut out = Vec::new();
    while let Some(t) = b.poll_transmit(Instant::ZERO) {
        out.push(t.packet);
    }
    out
}

fn puback_ids(packets: &[Packet]) -> Vec<u16> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id.get()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_retained_publish_is_acknowledged_only_once_its_batch_is_synced() {
    let mut b = broker(true);
    let conn = connected(&mut b);
    publish(&mut b, conn, 1, true, b"21.5");
    assert_eq!(puback_ids(&transmits(&mut b)), Vec::<u16>::new());
    let batch: StoreBatch = b.poll_store().expect("a batch");
    assert_eq!(batch.seq, 1);
    match batch.ops.as_slice() {
        [StoreOp::PutRetained { topic, message }] => {
            assert_eq!(topic.as_bytes(), b"plant/7/temp");
            assert_eq!(&message.publish.payload[..], b"21.5");
        }
        other => panic!("expected one PutRetained, got {other:?}"),
    }
    assert_eq!(b.poll_store(), None);
    b.handle_store_synced(Instant::ZERO, 1);
    assert_eq!(puback_ids(&transmits(&mut b)), vec![1]);
}

#[test]
fn acknowledgements_behind_a_held_one_wait_in_arrival_order() {
    let mut b = broker(true);
    let conn = connected(&mut b);
    publish(&mut b, conn, 1, true, b"a");
    // Not retained: promises nothing, but goes out after packet 1's PUBACK.
    publish(&mut b, conn, 2, false, b"b");
    // Clearing the retained message is a second change.
    publish(&mut b, conn, 3, true, b"");
    assert_eq!(puback_ids(&transmits(&mut b)), Vec::<u16>::new());
    let batch = b.poll_store().unwrap();
    assert_eq!(batch.seq, 1);
    assert!(matches!(
        batch.ops.as_slice(),
        [StoreOp::PutRetained { .. }, StoreOp::DeleteRetained { .. }]
    ));
    // A sync of an older batch releases nothing newer.
    b.handle_store_synced(Instant::ZERO, 0);
    assert_eq!(puback_ids(&transmits(&mut b)), Vec::<u16>::new());
    b.handle_store_synced(Instant::ZERO, 1);
    assert_eq!(puback_ids(&transmits(&mut b)), vec![1, 2, 3]);
    // Nothing held: a plain publish is acknowledged at once.
    publish(&mut b, conn, 4, false, b"c");
    assert_eq!(puback_ids(&transmits(&mut b)), vec![4]);
    assert_eq!(b.poll_store(), None);
}

#[test]
fn without_durability_nothing_is_held_and_no_batch_appears() {
    let mut b = broker(false);
    let conn = connected(&mut b);
    publish(&mut b, conn, 1, true, b"21.5");
    assert_eq!(puback_ids(&transmits(&mut b)), vec![1]);
    assert_eq!(b.poll_store(), None);
}

/// A retained QoS 2 PUBLISH whose PUBREC is held for its batch, on a
/// connection that closes before the batch syncs: the client resends it
/// (DUP) on its next connection and must get the PUBREC there, or the
/// exchange never ends (found by tern-sim heavy seeds 1000414, 1000497).
#[test]
fn a_held_pubrec_reaches_the_sessions_next_connection() {
    for sync_while_offline in [true, false] {
        let mut b = broker(true);
        let persistent = |clean_start| {
            let mut connect = Connect {
                protocol: ProtocolVersion::V5,
                clean_start,
                client_id: MqttString::from_static("q2"),
                ..Connect::default()
            };
            connect.properties.session_expiry_interval = Some(60);
            Packet::Connect(Box::new(connect))
        };
        let qos2 = |dup| {
            Packet::Publish(Publish {
                qos: QoS::ExactlyOnce,
                retain: true,
                dup,
                topic: MqttString::from_static("plant/7/temp"),
                packet_id: Some(tern_codec::PacketId::new(12).unwrap()),
                payload: bytes::Bytes::from_static(b"21.5"),
                ..Publish::default()
            })
        };
        let first = b.accept(Instant::ZERO);
        b.handle_packet(Instant::ZERO, first, persistent(true));
        b.handle_packet(Instant::ZERO, first, qos2(false));
        assert!(
            !transmits(&mut b)
                .iter()
                .any(|p| matches!(p, Packet::PubRec(_)))
        );
        let batch = b.poll_store().expect("the retained write");
        b.handle_closed(Instant::ZERO, first);
        if sync_while_offline {
            b.handle_store_synced(Instant::ZERO, batch.seq);
        }
        let second = b.accept(Instant::ZERO);
        b.handle_packet(Instant::ZERO, second, persistent(false));
        b.handle_packet(Instant::ZERO, second, qos2(true));
        // The resumed session is stored again (its CONNACK waits for that
        // batch too): sync everything up to it.
        let mut last = batch.seq;
        while let Some(next) = b.poll_store() {
            last = next.seq;
        }
        assert!(last > batch.seq, "the resumed session was stored");
        b.handle_store_synced(Instant::ZERO, last);
        // A success code (0x10 No matching subscribers when the decision
        // reaches the connection itself; the session keeps only "received").
        let pubrecs: Vec<_> = transmits(&mut b)
            .into_iter()
            .filter_map(|p| match p {
                Packet::PubRec(r) => Some((r.packet_id.get(), r.reason_code.is_success())),
                _ => None,
            })
            .collect();
        assert_eq!(
            pubrecs,
            vec![(12, true)],
            "synced while offline: {sync_while_offline}"
        );
    }
}

/// A [`Store`] whose contents outlive the broker that wrote them.
#[derive(Clone, Default)]
struct SharedStore(std::sync::Arc<std::sync::Mutex<tern_broker::MemoryStore>>);

impl tern_broker::Store for SharedStore {
    fn put_retained(
        &mut self,
        topic: &tern_topic::TopicName,
        message: &tern_broker::RetainedMessage,
    ) {
        self.0.lock().unwrap().put_retained(topic, message);
    }
    fn remove_retained(&mut self, topic: &tern_topic::TopicName) {
        self.0.lock().unwrap().remove_retained(topic);
    }
    fn put_session(
        &mut self,
        session: &tern_session::ServerSession,
        subscriptions: &[(MqttString, tern_broker::StoredSubscription)],
        expiry_interval: u32,
    ) {
        self.0
            .lock()
            .unwrap()
            .put_session(session, subscriptions, expiry_interval);
    }
    fn remove_session(&mut self, client_id: &MqttString) {
        self.0.lock().unwrap().remove_session(client_id);
    }
    fn put_offline_state(
        &mut self,
        client_id: &MqttString,
        expires_at: Option<Instant>,
        pending_will: Option<(&tern_codec::Will, Instant)>,
    ) {
        self.0
            .lock()
            .unwrap()
            .put_offline_state(client_id, expires_at, pending_will);
    }
    fn load(&mut self) -> tern_broker::StoredState {
        self.0.lock().unwrap().load()
    }
}

/// A QoS 2 PUBLISH whose PUBREC still waits for its batch when the broker
/// shuts down: the session the shutdown saves says the message was
/// accepted, so after a restart from that store the resend gets its PUBREC
/// and is not delivered again [MQTT-4.3.3-10]. Before, the session was
/// saved with the message undecided, and the resend waited for a decision
/// no one would make, holding every later acknowledgement behind it (found
/// by tern-sim, seed 426 of the light profile).
#[test]
fn a_pubrec_held_at_shutdown_is_answered_after_a_restart_from_the_store() {
    let config = BrokerConfig {
        durable: true,
        ..BrokerConfig::default()
    };
    let store = SharedStore::default();
    let qos2 = |dup| {
        Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            dup,
            topic: MqttString::from_static("plant/7/temp"),
            packet_id: Some(tern_codec::PacketId::new(12).unwrap()),
            payload: bytes::Bytes::from_static(b"21.5"),
            ..Publish::default()
        })
    };
    let mut b = Broker::with_hooks(
        config.clone(),
        Instant::ZERO,
        Box::new(store.clone()),
        Box::new(tern_broker::AllowAll),
    );
    let conn = connect_persistent(&mut b, "q2", true, 60);
    let batch = b.poll_store().expect("the session is stored");
    b.handle_store_synced(Instant::ZERO, batch.seq);
    transmits(&mut b);
    b.handle_packet(Instant::ZERO, conn, qos2(false));
    assert!(
        !transmits(&mut b)
            .iter()
            .any(|p| matches!(p, Packet::PubRec(_))),
        "the PUBREC waits for its batch"
    );
    b.shutdown(Instant::ZERO);
    drop(b);

    let mut b = Broker::with_hooks(
        config,
        Instant::ZERO,
        Box::new(store),
        Box::new(tern_broker::AllowAll),
    );
    let conn = connect_persistent(&mut b, "q2", false, 60);
    while let Some(batch) = b.poll_store() {
        b.handle_store_synced(Instant::ZERO, batch.seq);
    }
    b.handle_packet(Instant::ZERO, conn, qos2(true));
    while let Some(batch) = b.poll_store() {
        b.handle_store_synced(Instant::ZERO, batch.seq);
    }
    let pubrecs: Vec<_> = transmits(&mut b)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubRec(r) => Some(r.packet_id.get()),
            _ => None,
        })
        .collect();
    assert_eq!(pubrecs, vec![12], "the resend is answered");
}

fn connect_persistent(
    b: &mut Broker,
    client: &'static str,
    clean_start: bool,
    expiry: u32,
) -> ConnId {
    let conn = b.accept(Instant::ZERO);
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start,
            client_id: MqttString::from_static(client),
            properties: tern_codec::ConnectProperties {
                session_expiry_interval: Some(expiry),
                ..Default::default()
            },
            ..Connect::default()
        })),
    );
    conn
}

fn subscribe(b: &mut Broker, conn: ConnId, id: u16, filter: &'static str) {
    b.handle_packet(
        Instant::ZERO,
        conn,
        Packet::Subscribe(tern_codec::Subscribe {
            packet_id: tern_codec::PacketId::new(id).unwrap(),
            properties: Default::default(),
            filters: vec![tern_codec::SubscribeFilter {
                filter: MqttString::from_static(filter),
                options: tern_codec::SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            }],
        }),
    );
}

/// A session that outlives its connection is stored, and its CONNACK
/// (session present or not [MQTT-3.2.2-2] [MQTT-3.2.2-3]) waits for the
/// sync: a client told of a session finds it after a crash.
#[test]
fn a_persistent_sessions_connack_and_suback_wait_for_their_batch() {
    let mut b = broker(true);
    let conn = connect_persistent(&mut b, "sub", true, 3600);
    assert_eq!(transmits(&mut b), Vec::new(), "CONNACK held");
    let batch = b.poll_store().expect("a batch");
    match batch.ops.as_slice() {
        [
            StoreOp::PutSession {
                client_id,
                protocol: 5,
                expiry_interval: 3600,
                expires_at: None,
                will_due: None,
                ..
            },
        ] => assert_eq!(client_id.as_str(), "sub"),
        other => panic!("expected one PutSession, got {other:?}"),
    }
    b.handle_store_synced(Instant::ZERO, batch.seq);
    assert!(matches!(transmits(&mut b).as_slice(), [Packet::ConnAck(_)]));

    subscribe(&mut b, conn, 1, "plant/#");
    assert_eq!(transmits(&mut b), Vec::new(), "SUBACK held");
    let batch = b.poll_store().expect("a batch");
    match batch.ops.as_slice() {
        [
            StoreOp::PutSubscription {
                filter, options, ..
            },
        ] => {
            assert_eq!(filter.as_str(), "plant/#");
            assert_eq!(options.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected one PutSubscription, got {other:?}"),
    }
    b.handle_store_synced(Instant::ZERO, batch.seq);
    assert!(matches!(transmits(&mut b).as_slice(), [Packet::SubAck(_)]));

    // Offline, it is stored with when it ends; a clean start ends it:
    // deleted, then stored anew.
    b.handle_closed(Instant::ZERO, conn);
    let _ = connect_persistent(&mut b, "sub", true, 60);
    let batch = b.poll_store().expect("a batch");
    let ends = Instant::from_secs(3600);
    assert!(
        matches!(
            batch.ops.as_slice(),
            [
                StoreOp::PutSession { expires_at: Some(at), .. },
                StoreOp::DeleteSession { .. },
                StoreOp::PutSession {
                    expiry_interval: 60,
                    expires_at: None,
                    ..
                }
            ] if *at == ends
        ),
        "{:?}",
        batch.ops
    );
}

/// A session that ends with its connection (Session Expiry Interval 0
/// [MQTT-3.1.2-23]) is never stored, and nothing it does waits.
#[test]
fn a_session_that_ends_with_its_connection_is_not_stored() {
    let mut b = broker(true);
    let conn = connect_persistent(&mut b, "clean", true, 0);
    assert!(matches!(transmits(&mut b).as_slice(), [Packet::ConnAck(_)]));
    subscribe(&mut b, conn, 1, "a/b");
    assert!(matches!(transmits(&mut b).as_slice(), [Packet::SubAck(_)]));
    b.handle_closed(Instant::ZERO, conn);
    assert_eq!(b.poll_store(), None);
}

/// A QoS 1 message routed to a stored session is stored (body once, an
/// entry per stored session), the publisher's PUBACK waits for that batch,
/// and the entry is deleted when the subscriber's PUBACK ends the flow.
#[test]
fn a_message_queued_for_a_stored_session_is_stored_until_acknowledged() {
    let mut b = broker(true);
    let mut subs = Vec::new();
    for client in ["s1", "s2"] {
        let conn = connect_persistent(&mut b, client, true, 3600);
        subscribe(&mut b, conn, 1, "plant/#");
        subs.push(conn);
    }
    // A session that ends with its connection is not stored.
    let clean = connect_persistent(&mut b, "clean", true, 0);
    subscribe(&mut b, clean, 1, "plant/#");
    while let Some(batch) = b.poll_store() {
        b.handle_store_synced(Instant::ZERO, batch.seq);
    }
    let _ = transmits(&mut b);
    b.handle_closed(Instant::ZERO, subs[1]); // s2 offline
    // Stored offline, with when it ends.
    let batch = b.poll_store().expect("a batch");
    assert!(
        matches!(
            batch.ops.as_slice(),
            [StoreOp::PutSession {
                expires_at: Some(_),
                ..
            }]
        ),
        "{:?}",
        batch.ops
    );
    b.handle_store_synced(Instant::ZERO, batch.seq);
    let publisher = connected(&mut b);
    publish(&mut b, publisher, 9, false, b"21.5");
    let out = transmits(&mut b);
    assert_eq!(puback_ids(&out), Vec::<u16>::new(), "PUBACK held");
    let batch = b.poll_store().expect("a batch");
    let sent;
    let id = match batch.ops.as_slice() {
        [
            StoreOp::PutBody { id, body, .. },
            StoreOp::PutQueue {
                client_id: c1,
                seq: q1,
                ..
            },
            StoreOp::PutQueue {
                client_id: c2,
                seq: q2,
                ..
            },
            // Sent to s1 (online) with a packet identifier, recorded as it
            // went out: a restart resends it with it [MQTT-4.4.0-1].
            StoreOp::SentQueue {
                client_id: c3,
                seq: q3,
                packet_id: sent_id,
                ..
            },
        ] => {
            assert_eq!(&body.payload[..], b"21.5");
            assert_eq!((c1.as_str(), c2.as_str(), c3.as_str()), ("s1", "s2", "s1"));
            assert_eq!((*q1, *q2, *q3), (*id, *id, *id));
            sent = *sent_id;
            *id
        }
        other => panic!("expected a body, two entries and a send, got {other:?}"),
    };
    b.handle_store_synced(Instant::ZERO, batch.seq);
    assert_eq!(puback_ids(&transmits(&mut b)), vec![9]);
    // s1 got it (online): its PUBACK deletes its entry.
    let packet_id = out
        .iter()
        .find_map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            _ => None,
        })
        .expect("s1 was sent the message");
    b.handle_packet(
        Instant::ZERO,
        subs[0],
        Packet::PubAck(tern_codec::PubAck::new(packet_id)),
    );
    assert_eq!(sent, packet_id);
    let batch = b.poll_store().expect("a batch");
    match batch.ops.as_slice() {
        [StoreOp::DeleteQueue { client_id, seq }] => {
            assert_eq!((client_id.as_str(), *seq), ("s1", id));
        }
        other => panic!("expected one DeleteQueue, got {other:?}"),
    }
}

/// A QoS 2 message from a stored session reaches no subscriber before the
/// batch recording its acceptance is synced: were the broker to die first,
/// the publisher (never having had its PUBREC) would send it again, and an
/// online subscriber that already had it would get it twice
/// [MQTT-4.3.3-10]. The subscriber's other output waits behind it, in
/// order; once synced, the PUBREC and the delivery go out.
#[test]
fn a_qos2_message_reaches_online_subscribers_only_once_its_acceptance_is_synced() {
    let mut b = broker(true);
    // An online subscriber whose session is not stored, and one whose is.
    let clean = connect_persistent(&mut b, "clean", true, 0);
    subscribe(&mut b, clean, 1, "plant/#");
    let stored = connect_persistent(&mut b, "stored", true, 3600);
    subscribe(&mut b, stored, 1, "plant/#");
    let publisher = connect_persistent(&mut b, "pub", true, 3600);
    while let Some(batch) = b.poll_store() {
        b.handle_store_synced(Instant::ZERO, batch.seq);
    }
    let _ = transmits(&mut b);
    b.handle_packet(
        Instant::ZERO,
        publisher,
        Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            topic: MqttString::from_static("plant/7/temp"),
            packet_id: Some(tern_codec::PacketId::new(3).unwrap()),
            payload: bytes::Bytes::from_static(b"21.5"),
            ..Publish::default()
        }),
    );
    let sent = |b: &mut Broker| {
        let mut out = Vec::new();
        while let Some(t) = b.poll_transmit(Instant::ZERO) {
            let what = match t.packet {
                Packet::Publish(_) => "publish",
                Packet::PubRec(_) => "pubrec",
                _ => "other",
            };
            out.push((t.conn, what));
        }
        out
    };
    assert_eq!(sent(&mut b), [], "nothing before the sync");
    let batch = b.poll_store().expect("a batch");
    assert!(
        batch
            .ops
            .iter()
            .any(|op| matches!(op, StoreOp::PutIncoming { .. })),
        "{:?}",
        batch.ops
    );
    b.handle_store_synced(Instant::ZERO, batch.seq);
    let mut after = sent(&mut b);
    after.sort();
    let mut want = vec![
        (clean, "publish"),
        (stored, "publish"),
        (publisher, "pubrec"),
    ];
    want.sort();
    assert_eq!(after, want);
}
