//! [`UserProperties`]: the User Properties of a message kept as one flat
//! buffer in their wire encoding, shared with the received packet when they
//! were contiguous in it.
//!
//! A broker holds PUBLISH and will properties for as long as a message is
//! queued or retained, and a peer may send hundreds of thousands of them in
//! one packet (an empty one is 5 bytes on the wire). Decoded into a vector of
//! pairs of separately counted strings, each cost about 64 bytes of memory;
//! here each costs its 5 wire bytes, and a decoded set is usually a zero-copy
//! slice of the packet it came in.

use crate::{
    MqttString, UserProperty,
    primitives::{Frame, PResult, put_binary, string_slice},
    properties::PropertyId,
};
use alloc::vec::Vec;
use bytes::{BufMut, Bytes};
use core::fmt;

/// User Properties in order (they may repeat, and their order is kept
/// [MQTT-3.3.2-18]), held as their wire encoding: each one is the identifier
/// byte 0x26, then the name and the value as length-prefixed strings.
///
/// It reads like a list of [`UserProperty`] (each item shares the buffer,
/// nothing is copied) and is built with [`push`](Self::push) or collected
/// from an iterator:
///
/// ```
/// use tern_codec::{MqttString, UserProperties, UserProperty};
///
/// let p = |k, v| UserProperty::new(MqttString::from_static(k), MqttString::from_static(v));
/// let mut props: UserProperties = [p("unit", "C")].into_iter().collect();
/// props.push(p("unit", "F"));
/// assert_eq!(props.len(), 2);
/// assert_eq!(props.get(1).unwrap().value, *"F");
/// assert_eq!(props.wire_bytes().len(), 2 * (1 + 2 + 4 + 2 + 1));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct UserProperties(Bytes);

impl UserProperties {
    /// No property.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// `true` when there is no property.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many properties there are (counted by walking the buffer).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The properties, in order; each item shares this buffer.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            all: &self.0,
            at: 0,
        }
    }

    /// The property at `index`, if there are that many.
    pub fn get(&self, index: usize) -> Option<UserProperty> {
        self.iter().nth(index)
    }

    /// Appends a property. This copies the buffer once if it is shared
    /// (with a received packet, or a clone), then grows it in place.
    pub fn push(&mut self, property: UserProperty) {
        let mut buf = self.take_vec();
        buf.reserve(1 + property.key.wire_len() + property.value.wire_len());
        buf.put_u8(PropertyId::UserProperty as u8);
        put_binary(&mut buf, property.key.as_bytes());
        put_binary(&mut buf, property.value.as_bytes());
        self.0 = Bytes::from(buf);
    }

    /// Removes every property.
    pub fn clear(&mut self) {
        self.0 = Bytes::new();
    }

    /// The properties' wire encoding, identifier bytes included: what a
    /// property block carries for them, and the bytes they hold in memory.
    pub fn wire_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The same properties in a buffer of their own, exactly their size:
    /// what a store keeps, so a long-lived message does not hold the whole
    /// packet (or read buffer) it was decoded from.
    pub fn detached(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// The buffer as a vector to append to (copied only when shared).
    fn take_vec(&mut self) -> Vec<u8> {
        Vec::from(core::mem::take(&mut self.0))
    }

    /// Decodes one User Property whose identifier starts `entry` (the value
    /// starts at `value`), appending it. Consecutive properties of one
    /// packet stay a slice of it; a property after some other one is
    /// appended to an owned buffer, so decoding stays linear however they
    /// interleave.
    pub(crate) fn parse_push<'a>(
        &mut self,
        frame: &Frame<'_>,
        entry: &'a [u8],
        value: &'a [u8],
    ) -> PResult<'a, ()> {
        let (rest, _key) = string_slice(value)?;
        let (rest, _value) = string_slice(rest)?;
        let encoded = &entry[..entry.len() - rest.len()];
        if self.0.is_empty() {
            self.0 = frame.share(encoded);
        } else if let Some(joined) = frame.join(&self.0, encoded) {
            self.0 = joined;
        } else {
            let mut buf = self.take_vec();
            buf.extend_from_slice(encoded);
            self.0 = Bytes::from(buf);
        }
        Ok((rest, ()))
    }
}

