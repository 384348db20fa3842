//! Topic aliases (MQTT 5 §3.3.2.3.4): per connection, never carried over
//! to the next one [MQTT-3.3.2-7].

use alloc::{boxed::Box, collections::BTreeMap};
use bytes::Bytes;
use core::num::NonZeroU16;
use tern_codec::MqttString;

/// Aliases we assign to topics we send, least recently used evicted first.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutgoingAliases {
    /// The highest alias we may use: the minimum of the peer's Topic Alias
    /// Maximum and our own cap; 0 disables aliases [MQTT-3.1.2-27].
    max: u16,
    by_topic: BTreeMap<Bytes, (NonZeroU16, u64)>,
    by_use: BTreeMap<u64, Bytes>,
    tick: u64,
}

/// What to put in an outgoing PUBLISH for its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasUse {
    /// No alias: send the topic name.
    None,
    /// A new mapping: send the topic name and this alias.
    Assign(NonZeroU16),
    /// An existing mapping: send an empty topic name and this alias.
    Reuse(NonZeroU16),
}

impl OutgoingAliases {
    pub(crate) fn new(max: u16) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Chooses the alias for `topic`, updating the LRU order.
    pub(crate) fn use_for(&mut self, topic: &MqttString) -> AliasUse {
        if self.max == 0 || topic.is_empty() {
            return AliasUse::None;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((alias, last)) = self.by_topic.get_mut(topic.as_bytes()) {
            let alias = *alias;
            let old = core::mem::replace(last, tick);
            if let Some(t) = self.by_use.remove(&old) {
                self.by_use.insert(tick, t);
            }
            return AliasUse::Reuse(alias);
        }
        let alias = if self.by_topic.len() < usize::from(self.max) {
            // Fresh aliases count up from 1 while there is room.
            NonZeroU16::new(self.by_topic.len() as u16 + 1).unwrap_or(NonZeroU16::MIN)
        } else {
            // Evict the least recently used mapping and take its alias.
            let Some((_, evicted)) = self.by_use.pop_first() else {
                return AliasUse::None;
            };
            match self.by_topic.remove(&evicted) {
                Some((alias, _)) => alias,
                None => return AliasUse::None,
            }
        };
        let key = topic.as_shared_bytes().clone();
        self.by_topic.insert(key.clone(), (alias, tick));
        self.by_use.insert(tick, key);
        AliasUse::Assign(alias)
    }
}

/// Aliases the peer assigned to topics it sends us.
#[derive(Debug, Clone, Default)]
pub(crate) struct IncomingAliases {
    /// Our advertised Topic Alias Maximum.
    max: u16,
    /// Allocated by the first alias the peer sets.
    #[allow(
        clippy::box_collection,
        reason = "one word inline instead of three while unused"
    )]
    map: Option<Box<BTreeMap<u16, MqttString>>>,
}

/// Why an incoming alias could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasError {
    /// Above our Topic Alias Maximum (0x94 Topic Alias invalid).
    OutOfRange,
    /// An empty topic with an alias never mapped (0x82 Protocol Error).
    Unknown,
}

impl IncomingAliases {
    pub(crate) fn new(max: u16) -> Self {
        Self { max, map: None }
    }

    /// Resolves a PUBLISH's topic: records a new mapping when both are given,
    /// or looks the alias up when the topic is empty.
    pub(crate) fn resolve(
        &mut self,
        topic: &MqttString,
        alias: Option<NonZeroU16>,
    ) -> Result<MqttString, AliasError> {
        let Some(alias) = alias else {
            return Ok(topic.clone());
        };
        if alias.get() > self.max {
            return Err(AliasError::OutOfRange);
        }
        if topic.is_empty() {
            self.map
                .as_ref()
                .and_then(|m| m.get(&alias.get()))
                .cloned()
                .ok_or(AliasError::Unknown)
        } else {
            self.map
                .get_or_insert_default()
                .insert(alias.get(), topic.clone());
            Ok(topic.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static str) -> MqttString {
        MqttString::from_static(s)
    }

    fn a(n: u16) -> NonZeroU16 {
        NonZeroU16::new(n).unwrap()
    }

    #[test]
    fn disabled_when_peer_allows_none() {
        // [MQTT-3.1.2-27] / [MQTT-3.2.2-18]: no Topic Alias Maximum, no aliases.
        let mut out = OutgoingAliases::new(0);
        assert_eq!(out.use_for(&t("a")), AliasUse::None);
    }

    #[test]
    fn assigns_then_reuses_then_evicts_lru_within_max() {
        let mut out = OutgoingAliases::new(2);
        assert_eq!(out.use_for(&t("a")), AliasUse::Assign(a(1)));
        assert_eq!(out.use_for(&t("b")), AliasUse::Assign(a(2)));
        assert_eq!(out.use_for(&t("a")), AliasUse::Reuse(a(1)));
        // "b" is least recently used: "c" takes its alias, never exceeding 2
        // [MQTT-3.3.2-9] [MQTT-3.3.2-11].
        assert_eq!(out.use_for(&t("c")), AliasUse::Assign(a(2)));
        assert_eq!(out.use_for(&t("a")), AliasUse::Reuse(a(1)));
        assert_eq!(out.use_for(&t("b")), AliasUse::Assign(a(2)));
    }

    #[test]
    fn incoming_resolution_and_errors() {
        let mut inc = IncomingAliases::new(5);
        assert_eq!(inc.resolve(&t("x"), Some(a(3))), Ok(t("x")));
        assert_eq!(inc.resolve(&MqttString::new(), Some(a(3))), Ok(t("x")));
        assert_eq!(
            inc.resolve(&MqttString::new(), Some(a(4))),
            Err(AliasError::Unknown)
        );
        assert_eq!(
            inc.resolve(&t("y"), Some(a(6))),
            Err(AliasError::OutOfRange)
        );
        // A mapping can be replaced.
        assert_eq!(inc.resolve(&t("z"), Some(a(3))), Ok(t("z")));
        assert_eq!(inc.resolve(&MqttString::new(), Some(a(3))), Ok(t("z")));
    }
}
