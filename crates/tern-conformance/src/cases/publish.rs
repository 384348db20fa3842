//! PUBLISH and the QoS 0, 1 and 2 flows, both directions; malformed and
//! reserved-bit packets; UTF-8 rules.

use super::{Case, v3, v5};
use crate::{
    ensure,
    harness::{Conn, Ctx, Stop, TestResult, fail, name, pid, raw, raw_str, string},
};
use bytes::Bytes;
use tern_codec::{Packet, PubRec, PubRel, Publish, QoS};

pub(crate) const CASES: &[Case] = &[
    v3!(
        "MQTT-2.2.2-1",
        "reserved flag bits must have their value",
        bad_pingreq_flags
    ),
    v3!(
        "MQTT-2.2.2-2",
        "invalid flags close the connection",
        bad_pingreq_flags
    ),
    v5!(
        "MQTT-2.1.3-1",
        "reserved flag bits must have their value",
        bad_pingreq_flags
    ),
    v3!(
        "MQTT-3.6.1-1",
        "PUBREL with wrong reserved bits closes",
        bad_pubrel_flags
    ),
    v5!(
        "MQTT-3.6.1-1",
        "PUBREL with wrong reserved bits closes",
        bad_pubrel_flags
    ),
    v3!("MQTT-3.3.1-4", "PUBLISH with QoS 3 closes", qos3_publish),
    v5!("MQTT-3.3.1-4", "PUBLISH with QoS 3 closes", qos3_publish),
    v3!(
        "MQTT-1.5.3-1",
        "ill-formed UTF-8 topic closes",
        bad_utf8_topic
    ),
    v5!(
        "MQTT-1.5.4-1",
        "ill-formed UTF-8 topic closes",
        bad_utf8_topic
    ),
    v3!("MQTT-1.5.3-2", "U+0000 in a topic closes", null_in_topic),
    v5!("MQTT-1.5.4-2", "U+0000 in a topic closes", null_in_topic),
    v3!(
        "MQTT-4.7.3-2",
        "topic names must not contain U+0000",
        null_in_topic
    ),
    v5!(
        "MQTT-4.7.3-2",
        "topic names must not contain U+0000",
        null_in_topic
    ),
    v3!(
        "MQTT-1.5.3-3",
        "BOM in a topic is kept, not stripped",
        bom_kept
    ),
    v5!(
        "MQTT-1.5.4-3",
        "BOM in a topic is kept, not stripped",
        bom_kept
    ),
    v5!(
        "MQTT-1.5.5-1",
        "non-minimal Remaining Length is malformed",
        non_minimal_varint
    ),
    v3!(
        "MQTT-3.3.2-2",
        "wildcard in a topic name closes",
        wildcard_topic_name
    ),
    v5!(
        "MQTT-3.3.2-2",
        "wildcard in a topic name closes",
        wildcard_topic_name
    ),
    v3!(
        "MQTT-4.7.1-1",
        "wildcards not allowed in topic names",
        wildcard_topic_name
    ),
    v5!(
        "MQTT-4.7.0-1",
        "wildcards not allowed in topic names",
        wildcard_topic_name
    ),
    v3!("MQTT-4.7.3-1", "empty topic name closes", empty_topic_name),
    v5!(
        "MQTT-4.7.3-1",
        "empty topic name (no alias) closes",
        empty_topic_name
    ),
    v3!(
        "MQTT-3.3.2-1",
        "topic name is read as a UTF-8 string",
        topic_name_exact
    ),
    v5!(
        "MQTT-3.3.2-1",
        "topic name is read as a UTF-8 string",
        topic_name_exact
    ),
    v3!(
        "MQTT-4.3.1-1",
        "QoS 0 delivered with QoS 0, DUP 0",
        qos0_delivery
    ),
    v5!(
        "MQTT-4.3.1-1",
        "QoS 0 delivered with QoS 0, DUP 0",
        qos0_delivery
    ),
    v3!("MQTT-3.3.1-2", "DUP 0 for QoS 0", qos0_delivery),
    v5!("MQTT-3.3.1-2", "DUP 0 for QoS 0", qos0_delivery),
    v3!(
        "MQTT-2.3.1-5",
        "QoS 0 PUBLISH has no packet identifier",
        qos0_delivery
    ),
    v5!(
        "MQTT-2.2.1-2",
        "QoS 0 PUBLISH has no packet identifier",
        qos0_delivery
    ),
    v3!(
        "MQTT-4.3.2-2",
        "QoS 1 answered by PUBACK with the id",
        qos1_puback
    ),
    v5!(
        "MQTT-4.3.2-4",
        "QoS 1 answered by PUBACK with the id",
        qos1_puback
    ),
    v3!(
        "MQTT-2.3.1-6",
        "acks carry the PUBLISH's packet id",
        qos2_flow_in
    ),
    v5!(
        "MQTT-2.2.1-5",
        "acks carry the PUBLISH's packet id",
        qos2_flow_in
    ),
    v3!(
        "MQTT-3.3.4-1",
        "receiver answers per QoS (none, PUBACK, PUBREC)",
        response_per_qos
    ),
    v5!(
        "MQTT-3.3.4-1",
        "receiver answers per QoS (none, PUBACK, PUBREC)",
        response_per_qos
    ),
    v3!(
        "MQTT-4.3.3-2",
        "QoS 2 answered by PUBREC, delivered once",
        qos2_exactly_once
    ),
    v5!(
        "MQTT-4.3.3-8",
        "QoS 2 answered by PUBREC with the id",
        qos2_flow_in
    ),
    v5!(
        "MQTT-4.3.3-10",
        "duplicate QoS 2 before PUBREL acked, not redelivered",
        qos2_exactly_once
    ),
    v5!(
        "MQTT-4.3.3-11",
        "PUBREL answered by PUBCOMP with the id",
        qos2_flow_in
    ),
    v5!(
        "MQTT-4.3.3-12",
        "after PUBCOMP the same id is a new message",
        qos2_id_reuse
    ),
    v5!(
        "MQTT-4.3.3-9",
        "after PUBREC >= 0x80 the same id is a new message",
        qos2_id_reuse_after_refusal
    ),
    v5!(
        "MQTT-4.3.2-5",
        "after PUBACK the same id is a new message",
        qos1_id_reuse
    ),
    v3!(
        "MQTT-4.3.2-1",
        "server sends QoS 1 with packet id, DUP 0",
        qos1_outgoing
    ),
    v5!(
        "MQTT-4.3.2-2",
        "server sends QoS 1 with packet id, DUP 0",
        qos1_outgoing
    ),
    v3!(
        "MQTT-2.3.1-1",
        "QoS > 0 PUBLISH has a non-zero packet id",
        qos1_outgoing
    ),
    v5!(
        "MQTT-4.3.2-1",
        "unacked QoS 1 messages get distinct ids",
        distinct_ids
    ),
    v5!(
        "MQTT-2.2.1-4",
        "server packet ids are unused ones",
        distinct_ids
    ),
    v3!(
        "MQTT-4.3.3-1",
        "server sends QoS 2 with packet id, DUP 0, then PUBREL",
        qos2_outgoing
    ),
    v5!(
        "MQTT-4.3.3-2",
        "server sends QoS 2 with packet id, DUP 0",
        qos2_outgoing
    ),
    v5!(
        "MQTT-4.3.3-4",
        "server sends PUBREL on PUBREC",
        qos2_outgoing
    ),
    v3!(
        "MQTT-3.3.1-3",
        "incoming DUP not propagated",
        dup_not_propagated
    ),
    v5!(
        "MQTT-3.3.1-3",
        "outgoing DUP set independently",
        dup_not_propagated
    ),
    v3!(
        "MQTT-4.4.0-1",
        "unacked QoS 1 resent with DUP on reconnect",
        resend_on_reconnect
    ),
    v5!(
        "MQTT-4.4.0-1",
        "unacked QoS 1 resent with DUP on reconnect",
        resend_on_reconnect
    ),
    v3!("MQTT-3.3.1-1", "redelivery has DUP 1", resend_on_reconnect),
    v5!("MQTT-3.3.1-1", "redelivery has DUP 1", resend_on_reconnect),
    v3!(
        "MQTT-2.3.1-4",
        "redelivery uses the same packet id",
        resend_on_reconnect
    ),
    v5!(
        "MQTT-4.3.2-3",
        "QoS 1 unacknowledged until PUBACK",
        resend_on_reconnect
    ),
    v5!(
        "MQTT-4.3.3-3",
        "QoS 2 unacknowledged until PUBREC",
        resend_qos2_on_reconnect
    ),
    v5!(
        "MQTT-4.3.3-5",
        "PUBREL unacknowledged until PUBCOMP",
        resend_pubrel_on_reconnect
    ),
    v5!(
        "MQTT-4.3.3-6",
        "no PUBLISH resent after PUBREL",
        resend_pubrel_on_reconnect
    ),
    v3!(
        "MQTT-4.6.0-5",
        "messages on a topic delivered in order",
        ordered_topic
    ),
    v5!(
        "MQTT-4.6.0-5",
        "messages on a topic delivered in order",
        ordered_topic
    ),
    v3!(
        "MQTT-4.6.0-6",
        "ordered topic across QoS levels",
        ordered_topic_mixed
    ),
    v5!(
        "MQTT-4.6.0-6",
        "every topic ordered on non-shared subscriptions",
        ordered_topic_mixed
    ),
    v3!(
        "MQTT-4.5.0-1",
        "message added to every matching session",
        fan_out
    ),
    v5!(
        "MQTT-4.5.0-1",
        "message added to every matching session",
        fan_out
    ),
    v3!(
        "MQTT-3.3.5-1",
        "overlapping subscriptions: maximum QoS",
        overlapping_max_qos
    ),
    v5!(
        "MQTT-3.3.4-2",
        "overlapping subscriptions: maximum QoS",
        overlapping_max_qos
    ),
    v3!(
        "MQTT-3.8.4-6",
        "delivered QoS is min(published, granted)",
        qos_downgrade
    ),
    v5!(
        "MQTT-3.8.4-8",
        "delivered QoS is min(published, granted)",
        qos_downgrade
    ),
    v3!(
        "MQTT-4.8.0-1",
        "protocol violation closes the connection",
        qos3_publish
    ),
    v5!(
        "MQTT-4.13.1-1",
        "malformed packet: close (DISCONNECT >= 0x80)",
        qos3_publish
    ),
    v5!(
        "MQTT-4.3.3-1",
        "unacknowledged QoS 2 messages get distinct ids",
        distinct_ids_qos2
    ),
];

