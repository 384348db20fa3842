//! What a reload of the password and ACL files changed, in one log line:
//! users added, removed or given a new password, and the ACL sections
//! (anonymous, each user, patterns) added, removed or with rules added or
//! removed. Names and rules only: password hashes never reach the log.

use crate::security::{AclFile, PasswordFile};
use std::collections::BTreeMap;

/// `old` → `new`, as `users: …; acl: …` (`no change` when nothing did).
pub(crate) fn describe(
    old_passwords: Option<&PasswordFile>,
    new_passwords: Option<&PasswordFile>,
    old_acl: Option<&AclFile>,
    new_acl: Option<&AclFile>,
) -> String {
    let mut parts = Vec::new();
    let users = users(old_passwords, new_passwords);
    if !users.is_empty() {
        parts.push(format!("users: {}", users.join(", ")));
    }
    let acl = acl(old_acl, new_acl);
    if !acl.is_empty() {
        parts.push(format!("acl: {}", acl.join(", ")));
    }
    if parts.is_empty() {
        "no change".to_string()
    } else {
        parts.join("; ")
    }
}

/// `added [a, b]`, `removed [c]`, `new password [d]`, and the file appearing
/// or going away.
fn users(old: Option<&PasswordFile>, new: Option<&PasswordFile>) -> Vec<String> {
    let mut out = Vec::new();
    match (old, new) {
        (None, None) => {}
        (None, Some(file)) => out.push(format!("password file now in use, {} users", file.len())),
        (Some(_), None) => out.push("password file no longer in use".to_string()),
        (Some(old), Some(new)) => {
            let before: BTreeMap<_, _> = old.users().collect();
            let after: BTreeMap<_, _> = new.users().collect();
            let added: Vec<&str> = after
                .keys()
                .filter(|u| !before.contains_key(*u))
                .copied()
                .collect();
            let removed: Vec<&str> = before
                .keys()
                .filter(|u| !after.contains_key(*u))
                .copied()
                .collect();
            let changed: Vec<&str> = after
                .iter()
                .filter(|(u, hash)| before.get(*u).is_some_and(|old| old != *hash))
                .map(|(u, _)| *u)
                .collect();
            for (what, names) in [
                ("added", added),
                ("removed", removed),
                ("new password", changed),
            ] {
                if !names.is_empty() {
                    out.push(format!("{what} [{}]", names.join(", ")));
                }
            }
        }
    }
    out
}

/// Per section: `user x added (2 rules)`, `user y removed (1 rule)`,
/// `anonymous 3 -> 2 rules (+0 -1)`; and the file appearing or going away.
fn acl(old: Option<&AclFile>, new: Option<&AclFile>) -> Vec<String> {
    let rules = |n: usize| format!("{n} rule{}", if n == 1 { "" } else { "s" });
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => return vec!["ACL file now in use".to_string()],
        (Some(_), None) => return vec!["ACL file no longer in use".to_string()],
        (Some(old), Some(new)) => (old.sections(), new.sections()),
    };
    let before: BTreeMap<_, _> = old.iter().map(|(s, r)| (s.as_str(), r)).collect();
    let mut out = Vec::new();
    for (section, after) in &new {
        match before.get(section.as_str()) {
            None => out.push(format!("{section} added ({})", rules(after.len()))),
            Some(before) if before != &after => {
                let plus = after.iter().filter(|r| !before.contains(r)).count();
                let minus = before.iter().filter(|r| !after.contains(r)).count();
                out.push(format!(
                    "{section} {} -> {} (+{plus} -{minus})",
                    before.len(),
                    rules(after.len())
                ));
            }
            Some(_) => {}
        }
    }
    for (section, before) in &old {
        if !new.iter().any(|(s, _)| s == section) {
            out.push(format!("{section} removed ({})", rules(before.len())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords(users: &[(&str, &str)]) -> PasswordFile {
        use crate::security::PasswordHash;
        let text: String = users
            .iter()
            .enumerate()
            .map(|(i, (user, password))| {
                let salt = [i as u8; crate::security::SALT_LEN];
                format!(
                    "{user}:{}\n",
                    PasswordHash::sha512(password.as_bytes(), salt)
                )
            })
            .collect();
        PasswordFile::parse(&text).unwrap()
    }

    #[test]
    fn users_added_removed_and_repassworded_are_named_without_hashes() {
        let old = passwords(&[("alice", "a"), ("bob", "b"), ("carol", "c")]);
        let new = passwords(&[("alice", "a"), ("bob", "NEW"), ("dave", "d")]);
        let line = describe(Some(&old), Some(&new), None, None);
        assert_eq!(
            line,
            "users: added [dave], removed [carol], new password [bob]"
        );
        assert!(!line.contains('$'), "no hash in {line}");
        assert_eq!(describe(Some(&old), Some(&old), None, None), "no change");
    }

    #[test]
    fn acl_sections_say_what_rules_changed() {
        let old = AclFile::parse(
            "topic read public/#\n\
             user alice\ntopic write a/#\ntopic read b/#\n\
             user bob\ntopic bob/#\n\
             pattern read devices/%c/#\n",
        )
        .unwrap();
        let new = AclFile::parse(
            "topic read public/#\n\
             user alice\ntopic write a/#\ntopic read c/#\ntopic deny a/secret\n\
             user carol\ntopic carol/#\n\
             pattern read devices/%c/#\n",
        )
        .unwrap();
        assert_eq!(
            describe(None, None, Some(&old), Some(&new)),
            "acl: user alice 2 -> 3 rules (+2 -1), user carol added (1 rule), \
             user bob removed (1 rule)"
        );
        assert_eq!(describe(None, None, Some(&new), Some(&new)), "no change");
        assert_eq!(
            describe(None, None, None, Some(&new)),
            "acl: ACL file now in use"
        );
    }
}
