//! Who may connect, publish, subscribe and receive: the [`Authenticator`]
//! hook, and where the core asks it.
//!
//! Every decision is the core's, taken where routing happens: a CONNECT is
//! authenticated before a session is set up; a PUBLISH is checked for
//! `write` before it is routed (refused: MQTT 5 PUBACK/PUBREC 0x87, MQTT
//! 3.x acknowledged and dropped, as mosquitto does); each delivery, each
//! retained message sent on subscribe and each will delivery is checked for
//! `read` towards its receiver; a will is checked for `write` as its
//! client's own publication when it goes out.
//!
//! MQTT 5 enhanced authentication (a CONNECT with an Authentication
//! Method, and re-authentication) is a multi-step exchange: the core asks
//! [`Authenticator::start_auth`] for an [`AuthExchange`] and feeds it each
//! Authentication Data the client sends; every [`AuthStep`] it returns
//! becomes a packet (see `enhanced_auth.rs`).

use super::sessions::{SessionKey, Sessions};
use super::{Broker, security::Access};
use bytes::Bytes;
use tern_codec::{Connect, MqttString, ReasonCode};
use tern_topic::{SubscriptionFilter, TopicName};

/// The broker's answer to a CONNECT.
#[derive(Debug)]
pub enum AuthDecision {
    /// Let the client in.
    Accept,
    /// Refuse with this CONNACK reason code (for example 0x86 Bad User Name
    /// or Password, 0x87 Not authorized); MQTT 3.x clients get the nearest
    /// return code.
    Reject(ReasonCode),
    /// The answer takes slow work (a password hash): the core hands this
    /// check to the shell ([`Broker::poll_auth_check`]), which runs it off
    /// the core's thread and reports the outcome
    /// ([`Broker::handle_auth_checked`]). Meanwhile the connection waits:
    /// its later packets stay unread, and other clients are served.
    Check(AuthCheck),
}

impl AuthDecision {
    /// Whether this is [`Accept`](Self::Accept).
    pub fn is_accept(&self) -> bool {
        matches!(self, Self::Accept)
    }
}

/// Slow work that decides a CONNECT: `Ok` lets the client in, `Err` refuses
/// it with that CONNACK reason code. Built by an [`Authenticator`]; run by
/// the shell on a thread of its own (see [`AuthDecision::Check`]).
pub struct AuthCheck {
    work: Box<dyn FnOnce() -> Result<(), ReasonCode> + Send>,
    /// Alive while the connection waits for the outcome (the core holds
    /// the other end): a check whose connection has gone is not run.
    wanted: Option<std::sync::Weak<()>>,
}

impl AuthCheck {
    /// A check that runs `work`.
    pub fn new(work: impl FnOnce() -> Result<(), ReasonCode> + Send + 'static) -> Self {
        Self {
            work: Box::new(work),
            wanted: None,
        }
    }

    /// Ties the check to a waiting connection's token.
    pub(super) fn wanted_while(mut self, token: &std::sync::Arc<()>) -> Self {
        self.wanted = Some(std::sync::Arc::downgrade(token));
        self
    }

    /// Whether anyone still waits for the outcome: false once the
    /// connection closed (or timed out) while the check was queued.
    pub fn is_wanted(&self) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.strong_count() > 0)
    }

    /// Does the work (blocking: not on the core's thread), unless nobody
    /// waits for it any more: then the hash is not computed, and the
    /// outcome (0x80 Unspecified error) goes nowhere.
    pub fn run(self) -> Result<(), ReasonCode> {
        if !self.is_wanted() {
            return Err(ReasonCode::UnspecifiedError);
        }
        (self.work)()
    }
}

impl std::fmt::Debug for AuthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCheck")
    }
}

/// A connected client as the authorization checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// Its client identifier (the one the broker assigned, if it sent none).
    pub client_id: &'a str,
    /// The user name it authenticated as: the CONNECT's, or its TLS client
    /// certificate's identity (see [`Broker::set_identity`]); `None`:
    /// anonymous.
    pub username: Option<&'a str>,
}

/// Decides who may connect and what they may do.
///
/// Called synchronously by the broker core; implementations must not block:
/// a decision that needs slow work (a password hash) is an
/// [`AuthDecision::Check`], which the shell runs elsewhere.
/// The default, [`AllowAll`], lets anonymous clients do anything except
/// publish to `$SYS` topics (which the broker refuses itself).
pub trait Authenticator: Send {
    /// A client asks to connect (user name, password and, for MQTT 5
    /// enhanced authentication, the method and data are in `connect`).
    /// `identity` is set when the shell vouched for the client's identity
    /// (a verified TLS client certificate's name, used as the user name as
    /// mosquitto's `use_identity_as_username` does): it replaces the
    /// CONNECT's user name, and no password is asked for.
    fn authenticate(&mut self, connect: &Connect, identity: Option<&str>) -> AuthDecision;

