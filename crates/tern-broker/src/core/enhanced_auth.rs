//! MQTT 5 enhanced authentication (section 4.12): the exchange of AUTH
//! packets before CONNACK, and re-authentication once connected.
//!
//! The flow, with the [`AuthExchange`] an [`Authenticator::start_auth`]
//! returns for the client's method:
//!
//! ```text
//! CONNECT (method, data)  ──▶ start_auth ──▶ step(data)
//!                                 None: CONNACK 0x8C          [MQTT-4.12.0-1]
//!      AUTH 0x18 (method, data) ◀── Continue(data)           [MQTT-4.12.0-2]
//! AUTH 0x18 (method, data) ──▶ step(data)                    [MQTT-4.12.0-3]
//!      CONNACK 0x00 (method, data) ◀── Success               [MQTT-4.12.0-5]
//!      CONNACK 0x86/0x87/... ◀── Failure(code)               [MQTT-4.12.0-4]
//!
//! AUTH 0x19 (method, data) ──▶ start_auth ──▶ step(data)     [MQTT-4.12.1-1]
//!      AUTH 0x18 ◀── Continue, AUTH 0x00 ◀── Success,
//!      DISCONNECT (code) ◀── Failure                         [MQTT-4.12.1-2]
//! ```
//!
//! The rules about the packets themselves (the method is the CONNECT's,
//! reason codes in sequence, nothing but AUTH or DISCONNECT before
//! CONNACK) are tern-session's `ServerConnection`'s: what arrives here has
//! passed them.
//!
//! [`Authenticator::start_auth`]: super::Authenticator::start_auth

use super::{AuthExchange, AuthStart, AuthStep, Broker, ConnId};
use bytes::Bytes;
use tern_codec::{Auth, Connect, MqttString, PacketType, ReasonCode};
use tern_session::Instant;

/// An exchange in progress on a connection.
#[derive(Debug)]
pub(super) struct Pending {
    exchange: Box<dyn AuthExchange>,
    /// The CONNECT being authenticated; `None` when re-authenticating.
    connect: Option<Box<Connect>>,
}

impl Broker {
    /// A CONNECT with an Authentication Method: start the exchange.
    pub(super) fn start_connect_auth(&mut self, now: Instant, conn: ConnId, connect: Connect) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let method = connect
            .properties
            .authentication_method
            .as_ref()
            .map_or("", |m| m.as_str());
        let start = AuthStart {
            client_id: connect.client_id.as_str(),
            username: connect.username.as_ref().map(|u| u.as_str()),
            identity: c.identity.as_ref().map(|i| i.as_str()),
            reauthenticating: None,
        };
        let Some(exchange) = self.auth.start_auth(method, start) else {
            // [MQTT-4.12.0-1]: the method is not offered.
            self.reject(now, conn, &connect, ReasonCode::BadAuthenticationMethod);
            return;
        };
        let data = connect.properties.authentication_data.clone();
        c.auth = Some(Box::new(Pending {
            exchange,
            connect: Some(Box::new(connect)),
        }));
        self.auth_step(now, conn, data.as_deref().unwrap_or_default());
    }

    /// An AUTH from the client (already checked by its `ServerConnection`):
    /// the next step of the exchange, or the start of a re-authentication.
    pub(super) fn on_auth(&mut self, now: Instant, conn: ConnId, auth: Auth) {
        let data = auth.properties.authentication_data.unwrap_or_default();
        if auth.reason_code == ReasonCode::ReAuthenticate {
            let Some(c) = self.conns.get_mut(conn.key()) else {
                return;
            };
            let current = c
                .session
                .and_then(|key| self.sessions.get(key))
                .and_then(|s| s.username.as_ref());
            let method = auth
                .properties
                .authentication_method
                .as_ref()
                .map_or("", |m| m.as_str());
            let client_id = c.server.session().map_or("", |s| s.client_id().as_str());
            let start = AuthStart {
                client_id,
                username: current.map(|u| u.as_str()),
                identity: c.identity.as_ref().map(|i| i.as_str()),
                reauthenticating: Some(current.map(|u| u.as_str())),
            };
            let Some(exchange) = self.auth.start_auth(method, start) else {
                c.server.close(now, ReasonCode::BadAuthenticationMethod);
                return;
            };
            c.auth = Some(Box::new(Pending {
                exchange,
                connect: None,
            }));
        }
        self.auth_step(now, conn, &data);
    }

    /// Feeds the exchange the client's data and acts on its answer.
    fn auth_step(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let Some(pending) = c.auth.as_mut() else {
            // An AUTH 0x18 with no exchange of ours behind it cannot pass
            // the session's checks; nothing to do if one did.
            return;
        };
        let step = pending.exchange.step(data);
        let diagnostics = pending.exchange.diagnostics();
        match step {
            AuthStep::Continue(next) => {
                if c.server
                    .auth_continue_with(now, Some(next), diagnostics)
                    .is_err()
                {
                    let pending = c.auth.take();
                    self.fail_auth(now, conn, pending, ReasonCode::ImplementationSpecificError);
                }
            }
            AuthStep::Success { data, username } => {
                let pending = c.auth.take().expect("an exchange is pending");
                match pending.connect {
                    Some(connect) => {
                        let username = username
                            .or_else(|| c.identity.clone())
                            .or_else(|| connect.username.as_ref().map(super::compact));
                        self.admit(now, conn, *connect, username, data);
                    }
                    None => self.reauthenticated(now, conn, username, data, diagnostics),
                }
            }
            AuthStep::Failure(code) => {
                let pending = c.auth.take();
                self.fail_auth(now, conn, pending, code);
            }
        }
    }

    /// A re-authentication succeeded: as the same user, or it fails.
    fn reauthenticated(
        &mut self,
        now: Instant,
        conn: ConnId,
        username: Option<MqttString>,
        data: Option<Bytes>,
        diagnostics: tern_codec::AckProperties,
    ) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let current = c
            .session
            .and_then(|key| self.sessions.get(key))
            .and_then(|s| s.username.as_ref());
        if username.is_some() && username.as_ref() != current {
            // The authorization checks keep the connection's identity.
            c.server.close(now, ReasonCode::NotAuthorized);
            return;
        }
        if c.server.auth_success_with(now, data, diagnostics).is_err() {
            c.server.close(now, ReasonCode::ImplementationSpecificError);
        }
    }

    /// The exchange refused the client: CONNACK with the code (0x87 if a
    /// CONNACK cannot carry it), or (when re-authenticating) DISCONNECT
    /// [MQTT-4.12.0-4] [MQTT-4.12.1-2].
    fn fail_auth(
        &mut self,
        now: Instant,
        conn: ConnId,
        pending: Option<Box<Pending>>,
        code: ReasonCode,
    ) {
        if let Some(connect) = pending.and_then(|p| p.connect) {
            let code = if code.is_error() && code.is_valid_for(PacketType::ConnAck) {
                code
            } else {
                ReasonCode::NotAuthorized
            };
            self.reject(now, conn, &connect, code);
            return;
        }
        let code = if code.is_error() && code.is_valid_for(PacketType::Disconnect) {
            code
        } else {
            ReasonCode::NotAuthorized
        };
        if let Some(c) = self.conns.get_mut(conn.key()) {
            c.server.close(now, code);
        }
    }
}
