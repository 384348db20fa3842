//! The bench's own lean MQTT connections, straight on tern-codec.
//!
//! A bench that went through tern-client would measure tern-client. Here
//! each client is one tokio task and two buffers: a publisher encodes its
//! PUBLISH once and then only copies it and patches the packet identifier
//! and the timestamp, writing many packets per `write`; the read side frames
//! packets with tern-codec out of one `BytesMut` and looks only at what it
//! needs (acknowledged identifiers, the payload's timestamp). QoS 1 and 2
//! publishers keep a bounded window of unacknowledged messages, so a slow
//! broker slows them down instead of piling up.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tern_codec::{
    Connect, ConnectProperties, Disconnect, MAX_PACKET_SIZE, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions,
    check_frame,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::watch,
};

/// Bytes a publisher queues before it waits for the socket to take them.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Bytes of packets a publisher adds to its buffer at once.
const BATCH_BYTES: usize = 64 * 1024;
/// Free space a read asks for.
const READ_CHUNK: usize = 64 * 1024;
/// How often an otherwise idle loop wakes to check its deadlines.
const IDLE_TICK: Duration = Duration::from_millis(20);

/// The process-local epoch the payload timestamps count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`] (monotonic).
pub(super) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Counters every task adds to and the progress line reads.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// PUBLISH packets written to a socket.
    pub(super) sent: AtomicU64,
    /// QoS 1/2 PUBLISH whose flow completed (PUBACK, or PUBCOMP).
    pub(super) acked: AtomicU64,
    /// PUBLISH packets received by subscribers.
    pub(super) delivered: AtomicU64,
    /// When (ns since the epoch) the first and the last delivery arrived.
    pub(super) first_delivery_ns: AtomicU64,
    /// See `first_delivery_ns`.
    pub(super) last_delivery_ns: AtomicU64,
    /// When the last PUBLISH was written.
    pub(super) last_sent_ns: AtomicU64,
    /// Connect-CONNACK-disconnect rounds completed (churn).
    pub(super) connects: AtomicU64,
}

impl Counters {
    fn delivered(&self, n: u64, now: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
        let _ =
            self.first_delivery_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }
}

/// A connection's read half: TCP, or TLS over TCP.
type Reader = Box<dyn AsyncRead + Unpin>;
/// A connection's write half.
type Writer = Box<dyn AsyncWrite + Unpin>;

/// Where the links connect to, and how: plain TCP, or TLS with this
/// configuration and server name.
#[derive(Clone)]
pub(super) struct Dial {
    pub(super) addr: SocketAddr,
    pub(super) tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// One MQTT connection: the socket halves and their buffers.
pub(super) struct Link {
    read: Reader,
    write: Writer,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: ProtocolVersion,
    /// The broker's Receive Maximum (65,535 when it gave none).
    pub(super) receive_maximum: u16,
}

/// How a client ended, for the summary.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// What went wrong, if anything did.
    pub(super) error: Option<String>,
    /// QoS 1/2 messages still unacknowledged when the publisher gave up.
    pub(super) unacked: u64,
    /// Latencies (ns) this subscriber measured.
    pub(super) latency: Option<Histogram<u64>>,
}

/// A histogram for nanosecond latencies up to 10 minutes, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

