//! mosquitto's ACL file, with mosquitto's meaning.
//!
//! ```text
//! # Before any `user` line: what anonymous clients may do.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//!
//! # For every client: %c is its client id, %u its user name.
//! pattern write devices/%c/status
//! ```
//!
//! A check ([`AclFile::allows`]) walks the client's own rules (a user's, or
//! the anonymous ones), then the patterns. In each list `deny` rules come
//! first, whatever their place in the file; the first rule whose topic
//! filter matches the topic decides: a `deny` refuses, a rule with the
//! access asked for grants, and otherwise the walk goes on. Nothing
//! matching is a refusal. A topic starting with `$` is matched only by
//! rules whose filter starts with `$`. When the file has patterns, a
//! client whose id or user name contains `+` or `#` is refused everything
//! (it could otherwise widen a pattern to other clients' topics).
//! mosquitto's `acl_file` checks publishing (`write`) and receiving
//! (`read`); subscribing is always allowed and each message is checked as
//! it is delivered.

use std::fmt;
use tern_topic::{TopicFilter, TopicName, matches};

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive messages published to it.
    Read,
    /// Publish to it.
    Write,
}

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::ReadWrite, _) | (Grant::Read, Access::Read) | (Grant::Write, Access::Write)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    grant: Grant,
    /// A topic filter; in a pattern, with `%c` and `%u` still in it (they
    /// are ordinary characters to the filter syntax).
    filter: TopicFilter,
}

/// Rules in the order a check reads them: `deny` first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rules(Vec<Rule>);

impl Rules {
    fn push(&mut self, rule: Rule) {
        if rule.grant == Grant::Deny {
            // After the other denials, before every grant.
            let at = self.0.iter().take_while(|r| r.grant == Grant::Deny).count();
            self.0.insert(at, rule);
        } else {
            self.0.push(rule);
        }
    }
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    /// The `topic` rules before any `user` line.
    anonymous: Rules,
    /// Each user's `topic` rules, by user name.
    users: Vec<(String, Rules)>,
    /// The `pattern` rules, for everyone.
    patterns: Rules,
}

/// A line of an ACL file that cannot be used, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFileError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for AclFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for AclFileError {}

impl AclFile {
    /// Parses the file's text: `topic [read|write|readwrite|deny] FILTER`,
    /// `pattern [read|write|readwrite|deny] FILTER` and `user NAME` lines,
    /// `#` comments and blank lines. A missing access word means
    /// `readwrite`; the filter is the rest of the line and may contain
    /// spaces. Errors name the line, as mosquitto refuses to start on them.
    pub fn parse(text: &str) -> Result<Self, AclFileError> {
        let mut acl = AclFile::default();
        // The rules `topic` lines go to: the anonymous ones until a `user`.
        let mut current: Option<usize> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |why: String| AclFileError { line, why };
            let text = raw.trim_end();
            if text.starts_with('#') || text.trim().is_empty() {
                continue;
            }
            let text = text.trim_start();
            let (keyword, rest) = text.split_once(' ').unwrap_or((text, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("missing user name".into()));
                    }
                    current = Some(match acl.users.iter().position(|(u, _)| u == rest) {
                        Some(i) => i,
                        None => {
                            acl.users.push((rest.to_string(), Rules::default()));
                            acl.users.len() - 1
                        }
                    });
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(err)?;
                    let rules = match (keyword, current) {
                        ("pattern", _) => &mut acl.patterns,
                        (_, None) => &mut acl.anonymous,
                        (_, Some(i)) => &mut acl.users[i].1,
                    };
                    rules.push(rule);
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected topic, pattern or user)"
                    )));
                }
            }
        }
        Ok(acl)
    }

    /// Each section's rules, for a reload to say what changed: `anonymous`
    /// (the `topic` lines before any `user` line), `user NAME` in file
    /// order, then `pattern`; each rule as `ACCESS FILTER`, in the order a
    /// check reads them.
    pub fn sections(&self) -> Vec<(String, Vec<String>)> {
        let text = |rules: &Rules| -> Vec<String> {
            rules
                .0
                .iter()
                .map(|r| {
                    let access = match r.grant {
                        Grant::Read => "read",
                        Grant::Write => "write",
                        Grant::ReadWrite => "readwrite",
                        Grant::Deny => "deny",
                    };
                    format!("{access} {}", r.filter.as_str())
                })
                .collect()
        };
        let mut out = vec![("anonymous".to_string(), text(&self.anonymous))];
        for (user, rules) in &self.users {
            out.push((format!("user {user}"), text(rules)));
        }
        out.push(("pattern".to_string(), text(&self.patterns)));
        out
    }

    /// Whether a client may `access` `topic`. `username` is `None` for an
    /// anonymous client.
    pub fn allows(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &TopicName,
        access: Access,
    ) -> bool {
        let own = match username {
            None => Some(&self.anonymous),
            Some(name) => self
                .users
                .iter()
                .find(|(u, _)| u == name)
                .map(|(_, rules)| rules),
        };
        if let Some(rules) = own {
            let rules = rules.0.iter().map(|r| (r.grant, r.filter.clone()));
            if let Some(verdict) = decide(rules, topic, access) {
                return verdict;
            }
        }
        if self.patterns.0.is_empty() {
            return false;
        }
        let dangerous = |s: &str| s.contains(['+', '#']);
        if dangerous(client_id) || username.is_some_and(dangerous) {
            return false;
        }
        let expanded = self
            .patterns
            .0
            .iter()
            // A pattern naming the user does not apply to anonymous clients.
            .filter(|r| username.is_some() || !r.filter.as_str().contains("%u"))
            .filter_map(|r| {
                let filter = expand(r.filter.as_str(), client_id, username);
                // Too long once expanded: it matches nothing.
                Some((r.grant, TopicFilter::try_from(filter).ok()?))
            });
        decide(expanded, topic, access).unwrap_or(false)
    }
}

