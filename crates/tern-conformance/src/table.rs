//! `statements.toml`: what the suite does about every statement.
//!
//! Each statement of both versions has one entry, keyed by version and id:
//!
//! - `tested`: the test with the same id and version checks it;
//! - `not-observable`: a black-box network peer cannot check it (the reason
//!   says why: client-side storage, a server MAY, an internal obligation);
//! - `uncovered`: observable, but no test yet (the reason may say what a
//!   test would need).
//!
//! Unit tests check that the table names exactly the statements of the
//! lists and that `tested` matches the registered tests.

use crate::Version;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The checked-in table.
pub const TABLE_TOML: &str = include_str!("../statements.toml");

/// What the suite does about one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Checked by the test of the same id.
    Tested,
    /// A black-box peer cannot observe it.
    NotObservable,
    /// Observable, not yet tested.
    Uncovered,
}

/// One entry of the table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The status.
    pub status: Status,
    /// Why (required for `not-observable`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The parsed table: version name (`3.1.1`, `5`) to id to entry.
#[derive(Debug, Clone)]
pub struct Table {
    entries: BTreeMap<(Version, String), Entry>,
}

impl Table {
    /// Parses the checked-in table.
    pub fn load() -> Result<Table, String> {
        Table::parse(TABLE_TOML)
    }

    /// Parses a table.
    pub fn parse(text: &str) -> Result<Table, String> {
        let raw: BTreeMap<String, BTreeMap<String, Entry>> =
            toml::from_str(text).map_err(|e| format!("statements.toml: {e}"))?;
        let mut entries = BTreeMap::new();
        for (version, ids) in raw {
            let v = Version::parse(&version)
                .ok_or_else(|| format!("statements.toml: unknown version [{version}]"))?;
            for (id, entry) in ids {
                entries.insert((v, id), entry);
            }
        }
        Ok(Table { entries })
    }

    /// The entry of one statement.
    pub fn get(&self, version: Version, id: &str) -> Option<&Entry> {
        self.entries.get(&(version, id.to_string()))
    }

    /// Every (version, id) in the table.
    pub fn ids(&self) -> impl Iterator<Item = (Version, &str)> {
        self.entries.keys().map(|(v, id)| (*v, id.as_str()))
    }

    /// How many statements of `version` have `status`.
    pub fn count(&self, version: Version, status: Status) -> usize {
        self.entries
            .iter()
            .filter(|((v, _), e)| *v == version && e.status == status)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cases, spec};
    use std::collections::BTreeSet;

    #[test]
    fn table_accounts_for_exactly_the_spec_statements() {
        let table = Table::load().unwrap();
        let in_table: BTreeSet<(Version, String)> =
            table.ids().map(|(v, id)| (v, id.to_string())).collect();
        let in_spec: BTreeSet<(Version, String)> = Version::ALL
            .iter()
            .flat_map(|v| spec::statements(*v))
            .map(|s| (s.version, s.id))
            .collect();
        let missing: Vec<_> = in_spec.difference(&in_table).collect();
        let extra: Vec<_> = in_table.difference(&in_spec).collect();
        assert!(
            missing.is_empty(),
            "statements missing from the table: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "table entries not in the spec lists: {extra:?}"
        );
    }

    #[test]
    fn tested_means_a_test_exists_and_the_reverse() {
        let table = Table::load().unwrap();
        let tests: BTreeSet<(Version, String)> = cases::all()
            .iter()
            .map(|c| (c.version, c.id.to_string()))
            .collect();
        for (v, id) in table.ids() {
            let entry = table.get(v, id).unwrap();
            let has_test = tests.contains(&(v, id.to_string()));
            assert_eq!(
                entry.status == Status::Tested,
                has_test,
                "{id} (v{v}): status {:?} but a test {} registered",
                entry.status,
                if has_test { "is" } else { "is not" }
            );
        }
        for (v, id) in &tests {
            assert!(
                table.get(*v, id).is_some(),
                "test {id} (v{v}) names no statement"
            );
        }
    }

    #[test]
    fn not_observable_entries_give_a_reason() {
        let table = Table::load().unwrap();
        for (v, id) in table.ids() {
            let entry = table.get(v, id).unwrap();
            if entry.status == Status::NotObservable {
                assert!(
                    entry
                        .reason
                        .as_deref()
                        .is_some_and(|r| !r.trim().is_empty()),
                    "{id} (v{v}) is not-observable without a reason"
                );
            }
        }
    }

    #[test]
    fn test_ids_are_unique_per_version_and_side() {
        let mut seen = BTreeSet::new();
        for case in cases::all() {
            assert!(
                seen.insert((case.version, case.id, case.side == cases::Side::Client)),
                "two tests for {} (v{})",
                case.id,
                case.version
            );
        }
    }
}
