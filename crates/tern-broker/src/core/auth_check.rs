//! Password checks off the core's thread: a CONNECT whose
//! [`AuthDecision`](super::AuthDecision) is a [`Check`](super::AuthDecision::Check)
//! waits while the shell runs the check elsewhere.
//!
//! ```text
//! CONNECT ──▶ authenticate ──▶ Check(work)
//!     the connection waits (PauseReading: its later packets stay unread)
//!     poll_auth_check ──▶ shell runs work on another thread
//!     handle_auth_checked(Ok)  ──▶ admit: CONNACK 0x00, ResumeReading
//!     handle_auth_checked(Err) ──▶ CONNACK with the code, close
//! ```
//!
//! The core stays free to route everyone else's messages while a hash is
//! computed (a reconnect storm against a password file costs the core
//! nothing). A connection that closes or times out meanwhile (the connect
//! timeout still runs) is forgotten; its check, if still queued, is not
//! run ([`AuthCheck::is_wanted`]: a storm of CONNECTs that hang up at once
//! costs no hashes), its outcome is ignored, and a [`ConnId`] is never
//! reused for another connection.

use super::{AuthCheck, Broker, ConnId};
use tern_codec::{Connect, MqttString, PacketType, ReasonCode};
use tern_session::Instant;

/// A CONNECT waiting for its check.
#[derive(Debug)]
pub(super) struct Waiting {
    connect: Box<Connect>,
    /// The user name it connects as if the check passes.
    username: Option<MqttString>,
    /// Its check runs only while this lives ([`AuthCheck::is_wanted`]): a
    /// connection that closes drops it, and a queued hash is skipped.
    _token: std::sync::Arc<()>,
}

/// A check for the shell to run off the core's thread, then report with
/// [`Broker::handle_auth_checked`].
#[derive(Debug)]
pub struct PendingCheck {
    /// The connection whose CONNECT waits for it.
    pub conn: ConnId,
    /// The work.
    pub check: AuthCheck,
}

impl Broker {
    /// Parks the CONNECT until its check is reported.
    pub(super) fn defer_connect(
        &mut self,
        conn: ConnId,
        connect: Connect,
        username: Option<MqttString>,
        check: AuthCheck,
    ) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let token = std::sync::Arc::new(());
        let check = check.wanted_while(&token);
        c.checking = Some(Box::new(Waiting {
            connect: Box::new(connect),
            username,
            _token: token,
        }));
        self.auth_checks.push_back(PendingCheck { conn, check });
        self.stats.auth_checks += 1;
        self.update_reading(conn);
    }

    /// The next check to run off the core's thread; drain it after each
    /// input, with the other output. A shell whose [`Authenticator`]
    /// returns [`AuthDecision::Check`] must run these, or its clients wait
    /// until their connect timeout.
    ///
    /// [`Authenticator`]: super::Authenticator
    /// [`AuthDecision::Check`]: super::AuthDecision::Check
    #[must_use]
    pub fn poll_auth_check(&mut self) -> Option<PendingCheck> {
        self.auth_checks.pop_front()
    }

    /// A check's outcome: the waiting CONNECT is let in (`Ok`) or refused
    /// with the code (one a CONNACK cannot carry becomes 0x87 Not
    /// authorized). Ignored if the connection has gone or closed since.
    pub fn handle_auth_checked(
        &mut self,
        now: Instant,
        conn: ConnId,
        outcome: Result<(), ReasonCode>,
    ) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let Some(waiting) = c.checking.take() else {
            return;
        };
        if c.closing {
            return;
        }
        let Waiting {
            connect, username, ..
        } = *waiting;
        match outcome {
            Ok(()) => self.admit(now, conn, *connect, username, None),
            Err(code) => {
                let code = if code.is_error() && code.is_valid_for(PacketType::ConnAck) {
                    code
                } else {
                    ReasonCode::NotAuthorized
                };
                self.reject(now, conn, &connect, code);
            }
        }
        // What the decision made happen (a refusal closes the connection).
        self.process_events(now, conn);
        // Its pipelined packets are read again (if it is still open).
        self.update_reading(conn);
        self.after_input(conn);
    }
}
