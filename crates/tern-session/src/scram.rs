//! SCRAM-SHA-256 (RFC 5802, RFC 7677) and SCRAM-SHA-512 (the same with
//! SHA-512) for MQTT 5 enhanced authentication, sans-IO, both roles:
//! [`ScramClient`] and [`ScramServer`]; [`Mechanism`] says which.
//!
//! The messages are the AUTH packets' Authentication Data (method
//! [`SCRAM_SHA_256`] or [`SCRAM_SHA_512`]): client-first in CONNECT, server-first in AUTH 0x18,
//! client-final in AUTH 0x18, server-final in the CONNACK (or, on
//! re-authentication, in AUTH 0x00).
//!
//! Nothing here is random: each side's nonce is an argument (build it from
//! random bytes with [`nonce_from_bytes`]), so a simulation replays
//! exactly. The server never sees a password: it verifies against a
//! [`ScramCredential`] (salt, iteration count, StoredKey, ServerKey), and
//! every comparison of secrets is constant-time.
//!
//! With the `saslprep` feature, user names and passwords are prepared with
//! SASLprep (RFC 4013) as RFC 5802 §2.2 asks, on both sides: a user name
//! SASLprep refuses is refused; a password it refuses (or one that is not
//! UTF-8) is used as its bytes, on both sides alike. Without the feature
//! both are used as their UTF-8 bytes, which is the same for ASCII.
//!
//! Not supported: channel binding (a `p=` GS2 flag is refused; `y` is
//! accepted as RFC 5802 §6 allows when the server offers no binding) and an
//! authorization identity (`a=`).

use alloc::{string::String, vec, vec::Vec};
use base64::{Engine, engine::general_purpose::STANDARD};
use core::fmt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The MQTT Authentication Method name of SCRAM-SHA-256.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The MQTT Authentication Method name of SCRAM-SHA-512.
pub const SCRAM_SHA_512: &str = "SCRAM-SHA-512";

/// Which SCRAM mechanism: the hash behind every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (RFC 7677).
    #[default]
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Mechanism {
    /// Its name, the MQTT Authentication Method.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => SCRAM_SHA_256,
            Self::Sha512 => SCRAM_SHA_512,
        }
    }

    /// The mechanism of this Authentication Method name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            SCRAM_SHA_256 => Some(Self::Sha256),
            SCRAM_SHA_512 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The length of its hash, keys, proofs and signatures, in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}
/// The fewest iterations a client accepts, and the default written for new
/// credentials (RFC 7677 §4: at least 4096).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most iterations a client computes or a credential may ask for: a
/// bound on the work a server (or a credential file) can demand.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The longest SCRAM message accepted, in bytes (ours are under 300).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar; says what is wrong.
    Malformed(&'static str),
    /// The client asked for channel binding, which is not offered.
    ChannelBindingUnsupported,
    /// The combined nonce does not start with the client's nonce, or the
    /// client-final repeated a different one.
    NonceMismatch,
    /// The iteration count is outside what this side accepts.
    IterationCount(u32),
    /// The client's proof is wrong: wrong password (or unknown user).
    InvalidProof,
    /// The server's signature is wrong: the server does not know the
    /// credential (or the exchange was tampered with).
    InvalidServerSignature,
    /// The server ended the exchange with `e=` and this error value.
    Server(String),
}

impl fmt::Display for ScramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed SCRAM message: {what}"),
            Self::ChannelBindingUnsupported => f.write_str("channel binding is not supported"),
            Self::NonceMismatch => f.write_str("SCRAM nonce mismatch"),
            Self::IterationCount(i) => write!(
                f,
                "SCRAM iteration count {i} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            ),
            Self::InvalidProof => f.write_str("invalid SCRAM client proof"),
            Self::InvalidServerSignature => f.write_str("invalid SCRAM server signature"),
            Self::Server(e) => write!(f, "SCRAM server error: {e}"),
        }
    }
}

impl core::error::Error for ScramError {}

