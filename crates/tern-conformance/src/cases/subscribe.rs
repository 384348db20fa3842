//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK; topic filters and matching.

use super::{Case, v3, v5};
use crate::{
    ensure,
    harness::{Conn, Ctx, Stop, TestResult, fail, name, pid, raw, raw_str, string},
};
use tern_codec::{
    Packet, PubRec, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions, Unsubscribe,
};

pub(crate) const CASES: &[Case] = &[
    v3!("MQTT-3.8.4-1", "SUBSCRIBE answered by SUBACK", suback_pid),
    v5!("MQTT-3.8.4-1", "SUBSCRIBE answered by SUBACK", suback_pid),
    v3!(
        "MQTT-3.8.4-2",
        "SUBACK has the SUBSCRIBE's packet id",
        suback_pid
    ),
    v5!(
        "MQTT-3.8.4-2",
        "SUBACK has the SUBSCRIBE's packet id",
        suback_pid
    ),
    v3!(
        "MQTT-2.3.1-7",
        "SUBACK/UNSUBACK carry the request's id",
        suback_pid
    ),
    v5!(
        "MQTT-2.2.1-6",
        "SUBACK/UNSUBACK carry the request's id",
        suback_pid
    ),
    v3!(
        "MQTT-3.8.4-3",
        "identical filter replaces the subscription",
        replace_subscription
    ),
    v5!(
        "MQTT-3.8.4-3",
        "identical filter replaces the subscription",
        replace_subscription
    ),
    v3!(
        "MQTT-3.8.4-4",
        "several filters handled as several SUBSCRIBEs",
        multi_subscribe
    ),
    v5!(
        "MQTT-3.8.4-5",
        "several filters handled as several SUBSCRIBEs",
        multi_subscribe
    ),
    v3!(
        "MQTT-3.8.4-5",
        "one return code per filter, granted QoS",
        multi_subscribe
    ),
    v5!(
        "MQTT-3.8.4-6",
        "one reason code per filter",
        multi_subscribe
    ),
    v5!(
        "MQTT-3.8.4-7",
        "reason code shows granted QoS or failure",
        multi_subscribe
    ),
    v3!(
        "MQTT-3.9.3-1",
        "return codes in filter order",
        multi_subscribe
    ),
    v5!(
        "MQTT-3.9.3-1",
        "reason codes in filter order",
        multi_subscribe
    ),
    v3!(
        "MQTT-3.9.3-2",
        "only return codes 0, 1, 2, 0x80",
        suback_codes
    ),
    v5!("MQTT-3.9.3-2", "only SUBACK reason codes", suback_codes),
    v3!(
        "MQTT-3.8.3-4",
        "reserved bits in subscription options close",
        bad_options
    ),
    v5!(
        "MQTT-3.8.3-5",
        "reserved bits in subscription options close",
        bad_options
    ),
    v3!(
        "MQTT-3.8.3-3",
        "SUBSCRIBE without filters closes",
        empty_subscribe
    ),
    v5!(
        "MQTT-3.8.3-2",
        "SUBSCRIBE without filters closes",
        empty_subscribe
    ),
    v3!(
        "MQTT-3.8.1-1",
        "SUBSCRIBE with wrong reserved bits closes",
        bad_subscribe_flags
    ),
    v5!(
        "MQTT-3.8.1-1",
        "SUBSCRIBE with wrong reserved bits closes",
        bad_subscribe_flags
    ),
    v3!(
        "MQTT-3.10.1-1",
        "UNSUBSCRIBE with wrong reserved bits closes",
        bad_unsubscribe_flags
    ),
    v5!(
        "MQTT-3.10.1-1",
        "UNSUBSCRIBE with wrong reserved bits closes",
        bad_unsubscribe_flags
    ),
    v3!(
        "MQTT-3.10.3-2",
        "UNSUBSCRIBE without filters closes",
        empty_unsubscribe
    ),
    v5!(
        "MQTT-3.10.3-2",
        "UNSUBSCRIBE without filters closes",
        empty_unsubscribe
    ),
    v3!(
        "MQTT-3.10.4-1",
        "unsubscribe compares filters character by character",
        unsub_exact
    ),
    v5!(
        "MQTT-3.10.4-1",
        "unsubscribe compares filters character by character",
        unsub_exact
    ),
    v3!(
        "MQTT-3.10.4-2",
        "unsubscribe stops new deliveries",
        unsub_stops
    ),
    v5!(
        "MQTT-3.10.4-2",
        "unsubscribe stops new deliveries",
        unsub_stops
    ),
    v3!(
        "MQTT-3.10.4-3",
        "unsubscribe completes QoS 2 in flight",
        unsub_completes
    ),
    v5!(
        "MQTT-3.10.4-3",
        "unsubscribe completes QoS 2 in flight",
        unsub_completes
    ),
    v3!(
        "MQTT-3.10.4-4",
        "UNSUBACK with the UNSUBSCRIBE's id",
        unsuback_none
    ),
    v5!(
        "MQTT-3.10.4-4",
        "UNSUBSCRIBE answered by UNSUBACK",
        unsuback_none
    ),
    v3!(
        "MQTT-3.10.4-5",
        "UNSUBACK even when nothing was deleted",
        unsuback_none
    ),
    v5!(
        "MQTT-3.10.4-5",
        "UNSUBACK id, even when nothing was deleted",
        unsuback_none
    ),
    v3!(
        "MQTT-3.10.4-6",
        "several filters handled as several UNSUBSCRIBEs",
        multi_unsubscribe
    ),
    v5!(
        "MQTT-3.10.4-6",
        "several filters handled as several UNSUBSCRIBEs",
        multi_unsubscribe
    ),
    v5!(
        "MQTT-3.11.3-1",
        "UNSUBACK reason codes in filter order",
        multi_unsubscribe
    ),
    v5!(
        "MQTT-3.11.3-2",
        "UNSUBACK reason codes 0x00 / 0x11",
        multi_unsubscribe
    ),
    v3!(
        "MQTT-3.3.2-3",
        "delivered topic name matches the filter",
        wildcard_matching
    ),
    v5!(
        "MQTT-3.3.2-3",
        "delivered topic name matches the filter",
        wildcard_matching
    ),
    v3!(
        "MQTT-4.7.1-2",
        "'#' must be last and alone in its level",
        bad_multi_level
    ),
    v5!(
        "MQTT-4.7.1-1",
        "'#' must be last and alone in its level",
        bad_multi_level
    ),
    v3!(
        "MQTT-4.7.1-3",
        "'+' must occupy a whole level",
        bad_single_level
    ),
    v5!(
        "MQTT-4.7.1-2",
        "'+' must occupy a whole level",
        bad_single_level
    ),
    v3!(
        "MQTT-4.7.2-1",
        "wildcards do not match $ topics",
        dollar_topics
    ),
    v5!(
        "MQTT-4.7.2-1",
        "wildcards do not match $ topics",
        dollar_topics
    ),
    v3!(
        "MQTT-4.7.3-4",
        "no normalisation of topics when matching",
        no_normalisation
    ),
    v5!(
        "MQTT-4.7.3-4",
        "no normalisation of topics when matching",
        no_normalisation
    ),
    v5!(
        "MQTT-3.8.3-3",
        "No Local: own messages not forwarded",
        no_local
    ),
    v5!(
        "MQTT-3.8.3-4",
        "No Local on a shared subscription is a protocol error",
        no_local_shared
    ),
    v5!(
        "MQTT-4.8.2-1",
        "shared filter needs $share/ and a ShareName",
        bad_share_name_empty
    ),
    v5!(
        "MQTT-4.8.2-2",
        "ShareName without / + #, followed by a filter",
        bad_share_name_chars
    ),
    v5!(
        "MQTT-4.8.2-3",
        "shared subscription: granted QoS respected",
        shared_granted_qos
    ),
    v5!(
        "MQTT-4.8.2-4",
        "shared subscription: delivery completed on reconnect",
        shared_reconnect
    ),
    v5!(
        "MQTT-4.8.2-5",
        "shared subscription: session ended, not sent to others",
        shared_session_ends
    ),
    v5!(
        "MQTT-4.8.2-6",
        "shared subscription: PUBACK >= 0x80, not sent to others",
        shared_nack
    ),
];