fn bad_pingreq_flags(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw(0xC1, &[]))?;
    c.expect_closed_with_error()
}

fn bad_pubrel_flags(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let topic = ctx.topic("q2");
    // Start a QoS 2 flow so the PUBREL refers to a real packet id.
    c.send(Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        topic: string(&topic),
        packet_id: Some(pid(7)),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    }))?;
    c.wait_for(|p| matches!(p, Packet::PubRec(_)), "PUBREC")?;
    let mut body = 7u16.to_be_bytes().to_vec();
    if ctx.v5() {
        body.push(0);
    }
    c.send_raw(&raw(0x60, &body))?;
    c.expect_closed_with_error()
}

fn qos3_publish(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let mut body = raw_str(ctx.topic("q3").as_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    if ctx.v5() {
        body.push(0);
    }
    body.extend_from_slice(b"x");
    c.send_raw(&raw(0x36, &body))?;
    c.expect_closed_with_error()
}

/// A QoS 0 PUBLISH with a raw topic.
fn raw_publish(ctx: &Ctx, topic: &[u8]) -> Vec<u8> {
    let mut body = raw_str(topic);
    if ctx.v5() {
        body.push(0);
    }
    body.extend_from_slice(b"x");
    raw(0x30, &body)
}

/// Sends a bad PUBLISH and checks the close; a subscriber to the prefix
/// must not see it.
fn bad_publish_closes(ctx: &Ctx, topic: &[u8]) -> TestResult {
    let mut watch = ctx.connect()?;
    watch.subscribe_ok(&format!("{}/#", ctx.prefix()), QoS::AtMostOnce)?;
    let mut c = ctx.connect()?;
    c.send_raw(&raw_publish(ctx, topic))?;
    c.expect_closed_with_error()?;
    watch.expect_silence(crate::harness::QUIET_TIME)?;
    watch.disconnect()
}

fn bad_utf8_topic(ctx: &Ctx) -> TestResult {
    let mut topic = format!("{}/", ctx.prefix()).into_bytes();
    topic.extend_from_slice(&[0xED, 0xA0, 0x80]); // U+D800, a surrogate
    bad_publish_closes(ctx, &topic)
}

fn null_in_topic(ctx: &Ctx) -> TestResult {
    let mut topic = format!("{}/a", ctx.prefix()).into_bytes();
    topic.extend_from_slice(&[0x00, b'b']);
    bad_publish_closes(ctx, &topic)
}

fn wildcard_topic_name(ctx: &Ctx) -> TestResult {
    bad_publish_closes(ctx, format!("{}/+", ctx.prefix()).as_bytes())
}

fn empty_topic_name(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw_publish(ctx, b""))?;
    c.expect_closed_with_error()
}

