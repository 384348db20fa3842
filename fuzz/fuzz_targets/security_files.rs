//! The operator's files on arbitrary text: mosquitto's password file
//! (`$6$`, `$7$`, `$argon2id$` and SCRAM lines) and ACL file (`user`,
//! `topic`, `pattern` with `%c` and `%u`). Neither parser panics; a hash
//! that parses prints back as text that parses to the same hash; an ACL
//! file that parses
//! answers `allows` for any client, user and topic without panicking, and
//! an anonymous client is never granted more by adding a `deny` rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_broker::security::{Access, AclFile, PasswordFile, PasswordHash, scram::Mechanism};
use tern_topic::TopicName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let hash = line.split_once(':').map_or(line, |(_, h)| h).trim();
        if let Ok(parsed) = PasswordHash::parse(hash) {
            let printed = parsed.to_string();
            assert_eq!(
                PasswordHash::parse(&printed).as_ref(),
                Ok(&parsed),
                "{printed}"
            );
        }
    }
    if let Ok(file) = PasswordFile::parse(text) {
        // Look-ups by name only: verifying would run the file's own
        // (operator-chosen) key derivation.
        for user in text.split([':', '\n']).take(8) {
            let _ = file.contains(user);
            for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
                let _ = file.scram_credential(user, mechanism);
            }
        }
    }
    let Ok(acl) = AclFile::parse(text) else {
        return;
    };
    let words: Vec<&str> = text.split_whitespace().take(16).collect();
    let denied = AclFile::parse(&format!("topic deny #\n{text}"));
    for topic in words.iter().filter_map(|w| TopicName::try_from(*w).ok()) {
        for access in [Access::Read, Access::Write] {
            for user in [None, words.first().copied()] {
                let _ = acl.allows("client-1", user, &topic, access);
                if user.is_none()
                    && let Ok(denied) = &denied
                {
                    // deny comes first: an anonymous client denied `#`
                    // is allowed nothing that did not start with `$`.
                    if !topic.is_dollar() {
                        assert!(!denied.allows("client-1", None, &topic, access));
                    }
                }
            }
        }
    }
});
