//! Why a string is not a valid topic name, topic filter or shared subscription.

use core::fmt;

/// The rule a topic name, topic filter or shared subscription filter broke.
///
/// Each variant's [`Display`](fmt::Display) names the rule and the statement
/// ids of MQTT 3.1.1 and 5.0 that state it (the two specifications number some
/// of them differently). A server that receives such a string in a packet
/// treats it as a protocol violation ([MQTT-4.8.0-1] in 3.1.1), or in MQTT 5
/// answers with reason code 0x8F Topic Filter invalid / 0x90 Topic Name invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic name or filter is empty [MQTT-4.7.3-1].
    Empty,
    /// Longer than 65,535 bytes [MQTT-4.7.3-3].
    TooLong,
    /// Contains U+0000 [MQTT-4.7.3-2].
    NullCharacter,
    /// Not well-formed UTF-8 (3.1.1: [MQTT-1.5.3-1]; 5.0: [MQTT-1.5.4-1]).
    InvalidUtf8,
    /// A topic name contains `+` or `#` (3.1.1: [MQTT-4.7.1-1]; 5.0: [MQTT-4.7.0-1]).
    WildcardInTopicName,
    /// `#` shares its level with other characters (3.1.1: [MQTT-4.7.1-2]; 5.0: [MQTT-4.7.1-1]).
    MultiLevelWildcardNotAlone,
    /// `#` is followed by another level (3.1.1: [MQTT-4.7.1-2]; 5.0: [MQTT-4.7.1-1]).
    MultiLevelWildcardNotLast,
    /// `+` shares its level with other characters (3.1.1: [MQTT-4.7.1-3]; 5.0: [MQTT-4.7.1-2]).
    SingleLevelWildcardNotAlone,
    /// `$share/` is not followed by a ShareName of at least one character [MQTT-4.8.2-1].
    EmptyShareName,
    /// The ShareName contains `+` or `#` [MQTT-4.8.2-2].
    WildcardInShareName,
    /// The ShareName contains `/` [MQTT-4.8.2-2] (only when building a
    /// [`ShareName`](crate::ShareName) directly: a parser splits at the `/`).
    SeparatorInShareName,
    /// The ShareName is not followed by `/` and a topic filter [MQTT-4.8.2-2].
    MissingSharedFilter,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => {
                "topic names and filters must be at least one character long [MQTT-4.7.3-1]"
            }
            Self::TooLong => {
                "topic names and filters must not be longer than 65,535 bytes [MQTT-4.7.3-3]"
            }
            Self::NullCharacter => "topic names and filters must not contain U+0000 [MQTT-4.7.3-2]",
            Self::InvalidUtf8 => {
                "topic names and filters must be well-formed UTF-8 \
                 (3.1.1 [MQTT-1.5.3-1], 5.0 [MQTT-1.5.4-1])"
            }
            Self::WildcardInTopicName => {
                "a topic name must not contain `+` or `#` \
                 (3.1.1 [MQTT-4.7.1-1], 5.0 [MQTT-4.7.0-1])"
            }
            Self::MultiLevelWildcardNotAlone => {
                "`#` must occupy a whole level of the topic filter \
                 (3.1.1 [MQTT-4.7.1-2], 5.0 [MQTT-4.7.1-1])"
            }
            Self::MultiLevelWildcardNotLast => {
                "`#` must be the last level of the topic filter \
                 (3.1.1 [MQTT-4.7.1-2], 5.0 [MQTT-4.7.1-1])"
            }
            Self::SingleLevelWildcardNotAlone => {
                "`+` must occupy a whole level of the topic filter \
                 (3.1.1 [MQTT-4.7.1-3], 5.0 [MQTT-4.7.1-2])"
            }
            Self::EmptyShareName => {
                "a shared subscription needs a ShareName of at least one character after `$share/` \
                 [MQTT-4.8.2-1]"
            }
            Self::WildcardInShareName => "a ShareName must not contain `+` or `#` [MQTT-4.8.2-2]",
            Self::SeparatorInShareName => "a ShareName must not contain `/` [MQTT-4.8.2-2]",
            Self::MissingSharedFilter => {
                "a ShareName must be followed by `/` and a topic filter [MQTT-4.8.2-2]"
            }
        })
    }
}

impl core::error::Error for TopicError {}
