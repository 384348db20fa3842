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

use super::sessions::{SessionKey, Sessions};
use super::{Broker, security::Access};
use tern_codec::{Connect, ReasonCode};
use tern_topic::{SubscriptionFilter, TopicName};

/// The broker's answer to a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the client in.
    Accept,
    /// Refuse with this CONNACK reason code (for example 0x86 Bad User Name
    /// or Password, 0x87 Not authorized); MQTT 3.x clients get the nearest
    /// return code.
    Reject(ReasonCode),
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
/// Called synchronously by the broker core; implementations must not block.
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