fn non_minimal_varint(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    // PINGREQ with Remaining Length 0 written in two bytes.
    c.send_raw(&[0xC0, 0x80, 0x00])?;
    c.expect_closed_with_error()
}

fn bom_kept(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("\u{FEFF}bom");
    let plain = ctx.topic("bom");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtMostOnce)?;
    s.subscribe_ok(&plain, QoS::AtMostOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"with bom", QoS::AtMostOnce, false)?;
    let got = s.recv_publish()?;
    ensure!(
        got.topic.as_bytes() == topic.as_bytes(),
        "topic arrived as {:?}, BOM stripped or altered",
        got.topic
    );
    p.disconnect()?;
    s.disconnect()
}

fn topic_name_exact(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("caf\u{e9}/\u{1F600}");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtMostOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtMostOnce, false)?;
    let got = s.recv_publish()?;
    ensure!(
        got.topic == topic.as_str(),
        "topic arrived as {}",
        got.topic
    );
    p.disconnect()?;
    s.disconnect()
}

/// A subscriber on `topic` at `sub_qos` and a publisher.
fn pair(ctx: &Ctx, topic: &str, sub_qos: QoS) -> Result<(Conn, Conn), Stop> {
    let mut s = ctx.connect()?;
    s.subscribe_ok(topic, sub_qos)?;
    Ok((s, ctx.connect()?))
}

