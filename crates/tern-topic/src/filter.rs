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
    let mut levels = bytes.split(|&b| b == b'/').peekable();
    while let Some(level) = levels.next() {
        match level {
            b"#" if levels.peek().is_some() => return Err(TopicError::MultiLevelWildcardNotLast),
            b"#" | b"+" => {}
            _ if level.contains(&b'#') => return Err(TopicError::MultiLevelWildcardNotAlone),
            _ if level.contains(&b'+') => return Err(TopicError::SingleLevelWildcardNotAlone),
            _ => {}
        }
    }
    Ok(())
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
