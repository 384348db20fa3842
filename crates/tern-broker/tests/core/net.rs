//! A sans-IO test network: one broker core and several tern-session
//! clients, moving real encoded bytes on a virtual clock.

#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use core::time::Duration;
use tern_broker::{Broker, BrokerConfig, BrokerEvent, ConnId};
use tern_codec::{
    MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscribeFilter,
    SubscribeProperties, SubscriptionOptions,
};
use tern_session::{ClientConnection, ClientEvent, ClientSession, ConnectOptions, Instant};

/// One client and its link to the broker.
pub struct Client {
    pub conn: Option<ConnId>,
    pub session: Option<ClientConnection>,
    /// Bytes from the broker not yet consumed.
    pub inbox: BytesMut,
    /// Bytes to the broker not yet consumed by it.
    pub outbox: BytesMut,
    pub events: Vec<ClientEvent>,
    pub options: ConnectOptions,
    pub saved: Option<ClientSession>,
}

pub struct Net {
    pub now: Instant,
    pub broker: Broker,
    pub clients: Vec<Client>,
    pub closed_by_broker: Vec<ConnId>,
    /// Packets the broker sent, per connection.
    pub sent: Vec<(ConnId, Packet)>,
    /// Connections whose bytes are not reported written (a client that
    /// does not read), with the bytes held back.
    pub stalled: std::collections::BTreeMap<ConnId, usize>,
}

impl Net {
    pub fn new(config: BrokerConfig) -> Self {
        let now = Instant::from_secs(1);
        Self {
            now,
            broker: Broker::new(config, now),
            clients: Vec::new(),
            closed_by_broker: Vec::new(),
            sent: Vec::new(),
            stalled: Default::default(),
        }
    }

    /// From now on `conn`'s output is not written (its client stops reading).
    pub fn stall(&mut self, conn: ConnId) {
        self.stalled.entry(conn).or_default();
    }

    /// `conn`'s client reads again: everything held back is written.
    pub fn unstall(&mut self, conn: ConnId) {
        if let Some(n) = self.stalled.remove(&conn) {
            self.broker.handle_written(conn, n);
        }
    }

    pub fn default() -> Self {
        Self::new(BrokerConfig {
            sys_interval: None,
            ..BrokerConfig::default()
        })
    }

    /// Adds a client (not yet connected); returns its index.
    pub fn client(&mut self, id: &str, version: ProtocolVersion) -> usize {
        let options = ConnectOptions {
            version,
            keep_alive: 0,
            ..ConnectOptions::new(MqttString::try_from(id).unwrap())
        };
        self.client_with(options)
    }

    pub fn client_with(&mut self, options: ConnectOptions) -> usize {
        self.clients.push(Client {
            conn: None,
            session: None,
            inbox: BytesMut::new(),
            outbox: BytesMut::new(),
            events: Vec::new(),
            options,
            saved: Some(ClientSession::new()),
        });
        self.clients.len() - 1
    }

    /// Opens a connection for client `i` and runs the handshake.
    pub fn connect(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let session = c.saved.take().unwrap_or_default();
        c.session = Some(ClientConnection::new(self.now, c.options.clone(), session));
        c.conn = Some(self.broker.accept(self.now));
        c.inbox.clear();
        c.outbox.clear();
        self.run();
    }

    /// Drops client `i`'s network connection (both sides see it).
    pub fn drop_link(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.clients[i];
        if let Some(conn) = c.conn.take() {
            self.broker.handle_closed(now, conn);
        }
        if let Some(mut s) = c.session.take() {
            s.handle_closed(now);
            while let Some(e) = s.poll_event() {
                c.events.push(e);
            }
            c.saved = Some(s.into_session());
        }
        self.run();
    }

