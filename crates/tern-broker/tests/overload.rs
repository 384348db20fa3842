//! Overload: a publisher that writes as fast as its socket takes it, far
//! faster than its subscriber reads, is slowed down by TCP flow control
//! (publisher backpressure) rather than having its QoS 1 messages dropped.

mod common;

use bytes::BytesMut;
use common::*;
use std::time::Duration;
use tern_codec::{Packet, ProtocolVersion, QoS};

const N: u16 = 2000;

#[tokio::test]
async fn an_unthrottled_qos1_publisher_is_slowed_down_and_loses_nothing() {
    // A small queue, and a time limit no test run reaches.
    let broker = start_with(|s| {
        s.limits.max_queued_messages = 20;
        s.limits.publisher_backpressure = Duration::from_secs(60);
    })
    .await;
    let v = ProtocolVersion::V3_1_1;
    let mut sub = Raw::connected(broker.tcp, v, "reader").await;
    sub.subscribe("flood/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connected(broker.tcp, v, "flooder").await;

    // 2,000 PUBLISHes of 16 KiB in one write: 32 MB, far more than the
    // sockets, the queue (20) and the core's output credit hold.
    let payload: &'static [u8] = Box::leak(vec![b'x'; 16 * 1024].into_boxed_slice());
    let mut flood = BytesMut::new();
    for id in 1..=N {
        let mut p = publish("flood/t", payload, QoS::AtLeastOnce, id);
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&payload[2..]);
        p.payload = body.into();
        Packet::Publish(p).encode(v, &mut flood).unwrap();
    }
    let send = tokio::spawn(async move {
        publisher.send_bytes(&flood).await;
        let mut acked = 0;
        while acked < N {
            match publisher.recv().await {
                Packet::PubAck(_) => acked += 1,
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        publisher
    });

    // The subscriber, one PUBACK per message, gets every message in order.
    for id in 1..=N {
        let p = sub.recv_publish().await;
        assert_eq!(u16::from_be_bytes([p.payload[0], p.payload[1]]), id);
    }
    let _publisher = tokio::time::timeout(WAIT, send)
        .await
        .expect("every PUBLISH acknowledged")
        .unwrap();
    broker.shutdown().await;
}

/// A QoS 0 publisher that sends everything, then DISCONNECT, and closes its
/// socket while the broker holds it back: what it sent before the close is
/// still read and delivered, in order [MQTT-4.6.0-6], and the close comes
/// after it (a held-back connection's end of stream waits behind its data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_publisher_that_closes_still_has_everything_it_sent_delivered() {
    const M: u16 = 3000;
    let broker = start_with(|s| {
        s.limits.max_queued_messages = 20;
        s.limits.publisher_backpressure = Duration::from_secs(60);
    })
    .await;
    let v = ProtocolVersion::V3_1_1;
    let mut sub = Raw::connected(broker.tcp, v, "qos0-reader").await;
    sub.subscribe("flood0/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connected(broker.tcp, v, "qos0-flooder").await;
    let payload: &'static [u8] = Box::leak(vec![b'x'; 1024].into_boxed_slice());
    let mut flood = BytesMut::new();
    for id in 1..=M {
        let mut p = publish("flood0/t", payload, QoS::AtMostOnce, id);
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&payload[2..]);
        p.payload = body.into();
        Packet::Publish(p).encode(v, &mut flood).unwrap();
    }
    Packet::from(tern_codec::Disconnect::new(tern_codec::ReasonCode::Success))
        .encode(v, &mut flood)
        .unwrap();
    let send = tokio::spawn(async move {
        publisher.send_bytes(&flood).await;
        // Gone, with its bytes on the way.
        drop(publisher);
    });
    for id in 1..=M {
        let p = sub.recv_publish().await;
        assert_eq!(u16::from_be_bytes([p.payload[0], p.payload[1]]), id);
    }
    send.await.unwrap();
    broker.shutdown().await;
}
