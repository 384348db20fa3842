//! What every broker integration test shares: an in-process server on
//! 127.0.0.1 port 0, a raw-socket client that speaks through tern-codec (for
//! the cases a real client cannot produce, and for exact reason codes), and
//! helpers around rumqttc, the real client.
//!
//! Nothing here sleeps to synchronise: every wait is for a packet or an
//! event, bounded by a timeout that fails the test. To show that something
//! did *not* arrive, a test sends a marker after it on the same path and
//! checks that the marker comes first (MQTT keeps order per connection).

#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

use bytes::{Bytes, BytesMut};
use std::{net::SocketAddr, num::NonZeroU16, time::Duration};
use tern_broker::server::{self, BrokerSettings, Running};
use tern_codec::{
    ConnAck, Connect, MAX_PACKET_SIZE, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
    task::JoinHandle,
};

/// How long any single expected packet or event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Settings for tests: ephemeral ports, $SYS off, a short connect timeout.
pub fn settings() -> BrokerSettings {
    let mut s = BrokerSettings::default();
    s.listeners.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    s.listeners.ws = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    s.limits.sys_interval = Duration::ZERO;
    s.limits.connect_timeout = Duration::from_secs(3);
    s
}

/// A broker running in this test's runtime.
pub struct TestBroker {
    pub running: Running,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
}

impl TestBroker {
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

pub async fn start() -> TestBroker {
    start_with(|_| {}).await
}

pub async fn start_with(f: impl FnOnce(&mut BrokerSettings)) -> TestBroker {
    let mut s = settings();
    f(&mut s);
    let running = server::start(s).await.expect("broker starts");
    let tcp = running.tcp_addr().expect("a TCP listener");
    let ws = running.ws_addr().unwrap_or(tcp);
    TestBroker { running, tcp, ws }
}

pub fn s(text: &str) -> MqttString {
    MqttString::try_from(text.to_string()).expect("a valid MQTT string")
}

pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero")
}

/// A CONNECT for `version` with a clean start, keep alive 60.
pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: s(client_id),
        ..Connect::default()
    }
}

pub fn publish(topic: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    Publish {
        qos,
        topic: s(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    }
}

/// A client on a raw socket: packets in and out through tern-codec.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    /// The version packets are encoded and decoded with (set by CONNECT).
    pub version: ProtocolVersion,
}

impl Raw {
    /// Opens a socket; nothing is sent.
    pub async fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the broker");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    /// Opens a socket, sends `connect` and returns the CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr).await;
        raw.send(connect).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => (raw, *ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with [`connect`] defaults and insists on success.
    pub async fn connected(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Raw {
        let (raw, ack) = Raw::connect(addr, connect(version, client_id)).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "{ack:?}");
        raw
    }

    pub async fn send(&mut self, packet: impl Into<Packet>) {
        let packet = packet.into();
        if let Packet::Connect(c) = &packet {
            self.version = c.protocol;
        }
        let mut out = BytesMut::new();
        packet
            .encode(self.version, &mut out)
            .expect("a valid packet");
        self.send_bytes(&out).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the broker");
    }

    /// The next packet, or `None` if the broker closed the connection.
    pub async fn next(&mut self, within: Duration) -> Option<Packet> {
        let read = async {
            loop {
                match Packet::decode(&mut self.buf, self.version, MAX_PACKET_SIZE) {
                    Ok(Some(p)) => return Some(p),
                    Ok(None) => {}
                    Err(e) => panic!("the broker sent a malformed packet: {e}"),
                }
                self.buf.reserve(4096);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("nothing from the broker within {within:?}"))
    }

    /// The next packet; fails if the connection closes or nothing comes in [`WAIT`].
    pub async fn recv(&mut self) -> Packet {
        self.next(WAIT)
            .await
            .expect("the broker closed the connection")
    }

    /// The next PUBLISH, acknowledging it as the QoS requires (QoS 2: PUBREC,
    /// then PUBREL is awaited and PUBCOMP sent).
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => {
                self.ack(&p).await;
                p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Completes the receiver's side of a PUBLISH's QoS flow.
    pub async fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(tern_codec::PubAck::new(id)).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(tern_codec::PubRec::new(id)).await;
                match self.recv().await {
                    Packet::PubRel(r) if r.packet_id == id => {}
                    other => panic!("expected PUBREL {id}, got {other:?}"),
                }
                self.send(tern_codec::PubComp::new(id)).await;
            }
            _ => {}
        }
    }

