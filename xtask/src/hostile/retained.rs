//! Retained and queued messages: fan-out of many retained topics to a new
//! `#` subscriber, and PUBLISHes whose size is all user properties,
//! retained or queued for an offline session.

use super::{
    Attack, Ctx,
    wire::{ANSWER, Counter, Recv, Wire, connect, note_end, publish},
};
use bytes::{Bytes, BytesMut};
use std::time::{Duration, Instant};
use tern_codec::{MqttString, Packet, ProtocolVersion, PubAck, Publish, QoS, UserProperty};

/// How long a receiver waits for one more message before it decides no
/// more are coming.
const IDLE: Duration = Duration::from_secs(3);

/// Retains `10,000` (smoke) or `100,000` (full) small messages, then a new
/// client subscribes to `#` and counts how many arrive, and how fast.
pub(crate) async fn retained_fanout(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let n = ctx.scale.pick(10_000_u32, 100_000);
    let mut publisher = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-fanout-pub"),
        &attack.sent,
    )
    .await?;
    let mut buf = BytesMut::new();
    for i in 0..n {
        let topic = MqttString::try_from(format!("fan/{i}")).expect("topic");
        let message = publish(
            topic,
            Bytes::from_static(b"0123456789abcdef"),
            QoS::AtMostOnce,
            0,
            true,
        );
        publisher
            .tx
            .batch(&mut buf, &Packet::Publish(message))
            .await
            .map_err(|e| format!("retaining: {e}"))?;
    }
    publisher
        .tx
        .flush(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    publisher.sync(Duration::from_secs(60), &attack.got).await?;

    let mut sub = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-fanout-sub"),
        &attack.sent,
    )
    .await?;
    let started = Instant::now();
    sub.send(&super::wire::subscribe(
        1,
        vec![(MqttString::from_static("#"), QoS::AtMostOnce)],
    ))
    .await?;
    let mut received = 0_u32;
    let mut last = Duration::ZERO;
    loop {
        // `#` gets the bystander's messages too: only retained ones count
        // as progress.
        let idle = IDLE.saturating_sub(started.elapsed() - last);
        if idle.is_zero() {
            break;
        }
        match sub.rx.recv(idle).await {
            Recv::Packet(Packet::Publish(p)) => {
                if p.retain && p.topic.as_str().starts_with("fan/") {
                    received += 1;
                    last = started.elapsed();
                    if received == n {
                        break;
                    }
                }
            }
            Recv::Packet(p) => attack.got.packet(&p),
            end => {
                if !matches!(end, Recv::Timeout) {
                    note_end(&attack.got, &end);
                }
                break;
            }
        }
    }
    attack.figure(format!(
        "`#` got {received}/{n} retained in {:.2} s",
        last.as_secs_f64()
    ));
    attack.check(
        format!("all {n} retained messages delivered ({received})"),
        received == n,
    );
    if received == n {
        attack.race = Some(last);
    }
    Ok(attack)
}

/// User properties in one of these PUBLISHes: 5 bytes each on the wire.
const PROPERTIES: usize = 200_000;

/// A PUBLISH of about 1 MB, nearly all of it empty user properties.
fn props_publish(topic: String, packet_id: u16, retain: bool) -> Packet {
    let mut message: Publish = publish(
        MqttString::try_from(topic).expect("topic"),
        Bytes::from_static(b"x"),
        QoS::AtLeastOnce,
        packet_id,
        retain,
    );
    message.properties.get_mut().user_properties =
        vec![UserProperty::new(MqttString::new(), MqttString::new()); PROPERTIES].into();
    Packet::Publish(message)
}

/// Publishes `count` property-heavy messages at QoS 1, one at a time;
/// how many were acknowledged with success.
async fn publish_props(
    wire: &mut Wire,
    attack: &Attack,
    prefix: &str,
    count: u16,
    retain: bool,
) -> u16 {
    let mut acked = 0;
    for i in 0..count {
        let packet = props_publish(format!("{prefix}/{i}"), i + 1, retain);
        match wire.publish_acked(&packet, &attack.got).await {
            Some(true) => acked += 1,
            Some(false) => {}
            None => break,
        }
    }
    acked
}

/// Receives (and acknowledges) PUBLISHes on `prefix/…` until `expect`
/// arrived or none came for [`IDLE`]; how many, each with all its
/// properties.
async fn receive_props(wire: &mut Wire, prefix: &str, expect: u16) -> u16 {
    let mut got = 0;
    while got < expect {
        match wire.rx.recv(IDLE).await {
            Recv::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    let _ = wire.send(&Packet::PubAck(PubAck::new(id))).await;
                }
                if p.topic.as_str().starts_with(prefix)
                    && p.properties().user_properties.len() == PROPERTIES
                {
                    got += 1;
                }
            }
            Recv::Packet(_) => {}
            _ => break,
        }
    }
    got
}

/// Retains `2` (smoke) or `10` (full) property-heavy messages; a new
/// subscriber must then get every one that was acknowledged.
pub(crate) async fn props_retained(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let count = ctx.scale.pick(2, 10);
    let mut wire = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V5, "hostile-props-retained"),
        &attack.sent,
    )
    .await?;
    let acked = publish_props(&mut wire, &attack, "props", count, true).await;
    let mut sub = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V5, "hostile-props-check"),
        &Counter::default(),
    )
    .await?;
    sub.send(&super::wire::subscribe(
        1,
        vec![(MqttString::from_static("props/#"), QoS::AtLeastOnce)],
    ))
    .await?;
    let delivered = receive_props(&mut sub, "props/", acked).await;
    attack.figure(format!(
        "{acked}/{count} acknowledged; {delivered} delivered to a new subscriber"
    ));
    attack.check(
        format!("every acknowledged retained message delivered ({delivered}/{acked})"),
        delivered >= acked,
    );
    Ok(attack)
}

/// An MQTT 5 session that outlives its connection subscribes at QoS 1 and
/// goes offline; `2` (smoke) or `10` (full) property-heavy messages are
/// published to it; it comes back and must get every one acknowledged.
pub(crate) async fn props_queued(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let count = ctx.scale.pick(2, 10);
    let offline = || {
        let mut c = connect(ProtocolVersion::V5, "hostile-offline");
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        c
    };
    let mut sub = Wire::connect(ctx.tcp, offline(), &attack.sent).await?;
    let codes = sub.subscribe(&[("propsq/#", QoS::AtLeastOnce)]).await?;
    if codes.iter().any(|c| c.is_error()) {
        return Err(format!("SUBSCRIBE refused: {codes:?}"));
    }
    sub.send(&Packet::Disconnect(Box::default())).await?;
    // Offline once the broker has closed the connection.
    let _ = sub.rx.recv(ANSWER).await;
    drop(sub);

    let mut wire = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V5, "hostile-props-queued"),
        &attack.sent,
    )
    .await?;
    let acked = publish_props(&mut wire, &attack, "propsq", count, false).await;
    let mut back = Wire::connect(ctx.tcp, offline(), &attack.sent).await?;
    let delivered = receive_props(&mut back, "propsq/", acked).await;
    attack.figure(format!(
        "{acked}/{count} acknowledged; {delivered} delivered when the session came back"
    ));
    attack.check(
        format!("every acknowledged queued message delivered ({delivered}/{acked})"),
        delivered >= acked,
    );
    Ok(attack)
}
