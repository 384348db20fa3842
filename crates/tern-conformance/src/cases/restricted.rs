//! Statements about servers that support less: run against a second
//! instance of the broker configured with Maximum QoS 1, without retained
//! messages, and with an ACL file that refuses publishing under
//! `acl-denied/` ([`RESTRICTED_ACL`](crate::RESTRICTED_ACL);
//! `--restricted HOST:PORT`).

use super::Case;
use crate::{
    ensure,
    harness::{Ctx, TestResult, fail, name, string},
};
use bytes::Bytes;
use tern_codec::{Packet, QoS, Subscribe, SubscribeFilter, SubscriptionOptions, Will};

pub(crate) const CASES: &[Case] = &[
    super::v5!(restricted "MQTT-3.2.2-9", "restricted server announces Maximum QoS", announces_max_qos),
    super::v5!(restricted "MQTT-3.2.2-10", "QoS-limited server accepts SUBSCRIBE at QoS 0, 1, 2", subscribe_all_qos),
    super::v5!(restricted "MQTT-3.2.2-12", "will QoS above Maximum QoS refused", will_qos_refused),
    super::v5!(restricted "MQTT-3.2.2-13", "retained will without retain support refused", will_retain_refused),
    super::v3!(restricted "MQTT-3.3.5-2", "unauthorized PUBLISH acknowledged or connection closed", unauthorized_publish),
];

/// 3.1.1 has no way to tell a client its PUBLISH was not authorized: the
/// server acknowledges it as usual or closes the connection.
fn unauthorized_publish(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let packet_id = c.next_pid();
    c.send(Packet::Publish(tern_codec::Publish {
        qos: QoS::AtLeastOnce,
        topic: string(&format!("acl-denied/{}", ctx.client_id())),
        packet_id: Some(packet_id),
        payload: Bytes::from_static(b"refused"),
        ..tern_codec::Publish::default()
    }))?;
    match c.next_event(crate::harness::PACKET_TIMEOUT)? {
        crate::harness::Event::Packet(Packet::PubAck(a)) if a.packet_id == packet_id => {
            // A positive acknowledgement, and the connection carries on.
            c.expect_alive()?;
            c.disconnect()
        }
        crate::harness::Event::Closed => Ok(()),
        other => Err(fail(format!(
            "expected PUBACK {packet_id} or a close, got {other:?}"
        ))),
    }
}

fn announces_max_qos(ctx: &Ctx) -> TestResult {
    let (mut c, ack) = ctx.connect_ok(ctx.connect_packet())?;
    match ack.properties.maximum_qos {
        Some(q) => ensure!(q.as_u8() < 2, "Maximum QoS {}", q.as_u8()),
        None => {
            return Err(fail(
                "QoS-limited server sent no Maximum QoS (which means 2)",
            ));
        }
    }
    c.disconnect()
}

fn subscribe_all_qos(ctx: &Ctx) -> TestResult {
    let (mut c, ack) = ctx.connect_ok(ctx.connect_packet())?;
    let max = ack.properties.maximum_qos.map_or(2, QoS::as_u8);
    let packet_id = c.next_pid();
    c.send(Packet::Subscribe(Subscribe {
        packet_id,
        properties: Default::default(),
        filters: [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .iter()
            .enumerate()
            .map(|(i, q)| SubscribeFilter {
                filter: string(&ctx.topic(&i.to_string())),
                options: SubscriptionOptions::with_qos(*q),
            })
            .collect(),
    }))?;
    let suback = c.expect_suback(packet_id)?;
    for (asked, code) in suback.reason_codes.iter().enumerate() {
        ensure!(
            !code.is_error(),
            "SUBSCRIBE at QoS {asked} refused with {code:?}"
        );
        ensure!(
            code.as_u8() <= max,
            "QoS {} granted above the server's Maximum QoS {max}",
            code.as_u8()
        );
    }
    c.disconnect()
}

/// A CONNECT with a will at `qos`, `retain`; the broker must refuse it.
/// (The reason code, 0x9B or 0x9A, is a SHOULD: any refusal conforms.)
fn will_refused(ctx: &Ctx, qos: QoS, retain: bool) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.will = Some(Will {
        topic: string(&ctx.topic("will")),
        payload: Bytes::from_static(b"w"),
        qos,
        retain,
        properties: Default::default(),
    });
    let mut conn = ctx.open()?;
    conn.send(Packet::Connect(Box::new(connect)))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [] => Ok(()),
        [Packet::ConnAck(a)] => {
            ensure!(
                a.reason_code.is_error(),
                "CONNECT accepted ({:?})",
                a.reason_code
            );
            Ok(())
        }
        other => Err(fail(format!(
            "expected a refusing CONNACK then close, got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

fn will_qos_refused(ctx: &Ctx) -> TestResult {
    will_refused(ctx, QoS::ExactlyOnce, false)
}

fn will_retain_refused(ctx: &Ctx) -> TestResult {
    will_refused(ctx, QoS::AtMostOnce, true)
}