impl Link {
    /// Connects, sends CONNECT and waits for a successful CONNACK. With
    /// `session_expiry`, a session that outlives the connection (MQTT 5:
    /// that Session Expiry Interval; 3.1.1: Clean Session 0).
    pub(super) async fn connect(
        dial: &Dial,
        source: Option<IpAddr>,
        version: ProtocolVersion,
        client_id: String,
        keep_alive: u16,
        session_expiry: Option<u32>,
    ) -> Result<Link, String> {
        let addr = dial.addr;
        let stream = match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => bound_connect(addr, ip).await,
        }
        .map_err(|e| match source {
            None => format!("cannot connect to {addr}: {e}"),
            Some(ip) => format!("cannot connect to {addr} from {ip}: {e}"),
        })?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (read, write): (Reader, Writer) = match &dial.tls {
            None => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
                let (read, write) = tokio::io::split(tls);
                (Box::new(read), Box::new(write))
            }
        };
        let mut link = Link {
            read,
            write,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            version,
            receive_maximum: u16::MAX,
        };
        link.send(&Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_start: version.is_v5() || session_expiry.is_none(),
            keep_alive,
            properties: ConnectProperties {
                session_expiry_interval: session_expiry.filter(|_| version.is_v5()),
                ..ConnectProperties::default()
            },
            client_id: MqttString::from_utf8(Bytes::from(client_id))
                .map_err(|e| format!("bad client id: {e}"))?,
            ..Connect::default()
        })))
        .await?;
        match link.next_packet().await? {
            Packet::ConnAck(ack) if ack.reason_code == ReasonCode::Success => {
                if let Some(max) = ack.properties.receive_maximum {
                    link.receive_maximum = max.get();
                }
                Ok(link)
            }
            Packet::ConnAck(ack) => Err(format!("connection refused: {}", ack.reason_code)),
            other => Err(format!("expected CONNACK, got {:?}", other.packet_type())),
        }
    }

    /// Subscribes to one filter and waits for a granting SUBACK.
    pub(super) async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), String> {
        let id = PacketId::new(1).expect("1 is not 0");
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_utf8(Bytes::from(filter.to_owned()))
                    .map_err(|e| format!("bad topic filter: {e}"))?,
                options: SubscriptionOptions::with_qos(qos),
            }],
        }))
        .await?;
        loop {
            match self.next_packet().await? {
                Packet::SubAck(ack) if ack.packet_id == id => {
                    return match ack.reason_codes.first() {
                        Some(code) if code.is_success() => Ok(()),
                        Some(code) => Err(format!("subscription to {filter:?} refused: {code}")),
                        None => Err("SUBACK without a reason code".into()),
                    };
                }
                // A retained message may arrive before the SUBACK; it is not ours.
                _ => continue,
            }
        }
    }

    /// Encodes and writes one packet now.
    async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut out = BytesMut::with_capacity(packet.encoded_len(self.version));
        packet
            .encode(self.version, &mut out)
            .map_err(|e| format!("cannot encode {:?}: {e}", packet.packet_type()))?;
        self.write
            .write_all(&out)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Reads until one whole packet is buffered and decodes it.
    async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(packet) = Packet::decode(&mut self.rbuf, self.version, MAX_PACKET_SIZE)
                .map_err(|e| format!("bad packet from the broker: {e}"))?
            {
                return Ok(packet);
            }
            if self
                .read
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| format!("read failed: {e}"))?
                == 0
            {
                return Err("the broker closed the connection".into());
            }
        }
    }

    /// Reads what is there into `rbuf`; an error when the broker closed.
    async fn fill(read: &mut Reader, rbuf: &mut BytesMut, chunk: usize) -> Result<(), String> {
        if rbuf.capacity() - rbuf.len() < chunk / 4 {
            rbuf.reserve(chunk);
        }
        match read.read_buf(rbuf).await {
            Ok(0) => Err("the broker closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read failed: {e}")),
        }
    }

    /// Sends DISCONNECT (best effort) and closes.
    pub(super) async fn close(mut self) {
        let _ = self.write.write_all(&self.wbuf).await;
        let _ = self
            .send(&Packet::Disconnect(Box::new(Disconnect::new(
                ReasonCode::Success,
            ))))
            .await;
        // TLS: close_notify, then the FIN.
        let _ = self.write.shutdown().await;
    }
}

/// A short acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP): type byte,
/// Remaining Length 2, the identifier. In MQTT 5 the omitted reason code
/// means Success.
fn put_ack(dst: &mut BytesMut, first: u8, id: u16) {
    dst.put_u8(first);
    dst.put_u8(2);
    dst.put_u16(id);
}

const PUBACK: u8 = 0x40;
const PUBREC: u8 = 0x50;
const PUBREL: u8 = 0x62;
const PUBCOMP: u8 = 0x70;

