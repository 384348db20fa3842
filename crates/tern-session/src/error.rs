//! Why connections close, and the errors a caller's commands can return.
//!
//! A peer's mistakes never come back as `Err`: they close the connection
//! (with a DISCONNECT in MQTT 5) and surface as a [`CloseReason`] in the
//! role's `Closed` event. Only mistakes of the caller's own commands are
//! returned as errors.

use core::fmt;
use tern_codec::{DecodeError, EncodeError, MqttString, QoS, ReasonCode};

/// Why the peer's input closed the connection: bytes that are not a valid
/// packet, or a valid packet that breaks a rule of the protocol's state.
///
/// Each carries the reason code it earns (sent in a DISCONNECT in MQTT 5,
/// or a CONNACK where the connection is not yet accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The bytes were not a valid packet.
    Decode(DecodeError),
    /// A valid packet broke a rule of the protocol's state.
    Rule(Rule),
}

impl Violation {
    /// The reason code the violation earns.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Decode(e) => e.reason_code(),
            Self::Rule(r) => r.reason_code(),
        }
    }

    /// The normative statement broken, where one rule names it
    /// (`MQTT-x.y.z-n`, numbered as in MQTT 5.0).
    pub fn statement(&self) -> Option<&'static str> {
        match self {
            Self::Decode(_) => None,
            Self::Rule(r) => r.statement(),
        }
    }
}

impl From<Rule> for Violation {
    fn from(rule: Rule) -> Self {
        Self::Rule(rule)
    }
}

impl From<DecodeError> for Violation {
    fn from(error: DecodeError) -> Self {
        Self::Decode(error)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "{e} ({})", e.reason_code()),
            Self::Rule(r) => write!(f, "{r} ({})", r.reason_code()),
        }
    }
}

impl core::error::Error for Violation {}

/// A rule of the protocol's state that a peer broke with a well-formed packet.
///
/// One variant per rule, in the manner of rustls's `PeerMisbehaved`: each
/// knows the reason code it earns ([`reason_code`](Self::reason_code)) and
/// the statement it breaks ([`statement`](Self::statement)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The client's first packet was not CONNECT [MQTT-3.1.0-1]; the server
    /// closes without answering.
    FirstPacketNotConnect,
    /// A second CONNECT on one connection [MQTT-3.1.0-2].
    SecondConnect,
    /// A packet handed to `ServerConnection::handle_packet` while the CONNECT
    /// still awaits the caller's decision (`handle_bytes` keeps such packets
    /// in the buffer instead).
    PacketWhileConnectPending,
    /// The server's first packet was not CONNACK (or AUTH) [MQTT-3.2.0-1].
    FirstPacketNotConnAck,
    /// A second CONNACK on one connection [MQTT-3.2.0-2].
    SecondConnAck,
    /// Session Present 1 answered a clean start, for which the client keeps
    /// no session state [MQTT-3.2.2-4].
    SessionPresentAfterCleanStart,
    /// A packet type only a client sends came from the server.
    ClientOnlyPacket,
    /// A packet type only a server sends came from the client.
    ServerOnlyPacket,
    /// A PUBLISH above the server's Maximum QoS [MQTT-3.2.2-11].
    QosAboveMaximum,
    /// A retained PUBLISH though the server said Retain Available 0
    /// [MQTT-3.2.2-14].
    RetainNotAvailable,
    /// A client's PUBLISH carried a Subscription Identifier [MQTT-3.3.4-6].
    SubscriptionIdFromClient,
    /// A SUBSCRIBE carried a Subscription Identifier though the server said
    /// Subscription Identifiers Available 0.
    SubscriptionIdsNotSupported,
    /// A Topic Alias above the Topic Alias Maximum this side sent
    /// [MQTT-3.3.2-9] [MQTT-3.2.2-17].
    TopicAliasAboveMaximum,
    /// An empty topic with a Topic Alias this connection never set.
    TopicAliasUnknown,
    /// More unacknowledged QoS 1 and 2 PUBLISH packets than this side's
    /// Receive Maximum [MQTT-3.3.4-7] [MQTT-3.3.4-9].
    ReceiveMaximumExceeded,
    /// A PUBREL for a packet identifier with no QoS 2 flow awaiting it.
    PubRelWithoutPubRec,
    /// A SUBACK with a different number of reason codes than the SUBSCRIBE
    /// had filters [MQTT-3.9.3-1].
    SubAckCountMismatch,
    /// An UNSUBACK with a different number of reason codes than the
    /// UNSUBSCRIBE had filters [MQTT-3.11.3-1].
    UnsubAckCountMismatch,
    /// A DISCONNECT raised the Session Expiry Interval from zero, which MQTT
    /// 5.0 §3.14.2.2.2 calls a Protocol Error.
    SessionExpiryRaisedFromZero,
    /// An AUTH on a connection whose CONNECT had no Authentication Method
    /// [MQTT-4.12.0-7] (from a client) [MQTT-4.12.0-6] (from a server).
    AuthWithoutMethod,
    /// An AUTH without an Authentication Method, which MQTT 5.0 §3.15.2.2.2
    /// calls a Protocol Error.
    AuthMethodMissing,
    /// An AUTH (or a successful CONNACK) whose Authentication Method is not
    /// the CONNECT's [MQTT-4.12.0-5]: 0x8C Bad authentication method.
    AuthMethodMismatch,
    /// An AUTH reason code out of sequence: an answer in an exchange must be
    /// 0x18 [MQTT-4.12.0-2] [MQTT-4.12.0-3]; only a client starts
    /// re-authentication, with 0x19, once connected [MQTT-4.12.1-1]; only
    /// a server ends one with 0x00.
    AuthOutOfSequence,
    /// A client that set an Authentication Method sent a packet other than
    /// AUTH or DISCONNECT before CONNACK [MQTT-3.1.2-30].
    PacketDuringAuthentication,
}

