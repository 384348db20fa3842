//! Human-readable serde support: strings as JSON strings, binary data as hex.

use crate::{MqttString, PayloadFormat, QoS, SubscriptionId, UserProperty};
use alloc::{string::String, vec::Vec};
use bytes::Bytes;
use core::num::{NonZeroU16, NonZeroU32};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

impl Serialize for MqttString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MqttString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MqttString::try_from(s).map_err(D::Error::custom)
    }
}

/// Binary data as a lowercase hex string.
pub(crate) mod hex {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map(Bytes::from).map_err(D::Error::custom)
    }

    pub(crate) fn encode(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for &b in bytes {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        out
    }

    pub(crate) fn decode(s: &str) -> Result<Vec<u8>, &'static str> {
        fn nibble(c: u8) -> Result<u8, &'static str> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err("binary data must be hex digits"),
            }
        }
        let s = s.as_bytes();
        if s.len() % 2 != 0 {
            return Err("hex string has an odd number of digits");
        }
        s.chunks(2)
            .map(|pair| Ok((nibble(pair[0])? << 4) | nibble(pair[1])?))
            .collect()
    }
}

/// Optional binary data as hex.
pub(crate) mod opt_hex {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => hex::decode(&s)
                .map(|v| Some(Bytes::from(v)))
                .map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

/// A property value's human-readable form.
pub(crate) trait HumanSerde: Sized {
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

macro_rules! human_serde_via_serde {
    ($($ty:ty),*) => {$(
        impl HumanSerde for $ty {
            fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.serialize(s)
            }
            fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }
    )*};
}

human_serde_via_serde!(
    bool,
    u16,
    u32,
    NonZeroU16,
    NonZeroU32,
    QoS,
    PayloadFormat,
    SubscriptionId,
    MqttString,
    UserProperty
);

impl HumanSerde for Bytes {
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hex::serialize(self, s)
    }
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        hex::deserialize(d)
    }
}

/// An optional property value, serialised in its human-readable form.
pub(crate) mod opt {
    use super::*;

    struct Ser<'a, T>(&'a T);

    impl<T: HumanSerde> Serialize for Ser<'_, T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.ser(s)
        }
    }

    struct De<T>(T);

    impl<'de, T: HumanSerde> Deserialize<'de> for De<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            T::de(d).map(De)
        }
    }

    pub(crate) fn serialize<T: HumanSerde, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&Ser(v)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, T: HumanSerde, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(Option::<De<T>>::deserialize(d)?.map(|v| v.0))
    }
}