    /// Moves bytes and events until nothing moves.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            // Clients → broker.
            for i in 0..self.clients.len() {
                let now = self.now;
                let c = &mut self.clients[i];
                if let Some(s) = c.session.as_mut() {
                    while let Some(p) = s.poll_transmit(now) {
                        let v = match &p {
                            Packet::Connect(c) => c.protocol,
                            _ => s.version(),
                        };
                        p.encode(v, &mut c.outbox).unwrap();
                        moved = true;
                    }
                    while let Some(e) = s.poll_event() {
                        c.events.push(e);
                        moved = true;
                    }
                }
                if let Some(conn) = c.conn {
                    if !c.outbox.is_empty() {
                        let before = c.outbox.len();
                        self.broker.handle_bytes(now, conn, &mut c.outbox);
                        moved |= c.outbox.len() != before;
                    }
                }
            }
            // Broker → clients.
            while let Some(t) = self.broker.poll_transmit(self.now) {
                moved = true;
                self.sent.push((t.conn, t.packet.clone()));
                let len = t.packet.encoded_len(t.version);
                match self.stalled.get_mut(&t.conn) {
                    Some(held) => *held += len,
                    None => self.broker.handle_written(t.conn, len),
                }
                if let Some(c) = self.clients.iter_mut().find(|c| c.conn == Some(t.conn)) {
                    t.packet.encode(t.version, &mut c.inbox).unwrap();
                }
            }
            while let Some(e) = self.broker.poll_event() {
                moved = true;
                if let BrokerEvent::Close(conn) = e {
                    self.closed_by_broker.push(conn);
                    self.broker.handle_closed(self.now, conn);
                    if let Some(c) = self.clients.iter_mut().find(|c| c.conn == Some(conn)) {
                        c.conn = None;
                    }
                }
            }
            for c in &mut self.clients {
                if let Some(s) = c.session.as_mut() {
                    if !c.inbox.is_empty() {
                        s.handle_bytes(self.now, &mut c.inbox);
                        moved = true;
                    }
                    // A connection the broker closed: the client sees the close.
                    if c.conn.is_none() && c.inbox.is_empty() {
                        s.handle_closed(self.now);
                        while let Some(e) = s.poll_event() {
                            c.events.push(e);
                        }
                        let s = c.session.take().unwrap();
                        c.saved = Some(s.into_session());
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    /// Advances the virtual clock, firing every timer on the way.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let mut next = self.broker.poll_timeout();
            for c in &self.clients {
                if let Some(t) = c.session.as_ref().and_then(|s| s.poll_timeout()) {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            }
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.broker.handle_timeout(self.now);
                    for c in &mut self.clients {
                        if let Some(s) = c.session.as_mut() {
                            s.handle_timeout(self.now);
                        }
                    }
                    self.run();
                }
                _ => break,
            }
        }
        self.now = end;
        self.run();
    }

    pub fn session(&mut self, i: usize) -> &mut ClientConnection {
        self.clients[i].session.as_mut().expect("connected client")
    }

    pub fn subscribe(&mut self, i: usize, filter: &str, qos: QoS) {
        self.subscribe_with(i, filter, SubscriptionOptions::with_qos(qos), None);
    }

    pub fn subscribe_with(
        &mut self,
        i: usize,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> Vec<ReasonCode> {
        let now = self.now;
        let pid = self
            .session(i)
            .subscribe(
                now,
                vec![SubscribeFilter {
                    filter: MqttString::try_from(filter).unwrap(),
                    options,
                }],
                SubscribeProperties {
                    subscription_identifier: id.and_then(tern_codec::SubscriptionId::new),
                    ..Default::default()
                },
            )
            .unwrap();
        self.run();
        self.clients[i]
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                ClientEvent::Subscribed {
                    packet_id,
                    reason_codes,
                    ..
                } if *packet_id == pid => Some(reason_codes.clone()),
                _ => None,
            })
            .expect("a SUBACK")
    }

    pub fn publish(&mut self, i: usize, topic: &str, payload: &str, qos: QoS, retain: bool) {
        self.publish_msg(
            i,
            Publish {
                topic: MqttString::try_from(topic).unwrap(),
                payload: payload.to_string().into(),
                qos,
                retain,
                ..Publish::default()
            },
        );
    }

    pub fn publish_msg(&mut self, i: usize, publish: Publish) {
        let now = self.now;
        self.session(i).publish(now, publish).unwrap();
        self.run();
    }

    /// Messages client `i` received: (topic, payload, qos, retain).
    pub fn received(&self, i: usize) -> Vec<(String, String, QoS, bool)> {
        self.messages(i)
            .into_iter()
            .map(|p| {
                (
                    p.topic.to_string(),
                    String::from_utf8(p.payload.to_vec()).unwrap(),
                    p.qos,
                    p.retain,
                )
            })
            .collect()
    }

    /// The PUBLISH packets client `i` received.
    pub fn messages(&self, i: usize) -> Vec<Publish> {
        self.clients[i]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { publish, .. } => Some(publish.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn clear_events(&mut self, i: usize) {
        self.clients[i].events.clear();
    }

    pub fn is_connected(&self, i: usize) -> bool {
        self.clients[i]
            .session
            .as_ref()
            .is_some_and(|s| s.state() == tern_session::ConnectionState::Connected)
    }
}
