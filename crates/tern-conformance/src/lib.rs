//! A black-box conformance suite for MQTT 3.1.1 and 5.0 brokers.
//!
//! Every test checks one normative statement of the specifications, is named
//! by the statement's identifier (`MQTT-3.1.2-24`), and speaks raw packets
//! through tern-codec over TCP, so it can send exactly the wrong thing and
//! see exactly what comes back. Tests use unique client identifiers and topic
//! prefixes, so they run concurrently against one broker, and clean up after
//! themselves (retained messages cleared, persistent sessions ended).
//!
//! - [`spec`]: the statement lists of both versions (id, section, role, text),
//!   copied from the specifications into `spec/`.
//! - [`table`]: `statements.toml`, which accounts for every statement: tested
//!   (by the test of the same id), not observable by a black-box peer (why),
//!   or not yet covered.
//! - [`cases`]: the tests, registered in one table of (id, version, title).
//! - [`skips`]: per-broker skip lists, every entry with its reason.
//! - [`runner`]: runs the suite against a broker and reports.
//! - [`doc`]: writes CONFORMANCE.md from the table and run reports.
//!
//! The `tern-conformance` binary drives it; `cargo xtask conformance` starts
//! a broker (ours, or mosquitto) and runs the binary against it.

#![forbid(unsafe_code)]

/// The ACL file (mosquitto's format) of the restricted broker: anonymous
/// clients may do anything except publish (or receive) under `acl-denied/`.
pub const RESTRICTED_ACL: &str = "topic readwrite #\ntopic deny acl-denied/#\n";

/// The restricted broker's `clientid_prefixes`: every identifier the suite
/// makes starts with it ([`harness::Ctx::client_id`]), so only a test that
/// picks another one is refused (MQTT 5: 0x85) [MQTT-3.1.3-8].
pub const RESTRICTED_CLIENT_ID_PREFIX: &str = "tc";

/// The user the restricted broker knows a SCRAM-SHA-256 credential for
/// (MQTT 5 enhanced authentication), with [`SCRAM_PASSWORD`]; a broker
/// without SCRAM fails those tests (mosquitto's skip list says why).
pub const SCRAM_USER: &str = "scram-user";
/// [`SCRAM_USER`]'s and [`SCRAM_SHA512_USER`]'s password.
pub const SCRAM_PASSWORD: &str = "scram-pass";
/// The user the restricted broker knows a SCRAM-SHA-512 credential for.
pub const SCRAM_SHA512_USER: &str = "scram-user-512";

pub mod cases;
pub mod doc;
pub mod harness;
pub mod runner;
pub mod skips;
pub mod spec;
pub mod table;

use std::fmt;

/// The protocol version a test or statement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V3_1_1,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Version {
    /// Both versions, oldest first.
    pub const ALL: [Version; 2] = [Version::V3_1_1, Version::V5];

    /// The codec's version.
    pub fn protocol(self) -> tern_codec::ProtocolVersion {
        match self {
            Version::V3_1_1 => tern_codec::ProtocolVersion::V3_1_1,
            Version::V5 => tern_codec::ProtocolVersion::V5,
        }
    }

    /// The short name used on the command line and in files: `3.1.1` or `5`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V3_1_1 => "3.1.1",
            Version::V5 => "5",
        }
    }

    /// Parses `3.1.1`, `3`, `4`, `5` or `5.0`.
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "3.1.1" | "3" | "4" | "v3" => Some(Version::V3_1_1),
            "5" | "5.0" | "v5" => Some(Version::V5),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
