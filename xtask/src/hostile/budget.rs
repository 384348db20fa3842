//! The broker-wide memory budget: both brokers get the same small budget
//! (Tern's `max_memory`, mosquitto's `memory_limit`), and anonymous clients
//! try to make them hold more than it: retained messages on new topics,
//! QoS 1 messages queued for offline sessions, then a connection storm.

use super::{
    Attack, Ctx,
    measure::memory,
    wire::{Wire, connect, publish},
};
use bytes::Bytes;
use tern_codec::{MqttString, Packet, ProtocolVersion, QoS};

/// The budget both brokers get, in bytes.
pub(crate) const BUDGET: u64 = 32 * 1024 * 1024;

/// Offline sessions the messages are queued for.
const HOARDERS: usize = 4;

/// Bytes of payload per message.
const PAYLOAD: usize = 8 * 1024;

/// Hoards until the attacker has sent 2× (smoke) or 6× (full) the budget,
/// then opens 200 more connections; the broker's RSS must not grow by more
/// than the budget.
pub(crate) async fn memory_budget(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let start = memory(ctx.pid)?.rss;
    for i in 0..HOARDERS {
        let mut c = connect(ProtocolVersion::V5, &format!("hostile-hoarder-{i}"));
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        let mut hoarder = Wire::connect(ctx.tcp, c, &attack.sent).await?;
        hoarder.subscribe(&[("hoard/#", QoS::AtLeastOnce)]).await?;
        hoarder
            .send(&Packet::Disconnect(Box::default()))
            .await
            .map_err(|e| format!("hoarder {i}: {e}"))?;
    }
    let total = ctx.scale.pick(2, 6) * BUDGET;
    let payload = Bytes::from(vec![b'h'; PAYLOAD]);
    let (mut accepted, mut refused, mut reconnects) = (0_u64, 0_u64, 0_u32);
    let mut i = 0_u64;
    'publishing: while attack.sent.get() < total {
        let id = format!("hostile-hoard-pub-{reconnects}");
        let mut publisher =
            match Wire::connect(ctx.tcp, connect(ProtocolVersion::V5, &id), &attack.sent).await {
                Ok(w) => w,
                Err(e) => {
                    attack.got.note(format!("publisher refused: {e}"));
                    break;
                }
            };
        while attack.sent.get() < total {
            i += 1;
            let topic = MqttString::try_from(format!("hoard/{i}")).expect("topic");
            let packet_id = (i % 60_000 + 1) as u16;
            let message = publish(topic, payload.clone(), QoS::AtLeastOnce, packet_id, true);
            match publisher
                .publish_acked(&Packet::Publish(message), &attack.got)
                .await
            {
                Some(true) => accepted += 1,
                Some(false) => refused += 1,
                None => {
                    // Closed (mosquitto at its limit): try again, a few times.
                    reconnects += 1;
                    if reconnects > 20 {
                        break 'publishing;
                    }
                    continue 'publishing;
                }
            }
        }
    }
    let mut connected = 0;
    let mut held = Vec::new();
    for n in 0..200 {
        let c = connect(ProtocolVersion::V5, &format!("hostile-late-{n}"));
        match Wire::connect(ctx.tcp, c, &attack.sent).await {
            Ok(w) => {
                connected += 1;
                held.push(w);
            }
            Err(_) => attack.got.note("late CONNECT refused"),
        }
    }
    let peak = memory(ctx.pid)?.hwm;
    let growth = peak.saturating_sub(start);
    attack.figure(format!(
        "{accepted} messages of 8 KiB accepted, {refused} refused, {reconnects} reconnects; {connected}/200 late connections; RSS +{:.1} MiB against a {} MiB budget",
        growth as f64 / f64::from(1 << 20),
        BUDGET >> 20
    ));
    attack.check(
        format!(
            "RSS growth {:.1} MiB ≤ the {} MiB budget",
            growth as f64 / f64::from(1 << 20),
            BUDGET >> 20
        ),
        growth <= BUDGET,
    );
    drop(held);
    Ok(attack)
}
