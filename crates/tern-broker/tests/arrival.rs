//! Input ready on several connections is handled in the order it arrived.
//!
//! MQTT orders packets per connection only, but a broker that reorders
//! connections behind its clients' backs breaks what they can observe: a
//! SUBSCRIBE whose bytes reached the broker before another client's
//! PUBLISH must be in force when that PUBLISH is routed. A third-party
//! interop suite checks exactly this (No Local, MQTT 5), and mosquitto
//! passes it every time.

mod common;

use common::*;
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

/// Rounds: the reordering came and went with scheduling, so try many times.
const ROUNDS: u16 = 200;

/// A subscribed with No Local; B's SUBSCRIBE is in the broker's socket before
/// A's PUBLISH is written; B must get the message [MQTT-3.8.3-3]
/// [MQTT-3.3.4-1].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_that_arrived_first_is_in_force_for_a_later_publish() {
    let broker = start().await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::ExactlyOnce)
    };
    for round in 1..=ROUNDS {
        let topic = format!("arrival/{round}");
        let mut a =
            Raw::connected(broker.tcp, ProtocolVersion::V5, &format!("arr-a-{round}")).await;
        a.subscribe_with(1, &[(&topic, no_local)], None).await;
        let mut b =
            Raw::connected(broker.tcp, ProtocolVersion::V5, &format!("arr-b-{round}")).await;

        // B's SUBSCRIBE is written (in the broker's receive queue) before
        // A's PUBLISH leaves A.
        b.send(tern_codec::Subscribe {
            packet_id: pid(1),
            filters: vec![tern_codec::SubscribeFilter {
                filter: s(&topic),
                options: no_local,
            }],
            properties: Default::default(),
        })
        .await;
        a.send(publish(&topic, b"first", QoS::AtLeastOnce, 1)).await;

        match b.recv().await {
            Packet::SubAck(ack) => assert_eq!(ack.reason_codes, vec![ReasonCode::GrantedQos2]),
            other => panic!("round {round}: expected SUBACK, got {other:?}"),
        }
        match a.recv().await {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, pid(1)),
            other => panic!("round {round}: expected PUBACK, got {other:?}"),
        }
        // A second message that B is certainly subscribed for: if the
        // first was routed before B's subscription, this one comes first.
        a.publish(publish(&topic, b"second", QoS::AtLeastOnce, 2))
            .await;
        for expected in ["first", "second"] {
            let got = b.recv_publish().await;
            assert_eq!(
                got.payload,
                expected.as_bytes(),
                "round {round}: B's SUBSCRIBE arrived before A's PUBLISH, but the PUBLISH was routed first"
            );
        }
    }
    broker.shutdown().await;
}