/// What a publisher sends and how fast.
#[derive(Debug, Clone)]
pub(super) struct PubPlan {
    /// The whole PUBLISH, encoded once.
    template: Vec<u8>,
    /// Where the packet identifier sits in `template` (QoS 1/2).
    id_at: Option<usize>,
    /// Where the 8-byte timestamp sits (the payload's start).
    ts_at: usize,
    /// The QoS of every message.
    qos: QoS,
    /// Unacknowledged QoS 1/2 messages allowed at once.
    pub(super) window: u16,
    /// Nanoseconds between messages; `None` is as fast as possible.
    pub(super) interval_ns: Option<u64>,
    /// Messages to send; `None` until stopped.
    pub(super) count: Option<u64>,
}

impl PubPlan {
    /// Encodes the PUBLISH for `topic` with a `size`-byte payload (at least 8).
    pub(super) fn new(
        version: ProtocolVersion,
        topic: &str,
        qos: QoS,
        size: usize,
    ) -> Result<PubPlan, String> {
        let publish = Publish {
            qos,
            topic: MqttString::from_utf8(Bytes::from(topic.to_owned()))
                .map_err(|e| format!("bad topic: {e}"))?,
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(1).expect("not 0")),
            payload: Bytes::from(vec![b'x'; size.max(8)]),
            ..Publish::default()
        };
        let mut template = Vec::new();
        Packet::Publish(publish)
            .encode(version, &mut template)
            .map_err(|e| format!("cannot encode the PUBLISH to {topic:?}: {e}"))?;
        let header = match check_frame(&template, version, MAX_PACKET_SIZE) {
            Ok(tern_codec::FrameStatus::Complete(header)) => header,
            _ => return Err("the encoded PUBLISH does not frame".into()),
        };
        let id_at = (qos != QoS::AtMostOnce).then_some(header.header_len + 2 + topic.len());
        Ok(PubPlan {
            ts_at: template.len() - size.max(8),
            template,
            id_at,
            qos,
            window: u16::MAX,
            interval_ns: None,
            count: None,
        })
    }
}

/// Packet identifiers in use, and the next one to try.
struct Ids {
    used: Vec<bool>,
    in_use: u32,
    next: u16,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            used: vec![false; 65536],
            in_use: 0,
            next: 0,
        }
    }

    /// A free identifier (the caller keeps `in_use` below 65,535).
    fn take(&mut self) -> u16 {
        loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.used[usize::from(self.next)] {
                self.used[usize::from(self.next)] = true;
                self.in_use += 1;
                return self.next;
            }
        }
    }

    /// Frees `id`; false when it was not in use (a stray acknowledgement).
    fn free(&mut self, id: u16) -> bool {
        let slot = &mut self.used[usize::from(id)];
        if *slot {
            *slot = false;
            self.in_use -= 1;
            true
        } else {
            false
        }
    }
}

