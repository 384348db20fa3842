//! Clients that do not keep up: subscribers that never read, QoS 1
//! subscribers that never acknowledge, QoS 2 publishers that never release.

use super::{
    Attack, Ctx,
    measure::memory,
    wire::{Recv, Wire, connect, publish},
};
use bytes::{Bytes, BytesMut};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tern_codec::{MqttString, Packet, ProtocolVersion, QoS};

/// Connects `n` MQTT 3.1.1 subscribers to `filter` that will never read.
async fn sleepers(
    ctx: Ctx,
    attack: &Attack,
    name: &str,
    n: usize,
    filter: &str,
    qos: QoS,
) -> Result<Vec<Wire>, String> {
    let mut wires = Vec::with_capacity(n);
    for i in 0..n {
        let mut wire = Wire::connect(
            ctx.tcp,
            connect(ProtocolVersion::V3_1_1, &format!("hostile-{name}-{i}")),
            &attack.sent,
        )
        .await?;
        let codes = wire.subscribe(&[(filter, qos)]).await?;
        for code in codes {
            attack
                .got
                .note(format!("SUBACK {}", super::wire::code(code)));
        }
        wires.push(wire);
    }
    Ok(wires)
}

/// `4` (smoke) or `40` (full) subscribers that never read, while one
/// publisher floods 1 KiB QoS 0 messages for `2` or `8` s and one more
/// subscriber reads everything: the publisher must not be held up for
/// long, and the reading subscriber must keep receiving.
pub(crate) async fn slow_fanout(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let slow = ctx.scale.pick(4, 40);
    let flood = ctx
        .scale
        .pick(Duration::from_secs(2), Duration::from_secs(8));
    let _sleepers = sleepers(ctx, &attack, "slow", slow, "flood/#", QoS::AtMostOnce).await?;

    let mut reader = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-flood-reader"),
        &attack.sent,
    )
    .await?;
    reader.subscribe(&[("flood/#", QoS::AtMostOnce)]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let reading = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut got = 0_u64;
            let mut last = started;
            let mut gap = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                match reader.rx.recv(Duration::from_millis(50)).await {
                    Recv::Packet(Packet::Publish(_)) => {
                        let now = Instant::now();
                        gap = gap.max(now - last);
                        last = now;
                        got += 1;
                    }
                    Recv::Packet(_) | Recv::Timeout => {}
                    _ => break,
                }
            }
            // A reader left waiting at the end waited too.
            (got, gap.max(Instant::now().saturating_duration_since(last)))
        }
    });

    let mut publisher = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-flooder"),
        &attack.sent,
    )
    .await?;
    let payload = Bytes::from(vec![b'f'; 1024]);
    let topic = MqttString::from_static("flood/t");
    let mut published = 0_u64;
    let mut stall = Duration::ZERO;
    let mut buf = BytesMut::new();
    while started.elapsed() < flood {
        for _ in 0..16 {
            let message = publish(topic.clone(), payload.clone(), QoS::AtMostOnce, 0, false);
            Packet::Publish(message)
                .encode(ProtocolVersion::V3_1_1, &mut buf)
                .map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        publisher
            .tx
            .raw(&buf)
            .await
            .map_err(|e| format!("flooding: {e}"))?;
        stall = stall.max(t.elapsed());
        buf.clear();
        published += 16;
    }
    let flooded = started.elapsed();
    // Let the reader take what is on its way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (got, gap) = reading.await.map_err(|e| e.to_string())?;
    attack.figure(format!(
        "{published} published in {:.1} s, longest publisher stall {:.2} s; reading subscriber got {got} (longest gap {:.2} s)",
        flooded.as_secs_f64(),
        stall.as_secs_f64(),
        gap.as_secs_f64()
    ));
    attack.check(
        format!(
            "publisher held ≤ 1 s at a time ({:.2} s)",
            stall.as_secs_f64()
        ),
        stall <= Duration::from_secs(1),
    );
    attack.check(
        format!(
            "reading subscriber never waits > 1 s ({:.2} s)",
            gap.as_secs_f64()
        ),
        gap <= Duration::from_secs(1) && got > 0,
    );
    Ok(attack)
}

