//! The password file and ACL file, read by the shell and checked by the
//! core through an [`Authenticator`]: mosquitto's `password_file`,
//! `acl_file` and `allow_anonymous`.
//!
//! [`SecuritySettings::load`] reads both files (errors name the file and
//! line); [`FileAuthenticator`] answers the core's questions from what was
//! loaded. A reload ([`FileAuthenticator::replace`], on SIGHUP) swaps the
//! rules for new connections and every later check without touching the
//! connections: the core asks through a shared, swappable reference.

use crate::{
    AuthCheck, AuthDecision, AuthExchange, AuthStart, Authenticator, Client,
    security::{
        Access, AclFile, PasswordFile,
        scram::{Mechanism, NONCE_RANDOM_LEN, start_scram_with},
    },
};
use serde::Deserialize;
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};
use tern_codec::{Connect, ReasonCode};
use tern_topic::TopicName;

/// The `[security]` table: who may connect and what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// mosquitto's password file (`tern passwd` or `mosquitto_passwd`
    /// writes it). A client giving a user name must give that user's
    /// password, or is refused with 0x86 (MQTT 3.1.1: return code 4).
    pub password_file: Option<PathBuf>,
    /// mosquitto's ACL file: what each user (and anonymous clients) may
    /// publish (`write`) and receive (`read`). Absent: everything.
    pub acl_file: Option<PathBuf>,
    /// Whether clients without a user name (or, without a password file,
    /// any client) may connect; refused ones get 0x87 (MQTT 3.1.1: return
    /// code 5). Absent: true without a password file, false with one.
    pub allow_anonymous: Option<bool>,
    /// How many password checks (hashes) run at once, each on a thread of
    /// its own, off the routing task. Absent: all cores but one (at least
    /// one). 0 runs them on the routing task itself, as mosquitto does: for
    /// measuring what that costs, not for use.
    pub check_threads: Option<usize>,
    /// The nice value (Linux scheduling priority, -20 highest to 19
    /// lowest) the check threads set for themselves, so that routing wins
    /// when both want a core. Absent: 10. A value below the process's own
    /// needs the privilege to raise priority; refused, the threads keep the
    /// process's. Other systems ignore it.
    #[serde(deserialize_with = "nice_value")]
    pub check_threads_nice: Option<i32>,
    /// mosquitto's `clientid_prefixes`: only clients whose identifier
    /// starts with this may connect; others get CONNACK 0x85 (MQTT 3.1.1:
    /// return code 2). Absent: any identifier.
    pub clientid_prefixes: Option<String>,
}

/// The nice value used when `check_threads_nice` is absent.
pub const DEFAULT_CHECK_NICE: i32 = 10;

fn nice_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let v = i32::deserialize(d)?;
    if (-20..=19).contains(&v) {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a nice value: use -20 (highest priority) to 19 (lowest)"
        )))
    }
}

/// What [`SecuritySettings::load`] read: the rules in force.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Shared with SCRAM exchanges in progress, which finish against the
    /// file they started with.
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<AclFile>,
    allow_anonymous: bool,
}

/// A password or ACL file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong (with the line, for a bad line).
    pub why: String,
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for SecurityError {}

impl SecuritySettings {
    /// Whether anonymous clients get in, `allow_anonymous`'s default applied.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.password_file.is_none())
    }

    /// Reads the files. Nothing is half-loaded: either both files are good
    /// or this names the one that is not.
    pub fn load(&self) -> Result<Rules, SecurityError> {
        fn read(path: &Path) -> Result<String, SecurityError> {
            std::fs::read_to_string(path).map_err(|e| SecurityError {
                path: path.to_path_buf(),
                why: format!("cannot read: {e}"),
            })
        }
        let passwords = match &self.password_file {
            None => None,
            Some(path) => Some(Arc::new(PasswordFile::parse(&read(path)?).map_err(
                |e| SecurityError {
                    path: path.clone(),
                    why: e.to_string(),
                },
            )?)),
        };
        let acl = match &self.acl_file {
            None => None,
            Some(path) => Some(AclFile::parse(&read(path)?).map_err(|e| SecurityError {
                path: path.clone(),
                why: e.to_string(),
            })?),
        };
        Ok(Rules {
            passwords,
            acl,
            allow_anonymous: self.allows_anonymous(),
        })
    }
}

impl Rules {
    /// Rules that let everyone in and allow everything.
    pub fn allow_all() -> Self {
        Self {
            allow_anonymous: true,
            ..Self::default()
        }
    }

