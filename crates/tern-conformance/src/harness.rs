//! The test harness: a blocking raw-packet connection and a per-test context.
//!
//! A [`Ctx`] gives each test its broker address, its protocol version, unique
//! client identifiers and a unique topic prefix, and remembers what to clean
//! up afterwards (retained messages, persistent sessions). A [`Conn`] is one
//! TCP connection that sends [`Packet`]s (or raw bytes) and waits, with a
//! bounded timeout, for the next packet or for the broker to close.

use crate::Version;
use bytes::BytesMut;
use std::{
    collections::VecDeque,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    num::NonZeroU16,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};
use tern_codec::{
    ConnAck, Connect, Disconnect, MqttString, Packet, PacketId, ProtocolVersion, PubAck, PubComp,
    PubRel, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
    UnsubAck, Unsubscribe,
};

/// Why a test stopped early: it failed, or it does not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The broker broke the statement (or misbehaved), with what was seen.
    Fail(String),
    /// The test cannot run against this broker (a feature it lacks), with why.
    Skip(String),
}

/// What a test returns.
pub type TestResult = Result<(), Stop>;

/// A failure with a message.
pub fn fail(message: impl Into<String>) -> Stop {
    Stop::Fail(message.into())
}

/// Fails the test with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::harness::Stop::Fail(format!($($arg)+)));
        }
    };
}

/// How long to wait for a packet the broker should send.
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to wait for the broker to close a connection it should close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to watch for a packet the broker should not send, where no
/// later event can prove its absence.
pub const QUIET_TIME: Duration = Duration::from_millis(500);

/// The broker under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// The MQTT-over-TCP address.
    pub tcp: SocketAddr,
    /// The MQTT-over-WebSocket URL (`ws://HOST:PORT/PATH`), if any.
    pub ws: Option<String>,
    /// The same broker configured with Maximum QoS 1 and no retained
    /// messages (for the statements about such servers), if any.
    pub restricted: Option<SocketAddr>,
}

impl Target {
    /// A target from `HOST:PORT` and an optional WebSocket URL.
    pub fn new(tcp: &str, ws: Option<String>) -> Result<Target, String> {
        let tcp = tcp
            .to_socket_addrs()
            .map_err(|e| format!("{tcp}: {e}"))?
            .next()
            .ok_or_else(|| format!("{tcp}: no address"))?;
        Ok(Target {
            tcp,
            ws,
            restricted: None,
        })
    }
}

/// A tag for this process's run, so ids never collide with an earlier run
/// against the same broker.
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        format!(
            "{:x}",
            (nanos ^ std::process::id().rotate_left(16)) & 0xff_ffff
        )
    })
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// One test's context: target, version, unique names, and cleanup.
#[derive(Debug)]
pub struct Ctx {
    /// The broker under test.
    pub target: Target,
    /// The protocol version the test speaks.
    pub version: Version,
    prefix: String,
    cleanup: Mutex<Cleanup>,
}

#[derive(Debug, Default)]
struct Cleanup {
    retained: Vec<String>,
    sessions: Vec<String>,
}

impl Ctx {
    /// A fresh context with its own topic prefix.
    pub fn new(target: Target, version: Version) -> Ctx {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ctx {
            target,
            version,
            prefix: format!("tc/{}/{n}", run_tag()),
            cleanup: Mutex::new(Cleanup::default()),
        }
    }

    /// The codec version of this test.
    pub fn protocol(&self) -> ProtocolVersion {
        self.version.protocol()
    }

    /// `true` for MQTT 5 tests.
    pub fn v5(&self) -> bool {
        self.version == Version::V5
    }

    /// A client identifier no other test uses: 1 to 23 characters from
    /// `[0-9a-zA-Z]`, which every server must accept [MQTT-3.1.3-5].
    pub fn client_id(&self) -> String {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        format!("tc{}x{n}", run_tag())
    }