    /// Reads until the broker closes the connection; returns what came before.
    pub async fn closed(&mut self, within: Duration) -> Vec<Packet> {
        let mut packets = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(p) => packets.push(p),
                None => return packets,
            }
        }
    }

    /// Reads until the broker closes; the last packet must be a DISCONNECT
    /// with `code` (MQTT 5).
    pub async fn disconnected_with(&mut self, code: ReasonCode) {
        let packets = self.closed(WAIT).await;
        match packets.last() {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code, "{packets:?}"),
            _ => panic!("expected DISCONNECT {code:?} before the close, got {packets:?}"),
        }
    }

    /// Subscribes to `filters` with `options`; returns the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        id: u16,
        filters: &[(&str, SubscriptionOptions)],
        subscription_id: Option<u32>,
    ) -> SubAck {
        let mut subscribe = Subscribe {
            packet_id: pid(id),
            filters: filters
                .iter()
                .map(|(f, o)| SubscribeFilter {
                    filter: s(f),
                    options: *o,
                })
                .collect(),
            properties: Default::default(),
        };
        subscribe.properties.subscription_identifier =
            subscription_id.map(|i| tern_codec::SubscriptionId::new(i).expect("in range"));
        self.send(subscribe).await;
        // Retained messages come after the SUBACK; anything before it is a failure.
        match self.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, pid(id));
                ack
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at `qos`, insisting it is granted.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let ack = self
            .subscribe_with(1, &[(filter, SubscriptionOptions::with_qos(qos))], None)
            .await;
        assert_eq!(ack.reason_codes, vec![ReasonCode::granted(qos)], "{ack:?}");
    }

    /// Publishes and completes the sender's QoS flow; returns the ack's reason code.
    pub async fn publish(&mut self, p: Publish) -> ReasonCode {
        let (qos, id) = (p.qos, p.packet_id);
        self.send(p).await;
        match (qos, id) {
            (QoS::AtLeastOnce, Some(id)) => match self.recv().await {
                Packet::PubAck(a) if a.packet_id == id => a.reason_code,
                other => panic!("expected PUBACK {id}, got {other:?}"),
            },
            (QoS::ExactlyOnce, Some(id)) => {
                let code = match self.recv().await {
                    Packet::PubRec(a) if a.packet_id == id => a.reason_code,
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                };
                self.send(tern_codec::PubRel::new(id)).await;
                match self.recv().await {
                    Packet::PubComp(a) if a.packet_id == id => {}
                    other => panic!("expected PUBCOMP {id}, got {other:?}"),
                }
                code
            }
            _ => ReasonCode::Success,
        }
    }

    /// A PINGREQ and its PINGRESP: everything the broker sent before it has arrived.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        match self.recv().await {
            Packet::PingResp => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }
}

// ---- rumqttc, the real client ----

/// An MQTT 3.1.1 rumqttc client whose event loop runs in a task.
pub struct V4 {
    pub client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    task: JoinHandle<()>,
}

impl V4 {
    /// Connects and waits for the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        configure: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> (V4, rumqttc::ConnAck) {
        let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        configure(&mut options);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| e.to_string());
                let stop = event.is_err();
                if tx.send(event).is_err() || stop {
                    return;
                }
            }
        });
        let mut c = V4 {
            client,
            events,
            task,
        };
        let ack = c
            .wait(|e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => Some(a.clone()),
                _ => None,
            })
            .await;
        (c, ack)
    }

    /// Waits for the first event `pick` accepts.
    pub async fn wait<T>(&mut self, mut pick: impl FnMut(&rumqttc::Event) -> Option<T>) -> T {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(e)) => {
                        if let Some(t) = pick(&e) {
                            return t;
                        }
                    }
                    Some(Err(e)) => panic!("rumqttc (3.1.1) connection error: {e}"),
                    None => panic!("rumqttc (3.1.1) event loop ended"),
                }
            }
        });
        found.await.expect("the awaited rumqttc event did not come")
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        self.wait(|e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes and waits for the SUBACK's return codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        self.wait(|e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Waits until the connection fails or closes.
    pub async fn connection_lost(&mut self) -> String {
        let lost = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e,
                    None => return "event loop ended".to_string(),
                }
            }
        });
        lost.await.expect("the connection was not closed")
    }
}

impl Drop for V4 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An MQTT 5 rumqttc client whose event loop runs in a task.
pub struct V5 {
    pub client: rumqttc::v5::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, String>>,
    task: JoinHandle<()>,
}

impl V5 {
    /// Connects and waits for the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        configure: impl FnOnce(&mut rumqttc::v5::MqttOptions),
    ) -> (V5, rumqttc::v5::mqttbytes::v5::ConnAck) {
        let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        configure(&mut options);
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| format!("{e:?}"));
                let stop = event.is_err();
                if tx.send(event).is_err() || stop {
                    return;
                }
            }
        });
        let mut c = V5 {
            client,
            events,
            task,
        };
        let ack = c
            .wait(|e| match e {
                rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(a)) => {
                    Some(a.clone())
                }
                _ => None,
            })
            .await;
        (c, ack)
    }

    /// Waits for the first event `pick` accepts.
    pub async fn wait<T>(&mut self, mut pick: impl FnMut(&rumqttc::v5::Event) -> Option<T>) -> T {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(e)) => {
                        if let Some(t) = pick(&e) {
                            return t;
                        }
                    }
                    Some(Err(e)) => panic!("rumqttc (5) connection error: {e}"),
                    None => panic!("rumqttc (5) event loop ended"),
                }
            }
        });
        found.await.expect("the awaited rumqttc event did not come")
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        self.wait(|e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(p)) => {
                Some(p.clone())
            }
            _ => None,
        })
        .await
    }

    /// Subscribes and waits for the SUBACK's reason codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
    ) -> Vec<rumqttc::v5::mqttbytes::v5::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        self.wait(|e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::SubAck(a)) => {
                Some(a.return_codes.clone())
            }
            _ => None,
        })
        .await
    }
}

impl V5 {
    /// Waits until the connection ends: the server's DISCONNECT reason code,
    /// or `None` if the socket closed without rumqttc reporting one.
    pub async fn connection_end(
        &mut self,
    ) -> Option<rumqttc::v5::mqttbytes::v5::DisconnectReasonCode> {
        let end = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(rumqttc::v5::Event::Incoming(
                        rumqttc::v5::mqttbytes::v5::Packet::Disconnect(d),
                    ))) => return Some(d.reason_code),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        });
        end.await.expect("the connection did not end")
    }
}

impl Drop for V5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