/// `4` (smoke) or `10` (full) MQTT 3.1.1 subscribers at QoS 1 that never
/// read or acknowledge; a publisher sends `30,000` or `60,000` small QoS 1
/// messages. Reports the broker's RSS per such subscriber.
pub(crate) async fn qos1_unacked(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let subs = ctx.scale.pick(4, 10);
    let count = ctx.scale.pick(30_000_u32, 60_000);
    let base = memory(ctx.pid)?.rss;
    let _sleepers = sleepers(ctx, &attack, "unacked", subs, "unacked/#", QoS::AtLeastOnce).await?;
    let publisher = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-unacked-pub"),
        &attack.sent,
    )
    .await?;
    let Wire { mut rx, mut tx } = publisher;
    let started = Instant::now();
    let acks = tokio::spawn(async move {
        let mut acked = 0_u32;
        while acked < count {
            match rx.recv(Duration::from_secs(5)).await {
                Recv::Packet(Packet::PubAck(_)) => acked += 1,
                Recv::Packet(_) => {}
                _ => break,
            }
        }
        (acked, started.elapsed())
    });
    let topic = MqttString::from_static("unacked/t");
    let payload = Bytes::from_static(b"0123456789abcdef");
    let mut buf = BytesMut::new();
    for i in 0..count {
        let id = (i % u32::from(u16::MAX)) as u16 + 1;
        let message = publish(topic.clone(), payload.clone(), QoS::AtLeastOnce, id, false);
        tx.batch(&mut buf, &Packet::Publish(message))
            .await
            .map_err(|e| format!("publishing: {e}"))?;
    }
    tx.flush(&mut buf).await.map_err(|e| e.to_string())?;
    let (acked, took) = acks.await.map_err(|e| e.to_string())?;
    attack.got.add("publisher PUBACK", u64::from(acked));
    let held = memory(ctx.pid)?.rss.saturating_sub(base);
    attack.figure(format!(
        "{acked}/{count} acknowledged to the publisher in {:.1} s; {:.1} MiB RSS per never-acknowledging subscriber",
        took.as_secs_f64(),
        held as f64 / f64::from(1 << 20) / subs as f64
    ));
    Ok(attack)
}

/// One MQTT 3.1.1 client sends `10,000` (smoke) or `65,535` (full) QoS 2
/// PUBLISHes (256 B or 1 KiB) with distinct packet ids and never sends
/// PUBREL, so the broker holds every one's state.
pub(crate) async fn qos2_flood(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let count = ctx.scale.pick(10_000_u16, u16::MAX);
    let size = ctx.scale.pick(256, 1024);
    let Wire { mut rx, mut tx } = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-qos2"),
        &attack.sent,
    )
    .await?;
    let got = attack.got.clone();
    let answers = tokio::spawn(async move {
        let mut recs = 0_u16;
        while recs < count {
            match rx.recv(Duration::from_secs(5)).await {
                Recv::Packet(p) => {
                    if matches!(p, Packet::PubRec(_)) {
                        recs += 1;
                    }
                    got.packet(&p);
                }
                end => {
                    super::wire::note_end(&got, &end);
                    break;
                }
            }
        }
        recs
    });
    let topic = MqttString::from_static("qos2/t");
    let payload = Bytes::from(vec![b'q'; size]);
    let mut buf = BytesMut::new();
    for id in 1..=count {
        let message = publish(topic.clone(), payload.clone(), QoS::ExactlyOnce, id, false);
        if tx.batch(&mut buf, &Packet::Publish(message)).await.is_err() {
            break;
        }
    }
    let _ = tx.flush(&mut buf).await;
    let recs = answers.await.map_err(|e| e.to_string())?;
    attack.figure(format!("{recs}/{count} PUBREC, none released"));
    Ok(attack)
}
