//! Attacks by connection count: slowloris (CONNECTs sent a byte at a time,
//! PUBLISHes left unfinished), WebSocket upgrades never finished, and
//! connect storms.

use super::{
    Attack, Ctx,
    wire::{Counter, Recv, Tally, Wire, connect, note_end},
};
use bytes::BytesMut;
use std::time::{Duration, Instant};
use tern_codec::{Packet, ProtocolVersion};

/// How often a held connection sends its next byte.
const TRICKLE: Duration = Duration::from_millis(500);

/// Sends `bytes` one at a time every [`TRICKLE`] until `until`, watching
/// for the broker to close the connection (noted in `tally`, after `what`
/// the connection was holding).
async fn trickle(wire: &mut Wire, bytes: &[u8], until: Instant, tally: &Tally, what: &str) {
    let mut next = bytes.iter();
    while Instant::now() < until {
        if let Some(byte) = next.next() {
            if wire.tx.raw(&[*byte]).await.is_err() {
                tally.note(format!("{what}: closed by broker"));
                return;
            }
        }
        let wait = TRICKLE.min(until.saturating_duration_since(Instant::now()));
        match wire.rx.read_raw(wait).await {
            Recv::Timeout => {}
            Recv::Closed => {
                tally.note(format!("{what}: closed by broker"));
                return;
            }
            end => {
                note_end(tally, &end);
                return;
            }
        }
    }
    tally.note(format!("{what}: still open"));
}

/// `300` (smoke) or `3,000` (full) connections held for `3` or `15` s
/// (past Tern's 10 s CONNECT timeout): half send a CONNECT one byte every 0.5 s (never finishing it), half
/// connect properly and then announce a 256 KiB PUBLISH, send 16 KiB of
/// it, and trickle the rest.
pub(crate) async fn slowloris(ctx: Ctx) -> Result<Attack, String> {
    let attack = Attack::default();
    let conns = ctx.scale.pick(300, 3000);
    let hold = ctx
        .scale
        .pick(Duration::from_secs(3), Duration::from_secs(15));
    let until = Instant::now() + hold;
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let sent = attack.sent.clone();
        let got = attack.got.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut wire) = Wire::open(ctx.tcp, ProtocolVersion::V3_1_1, &sent).await else {
                got.note("connection refused");
                return;
            };
            let id = format!("hostile-slowloris-{i}");
            if i % 2 == 0 {
                let mut bytes = BytesMut::new();
                Packet::Connect(Box::new(connect(ProtocolVersion::V3_1_1, &id)))
                    .encode(ProtocolVersion::V3_1_1, &mut bytes)
                    .expect("CONNECT encodes");
                // Never the last byte.
                bytes.truncate(bytes.len() - 1);
                trickle(&mut wire, &bytes, until, &got, "partial CONNECT").await;
            } else {
                let connected = async {
                    wire.send(&Packet::Connect(Box::new(connect(
                        ProtocolVersion::V3_1_1,
                        &id,
                    ))))
                    .await?;
                    match wire.rx.recv(super::wire::ANSWER).await {
                        Recv::Packet(p @ Packet::ConnAck(_)) => {
                            got.packet(&p);
                            Ok(())
                        }
                        end => {
                            note_end(&got, &end);
                            Err(String::new())
                        }
                    }
                };
                if connected.await.is_err() {
                    return;
                }
                // PUBLISH QoS 0, Remaining Length 256 KiB, topic "slow/t".
                let mut head = vec![0x30, 0x80, 0x80, 0x10, 0x00, 0x06];
                head.extend_from_slice(b"slow/t");
                head.extend(std::iter::repeat_n(b'p', 16 * 1024));
                if wire.tx.raw(&head).await.is_err() {
                    got.note("closed by broker");
                    return;
                }
                trickle(&mut wire, &[b'p'; 64], until, &got, "partial PUBLISH").await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut attack = attack;
    attack.figure(format!(
        "{conns} connections held {} s; closed by the broker: {} of {} partial CONNECTs, {} of {} partial PUBLISHes",
        hold.as_secs(),
        attack.got.count("partial CONNECT: closed by broker"),
        conns.div_ceil(2),
        attack.got.count("partial PUBLISH: closed by broker"),
        conns / 2,
    ));
    Ok(attack)
}

