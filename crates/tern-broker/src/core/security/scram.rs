//! SCRAM-SHA-256 and SCRAM-SHA-512 enhanced authentication against a
//! password file's `SCRAM-SHA-256$` and `SCRAM-SHA-512$` lines: an
//! [`AuthExchange`] over tern-session's [`ScramServer`].
//!
//! The server's nonce is made from random bytes the caller passes in
//! ([`start_scram`]): the core has no random source of its own, so a
//! shell passes the operating system's and a simulation a seeded one.

use super::PasswordFile;
use crate::{AuthExchange, AuthStart, AuthStep};
use bytes::Bytes;
use std::sync::Arc;
use tern_codec::{MqttString, ReasonCode};
use tern_session::scram::{ClientFirst, ScramError, ScramServer, nonce_from_bytes};

pub use tern_session::scram::{MIN_ITERATIONS, Mechanism, SCRAM_SHA_256, SCRAM_SHA_512};

/// How many random bytes a server nonce is made of (RFC 5802 asks for a
/// nonce that is not predictable; 18 bytes are 24 base64 characters).
pub const NONCE_RANDOM_LEN: usize = 18;

/// A SCRAM-SHA-256 exchange for a client, checked against `users`'
/// SCRAM credentials; `random` makes the server nonce (use
/// [`NONCE_RANDOM_LEN`] fresh random bytes). [`start_scram_with`] for
/// another mechanism.
///
/// The user SCRAM names must be the one the connection already has when
/// there is one: the TLS identity, the CONNECT's User Name, or on
/// re-authentication the user authenticated before (else 0x87). SCRAM
/// names users by their SASLprep'd form (RFC 5802 §5.1, RFC 4013), so that
/// name is compared after SASLprep too: a CONNECT User Name `Ångström`
/// written with a combining ring matches the SCRAM user `Ångström` written
/// with the precomposed letter. A name SASLprep refuses is compared as
/// given (and so matches no SCRAM user). An
/// unknown user and a wrong password are both 0x86 Bad User Name or
/// Password, after the same two steps: an unknown user gets a decoy
/// credential ([`PasswordFile::decoy_scram_credential`]), so the exchange
/// does not tell who exists. A malformed SCRAM message is 0x87 Not
/// authorized.
pub fn start_scram(
    users: Arc<PasswordFile>,
    start: AuthStart<'_>,
    random: &[u8],
) -> Box<dyn AuthExchange> {
    start_scram_with(Mechanism::Sha256, users, start, random)
}

/// [`start_scram`] under `mechanism`: a user whose line is for another
/// mechanism is refused as an unknown one (0x86, after the same steps).
pub fn start_scram_with(
    mechanism: Mechanism,
    users: Arc<PasswordFile>,
    start: AuthStart<'_>,
    random: &[u8],
) -> Box<dyn AuthExchange> {
    let expected = match start.reauthenticating {
        Some(current) => current,
        None => start.identity.or(start.username),
    };
    Box::new(ScramExchange {
        mechanism,
        users,
        nonce: nonce_from_bytes(random),
        expected: expected
            .map(|name| tern_session::scram::saslprep(name).unwrap_or_else(|| name.to_string())),
        state: State::First,
    })
}

#[derive(Debug)]
struct ScramExchange {
    mechanism: Mechanism,
    users: Arc<PasswordFile>,
    nonce: String,
    expected: Option<String>,
    state: State,
}

#[derive(Debug)]
enum State {
    First,
    Final { server: ScramServer, user: String },
    Done,
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::First => self.first(data),
            State::Final { server, user } => match server.finish(data) {
                Ok(server_final) => AuthStep::Success {
                    data: Some(Bytes::from(server_final)),
                    username: MqttString::try_from(user).ok(),
                },
                Err(e) => failure(&e),
            },
            State::Done => AuthStep::Failure(ReasonCode::ProtocolError),
        }
    }

    /// The AUTH 0x18 after the client's first message names its step and
    /// mechanism: Reason String `SCRAM-SHA-256 server-first-message`, User
    /// Property `mechanism` (diagnostics only; left out when the client's
    /// Maximum Packet Size has no room for them).
    fn diagnostics(&self) -> tern_codec::AckProperties {
        let mut d = tern_codec::AckProperties::default();
        if let State::Final { .. } = self.state {
            let name = self.mechanism.name();
            d.reason_string = MqttString::try_from(format!("{name} server-first-message")).ok();
            if let (Ok(key), Ok(value)) = (
                MqttString::try_from("mechanism".to_string()),
                MqttString::try_from(name.to_string()),
            ) {
                d.user_properties
                    .push(tern_codec::UserProperty { key, value });
            }
        }
        d
    }
}

