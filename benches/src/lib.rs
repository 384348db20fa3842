//! Shared fixtures for the benchmarks and the profiling examples.

/// A tern-session client and server back to back in memory.
pub mod session_pair {
    use bytes::BytesMut;
    use std::hint::black_box;
    use tern_codec::{ConnectProperties, MqttString, Packet, ProtocolVersion};
    use tern_session::{
        Accept, ClientConnection, ClientEvent, ClientSession, ConnectOptions, Instant,
        ServerConfig, ServerConnection, ServerEvent, ServerSession,
    };

    /// The pair: every packet goes through encode and decode.
    pub struct Pair {
        /// The client connection.
        pub client: ClientConnection,
        /// The server connection.
        pub server: ServerConnection,
        c2s: BytesMut,
        s2c: BytesMut,
        version: ProtocolVersion,
    }

    impl Pair {
        /// A connected pair.
        pub fn new(version: ProtocolVersion) -> Self {
            let now = Instant::ZERO;
            let options = ConnectOptions {
                version,
                keep_alive: 0,
                properties: ConnectProperties::default(),
                ..ConnectOptions::new(MqttString::from_static("bench"))
            };
            let config = ServerConfig {
                receive_maximum: core::num::NonZeroU16::new(1024).unwrap(),
                ..ServerConfig::default()
            };
            let mut pair = Self {
                client: ClientConnection::new(now, options, ClientSession::new()),
                server: ServerConnection::new(now, config),
                c2s: BytesMut::with_capacity(64 * 1024),
                s2c: BytesMut::with_capacity(64 * 1024),
                version,
            };
            pair.pump();
            pair
        }

        /// Moves bytes both ways until nothing moves; returns completions seen.
        pub fn pump(&mut self) -> usize {
            let now = Instant::ZERO;
            let mut done = 0;
            loop {
                let mut moved = false;
                while let Some(p) = self.client.poll_transmit(now) {
                    let v = match &p {
                        Packet::Connect(c) => c.protocol,
                        _ => self.version,
                    };
                    p.encode(v, &mut self.c2s).unwrap();
                    moved = true;
                }
                if !self.c2s.is_empty() {
                    self.server.handle_bytes(now, &mut self.c2s);
                }
                while let Some(e) = self.server.poll_event() {
                    match e {
                        ServerEvent::ConnectRequest(c) => {
                            let session =
                                ServerSession::new(c.client_id.clone(), Default::default());
                            self.server
                                .accept(
                                    now,
                                    Accept {
                                        session,
                                        session_present: false,
                                        assigned_client_id: None,
                                        properties: Default::default(),
                                    },
                                )
                                .unwrap();
                        }
                        ServerEvent::Message { publish, .. } => {
                            black_box(publish);
                        }
                        _ => {}
                    }
                    moved = true;
                }
                let v = self.server.version();
                while let Some(p) = self.server.poll_transmit(now) {
                    p.encode(v, &mut self.s2c).unwrap();
                    moved = true;
                }
                if !self.s2c.is_empty() {
                    self.client.handle_bytes(now, &mut self.s2c);
                }
                while let Some(e) = self.client.poll_event() {
                    if matches!(e, ClientEvent::Published { .. }) {
                        done += 1;
                    }
                    moved = true;
                }
                if !moved {
                    return done;
                }
            }
        }
    }
}

/// The broker core in memory: publishers and subscribers connected to one
/// [`Broker`](tern_broker::Broker), fed pre-encoded PUBLISH bytes through
/// `handle_bytes`, with every transmit encoded into a reused buffer as the
/// shell does. Subscribers acknowledge QoS 1 deliveries with PUBACK bytes.
pub mod broker_core {
    use bytes::{Bytes, BytesMut};
    use std::collections::BTreeMap;
    use tern_broker::{Broker, BrokerConfig, ConnId};
    use tern_codec::{
        Connect, MqttString, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, Subscribe,
        SubscribeFilter, SubscriptionOptions,
    };
    use tern_session::Instant;

    /// Messages each publisher sends per round.
    pub const BATCH: usize = 64;

