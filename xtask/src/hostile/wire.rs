//! Raw MQTT over a tokio TCP socket, encoded and decoded with tern-codec: a
//! client that does exactly what it is told, including what no client
//! library would do (never reading, never acknowledging, stopping halfway
//! through a packet).

use bytes::BytesMut;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tern_codec::{
    Connect, ConnectProperties, MAX_PACKET_SIZE, MqttString, Packet, PacketId, ProtocolVersion,
    Publish, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// Bytes written by every attacking connection of a case, shared between
/// its tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Arc<AtomicU64>);

impl Counter {
    pub(crate) fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the broker answered the attacker, counted by kind ("CONNACK 0x00",
/// "closed by broker", ...), shared between a case's tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    pub(crate) fn note(&self, what: impl Into<String>) {
        self.add(what, 1);
    }

    pub(crate) fn add(&self, what: impl Into<String>, n: u64) {
        *self
            .0
            .lock()
            .expect("tally lock")
            .entry(what.into())
            .or_default() += n;
    }

    /// How many times `what` was noted.
    pub(crate) fn count(&self, what: &str) -> u64 {
        self.0
            .lock()
            .expect("tally lock")
            .get(what)
            .copied()
            .unwrap_or(0)
    }

    /// Notes what a packet from the broker says about the attack.
    pub(crate) fn packet(&self, packet: &Packet) {
        match packet {
            Packet::ConnAck(c) => self.note(format!("CONNACK {}", code(c.reason_code))),
            Packet::SubAck(s) => {
                for rc in &s.reason_codes {
                    self.note(format!("SUBACK {}", code(*rc)));
                }
            }
            Packet::PubAck(a) => self.note(format!("PUBACK {}", code(a.reason_code))),
            Packet::PubRec(a) => self.note(format!("PUBREC {}", code(a.reason_code))),
            Packet::Disconnect(d) => self.note(format!("DISCONNECT {}", code(d.reason_code))),
            Packet::PingResp => {}
            other => self.note(format!("{:?}", other.packet_type())),
        }
    }

    /// `what ×n, ...` in a stable order; `-` when nothing was noted.
    pub(crate) fn render(&self) -> String {
        let map = self.0.lock().expect("tally lock");
        if map.is_empty() {
            return "-".into();
        }
        map.iter()
            .map(|(what, n)| {
                if *n == 1 {
                    what.clone()
                } else {
                    format!("{what} ×{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A reason code as the table shows it: `0x97`.
pub(crate) fn code(rc: ReasonCode) -> String {
    format!("{:#04x}", rc.as_u8())
}

/// What one read gave.
#[derive(Debug)]
pub(crate) enum Recv {
    Packet(Packet),
    /// The broker closed the connection (or reset it).
    Closed,
    /// Nothing whole arrived in time.
    Timeout,
    /// The broker sent something the codec refuses.
    Malformed(String),
}

/// The receiving half of a raw connection.
#[derive(Debug)]
pub(crate) struct Rx {
    read: OwnedReadHalf,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Rx {
    /// The next packet, waiting at most `within`. Cancel-safe: bytes read
    /// stay in the buffer.
    pub(crate) async fn recv(&mut self, within: Duration) -> Recv {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Packet::decode(&mut self.buf, self.version, MAX_PACKET_SIZE) {
                Ok(Some(packet)) => return Recv::Packet(packet),
                Ok(None) => {}
                Err(e) => return Recv::Malformed(e.to_string()),
            }
            match tokio::time::timeout_at(deadline, self.read.read_buf(&mut self.buf)).await {
                Err(_) => return Recv::Timeout,
                Ok(Ok(0) | Err(_)) => return Recv::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }
}

impl Rx {
    /// Waits for anything from the peer without decoding it: `Closed`,
    /// `Timeout`, or `Malformed` carrying the first line of what came
    /// (for non-MQTT answers such as HTTP).
    pub(crate) async fn read_raw(&mut self, within: Duration) -> Recv {
        match tokio::time::timeout(within, self.read.read_buf(&mut self.buf)).await {
            Err(_) => Recv::Timeout,
            Ok(Ok(0) | Err(_)) => Recv::Closed,
            Ok(Ok(_)) => {
                let text = String::from_utf8_lossy(&self.buf);
                let line = text.lines().next().unwrap_or("").to_string();
                self.buf.clear();
                Recv::Malformed(line)
            }
        }
    }
}

/// Notes how a wait for the broker ended, when it was not a packet.
pub(crate) fn note_end(tally: &Tally, end: &Recv) {
    match end {
        Recv::Packet(p) => tally.packet(p),
        Recv::Closed => tally.note("closed by broker"),
        Recv::Timeout => tally.note("no answer"),
        Recv::Malformed(e) => tally.note(format!("malformed answer ({e})")),
    }
}

/// The sending half of a raw connection; counts every byte it writes.
#[derive(Debug)]
pub(crate) struct Tx {
    write: OwnedWriteHalf,
    version: ProtocolVersion,
    sent: Counter,
}

impl Tx {
    /// Encodes and writes one packet.
    pub(crate) async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut wire = BytesMut::with_capacity(packet.encoded_len(self.version));
        packet
            .encode(self.version, &mut wire)
            .map_err(|e| std::io::Error::other(format!("cannot encode {packet:?}: {e}")))?;
        self.raw(&wire).await
    }

    /// Encodes packets into `buf`, writing it whenever it holds 64 KiB
    /// (and what is left with [`Tx::flush`]): many small packets in few
    /// writes.
    pub(crate) async fn batch(
        &mut self,
        buf: &mut BytesMut,
        packet: &Packet,
    ) -> std::io::Result<()> {
        packet
            .encode(self.version, buf)
            .map_err(|e| std::io::Error::other(format!("cannot encode {packet:?}: {e}")))?;
        if buf.len() >= 64 * 1024 {
            self.flush(buf).await?;
        }
        Ok(())
    }

    /// Writes what [`Tx::batch`] holds.
    pub(crate) async fn flush(&mut self, buf: &mut BytesMut) -> std::io::Result<()> {
        if !buf.is_empty() {
            self.raw(buf).await?;
            buf.clear();
        }
        Ok(())
    }

    /// Writes bytes as they are.
    pub(crate) async fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await?;
        self.sent.add(bytes.len());
        Ok(())
    }
}

/// A raw MQTT connection.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) rx: Rx,
    pub(crate) tx: Tx,
}

/// How long the setup steps of a case (CONNECT, SUBSCRIBE) wait for the
/// broker's answer before the case fails.
pub(crate) const ANSWER: Duration = Duration::from_secs(20);

impl Wire {
    /// A TCP connection, nothing sent yet; bytes it writes count in `sent`.
    pub(crate) async fn open(
        addr: SocketAddr,
        version: ProtocolVersion,
        sent: &Counter,
    ) -> std::io::Result<Wire> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Wire {
            rx: Rx {
                read,
                buf: BytesMut::with_capacity(8192),
                version,
            },
            tx: Tx {
                write,
                version,
                sent: sent.clone(),
            },
        })
    }

    /// Opens a connection and completes CONNECT/CONNACK with `connect`;
    /// an error if the broker refuses or does not answer.
    pub(crate) async fn connect(
        addr: SocketAddr,
        connect: Connect,
        sent: &Counter,
    ) -> Result<Wire, String> {
        let mut wire = Wire::open(addr, connect.protocol, sent)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let id = connect.client_id.as_str().to_string();
        wire.tx
            .send(&Packet::Connect(Box::new(connect)))
            .await
            .map_err(|e| format!("{id}: CONNECT: {e}"))?;
        match wire.rx.recv(ANSWER).await {
            Recv::Packet(Packet::ConnAck(c)) if c.reason_code.is_success() => Ok(wire),
            other => Err(format!("{id}: CONNECT answered with {other:?}")),
        }
    }

    /// Sends a packet.
    pub(crate) async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        self.tx.send(packet).await.map_err(|e| e.to_string())
    }

    /// Sends a QoS 1 PUBLISH and waits for its answer, noting it in `got`:
    /// `Some(true)` acknowledged with success, `Some(false)` refused with a
    /// reason code, `None` closed or no answer (stop publishing).
    pub(crate) async fn publish_acked(&mut self, packet: &Packet, got: &Tally) -> Option<bool> {
        if self.send(packet).await.is_err() {
            got.note("closed by broker");
            return None;
        }
        let answer = self.rx.recv(ANSWER).await;
        note_end(got, &answer);
        match answer {
            Recv::Packet(Packet::PubAck(a)) => Some(a.reason_code.is_success()),
            _ => None,
        }
    }

    /// Sends SUBSCRIBE and waits for its SUBACK (answering nothing else);
    /// the reason codes.
    pub(crate) async fn subscribe(
        &mut self,
        filters: &[(&str, QoS)],
    ) -> Result<Vec<ReasonCode>, String> {
        let subscribe = subscribe(
            1,
            filters
                .iter()
                .map(|(f, q)| (MqttString::try_from(*f).expect("filter"), *q))
                .collect(),
        );
        self.send(&subscribe).await?;
        loop {
            match self.rx.recv(ANSWER).await {
                Recv::Packet(Packet::SubAck(s)) => return Ok(s.reason_codes),
                Recv::Packet(_) => {}
                other => return Err(format!("SUBSCRIBE answered with {other:?}")),
            }
        }
    }

    /// PINGREQ, then waits for PINGRESP: every packet sent before it has
    /// been handled. Other packets arriving meanwhile go to `tally`.
    pub(crate) async fn sync(&mut self, within: Duration, tally: &Tally) -> Result<(), String> {
        self.send(&Packet::PingReq).await?;
        loop {
            match self.rx.recv(within).await {
                Recv::Packet(Packet::PingResp) => return Ok(()),
                Recv::Packet(p) => tally.packet(&p),
                other => return Err(format!("PINGREQ answered with {other:?}")),
            }
        }
    }
}

/// A CONNECT with a clean session, no keep alive.
pub(crate) fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 0,
        properties: ConnectProperties::default(),
        client_id: MqttString::try_from(client_id).expect("client id"),
        will: None,
        username: None,
        password: None,
        bridge: false,
    }
}

/// A PUBLISH.
pub(crate) fn publish(
    topic: MqttString,
    payload: bytes::Bytes,
    qos: QoS,
    packet_id: u16,
    retain: bool,
) -> Publish {
    Publish {
        topic,
        payload,
        qos,
        retain,
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            PacketId::new(packet_id)
        },
        ..Publish::default()
    }
}

/// A SUBSCRIBE of these filters.
pub(crate) fn subscribe(packet_id: u16, filters: Vec<(MqttString, QoS)>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(packet_id).expect("non-zero packet id"),
        properties: Default::default(),
        filters: filters
            .into_iter()
            .map(|(filter, qos)| SubscribeFilter {
                filter,
                options: SubscriptionOptions::with_qos(qos),
            })
            .collect(),
    })
}

/// A topic (or filter) of about 65,535 levels: `{prefix}` and then only
/// `/`, as long as an MQTT string may be.
pub(crate) fn deep_topic(prefix: &str) -> MqttString {
    let mut s = String::with_capacity(usize::from(u16::MAX));
    s.push_str(prefix);
    while s.len() < usize::from(u16::MAX) {
        s.push('/');
    }
    MqttString::try_from(s).expect("deep topic")
}
