//! The normative statements of MQTT 3.1.1 and 5.0, as listed in `spec/`.
//!
//! The lists are copies of the project's statement lists (id, section, role,
//! text; see `spec/README.md` there for how they were extracted), so the
//! crate is self-contained; a test checks the copies still match.

use crate::Version;

/// The MQTT 3.1.1 list (tab-separated: id, section, role, text).
pub const V3_TSV: &str = include_str!("../spec/mqtt-3.1.1-statements.tsv");
/// The MQTT 5.0 list.
pub const V5_TSV: &str = include_str!("../spec/mqtt-5.0-statements.tsv");

/// One normative statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The identifier, e.g. `MQTT-3.1.2-24`.
    pub id: String,
    /// The version whose specification states it.
    pub version: Version,
    /// The deepest numbered section it sits under, e.g. `3.1.2`.
    pub section: String,
    /// Whom it binds: `server`, `client`, `both` or `either`.
    pub role: String,
    /// The statement's text.
    pub text: String,
}

/// The statements of one version, in document order.
pub fn statements(version: Version) -> Vec<Statement> {
    let tsv = match version {
        Version::V3_1_1 => V3_TSV,
        Version::V5 => V5_TSV,
    };
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut cols = line.splitn(4, '\t');
            let mut next = || cols.next().unwrap_or_default().to_string();
            Statement {
                id: next(),
                version,
                section: next(),
                role: next(),
                text: next(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_have_the_documented_sizes() {
        assert_eq!(statements(Version::V3_1_1).len(), 141);
        assert_eq!(statements(Version::V5).len(), 251);
    }

    /// Where the project's statement lists are: `$TERN_SHARED_SPEC`, else
    /// the first `shared/spec` beside the repository or beside a directory
    /// above it (a git worktree sits deeper than the main checkout).
    fn shared_spec() -> Option<std::path::PathBuf> {
        if let Some(dir) = std::env::var_os("TERN_SHARED_SPEC") {
            return Some(dir.into());
        }
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        repo.canonicalize()
            .ok()?
            .ancestors()
            .skip(1)
            .map(|dir| dir.join("shared/spec"))
            .find(|dir| dir.is_dir())
    }

    /// The copies in `spec/` match the project's lists. Where the lists are
    /// not available (a packaged crate, a checkout without them), the test
    /// fails unless `TERN_NO_SHARED_SPEC=1` says that is expected.
    #[test]
    fn copies_match_the_shared_lists() {
        let may_be_absent = std::env::var_os("TERN_NO_SHARED_SPEC").is_some_and(|v| v == "1");
        let Some(shared) = shared_spec() else {
            assert!(
                may_be_absent,
                "no shared/spec next to the repository to compare spec/ with; \
                 set TERN_SHARED_SPEC=DIR, or TERN_NO_SHARED_SPEC=1 to skip this on purpose"
            );
            eprintln!("TERN_NO_SHARED_SPEC=1: copies not compared");
            return;
        };
        for (file, copy) in [
            ("mqtt-3.1.1-statements.tsv", V3_TSV),
            ("mqtt-5.0-statements.tsv", V5_TSV),
        ] {
            let path = shared.join(file);
            let original = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(original, copy, "{file} differs from the shared list");
        }
    }
}
