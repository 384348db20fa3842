//! What a case is judged by: the broker's memory (from /proc) and the
//! latency a bystander client sees while the attack runs.

use super::wire::{Counter, Recv, Wire, connect, publish};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tern_codec::{MqttString, Packet, ProtocolVersion, PubAck, QoS};

/// A process's resident memory, from /proc/PID/status.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// VmRSS: resident now, bytes.
    pub(crate) rss: u64,
    /// VmHWM: the most it has been resident, bytes.
    pub(crate) hwm: u64,
}

/// Reads VmRSS and VmHWM of `pid`.
pub(crate) fn memory(pid: u32) -> Result<Memory, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .ok_or_else(|| format!("{path} has no {name}"))
    };
    if text
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'))
    {
        return Err(format!("process {pid} has exited"));
    }
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// Latencies and their percentiles (nearest rank).
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `p`-th percentile (0 < p ≤ 100); zero when empty.
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub(crate) fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}

/// How often the bystander publishes.
pub(crate) const BYSTANDER_PERIOD: Duration = Duration::from_millis(10);
/// How long the bystander waits for its last messages after it stops.
const BYSTANDER_DRAIN: Duration = Duration::from_secs(3);
/// Messages (sent before the attack starts) whose latency is not counted:
/// the connections' first round trips.
pub(crate) const WARM_UP: u64 = 10;
/// How long a bystander write may block before it counts as not served.
const STUCK: Duration = Duration::from_secs(10);
/// The bystander's topic.
const BYSTANDER_TOPIC: &str = "hostile/bystander";

/// A well-behaved publisher and subscriber pair on a thread of their own,
/// publishing at QoS 1 every [`BYSTANDER_PERIOD`] while a case runs.
/// Latency is counted from when each message was due (not when it could
/// be written), so a publisher held up by the broker shows as latency.
pub(crate) struct Bystander {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<BystanderReport>,
}

/// What the bystander saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct BystanderReport {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) latencies: Latencies,
    /// Why it stopped being served, if it did (a connection closed, ...).
    pub(crate) error: Option<String>,
}

impl BystanderReport {
    /// Every message it published was delivered, and nothing broke.
    pub(crate) fn served(&self) -> bool {
        self.error.is_none() && self.sent > 0 && self.received >= self.sent
    }
}

impl Bystander {
    /// Connects both clients and subscribes; returns once the pair is ready.
    pub(crate) fn start(addr: SocketAddr) -> Result<Bystander, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bystander".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("bystander runtime");
                rt.block_on(bystander(addr, flag, ready_tx))
            })
            .map_err(|e| format!("cannot start the bystander thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Bystander { stop, thread }),
            Ok(Err(e)) => Err(format!("bystander: {e}")),
            Err(_) => Err("bystander thread ended before it was ready".into()),
        }
    }

    /// Stops publishing, waits for the last deliveries, and reports.
    pub(crate) fn finish(self) -> BystanderReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| BystanderReport {
            error: Some("bystander thread panicked".into()),
            ..Default::default()
        })
    }
}

async fn bystander(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), String>>,
) -> BystanderReport {
    let counter = Counter::default();
    let setup = async {
        let mut sub = Wire::connect(
            addr,
            connect(ProtocolVersion::V3_1_1, "hostile-bystander-sub"),
            &counter,
        )
        .await?;
        let codes = sub
            .subscribe(&[(BYSTANDER_TOPIC, QoS::AtLeastOnce)])
            .await?;
        if codes.iter().any(|c| c.is_error()) {
            return Err(format!("SUBSCRIBE refused: {codes:?}"));
        }
        let publisher = Wire::connect(
            addr,
            connect(ProtocolVersion::V3_1_1, "hostile-bystander-pub"),
            &counter,
        )
        .await?;
        Ok::<_, String>((sub, publisher))
    };
    let (sub, publisher) = match setup.await {
        Ok(pair) => {
            let _ = ready.send(Ok(()));
            pair
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return BystanderReport {
                error: Some(e),
                ..Default::default()
            };
        }
    };
    let start = Instant::now();
    let sent_total = Arc::new(AtomicU64::new(u64::MAX));
    let (published, received) = tokio::join!(
        publish_loop(publisher, start, stop, sent_total.clone()),
        receive_loop(sub, start, sent_total),
    );
    let (sent, pub_error) = published;
    let (received, latencies, sub_error) = received;
    BystanderReport {
        sent,
        received,
        latencies,
        error: pub_error.or(sub_error),
    }
}