    /// What changes from these rules to `new`, for the reload's log line
    /// (user names and rules, never hashes).
    fn changes_to(&self, new: &Rules) -> String {
        super::security_changes::describe(
            self.passwords.as_deref(),
            new.passwords.as_deref(),
            self.acl.as_ref(),
            new.acl.as_ref(),
        )
    }

    fn authenticate(&self, connect: &Connect, identity: Option<&str>) -> AuthDecision {
        if identity.is_some() {
            // A verified client certificate names the user; no password is
            // asked for (mosquitto's use_identity_as_username).
            return AuthDecision::Accept;
        }
        match (&connect.username, &self.passwords) {
            (Some(user), Some(passwords)) => {
                // [MQTT-3.1.4-2]; 3.1.1: return code 4.
                let refused = ReasonCode::BadUserNameOrPassword;
                let Some(password) = connect.password.as_deref() else {
                    return AuthDecision::Reject(refused);
                };
                // The hash (PBKDF2, argon2id) is computed off the core's
                // thread, so a storm of CONNECTs does not stall routing.
                let (passwords, user) = (Arc::clone(passwords), String::from(user.as_str()));
                let password = password.to_vec();
                AuthDecision::Check(AuthCheck::new(move || {
                    if passwords.verify(&user, &password) {
                        Ok(())
                    } else {
                        Err(refused)
                    }
                }))
            }
            // Without a password file a user name proves nothing: the
            // client counts as anonymous.
            _ if self.allow_anonymous => AuthDecision::Accept,
            // 3.1.1: return code 5.
            _ => AuthDecision::Reject(ReasonCode::NotAuthorized),
        }
    }

    fn allows(&self, client: Client<'_>, topic: &TopicName, access: Access) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.allows(client.client_id, client.username, topic, access))
    }
}

/// Fills a buffer with random bytes (SCRAM server nonces), or says why it
/// could not.
pub type RandomSource = Arc<dyn Fn(&mut [u8]) -> Result<(), RandomError> + Send + Sync>;

/// The random source failed: no SCRAM nonce can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomError(pub String);

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the random source failed: {}", self.0)
    }
}

impl std::error::Error for RandomError {}

/// The exchange of a client whose server nonce could not be made: its
/// first step refuses it with 0x80 Unspecified error (a CONNACK, or a
/// DISCONNECT when re-authenticating).
#[derive(Debug)]
struct NoNonce;

impl AuthExchange for NoNonce {
    fn step(&mut self, _data: &[u8]) -> crate::AuthStep {
        crate::AuthStep::Failure(ReasonCode::UnspecifiedError)
    }
}

/// The [`Authenticator`] the server gives the core: the loaded [`Rules`],
/// swappable while the broker runs. Clones share the rules.
///
/// With a password file it offers MQTT 5 enhanced authentication with
/// SCRAM-SHA-256 and SCRAM-SHA-512 for the users the file has
/// `SCRAM-SHA-256$` or `SCRAM-SHA-512$` lines for;
/// the server nonces come from the operating system's random source (see
/// [`with_random`](Self::with_random)). If that fails, the client is
/// refused with 0x80 Unspecified error (logged) and the broker goes on.
#[derive(Clone)]
pub struct FileAuthenticator {
    rules: Arc<RwLock<Rules>>,
    random: RandomSource,
}

