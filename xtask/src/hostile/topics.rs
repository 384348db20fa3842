//! Deep topic trees: retained topics and subscription filters of about
//! 65,535 levels, the most an MQTT string allows.

use super::{
    Attack, Ctx,
    wire::{ANSWER, Recv, Wire, connect, deep_topic, note_end, publish, subscribe},
};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tern_codec::{Packet, ProtocolVersion, QoS};

/// Retains `2` (smoke) or `16` (full) messages on topics of ~65,535 levels
/// (64 KiB each) at QoS 1, MQTT 5, so a refusal shows as a reason code.
pub(crate) async fn deep_retained(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let topics = ctx.scale.pick(2, 16);
    let mut wire = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V5, "hostile-deep-retained"),
        &attack.sent,
    )
    .await?;
    let mut acked = 0;
    for i in 0..topics {
        let topic = deep_topic(&format!("d{i}"));
        let message = publish(
            topic,
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            i + 1,
            true,
        );
        match wire
            .publish_acked(&Packet::Publish(message), &attack.got)
            .await
        {
            Some(true) => acked += 1,
            Some(false) => {}
            None => break,
        }
    }
    attack.figure(format!(
        "{acked}/{topics} retained topics of {} levels acknowledged",
        u16::MAX as usize - 1
    ));
    Ok(attack)
}

/// SUBSCRIBEs `2` (smoke) or `10` (full) times with `4` or `15` filters of
/// ~65,535 levels each (256 KiB or 960 KiB per SUBSCRIBE), then
/// disconnects; a fresh client then connects, timing how long after the
/// DISCONNECT the broker answers it (it removes the subscriptions
/// meanwhile).
pub(crate) async fn deep_filters(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let rounds = ctx.scale.pick(2, 10);
    // 15 × 64 KiB: just under the 1 MiB packet limit Tern has by default.
    let per = ctx.scale.pick(4, 15);
    let mut wire = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V5, "hostile-deep-filters"),
        &attack.sent,
    )
    .await?;
    let mut closed = false;
    for round in 0..rounds {
        let filters = (0..per)
            .map(|i| (deep_topic(&format!("f{round}-{i}")), QoS::AtMostOnce))
            .collect();
        if wire.send(&subscribe(round + 1, filters)).await.is_err() {
            attack.got.note("closed by broker");
            closed = true;
            break;
        }
        let answer = wire.rx.recv(ANSWER).await;
        note_end(&attack.got, &answer);
        if !matches!(answer, Recv::Packet(Packet::SubAck(_))) {
            closed = true;
            break;
        }
    }
    let since = Instant::now();
    if !closed {
        let _ = wire.send(&Packet::Disconnect(Box::default())).await;
        // The broker closes the connection once it has the DISCONNECT.
        let _ = wire.rx.recv(ANSWER).await;
    }
    drop(wire);
    // How long until the broker answers a new client.
    let fresh = Wire::connect(
        ctx.tcp,
        connect(ProtocolVersion::V3_1_1, "hostile-deep-filters-after"),
        &Default::default(),
    )
    .await;
    let wait = since.elapsed();
    attack.figure(format!(
        "{rounds}×{per} filters; a new client answered {:.0} ms after the DISCONNECT",
        wait.as_secs_f64() * 1000.0
    ));
    attack.check(
        format!(
            "broker answers a new client within 1 s of the disconnect ({:.1} s)",
            wait.as_secs_f64()
        ),
        fresh.is_ok() && wait <= Duration::from_secs(1),
    );
    // The bystander keeps measuring while any removal goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(attack)
}
