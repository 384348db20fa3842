//! Retained messages and the MQTT 5 retain subscription options.

use super::{Case, v3, v5};
use crate::{
    ensure,
    harness::{Conn, Ctx, QUIET_TIME, Stop, TestResult},
};
use tern_codec::{QoS, RetainHandling, SubscriptionOptions};

pub(crate) const CASES: &[Case] = &[
    v3!(
        "MQTT-3.3.1-5",
        "retained message stored and replaced",
        store_and_replace
    ),
    v5!(
        "MQTT-3.3.1-5",
        "retained message replaces the previous one",
        store_and_replace
    ),
    v3!(
        "MQTT-3.3.1-6",
        "new subscription gets matching retained messages",
        new_sub_gets_retained
    ),
    v5!(
        "MQTT-3.3.1-9",
        "Retain Handling 0: retained sent on subscribe",
        new_sub_gets_retained
    ),
    v3!(
        "MQTT-3.3.1-7",
        "QoS 0 retained replaces the retained message",
        qos0_replaces
    ),
    v3!(
        "MQTT-3.3.1-8",
        "retained delivery on subscribe has RETAIN 1",
        new_sub_gets_retained
    ),
    v3!(
        "MQTT-3.3.1-9",
        "established subscription gets RETAIN 0",
        live_retain_flag_cleared
    ),
    v5!(
        "MQTT-3.3.1-12",
        "Retain As Published 0: RETAIN 0 when forwarding",
        live_retain_flag_cleared
    ),
    v3!(
        "MQTT-3.3.1-10",
        "empty retained message delivered and clears",
        empty_retained_clears
    ),
    v5!(
        "MQTT-3.3.1-6",
        "empty retained message delivered and clears",
        empty_retained_clears
    ),
    v3!(
        "MQTT-3.3.1-11",
        "empty retained message not stored",
        empty_retained_clears
    ),
    v5!(
        "MQTT-3.3.1-7",
        "empty retained message not stored",
        empty_retained_clears
    ),
    v3!(
        "MQTT-3.3.1-12",
        "RETAIN 0 does not touch the retained message",
        non_retained_keeps
    ),
    v5!(
        "MQTT-3.3.1-8",
        "RETAIN 0 does not touch the retained message",
        non_retained_keeps
    ),
    v5!(
        "MQTT-3.3.1-10",
        "Retain Handling 1: retained only for a new subscription",
        retain_handling_1
    ),
    v5!(
        "MQTT-3.3.1-11",
        "Retain Handling 2: no retained messages",
        retain_handling_2
    ),
    v5!(
        "MQTT-3.3.1-13",
        "Retain As Published 1 keeps the RETAIN flag",
        retain_as_published
    ),
    v5!(
        "MQTT-3.8.4-4",
        "re-subscribe with Retain Handling 0 resends retained",
        resubscribe_resends
    ),
];

/// Publishes a retained message (QoS 1) from a fresh connection.
fn retain(ctx: &Ctx, topic: &str, payload: &[u8], qos: QoS) -> TestResult {
    ctx.retained(topic);
    let mut p = ctx.connect()?;
    p.publish(topic, payload, qos, true)?;
    p.disconnect()
}

/// A new subscriber to `filter`.
fn subscriber(ctx: &Ctx, filter: &str, options: SubscriptionOptions) -> Result<Conn, Stop> {
    let mut s = ctx.connect()?;
    let ack = s.subscribe_with(filter, options)?;
    ensure!(
        !ack.reason_codes[0].is_error(),
        "subscription refused: {:?}",
        ack.reason_codes
    );
    Ok(s)
}

fn q1() -> SubscriptionOptions {
    SubscriptionOptions::with_qos(QoS::AtLeastOnce)
}

fn store_and_replace(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"1", QoS::AtLeastOnce)?;
    retain(ctx, &topic, b"2", QoS::AtLeastOnce)?;
    let mut s = subscriber(ctx, &topic, q1())?;
    let got = s.recv_publish_acked()?;
    ensure!(
        &got.payload[..] == b"2" && got.retain,
        "retained message is {:?}",
        got.payload
    );
    s.expect_silence(QUIET_TIME)?;
    s.disconnect()
}