impl Rule {
    /// The reason code this rule's breach earns.
    pub const fn reason_code(self) -> ReasonCode {
        match self {
            Self::QosAboveMaximum => ReasonCode::QosNotSupported,
            Self::RetainNotAvailable => ReasonCode::RetainNotSupported,
            Self::SubscriptionIdsNotSupported => ReasonCode::SubscriptionIdentifiersNotSupported,
            Self::TopicAliasAboveMaximum => ReasonCode::TopicAliasInvalid,
            Self::ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
            Self::AuthMethodMismatch => ReasonCode::BadAuthenticationMethod,
            Self::AuthWithoutMethod
            | Self::AuthMethodMissing
            | Self::AuthOutOfSequence
            | Self::PacketDuringAuthentication
            | Self::FirstPacketNotConnect
            | Self::SecondConnect
            | Self::PacketWhileConnectPending
            | Self::FirstPacketNotConnAck
            | Self::SecondConnAck
            | Self::SessionPresentAfterCleanStart
            | Self::ClientOnlyPacket
            | Self::ServerOnlyPacket
            | Self::SubscriptionIdFromClient
            | Self::TopicAliasUnknown
            | Self::PubRelWithoutPubRec
            | Self::SubAckCountMismatch
            | Self::UnsubAckCountMismatch
            | Self::SessionExpiryRaisedFromZero => ReasonCode::ProtocolError,
        }
    }

