//! MQTT 5 only: properties forwarded, message expiry, topic aliases,
//! Maximum Packet Size, Receive Maximum, Subscription Identifiers, reason
//! codes, problem information.

use super::{Case, v5};
use crate::{
    ensure,
    harness::{Conn, Ctx, QUIET_TIME, Stop, TestResult, fail, name, raw, raw_str, string},
};
use bytes::Bytes;
use std::{num::NonZeroU16, time::Duration};
use tern_codec::{
    Packet, PayloadFormat, PubRec, Publish, PublishProperties, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscribeProperties, SubscriptionId, SubscriptionOptions, UserProperty,
};

pub(crate) const CASES: &[Case] = &[
    v5!(
        "MQTT-3.3.2-4",
        "Payload Format Indicator forwarded unaltered",
        fwd_payload_format
    ),
    v5!(
        "MQTT-3.3.2-15",
        "Response Topic forwarded unaltered",
        fwd_response_topic
    ),
    v5!(
        "MQTT-3.3.2-16",
        "Correlation Data forwarded unaltered",
        fwd_correlation
    ),
    v5!(
        "MQTT-3.3.2-17",
        "User Properties forwarded unaltered",
        fwd_user_properties
    ),
    v5!(
        "MQTT-3.3.2-18",
        "User Properties keep their order",
        fwd_user_properties
    ),
    v5!(
        "MQTT-3.3.2-20",
        "Content Type forwarded unaltered",
        fwd_content_type
    ),
    v5!(
        "MQTT-3.3.2-5",
        "expired messages not delivered",
        expired_not_delivered
    ),
    v5!(
        "MQTT-3.3.2-6",
        "Message Expiry Interval counts down",
        expiry_counts_down
    ),
    v5!(
        "MQTT-3.3.2-12",
        "topic aliases up to the maximum accepted",
        alias_accepted
    ),
    v5!(
        "MQTT-3.3.2-7",
        "topic aliases do not carry over connections",
        alias_not_carried
    ),
    v5!(
        "MQTT-3.3.2-8",
        "Topic Alias 0 closes the connection",
        alias_zero
    ),
    v5!(
        "MQTT-3.1.2-27",
        "no Topic Alias Maximum: no aliases sent",
        no_alias_to_client
    ),
    v5!(
        "MQTT-3.1.2-26",
        "server aliases stay within the client's maximum",
        aliases_within_max
    ),
    v5!(
        "MQTT-3.3.2-11",
        "server aliases stay within the client's maximum",
        aliases_within_max
    ),
    v5!(
        "MQTT-3.1.2-24",
        "nothing above the client's Maximum Packet Size",
        max_packet_size
    ),
    v5!(
        "MQTT-3.1.2-25",
        "too-large message discarded, later ones sent",
        max_packet_size
    ),
    v5!(
        "MQTT-3.3.4-9",
        "no more than Receive Maximum unacknowledged",
        receive_maximum
    ),
    v5!(
        "MQTT-4.9.0-2",
        "send quota stops QoS > 0 PUBLISH at zero",
        receive_maximum
    ),
    v5!(
        "MQTT-3.3.4-10",
        "other packets not delayed at the quota",
        quota_other_packets
    ),
    v5!(
        "MQTT-4.9.0-3",
        "packets processed while the quota is zero",
        quota_other_packets
    ),
    v5!(
        "MQTT-3.3.4-3",
        "Subscription Identifier sent with the message",
        subscription_id
    ),
    v5!(
        "MQTT-3.3.4-4",
        "overlapping subscriptions: their identifiers",
        subscription_ids_overlap
    ),
    v5!(
        "MQTT-3.3.4-5",
        "one copy per subscription carries its identifier",
        subscription_ids_overlap
    ),
    v5!(
        "MQTT-3.3.4-6",
        "Subscription Identifier from a client closes",
        sub_id_from_client
    ),
    v5!(
        "MQTT-3.3.2-14",
        "Response Topic with a wildcard closes",
        response_topic_wildcard
    ),
    v5!(
        "MQTT-3.3.2-13",
        "Response Topic must be UTF-8",
        response_topic_utf8
    ),
    v5!(
        "MQTT-3.3.2-19",
        "Content Type must be UTF-8",
        content_type_utf8
    ),
    v5!(
        "MQTT-1.5.7-1",
        "User Property strings must be UTF-8",
        user_property_utf8
    ),
    v5!(
        "MQTT-3.4.2-1",
        "PUBACK uses PUBACK reason codes",
        ack_reason_codes
    ),
    v5!(
        "MQTT-3.5.2-1",
        "PUBREC uses PUBREC reason codes",
        ack_reason_codes
    ),
    v5!(
        "MQTT-3.6.2-1",
        "PUBREL uses PUBREL reason codes",
        ack_reason_codes
    ),
    v5!(
        "MQTT-3.7.2-1",
        "PUBCOMP uses PUBCOMP reason codes",
        ack_reason_codes
    ),
    v5!(
        "MQTT-2.2.2-1",
        "packets without properties carry length 0",
        ack_reason_codes
    ),
    v5!(
        "MQTT-4.12.0-6",
        "no AUTH without an Authentication Method",
        ack_reason_codes
    ),
    v5!(
        "MQTT-3.2.0-2",
        "only one CONNACK per connection",
        ack_reason_codes
    ),
    v5!(
        "MQTT-3.1.2-29",
        "problem information 0: no Reason String on SUBACK",
        no_problem_info
    ),
    v5!(
        "MQTT-4.9.0-1",
        "initial send quota non-zero, within Receive Maximum",
        initial_quota
    ),
    v5!(
        "MQTT-3.2.2-19",
        "CONNACK Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.2.2-20",
        "CONNACK User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.4.2-2",
        "PUBACK Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.4.2-3",
        "PUBACK User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.5.2-2",
        "PUBREC Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.5.2-3",
        "PUBREC User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.6.2-2",
        "PUBREL Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.6.2-3",
        "PUBREL User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.7.2-2",
        "PUBCOMP Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.7.2-3",
        "PUBCOMP User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.9.2-1",
        "SUBACK Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.9.2-2",
        "SUBACK User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.11.2-1",
        "UNSUBACK Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.11.2-2",
        "UNSUBACK User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.14.2-3",
        "DISCONNECT Reason String within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-3.14.2-4",
        "DISCONNECT User Property within Maximum Packet Size",
        within_max_size
    ),
    v5!(
        "MQTT-4.3.3-13",
        "QoS 2 receipt completes after the message expired",
        qos2_in_after_expiry
    ),
    v5!(
        "MQTT-4.3.3-7",
        "sent QoS 2 PUBLISH not expired before PUBREC",
        qos2_out_not_expired
    ),
    v5!(
        "MQTT-4.4.0-2",
        "PUBACK >= 0x80 acknowledges: no resend",
        puback_error_no_resend
    ),
];