fn qos0_delivery(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q0");
    let (mut s, mut p) = pair(ctx, &topic, QoS::ExactlyOnce)?;
    p.send(Packet::Publish(Publish {
        topic: string(&topic),
        payload: Bytes::from_static(b"abc"),
        ..Publish::default()
    }))?;
    let got = s.recv_publish()?;
    ensure!(
        got.qos == QoS::AtMostOnce,
        "QoS 0 message delivered at QoS {}",
        got.qos.as_u8()
    );
    ensure!(!got.dup, "QoS 0 delivered with DUP 1");
    ensure!(got.packet_id.is_none(), "QoS 0 with a packet id");
    ensure!(&got.payload[..] == b"abc", "payload {:?}", got.payload);
    p.disconnect()?;
    s.disconnect()
}

fn qos1_puback(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: string(&ctx.topic("q1")),
        packet_id: Some(pid(4242)),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    }))?;
    match c.recv()? {
        Packet::PubAck(a) => {
            ensure!(a.packet_id == pid(4242), "PUBACK for id {}", a.packet_id);
            ensure!(!a.reason_code.is_error(), "PUBACK with {:?}", a.reason_code);
        }
        other => {
            return Err(fail(format!(
                "QoS 1 PUBLISH answered with {}",
                name(&other)
            )));
        }
    }
    c.disconnect()
}