    /// The MQTT 5.0 statement the rule breaks, where the specification
    /// numbers one (3.1.1 uses the same numbers for the first three).
    pub const fn statement(self) -> Option<&'static str> {
        Some(match self {
            Self::FirstPacketNotConnect => "MQTT-3.1.0-1",
            Self::SecondConnect => "MQTT-3.1.0-2",
            Self::FirstPacketNotConnAck => "MQTT-3.2.0-1",
            Self::SecondConnAck => "MQTT-3.2.0-2",
            Self::SessionPresentAfterCleanStart => "MQTT-3.2.2-4",
            Self::QosAboveMaximum => "MQTT-3.2.2-11",
            Self::RetainNotAvailable => "MQTT-3.2.2-14",
            Self::SubscriptionIdFromClient => "MQTT-3.3.4-6",
            Self::TopicAliasAboveMaximum => "MQTT-3.3.2-9",
            Self::ReceiveMaximumExceeded => "MQTT-3.3.4-9",
            Self::SubAckCountMismatch => "MQTT-3.9.3-1",
            Self::UnsubAckCountMismatch => "MQTT-3.11.3-1",
            Self::AuthWithoutMethod => "MQTT-4.12.0-7",
            Self::AuthMethodMismatch => "MQTT-4.12.0-5",
            Self::AuthOutOfSequence => "MQTT-4.12.0-3",
            Self::PacketDuringAuthentication => "MQTT-3.1.2-30",
            Self::AuthMethodMissing
            | Self::PacketWhileConnectPending
            | Self::ClientOnlyPacket
            | Self::ServerOnlyPacket
            | Self::SubscriptionIdsNotSupported
            | Self::TopicAliasUnknown
            | Self::PubRelWithoutPubRec
            | Self::SessionExpiryRaisedFromZero => return None,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstPacketNotConnect => "the first packet must be CONNECT",
            Self::SecondConnect => "a second CONNECT",
            Self::PacketWhileConnectPending => "packet handed in before the CONNECT was decided",
            Self::FirstPacketNotConnAck => "the server's first packet must be CONNACK",
            Self::SecondConnAck => "a second CONNACK",
            Self::SessionPresentAfterCleanStart => "session present after a clean start",
            Self::ClientOnlyPacket => "a server may not send this packet",
            Self::ServerOnlyPacket => "a client may not send this packet",
            Self::QosAboveMaximum => "PUBLISH above the server's Maximum QoS",
            Self::RetainNotAvailable => "retained PUBLISH while retain is not available",
            Self::SubscriptionIdFromClient => "a client may not send a Subscription Identifier",
            Self::SubscriptionIdsNotSupported => {
                "Subscription Identifier while they are not supported"
            }
            Self::TopicAliasAboveMaximum => "topic alias above the Topic Alias Maximum",
            Self::TopicAliasUnknown => "empty topic with a topic alias that was never set",
            Self::ReceiveMaximumExceeded => {
                "more unacknowledged QoS 1 and 2 messages than Receive Maximum"
            }
            Self::PubRelWithoutPubRec => "PUBREL before the PUBREC it releases",
            Self::SubAckCountMismatch => {
                "SUBACK has a different number of reason codes than filters"
            }
            Self::UnsubAckCountMismatch => {
                "UNSUBACK has a different number of reason codes than filters"
            }
            Self::SessionExpiryRaisedFromZero => {
                "Session Expiry Interval raised from zero on DISCONNECT"
            }
            Self::AuthWithoutMethod => "AUTH though CONNECT had no Authentication Method",
            Self::AuthMethodMissing => "AUTH without an Authentication Method",
            Self::AuthMethodMismatch => "Authentication Method differs from the CONNECT's",
            Self::AuthOutOfSequence => "AUTH reason code out of sequence",
            Self::PacketDuringAuthentication => {
                "a packet other than AUTH or DISCONNECT during authentication"
            }
        })?;
        if let Some(id) = self.statement() {
            write!(f, " [{id}]")?;
        }
        Ok(())
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side closed it, with this reason code (sent in a DISCONNECT where
    /// the version allows).
    Local(ReasonCode),
    /// The peer sent DISCONNECT.
    PeerDisconnected {
        /// The peer's reason code (Normal disconnection in MQTT 3.x).
        reason_code: ReasonCode,
        /// The peer's Reason String, if any.
        reason_string: Option<MqttString>,
    },
    /// The peer broke the protocol.
    ProtocolViolation(Violation),
    /// The peer was silent past the keep-alive limit.
    KeepAliveTimeout,
    /// The handshake did not finish in time.
    ConnectTimeout,
    /// The connection attempt was refused with this reason code.
    ConnectRefused(ReasonCode),
    /// The network connection closed underneath.
    TransportClosed,
}

impl CloseReason {
    /// Whether the peer ended the connection with a normal DISCONNECT.
    pub fn is_normal_disconnect(&self) -> bool {
        matches!(
            self,
            CloseReason::PeerDisconnected {
                reason_code: ReasonCode::Success,
                ..
            }
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(code) => write!(f, "closed locally ({code})"),
            Self::PeerDisconnected {
                reason_code,
                reason_string,
            } => {
                write!(f, "peer disconnected ({reason_code})")?;
                if let Some(s) = reason_string {
                    write!(f, ": {s}")?;
                }
                Ok(())
            }
            Self::ProtocolViolation(v) => write!(f, "protocol violation: {v}"),
            Self::KeepAliveTimeout => f.write_str("keep alive timed out"),
            Self::ConnectTimeout => f.write_str("connection handshake timed out"),
            Self::ConnectRefused(code) => write!(f, "connection refused ({code})"),
            Self::TransportClosed => f.write_str("network connection closed"),
        }
    }
}

/// Why `publish` refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The packet breaks the specification (empty or wildcard topic, ...).
    Invalid(EncodeError),
    /// The outgoing queue is full.
    QueueFull,
    /// All 65,535 packet identifiers are in use.
    PacketIdsExhausted,
    /// Above the server's Maximum QoS [MQTT-3.2.2-11].
    QosNotSupported {
        /// The highest QoS the server accepts.
        maximum: QoS,
    },
    /// The server has no retained messages [MQTT-3.2.2-14].
    RetainNotSupported,
    /// Larger than the server's Maximum Packet Size [MQTT-3.2.2-15].
    PacketTooLarge {
        /// The encoded size.
        size: usize,
        /// The server's limit.
        maximum: u32,
    },
    /// A client may not send Subscription Identifiers [MQTT-3.3.4-6], and topic
    /// aliases are assigned by the session, not the caller.
    PropertyNotAllowed(&'static str),
    /// The connection is closed.
    Closed,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "invalid PUBLISH: {e}"),
            Self::QueueFull => f.write_str("the outgoing queue is full"),
            Self::PacketIdsExhausted => f.write_str("all packet identifiers are in use"),
            Self::QosNotSupported { maximum } => {
                write!(f, "the server accepts QoS {maximum} at most")
            }
            Self::RetainNotSupported => f.write_str("the server does not support retain"),
            Self::PacketTooLarge { size, maximum } => write!(
                f,
                "a {size}-byte packet exceeds the server's maximum packet size {maximum}"
            ),
            Self::PropertyNotAllowed(what) => write!(f, "{what} cannot be sent by a client"),
            Self::Closed => f.write_str("the connection is closed"),
        }
    }
}

