//! Topic filters: what a SUBSCRIBE asks for.

use crate::{TopicError, validate::check_string};
use bytes::Bytes;

/// A Topic Filter: a topic pattern in which `+` matches one level and `#`
/// matches any number of trailing levels.
///
/// At most 65,535 bytes of UTF-8 without U+0000, and non-empty [MQTT-4.7.3-1]
/// [MQTT-4.7.3-2] [MQTT-4.7.3-3]. `+` and `#` only occupy whole levels, and `#`
/// only the last one (3.1.1 [MQTT-4.7.1-2] [MQTT-4.7.1-3], 5.0 [MQTT-4.7.1-1]
/// [MQTT-4.7.1-2]). Empty levels are legal (`a//b`, `/a`, `a/`).
///
/// This is the plain filter syntax: `$share/group/a/b` is a valid
/// `TopicFilter` (one that only matches that exact topic). Use
/// [`SubscriptionFilter::parse`](crate::SubscriptionFilter::parse) for the
/// filters of a SUBSCRIBE, which recognises shared subscriptions.
///
/// Like [`TopicName`](crate::TopicName) it wraps a [`Bytes`] buffer: cheap to
/// clone, and built from a decoder's buffer without copying.
///
/// ```
/// use tern_topic::{TopicError, TopicFilter};
///
/// let filter = TopicFilter::try_from("sensors/+/temp")?;
/// assert!(filter.has_wildcards());
/// assert_eq!(TopicFilter::try_from("sensors/#/temp"), Err(TopicError::MultiLevelWildcardNotLast));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter(Bytes);

/// Checks every Topic Filter rule without building a [`TopicFilter`]:
/// non-empty, at most 65,535 bytes, UTF-8 without U+0000, `+` and `#` only as
/// whole levels and `#` only last.
pub fn validate_topic_filter(bytes: &[u8]) -> Result<(), TopicError> {
    check_string(bytes)?;
    check_wildcards(bytes)
}

/// The wildcard rules of a filter whose string rules were checked: `+` and
/// `#` only as whole levels, `#` only last. The first level that breaks a
/// rule decides the error, and in one level `#` is reported before `+`.
///
/// One pass over the bytes, level by level (decoders run it on every
/// filter of every SUBSCRIBE and UNSUBSCRIBE).
pub(crate) fn check_wildcards(bytes: &[u8]) -> Result<(), TopicError> {
    fn level(len: usize, hash: bool, plus: bool, last: bool) -> Result<(), TopicError> {
        match (hash, plus) {
            (true, _) if len != 1 => Err(TopicError::MultiLevelWildcardNotAlone),
            (true, _) if !last => Err(TopicError::MultiLevelWildcardNotLast),
            (false, true) if len != 1 => Err(TopicError::SingleLevelWildcardNotAlone),
            _ => Ok(()),
        }
    }
    let (mut start, mut hash, mut plus) = (0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                level(i - start, hash, plus, false)?;
                (start, hash, plus) = (i + 1, false, false);
            }
            b'#' => hash = true,
            b'+' => plus = true,
            _ => {}
        }
    }
    level(bytes.len() - start, hash, plus, true)
}

crate::validate::validated_bytes!(TopicFilter, validate_topic_filter, "a Topic Filter");

impl TopicFilter {
    /// The levels between `/` separators, in order; empty levels included.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.as_str().split('/')
    }

    /// `true` if the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.iter().any(|&b| b == b'+' || b == b'#')
    }

    /// `true` if the first level is `+` or `#`: such a filter never matches a
    /// topic name that begins with `$` [MQTT-4.7.2-1].
    pub fn starts_with_wildcard(&self) -> bool {
        matches!(self.0.first(), Some(b'+' | b'#'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The rules as the specification words them, level by level: the
    /// reference the one-pass `check_wildcards` must agree with.
    fn reference(bytes: &[u8]) -> Result<(), TopicError> {
        let mut levels = bytes.split(|&b| b == b'/').peekable();
        while let Some(level) = levels.next() {
            match level {
                b"#" if levels.peek().is_some() => {
                    return Err(TopicError::MultiLevelWildcardNotLast);
                }
                b"#" | b"+" => {}
                _ if level.contains(&b'#') => return Err(TopicError::MultiLevelWildcardNotAlone),
                _ if level.contains(&b'+') => {
                    return Err(TopicError::SingleLevelWildcardNotAlone);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every string of up to seven bytes over `a / + #`
    /// ([MQTT-4.7.1-2] [MQTT-4.7.1-3] in 3.1.1 numbering).
    #[test]
    fn one_pass_wildcard_rules_agree_with_the_level_by_level_reference() {
        let alphabet = [b'a', b'/', b'+', b'#'];
        let mut strings: Vec<Vec<u8>> = alloc::vec![Vec::new()];
        let mut checked = 0;
        for _ in 0..7 {
            let mut longer = Vec::new();
            for s in &strings {
                for &c in &alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    assert_eq!(check_wildcards(&t), reference(&t), "{t:?}");
                    checked += 1;
                    longer.push(t);
                }
            }
            strings = longer;
        }
        assert_eq!(checked, (1..=7).map(|n| 4usize.pow(n)).sum::<usize>());
    }
}