fn qos2_flow_in(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send(Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        topic: string(&ctx.topic("q2")),
        packet_id: Some(pid(999)),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    }))?;
    match c.recv()? {
        Packet::PubRec(a) => ensure!(a.packet_id == pid(999), "PUBREC for id {}", a.packet_id),
        other => {
            return Err(fail(format!(
                "QoS 2 PUBLISH answered with {}",
                name(&other)
            )));
        }
    }
    c.send(Packet::PubRel(PubRel::new(pid(999))))?;
    match c.recv()? {
        Packet::PubComp(a) => ensure!(a.packet_id == pid(999), "PUBCOMP for id {}", a.packet_id),
        other => return Err(fail(format!("PUBREL answered with {}", name(&other)))),
    }
    c.disconnect()
}

fn response_per_qos(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let topic = ctx.topic("r");
    c.publish(&topic, b"0", QoS::AtMostOnce, false)?;
    c.expect_alive()?; // PINGRESP is the next packet: nothing answered QoS 0
    ensure!(
        c.recv_within(std::time::Duration::from_millis(1)).is_err(),
        "QoS 0 PUBLISH was answered"
    );
    c.publish(&topic, b"1", QoS::AtLeastOnce, false)?;
    c.publish(&topic, b"2", QoS::ExactlyOnce, false)?;
    c.disconnect()
}

fn qos2_exactly_once(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q2");
    let (mut s, mut p) = pair(ctx, &topic, QoS::ExactlyOnce)?;
    let publish = Publish {
        qos: QoS::ExactlyOnce,
        topic: string(&topic),
        packet_id: Some(pid(5)),
        payload: Bytes::from_static(b"once"),
        ..Publish::default()
    };
    p.send(Packet::Publish(publish.clone()))?;
    p.wait_for(|x| matches!(x, Packet::PubRec(_)), "PUBREC")?;
    p.send(Packet::Publish(Publish {
        dup: true,
        ..publish
    }))?;
    match p.recv()? {
        Packet::PubRec(r) => ensure!(r.packet_id == pid(5), "PUBREC for {}", r.packet_id),
        other => {
            return Err(fail(format!(
                "duplicate QoS 2 PUBLISH answered with {}",
                name(&other)
            )));
        }
    }
    p.send(Packet::PubRel(PubRel::new(pid(5))))?;
    p.wait_for(|x| matches!(x, Packet::PubComp(_)), "PUBCOMP")?;
    // One delivery, then a marker proves nothing else follows it.
    let marker = ctx.topic("marker");
    s.subscribe_ok(&marker, QoS::AtMostOnce)?;
    let first = s.recv_publish_acked()?;
    ensure!(&first.payload[..] == b"once", "got {:?}", first.payload);
    p.publish(&marker, b"m", QoS::AtMostOnce, false)?;
    let next = s.recv_publish_acked()?;
    ensure!(
        next.topic == marker.as_str(),
        "QoS 2 message delivered twice"
    );
    p.disconnect()?;
    s.disconnect()
}

fn qos2_id_reuse(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q2");
    let (mut s, mut p) = pair(ctx, &topic, QoS::AtMostOnce)?;
    for payload in [&b"first"[..], b"second"] {
        p.send(Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            topic: string(&topic),
            packet_id: Some(pid(9)),
            payload: Bytes::copy_from_slice(payload),
            ..Publish::default()
        }))?;
        p.wait_for(|x| matches!(x, Packet::PubRec(_)), "PUBREC")?;
        p.send(Packet::PubRel(PubRel::new(pid(9))))?;
        p.wait_for(|x| matches!(x, Packet::PubComp(_)), "PUBCOMP")?;
        let got = s.recv_publish()?;
        ensure!(
            &got.payload[..] == payload,
            "expected {payload:?}, got {:?}",
            got.payload
        );
    }
    p.disconnect()?;
    s.disconnect()
}