/// Publishes by `plan` until `stop` turns true (or the count is reached),
/// then waits up to `drain` for the outstanding acknowledgements.
pub(super) async fn publisher(
    mut link: Link,
    plan: PubPlan,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut ids = Ids::new();
    let window = u32::from(plan.window.min(link.receive_maximum).max(1)).min(65_535);
    let per_batch = (BATCH_BYTES / plan.template.len()).max(1) as u64;
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut drain_deadline: Option<Instant> = None;
    let result: Result<(), String> = async {
        loop {
            let stopping = *stop.borrow() || plan.count.is_some_and(|c| sent >= c);
            if stopping && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + drain);
            }
            let mut next_due: Option<Instant> = None;
            if !stopping && link.wbuf.len() < WRITE_HIGH_WATER {
                let mut n = per_batch;
                if plan.qos != QoS::AtMostOnce {
                    n = n.min(u64::from(window.saturating_sub(ids.in_use)));
                }
                if let Some(count) = plan.count {
                    n = n.min(count - sent);
                }
                if let Some(interval) = plan.interval_ns {
                    let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let due = (elapsed / interval + 1).saturating_sub(sent);
                    n = n.min(due);
                    next_due = Some(start + Duration::from_nanos((sent + n) * interval));
                }
                if n > 0 {
                    let ts = now_ns().to_be_bytes();
                    for _ in 0..n {
                        let at = link.wbuf.len();
                        link.wbuf.extend_from_slice(&plan.template);
                        let packet = &mut link.wbuf[at..];
                        packet[plan.ts_at..plan.ts_at + 8].copy_from_slice(&ts);
                        if let Some(id_at) = plan.id_at {
                            packet[id_at..id_at + 2].copy_from_slice(&ids.take().to_be_bytes());
                        }
                    }
                    sent += n;
                    counters.sent.fetch_add(n, Ordering::Relaxed);
                    counters.last_sent_ns.fetch_max(now_ns(), Ordering::Relaxed);
                }
            }
            if stopping && link.wbuf.is_empty() && ids.in_use == 0 {
                return Ok(());
            }
            if drain_deadline.is_some_and(|d| Instant::now() >= d) {
                outcome.unacked = u64::from(ids.in_use);
                return Err(format!(
                    "{} messages unacknowledged {} s after publishing stopped",
                    ids.in_use,
                    drain.as_secs_f64()
                ));
            }
            // Sleep until the next message is due, the window opens (an
            // acknowledgement arrives), or a deadline needs checking.
            let wake = match next_due {
                Some(due) if !stopping => due.min(Instant::now() + IDLE_TICK),
                _ => Instant::now() + IDLE_TICK,
            };
            let window_full =
                plan.qos != QoS::AtMostOnce && window.saturating_sub(ids.in_use) == 0;
            let can_send_more = !stopping
                && !window_full
                && plan.interval_ns.is_none()
                && link.wbuf.len() < WRITE_HIGH_WATER;
            tokio::select! {
                biased;
                read = Link::fill(&mut link.read, &mut link.rbuf, READ_CHUNK) => {
                    read?;
                    handle_acks(&mut link, &mut ids, &counters)?;
                }
                written = link.write.write(&link.wbuf), if !link.wbuf.is_empty() => {
                    let n = written.map_err(|e| format!("write failed: {e}"))?;
                    link.wbuf.advance(n);
                }
                _ = stop.changed(), if !stopping => {}
                _ = tokio::time::sleep_until(wake.into()), if link.wbuf.is_empty() && !can_send_more => {}
                // Nothing to wait for: go round and fill the buffer.
                () = std::future::ready(()), if link.wbuf.is_empty() && can_send_more => {}
            }
        }
    }
    .await;
    if let Err(e) = result {
        outcome.error = Some(e);
    }
    link.close().await;
    outcome
}

/// Handles what a publisher receives: acknowledgements.
fn handle_acks(link: &mut Link, ids: &mut Ids, counters: &Counters) -> Result<(), String> {
    let mut acked = 0;
    while let Some(packet) = Packet::decode(&mut link.rbuf, link.version, MAX_PACKET_SIZE)
        .map_err(|e| format!("bad packet from the broker: {e}"))?
    {
        match packet {
            Packet::PubAck(ack) => {
                check_reason(ack.reason_code, "PUBACK")?;
                if ids.free(ack.packet_id.get()) {
                    acked += 1;
                }
            }
            Packet::PubRec(rec) => {
                check_reason(rec.reason_code, "PUBREC")?;
                put_ack(&mut link.wbuf, PUBREL, rec.packet_id.get());
            }
            Packet::PubComp(comp) if ids.free(comp.packet_id.get()) => acked += 1,
            Packet::Disconnect(d) => {
                return Err(format!("the broker disconnected: {}", d.reason_code));
            }
            _ => {}
        }
    }
    counters.acked.fetch_add(acked, Ordering::Relaxed);
    Ok(())
}

fn check_reason(code: ReasonCode, what: &str) -> Result<(), String> {
    if code.is_success() {
        Ok(())
    } else {
        Err(format!("the broker refused a message ({what}): {code}"))
    }
}