/// A SUBSCRIBE for several filters.
fn subscribe_many(id: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|(f, q)| SubscribeFilter {
                filter: string(f),
                options: SubscriptionOptions::with_qos(*q),
            })
            .collect(),
    })
}

fn suback_pid(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let topic = ctx.topic("s");
    c.send(subscribe_many(0x1234, &[(&topic, QoS::AtLeastOnce)]))?;
    match c.recv()? {
        Packet::SubAck(a) => ensure!(a.packet_id == pid(0x1234), "SUBACK id {}", a.packet_id),
        other => return Err(fail(format!("SUBSCRIBE answered with {}", name(&other)))),
    }
    c.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(0xBEEF),
        properties: Default::default(),
        filters: vec![string(&topic)],
    }))?;
    match c.recv()? {
        Packet::UnsubAck(a) => ensure!(a.packet_id == pid(0xBEEF), "UNSUBACK id {}", a.packet_id),
        other => return Err(fail(format!("UNSUBSCRIBE answered with {}", name(&other)))),
    }
    c.disconnect()
}

/// Publishes `marker` from `p` and collects what `s` receives up to it.
fn until_marker(
    s: &mut Conn,
    p: &mut Conn,
    marker: &str,
) -> Result<Vec<tern_codec::Publish>, Stop> {
    p.publish(marker, b"m", QoS::AtLeastOnce, false)?;
    let mut got = Vec::new();
    loop {
        let x = s.recv_publish_acked()?;
        if x.topic == marker {
            return Ok(got);
        }
        got.push(x);
    }
}

