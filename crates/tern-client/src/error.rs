//! The one error type of the client.

use std::{fmt, io, sync::Arc};
use tern_codec::{EncodeError, MqttString, ReasonCode, StringError};
use tern_session::{AckError, CloseReason, CommandError, PublishError, Violation};
use tern_topic::TopicError;

/// Everything that can go wrong, by cause, so callers can match on it.
///
/// `Error` is `Clone` (an I/O error is shared behind an [`Arc`]) because one
/// cause can end many operations at once: when the connection ends for good,
/// every pending `publish`, `subscribe` and `unsubscribe` gets a copy.
///
/// ```
/// use tern_client::Error;
/// use tern_codec::ReasonCode;
///
/// let e = Error::ConnectionRefused(ReasonCode::NotAuthorized);
/// assert_eq!(e.to_string(), "connection refused: 0x87 Not authorized");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be understood.
    InvalidUrl(String),
    /// The connect options break a rule of the CONNECT packet; nothing was
    /// sent.
    InvalidOptions(EncodeError),
    /// Enhanced authentication failed on our side (the [`AuthMethod`]
    /// refused a step, or the broker's final proof was wrong); the
    /// connection was closed.
    ///
    /// [`AuthMethod`]: crate::AuthMethod
    Auth(String),
    /// `mqtts://` and `wss://` need TLS, and this build of the client has
    /// no `tls` feature.
    TlsNotSupported,
    /// `ws://` and `wss://` need this build's `websocket` feature.
    WebSocketNotSupported,
    /// TLS could not be set up (a certificate or key file is missing or
    /// holds nothing usable) or the handshake failed (the broker's
    /// certificate is not trusted or does not name the host, it wanted a
    /// client certificate, ...). Retrying does not help.
    Tls(String),
    /// No network connection could be made to the broker at `addr`.
    Unreachable {
        /// The address, as `host:port`.
        addr: String,
        /// Why.
        source: Arc<io::Error>,
    },
    /// The WebSocket handshake failed.
    WebSocket(String),
    /// The broker refused the connection in CONNACK with this reason code
    /// (an MQTT 3.1.1 return code is mapped to its MQTT 5 equivalent).
    ConnectionRefused(ReasonCode),
    /// The broker broke the protocol; the client closed the connection
    /// (sending DISCONNECT with the reason code in MQTT 5).
    Protocol(Violation),
    /// The broker ended the connection with DISCONNECT.
    ServerDisconnected {
        /// The broker's reason code.
        reason_code: ReasonCode,
        /// The broker's Reason String, if it sent one.
        reason_string: Option<MqttString>,
    },
    /// The broker did not answer in time.
    Timeout(Timeout),
    /// [`Client::try_publish`](crate::Client::try_publish): the request queue
    /// is full, so the message was not taken. Retry later, or await
    /// [`Client::publish`](crate::Client::publish), which waits for room.
    Backpressure,
    /// The network connection closed without a DISCONNECT.
    ConnectionLost,
    /// Reading or writing the network connection failed.
    Io(Arc<io::Error>),
    /// The client is closed: [`Client::disconnect`](crate::Client::disconnect)
    /// was called, or every handle was dropped. Operations still pending then
    /// end with this error.
    Closed,
    /// A topic, filter, client identifier, user name or property is not a
    /// valid MQTT string.
    InvalidString(StringError),
    /// Not a valid topic filter (a wildcard in the wrong place, a bad shared
    /// subscription, ...); the client does not send it, because brokers
    /// answer a bad filter by closing the connection.
    InvalidFilter {
        /// The filter.
        filter: String,
        /// The rule it breaks.
        error: TopicError,
    },
    /// The session refused the message (an invalid topic, above the
    /// broker's Maximum QoS or Maximum Packet Size, ...).
    Publish(PublishError),
    /// The session refused a SUBSCRIBE, UNSUBSCRIBE or DISCONNECT.
    Command(CommandError),
    /// The session refused a manual acknowledgement.
    Ack(AckError),
    /// The message was dropped from the full queue to make room for a newer
    /// one (only with [`OverflowPolicy::DropOldest`](tern_session::OverflowPolicy)).
    Dropped,
    /// A packet the session produced could not be encoded. This is a bug in
    /// Tern; please report it.
    Encode(EncodeError),
}

/// What the broker did not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// The network connection, WebSocket handshake or CONNACK.
    Connect,
    /// The PINGRESP (keep alive).
    KeepAlive,
}