    /// A topic under this test's own prefix.
    pub fn topic(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// This test's topic prefix (no trailing slash).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Remembers a topic whose retained message must be cleared afterwards.
    pub fn retained(&self, topic: &str) {
        self.cleanup
            .lock()
            .expect("cleanup lock")
            .retained
            .push(topic.to_string());
    }

    /// Remembers a client id whose session must be ended afterwards.
    pub fn persistent(&self, client_id: &str) {
        self.cleanup
            .lock()
            .expect("cleanup lock")
            .sessions
            .push(client_id.to_string());
    }

    /// The CONNECT every test starts from: this version, a clean start, keep
    /// alive 60 s, a fresh client id.
    pub fn connect_packet(&self) -> Connect {
        Connect {
            protocol: self.protocol(),
            clean_start: true,
            keep_alive: 60,
            client_id: string(&self.client_id()),
            ..Connect::default()
        }
    }

    /// Opens a TCP connection (no CONNECT yet).
    pub fn open(&self) -> Result<Conn, Stop> {
        Conn::open(&self.target.tcp, self.protocol())
    }

    /// Connects with `connect` and returns the connection and the broker's
    /// answer, which must be a CONNACK (of any reason).
    pub fn connect_with(&self, connect: Connect) -> Result<(Conn, ConnAck), Stop> {
        let mut conn = self.open()?;
        conn.send(Packet::Connect(Box::new(connect)))?;
        match conn.recv()? {
            Packet::ConnAck(ack) => Ok((conn, *ack)),
            other => Err(fail(format!("expected CONNACK, got {}", name(&other)))),
        }
    }

    /// Connects with `connect`, which the broker must accept.
    pub fn connect_ok(&self, connect: Connect) -> Result<(Conn, ConnAck), Stop> {
        let (conn, ack) = self.connect_with(connect)?;
        ensure!(
            ack.reason_code == ReasonCode::Success,
            "CONNECT refused with {:?}",
            ack.reason_code
        );
        Ok((conn, ack))
    }

    /// A connected client with a fresh id and a clean session.
    pub fn connect(&self) -> Result<Conn, Stop> {
        Ok(self.connect_ok(self.connect_packet())?.0)
    }

    /// Runs the cleanup: clears retained messages, ends persistent sessions.
    /// Errors are ignored (the broker may be gone).
    pub fn cleanup(&self) {
        let cleanup = std::mem::take(&mut *self.cleanup.lock().expect("cleanup lock"));
        let retained_conn = if cleanup.retained.is_empty() {
            None
        } else {
            self.connect().ok()
        };
        if let Some(mut conn) = retained_conn {
            for topic in &cleanup.retained {
                let _ = conn.send(Packet::Publish(Publish {
                    retain: true,
                    topic: string(topic),
                    ..Publish::default()
                }));
            }
            let _ = conn.disconnect();
        }
        for id in &cleanup.sessions {
            let mut connect = self.connect_packet();
            connect.client_id = string(id);
            if let Ok((mut conn, _)) = self.connect_with(connect) {
                let _ = conn.disconnect();
            }
        }
    }
}

/// An MQTT string from text the tests write (panics on U+0000, which tests
/// never put in a string this way).
pub fn string(s: &str) -> MqttString {
    MqttString::try_from(s).expect("test strings are valid MQTT strings")
}

/// A packet identifier from a non-zero number.
pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("packet ids in tests are non-zero")
}

/// The packet's name, for messages.
pub fn name(packet: &Packet) -> String {
    match packet {
        Packet::ConnAck(a) => format!("CONNACK({:?})", a.reason_code),
        Packet::Disconnect(d) => format!("DISCONNECT({:?})", d.reason_code),
        Packet::Publish(p) => format!("PUBLISH({} q{})", p.topic, p.qos.as_u8()),
        Packet::SubAck(s) => format!("SUBACK({:?})", s.reason_codes),
        Packet::PubAck(a) => format!("PUBACK({:?})", a.reason_code),
        Packet::PubRec(a) => format!("PUBREC({:?})", a.reason_code),
        other => format!("{:?}", other.packet_type()),
    }
}

/// What reading from the socket produced.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, returned by value once per read
pub enum Event {
    /// A whole packet.
    Packet(Packet),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived before the deadline.
    Timeout,
}

/// One raw-packet connection to the broker.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
    pending: VecDeque<Packet>,
    next_pid: u16,
    closed: bool,
    largest: usize,
}

impl Conn {
    /// Opens a TCP connection.
    pub fn open(addr: &SocketAddr, version: ProtocolVersion) -> Result<Conn, Stop> {
        let stream = TcpStream::connect_timeout(addr, PACKET_TIMEOUT)
            .map_err(|e| fail(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            version,
            pending: VecDeque::new(),
            next_pid: 0,
            closed: false,
            largest: 0,
        })
    }

