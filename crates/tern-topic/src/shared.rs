//! Shared subscriptions (`$share/{ShareName}/{filter}`) and the parsed filter
//! of a SUBSCRIBE.

use crate::{TopicError, TopicFilter, filter::check_wildcards, validate::check_string};
use bytes::Bytes;

/// The prefix that makes a subscription shared [MQTT-4.8.2-1].
const SHARE_PREFIX: &[u8] = b"$share/";

/// The name of a shared subscription group: at least one character, without
/// `/`, `+` or `#` [MQTT-4.8.2-1] [MQTT-4.8.2-2].
///
/// A validated [`Bytes`] view, like [`TopicFilter`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareName(Bytes);

/// Checks every ShareName rule without building a [`ShareName`]: at least
/// one character, UTF-8 without U+0000, no `/`, `+` or `#`.
pub fn validate_share_name(bytes: &[u8]) -> Result<(), TopicError> {
    match check_string(bytes) {
        Err(TopicError::Empty) => return Err(TopicError::EmptyShareName),
        other => other?,
    }
    check_share_name_chars(bytes)
}

/// The ShareName rules of a name whose string rules were checked.
fn check_share_name_chars(bytes: &[u8]) -> Result<(), TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::EmptyShareName);
    }
    if bytes.contains(&b'/') {
        return Err(TopicError::SeparatorInShareName);
    }
    if bytes.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInShareName);
    }
    Ok(())
}

crate::validate::validated_bytes!(ShareName, validate_share_name, "a ShareName");

/// Checks every rule of a SUBSCRIBE's or UNSUBSCRIBE's Topic Filter as a
/// server that supports shared subscriptions reads it, exactly as
/// [`SubscriptionFilter::parse`] does but without building one: a filter
/// that begins with `$share/` must be `$share/{ShareName}/{filter}`
/// [MQTT-4.8.2-1] [MQTT-4.8.2-2], anything else must be a valid
/// [`TopicFilter`].
///
/// Returns whether the filter is a shared subscription.
///
/// ```
/// use tern_topic::{TopicError, validate_subscription_filter};
///
/// assert_eq!(validate_subscription_filter(b"$share/g/a/+"), Ok(true));
/// assert_eq!(validate_subscription_filter(b"a/#"), Ok(false));
/// assert_eq!(validate_subscription_filter(b"$share/g"), Err(TopicError::MissingSharedFilter));
/// ```
pub fn validate_subscription_filter(bytes: &[u8]) -> Result<bool, TopicError> {
    split_shared(bytes).map(|split| split.is_some())
}

/// The one parser of the subscription filter syntax: `None` for a valid
/// plain filter, `Some(start of the topic filter)` for a valid shared one.
fn split_shared(bytes: &[u8]) -> Result<Option<usize>, TopicError> {
    // The string rules once, for the whole filter: its parts are split at
    // ASCII `/`, so they are well-formed UTF-8 without U+0000 too.
    check_string(bytes)?;
    if !bytes.starts_with(SHARE_PREFIX) {
        check_wildcards(bytes)?;
        return Ok(None);
    }
    let rest = &bytes[SHARE_PREFIX.len()..];
    let Some(slash) = rest.iter().position(|&b| b == b'/') else {
        check_share_name_chars(rest)?;
        return Err(TopicError::MissingSharedFilter);
    };
    check_share_name_chars(&rest[..slash])?;
    let filter_start = SHARE_PREFIX.len() + slash + 1;
    if filter_start == bytes.len() {
        return Err(TopicError::MissingSharedFilter);
    }
    check_wildcards(&bytes[filter_start..])?;
    Ok(Some(filter_start))
}

/// The Topic Filter of a SUBSCRIBE or UNSUBSCRIBE, parsed: either a plain
/// filter or a shared subscription of a named group.
///
/// ```
/// use tern_topic::{SubscriptionFilter, TopicError};
///
/// let shared = SubscriptionFilter::parse_str("$share/workers/jobs/+")?;
/// assert_eq!(shared.group().map(|g| g.as_str()), Some("workers"));
/// assert_eq!(shared.filter().as_str(), "jobs/+");
///
/// let plain = SubscriptionFilter::parse_str("jobs/#")?;
/// assert!(plain.group().is_none());
///
/// // A malformed `$share` filter is an error, not a plain filter.
/// assert_eq!(SubscriptionFilter::parse_str("$share//jobs"), Err(TopicError::EmptyShareName));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubscriptionFilter {
    /// A non-shared subscription: every subscriber receives every match.
    Plain(TopicFilter),
    /// A shared subscription: one member of `group` receives each match.
    Shared {
        /// The ShareName.
        group: ShareName,
        /// The filter the group subscribes to.
        filter: TopicFilter,
    },
}

impl SubscriptionFilter {
    /// Parses a filter as a server receives it: one that begins with
    /// `$share/` is a shared subscription and must be well formed
    /// [MQTT-4.8.2-1] [MQTT-4.8.2-2]; anything else is a plain filter.
    ///
    /// The group and filter are slices of `bytes`: nothing is copied. A
    /// server that does not support shared subscriptions (an MQTT 3.1.1
    /// server may not) uses [`SubscriptionFilter::Plain`] with
    /// [`TopicFilter::from_bytes`] instead.
    pub fn parse(bytes: Bytes) -> Result<Self, TopicError> {
        match split_shared(&bytes)? {
            None => Ok(Self::Plain(TopicFilter::from_validated(bytes))),
            Some(filter_start) => Ok(Self::Shared {
                group: ShareName::from_validated(bytes.slice(SHARE_PREFIX.len()..filter_start - 1)),
                filter: TopicFilter::from_validated(bytes.slice(filter_start..)),
            }),
        }
    }

    /// [`SubscriptionFilter::parse`] on a copy of `s`.
    pub fn parse_str(s: &str) -> Result<Self, TopicError> {
        Self::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The topic filter, without the `$share/{ShareName}/` prefix.
    pub fn filter(&self) -> &TopicFilter {
        match self {
            Self::Plain(filter) | Self::Shared { filter, .. } => filter,
        }
    }

    /// The share group, for a shared subscription.
    pub fn group(&self) -> Option<&ShareName> {
        match self {
            Self::Plain(_) => None,
            Self::Shared { group, .. } => Some(group),
        }
    }
}

impl From<TopicFilter> for SubscriptionFilter {
    fn from(filter: TopicFilter) -> Self {
        Self::Plain(filter)
    }
}

impl core::fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Plain(filter) => write!(f, "{filter}"),
            Self::Shared { group, filter } => write!(f, "$share/{group}/{filter}"),
        }
    }
}