impl Error {
    /// The error for a connection that ended for this reason; `io` is the
    /// read or write error that closed the transport, if there was one.
    pub(crate) fn from_close(reason: CloseReason, io: Option<Arc<io::Error>>) -> Self {
        match reason {
            CloseReason::Local(_) => Error::Closed,
            CloseReason::PeerDisconnected {
                reason_code,
                reason_string,
            } => Error::ServerDisconnected {
                reason_code,
                reason_string,
            },
            CloseReason::ProtocolViolation(v) => Error::Protocol(v),
            CloseReason::KeepAliveTimeout => Error::Timeout(Timeout::KeepAlive),
            CloseReason::ConnectTimeout => Error::Timeout(Timeout::Connect),
            CloseReason::ConnectRefused(code) => Error::ConnectionRefused(code),
            CloseReason::TransportClosed => match io {
                Some(e) => Error::Io(e),
                None => Error::ConnectionLost,
            },
            // CloseReason is non-exhaustive: a new reason is a lost connection
            // until this crate learns about it.
            _ => Error::ConnectionLost,
        }
    }

    /// Whether reconnecting could help. Refusals that a retry cannot change
    /// (bad credentials, not authorised, banned, a bad client identifier, an
    /// unsupported version) and a session taken over by another client with
    /// the same identifier (reconnecting would take it back, and so on
    /// forever) are final; so are the caller's own mistakes.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionRefused(code) => matches!(
                code,
                ReasonCode::ServerUnavailable
                    | ReasonCode::ServerBusy
                    | ReasonCode::QuotaExceeded
                    | ReasonCode::ConnectionRateExceeded
                    | ReasonCode::UnspecifiedError
                    | ReasonCode::ImplementationSpecificError
            ),
            Error::ServerDisconnected { reason_code, .. } => {
                *reason_code != ReasonCode::SessionTakenOver
            }
            Error::Unreachable { .. }
            | Error::WebSocket(_)
            | Error::Protocol(_)
            | Error::Timeout(_)
            | Error::ConnectionLost
            | Error::Io(_) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Error::TlsNotSupported => f.write_str(
                "mqtts:// and wss:// need tern-client's `tls` feature, which this build lacks",
            ),
            Error::WebSocketNotSupported => f.write_str(
                "ws:// and wss:// need tern-client's `websocket` feature, which this build lacks",
            ),
            Error::Tls(why) => write!(f, "TLS: {why}"),
            Error::Unreachable { addr, source } => {
                write!(f, "broker unreachable at {addr}: {source}")
            }
            Error::WebSocket(why) => write!(f, "WebSocket handshake failed: {why}"),
            Error::ConnectionRefused(code) => write!(f, "connection refused: {code}"),
            Error::Protocol(v) => write!(f, "the broker broke the protocol: {v}"),
            Error::ServerDisconnected {
                reason_code,
                reason_string,
            } => {
                write!(f, "the broker disconnected: {reason_code}")?;
                match reason_string {
                    Some(s) => write!(f, " ({s})"),
                    None => Ok(()),
                }
            }
            Error::Timeout(Timeout::Connect) => f.write_str("timed out connecting to the broker"),
            Error::Timeout(Timeout::KeepAlive) => {
                f.write_str("keep alive timed out: no answer from the broker")
            }
            Error::ConnectionLost => f.write_str("the connection to the broker was lost"),
            Error::Backpressure => f.write_str(
                "the client's request queue is full; retry later or await publish to wait for room",
            ),
            Error::Io(e) => write!(f, "network error: {e}"),
            Error::Closed => f.write_str("the client is closed"),
            Error::InvalidString(e) => write!(f, "invalid MQTT string: {e}"),
            Error::InvalidFilter { filter, error } => {
                write!(f, "invalid topic filter {filter:?}: {error}")
            }
            Error::Publish(e) => write!(f, "publish refused: {e}"),
            Error::Command(e) => write!(f, "request refused: {e}"),
            Error::Ack(e) => write!(f, "acknowledgement refused: {e}"),
            Error::Dropped => f.write_str("the message was dropped from the full queue"),
            Error::InvalidOptions(e) => write!(f, "invalid connect options: {e}"),
            Error::Auth(why) => write!(f, "enhanced authentication failed: {why}"),
            Error::Encode(e) => write!(f, "could not encode a packet (a bug in Tern): {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreachable { source, .. } => Some(&**source),
            Error::Io(e) => Some(&**e),
            Error::InvalidString(e) => Some(e),
            Error::InvalidFilter { error, .. } => Some(error),
            Error::Publish(e) => Some(e),
            Error::Command(e) => Some(e),
            Error::Ack(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StringError> for Error {
    fn from(e: StringError) -> Self {
        Error::InvalidString(e)
    }
}
