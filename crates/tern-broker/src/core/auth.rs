//! Who may connect, publish and subscribe: the [`Authenticator`] hook.

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

/// Decides who may connect and what they may do.
///
/// Called synchronously by the broker core; implementations must not block.
/// The default, [`AllowAll`], lets anonymous clients do anything except
/// publish to `$SYS` topics (which the broker refuses itself).
pub trait Authenticator: Send {
    /// A client asks to connect (user name, password and, for MQTT 5
    /// enhanced authentication, the method and data are in `connect`).
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision;

    /// May `client_id` publish to `topic`?
    fn authorize_publish(&mut self, client_id: &str, topic: &TopicName) -> bool {
        let _ = (client_id, topic);
        true
    }

    /// May `client_id` subscribe to `filter`?
    fn authorize_subscribe(&mut self, client_id: &str, filter: &SubscriptionFilter) -> bool {
        let _ = (client_id, filter);
        true
    }
}

/// Lets every client connect, publish and subscribe.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&mut self, _connect: &Connect) -> AuthDecision {
        AuthDecision::Accept
    }
}
