//! Topic names: what a PUBLISH is sent to.

use crate::{TopicError, validate::check_string};
use bytes::Bytes;

/// A Topic Name: the non-empty, wildcard-free topic of an Application Message.
///
/// At most 65,535 bytes of UTF-8 without U+0000 [MQTT-4.7.3-1] [MQTT-4.7.3-2]
/// [MQTT-4.7.3-3], and neither `+` nor `#` anywhere (3.1.1 [MQTT-4.7.1-1], 5.0
/// [MQTT-4.7.0-1]). Empty levels are legal: `a//b`, `/a` and `a/` are three
/// valid names.
///
/// It is a validated view of a [`Bytes`] buffer: cloning is a reference-count
/// increment, and [`TopicName::from_bytes`] takes the buffer a decoder produced
/// (for tern-codec, `MqttString::into_bytes()`) without copying it.
///
/// MQTT 5 allows a PUBLISH with an empty topic and a Topic Alias; the session
/// resolves the alias before the topic becomes a `TopicName`.
///
/// ```
/// use tern_topic::{TopicError, TopicName};
///
/// let name = TopicName::try_from("sensors/kitchen/temp")?;
/// assert_eq!(name.levels().count(), 3);
/// assert_eq!(TopicName::try_from("sensors/+"), Err(TopicError::WildcardInTopicName));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(Bytes);

/// Checks every Topic Name rule without building a [`TopicName`]: non-empty,
/// at most 65,535 bytes, UTF-8 without U+0000, no `+` or `#`.
pub fn validate_topic_name(bytes: &[u8]) -> Result<(), TopicError> {
    check_string(bytes)?;
    if bytes.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInTopicName);
    }
    Ok(())
}

crate::validate::validated_bytes!(TopicName, validate_topic_name, "a Topic Name");

impl TopicName {
    /// The levels between `/` separators, in order; empty levels included.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.as_str().split('/')
    }

    /// `true` if the name begins with `$` (like `$SYS/...`), which filters
    /// starting with a wildcard do not match [MQTT-4.7.2-1].
    pub fn is_dollar(&self) -> bool {
        self.0.first() == Some(&b'$')
    }
}