/// What a server stores for a user (RFC 5802 §3): never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The mechanism it is for.
    pub mechanism: Mechanism,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The user's salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))` ([`Mechanism::key_len`] bytes).
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")` ([`Mechanism::key_len`] bytes).
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The SCRAM-SHA-256 credential for `password` with `salt` (pick it at
    /// random) and `iterations` of PBKDF2-HMAC-SHA-256.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        Self::derive_for(Mechanism::Sha256, password, salt, iterations)
    }

    /// The credential for `password` under `mechanism`.
    pub fn derive_for(mechanism: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let m = mechanism;
        let salted = salted_password(m, &prepare_password(password), salt, iterations);
        let client_key = hmac(m, &salted, b"Client Key");
        Self {
            mechanism,
            iterations,
            salt: salt.to_vec(),
            stored_key: hash(m, &client_key),
            server_key: hmac(m, &salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was derived from
    /// (constant-time), so a plain CONNECT password can be checked too.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let m = self.mechanism;
        let salted = salted_password(m, &prepare_password(password), &self.salt, self.iterations);
        let stored = hash(m, &hmac(m, &salted, b"Client Key"));
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

/// A nonce (printable, without `,`) made from random bytes: their base64.
pub fn nonce_from_bytes(random: &[u8]) -> String {
    STANDARD.encode(random)
}

/// A client's first message, parsed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name the client authenticates as (`=2C` and `=3D` decoded).
    pub username: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

impl ClientFirst {
    /// Parses `gs2-header client-first-message-bare`.
    pub fn parse(data: &[u8]) -> Result<Self, ScramError> {
        let text = message_text(data)?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
            _ => return Err(ScramError::Malformed("GS2 flag must be n, y or p=")),
        }
        let authzid = parts
            .next()
            .ok_or(ScramError::Malformed("missing GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "an authorization identity (a=) is not supported",
            ));
        }
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("missing client-first-message-bare"))?;
        let mut attrs = bare.split(',');
        if attrs.next().is_some_and(|a| a.starts_with("m=")) {
            return Err(ScramError::Malformed(
                "mandatory extension (m=) not supported",
            ));
        }
        let mut attrs = bare.split(',');
        let username = prepare_username(decode_username(attribute(attrs.next(), 'n')?)?)?;
        let nonce = attribute(attrs.next(), 'r')?;
        check_nonce(nonce)?;
        // Optional extensions after the nonce are ignored (RFC 5802 §5.1).
        for extra in attrs {
            check_extension(extra)?;
        }
        Ok(Self {
            username,
            gs2_header: String::from(&text[..flag.len() + authzid.len() + 2]),
            bare: String::from(bare),
            nonce: String::from(nonce),
        })
    }
}

/// The server side of one SCRAM-SHA-256 exchange.
///
/// [`ClientFirst::parse`] the client's first message, look its user up,
/// [`start`](Self::start) with the credential and a fresh nonce (send the
/// server-first message it returns), then [`finish`](Self::finish) with the
/// client's final message: the server-final message to send on success.
#[derive(Debug, Clone)]
pub struct ScramServer {
    credential: ScramCredential,
    gs2_header: String,
    nonce: String,
    auth_message_prefix: String,
}

impl ScramServer {
    /// Answers `first` for a user with `credential`: returns the exchange
    /// and the server-first message. `server_nonce` must be printable
    /// ASCII without `,` (see [`nonce_from_bytes`]).
    pub fn start(
        first: &ClientFirst,
        credential: ScramCredential,
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        check_nonce(server_nonce)?;
        let nonce = alloc::format!("{}{}", first.nonce, server_nonce);
        let server_first = alloc::format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        let auth_message_prefix = alloc::format!("{},{server_first},", first.bare);
        Ok((
            Self {
                credential,
                gs2_header: first.gs2_header.clone(),
                nonce,
                auth_message_prefix,
            },
            server_first.into_bytes(),
        ))
    }