fn replace_subscription(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    let marker = ctx.topic("marker");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtMostOnce)?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    s.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = until_marker(&mut s, &mut p, &marker)?;
    ensure!(
        got.len() == 1,
        "{} copies after re-subscribing to the same filter",
        got.len()
    );
    ensure!(
        got[0].qos == QoS::AtLeastOnce,
        "the new QoS was not applied"
    );
    p.disconnect()?;
    s.disconnect()
}

fn multi_subscribe(ctx: &Ctx) -> TestResult {
    let (a, b, c2) = (ctx.topic("a"), ctx.topic("b"), ctx.topic("c"));
    let mut s = ctx.connect()?;
    s.send(subscribe_many(
        3,
        &[
            (&a, QoS::ExactlyOnce),
            (&b, QoS::AtMostOnce),
            (&c2, QoS::AtLeastOnce),
        ],
    ))?;
    let ack = s.expect_suback(pid(3))?;
    let granted: Vec<u8> = ack.reason_codes.iter().map(|r| r.as_u8()).collect();
    ensure!(
        granted.len() == 3,
        "{} reason codes for 3 filters",
        granted.len()
    );
    for (i, (got, asked)) in granted.iter().zip([2u8, 0, 1]).enumerate() {
        ensure!(
            *got <= asked || *got >= 0x80,
            "filter {i}: asked QoS {asked}, SUBACK says {got:#04x} (codes {granted:02x?})"
        );
        ensure!(*got < 0x80, "filter {i} refused ({got:#04x})");
    }
    ensure!(
        granted == [2, 0, 1],
        "codes {granted:02x?} not in filter order (a broker granting less than asked would explain it)"
    );
    let mut p = ctx.connect()?;
    for t in [&a, &b, &c2] {
        p.publish(t, b"x", QoS::ExactlyOnce, false)?;
        let got = s.recv_publish_acked()?;
        ensure!(got.topic == t.as_str(), "expected {t}, got {}", got.topic);
    }
    p.disconnect()?;
    s.disconnect()
}

fn suback_codes(ctx: &Ctx) -> TestResult {
    let mut s = ctx.connect()?;
    let t = ctx.topic("t");
    s.send(subscribe_many(
        8,
        &[
            (&t, QoS::AtMostOnce),
            (&t, QoS::AtLeastOnce),
            (&t, QoS::ExactlyOnce),
        ],
    ))?;
    let ack = s.expect_suback(pid(8))?;
    for code in &ack.reason_codes {
        let ok = if ctx.v5() {
            code.is_valid_for(tern_codec::PacketType::SubAck)
        } else {
            matches!(code.as_u8(), 0 | 1 | 2 | 0x80)
        };
        ensure!(ok, "SUBACK code {:#04x}", code.as_u8());
    }
    s.disconnect()
}

/// SUBSCRIBE bytes with one filter and a raw options byte.
fn raw_subscribe(ctx: &Ctx, first: u8, filter: &str, options: u8) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    if ctx.v5() {
        body.push(0);
    }
    body.extend(raw_str(filter.as_bytes()));
    body.push(options);
    raw(first, &body)
}