    /// MQTT 5 enhanced authentication: a client asks to authenticate with
    /// `method` (in its CONNECT, or in an AUTH 0x19 re-authenticating).
    /// Return the exchange that answers it, or `None` if the method is not
    /// offered: the CONNECT is refused with 0x8C Bad authentication method
    /// [MQTT-4.12.0-1] (a re-authentication: DISCONNECT 0x8C).
    /// [`authenticate`](Self::authenticate) is not asked for a CONNECT
    /// with a method: the exchange decides alone.
    fn start_auth(&mut self, method: &str, start: AuthStart<'_>) -> Option<Box<dyn AuthExchange>> {
        let _ = (method, start);
        None
    }

    /// May `client` publish to `topic`? Asked for each PUBLISH and for each
    /// will as it goes out.
    fn authorize_publish(&mut self, client: Client<'_>, topic: &TopicName) -> bool {
        let _ = (client, topic);
        true
    }

    /// May `client` subscribe to `filter`?
    fn authorize_subscribe(&mut self, client: Client<'_>, filter: &SubscriptionFilter) -> bool {
        let _ = (client, filter);
        true
    }

    /// May `client` receive a message published to `topic`? Asked for each
    /// delivery (routed messages, wills, retained messages on subscribe).
    fn authorize_receive(&mut self, client: Client<'_>, topic: &TopicName) -> bool {
        let _ = (client, topic);
        true
    }
}

/// Who is authenticating, for [`Authenticator::start_auth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStart<'a> {
    /// The client identifier in the CONNECT (empty: one will be assigned).
    pub client_id: &'a str,
    /// The CONNECT's User Name, if any.
    pub username: Option<&'a str>,
    /// The identity the shell vouched for (a TLS client certificate's
    /// name, see [`Broker::set_identity`]).
    pub identity: Option<&'a str>,
    /// For a re-authentication, the user name the connection is
    /// authenticated as now; `None` for a CONNECT.
    pub reauthenticating: Option<Option<&'a str>>,
}

/// One step's outcome in an enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this Authentication Data in an AUTH 0x18 and wait for the
    /// client's next AUTH [MQTT-4.12.0-2].
    Continue(Bytes),
    /// Authenticated: `data` goes in the CONNACK (or, re-authenticating, in
    /// AUTH 0x00) as the final step. `username` becomes the name the
    /// authorization checks see (`None`: the CONNECT's User Name). A
    /// re-authentication must end as the same user, or it fails with 0x87.
    Success {
        /// The final Authentication Data, if the method has one.
        data: Option<Bytes>,
        /// The authenticated user.
        username: Option<MqttString>,
    },
    /// Refused with this reason code: CONNACK (0x86 Bad User Name or
    /// Password, 0x87 Not authorized, ...) [MQTT-4.12.0-4], or during
    /// re-authentication a DISCONNECT (a code a CONNACK allows but a
    /// DISCONNECT does not, such as 0x86, is sent as 0x87) [MQTT-4.12.1-2].
    Failure(ReasonCode),
}

/// One client's enhanced authentication exchange, from the first
/// Authentication Data to success or failure. The core calls
/// [`step`](Self::step) with the CONNECT's (or AUTH 0x19's) data first,
/// then with each AUTH 0x18's, until the step is not `Continue`. It must
/// not block: a step that needs slow work (a hash) is the implementor's
/// to precompute, as SCRAM's stored keys are.
pub trait AuthExchange: Send + std::fmt::Debug {
    /// The client's next Authentication Data (empty if it sent none).
    fn step(&mut self, data: &[u8]) -> AuthStep;

    /// A Reason String and User Properties for the AUTH the last step
    /// sends (0x18, or 0x00 ending a re-authentication); none by default.
    /// tern-session leaves them out where the client asked for no problem
    /// information, or where they would make the AUTH larger than the
    /// client's Maximum Packet Size [MQTT-3.15.2-2] [MQTT-3.15.2-3].
    fn diagnostics(&self) -> tern_codec::AckProperties {
        tern_codec::AckProperties::default()
    }
}

/// Lets every client connect, publish and subscribe.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&mut self, _connect: &Connect, _identity: Option<&str>) -> AuthDecision {
        AuthDecision::Accept
    }
}

impl Broker {
    /// Whether the session's client may publish to (`Write`) or receive
    /// from (`Read`) `topic`.
    pub(super) fn authorized(
        &mut self,
        key: SessionKey,
        topic: &TopicName,
        access: Access,
    ) -> bool {
        allowed(&mut *self.auth, &self.sessions, key, topic, access)
    }
}

/// [`Broker::authorized`] on the two fields it needs, for loops that hold
/// other parts of the broker borrowed.
pub(super) fn allowed(
    auth: &mut dyn Authenticator,
    sessions: &Sessions,
    key: SessionKey,
    topic: &TopicName,
    access: Access,
) -> bool {
    let Some(entry) = sessions.get(key) else {
        return false;
    };
    let client = Client {
        client_id: entry.client_id.as_str(),
        username: entry.username.as_ref().map(|u| u.as_str()),
    };
    match access {
        Access::Write => auth.authorize_publish(client, topic),
        Access::Read => auth.authorize_receive(client, topic),
    }
}
