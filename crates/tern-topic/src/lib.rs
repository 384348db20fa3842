//! MQTT topics: names, filters, shared subscriptions, matching, and the two
//! indexes a broker routes with.
//!
//! `tern-topic` is the topic layer of the Tern MQTT stack. It is `no_std`
//! (with `alloc`), does no I/O, reads no clock and uses no randomness, and
//! knows nothing of packets or sessions. It provides:
//!
//! - [`TopicName`] and [`TopicFilter`]: validated, cheap-to-clone views of a
//!   [`bytes::Bytes`] buffer, built from a decoder's buffer without copying;
//! - [`SubscriptionFilter`]: a SUBSCRIBE's filter, plain or
//!   `$share/{ShareName}/{filter}` ([`ShareName`]);
//! - [`matches()`]: the specification's matching rule for one filter and one
//!   topic;
//! - [`SubscriptionTree`]: every subscription, answering "who receives a
//!   message on this topic" in time independent of the number of
//!   subscriptions, with the per-client merge and shared-group selection a
//!   broker delivers with;
//! - [`RetainedIndex`]: retained messages by topic, answering "which retained
//!   messages does this new subscription receive".
//!
//! # Example
//!
//! ```
//! use tern_topic::{
//!     MatchBuffer, RetainedIndex, SubscriptionFilter, SubscriptionTree, TopicFilter, TopicName,
//! };
//!
//! // Subscriptions, keyed by client, with the granted QoS as the value.
//! let mut subscriptions = SubscriptionTree::new();
//! subscriptions.insert(1u32, &SubscriptionFilter::parse_str("home/+/temp")?, 1u8);
//! subscriptions.insert(1u32, &SubscriptionFilter::parse_str("home/#")?, 0u8);
//! subscriptions.insert(2u32, &SubscriptionFilter::parse_str("#")?, 2u8);
//!
//! // Route a PUBLISH: one delivery per client, at its highest granted QoS.
//! let topic = TopicName::try_from("home/kitchen/temp")?;
//! let mut buf = MatchBuffer::new();
//! let mut matches = subscriptions.matches(&topic, &mut buf);
//! let deliveries: Vec<(u32, u8)> = matches
//!     .per_client()
//!     .map(|client| (*client.key(), client.values().copied().max().unwrap()))
//!     .collect();
//! assert_eq!(deliveries, [(1, 1), (2, 2)]);
//!
//! // `$` topics are not matched by filters that begin with a wildcard.
//! let sys = TopicName::try_from("$SYS/broker/uptime")?;
//! assert!(subscriptions.matches(&sys, &mut buf).is_empty());
//!
//! // Retained messages for a new subscription.
//! let mut retained = RetainedIndex::new();
//! retained.insert(topic.clone(), "21.5");
//! let filter = TopicFilter::try_from("home/+/temp")?;
//! assert_eq!(retained.matching(&filter).map(|(_, v)| *v).collect::<Vec<_>>(), ["21.5"]);
//! # Ok::<(), tern_topic::TopicError>(())
//! ```
//!
//! # Features
//!
//! - `index` (default): [`SubscriptionTree`] and [`RetainedIndex`] (and the
//!   hash table they use). Without it the crate is the topic rules alone
//!   (names, filters, `$share`, the matcher) on `bytes`: tern-codec depends
//!   on it that way to check the filters of SUBSCRIBE and UNSUBSCRIBE with
//!   the same code as the broker.
//!
//! # Zero-copy from the codec
//!
//! tern-codec decodes a topic as an `MqttString` that shares the packet's
//! buffer; `TopicName::from_bytes(string.into_bytes())` checks the topic
//! rules and keeps sharing it. The indexes store levels, not the buffers they
//! were given, so a long-lived subscription never pins a packet buffer.

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;

mod error;
mod filter;
#[cfg(feature = "index")]
mod level;
#[cfg(feature = "index")]
mod matches;
mod matching;
mod name;
#[cfg(feature = "index")]
mod retained;
mod shared;
#[cfg(feature = "index")]
mod tree;
#[cfg(feature = "index")]
mod trie;
mod validate;

pub use crate::error::TopicError;
pub use crate::filter::{TopicFilter, validate_topic_filter};
#[cfg(feature = "index")]
pub use crate::matches::{
    ClientMatches, DeliveryOptions, MatchBuffer, Matches, PerClient, PlainMatch, SharedGroupRef,
    SharedMatch,
};
pub use crate::matching::matches;
pub use crate::name::{TopicName, validate_topic_name};
#[cfg(feature = "index")]
pub use crate::retained::{RetainedIndex, RetainedMatches, RetainedSlot};
pub use crate::shared::{
    ShareName, SubscriptionFilter, validate_share_name, validate_subscription_filter,
};
#[cfg(feature = "index")]
pub use crate::tree::SubscriptionTree;
pub use crate::validate::MAX_TOPIC_LEN;
