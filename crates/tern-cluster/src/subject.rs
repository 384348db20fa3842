//! MQTT topics and filters as NATS subjects.
//!
//! A topic's levels become a subject's tokens, under a prefix
//! (`tern.m.` for messages, `tern.r.` for retained ones). NATS reserves
//! `.` (the token separator), `*` and `>` (wildcards), whitespace, and
//! forbids empty tokens; MQTT allows all of these in a level. So each level
//! is escaped:
//! - bytes `A-Z a-z 0-9 - _` stay as they are;
//! - every other byte (including `.`, `*`, `>`, `%`, `$`, space, and each
//!   byte of a multi-byte UTF-8 character) becomes `%XX`, upper-case hex;
//! - an empty level becomes the token `%` (a real `%` is `%25`, so this
//!   cannot be confused with one).
//!
//! The mapping is injective (a subject decodes back to its topic), and a
//! subject token is never `*` or `>` unless it stands for a wildcard.
//! Filters map level by level, `+` to `*` and `#` to `>`; since NATS's `>`
//! needs at least one more token and MQTT's `a/#` also matches `a`
//! [MQTT-4.7.1-2], a filter ending in `/#` maps to two subjects (`a.>`
//! and `a`). Matching a subject against the filter's subjects gives the
//! same answer as MQTT matching, except for topics that start with `$`,
//! which NATS wildcards match and MQTT's do not [MQTT-4.7.2-1]: the
//! receiving broker matches every message again, so those only cost a
//! message that is dropped there.

/// Appends one escaped level.
fn escape_level(level: &str, out: &mut String) {
    if level.is_empty() {
        out.push('%');
        return;
    }
    for &b in level.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// The subject of `topic` under `prefix` (for example `tern.m`).
pub fn topic_subject(prefix: &str, topic: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + topic.len() + 8);
    out.push_str(prefix);
    for level in topic.split('/') {
        out.push('.');
        escape_level(level, &mut out);
    }
    out
}

/// The subjects that together match what `filter` matches (a shared
/// subscription's filter without its `$share/group/`), under `prefix`.
pub fn filter_subjects(prefix: &str, filter: &str) -> Vec<String> {
    let mut out = String::with_capacity(prefix.len() + filter.len() + 8);
    out.push_str(prefix);
    let mut parent_too = None;
    for level in filter.split('/') {
        match level {
            "#" => {
                // `a/#` matches `a` as well; `#` alone matches everything.
                if out.len() > prefix.len() {
                    parent_too = Some(out.clone());
                }
                out.push_str(".>");
            }
            "+" => out.push_str(".*"),
            level => {
                out.push('.');
                escape_level(level, &mut out);
            }
        }
    }
    let mut subjects = vec![out];
    subjects.extend(parent_too);
    subjects
}

/// The topic a subject under `prefix` stands for, if it is one.
pub fn subject_topic(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut bytes = Vec::with_capacity(rest.len());
    for (i, token) in rest.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        if token == "%" {
            continue;
        }
        let mut t = token.as_bytes();
        while let Some((&b, tail)) = t.split_first() {
            if b == b'%' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                t = &tail[2..];
            } else {
                bytes.push(b);
                t = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// Whether `node` is usable in a subject token as is.
pub fn valid_node_id(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NATS subject matching (the server's rule), as an oracle.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let (p, s): (Vec<_>, Vec<_>) = (pattern.split('.').collect(), subject.split('.').collect());
        for (i, t) in p.iter().enumerate() {
            match *t {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                t if s.get(i) == Some(&t) => {}
                _ => return false,
            }
        }
        p.len() == s.len()
    }

    fn valid_subject(s: &str) -> bool {
        s.split('.')
            .all(|t| !t.is_empty() && !t.bytes().any(|b| b.is_ascii_whitespace()))
    }

    #[test]
    fn reserved_characters_and_empty_levels_are_escaped() {
        assert_eq!(
            topic_subject("tern.m", "a/b.c/*/>/ /%"),
            "tern.m.a.b%2Ec.%2A.%3E.%20.%25"
        );
        assert_eq!(topic_subject("tern.m", "/a//"), "tern.m.%.a.%.%");
        assert_eq!(topic_subject("tern.m", "$SYS/é"), "tern.m.%24SYS.%C3%A9");
        assert_eq!(filter_subjects("tern.m", "a/+/c"), ["tern.m.a.*.c"]);
        assert_eq!(filter_subjects("tern.m", "a/#"), ["tern.m.a.>", "tern.m.a"]);
        assert_eq!(filter_subjects("tern.m", "#"), ["tern.m.>"]);
        assert_eq!(filter_subjects("tern.m", "+/#"), ["tern.m.*.>", "tern.m.*"]);
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-c]{1,2}", "[a.*> %$é\t_-]{1,3}",]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 0..4),
            any::<bool>(),
        )
            .prop_filter_map("a filter has a level", |(mut l, hash)| {
                if hash {
                    l.push("#".into());
                }
                (!l.is_empty()).then(|| l.join("/"))
            })
    }

    proptest! {
        /// A subject decodes back to its topic, and is a valid NATS subject.
        #[test]
        fn the_mapping_is_injective(topic in topic()) {
            let s = topic_subject("tern.m", &topic);
            prop_assert!(valid_subject(&s), "{s}");
            prop_assert_eq!(subject_topic("tern.m", &s), Some(topic));
        }

        /// NATS matching of the filter's subjects is MQTT matching, for
        /// topics that do not start with `$` [MQTT-4.7.1-2] [MQTT-4.7.1-3].
        #[test]
        fn nats_matching_is_mqtt_matching(topic in topic(), filter in filter()) {
            prop_assume!(!topic.starts_with('$'));
            let parsed = tern_topic::TopicFilter::from_bytes(filter.clone().into());
            prop_assume!(parsed.is_ok());
            let name = tern_topic::TopicName::from_bytes(topic.clone().into());
            prop_assume!(name.is_ok());
            let name = name.unwrap();
            let mqtt = tern_topic::matches(&parsed.unwrap(), &name);
            let subject = topic_subject("tern.m", &topic);
            let subjects = filter_subjects("tern.m", &filter);
            for s in &subjects {
                prop_assert!(valid_subject(s), "{s}");
            }
            let nats = subjects.iter().any(|p| nats_matches(p, &subject));
            prop_assert_eq!(nats, mqtt, "{} on {}: {:?} {}", filter, topic, subjects, subject);
        }
    }
}