/// Connects a subscriber to `topic` and a publisher; the publisher sends
/// `props` and the subscriber's copy is returned.
fn forward(ctx: &Ctx, props: PublishProperties) -> Result<Publish, Stop> {
    let topic = ctx.topic("p");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish_packet(Publish {
        qos: QoS::AtLeastOnce,
        topic: string(&topic),
        payload: Bytes::from_static(b"{}"),
        properties: props.into(),
        ..Publish::default()
    })?;
    let got = s.recv_publish_acked()?;
    p.disconnect()?;
    s.disconnect()?;
    Ok(got)
}

fn fwd_payload_format(ctx: &Ctx) -> TestResult {
    for format in [PayloadFormat::Utf8, PayloadFormat::Unspecified] {
        let got = forward(
            ctx,
            PublishProperties {
                payload_format_indicator: Some(format),
                ..Default::default()
            },
        )?;
        ensure!(
            got.properties.payload_format_indicator == Some(format),
            "sent {format:?}, forwarded {:?}",
            got.properties.payload_format_indicator
        );
    }
    Ok(())
}

fn fwd_response_topic(ctx: &Ctx) -> TestResult {
    let rt = ctx.topic("reply/\u{e9}");
    let got = forward(
        ctx,
        PublishProperties {
            response_topic: Some(string(&rt)),
            ..Default::default()
        },
    )?;
    ensure!(
        got.properties.response_topic.as_deref() == Some(rt.as_str()),
        "forwarded {:?}",
        got.properties.response_topic
    );
    Ok(())
}

fn fwd_correlation(ctx: &Ctx) -> TestResult {
    let data = Bytes::from_static(&[0, 1, 0xFF, 0x80, 7]);
    let got = forward(
        ctx,
        PublishProperties {
            correlation_data: Some(data.clone()),
            ..Default::default()
        },
    )?;
    ensure!(
        got.properties.correlation_data == Some(data),
        "forwarded {:?}",
        got.properties.correlation_data
    );
    Ok(())
}