/// The first matching rule's verdict: `Some(false)` for a deny, `Some(true)`
/// for a grant of `access`, `None` if no rule decides.
fn decide(
    rules: impl Iterator<Item = (Grant, TopicFilter)>,
    topic: &TopicName,
    access: Access,
) -> Option<bool> {
    for (grant, filter) in rules {
        if topic.is_dollar() && !filter.as_str().starts_with('$') {
            continue;
        }
        if matches(&filter, topic) {
            if grant == Grant::Deny {
                return Some(false);
            }
            if grant.allows(access) {
                return Some(true);
            }
        }
    }
    None
}

/// `%c` → the client id, `%u` → the user name.
fn expand(filter: &str, client_id: &str, username: Option<&str>) -> String {
    let mut out = String::with_capacity(filter.len());
    let mut rest = filter;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match (after.as_bytes().first(), username) {
            (Some(b'c'), _) => out.push_str(client_id),
            (Some(b'u'), Some(user)) => out.push_str(user),
            _ => {
                out.push('%');
                rest = after;
                continue;
            }
        }
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let grant = match first {
        "read" => Some(Grant::Read),
        "write" => Some(Grant::Write),
        "readwrite" => Some(Grant::ReadWrite),
        "deny" => Some(Grant::Deny),
        _ => None,
    };
    let after = after.trim();
    let (grant, filter) = match (grant, after.is_empty()) {
        (Some(grant), false) => (grant, after),
        // One word: the filter, with readwrite access (so `topic read`
        // alone grants the topic "read", as in mosquitto).
        (_, true) => (Grant::ReadWrite, rest),
        (None, false) => {
            return Err(format!(
                "unknown access {first:?} (expected read, write, readwrite or deny)"
            ));
        }
    };
    if filter.is_empty() {
        return Err("missing topic filter".into());
    }
    let filter = TopicFilter::try_from(filter)
        .map_err(|e| format!("invalid topic filter {filter:?}: {e}"))?;
    Ok(Rule { grant, filter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_client_id_and_user() {
        assert_eq!(expand("a/%c/%u/%x%", "c1", Some("u1")), "a/c1/u1/%x%");
        assert_eq!(expand("%u/%c", "c1", None), "%u/c1");
    }
}