fn new_sub_gets_retained(ctx: &Ctx) -> TestResult {
    let (a, b) = (ctx.topic("m/a"), ctx.topic("m/b"));
    retain(ctx, &a, b"a", QoS::AtLeastOnce)?;
    retain(ctx, &b, b"b", QoS::AtLeastOnce)?;
    let mut s = subscriber(ctx, &ctx.topic("m/+"), q1())?;
    let mut got = [s.recv_publish_acked()?, s.recv_publish_acked()?];
    got.sort_by(|x, y| x.topic.cmp(&y.topic));
    ensure!(
        got[0].topic == a.as_str() && got[1].topic == b.as_str(),
        "retained messages for {:?}",
        got.iter().map(|g| g.topic.to_string()).collect::<Vec<_>>()
    );
    ensure!(
        got.iter().all(|g| g.retain),
        "retained delivery with RETAIN 0"
    );
    s.disconnect()
}

fn qos0_replaces(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"1", QoS::AtLeastOnce)?;
    retain(ctx, &topic, b"0", QoS::AtMostOnce)?;
    let mut s = subscriber(ctx, &topic, q1())?;
    let got = s.recv_publish_acked()?;
    ensure!(
        &got.payload[..] == b"0",
        "QoS 0 retained did not replace: {:?}",
        got.payload
    );
    s.disconnect()
}

fn live_retain_flag_cleared(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    let mut s = subscriber(ctx, &topic, q1())?;
    retain(ctx, &topic, b"live", QoS::AtLeastOnce)?;
    let got = s.recv_publish_acked()?;
    ensure!(
        !got.retain,
        "RETAIN 1 forwarded to an established subscription"
    );
    s.disconnect()
}

fn empty_retained_clears(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"old", QoS::AtLeastOnce)?;
    let mut live = subscriber(ctx, &topic, q1())?;
    let first = live.recv_publish_acked()?;
    ensure!(&first.payload[..] == b"old", "got {:?}", first.payload);
    retain(ctx, &topic, b"", QoS::AtLeastOnce)?;
    let empty = live.recv_publish_acked()?;
    ensure!(
        empty.payload.is_empty(),
        "empty retained delivered as {:?}",
        empty.payload
    );
    let mut late = subscriber(ctx, &topic, q1())?;
    late.expect_silence(QUIET_TIME)?;
    live.disconnect()?;
    late.disconnect()
}

fn non_retained_keeps(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"kept", QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"not retained", QoS::AtLeastOnce, false)?;
    p.disconnect()?;
    let mut s = subscriber(ctx, &topic, q1())?;
    let got = s.recv_publish_acked()?;
    ensure!(
        &got.payload[..] == b"kept",
        "retained message is now {:?}",
        got.payload
    );
    s.expect_silence(QUIET_TIME)?;
    s.disconnect()
}

fn retain_handling_1(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"r", QoS::AtLeastOnce)?;
    let options = SubscriptionOptions {
        retain_handling: RetainHandling::SendAtSubscribeIfNew,
        ..q1()
    };
    let mut s = subscriber(ctx, &topic, options)?;
    let got = s.recv_publish_acked()?;
    ensure!(got.retain, "first subscription: no retained message");
    let ack = s.subscribe_with(&topic, options)?;
    ensure!(!ack.reason_codes[0].is_error(), "re-subscription refused");
    s.expect_silence(QUIET_TIME)?;
    s.disconnect()
}

fn retain_handling_2(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"r", QoS::AtLeastOnce)?;
    let options = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..q1()
    };
    let mut s = subscriber(ctx, &topic, options)?;
    s.expect_silence(QUIET_TIME)?;
    s.disconnect()
}

fn retain_as_published(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    let options = SubscriptionOptions {
        retain_as_published: true,
        ..q1()
    };
    let mut s = subscriber(ctx, &topic, options)?;
    retain(ctx, &topic, b"r", QoS::AtLeastOnce)?;
    let got = s.recv_publish_acked()?;
    ensure!(got.retain, "RETAIN not kept with Retain As Published");
    let mut p = ctx.connect()?;
    p.publish(&topic, b"n", QoS::AtLeastOnce, false)?;
    let got = s.recv_publish_acked()?;
    ensure!(!got.retain, "RETAIN 1 on a message published with RETAIN 0");
    p.disconnect()?;
    s.disconnect()
}

fn resubscribe_resends(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    retain(ctx, &topic, b"r", QoS::AtLeastOnce)?;
    let mut s = subscriber(ctx, &topic, q1())?;
    s.recv_publish_acked()?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let again = s.recv_publish_acked()?;
    ensure!(
        again.retain && &again.payload[..] == b"r",
        "retained not re-sent: {again:?}"
    );
    s.disconnect()
}