fn bad_options(ctx: &Ctx) -> TestResult {
    // 3.1.1: bits 7-2 reserved; 5.0: bits 7-6 reserved. QoS 3 is malformed in both.
    for options in [if ctx.v5() { 0x40 } else { 0x04 }, 0x03] {
        let mut c = ctx.connect()?;
        c.send_raw(&raw_subscribe(ctx, 0x82, &ctx.topic("o"), options))?;
        c.expect_closed_with_error().map_err(|e| match e {
            Stop::Fail(m) => fail(format!("options byte {options:#04x}: {m}")),
            other => other,
        })?;
    }
    Ok(())
}

fn empty_subscribe(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let mut body = 1u16.to_be_bytes().to_vec();
    if ctx.v5() {
        body.push(0);
    }
    c.send_raw(&raw(0x82, &body))?;
    c.expect_closed_with_error()
}

fn bad_subscribe_flags(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw_subscribe(ctx, 0x80, &ctx.topic("f"), 0))?;
    c.expect_closed_with_error()
}

fn raw_unsubscribe(ctx: &Ctx, first: u8, filters: &[&str]) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    if ctx.v5() {
        body.push(0);
    }
    for f in filters {
        body.extend(raw_str(f.as_bytes()));
    }
    raw(first, &body)
}

fn bad_unsubscribe_flags(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw_unsubscribe(ctx, 0xA0, &[&ctx.topic("f")]))?;
    c.expect_closed_with_error()
}

fn empty_unsubscribe(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw_unsubscribe(ctx, 0xA2, &[]))?;
    c.expect_closed_with_error()
}

fn unsub_exact(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("a/b");
    let marker = ctx.topic("marker");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    s.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    // Matches the topic, but is not the subscription's filter.
    s.unsubscribe(&ctx.topic("a/+"))?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = until_marker(&mut s, &mut p, &marker)?;
    ensure!(
        got.len() == 1,
        "unsubscribing a/+ removed the a/b subscription"
    );
    p.disconnect()?;
    s.disconnect()
}

fn unsub_stops(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("u");
    let marker = ctx.topic("marker");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    s.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    s.unsubscribe(&topic)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = until_marker(&mut s, &mut p, &marker)?;
    ensure!(got.is_empty(), "delivered after UNSUBSCRIBE");
    p.disconnect()?;
    s.disconnect()
}

fn unsub_completes(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("u");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::ExactlyOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::ExactlyOnce, false)?;
    let got = s.recv_publish()?;
    let id = got.packet_id.ok_or_else(|| fail("QoS 2 without id"))?;
    s.unsubscribe(&topic)?;
    s.send(Packet::PubRec(PubRec::new(id)))?;
    match s.wait_for(
        |x| matches!(x, Packet::PubRel(_)),
        "PUBREL after UNSUBSCRIBE",
    )? {
        Packet::PubRel(r) => ensure!(r.packet_id == id, "PUBREL for {}", r.packet_id),
        _ => unreachable!("wait_for returns what it was asked for"),
    }
    s.send(Packet::PubComp(tern_codec::PubComp::new(id)))?;
    s.expect_alive()?;
    p.disconnect()?;
    s.disconnect()
}

fn unsuback_none(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let ack = c.unsubscribe(&ctx.topic("never"))?;
    if ctx.v5() {
        ensure!(
            ack.reason_codes.len() == 1
                && matches!(
                    ack.reason_codes[0],
                    ReasonCode::NoSubscriptionExisted | ReasonCode::Success
                ),
            "UNSUBACK codes {:?}",
            ack.reason_codes
        );
    }
    c.disconnect()
}