fn fwd_user_properties(ctx: &Ctx) -> TestResult {
    let props = vec![
        UserProperty::new(string("z"), string("1")),
        UserProperty::new(string("a"), string("2")),
        UserProperty::new(string("z"), string("3")),
        UserProperty::new(string("z"), string("1")),
    ];
    let got = forward(
        ctx,
        PublishProperties {
            user_properties: props.clone().into(),
            ..Default::default()
        },
    )?;
    ensure!(
        got.properties.user_properties == props,
        "forwarded {:?}",
        got.properties.user_properties
    );
    Ok(())
}

fn fwd_content_type(ctx: &Ctx) -> TestResult {
    let got = forward(
        ctx,
        PublishProperties {
            content_type: Some(string("application/x-tern; v=\u{e9}")),
            ..Default::default()
        },
    )?;
    ensure!(
        got.properties.content_type.as_deref() == Some("application/x-tern; v=\u{e9}"),
        "forwarded {:?}",
        got.properties.content_type
    );
    Ok(())
}

fn publish_expiring(p: &mut Conn, topic: &str, retain: bool, seconds: u32) -> TestResult {
    p.publish_packet(Publish {
        qos: QoS::AtLeastOnce,
        retain,
        topic: string(topic),
        payload: Bytes::from_static(b"short-lived"),
        properties: PublishProperties {
            message_expiry_interval: Some(seconds),
            ..Default::default()
        }
        .into(),
        ..Publish::default()
    })
    .map(|_| ())
}

fn expired_not_delivered(ctx: &Ctx) -> TestResult {
    let retained = ctx.topic("retained");
    let queued = ctx.topic("queued");
    ctx.retained(&retained);
    // An offline session that will receive a queued message.
    let id = ctx.client_id();
    ctx.persistent(&id);
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    connect.properties.session_expiry_interval = Some(300);
    let (mut s, _) = ctx.connect_ok(connect.clone())?;
    s.subscribe_ok(&queued, QoS::AtLeastOnce)?;
    s.disconnect()?;
    let mut p = ctx.connect()?;
    publish_expiring(&mut p, &retained, true, 1)?;
    publish_expiring(&mut p, &queued, false, 1)?;
    p.disconnect()?;
    std::thread::sleep(Duration::from_millis(2100));
    connect.clean_start = false;
    let (mut s, ack) = ctx.connect_ok(connect)?;
    ensure!(ack.session_present, "session lost");
    s.subscribe_ok(&retained, QoS::AtLeastOnce)?;
    s.expect_silence(QUIET_TIME)?;
    s.disconnect()
}

fn expiry_counts_down(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    ctx.retained(&topic);
    let mut p = ctx.connect()?;
    publish_expiring(&mut p, &topic, true, 60)?;
    p.disconnect()?;
    std::thread::sleep(Duration::from_millis(1100));
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let got = s.recv_publish_acked()?;
    let left = got
        .properties
        .message_expiry_interval
        .ok_or_else(|| fail("retained message forwarded without its Message Expiry Interval"))?;
    ensure!(
        left <= 59,
        "expiry still {left} s after more than 1 s in the broker"
    );
    ensure!(left >= 55, "expiry dropped to {left} s after about 1 s");
    s.disconnect()
}

/// A PUBLISH with a topic alias (and the topic, or empty).
fn aliased(topic: &str, alias: u16, payload: &'static [u8]) -> Publish {
    Publish {
        topic: string(topic),
        payload: Bytes::from_static(payload),
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(alias),
            ..Default::default()
        }
        .into(),
        ..Publish::default()
    }
}

/// Connects and returns the server's Topic Alias Maximum (skips if 0).
fn alias_client(ctx: &Ctx) -> Result<(Conn, u16), Stop> {
    let (c, ack) = ctx.connect_ok(ctx.connect_packet())?;
    match ack.properties.topic_alias_maximum {
        Some(max) if max > 0 => Ok((c, max)),
        _ => Err(Stop::Skip(
            "broker accepts no topic aliases (Topic Alias Maximum 0)".into(),
        )),
    }
}

