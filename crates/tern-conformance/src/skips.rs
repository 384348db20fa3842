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
//! A skipped test does not run and counts as skipped, with its reason.

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
        Ok(Skips { entries })
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