    /// Verifies the client-final message; on success returns the
    /// server-final message (`v=` with the server signature).
    pub fn finish(&self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = message_text(data)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof (p=)"))?;
        let mut attrs = without_proof.split(',');
        let binding = STANDARD
            .decode(attribute(attrs.next(), 'c')?)
            .map_err(|_| ScramError::Malformed("channel binding (c=) is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding (c=) does not repeat the GS2 header",
            ));
        }
        let nonce = attribute(attrs.next(), 'r')?;
        if !bool::from(nonce.as_bytes().ct_eq(self.nonce.as_bytes())) {
            return Err(ScramError::NonceMismatch);
        }
        for extra in attrs {
            check_extension(extra)?;
        }
        let m = self.credential.mechanism;
        let proof = STANDARD
            .decode(proof)
            .ok()
            .filter(|p| p.len() == m.key_len())
            .ok_or(ScramError::Malformed(
                "proof (p=) is not base64 of the hash's length",
            ))?;
        let auth_message = self.auth_message(without_proof);
        let client_signature = hmac(m, &self.credential.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !bool::from(hash(m, &client_key).ct_eq(&self.credential.stored_key)) {
            return Err(ScramError::InvalidProof);
        }
        let signature = hmac(m, &self.credential.server_key, auth_message.as_bytes());
        Ok(alloc::format!("v={}", STANDARD.encode(signature)).into_bytes())
    }

    fn auth_message(&self, client_final_without_proof: &str) -> String {
        alloc::format!("{}{client_final_without_proof}", self.auth_message_prefix)
    }
}

/// The client side of one SCRAM-SHA-256 exchange.
///
/// Send [`client_first`](Self::client_first) as the CONNECT's (or the
/// re-authenticating AUTH's) Authentication Data; answer the server-first
/// with [`server_first`](Self::server_first); check the server-final with
/// [`server_final`](Self::server_final): only then is the server known to
/// hold the credential.
#[derive(Clone)]
pub struct ScramClient {
    mechanism: Mechanism,
    password: Vec<u8>,
    bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("bare", &self.bare)
            .finish_non_exhaustive()
    }
}

const GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// A SCRAM-SHA-256 exchange for `username` with `password`; `nonce`
    /// must be printable ASCII without `,` (see [`nonce_from_bytes`]).
    pub fn new(username: &str, password: &[u8], nonce: &str) -> Result<Self, ScramError> {
        Self::with_mechanism(Mechanism::Sha256, username, password, nonce)
    }

    /// An exchange under `mechanism`, as [`new`](Self::new).
    pub fn with_mechanism(
        mechanism: Mechanism,
        username: &str,
        password: &[u8],
        nonce: &str,
    ) -> Result<Self, ScramError> {
        check_nonce(nonce)?;
        let username = prepare_username(String::from(username))?;
        let mut bare = String::from("n=");
        for c in username.chars() {
            match c {
                ',' => bare.push_str("=2C"),
                '=' => bare.push_str("=3D"),
                c => bare.push(c),
            }
        }
        bare.push_str(",r=");
        bare.push_str(nonce);
        Ok(Self {
            mechanism,
            password: prepare_password(password).into_owned(),
            bare,
            nonce: String::from(nonce),
            server_signature: None,
        })
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        alloc::format!("{GS2_HEADER}{}", self.bare).into_bytes()
    }

    /// Answers the server-first message with the client-final message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let (text, nonce, salt, iterations) = parse_server_first(data, &self.nonce)?;
        let without_proof = alloc::format!("c={},r={nonce}", STANDARD.encode(GS2_HEADER));
        let auth_message = alloc::format!("{},{text},{without_proof}", self.bare);
        let m = self.mechanism;
        let salted = salted_password(m, &self.password, &salt, iterations);
        let client_key = hmac(m, &salted, b"Client Key");
        let stored_key = hash(m, &client_key);
        let client_signature = hmac(m, &stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = hmac(m, &salted, b"Server Key");
        self.server_signature = Some(hmac(m, &server_key, auth_message.as_bytes()));
        Ok(alloc::format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (constant-time).
    pub fn server_final(&self, data: &[u8]) -> Result<(), ScramError> {
        let text = message_text(data)?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(e) = first.strip_prefix("e=") {
            return Err(ScramError::Server(String::from(e)));
        }
        let expected = self
            .server_signature
            .as_ref()
            .ok_or(ScramError::Malformed("server-final before server-first"))?;
        let got = STANDARD
            .decode(attribute(Some(first), 'v')?)
            .map_err(|_| ScramError::Malformed("verifier (v=) is not base64"))?;
        if got.len() == expected.len() && bool::from(got.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}

/// Parses a server-first message answering `client_nonce`: the text, the
/// combined nonce, the salt and the iteration count.
fn parse_server_first<'a>(
    data: &'a [u8],
    client_nonce: &str,
) -> Result<(&'a str, &'a str, Vec<u8>, u32), ScramError> {
    let text = message_text(data)?;
    let mut attrs = text.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::Malformed(
            "mandatory extension (m=) not supported",
        ));
    }
    if let Some(e) = first.strip_prefix("e=") {
        return Err(ScramError::Server(String::from(e)));
    }
    let nonce = attribute(Some(first), 'r')?;
    check_nonce(nonce)?;
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
        return Err(ScramError::NonceMismatch);
    }
    let salt = STANDARD
        .decode(attribute(attrs.next(), 's')?)
        .map_err(|_| ScramError::Malformed("salt (s=) is not base64"))?;
    let iterations: u32 = attribute(attrs.next(), 'i')?
        .parse()
        .map_err(|_| ScramError::Malformed("iteration count (i=) is not a number"))?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(ScramError::IterationCount(iterations));
    }
    for extra in attrs {
        check_extension(extra)?;
    }
    Ok((text, nonce, salt, iterations))
}