fn alias_accepted(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("a");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtMostOnce)?;
    let (mut p, max) = alias_client(ctx)?;
    for alias in [1, max] {
        p.send(Packet::Publish(aliased(&topic, alias, b"set")))?;
        p.send(Packet::Publish(aliased("", alias, b"use")))?;
        for want in [&b"set"[..], b"use"] {
            let got = s.recv_publish()?;
            ensure!(
                got.topic == topic.as_str() && &got.payload[..] == want,
                "alias {alias}: got {} {:?}",
                got.topic,
                got.payload
            );
        }
    }
    p.disconnect()?;
    s.disconnect()
}

fn alias_not_carried(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("a");
    let (mut p, _) = alias_client(ctx)?;
    p.send(Packet::Publish(aliased(&topic, 1, b"set")))?;
    p.disconnect()?;
    let (mut p, _) = alias_client(ctx)?;
    p.send(Packet::Publish(aliased("", 1, b"use")))?;
    p.expect_closed_with_error()
}

/// A raw 5.0 QoS 0 PUBLISH with the given property bytes.
fn raw_publish_props(topic: &str, props: &[u8]) -> Vec<u8> {
    let mut body = raw_str(topic.as_bytes());
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(b"x");
    raw(0x30, &body)
}

fn alias_zero(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw_publish_props(&ctx.topic("a"), &[0x23, 0, 0]))?;
    c.expect_closed_with_error()
}

fn no_alias_to_client(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("a");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtMostOnce)?;
    let mut p = ctx.connect()?;
    for _ in 0..5 {
        p.publish(&topic, b"x", QoS::AtMostOnce, false)?;
    }
    for _ in 0..5 {
        let got = s.recv_publish()?;
        ensure!(
            got.properties.topic_alias.is_none(),
            "Topic Alias sent to a client that allows none"
        );
        ensure!(got.topic == topic.as_str(), "topic {}", got.topic);
    }
    p.disconnect()?;
    s.disconnect()
}

fn aliases_within_max(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.properties.topic_alias_maximum = Some(2);
    let (mut s, _) = ctx.connect_ok(connect)?;
    s.subscribe_ok(&format!("{}/#", ctx.prefix()), QoS::AtMostOnce)?;
    let mut p = ctx.connect()?;
    let mut known = std::collections::BTreeMap::new();
    for round in 0..3 {
        for t in ["a", "b", "c", "d"] {
            let topic = ctx.topic(t);
            p.publish(&topic, &[round], QoS::AtMostOnce, false)?;
            let got = s.recv_publish()?;
            let name = match got.properties.topic_alias {
                Some(alias) => {
                    ensure!(alias.get() <= 2, "Topic Alias {alias} above the maximum 2");
                    if got.topic.is_empty() {
                        known
                            .get(&alias)
                            .cloned()
                            .ok_or_else(|| fail(format!("unknown alias {alias}")))?
                    } else {
                        known.insert(alias, got.topic.to_string());
                        got.topic.to_string()
                    }
                }
                None => got.topic.to_string(),
            };
            ensure!(name == topic, "message for {topic} resolved to {name}");
        }
    }
    p.disconnect()?;
    s.disconnect()
}

fn max_packet_size(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("m");
    let mut connect = ctx.connect_packet();
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(128);
    let (mut s, _) = ctx.connect_ok(connect)?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, &[b'x'; 200], QoS::AtLeastOnce, false)?;
    p.publish(&topic, b"small", QoS::AtLeastOnce, false)?;
    let got = s.recv_publish_acked()?;
    ensure!(
        &got.payload[..] == b"small",
        "got a {}-byte payload",
        got.payload.len()
    );
    s.expect_alive()?;
    p.disconnect()?;
    s.disconnect()
}