fn multi_unsubscribe(ctx: &Ctx) -> TestResult {
    let (a, b, c2) = (ctx.topic("a"), ctx.topic("b"), ctx.topic("c"));
    let marker = ctx.topic("marker");
    let mut s = ctx.connect()?;
    for t in [&a, &c2, &marker] {
        s.subscribe_ok(t, QoS::AtLeastOnce)?;
    }
    s.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(77),
        properties: Default::default(),
        filters: vec![string(&a), string(&b), string(&c2)],
    }))?;
    match s.wait_for(|x| matches!(x, Packet::UnsubAck(_)), "UNSUBACK")? {
        Packet::UnsubAck(ack) => {
            ensure!(ack.packet_id == pid(77), "UNSUBACK id {}", ack.packet_id);
            if ctx.v5() {
                use ReasonCode::{NoSubscriptionExisted as None_, Success as Ok_};
                ensure!(
                    ack.reason_codes == [Ok_, None_, Ok_],
                    "UNSUBACK codes {:?}, expected [0x00, 0x11, 0x00]",
                    ack.reason_codes
                );
            }
        }
        _ => unreachable!("wait_for returns what it was asked for"),
    }
    let mut p = ctx.connect()?;
    p.publish(&a, b"x", QoS::AtLeastOnce, false)?;
    p.publish(&c2, b"x", QoS::AtLeastOnce, false)?;
    let got = until_marker(&mut s, &mut p, &marker)?;
    ensure!(
        got.is_empty(),
        "delivered after UNSUBSCRIBE: {:?}",
        got.iter().map(|g| g.topic.to_string()).collect::<Vec<_>>()
    );
    p.disconnect()?;
    s.disconnect()
}

fn wildcard_matching(ctx: &Ctx) -> TestResult {
    let pre = ctx.prefix();
    let cases: &[(&str, &str, bool)] = &[
        ("+/x", "a/x", true),
        ("+/x", "a/b/x", false),
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("a/+/c", "a/b/c", true),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("+/+", "/x", true),
        ("#", "any/thing", true),
    ];
    for (i, (filter, topic, matches)) in cases.iter().enumerate() {
        let filter = format!("{pre}/{i}/{filter}");
        let topic = format!("{pre}/{i}/{topic}");
        let marker = format!("{pre}/{i}/marker-level/m/m/m");
        let mut s = ctx.connect()?;
        s.subscribe_ok(&filter, QoS::AtLeastOnce)?;
        s.subscribe_ok(&marker, QoS::AtLeastOnce)?;
        let mut p = ctx.connect()?;
        p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
        let got = until_marker(&mut s, &mut p, &marker)?;
        let got: Vec<_> = got
            .into_iter()
            .filter(|g| g.topic != marker.as_str())
            .collect();
        if *matches {
            ensure!(
                got.len() == 1,
                "{filter} should match {topic} (got {})",
                got.len()
            );
            ensure!(
                got[0].topic == topic.as_str(),
                "delivered as {}",
                got[0].topic
            );
        } else {
            ensure!(got.is_empty(), "{filter} must not match {topic}");
        }
        p.disconnect()?;
        s.disconnect()?;
    }
    Ok(())
}

/// An invalid filter is refused: SUBACK failure (0x80 or above) or a close.
fn refused_filter(ctx: &Ctx, filter: &str) -> TestResult {
    let mut c = ctx.connect()?;
    c.send(subscribe_many(5, &[(filter, QoS::AtMostOnce)]))?;
    match c.next_event(crate::harness::PACKET_TIMEOUT)? {
        crate::harness::Event::Closed => Ok(()),
        crate::harness::Event::Packet(Packet::SubAck(a)) => {
            ensure!(
                a.reason_codes.len() == 1 && a.reason_codes[0].is_error(),
                "invalid filter {filter} granted: {:?}",
                a.reason_codes
            );
            Ok(())
        }
        crate::harness::Event::Packet(Packet::Disconnect(d)) if ctx.v5() => {
            ensure!(d.reason_code.is_error(), "DISCONNECT {:?}", d.reason_code);
            Ok(())
        }
        crate::harness::Event::Packet(other) => Err(fail(format!(
            "invalid filter answered with {}",
            name(&other)
        ))),
        crate::harness::Event::Timeout => Err(fail("no answer to an invalid filter")),
    }
}

fn bad_multi_level(ctx: &Ctx) -> TestResult {
    refused_filter(ctx, &ctx.topic("a/#/b"))?;
    refused_filter(ctx, &ctx.topic("a#"))
}

fn bad_single_level(ctx: &Ctx) -> TestResult {
    refused_filter(ctx, &ctx.topic("a+/b"))?;
    refused_filter(ctx, &ctx.topic("a/b+"))
}

