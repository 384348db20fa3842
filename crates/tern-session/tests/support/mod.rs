//! An in-memory client/server pair on a virtual clock.
//!
//! Packets go through real encoding into a byte pipe per direction and are
//! decoded by `handle_bytes`, so framing, split reads and coalesced reads are
//! exercised. Faults are plain knobs: deliver only part of the bytes, advance
//! time, reset the link (undelivered bytes are lost, as with TCP), reconnect
//! with or without the session.

#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use core::time::Duration;
use std::collections::BTreeMap;
use tern_codec::{MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS};
use tern_session::*;

/// One application message's identity: `(publisher, sequence number)`.
pub type MsgId = (char, u32);

/// Builds a payload that identifies a message.
pub fn payload(id: MsgId) -> bytes::Bytes {
    format!("{}:{}", id.0, id.1).into()
}

/// Reads the identity back.
pub fn parse_payload(p: &[u8]) -> MsgId {
    let s = std::str::from_utf8(p).unwrap();
    let (who, n) = s.split_once(':').unwrap();
    (who.chars().next().unwrap(), n.parse().unwrap())
}

/// What the two applications saw.
#[derive(Debug, Default)]
pub struct Record {
    /// Messages the server application received, in order: (topic, id, qos).
    pub server_got: Vec<(String, MsgId, QoS)>,
    /// Messages the client application received, in order.
    pub client_got: Vec<(String, MsgId, QoS)>,
    /// Client publishes: packet id → message, while open.
    pub client_open: BTreeMap<PacketId, MsgId>,
    /// Client messages confirmed (Published with a success code).
    pub client_confirmed: Vec<(MsgId, QoS)>,
    /// Client messages whose flow ended in failure.
    pub client_failed: Vec<(MsgId, tern_codec::ReasonCode)>,
    /// Client messages dropped from the queue unsent.
    pub client_dropped: Vec<MsgId>,
    /// Every client publish, in call order: (topic, id, qos).
    pub client_published: Vec<(String, MsgId, QoS)>,
    /// Every server publish, in call order.
    pub server_published: Vec<(String, MsgId, QoS)>,
    /// Server-side deliveries confirmed by the client.
    pub server_delivered: usize,
    /// Close reasons seen by the client.
    pub client_closes: Vec<CloseReason>,
    /// Close reasons seen by the server.
    pub server_closes: Vec<CloseReason>,
    /// Times the server session was lost (clean start).
    pub session_losses: u32,
    /// Every packet the client sent, with the time.
    pub wire_c2s: Vec<(Instant, Packet)>,
    /// Every packet the server sent, with the time.
    pub wire_s2c: Vec<(Instant, Packet)>,
}

/// The pair.
pub struct Pair {
    pub now: Instant,
    pub version: ProtocolVersion,
    pub options: ConnectOptions,
    pub config: ServerConfig,
    pub client: Option<ClientConnection>,
    pub client_session: Option<ClientSession>,
    pub server: Option<ServerConnection>,
    /// The server's session while the client is away.
    pub server_session: Option<ServerSession>,
    pub c2s: BytesMut,
    pub s2c: BytesMut,
    /// Bytes delivered to each side and not yet consumed (a partial packet).
    client_read: BytesMut,
    server_read: BytesMut,
    pub rec: Record,
    next_seq: u32,
}

impl Pair {
    pub fn new(version: ProtocolVersion) -> Self {
        let options = ConnectOptions {
            version,
            clean_start: false,
            keep_alive: 60,
            properties: tern_codec::ConnectProperties {
                session_expiry_interval: version.is_v5().then_some(3600),
                receive_maximum: core::num::NonZeroU16::new(10),
                ..Default::default()
            },
            ..ConnectOptions::new(MqttString::from_static("pair-client"))
        };
        let config = ServerConfig {
            receive_maximum: core::num::NonZeroU16::new(8).unwrap(),
            ..ServerConfig::default()
        };
        Self {
            now: Instant::from_secs(1),
            version,
            options,
            config,
            client: None,
            client_session: Some(ClientSession::new()),
            server: None,
            server_session: None,
            c2s: BytesMut::new(),
            s2c: BytesMut::new(),
            client_read: BytesMut::new(),
            server_read: BytesMut::new(),
            rec: Record::default(),
            next_seq: 0,
        }
    }

    /// Opens a new network connection: the client resumes its session.
    pub fn connect(&mut self, clean_start: bool) {
        assert!(self.client.is_none() && self.server.is_none());
        let options = ConnectOptions {
            clean_start,
            ..self.options.clone()
        };
        let session = self.client_session.take().unwrap_or_default();
        self.client = Some(ClientConnection::new(self.now, options, session));
        self.server = Some(ServerConnection::new(self.now, self.config));
        self.c2s.clear();
        self.s2c.clear();
    }