fn quota_client(ctx: &Ctx, topic: &str) -> Result<(Conn, Conn), Stop> {
    let mut connect = ctx.connect_packet();
    connect.properties.receive_maximum = NonZeroU16::new(2);
    let (mut s, _) = ctx.connect_ok(connect)?;
    s.subscribe_ok(topic, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    for i in 0..5u8 {
        p.publish(topic, &[i], QoS::AtLeastOnce, false)?;
    }
    Ok((s, p))
}

fn receive_maximum(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q");
    let (mut s, mut p) = quota_client(ctx, &topic)?;
    let a = s.recv_publish()?;
    let b = s.recv_publish()?;
    if let Ok(third) = s.recv_within(QUIET_TIME) {
        return Err(fail(format!(
            "with Receive Maximum 2 and messages {:?} and {:?} unacknowledged, the broker sent {}",
            a.payload,
            b.payload,
            describe(&third)
        )));
    }
    s.ack(&a)?;
    let c = s.recv_publish()?;
    ensure!(c.payload[..] == [2], "third message {:?}", c.payload);
    if let Ok(fourth) = s.recv_within(QUIET_TIME) {
        return Err(fail(format!(
            "with Receive Maximum 2, one PUBACK and messages {:?} and {:?} unacknowledged, the broker sent {}",
            b.payload,
            c.payload,
            describe(&fourth)
        )));
    }
    s.ack(&b)?;
    s.ack(&c)?;
    for _ in 0..2 {
        let x = s.recv_publish_acked()?;
        ensure!(x.qos == QoS::AtLeastOnce, "QoS {}", x.qos.as_u8());
    }
    p.disconnect()?;
    s.disconnect()
}

fn describe(p: &Packet) -> String {
    match p {
        Packet::Publish(p) => format!(
            "PUBLISH(id {:?}, dup {}, payload {:?})",
            p.packet_id.map(|i| i.get()),
            p.dup,
            p.payload
        ),
        other => name(other),
    }
}

fn initial_quota(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q");
    let (mut s, mut p) = quota_client(ctx, &topic)?;
    let a = s.recv_publish()?;
    let b = s.recv_publish()?;
    if let Ok(third) = s.recv_within(QUIET_TIME) {
        return Err(fail(format!(
            "initial quota above Receive Maximum 2: sent {} before any PUBACK",
            describe(&third)
        )));
    }
    s.ack(&a)?;
    s.ack(&b)?;
    p.disconnect()?;
    s.disconnect()
}

fn quota_other_packets(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("q");
    let (mut s, mut p) = quota_client(ctx, &topic)?;
    let a = s.recv_publish()?;
    let _b = s.recv_publish()?;
    // Quota is zero: PINGREQ, SUBSCRIBE and UNSUBSCRIBE are still answered.
    s.expect_alive()?;
    s.subscribe_ok(&ctx.topic("other"), QoS::AtMostOnce)?;
    s.unsubscribe(&ctx.topic("other"))?;
    s.ack(&a)?;
    p.disconnect()?;
    s.disconnect()
}

fn subscribe_with_id(c: &mut Conn, filter: &str, id: u32) -> TestResult {
    let packet_id = c.next_pid();
    c.send(Packet::Subscribe(Subscribe {
        packet_id,
        properties: SubscribeProperties {
            subscription_identifier: SubscriptionId::new(id),
            ..Default::default()
        },
        filters: vec![SubscribeFilter {
            filter: string(filter),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    }))?;
    let ack = c.expect_suback(packet_id)?;
    if ack.reason_codes[0] == ReasonCode::SubscriptionIdentifiersNotSupported {
        return Err(Stop::Skip(
            "broker does not support Subscription Identifiers".into(),
        ));
    }
    ensure!(
        !ack.reason_codes[0].is_error(),
        "refused: {:?}",
        ack.reason_codes
    );
    Ok(())
}

fn ids(p: &Publish) -> Vec<u32> {
    p.properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect()
}

fn subscription_id(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("s");
    let mut s = ctx.connect()?;
    subscribe_with_id(&mut s, &topic, 268_435_455)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = s.recv_publish_acked()?;
    ensure!(ids(&got) == [268_435_455], "identifiers {:?}", ids(&got));
    p.disconnect()?;
    s.disconnect()
}

fn subscription_ids_overlap(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("o/x");
    let marker = ctx.topic("marker");
    let mut s = ctx.connect()?;
    subscribe_with_id(&mut s, &topic, 11)?;
    subscribe_with_id(&mut s, &ctx.topic("o/+"), 22)?;
    s.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    p.publish(&marker, b"m", QoS::AtLeastOnce, false)?;
    let mut copies = Vec::new();
    loop {
        let got = s.recv_publish_acked()?;
        if got.topic == marker.as_str() {
            break;
        }
        let mut i = ids(&got);
        i.sort_unstable();
        copies.push(i);
    }
    let ok = match copies.as_slice() {
        [one] => one == &[11, 22],
        [a, b] => {
            let mut both = [a.clone(), b.clone()];
            both.sort();
            both == [vec![11], vec![22]]
        }
        _ => false,
    };
    ensure!(
        ok,
        "copies carried identifiers {copies:?}: expected one copy with [11, 22] or one copy each"
    );
    p.disconnect()?;
    s.disconnect()
}

fn sub_id_from_client(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw_publish_props(&ctx.topic("s"), &[0x0B, 5]))?;
    c.expect_closed_with_error()
}

fn response_topic_wildcard(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let mut props = vec![0x08];
    props.extend(raw_str(b"reply/+"));
    c.send_raw(&raw_publish_props(&ctx.topic("r"), &props))?;
    c.expect_closed_with_error()
}

fn bad_utf8_property(ctx: &Ctx, id: u8) -> TestResult {
    let mut c = ctx.connect()?;
    let mut props = vec![id];
    props.extend(raw_str(&[b'a', 0xC0, 0xAF]));
    if id == 0x26 {
        props.extend(raw_str(b"v"));
    }
    c.send_raw(&raw_publish_props(&ctx.topic("u"), &props))?;
    c.expect_closed_with_error()
}

fn response_topic_utf8(ctx: &Ctx) -> TestResult {
    bad_utf8_property(ctx, 0x08)
}

fn content_type_utf8(ctx: &Ctx) -> TestResult {
    bad_utf8_property(ctx, 0x03)
}

fn user_property_utf8(ctx: &Ctx) -> TestResult {
    bad_utf8_property(ctx, 0x26)
}

fn ack_reason_codes(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("codes");
    let lonely = ctx.topic("nobody");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::ExactlyOnce)?;
    let mut p = ctx.connect()?;
    for t in [&topic, &lonely] {
        let code = p.publish(t, b"x", QoS::AtLeastOnce, false)?;
        ensure!(
            matches!(
                code,
                ReasonCode::Success | ReasonCode::NoMatchingSubscribers
            ),
            "PUBACK reason {code:?}"
        );
        let code = p.publish(t, b"x", QoS::ExactlyOnce, false)?;
        ensure!(
            matches!(
                code,
                ReasonCode::Success | ReasonCode::NoMatchingSubscribers
            ),
            "PUBREC reason {code:?}"
        );
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let got = s.recv_publish()?;
        let id = got.packet_id.ok_or_else(|| fail("no packet id"))?;
        if got.qos == QoS::ExactlyOnce {
            s.send(Packet::PubRec(PubRec::new(id)))?;
            match s.wait_for(|x| matches!(x, Packet::PubRel(_)), "PUBREL")? {
                Packet::PubRel(r) => ensure!(
                    r.reason_code == ReasonCode::Success,
                    "PUBREL reason {:?}",
                    r.reason_code
                ),
                _ => unreachable!("wait_for returns what it was asked for"),
            }
            s.send(Packet::PubComp(tern_codec::PubComp::new(id)))?;
        } else {
            s.ack(&got)?;
        }
        seen.push(got);
    }
    s.expect_alive()?;
    p.expect_alive()?;
    // Nothing else may have arrived: no AUTH, no second CONNACK.
    for c in [&mut s, &mut p] {
        if let Ok(extra) = c.recv_within(Duration::from_millis(1)) {
            return Err(fail(format!("unexpected {}", name(&extra))));
        }
    }
    p.disconnect()?;
    s.disconnect()
}

fn no_problem_info(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.properties.request_problem_information = Some(false);
    let (mut c, _) = ctx.connect_ok(connect)?;
    let ack = c.subscribe(&ctx.topic("a/#/b"), QoS::AtMostOnce);
    match ack {
        Ok(ack) => {
            ensure!(
                ack.properties.reason_string.is_none() && ack.properties.user_properties.is_empty(),
                "SUBACK carries a Reason String or User Property: {:?}",
                ack.properties
            );
            c.disconnect()
        }
        // Closing on the invalid filter is allowed too; nothing to check.
        Err(_) => Ok(()),
    }
}

/// With a small Maximum Packet Size, every packet the broker sends (acks
/// with and without errors, SUBACK/UNSUBACK failures, the DISCONNECT on a
/// take-over) fits: optional Reason Strings and User Properties are left out.
fn within_max_size(ctx: &Ctx) -> TestResult {
    const MAX: usize = 32;
    let id = ctx.client_id();
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(MAX as u32);
    connect.properties.request_problem_information = Some(true);
    let (mut c, _) = ctx.connect_ok(connect.clone())?;
    let topic = ctx.topic("z");
    if c.subscribe(&ctx.topic("a/#/b"), QoS::AtMostOnce).is_err() {
        // Closing on the invalid filter is allowed: start again without it.
        ensure!(
            c.largest_packet() <= MAX,
            "broker sent a {}-byte packet (limit {MAX})",
            c.largest_packet()
        );
        c = ctx.connect_ok(connect.clone())?.0;
    }
    c.subscribe_ok(&topic, QoS::ExactlyOnce)?;
    c.unsubscribe(&ctx.topic("never"))?;
    c.publish(&ctx.topic("nobody"), b"", QoS::AtLeastOnce, false)?;
    c.publish(&ctx.topic("nobody"), b"", QoS::ExactlyOnce, false)?;
    c.publish(&topic, b"", QoS::ExactlyOnce, false)?;
    let got = c.recv_publish()?;
    c.ack(&got)?;
    c.expect_alive()?;
    // Take over: the DISCONNECT 0x8E must fit too.
    let (mut other, _) = ctx.connect_ok(connect)?;
    let _ = c.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    let largest = c.largest_packet();
    ensure!(
        largest <= MAX,
        "broker sent a {largest}-byte packet to a client with Maximum Packet Size {MAX}"
    );
    other.disconnect()
}

fn qos2_in_after_expiry(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send(Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        packet_id: NonZeroU16::new(3),
        topic: string(&ctx.topic("e")),
        payload: Bytes::from_static(b"x"),
        properties: PublishProperties {
            message_expiry_interval: Some(1),
            ..Default::default()
        }
        .into(),
        ..Publish::default()
    }))?;
    c.wait_for(|p| matches!(p, Packet::PubRec(_)), "PUBREC")?;
    std::thread::sleep(Duration::from_millis(1500));
    c.send(Packet::PubRel(tern_codec::PubRel::new(
        crate::harness::pid(3),
    )))?;
    match c.recv()? {
        Packet::PubComp(p) => {
            ensure!(p.packet_id.get() == 3, "PUBCOMP for {}", p.packet_id);
            ensure!(!p.reason_code.is_error(), "PUBCOMP {:?}", p.reason_code);
        }
        other => {
            return Err(fail(format!(
                "PUBREL after expiry answered with {}",
                name(&other)
            )));
        }
    }
    c.disconnect()
}