impl ScramExchange {
    fn first(&mut self, data: &[u8]) -> AuthStep {
        let first = match ClientFirst::parse(data) {
            Ok(first) => first,
            Err(e) => return failure(&e),
        };
        if self.expected.as_ref().is_some_and(|u| *u != first.username) {
            return AuthStep::Failure(ReasonCode::NotAuthorized);
        }
        let m = self.mechanism;
        let credential = match self.users.scram_credential(&first.username, m) {
            Some(credential) => credential.clone(),
            None => self.users.decoy_scram_credential(&first.username, m),
        };
        match ScramServer::start(&first, credential, &self.nonce) {
            Ok((server, server_first)) => {
                self.state = State::Final {
                    server,
                    user: first.username,
                };
                AuthStep::Continue(Bytes::from(server_first))
            }
            Err(e) => failure(&e),
        }
    }
}

fn failure(e: &ScramError) -> AuthStep {
    AuthStep::Failure(match e {
        ScramError::InvalidProof => ReasonCode::BadUserNameOrPassword,
        _ => ReasonCode::NotAuthorized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::PasswordHash;
    use tern_session::scram::ScramClient;

    fn users() -> Arc<PasswordFile> {
        let line = format!(
            "alice:{}\n",
            PasswordHash::scram_sha256(b"pw", [1; 16], 4096)
        );
        Arc::new(PasswordFile::parse(&line).unwrap())
    }

    fn start(username: Option<&str>) -> AuthStart<'_> {
        AuthStart {
            client_id: "c",
            username,
            identity: None,
            reauthenticating: None,
        }
    }

    #[test]
    fn a_full_exchange_names_the_user() {
        let mut client = ScramClient::new("alice", b"pw", "cnonce").unwrap();
        let mut ex = start_scram(users(), start(None), &[9; NONCE_RANDOM_LEN]);
        let AuthStep::Continue(server_first) = ex.step(&client.client_first()) else {
            panic!("expected server-first");
        };
        let client_final = client.server_first(&server_first).unwrap();
        let AuthStep::Success { data, username } = ex.step(&client_final) else {
            panic!("expected success");
        };
        client.server_final(&data.unwrap()).unwrap();
        assert_eq!(username.unwrap().as_str(), "alice");
        // Anything after the end is refused.
        assert_eq!(ex.step(b""), AuthStep::Failure(ReasonCode::ProtocolError));
    }

    /// RFC 4013 §2.2 (normalisation form KC, as RFC 3454 §4 applies it):
    /// a decomposed CONNECT User Name is the same user as the SCRAM name,
    /// which the client prepared.
    #[test]
    fn the_connect_user_name_is_compared_after_saslprep() {
        let line = format!(
            "\u{C5}ngstr\u{F6}m:{}\n",
            PasswordHash::scram_sha256(b"pw", [1; 16], 4096)
        );
        let users = Arc::new(PasswordFile::parse(&line).unwrap());
        let decomposed = "A\u{30A}ngstro\u{308}m";
        let mut client = ScramClient::new(decomposed, b"pw", "n").unwrap();
        let mut ex = start_scram(users, start(Some(decomposed)), &[1; 18]);
        let AuthStep::Continue(sf) = ex.step(&client.client_first()) else {
            panic!("the names are the same user after SASLprep");
        };
        let AuthStep::Success { username, .. } = ex.step(&client.server_first(&sf).unwrap()) else {
            panic!("expected success");
        };
        assert_eq!(username.unwrap().as_str(), "\u{C5}ngstr\u{F6}m");
    }

    #[test]
    fn refusals_carry_the_reason_code() {
        let users = users();
        // An unknown user is refused at the same step as a wrong password,
        // with a salt that does not change between attempts.
        let salt = |user: &str| {
            let client = ScramClient::new(user, b"pw", "n").unwrap();
            let mut ex = start_scram(users.clone(), start(None), &[1; 18]);
            match ex.step(&client.client_first()) {
                AuthStep::Continue(sf) => String::from_utf8(sf.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(salt("bob"), salt("bob"));
        assert_ne!(salt("bob"), salt("carol"));
        let cases: [(&str, &[u8], Option<&str>, ReasonCode); 4] = [
            ("bob", b"pw", None, ReasonCode::BadUserNameOrPassword),
            ("alice", b"pw", Some("bob"), ReasonCode::NotAuthorized),
            ("alice", b"nope", None, ReasonCode::BadUserNameOrPassword),
            ("alice", b"pw", Some("alice"), ReasonCode::Success),
        ];
        for (user, password, connect_user, want) in cases {
            let mut client = ScramClient::new(user, password, "n").unwrap();
            let mut ex = start_scram(users.clone(), start(connect_user), &[1; 18]);
            let got = match ex.step(&client.client_first()) {
                AuthStep::Continue(sf) => match ex.step(&client.server_first(&sf).unwrap()) {
                    AuthStep::Success { .. } => ReasonCode::Success,
                    AuthStep::Failure(code) => code,
                    other => panic!("{other:?}"),
                },
                AuthStep::Failure(code) => code,
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{user} {connect_user:?}");
        }
        let mut ex = start_scram(users, start(None), &[1; 18]);
        assert_eq!(
            ex.step(b"garbage"),
            AuthStep::Failure(ReasonCode::NotAuthorized)
        );
    }
}