/// `300` (smoke) or `3,000` (full) WebSocket upgrade requests whose
/// headers never end: a header line every 0.5 s for `3` or `15` s.
pub(crate) async fn ws_half_open(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let conns = ctx.scale.pick(300, 3000);
    let hold = ctx
        .scale
        .pick(Duration::from_secs(3), Duration::from_secs(15));
    let until = Instant::now() + hold;
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let sent = attack.sent.clone();
        let got = attack.got.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut wire) = Wire::open(ctx.ws, ProtocolVersion::V3_1_1, &sent).await else {
                got.note("connection refused");
                return;
            };
            let request = format!(
                "GET /mqtt HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Protocol: mqtt\r\n",
                ctx.ws
            );
            if wire.tx.raw(request.as_bytes()).await.is_err() {
                got.note("closed by broker");
                return;
            }
            while Instant::now() < until {
                let wait = TRICKLE.min(until.saturating_duration_since(Instant::now()));
                match wire.rx.read_raw(wait).await {
                    Recv::Timeout => {}
                    end => {
                        note_end(&got, &end);
                        return;
                    }
                }
                if wire.tx.raw(b"X-Pad: a\r\n").await.is_err() {
                    got.note("closed by broker");
                    return;
                }
            }
            got.note("still open");
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    attack.figure(format!(
        "{conns} upgrades held {} s; {} closed by the broker",
        hold.as_secs(),
        attack.got.count("closed by broker")
    ));
    Ok(attack)
}

/// `32` (smoke) or `128` (full) clients each connecting, waiting for
/// CONNACK and dropping the connection without DISCONNECT, over and over
/// for `2` or `8` s (at most `4,000` or `20,000` connections in all, to
/// stay clear of the client's ephemeral ports).
pub(crate) async fn connect_storm(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let workers = ctx.scale.pick(32_u32, 128);
    let run = ctx
        .scale
        .pick(Duration::from_secs(2), Duration::from_secs(8));
    let cap = ctx.scale.pick(4_000_u32, 20_000) / workers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let sent: Counter = attack.sent.clone();
        let got = attack.got.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while n < cap && started.elapsed() < run {
                n += 1;
                let id = format!("hostile-storm-{w}-{n}");
                let Ok(mut wire) = Wire::open(ctx.tcp, ProtocolVersion::V3_1_1, &sent).await else {
                    got.note("connection refused");
                    continue;
                };
                let packet = Packet::Connect(Box::new(connect(ProtocolVersion::V3_1_1, &id)));
                if wire.send(&packet).await.is_err() {
                    got.note("closed by broker");
                    continue;
                }
                let answer = wire.rx.recv(Duration::from_secs(5)).await;
                note_end(&got, &answer);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let took = started.elapsed().as_secs_f64();
    let total: u64 = attack.got.count("CONNACK 0x00");
    attack.figure(format!(
        "{total} accepted connections in {took:.1} s ({:.0}/s)",
        total as f64 / took
    ));
    Ok(attack)
}

/// `300` (smoke) or `1,000` (full) CONNECTs as
/// [`super::STORM_USER`] with its password, 32 at a time, each waiting for
/// its CONNACK and dropping the connection: every one costs the broker a
/// password hash ([`super::Setup::Passwords`]).
pub(crate) async fn password_storm(ctx: Ctx) -> Result<Attack, String> {
    let mut attack = Attack::default();
    let workers = 32_u32;
    let total = ctx.scale.pick(300_u32, 1000);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let sent: Counter = attack.sent.clone();
        let got = attack.got.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return;
                }
                let Ok(mut wire) = Wire::open(ctx.tcp, ProtocolVersion::V3_1_1, &sent).await else {
                    got.note("connection refused");
                    continue;
                };
                let mut connect = connect(ProtocolVersion::V3_1_1, &format!("hostile-pw-{n}"));
                connect.username = Some(tern_codec::MqttString::from_static(super::STORM_USER));
                connect.password =
                    Some(bytes::Bytes::from_static(super::STORM_PASSWORD.as_bytes()));
                if wire
                    .send(&Packet::Connect(Box::new(connect)))
                    .await
                    .is_err()
                {
                    got.note("closed by broker");
                    continue;
                }
                let answer = wire.rx.recv(Duration::from_secs(60)).await;
                note_end(&got, &answer);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let took = started.elapsed().as_secs_f64();
    let accepted: u64 = attack.got.count("CONNACK 0x00");
    attack.figure(format!(
        "{accepted}/{total} password CONNECTs accepted in {took:.1} s ({:.0}/s)",
        accepted as f64 / took
    ));
    attack.check(
        format!("every password CONNECT accepted ({accepted}/{total})"),
        accepted == u64::from(total),
    );
    Ok(attack)
}
