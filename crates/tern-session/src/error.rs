//! Why connections close, and the errors a caller's commands can return.
//!
//! A peer's mistakes never come back as `Err`: they close the connection
//! (with a DISCONNECT in MQTT 5) and surface as a [`CloseReason`] in the
//! role's `Closed` event. Only mistakes of the caller's own commands are
//! returned as errors.

use core::fmt;
use tern_codec::{DecodeError, EncodeError, MqttString, QoS, ReasonCode};

/// A protocol rule the peer broke, and the reason code it earned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The reason code sent in the DISCONNECT (MQTT 5) before closing.
    pub reason_code: ReasonCode,
    /// What was wrong.
    pub detail: ViolationDetail,
}

/// What was wrong with what the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViolationDetail {
    /// The bytes were not a valid packet.
    Decode(DecodeError),
    /// A valid packet broke a rule of the protocol's state.
    Rule(&'static str),
}

impl Violation {
    pub(crate) fn rule(reason_code: ReasonCode, text: &'static str) -> Self {
        Self {
            reason_code,
            detail: ViolationDetail::Rule(text),
        }
    }

    pub(crate) fn decode(error: DecodeError) -> Self {
        Self {
            reason_code: error.reason_code(),
            detail: ViolationDetail::Decode(error),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            ViolationDetail::Decode(e) => write!(f, "{} ({})", e, self.reason_code),
            ViolationDetail::Rule(r) => write!(f, "{r} ({})", self.reason_code),
        }
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
    /// Not possible in the connection's current state.
    WrongState(&'static str),
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
            Self::WrongState(s) => write!(f, "not possible now: {s}"),
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