fn dollar_topics(ctx: &Ctx) -> TestResult {
    let unique = ctx.prefix().replace('/', "-");
    let dollar = format!("$tc{unique}/x");
    let plain = format!("tc{unique}/x");
    let mut s = ctx.connect()?;
    s.subscribe_ok("+/x", QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&dollar, b"dollar", QoS::AtLeastOnce, false)?;
    p.publish(&plain, b"plain", QoS::AtLeastOnce, false)?;
    // Other tests may publish to +/x topics too: look for ours only.
    let deadline = std::time::Instant::now() + crate::harness::PACKET_TIMEOUT;
    loop {
        ensure!(
            std::time::Instant::now() < deadline,
            "the plain message never arrived"
        );
        let got = s.recv_publish_acked()?;
        ensure!(got.topic != dollar.as_str(), "+/x matched {dollar}");
        if got.topic == plain.as_str() {
            break;
        }
    }
    p.disconnect()?;
    s.disconnect()
}

fn no_normalisation(ctx: &Ctx) -> TestResult {
    let marker = ctx.topic("marker");
    let mut s = ctx.connect()?;
    s.subscribe_ok(&ctx.topic("Case"), QoS::AtLeastOnce)?;
    s.subscribe_ok(&ctx.topic("slash/"), QoS::AtLeastOnce)?;
    s.subscribe_ok(&ctx.topic("\u{e9}"), QoS::AtLeastOnce)?; // precomposed é
    s.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    for t in ["case", "slash", "e\u{301}", "Case ", " Case"] {
        p.publish(&ctx.topic(t), b"x", QoS::AtLeastOnce, false)?;
    }
    let got = until_marker(&mut s, &mut p, &marker)?;
    ensure!(
        got.is_empty(),
        "normalised matches: {:?}",
        got.iter().map(|g| g.topic.to_string()).collect::<Vec<_>>()
    );
    p.disconnect()?;
    s.disconnect()
}

fn no_local(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("nl");
    let marker = ctx.topic("marker");
    let mut c = ctx.connect()?;
    c.subscribe_with(
        &topic,
        SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
        },
    )?;
    c.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    c.publish(&topic, b"own", QoS::AtLeastOnce, false)?;
    c.publish(&marker, b"m", QoS::AtLeastOnce, false)?;
    let got = c.recv_publish_acked()?;
    ensure!(
        got.topic == marker.as_str(),
        "own message forwarded despite No Local"
    );
    // Someone else's message still arrives.
    let mut p = ctx.connect()?;
    p.publish(&topic, b"other", QoS::AtLeastOnce, false)?;
    let got = c.recv_publish_acked()?;
    ensure!(got.topic == topic.as_str(), "got {}", got.topic);
    p.disconnect()?;
    c.disconnect()
}

fn no_local_shared(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send(Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![SubscribeFilter {
            filter: string(&format!("$share/g/{}", ctx.topic("x"))),
            options: SubscriptionOptions {
                no_local: true,
                ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
            },
        }],
    }))?;
    c.expect_closed_with_error()
}

fn bad_share_name_empty(ctx: &Ctx) -> TestResult {
    refused_filter(ctx, &format!("$share//{}", ctx.topic("x")))?;
    refused_filter(ctx, "$share/g")
}

fn bad_share_name_chars(ctx: &Ctx) -> TestResult {
    refused_filter(ctx, &format!("$share/a+b/{}", ctx.topic("x")))?;
    refused_filter(ctx, &format!("$share/a#/{}", ctx.topic("x")))
}

fn shared_granted_qos(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("sh");
    let group = format!("$share/g/{topic}");
    let mut s = ctx.connect()?;
    let ack = s.subscribe(&group, QoS::AtMostOnce)?;
    if ack.reason_codes.first() == Some(&ReasonCode::SharedSubscriptionsNotSupported) {
        return Err(Stop::Skip(
            "broker does not support shared subscriptions".into(),
        ));
    }
    ensure!(
        !ack.reason_codes[0].is_error(),
        "shared subscription refused: {:?}",
        ack.reason_codes
    );
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::ExactlyOnce, false)?;
    let got = s.recv_publish()?;
    ensure!(
        got.qos == QoS::AtMostOnce,
        "delivered at QoS {} on a QoS 0 shared subscription",
        got.qos.as_u8()
    );
    p.disconnect()?;
    s.disconnect()
}