/// A QoS 2 PUBLISH the server refuses with PUBREC >= 0x80 (a topic of 260
/// levels: brokers limit levels, Tern and mosquitto to 200), then a new
/// message with the same packet identifier: it is a new message (PUBREC
/// below 0x80, delivered), not a duplicate of the refused one.
fn qos2_id_reuse_after_refusal(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q2r");
    let (mut s, mut p) = pair(ctx, &topic, QoS::AtMostOnce)?;
    let deep = format!("{topic}/{}", vec!["l"; 260].join("/"));
    p.send(Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        topic: string(&deep),
        packet_id: Some(pid(9)),
        payload: Bytes::from_static(b"refused"),
        ..Publish::default()
    }))?;
    match p.recv()? {
        Packet::PubRec(r) if r.packet_id == pid(9) => ensure!(
            r.reason_code.is_error(),
            "a PUBLISH to {} levels was accepted (PUBREC {:?}): this test needs a \
             server that refuses it with PUBREC >= 0x80",
            deep.split('/').count(),
            r.reason_code
        ),
        other => {
            return Err(fail(format!(
                "expected PUBREC >= 0x80 for a topic of 260+ levels, got {}",
                name(&other)
            )));
        }
    }
    p.send(Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        topic: string(&topic),
        packet_id: Some(pid(9)),
        payload: Bytes::from_static(b"new"),
        ..Publish::default()
    }))?;
    match p.wait_for(|x| matches!(x, Packet::PubRec(_)), "PUBREC")? {
        Packet::PubRec(r) => ensure!(
            !r.reason_code.is_error(),
            "the new message got PUBREC {:?}",
            r.reason_code
        ),
        _ => unreachable!(),
    }
    p.send(Packet::PubRel(PubRel::new(pid(9))))?;
    p.wait_for(|x| matches!(x, Packet::PubComp(_)), "PUBCOMP")?;
    let got = s.recv_publish()?;
    ensure!(
        &got.payload[..] == b"new",
        "expected the new message, got {:?}",
        got.payload
    );
    p.disconnect()?;
    s.disconnect()
}

fn qos1_id_reuse(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q1");
    let (mut s, mut p) = pair(ctx, &topic, QoS::AtMostOnce)?;
    for payload in [&b"first"[..], b"second"] {
        p.send(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: string(&topic),
            packet_id: Some(pid(9)),
            payload: Bytes::copy_from_slice(payload),
            ..Publish::default()
        }))?;
        p.wait_for(|x| matches!(x, Packet::PubAck(_)), "PUBACK")?;
        let got = s.recv_publish()?;
        ensure!(
            &got.payload[..] == payload,
            "expected {payload:?}, got {:?}",
            got.payload
        );
    }
    p.disconnect()?;
    s.disconnect()
}

fn qos1_outgoing(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q1");
    let (mut s, mut p) = pair(ctx, &topic, QoS::AtLeastOnce)?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = s.recv_publish()?;
    ensure!(
        got.qos == QoS::AtLeastOnce,
        "delivered at QoS {}",
        got.qos.as_u8()
    );
    ensure!(got.packet_id.is_some(), "QoS 1 without packet id");
    ensure!(!got.dup, "first delivery has DUP 1");
    s.ack(&got)?;
    p.disconnect()?;
    s.disconnect()
}

fn distinct_ids(ctx: &Ctx) -> TestResult {
    distinct_ids_at(ctx, QoS::AtLeastOnce)
}

fn distinct_ids_qos2(ctx: &Ctx) -> TestResult {
    distinct_ids_at(ctx, QoS::ExactlyOnce)
}

