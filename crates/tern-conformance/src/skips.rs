//! Per-broker skip lists, in the manner of rustls' BoGo configuration.
//!
//! A skip file (`skips/NAME.toml`) maps version and statement id to the
//! reason the test is skipped for that broker:
//!
//! ```toml
//! ["5"]
//! "MQTT-3.1.2-24" = "reason, with evidence"
//! ```
//!
//! As in BoGo, a listed test still runs: when it fails (or skips itself) it
//! counts as skipped, with the list's reason; when it passes, the run fails
//! with an unexpected pass, so a fixed deviation leaves the list. And once a
//! skip list is in force (`--skips`, even an empty one), a test that skips
//! itself without being listed fails the run.

use crate::Version;
use std::collections::BTreeMap;

/// Tern's skip list.
pub const TERN: &str = include_str!("../skips/tern.toml");
/// mosquitto's skip list.
pub const MOSQUITTO: &str = include_str!("../skips/mosquitto.toml");

/// A parsed skip list.
#[derive(Debug, Clone, Default)]
pub struct Skips {
    entries: BTreeMap<(Version, String), String>,
    /// Whether this is a broker's list (parsed), rather than no list at all
    /// (the default): then only listed tests may skip.
    in_force: bool,
}

impl Skips {
    /// Parses a skip list; every entry needs a non-empty reason.
    pub fn parse(text: &str) -> Result<Skips, String> {
        let raw: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(text).map_err(|e| format!("skip list: {e}"))?;
        let mut entries = BTreeMap::new();
        for (version, ids) in raw {
            let v = Version::parse(&version)
                .ok_or_else(|| format!("skip list: unknown version [{version}]"))?;
            for (id, reason) in ids {
                if reason.trim().is_empty() {
                    return Err(format!("skip list: {id} (v{v}) has no reason"));
                }
                entries.insert((v, id), reason);
            }
        }
        Ok(Skips {
            entries,
            in_force: true,
        })
    }

    /// The built-in list for a broker name (`tern`, `mosquitto`), if any.
    pub fn builtin(name: &str) -> Option<Result<Skips, String>> {
        match name {
            "tern" => Some(Skips::parse(TERN)),
            "mosquitto" => Some(Skips::parse(MOSQUITTO)),
            _ => None,
        }
    }

    /// Why the test of `id` is skipped, if it is.
    pub fn reason(&self, version: Version, id: &str) -> Option<&str> {
        self.entries
            .get(&(version, id.to_string()))
            .map(String::as_str)
    }

    /// Whether a skip list was given: unlisted skips and listed passes fail.
    pub fn in_force(&self) -> bool {
        self.in_force
    }

    /// Every entry: (version, id, reason).
    pub fn iter(&self) -> impl Iterator<Item = (Version, &str, &str)> {
        self.entries
            .iter()
            .map(|((v, id), r)| (*v, id.as_str(), r.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases;

    #[test]
    fn builtin_lists_parse_and_name_registered_tests() {
        let tests: Vec<(Version, &str)> = cases::all().iter().map(|c| (c.version, c.id)).collect();
        for name in ["tern", "mosquitto"] {
            let skips = Skips::builtin(name).unwrap().unwrap();
            for (v, id, _) in skips.iter() {
                assert!(
                    tests.contains(&(v, id)),
                    "skips/{name}.toml names {id} (v{v}), which has no test"
                );
            }
        }
    }
}