/// The parsers on their own, for the fuzz target (the client's
/// server-first parser without the PBKDF2 that follows it).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// [`super::parse_server_first`]'s outcome.
    pub fn server_first(data: &[u8], client_nonce: &str) -> Result<(), super::ScramError> {
        super::parse_server_first(data, client_nonce).map(drop)
    }
}

// ---- the primitives ----

fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.key_len()];
    match m {
        Mechanism::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        Mechanism::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
    }
    out
}

fn hmac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match m {
        Mechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
        Mechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
    }
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::Sha256 => Sha256::digest(data).to_vec(),
        Mechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

// ---- SASLprep (RFC 4013) ----

/// A user name as SCRAM uses it: SASLprep'd with the `saslprep` feature
/// (refused if SASLprep refuses it), as given without.
fn prepare_username(name: String) -> Result<String, ScramError> {
    #[cfg(feature = "saslprep")]
    {
        match stringprep::saslprep(&name) {
            // Characters SASLprep maps to nothing can leave no name at all.
            Ok(prepared) if prepared.is_empty() => Err(ScramError::Malformed(
                "the user name is empty after SASLprep (RFC 4013)",
            )),
            Ok(prepared) if prepared.as_ref() == name => Ok(name),
            Ok(prepared) => Ok(String::from(prepared.as_ref())),
            Err(_) => Err(ScramError::Malformed(
                "the user name is not allowed by SASLprep (RFC 4013)",
            )),
        }
    }
    #[cfg(not(feature = "saslprep"))]
    Ok(name)
}

/// A password as SCRAM hashes it: SASLprep'd with the `saslprep` feature
/// when it is UTF-8 and SASLprep allows it, otherwise its bytes.
fn prepare_password(password: &[u8]) -> alloc::borrow::Cow<'_, [u8]> {
    use alloc::borrow::Cow;
    #[cfg(feature = "saslprep")]
    {
        let prepared = core::str::from_utf8(password)
            .ok()
            .and_then(|text| stringprep::saslprep(text).ok());
        if let Some(prepared) = prepared {
            return match prepared {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            };
        }
    }
    Cow::Borrowed(password)
}

/// SASLprep on its own (RFC 4013), as this module applies it to user names:
/// the prepared string, or `None` if SASLprep refuses it.
#[cfg(feature = "saslprep")]
pub fn saslprep(text: &str) -> Option<String> {
    stringprep::saslprep(text)
        .ok()
        .map(|p| String::from(p.as_ref()))
}

// ---- the grammar ----

fn message_text(data: &[u8]) -> Result<&str, ScramError> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::Malformed("message too long"));
    }
    core::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// The value of `name=value`, or what is wrong.