/// Five messages in flight to one subscriber at `qos` carry five ids.
fn distinct_ids_at(ctx: &Ctx, qos: QoS) -> TestResult {
    let topic = ctx.topic("ids");
    let (mut s, mut p) = pair(ctx, &topic, qos)?;
    for i in 0..5u8 {
        p.publish(&topic, &[i], qos, false)?;
    }
    let mut ids = Vec::new();
    for _ in 0..5 {
        let got = s.recv_publish()?;
        ensure!(got.qos == qos, "delivered at QoS {}", got.qos.as_u8());
        ids.push(
            got.packet_id
                .ok_or_else(|| fail("QoS > 0 without packet id"))?,
        );
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    ensure!(
        unique.len() == ids.len(),
        "unacknowledged messages share ids: {ids:?}"
    );
    p.disconnect()?;
    s.disconnect()
}

fn qos2_outgoing(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q2");
    let (mut s, mut p) = pair(ctx, &topic, QoS::ExactlyOnce)?;
    p.publish(&topic, b"x", QoS::ExactlyOnce, false)?;
    let got = s.recv_publish()?;
    ensure!(
        got.qos == QoS::ExactlyOnce,
        "delivered at QoS {}",
        got.qos.as_u8()
    );
    ensure!(!got.dup, "first delivery has DUP 1");
    let id = got
        .packet_id
        .ok_or_else(|| fail("QoS 2 without packet id"))?;
    s.send(Packet::PubRec(PubRec::new(id)))?;
    match s.recv()? {
        Packet::PubRel(r) => ensure!(r.packet_id == id, "PUBREL for {} not {id}", r.packet_id),
        other => return Err(fail(format!("PUBREC answered with {}", name(&other)))),
    }
    s.send(Packet::PubComp(tern_codec::PubComp::new(id)))?;
    s.expect_alive()?;
    p.disconnect()?;
    s.disconnect()
}

fn dup_not_propagated(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("dup");
    let (mut s, mut p) = pair(ctx, &topic, QoS::AtLeastOnce)?;
    p.publish_packet(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        topic: string(&topic),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    })?;
    let got = s.recv_publish_acked()?;
    ensure!(!got.dup, "DUP 1 propagated to a first delivery");
    p.disconnect()?;
    s.disconnect()
}

/// A persistent subscriber connection for `id`.
fn persistent_sub(ctx: &Ctx, id: &str, first: bool) -> Result<(Conn, bool), Stop> {
    ctx.persistent(id);
    let mut connect = ctx.connect_packet();
    connect.client_id = string(id);
    connect.clean_start = first && ctx.v5();
    if ctx.v5() {
        connect.properties.session_expiry_interval = Some(300);
    }
    let (c, ack) = ctx.connect_ok(connect)?;
    Ok((c, ack.session_present))
}

fn resend_on_reconnect(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("re");
    let id = ctx.client_id();
    let (mut s, _) = persistent_sub(ctx, &id, true)?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let first = s.recv_publish()?;
    s.drop_abruptly();
    let (mut s, present) = persistent_sub(ctx, &id, false)?;
    ensure!(present, "session not present");
    let again = s.recv_publish()?;
    ensure!(again.dup, "redelivered PUBLISH has DUP 0");
    ensure!(
        again.packet_id == first.packet_id,
        "redelivered with id {:?}, first sent as {:?}",
        again.packet_id,
        first.packet_id
    );
    ensure!(&again.payload[..] == b"x", "payload changed");
    s.ack(&again)?;
    p.disconnect()?;
    s.disconnect()
}

fn resend_qos2_on_reconnect(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("re");
    let id = ctx.client_id();
    let (mut s, _) = persistent_sub(ctx, &id, true)?;
    s.subscribe_ok(&topic, QoS::ExactlyOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::ExactlyOnce, false)?;
    let first = s.recv_publish()?;
    s.drop_abruptly();
    let (mut s, _) = persistent_sub(ctx, &id, false)?;
    let again = s.recv_publish()?;
    ensure!(
        again.dup && again.packet_id == first.packet_id,
        "not resent as a duplicate: {again:?}"
    );
    s.ack(&again)?;
    p.disconnect()?;
    s.disconnect()
}