    /// Moves packets both ways until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let moved = self.flush_client() | self.flush_server();
            let delivered = self.deliver_c2s(usize::MAX) | self.deliver_s2c(usize::MAX);
            self.drain_events();
            if !moved && !delivered {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    /// Encodes everything the client wants to send into the pipe.
    pub fn flush_client(&mut self) -> bool {
        let Some(c) = self.client.as_mut() else {
            return false;
        };
        let mut moved = false;
        while let Some(p) = c.poll_transmit(self.now) {
            p.encode(version_of(&p, self.version), &mut self.c2s)
                .unwrap();
            self.rec.wire_c2s.push((self.now, p));
            moved = true;
        }
        moved
    }

    /// Encodes everything the server wants to send into the pipe.
    pub fn flush_server(&mut self) -> bool {
        let Some(s) = self.server.as_mut() else {
            return false;
        };
        let mut moved = false;
        while let Some(p) = s.poll_transmit(self.now) {
            p.encode(s.version(), &mut self.s2c).unwrap();
            self.rec.wire_s2c.push((self.now, p));
            moved = true;
        }
        moved
    }

    /// Hands up to `n` bytes of the client's output to the server.
    pub fn deliver_c2s(&mut self, n: usize) -> bool {
        let Some(s) = self.server.as_mut() else {
            return false;
        };
        if self.c2s.is_empty() || s.is_closed() {
            return false;
        }
        let chunk = self.c2s.split_to(n.min(self.c2s.len()));
        self.server_read.extend_from_slice(&chunk);
        s.handle_bytes(self.now, &mut self.server_read);
        self.drain_events();
        true
    }

    /// Hands up to `n` bytes of the server's output to the client.
    pub fn deliver_s2c(&mut self, n: usize) -> bool {
        let Some(c) = self.client.as_mut() else {
            return false;
        };
        if self.s2c.is_empty() {
            return false;
        }
        let chunk = self.s2c.split_to(n.min(self.s2c.len()));
        self.client_read.extend_from_slice(&chunk);
        c.handle_bytes(self.now, &mut self.client_read);
        self.drain_events();
        true
    }

    /// Handles every event on both sides the way a small broker would.
    pub fn drain_events(&mut self) {
        loop {
            let mut any = false;
            while let Some(e) = self.server.as_mut().and_then(|s| s.poll_event()) {
                any = true;
                self.on_server_event(e);
            }
            while let Some(e) = self.client.as_mut().and_then(|c| c.poll_event()) {
                any = true;
                self.on_client_event(e);
            }
            if !any {
                return;
            }
        }
    }

    fn on_server_event(&mut self, e: ServerEvent) {
        let now = self.now;
        let s = self.server.as_mut().unwrap();
        match e {
            ServerEvent::ConnectRequest(connect) => {
                let existing = self.server_session.take();
                let (session, present) = match existing {
                    Some(sess) if !connect.clean_start => (sess, true),
                    other => {
                        if other.is_some() {
                            self.rec.session_losses += 1;
                        }
                        (
                            ServerSession::new(connect.client_id.clone(), Default::default()),
                            false,
                        )
                    }
                };
                s.accept(
                    now,
                    Accept {
                        session,
                        session_present: present,
                        assigned_client_id: None,
                        properties: Default::default(),
                    },
                )
                .unwrap();
                // Packets pipelined behind CONNECT wait in the read buffer.
                s.handle_bytes(now, &mut self.server_read);
            }
            ServerEvent::Message { publish, ack } => {
                assert!(ack.is_none());
                self.rec.server_got.push((
                    publish.topic.to_string(),
                    parse_payload(&publish.payload),
                    publish.qos,
                ));
            }
            ServerEvent::Delivered { .. } => self.rec.server_delivered += 1,
            ServerEvent::SubscribeRequest(sub) => {
                let codes = sub
                    .filters
                    .iter()
                    .map(|f| tern_codec::ReasonCode::granted(f.options.qos))
                    .collect();
                s.suback(now, sub.packet_id, codes, Default::default())
                    .unwrap();
            }
            ServerEvent::UnsubscribeRequest(unsub) => {
                let codes = vec![tern_codec::ReasonCode::Success; unsub.filters.len()];
                s.unsuback(now, unsub.packet_id, codes, Default::default())
                    .unwrap();
            }
            ServerEvent::Auth(_)
            | ServerEvent::PubRelReceived { .. }
            | ServerEvent::Released { .. } => {}
            ServerEvent::Closed { reason, .. } => {
                self.rec.server_closes.push(reason);
            }
            other => panic!("unexpected server event {other:?}"),
        }
    }

    fn on_client_event(&mut self, e: ClientEvent) {
        match e {
            ClientEvent::Message { publish, .. } => {
                self.rec.client_got.push((
                    publish.topic.to_string(),
                    parse_payload(&publish.payload),
                    publish.qos,
                ));
            }
            ClientEvent::Published {
                packet_id,
                qos,
                reason_code,
            } => {
                let msg = self
                    .rec
                    .client_open
                    .remove(&packet_id)
                    .unwrap_or_else(|| panic!("Published for unknown id {packet_id}"));
                if reason_code.is_success() {
                    self.rec.client_confirmed.push((msg, qos));
                } else {
                    self.rec.client_failed.push((msg, reason_code));
                }
            }
            ClientEvent::PublishDropped {
                packet_id: Some(packet_id),
            } => {
                let msg = self
                    .rec
                    .client_open
                    .remove(&packet_id)
                    .unwrap_or_else(|| panic!("PublishDropped for unknown id {packet_id}"));
                self.rec.client_dropped.push(msg);
            }
            ClientEvent::Closed(reason) => self.rec.client_closes.push(reason),
            ClientEvent::Connected { .. }
            | ClientEvent::Subscribed { .. }
            | ClientEvent::Unsubscribed { .. } => {}
            other => panic!("unexpected client event {other:?}"),
        }
    }

    /// The client publishes message number `n` of its own on `topic`.
    pub fn client_publish(
        &mut self,
        topic: &str,
        qos: QoS,
    ) -> Result<Option<PacketId>, PublishError> {
        let id = ('c', self.next_seq);
        let publish = Publish {
            topic: MqttString::try_from(topic).unwrap(),
            qos,
            payload: payload(id),
            ..Publish::default()
        };
        let c = self.client.as_mut().expect("client connection");
        let result = c.publish(self.now, publish);
        if let Ok(pid) = &result {
            self.next_seq += 1;
            self.rec.client_published.push((topic.to_string(), id, qos));
            if let Some(pid) = pid {
                let open = self.rec.client_open.insert(*pid, id);
                assert!(open.is_none(), "packet id {pid} reused while in flight");
            }
        }
        result
    }

    /// The server side sends a message to the client (online or not).
    pub fn server_publish(&mut self, topic: &str, qos: QoS) {
        let id = ('s', self.next_seq);
        self.next_seq += 1;
        let publish = Publish {
            topic: MqttString::try_from(topic).unwrap(),
            qos,
            payload: payload(id),
            ..Publish::default()
        };
        self.rec.server_published.push((topic.to_string(), id, qos));
        let now = self.now;
        match self.server.as_mut() {
            Some(s) if s.session().is_some() && !s.is_closed() => {
                assert_eq!(s.send(now, publish).unwrap(), Enqueued::Queued);
            }
            _ => {
                let session = self.server_session.get_or_insert_with(|| {
                    ServerSession::new(MqttString::from_static("pair-client"), Default::default())
                });
                assert_eq!(session.enqueue(now, publish), Enqueued::Queued);
            }
        }
    }

    /// Resets the link: undelivered bytes are lost; both sides see the close.
    pub fn reset(&mut self) {
        self.c2s.clear();
        self.s2c.clear();
        self.client_read.clear();
        self.server_read.clear();
        if let Some(mut c) = self.client.take() {
            c.handle_closed(self.now);
            while let Some(e) = c.poll_event() {
                self.on_client_event(e);
            }
            self.client_session = Some(c.into_session());
        }
        if let Some(mut s) = self.server.take() {
            s.handle_closed(self.now);
            let mut keep = true;
            while let Some(e) = s.poll_event() {
                if let ServerEvent::Closed {
                    reason,
                    session_expiry_interval,
                    ..
                } = e
                {
                    self.rec.server_closes.push(reason);
                    // A broker ends a session whose expiry is zero.
                    keep = session_expiry_interval > 0;
                }
            }
            if let Some(session) = s.take_session() {
                if keep {
                    self.server_session = Some(session);
                } else {
                    self.rec.session_losses += 1;
                }
            }
        }
    }

    /// Moves the clock forward, firing both sides' timers in order.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = [
                self.client.as_ref().and_then(|c| c.poll_timeout()),
                self.server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .filter(|&t| t <= end)
            .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            if let Some(c) = self.client.as_mut() {
                c.handle_timeout(self.now);
            }
            if let Some(s) = self.server.as_mut() {
                s.handle_timeout(self.now);
            }
            self.settle();
        }
        self.now = end;
    }
}

/// A CONNECT is encoded in its own version; everything else in the connection's.
fn version_of(p: &Packet, v: ProtocolVersion) -> ProtocolVersion {
    match p {
        Packet::Connect(c) => c.protocol,
        _ => v,
    }
}