impl fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The properties of a [`UserProperties`], in order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    all: &'a Bytes,
    at: usize,
}

impl Iter<'_> {
    /// The string at `at`, and where the next field starts.
    fn string(&self, at: usize) -> Option<(MqttString, usize)> {
        let len = usize::from(u16::from_be_bytes([
            *self.all.get(at)?,
            *self.all.get(at + 1)?,
        ]));
        let end = at + 2 + len;
        if end > self.all.len() {
            return None;
        }
        Some((MqttString::from_validated(self.all.slice(at + 2..end)), end))
    }
}

impl Iterator for Iter<'_> {
    type Item = UserProperty;

    fn next(&mut self) -> Option<UserProperty> {
        // The buffer holds only whole, validated entries (decoded or
        // pushed), so the lookups below fail only at its end.
        let (key, at) = self.string(self.at + 1)?;
        let (value, at) = self.string(at)?;
        self.at = at;
        Some(UserProperty { key, value })
    }
}

impl<'a> IntoIterator for &'a UserProperties {
    type Item = UserProperty;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<UserProperty> for UserProperties {
    fn from_iter<I: IntoIterator<Item = UserProperty>>(iter: I) -> Self {
        let mut props = Self::new();
        props.extend(iter);
        props
    }
}

impl Extend<UserProperty> for UserProperties {
    fn extend<I: IntoIterator<Item = UserProperty>>(&mut self, iter: I) {
        let mut buf = self.take_vec();
        for p in iter {
            buf.put_u8(PropertyId::UserProperty as u8);
            put_binary(&mut buf, p.key.as_bytes());
            put_binary(&mut buf, p.value.as_bytes());
        }
        self.0 = Bytes::from(buf);
    }
}

impl From<Vec<UserProperty>> for UserProperties {
    fn from(props: Vec<UserProperty>) -> Self {
        props.into_iter().collect()
    }
}

impl<const N: usize> From<[UserProperty; N]> for UserProperties {
    fn from(props: [UserProperty; N]) -> Self {
        props.into_iter().collect()
    }
}

impl From<UserProperties> for Vec<UserProperty> {
    fn from(props: UserProperties) -> Self {
        props.iter().collect()
    }
}

impl PartialEq<Vec<UserProperty>> for UserProperties {
    fn eq(&self, other: &Vec<UserProperty>) -> bool {
        self.iter().eq(other.iter().cloned())
    }
}

impl PartialEq<UserProperties> for Vec<UserProperty> {
    fn eq(&self, other: &UserProperties) -> bool {
        other == self
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for UserProperties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for UserProperties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<UserProperty>::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> UserProperty {
        UserProperty::new(
            MqttString::from_utf8(Bytes::copy_from_slice(k.as_bytes())).unwrap(),
            MqttString::from_utf8(Bytes::copy_from_slice(v.as_bytes())).unwrap(),
        )
    }

    #[test]
    fn push_iter_and_compare_keep_order_and_repeats() {
        let list = alloc::vec![p("a", "1"), p("", ""), p("a", "2")];
        let props = UserProperties::from(list.clone());
        assert_eq!(props.len(), 3);
        assert_eq!(props, list);
        assert_eq!(Vec::from(props.clone()), list);
        assert_eq!(
            props.wire_bytes().len(),
            7 + 5 + 7,
            "0x26, then two length-prefixed strings each"
        );
        let mut more = props.clone();
        more.push(p("b", "3"));
        assert_eq!(more.len(), 4);
        assert_eq!(props.len(), 3, "a clone is not changed by a push");
        more.clear();
        assert!(more.is_empty());
    }
}