fn resend_pubrel_on_reconnect(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("re");
    let id = ctx.client_id();
    let (mut s, _) = persistent_sub(ctx, &id, true)?;
    s.subscribe_ok(&topic, QoS::ExactlyOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::ExactlyOnce, false)?;
    let first = s.recv_publish()?;
    let pid = first.packet_id.ok_or_else(|| fail("QoS 2 without id"))?;
    s.send(Packet::PubRec(PubRec::new(pid)))?;
    s.wait_for(|x| matches!(x, Packet::PubRel(_)), "PUBREL")?;
    s.drop_abruptly();
    let (mut s, _) = persistent_sub(ctx, &id, false)?;
    match s.recv()? {
        Packet::PubRel(r) => ensure!(r.packet_id == pid, "PUBREL resent for {}", r.packet_id),
        other => {
            return Err(fail(format!(
                "after reconnect expected PUBREL, got {}",
                name(&other)
            )));
        }
    }
    s.send(Packet::PubComp(tern_codec::PubComp::new(pid)))?;
    s.expect_alive()?;
    p.disconnect()?;
    s.disconnect()
}

fn ordered_topic(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("order");
    let (mut s, mut p) = pair(ctx, &topic, QoS::AtLeastOnce)?;
    for i in 0..20u8 {
        p.publish(&topic, &[i], QoS::AtLeastOnce, false)?;
    }
    for i in 0..20u8 {
        let got = s.recv_publish_acked()?;
        ensure!(
            got.payload[..] == [i],
            "message {i} arrived as {:?}",
            got.payload
        );
    }
    p.disconnect()?;
    s.disconnect()
}

fn ordered_topic_mixed(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("order");
    let (mut s, mut p) = pair(ctx, &topic, QoS::ExactlyOnce)?;
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for i in 0..9u8 {
        p.publish(&topic, &[i], qos[usize::from(i) % 3], false)?;
    }
    for i in 0..9u8 {
        let got = s.recv_publish_acked()?;
        ensure!(
            got.payload[..] == [i],
            "message {i} arrived as {:?}",
            got.payload
        );
    }
    p.disconnect()?;
    s.disconnect()
}

fn fan_out(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("fan");
    let mut subs = Vec::new();
    for filter in [
        topic.clone(),
        format!("{}/+", ctx.prefix()),
        format!("{}/#", ctx.prefix()),
    ] {
        let mut s = ctx.connect()?;
        s.subscribe_ok(&filter, QoS::AtLeastOnce)?;
        subs.push(s);
    }
    let mut p = ctx.connect()?;
    p.publish(&topic, b"all", QoS::AtLeastOnce, false)?;
    for s in &mut subs {
        let got = s.recv_publish_acked()?;
        ensure!(&got.payload[..] == b"all", "got {:?}", got.payload);
    }
    for mut s in subs {
        s.disconnect()?;
    }
    p.disconnect()
}

fn overlapping_max_qos(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("o/x");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtMostOnce)?;
    s.subscribe_ok(&format!("{}/o/+", ctx.prefix()), QoS::AtLeastOnce)?;
    let marker = ctx.topic("marker");
    s.subscribe_ok(&marker, QoS::AtMostOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    p.publish(&marker, b"m", QoS::AtLeastOnce, false)?;
    let mut seen = Vec::new();
    loop {
        let got = s.recv_publish_acked()?;
        if got.topic == marker.as_str() {
            break;
        }
        seen.push(got.qos.as_u8());
    }
    ensure!(
        seen.iter().max() == Some(&1),
        "copies delivered at QoS {seen:?}; expected one at QoS 1 (maximum of the matching subscriptions)"
    );
    p.disconnect()?;
    s.disconnect()
}

fn qos_downgrade(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("d");
    for (sub, publ, expect) in [
        (QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce),
        (QoS::AtMostOnce, QoS::ExactlyOnce, QoS::AtMostOnce),
        (QoS::ExactlyOnce, QoS::AtMostOnce, QoS::AtMostOnce),
        (QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::AtLeastOnce),
    ] {
        let (mut s, mut p) = pair(ctx, &topic, sub)?;
        p.publish(&topic, b"x", publ, false)?;
        let got = s.recv_publish_acked()?;
        ensure!(
            got.qos == expect,
            "subscribed at {}, published at {}: delivered at {}",
            sub.as_u8(),
            publ.as_u8(),
            got.qos.as_u8()
        );
        p.disconnect()?;
        s.disconnect()?;
    }
    Ok(())
}