/// Receives and acknowledges until `stop` turns true or `limit` messages
/// arrived; measures latency from the payload's timestamp when `latency`.
pub(super) async fn subscriber(
    mut link: Link,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    limit: Option<u64>,
    latency: bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut hist = latency.then(histogram);
    let mut received: u64 = 0;
    let result: Result<(), String> = async {
        loop {
            if *stop.borrow() || (limit.is_some_and(|l| received >= l) && link.wbuf.is_empty()) {
                return Ok(());
            }
            tokio::select! {
                biased;
                read = Link::fill(&mut link.read, &mut link.rbuf, READ_CHUNK) => {
                    read?;
                    let now = now_ns();
                    let mut n = 0;
                    while let Some(packet) =
                        Packet::decode(&mut link.rbuf, link.version, MAX_PACKET_SIZE)
                            .map_err(|e| format!("bad packet from the broker: {e}"))?
                    {
                        match packet {
                            Packet::Publish(p) => {
                                n += 1;
                                if let (Some(h), Some(ts)) = (hist.as_mut(), p.payload.get(..8)) {
                                    let sent = u64::from_be_bytes(ts.try_into().expect("8 bytes"));
                                    let _ = h.record(now.saturating_sub(sent).max(1));
                                }
                                match (p.qos, p.packet_id) {
                                    (QoS::AtLeastOnce, Some(id)) => put_ack(&mut link.wbuf, PUBACK, id.get()),
                                    (QoS::ExactlyOnce, Some(id)) => put_ack(&mut link.wbuf, PUBREC, id.get()),
                                    _ => {}
                                }
                            }
                            Packet::PubRel(rel) => put_ack(&mut link.wbuf, PUBCOMP, rel.packet_id.get()),
                            Packet::Disconnect(d) => {
                                return Err(format!("the broker disconnected: {}", d.reason_code));
                            }
                            _ => {}
                        }
                    }
                    if n > 0 {
                        received += n;
                        counters.delivered(n, now);
                    }
                }
                written = link.write.write(&link.wbuf), if !link.wbuf.is_empty() => {
                    let n = written.map_err(|e| format!("write failed: {e}"))?;
                    link.wbuf.advance(n);
                }
                _ = stop.changed() => {}
            }
        }
    }
    .await;
    if let Err(e) = result {
        outcome.error = Some(e);
    }
    outcome.latency = hist;
    link.close().await;
    outcome
}

/// Holds an idle connection open (pinging every `keep_alive / 2` seconds)
/// until `stop` turns true.
pub(super) async fn holder(
    mut link: Link,
    mut stop: watch::Receiver<bool>,
    keep_alive: u16,
) -> Outcome {
    let mut outcome = Outcome::default();
    let ping_every = Duration::from_secs(u64::from(keep_alive.max(2) / 2));
    let result: Result<(), String> = async {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            tokio::select! {
                read = Link::fill(&mut link.read, &mut link.rbuf, 64) => {
                    read?;
                    // PINGRESP and the like: nothing to do but consume them.
                    while Packet::decode(&mut link.rbuf, link.version, MAX_PACKET_SIZE)
                        .map_err(|e| format!("bad packet from the broker: {e}"))?
                        .is_some()
                    {}
                    link.rbuf = BytesMut::new();
                }
                _ = tokio::time::sleep(ping_every), if keep_alive > 0 => {
                    link.write.write_all(&[0xC0, 0x00]).await.map_err(|e| format!("write failed: {e}"))?;
                }
                _ = stop.changed() => {}
            }
        }
    }
    .await;
    if let Err(e) = result {
        outcome.error = Some(e);
    }
    link.close().await;
    outcome
}

/// Connects to `addr` from the local address `source` (any free port), so
/// that connections spread over several source addresses are not limited to
/// one address's ephemeral ports.
async fn bound_connect(addr: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Connects, gets a CONNACK and disconnects, again and again (a new client
/// identifier each time), until `stop` turns true; counts each round in
/// `counters.connects`.
pub(super) async fn churner(
    dial: Arc<Dial>,
    source: Option<IpAddr>,
    version: ProtocolVersion,
    client_id: String,
    keep_alive: u16,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut round: u64 = 0;
    while !*stop.borrow() {
        let id = format!("{client_id}-{round}");
        match Link::connect(&dial, source, version, id, keep_alive, None).await {
            Ok(link) => {
                link.close().await;
                counters.connects.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                outcome.error = Some(e);
                break;
            }
        }
        round += 1;
    }
    outcome
}