/// A member of `$share/g/{topic}` with a persistent session (`expiry` s).
fn shared_member(ctx: &Ctx, id: &str, topic: &str, expiry: u32, clean: bool) -> Result<Conn, Stop> {
    ctx.persistent(id);
    let mut connect = ctx.connect_packet();
    connect.client_id = string(id);
    connect.clean_start = clean;
    connect.properties.session_expiry_interval = Some(expiry);
    let (mut c, _) = ctx.connect_ok(connect)?;
    if clean {
        let ack = c.subscribe(&format!("$share/g/{topic}"), QoS::AtLeastOnce)?;
        if ack.reason_codes[0] == ReasonCode::SharedSubscriptionsNotSupported {
            return Err(Stop::Skip(
                "broker does not support shared subscriptions".into(),
            ));
        }
        ensure!(
            !ack.reason_codes[0].is_error(),
            "shared subscription refused: {:?}",
            ack.reason_codes
        );
    }
    Ok(c)
}

fn shared_reconnect(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("sh");
    let id = ctx.client_id();
    let a = shared_member(ctx, &id, &topic, 300, true)?;
    let mut a = a;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"m", QoS::AtLeastOnce, false)?;
    let first = a.recv_publish()?;
    a.drop_abruptly();
    let mut a = shared_member(ctx, &id, &topic, 300, false)?;
    let again = a.recv_publish_acked()?;
    ensure!(
        again.packet_id == first.packet_id && &again.payload[..] == b"m",
        "after reconnect got {again:?}"
    );
    p.disconnect()?;
    a.disconnect()
}

/// Publishes to the group until member `a` receives one (others go to
/// `b`, which acknowledges them); returns a's message.
fn until_a_receives(
    p: &mut Conn,
    a: &mut Conn,
    b: &mut Conn,
    topic: &str,
) -> Result<tern_codec::Publish, Stop> {
    for i in 0..20u8 {
        p.publish(topic, &[i], QoS::AtLeastOnce, false)?;
        match a.recv_within(std::time::Duration::from_millis(300)) {
            Ok(Packet::Publish(m)) => return Ok(m),
            Ok(other) => return Err(fail(format!("member got {}", name(&other)))),
            Err(_) => {
                b.recv_publish_acked()?;
            }
        }
    }
    Err(fail("20 messages, none delivered to the first member"))
}

fn shared_session_ends(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("sh");
    let mut a = shared_member(ctx, &ctx.client_id(), &topic, 1, true)?;
    let mut b = shared_member(ctx, &ctx.client_id(), &topic, 0, true)?;
    let mut p = ctx.connect()?;
    let m = until_a_receives(&mut p, &mut a, &mut b, &topic)?;
    a.drop_abruptly();
    // a's session expires after 1 s; its message must not move to b.
    match b.recv_within(std::time::Duration::from_millis(2500)) {
        Ok(Packet::Publish(x)) if x.payload == m.payload => {
            return Err(fail(
                "the ended session's message was sent to another member",
            ));
        }
        Ok(other) => return Err(fail(format!("unexpected {}", name(&other)))),
        Err(_) => {}
    }
    p.disconnect()?;
    b.disconnect()
}

fn shared_nack(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("sh");
    let mut a = shared_member(ctx, &ctx.client_id(), &topic, 0, true)?;
    let mut b = shared_member(ctx, &ctx.client_id(), &topic, 0, true)?;
    let mut p = ctx.connect()?;
    let m = until_a_receives(&mut p, &mut a, &mut b, &topic)?;
    let id = m.packet_id.ok_or_else(|| fail("QoS 1 without id"))?;
    a.send(Packet::PubAck(tern_codec::PubAck::with_reason(
        id,
        ReasonCode::UnspecifiedError,
    )))?;
    a.expect_alive()?;
    match b.recv_within(crate::harness::QUIET_TIME) {
        Ok(Packet::Publish(x)) if x.payload == m.payload => {
            return Err(fail(
                "a message refused with PUBACK 0x80 was sent to another member",
            ));
        }
        Ok(other) => return Err(fail(format!("unexpected {}", name(&other)))),
        Err(_) => {}
    }
    a.expect_silence(crate::harness::QUIET_TIME)?;
    p.disconnect()?;
    a.disconnect()?;
    b.disconnect()
}