    /// Who talks to whom.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Shape {
        /// Four publishers, one subscriber.
        FanIn,
        /// One publisher, eight subscribers.
        FanOut,
    }

    impl Shape {
        /// (publishers, subscribers).
        pub fn counts(self) -> (usize, usize) {
            match self {
                Shape::FanIn => (4, 1),
                Shape::FanOut => (1, 8),
            }
        }

        /// A name for reports.
        pub fn name(self) -> &'static str {
            match self {
                Shape::FanIn => "fan_in_4to1",
                Shape::FanOut => "fan_out_1to8",
            }
        }
    }

    /// One broker and its clients.
    pub struct Scenario {
        broker: Broker,
        publishers: Vec<ConnId>,
        subscribers: BTreeMap<ConnId, BytesMut>,
        /// One round's PUBLISH packets from one publisher, encoded.
        publishes: Bytes,
        /// The shell's encode buffer.
        out: BytesMut,
        version: ProtocolVersion,
        delivered: usize,
    }

    impl Scenario {
        /// Connects and subscribes everyone; `payload` bytes per message.
        pub fn new(shape: Shape, qos: QoS, version: ProtocolVersion, payload: usize) -> Self {
            // As `tern broker` runs it: with publisher backpressure.
            let config = BrokerConfig {
                sys_interval: None,
                publisher_backpressure: Some(core::time::Duration::from_secs(1)),
                ..BrokerConfig::default()
            };
            let now = Instant::ZERO;
            let mut s = Self {
                broker: Broker::new(config, now),
                publishers: Vec::new(),
                subscribers: BTreeMap::new(),
                publishes: Bytes::new(),
                out: BytesMut::with_capacity(64 * 1024),
                version,
                delivered: 0,
            };
            let (pubs, subs) = shape.counts();
            let topic = MqttString::from_static("sensors/building-7/floor-3/temp");
            for i in 0..subs {
                let conn = s.connect(&format!("sub-{i}"));
                let subscribe = Packet::Subscribe(Subscribe {
                    packet_id: PacketId::new(1).unwrap(),
                    properties: Default::default(),
                    filters: vec![SubscribeFilter {
                        filter: MqttString::from_static("sensors/+/floor-3/temp"),
                        options: SubscriptionOptions {
                            qos,
                            ..SubscriptionOptions::default()
                        },
                    }],
                });
                s.feed(conn, &subscribe);
                s.subscribers.insert(conn, BytesMut::new());
            }
            for i in 0..pubs {
                let conn = s.connect(&format!("pub-{i}"));
                s.publishers.push(conn);
            }
            let mut publishes = BytesMut::new();
            for i in 0..BATCH {
                Packet::Publish(Publish {
                    qos,
                    topic: topic.clone(),
                    packet_id: (qos != QoS::AtMostOnce)
                        .then(|| PacketId::new(i as u16 + 1).unwrap()),
                    payload: Bytes::from(vec![0x5a; payload]),
                    ..Publish::default()
                })
                .encode(version, &mut publishes)
                .unwrap();
            }
            s.publishes = publishes.freeze();
            s.drain();
            s.delivered = 0;
            s
        }

        fn connect(&mut self, client_id: &str) -> ConnId {
            let conn = self.broker.accept(Instant::ZERO);
            let connect = Packet::Connect(Box::new(Connect {
                protocol: self.version,
                clean_start: true,
                keep_alive: 0,
                client_id: MqttString::try_from(client_id.to_string()).unwrap(),
                ..Connect::default()
            }));
            self.feed(conn, &connect);
            conn
        }

        fn feed(&mut self, conn: ConnId, packet: &Packet) {
            let version = match packet {
                Packet::Connect(c) => c.protocol,
                _ => self.version,
            };
            let mut buf = BytesMut::new();
            packet.encode(version, &mut buf).unwrap();
            self.broker.handle_bytes(Instant::ZERO, conn, &mut buf);
            assert!(buf.is_empty());
            self.drain();
        }

        /// Every transmit, encoded as the shell would; subscribers' PUBACKs
        /// are queued for the next [`round`](Self::round).
        fn drain(&mut self) {
            let now = Instant::ZERO;
            while let Some(t) = self.broker.poll_transmit(now) {
                let before = self.out.len();
                t.packet.encode(t.version, &mut self.out).unwrap();
                // Written at once, as by a socket that always has room.
                self.broker.handle_written(t.conn, self.out.len() - before);
                if let Packet::Publish(p) = &t.packet {
                    self.delivered += 1;
                    if let (Some(id), Some(acks)) = (p.packet_id, self.subscribers.get_mut(&t.conn))
                    {
                        Packet::PubAck(PubAck::new(id))
                            .encode(t.version, acks)
                            .unwrap();
                    }
                }
                if self.out.len() > 32 * 1024 {
                    self.out.clear();
                }
            }
            self.out.clear();
        }

        /// Every publisher sends [`BATCH`] messages, every subscriber
        /// acknowledges what it got; returns the messages delivered.
        pub fn round(&mut self) -> usize {
            let now = Instant::ZERO;
            self.delivered = 0;
            for i in 0..self.publishers.len() {
                let conn = self.publishers[i];
                // The shell reads into a fresh buffer.
                let mut buf = BytesMut::from(&self.publishes[..]);
                self.broker.handle_bytes(now, conn, &mut buf);
                self.drain();
            }
            let subs: Vec<ConnId> = self.subscribers.keys().copied().collect();
            for conn in subs {
                let mut acks = std::mem::take(self.subscribers.get_mut(&conn).unwrap());
                if !acks.is_empty() {
                    self.broker.handle_bytes(now, conn, &mut acks);
                    self.drain();
                }
            }
            self.delivered
        }
    }
}