impl fmt::Debug for FileAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileAuthenticator")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl FileAuthenticator {
    /// Answers from `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules: Arc::new(RwLock::new(rules)),
            random: Arc::new(|buf: &mut [u8]| {
                getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
            }),
        }
    }

    /// Takes SCRAM nonces' random bytes from `random` instead of the
    /// operating system (tests and simulations make them repeatable).
    pub fn with_random(mut self, random: RandomSource) -> Self {
        self.random = random;
        self
    }

    /// Puts new rules in force for every later check (connections already
    /// open stay open).
    pub fn replace(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    fn with<R>(&self, f: impl FnOnce(&Rules) -> R) -> R {
        f(&self.rules.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Authenticator for FileAuthenticator {
    fn authenticate(&mut self, connect: &Connect, identity: Option<&str>) -> AuthDecision {
        self.with(|r| r.authenticate(connect, identity))
    }

    fn start_auth(&mut self, method: &str, start: AuthStart<'_>) -> Option<Box<dyn AuthExchange>> {
        let mechanism = Mechanism::from_name(method)?;
        let users = self.with(|r| r.passwords.clone())?;
        let mut random = [0u8; NONCE_RANDOM_LEN];
        // No nonce, no SCRAM: a broker whose OS has no randomness must not
        // hand out predictable nonces, nor stop; this client is refused.
        if let Err(e) = (self.random)(&mut random) {
            tracing::error!(client_id = start.client_id, "refused {method}: {e}");
            return Some(Box::new(NoNonce));
        }
        Some(start_scram_with(mechanism, users, start, &random))
    }

    fn authorize_publish(&mut self, client: Client<'_>, topic: &TopicName) -> bool {
        self.with(|r| r.allows(client, topic, Access::Write))
    }

    fn authorize_receive(&mut self, client: Client<'_>, topic: &TopicName) -> bool {
        self.with(|r| r.allows(client, topic, Access::Read))
    }
}

/// The warning for a listener reachable from other hosts while any client
/// may connect without a password; `None` when there is nothing to warn of.
pub fn open_listener_warning(settings: &super::BrokerSettings) -> Option<String> {
    let l = &settings.listeners;
    let addr =
        (l.tcp.iter().chain(&l.ws).chain(&l.tls).chain(&l.wss)).find(|a| !a.ip().is_loopback())?;
    settings.security.allows_anonymous().then(|| {
        format!(
            "listening on {addr}, reachable from other hosts, and anonymous clients may \
             connect, publish and subscribe: set a password file (--password-file, \
             [security] password_file) or allow_anonymous = false"
        )
    })
}

/// A reload that could not use a file; what it configures stays as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadError {
    /// The password file or ACL file.
    Security(SecurityError),
    /// A TLS file.
    Tls(super::tls::TlsError),
    /// The settings file (the message names it, and the key and line).
    Settings(String),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Security(e) => e.fmt(f),
            ReloadError::Tls(e) => e.fmt(f),
            ReloadError::Settings(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Reads the files again, on SIGHUP or when asked.
#[derive(Debug, Clone)]
pub(crate) struct Reloader {
    settings: SecuritySettings,
    auth: FileAuthenticator,
    tls: Option<(super::tls::TlsFiles, super::tls::Acceptor)>,
    /// The settings file's limits.
    limits: super::reload::LimitsReloader,
}

impl Reloader {
    pub(crate) fn new(
        settings: SecuritySettings,
        auth: FileAuthenticator,
        tls: Option<(super::tls::TlsFiles, super::tls::Acceptor)>,
        limits: super::reload::LimitsReloader,
    ) -> Self {
        Self {
            settings,
            auth,
            tls,
            limits,
        }
    }

    /// Reloads on each SIGHUP until shutdown.
    pub(crate) fn on_hangup(&self, mut shutdown: tokio::sync::broadcast::Receiver<()>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGHUP (no reloading): {e}");
                    return;
                }
            };
            let this = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = hangup.recv() => {
                            tracing::info!("SIGHUP: reloading");
                            let _ = this.reload();
                        }
                        _ = shutdown.recv() => return,
                    }
                }
            });
        }
        #[cfg(not(unix))]
        let _ = &mut shutdown;
    }

    /// Reads the files; each part that loads is put in force, each that
    /// does not is logged and stays as it was; the first error is returned.
    pub(crate) fn reload(&self) -> Result<(), ReloadError> {
        let mut result = Ok(());
        match self.settings.load() {
            Ok(rules) => {
                let changes = self.auth.with(|old| old.changes_to(&rules));
                self.auth.replace(rules);
                tracing::info!("reloaded the password and ACL files: {changes}");
            }
            Err(e) => {
                tracing::error!("reload: {e}; the previous password and ACL rules stay in force");
                result = Err(ReloadError::Security(e));
            }
        }
        if let Some((files, acceptor)) = &self.tls {
            match files.load() {
                Ok(config) => {
                    acceptor.replace(config);
                    tracing::info!("reloaded the TLS certificates");
                }
                Err(e) => {
                    tracing::error!("reload: {e}; the previous certificates stay in force");
                    result = result.and(Err(ReloadError::Tls(e)));
                }
            }
        }
        if let Err(e) = self.limits.reload() {
            result = result.and(Err(ReloadError::Settings(e)));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::BrokerSettings;

    #[test]
    fn a_listener_open_to_other_hosts_without_authentication_is_warned_of() {
        let mut s = BrokerSettings::default();
        assert_eq!(open_listener_warning(&s), None, "loopback only");
        s.listeners.tcp = vec!["0.0.0.0:1883".parse().unwrap()];
        let warning = open_listener_warning(&s).expect("a warning");
        assert!(warning.contains("0.0.0.0:1883") && warning.contains("anonymous"));
        s.security.password_file = Some("passwd".into());
        assert_eq!(open_listener_warning(&s), None, "clients authenticate");
        s.security.allow_anonymous = Some(true);
        assert!(open_listener_warning(&s).is_some());
    }
}
