//! What can go wrong.

use std::{fmt, io};
use tern_session::{AckError, CloseReason, CommandError, PublishError};

/// An error from the blocking client.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The stream failed.
    Io(io::Error),
    /// The connection is closed, for this reason (a refused CONNECT, a
    /// DISCONNECT from the server, a protocol violation, keep alive).
    Closed(CloseReason),
    /// A publish was refused before it was sent.
    Publish(PublishError),
    /// A subscribe, unsubscribe or disconnect was refused before it was sent.
    Command(CommandError),
    /// An acknowledgement was refused.
    Ack(AckError),
    /// A topic or filter is not valid UTF-8 of at most 65,535 bytes.
    InvalidString(tern_codec::StringError),
    /// Enhanced authentication failed on our side (the
    /// [`AuthMethod`](crate::AuthMethod) refused a step, or the server's
    /// proof), or a re-authentication was asked without a method.
    Auth(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Closed(reason) => write!(f, "connection closed: {reason:?}"),
            Error::Publish(e) => write!(f, "publish refused: {e}"),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Ack(e) => write!(f, "acknowledgement refused: {e}"),
            Error::InvalidString(e) => write!(f, "invalid topic or filter: {e}"),
            Error::Auth(why) => write!(f, "enhanced authentication failed: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Publish(e) => Some(e),
            Error::Command(e) => Some(e),
            Error::Ack(e) => Some(e),
            Error::InvalidString(e) => Some(e),
            Error::Closed(_) | Error::Auth(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        Error::Publish(e)
    }
}
impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        Error::Command(e)
    }
}
impl From<AckError> for Error {
    fn from(e: AckError) -> Self {
        Error::Ack(e)
    }
}
impl From<tern_codec::StringError> for Error {
    fn from(e: tern_codec::StringError) -> Self {
        Error::InvalidString(e)
    }
}