/// Publishes seq 0, 1, ... each due at `start + seq × period`; on stop,
/// sets `sent_total`. Returns how many it sent and what went wrong.
async fn publish_loop(
    mut wire: Wire,
    start: Instant,
    stop: Arc<AtomicBool>,
    sent_total: Arc<AtomicU64>,
) -> (u64, Option<String>) {
    let topic = MqttString::from_static(BYSTANDER_TOPIC);
    let mut seq = 0_u64;
    let mut error = None;
    while !stop.load(Ordering::Relaxed) {
        let id = (seq % u64::from(u16::MAX)) as u16 + 1;
        let message = publish(
            topic.clone(),
            bytes::Bytes::copy_from_slice(&seq.to_be_bytes()),
            QoS::AtLeastOnce,
            id,
            false,
        );
        match tokio::time::timeout(STUCK, wire.send(&Packet::Publish(message))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error = Some(format!("publisher: {e}"));
                break;
            }
            Err(_) => {
                error = Some(format!("publisher: could not write for {STUCK:?}"));
                break;
            }
        }
        seq += 1;
        // Take PUBACKs until the next message is due.
        let due = start + BYSTANDER_PERIOD * seq as u32;
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            match wire.rx.recv(due - now).await {
                Recv::Packet(_) | Recv::Timeout => {}
                other => {
                    error = Some(format!("publisher: {other:?}"));
                    break;
                }
            }
        }
        if error.is_some() {
            break;
        }
    }
    sent_total.store(seq, Ordering::Relaxed);
    (seq, error)
}

/// Receives and acknowledges the bystander's messages until all that were
/// sent have arrived (or [`BYSTANDER_DRAIN`] after the publisher stopped).
async fn receive_loop(
    mut wire: Wire,
    start: Instant,
    sent_total: Arc<AtomicU64>,
) -> (u64, Latencies, Option<String>) {
    let mut latencies = Latencies::default();
    let mut seen = Vec::<bool>::new();
    let mut received = 0_u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        let total = sent_total.load(Ordering::Relaxed);
        if total != u64::MAX {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            if received >= total {
                return (received, latencies, None);
            }
            if at.elapsed() > BYSTANDER_DRAIN {
                return (received, latencies, None);
            }
        }
        match wire.rx.recv(Duration::from_millis(50)).await {
            Recv::Timeout => {}
            Recv::Packet(Packet::Publish(p)) => {
                let now = Instant::now();
                if let Some(id) = p.packet_id {
                    let ack = Packet::PubAck(PubAck::new(id));
                    let ack = wire.send(&ack);
                    if let Ok(Err(e)) | Err(e) = tokio::time::timeout(STUCK, ack)
                        .await
                        .map_err(|_| format!("could not write for {STUCK:?}"))
                    {
                        return (received, latencies, Some(format!("subscriber: {e}")));
                    }
                }
                let Ok(bytes) = <[u8; 8]>::try_from(&p.payload[..]) else {
                    continue;
                };
                let seq = u64::from_be_bytes(bytes);
                let index = seq as usize;
                if seen.len() <= index {
                    seen.resize(index + 1, false);
                }
                if !seen[index] {
                    seen[index] = true;
                    received += 1;
                    let due = start + BYSTANDER_PERIOD * seq as u32;
                    if seq >= WARM_UP {
                        latencies.push(now.saturating_duration_since(due));
                    }
                }
            }
            Recv::Packet(_) => {}
            other => return (received, latencies, Some(format!("subscriber: {other:?}"))),
        }
    }
}