fn attribute(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let part = part.ok_or(ScramError::Malformed("an attribute is missing"))?;
    let mut chars = part.chars();
    if chars.next() != Some(name) || chars.next() != Some('=') {
        return Err(ScramError::Malformed("attributes out of order or missing"));
    }
    Ok(&part[2..])
}

fn check_extension(part: &str) -> Result<(), ScramError> {
    let b = part.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
        Ok(())
    } else {
        Err(ScramError::Malformed("bad attribute"))
    }
}

/// `printable = %x21-2B / %x2D-7E`, at least one.
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    if !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        Ok(())
    } else {
        Err(ScramError::Malformed(
            "nonce must be printable ASCII without ','",
        ))
    }
}

fn decode_username(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        out.push(match code {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => {
                return Err(ScramError::Malformed(
                    "'=' in a user name must be =2C or =3D",
                ));
            }
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example exchange, byte for byte, from both sides.
    #[test]
    fn rfc7677_test_vector() {
        let c_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let s_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let c_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let s_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

        let mut client = ScramClient::new("user", b"pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(client.client_first(), c_first.as_bytes());
        assert_eq!(
            client.server_first(s_first.as_bytes()).unwrap(),
            c_final.as_bytes()
        );
        client.server_final(s_final.as_bytes()).unwrap();

        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramCredential::derive(b"pencil", &salt, 4096);
        assert!(credential.verify_password(b"pencil"));
        assert!(!credential.verify_password(b"pencil "));
        let first = ClientFirst::parse(c_first.as_bytes()).unwrap();
        assert_eq!(first.username, "user");
        let (server, out) =
            ScramServer::start(&first, credential, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert_eq!(out, s_first.as_bytes());
        assert_eq!(
            server.finish(c_final.as_bytes()).unwrap(),
            s_final.as_bytes()
        );
    }

    /// SCRAM-SHA-512 has no RFC example: this is RFC 7677's exchange (same
    /// user, password, salt and nonces) under SHA-512, as scramp 1.5.0
    /// (Python, an independent implementation) computes it.
    #[test]
    fn sha512_exchange_matches_an_independent_implementation() {
        let c_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let s_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let c_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==";
        let s_final = "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==";
        let m = Mechanism::Sha512;
        let mut client =
            ScramClient::with_mechanism(m, "user", b"pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(client.client_first(), c_first.as_bytes());
        assert_eq!(
            client.server_first(s_first.as_bytes()).unwrap(),
            c_final.as_bytes()
        );
        client.server_final(s_final.as_bytes()).unwrap();

        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramCredential::derive_for(m, b"pencil", &salt, 4096);
        assert_eq!(
            STANDARD.encode(&credential.stored_key),
            "6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg=="
        );
        assert_eq!(
            STANDARD.encode(&credential.server_key),
            "jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA=="
        );
        assert!(credential.verify_password(b"pencil"));
        let first = ClientFirst::parse(c_first.as_bytes()).unwrap();
        let (server, out) =
            ScramServer::start(&first, credential, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert_eq!(out, s_first.as_bytes());
        assert_eq!(
            server.finish(c_final.as_bytes()).unwrap(),
            s_final.as_bytes()
        );
        // A SHA-256 proof is refused by a SHA-512 server (and its length).
        let sha256 = ScramCredential::derive(b"pencil", &salt, 4096);
        let (server, _) =
            ScramServer::start(&first, sha256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert!(server.finish(c_final.as_bytes()).is_err());
        assert_eq!(Mechanism::from_name("SCRAM-SHA-512"), Some(m));
        assert_eq!(m.name(), SCRAM_SHA_512);
    }

    /// RFC 4013 §3's examples.
    #[cfg(feature = "saslprep")]
    #[test]
    fn rfc4013_examples() {
        assert_eq!(saslprep("I\u{AD}X").as_deref(), Some("IX"), "soft hyphen");
        assert_eq!(saslprep("user").as_deref(), Some("user"));
        assert_eq!(saslprep("USER").as_deref(), Some("USER"), "no case folding");
        assert_eq!(saslprep("\u{AA}").as_deref(), Some("a"), "NFKC");
        assert_eq!(saslprep("\u{2168}").as_deref(), Some("IX"), "NFKC");
        assert_eq!(saslprep("\u{7}"), None, "prohibited character");
        assert_eq!(saslprep("\u{627}1"), None, "bidirectional check");
    }

    /// Both sides prepare: a user and password written differently but
    /// equal after SASLprep log in; a user name SASLprep refuses is refused.
    #[cfg(feature = "saslprep")]
    #[test]
    fn names_and_passwords_are_prepared_on_both_sides() {
        let credential = ScramCredential::derive("IX".as_bytes(), b"salt", MIN_ITERATIONS);
        assert!(credential.verify_password("I\u{AD}X".as_bytes()));
        assert!(credential.verify_password("\u{2168}".as_bytes()));
        assert!(!credential.verify_password(b"I X"));
        let mut client = ScramClient::new("\u{AA}lice", "\u{2168}".as_bytes(), "abc").unwrap();
        let first = ClientFirst::parse(&client.client_first()).unwrap();
        assert_eq!(first.username, "alice");
        let (server, s_first) = ScramServer::start(&first, credential, "xyz").unwrap();
        let last = client.server_first(&s_first).unwrap();
        let s_final = server.finish(&last).unwrap();
        client.server_final(&s_final).unwrap();
        // A client-first naming a user SASLprep refuses (a control character).
        assert!(matches!(
            ClientFirst::parse(b"n,,n=a\x07b,r=abc"),
            Err(ScramError::Malformed(_))
        ));
        assert!(ScramClient::new("a\u{7}b", b"p", "abc").is_err());
        // A password SASLprep refuses is used as its bytes, on both sides.
        let raw = ScramCredential::derive(b"p\x07w", b"salt", MIN_ITERATIONS);
        assert!(raw.verify_password(b"p\x07w"));
    }

    #[test]
    fn wrong_password_and_wrong_server_are_caught() {
        let credential = ScramCredential::derive(b"right", b"salt", MIN_ITERATIONS);
        let mut client = ScramClient::new("u", b"wrong", "abc").unwrap();
        let first = ClientFirst::parse(&client.client_first()).unwrap();
        let (server, s_first) = ScramServer::start(&first, credential, "xyz").unwrap();
        let c_final = client.server_first(&s_first).unwrap();
        assert_eq!(server.finish(&c_final), Err(ScramError::InvalidProof));
        // A server that does not know the password cannot sign.
        assert_eq!(
            client.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::InvalidServerSignature)
        );
    }

    #[test]
    fn user_names_are_escaped_and_bad_messages_named() {
        let client = ScramClient::new("a,b=c", b"p", "n").unwrap();
        assert_eq!(client.client_first(), b"n,,n=a=2Cb=3Dc,r=n");
        assert_eq!(
            ClientFirst::parse(&client.client_first()).unwrap().username,
            "a,b=c"
        );
        for bad in [
            &b"p=tls-unique,,n=u,r=x"[..],
            b"n,a=admin,n=u,r=x",
            b"n,,r=x,n=u",
            b"n,,n=u=,r=x",
            b"n,,n=u,r=a,b",
            b"n,,m=ext,n=u,r=x",
            b"n,,n=,r=x",
            b"x,,n=u,r=x",
            b"\xff",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{bad:?}");
        }
        let mut client = ScramClient::new("u", b"p", "abc").unwrap();
        for (bad, want) in [
            (&b"r=abd,s=AA==,i=4096"[..], ScramError::NonceMismatch),
            (b"r=abc,s=AA==,i=4096", ScramError::NonceMismatch),
            (b"r=abcd,s=AA==,i=1", ScramError::IterationCount(1)),
            (b"e=unknown-user", ScramError::Server("unknown-user".into())),
        ] {
            assert_eq!(client.server_first(bad), Err(want));
        }
    }

    /// A user name SASLprep maps to nothing (U+FE0B, a variation selector)
    /// is refused, not taken as an empty name (found by the `scram` fuzz
    /// target).
    #[cfg(feature = "saslprep")]
    #[test]
    fn a_user_name_saslprep_maps_to_nothing_is_refused() {
        let first = "n,,n=\u{FE0B},r=cnonce";
        assert!(ClientFirst::parse(first.as_bytes()).is_err());
    }
}
