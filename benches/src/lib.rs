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