    /// Wraps an accepted connection (the scripted broker's side).
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            version,
            pending: VecDeque::new(),
            next_pid: 0,
            closed: false,
            largest: 0,
        }
    }

    /// Reads the next whole packet's raw bytes (for checking bits the
    /// decoded form hides); fails on close or timeout.
    pub fn recv_frame(&mut self) -> Result<bytes::Bytes, Stop> {
        let deadline = Instant::now() + PACKET_TIMEOUT;
        loop {
            if let Ok(tern_codec::FrameStatus::Complete(header)) =
                tern_codec::check_frame(&self.buf, self.version, u32::MAX)
            {
                return Ok(self.buf.split_to(header.packet_len()).freeze());
            }
            let now = Instant::now();
            ensure!(
                !self.closed,
                "connection closed while a packet was expected"
            );
            ensure!(
                now < deadline,
                "no packet within {} ms",
                PACKET_TIMEOUT.as_millis()
            );
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next packet identifier (1, 2, ...).
    pub fn next_pid(&mut self) -> PacketId {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        pid(self.next_pid)
    }

    /// Encodes and sends a packet.
    pub fn send(&mut self, packet: Packet) -> TestResult {
        let mut out = BytesMut::new();
        packet
            .encode(self.version, &mut out)
            .map_err(|e| fail(format!("test bug: cannot encode {packet:?}: {e}")))?;
        self.send_raw(&out)
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) -> TestResult {
        self.stream
            .write_all(bytes)
            .map_err(|e| fail(format!("send failed: {e}")))
    }

    /// Sends bytes, ignoring a failure because the broker already closed.
    pub fn send_raw_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads until a packet, the close, or the deadline.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event, Stop> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(Event::Packet(p));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if !self.buf.is_empty() {
                let before = self.buf.len();
                match Packet::decode(&mut self.buf, self.version, u32::MAX) {
                    Ok(Some(p)) => {
                        self.largest = self.largest.max(before - self.buf.len());
                        return Ok(Event::Packet(p));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(fail(format!("broker sent a malformed packet: {e}"))),
                }
            }
            if self.closed {
                return Ok(Event::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Event::Timeout);
            }
            let _ = self
                .stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))));
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads raw bytes until the broker closes; fails if it stays open
    /// for `timeout`.
    pub fn read_raw_until_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, Stop> {
        let deadline = Instant::now() + timeout;
        let mut out = self.buf.split().to_vec();
        while !self.closed {
            let now = Instant::now();
            if now >= deadline {
                return Err(fail(format!(
                    "broker did not close the connection within {} ms",
                    timeout.as_millis()
                )));
            }
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
        Ok(out)
    }

    /// The size in bytes of the largest packet received so far.
    pub fn largest_packet(&self) -> usize {
        self.largest
    }

    /// Whether the broker has closed the connection (as seen so far).
    pub fn is_closed(&self) -> bool {
        self.closed && self.buf.is_empty() && self.pending.is_empty()
    }

    /// The next packet within [`PACKET_TIMEOUT`]; fails on close or timeout.
    pub fn recv(&mut self) -> Result<Packet, Stop> {
        self.recv_within(PACKET_TIMEOUT)
    }

    /// The next packet within `timeout`; fails on close or timeout.
    pub fn recv_within(&mut self, timeout: Duration) -> Result<Packet, Stop> {
        match self.next_event(timeout)? {
            Event::Packet(p) => Ok(p),
            Event::Closed => Err(fail(
                "broker closed the connection while a packet was expected",
            )),
            Event::Timeout => Err(fail(format!(
                "no packet from the broker within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub fn recv_publish(&mut self) -> Result<Publish, Stop> {
        match self.recv()? {
            Packet::Publish(p) => Ok(p),
            other => Err(fail(format!("expected PUBLISH, got {}", name(&other)))),
        }
    }

    /// Waits for the broker to close the connection; returns the packets it
    /// sent before closing. Fails if it stays open for `timeout`.
    pub fn expect_closed_within(&mut self, timeout: Duration) -> Result<Vec<Packet>, Stop> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Event::Packet(p) => seen.push(p),
                Event::Closed => return Ok(seen),
                Event::Timeout => {
                    let names: Vec<String> = seen.iter().map(name).collect();
                    return Err(fail(format!(
                        "broker did not close the connection within {} ms (sent {names:?})",
                        timeout.as_millis()
                    )));
                }
            }
        }
    }

    /// Waits for the broker to close the connection (see
    /// [`Conn::expect_closed_within`]) within [`CLOSE_TIMEOUT`]. Under MQTT 5
    /// a DISCONNECT may come first; any other packet fails the test.
    pub fn expect_closed(&mut self) -> Result<Option<ReasonCode>, Stop> {
        let seen = self.expect_closed_within(CLOSE_TIMEOUT)?;
        let mut reason = None;
        for p in &seen {
            match p {
                Packet::Disconnect(d) if self.version.is_v5() => reason = Some(d.reason_code),
                other => {
                    return Err(fail(format!(
                        "broker sent {} before closing the connection",
                        name(other)
                    )));
                }
            }
        }
        Ok(reason)
    }

    /// Like [`Conn::expect_closed`], and under MQTT 5 a DISCONNECT, if sent,
    /// must carry a reason code of 0x80 or above.
    pub fn expect_closed_with_error(&mut self) -> TestResult {
        if let Some(code) = self.expect_closed()? {
            ensure!(
                code.is_error(),
                "DISCONNECT before the close has non-error reason {code:?}"
            );
        }
        Ok(())
    }

    /// Fails if any packet arrives (or the connection closes) within `time`.
    pub fn expect_silence(&mut self, time: Duration) -> TestResult {
        match self.next_event(time)? {
            Event::Timeout => Ok(()),
            Event::Packet(p) => Err(fail(format!("unexpected {}", name(&p)))),
            Event::Closed => Err(fail("broker closed the connection unexpectedly")),
        }
    }

    /// Fails unless the connection is still open and answering: sends
    /// PINGREQ and waits for PINGRESP (packets before it are kept).
    pub fn expect_alive(&mut self) -> TestResult {
        self.send(Packet::PingReq)?;
        self.wait_for(|p| matches!(p, Packet::PingResp), "PINGRESP")
            .map(|_| ())
    }

    /// Waits for the first packet `want` accepts; packets before it are kept
    /// for later `recv`s.
    pub fn wait_for(&mut self, want: impl Fn(&Packet) -> bool, what: &str) -> Result<Packet, Stop> {
        let deadline = Instant::now() + PACKET_TIMEOUT;
        let mut skipped = Vec::new();
        let pending: Vec<Packet> = self.pending.drain(..).collect();
        let mut found = None;
        for p in pending {
            if found.is_none() && want(&p) {
                found = Some(p);
            } else {
                skipped.push(p);
            }
        }
        while found.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Event::Packet(p) if want(&p) => found = Some(p),
                Event::Packet(p) => skipped.push(p),
                Event::Closed => {
                    self.pending.extend(skipped);
                    return Err(fail(format!(
                        "broker closed the connection; expected {what}"
                    )));
                }
                Event::Timeout => {
                    self.pending.extend(skipped);
                    return Err(fail(format!(
                        "no {what} within {} ms",
                        PACKET_TIMEOUT.as_millis()
                    )));
                }
            }
        }
        self.pending.extend(skipped);
        Ok(found.expect("loop ends with a packet"))
    }

    /// Subscribes to one filter; returns the SUBACK (checked to carry the
    /// SUBSCRIBE's packet identifier).
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<SubAck, Stop> {
        self.subscribe_with(filter, SubscriptionOptions::with_qos(qos))
    }

    /// Subscribes with full options.
    pub fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<SubAck, Stop> {
        let packet_id = self.next_pid();
        self.send(Packet::Subscribe(Subscribe {
            packet_id,
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: string(filter),
                options,
            }],
        }))?;
        self.expect_suback(packet_id)
    }

    /// Waits for the SUBACK of `packet_id`.
    pub fn expect_suback(&mut self, packet_id: PacketId) -> Result<SubAck, Stop> {
        match self.wait_for(|p| matches!(p, Packet::SubAck(_)), "SUBACK")? {
            Packet::SubAck(ack) => {
                ensure!(
                    ack.packet_id == packet_id,
                    "SUBACK for packet id {} answers SUBSCRIBE {}",
                    ack.packet_id,
                    packet_id
                );
                Ok(ack)
            }
            _ => unreachable!("wait_for returns what it was asked for"),
        }
    }

    /// Subscribes and requires the subscription to be granted.
    pub fn subscribe_ok(&mut self, filter: &str, qos: QoS) -> TestResult {
        let ack = self.subscribe(filter, qos)?;
        ensure!(
            ack.reason_codes.len() == 1 && !ack.reason_codes[0].is_error(),
            "subscription to {filter} refused: {:?}",
            ack.reason_codes
        );
        Ok(())
    }

    /// Unsubscribes from one filter and waits for the UNSUBACK.
    pub fn unsubscribe(&mut self, filter: &str) -> Result<UnsubAck, Stop> {
        let packet_id = self.next_pid();
        self.send(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties: Default::default(),
            filters: vec![string(filter)],
        }))?;
        match self.wait_for(|p| matches!(p, Packet::UnsubAck(_)), "UNSUBACK")? {
            Packet::UnsubAck(ack) => {
                ensure!(
                    ack.packet_id == packet_id,
                    "UNSUBACK for packet id {} answers UNSUBSCRIBE {}",
                    ack.packet_id,
                    packet_id
                );
                Ok(ack)
            }
            _ => unreachable!("wait_for returns what it was asked for"),
        }
    }

    /// Publishes and completes the QoS flow as the sender (PUBACK, or
    /// PUBREC/PUBREL/PUBCOMP). Returns the PUBACK or PUBREC reason code.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<ReasonCode, Stop> {
        self.publish_packet(Publish {
            qos,
            retain,
            topic: string(topic),
            payload: bytes::Bytes::copy_from_slice(payload),
            ..Publish::default()
        })
    }

    /// Publishes a prepared PUBLISH (its packet id is assigned here for QoS
    /// 1 and 2) and completes the flow.
    pub fn publish_packet(&mut self, mut publish: Publish) -> Result<ReasonCode, Stop> {
        let qos = publish.qos;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(self.next_pid())
        };
        publish.packet_id = packet_id;
        self.send(Packet::Publish(publish))?;
        let Some(id) = packet_id else {
            return Ok(ReasonCode::Success);
        };
        if qos == QoS::AtLeastOnce {
            match self.wait_for(
                |p| matches!(p, Packet::PubAck(a) if a.packet_id == id),
                "PUBACK",
            )? {
                Packet::PubAck(a) => Ok(a.reason_code),
                _ => unreachable!("wait_for returns what it was asked for"),
            }
        } else {
            let code = match self.wait_for(
                |p| matches!(p, Packet::PubRec(a) if a.packet_id == id),
                "PUBREC",
            )? {
                Packet::PubRec(a) => a.reason_code,
                _ => unreachable!("wait_for returns what it was asked for"),
            };
            if code.is_error() {
                return Ok(code);
            }
            self.send(Packet::PubRel(PubRel::new(id)))?;
            self.wait_for(
                |p| matches!(p, Packet::PubComp(a) if a.packet_id == id),
                "PUBCOMP",
            )?;
            Ok(code)
        }
    }

    /// Acknowledges a received PUBLISH as its receiver (PUBACK, or
    /// PUBREC/wait PUBREL/PUBCOMP).
    pub fn ack(&mut self, publish: &Publish) -> TestResult {
        let Some(id) = publish.packet_id else {
            return Ok(());
        };
        match publish.qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubAck::new(id))),
            QoS::ExactlyOnce => {
                self.send(Packet::PubRec(tern_codec::PubRec::new(id)))?;
                self.wait_for(
                    |p| matches!(p, Packet::PubRel(r) if r.packet_id == id),
                    "PUBREL",
                )?;
                self.send(Packet::PubComp(PubComp::new(id)))
            }
        }
    }

    /// Receives the next PUBLISH and acknowledges it.
    pub fn recv_publish_acked(&mut self) -> Result<Publish, Stop> {
        let p = self.recv_publish()?;
        self.ack(&p)?;
        Ok(p)
    }

    /// Sends DISCONNECT (normal) and waits briefly for the close.
    pub fn disconnect(&mut self) -> TestResult {
        self.send(Packet::from(Disconnect::default()))?;
        let _ = self.expect_closed_within(Duration::from_secs(1));
        Ok(())
    }

    /// The socket itself, for tests that speak something other than MQTT.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Closes the socket without DISCONNECT (an abnormal end: wills fire).
    pub fn drop_abruptly(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A raw packet: fixed header byte, Remaining Length, body.
pub fn raw(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// An MQTT UTF-8 string field from raw bytes (length prefix plus bytes).
pub fn raw_str(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Encodes a packet for `version` (tests then alter the bytes).
pub fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet
        .encode(version, &mut out)
        .expect("test packets encode");
    out.to_vec()
}