impl core::error::Error for PublishError {}

/// Why a command other than `publish` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The packet breaks the specification.
    Invalid(EncodeError),
    /// All 65,535 packet identifiers are in use.
    PacketIdsExhausted,
    /// The server said it does not support Subscription Identifiers.
    SubscriptionIdentifiersNotSupported,
    /// No such request is pending (a reply to something never asked).
    UnknownRequest,
    /// `accept` or `reject` while no CONNECT awaits a decision.
    NoConnectPending,
    /// A command that needs the client's session before the CONNECT was
    /// accepted.
    NoSession,
    /// A SUBACK or UNSUBACK decision with a different number of reason codes
    /// than the request had filters [MQTT-3.9.3-1] [MQTT-3.11.3-1].
    ReasonCodeCount {
        /// The number of filters in the request.
        expected: usize,
        /// The number of reason codes given.
        given: usize,
    },
    /// A DISCONNECT may not raise the Session Expiry Interval from zero
    /// (MQTT 5.0 §3.14.2.2.2).
    SessionExpiryRaisedFromZero,
    /// An authentication step while no exchange awaits one (or, for a
    /// connection whose CONNECT had no Authentication Method, ever)
    /// [MQTT-4.12.0-6] [MQTT-4.12.0-7].
    NoAuthPending,
    /// The connection is closed.
    Closed,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "invalid packet: {e}"),
            Self::PacketIdsExhausted => f.write_str("all packet identifiers are in use"),
            Self::SubscriptionIdentifiersNotSupported => {
                f.write_str("the server does not support subscription identifiers")
            }
            Self::UnknownRequest => f.write_str("no such request is pending"),
            Self::NoConnectPending => f.write_str("no CONNECT awaits a decision"),
            Self::NoSession => f.write_str("the connection has no session yet"),
            Self::ReasonCodeCount { expected, given } => write!(
                f,
                "{given} reason codes given for {expected} filters; one per filter is needed"
            ),
            Self::SessionExpiryRaisedFromZero => {
                f.write_str("the session expiry interval cannot be raised from zero on DISCONNECT")
            }
            Self::NoAuthPending => f.write_str("no authentication exchange awaits this step"),
            Self::Closed => f.write_str("the connection is closed"),
        }
    }
}

impl core::error::Error for CommandError {}

/// Why a manual acknowledgement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// The token is already used, or belongs to an earlier connection (the
    /// peer will resend that QoS 1 message).
    Stale,
    /// Not a PUBACK / PUBREC reason code.
    InvalidReasonCode(ReasonCode),
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale => f.write_str("acknowledgement token is stale or already used"),
            Self::InvalidReasonCode(c) => write!(f, "{c} cannot acknowledge a PUBLISH"),
        }
    }
}

impl core::error::Error for AckError {}