fn persistent_connect(ctx: &Ctx, id: &str, clean: bool) -> tern_codec::Connect {
    ctx.persistent(id);
    let mut connect = ctx.connect_packet();
    connect.client_id = string(id);
    connect.clean_start = clean;
    connect.properties.session_expiry_interval = Some(300);
    connect
}

fn qos2_out_not_expired(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("e");
    let id = ctx.client_id();
    let (mut s, _) = ctx.connect_ok(persistent_connect(ctx, &id, true))?;
    s.subscribe_ok(&topic, QoS::ExactlyOnce)?;
    let mut p = ctx.connect()?;
    p.publish_packet(Publish {
        qos: QoS::ExactlyOnce,
        topic: string(&topic),
        payload: Bytes::from_static(b"x"),
        properties: PublishProperties {
            message_expiry_interval: Some(1),
            ..Default::default()
        }
        .into(),
        ..Publish::default()
    })?;
    let first = s.recv_publish()?;
    ensure!(
        first.qos == QoS::ExactlyOnce,
        "delivered at QoS {}",
        first.qos.as_u8()
    );
    s.drop_abruptly();
    std::thread::sleep(Duration::from_millis(2200));
    let (mut s, _) = ctx.connect_ok(persistent_connect(ctx, &id, false))?;
    let again = s.recv_publish()?;
    ensure!(again.packet_id == first.packet_id, "resent with another id");
    s.ack(&again)?;
    p.disconnect()?;
    s.disconnect()
}

fn puback_error_no_resend(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("e");
    let id = ctx.client_id();
    let (mut s, _) = ctx.connect_ok(persistent_connect(ctx, &id, true))?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = s.recv_publish()?;
    let pid = got.packet_id.ok_or_else(|| fail("QoS 1 without id"))?;
    s.send(Packet::PubAck(tern_codec::PubAck::with_reason(
        pid,
        ReasonCode::UnspecifiedError,
    )))?;
    s.expect_alive()?;
    s.drop_abruptly();
    let (mut s, present) = ctx.connect_ok(persistent_connect(ctx, &id, false))?;
    ensure!(present.session_present, "session lost");
    s.expect_silence(QUIET_TIME)?;
    p.disconnect()?;
    s.disconnect()
}
