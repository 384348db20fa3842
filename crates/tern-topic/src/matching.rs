//! The specification's matching rule, level by level.

use crate::{TopicFilter, TopicName};

/// `true` if `filter` matches `topic` by the rules of MQTT 3.1.1 and 5.0
/// section 4.7.
///
/// - A level matches the same text exactly; no normalisation [MQTT-4.7.3-4].
/// - `+` matches exactly one level, an empty one included.
/// - `#` matches any number of levels, zero included: `sport/#` matches
///   `sport`.
/// - A filter whose first level is `+` or `#` does not match a topic that
///   begins with `$` [MQTT-4.7.2-1]; `$SYS/#` does.
///
/// This is the direct, one-pair matcher; [`SubscriptionTree`] and
/// [`RetainedIndex`] answer the same question for many filters or topics at
/// once, and are tested against this function.
///
/// ```
/// use tern_topic::{TopicFilter, TopicName, matches};
///
/// let topic = TopicName::from_static("sport/tennis");
/// assert!(matches(&TopicFilter::from_static("sport/+"), &topic));
/// assert!(matches(&TopicFilter::from_static("sport/#"), &topic));
/// assert!(!matches(&TopicFilter::from_static("#"), &TopicName::from_static("$SYS/uptime")));
/// ```
///
/// [`SubscriptionTree`]: crate::SubscriptionTree
/// [`RetainedIndex`]: crate::RetainedIndex
pub fn matches(filter: &TopicFilter, topic: &TopicName) -> bool {
    matches_bytes(filter.as_bytes(), topic.as_bytes())
}

/// [`matches`] on raw bytes, for callers that validated both sides.
pub(crate) fn matches_bytes(filter: &[u8], topic: &[u8]) -> bool {
    if topic.first() == Some(&b'$') && matches!(filter.first(), Some(b'+' | b'#')) {
        return false;
    }
    let mut filter_levels = filter.split(|&b| b == b'/');
    let mut topic_levels = topic.split(|&b| b == b'/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
