//! What each record holds and how it is laid out on disk.
//!
//! Every value is `[format version u8] [fields…] [CRC-32 of the rest, LE]`.
//! Integers are little-endian, byte strings and text are a `u32` length then
//! the bytes, an optional field is a `0`/`1` byte then the field. A value
//! whose checksum or layout is wrong decodes to [`Corrupt`]; the store sets
//! such a record aside rather than refusing to start.
//!
//! MQTT 5 properties and wills are kept as the bytes the broker encoded
//! (opaque here): this crate knows nothing of packets.

use crate::crc::crc32;

/// The layout version written in front of every value.
pub const FORMAT: u8 = 1;

/// A value that failed its checksum or does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

impl core::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("corrupt record (checksum or layout)")
    }
}

/// A session that outlives its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier (also the key).
    pub client_id: String,
    /// Protocol level of the client's last CONNECT (3, 4 or 5).
    pub protocol: u8,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When the session ends, in Unix milliseconds, once its client is gone.
    pub expires_at_ms: Option<u64>,
    /// The user name it authenticated as.
    pub user_name: Option<String>,
    /// The will, as the broker encoded it (opaque here).
    pub will: Option<Vec<u8>>,
    /// When a delayed will is due, in Unix milliseconds.
    pub will_due_ms: Option<u64>,
}

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The MQTT 5 Subscription Options byte (QoS, No Local, Retain As
    /// Published, Retain Handling).
    pub options: u8,
    /// Its Subscription Identifier.
    pub identifier: Option<u32>,
}

/// A message body, written once however many sessions it is queued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRecord {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS it was published with.
    pub qos: u8,
    /// Its RETAIN flag.
    pub retain: bool,
    /// MQTT 5 PUBLISH properties as the broker encoded them (opaque here).
    pub properties: Vec<u8>,
    /// When it expires (Message Expiry Interval), in Unix milliseconds.
    pub expires_at_ms: Option<u64>,
    /// A retained message's owner: the client identifier that published
    /// it (the broker's per-client retained limit counts it).
    pub owner: Option<String>,
}

/// Where a queued message stands in its flow to the session's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not sent yet.
    Queued,
    /// PUBLISH sent with this packet identifier, awaiting PUBACK or PUBREC.
    Sent(u16),
    /// PUBREC received and PUBREL sent, awaiting PUBCOMP.
    Released(u16),
}

/// A message queued for, or in flight to, one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    /// The [`BodyRecord`] it refers to.
    pub body: u64,
    /// The QoS granted for this delivery.
    pub qos: u8,
    /// Its flow state.
    pub delivery: Delivery,
    /// The Subscription Identifiers to send with it (one per matching
    /// subscription that has one).
    pub subscription_ids: Vec<u32>,
}

/// A growable value being written.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Self(vec![FORMAT])
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let crc = crc32(&self.0);
        self.0.extend_from_slice(&crc.to_le_bytes());
        self.0
    }
}

/// A value being read; every read fails with [`Corrupt`] past the end.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Checks the checksum and the format byte.
    fn new(value: &'a [u8]) -> Result<Self, Corrupt> {
        if value.len() < 5 {
            return Err(Corrupt);
        }
        let (body, crc) = value.split_at(value.len() - 4);
        if crc32(body).to_le_bytes() != crc || body[0] != FORMAT {
            return Err(Corrupt);
        }
        Ok(Self(&body[1..]))
    }
    /// Reads `bytes` as they are: no checksum, no format byte (the log's
    /// entries carry their own CRC).
    pub(crate) fn raw(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| Corrupt)?,
        ))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| Corrupt)?,
        ))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Corrupt)?,
        ))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn string(&mut self) -> Result<String, Corrupt> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Corrupt)
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Corrupt>,
    ) -> Result<Option<T>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(Corrupt),
        }
    }
    fn end(self) -> Result<(), Corrupt> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Corrupt)
        }
    }
}

/// A record that encodes to, and decodes from, one stored value.
pub trait Record: Sized {
    /// The value's bytes, checksum included.
    fn encode(&self) -> Vec<u8>;
    /// The record, or [`Corrupt`].
    fn decode(value: &[u8]) -> Result<Self, Corrupt>;
}

impl Record for SessionRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.client_id.as_bytes());
        w.u8(self.protocol);
        w.u32(self.expiry_interval);
        w.opt(self.expires_at_ms, Writer::u64);
        w.opt(self.user_name.as_deref(), |w, v| w.bytes(v.as_bytes()));
        w.opt(self.will.as_deref(), Writer::bytes);
        w.opt(self.will_due_ms, Writer::u64);
        w.finish()
    }
    fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value)?;
        let v = Self {
            client_id: r.string()?,
            protocol: r.u8()?,
            expiry_interval: r.u32()?,
            expires_at_ms: r.opt(Reader::u64)?,
            user_name: r.opt(Reader::string)?,
            will: r.opt(|r| r.bytes().map(<[u8]>::to_vec))?,
            will_due_ms: r.opt(Reader::u64)?,
        };
        r.end()?;
        Ok(v)
    }
}

impl Record for SubscriptionRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.options);
        w.opt(self.identifier, Writer::u32);
        w.finish()
    }
    fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value)?;
        let v = Self {
            options: r.u8()?,
            identifier: r.opt(Reader::u32)?,
        };
        r.end()?;
        Ok(v)
    }
}

impl Record for BodyRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.topic.as_bytes());
        w.bytes(&self.payload);
        w.u8(self.qos);
        w.u8(u8::from(self.retain));
        w.bytes(&self.properties);
        w.opt(self.expires_at_ms, Writer::u64);
        // Written only when present: records from before it still decode,
        // and each value keeps one encoding.
        if let Some(owner) = &self.owner {
            w.u8(1);
            w.bytes(owner.as_bytes());
        }
        w.finish()
    }
    fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value)?;
        let v = Self {
            topic: r.string()?,
            payload: r.bytes()?.to_vec(),
            qos: r.u8()?,
            retain: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(Corrupt),
            },
            properties: r.bytes()?.to_vec(),
            expires_at_ms: r.opt(Reader::u64)?,
            owner: if r.is_empty() {
                None
            } else {
                match r.u8()? {
                    1 => Some(r.string()?),
                    _ => return Err(Corrupt),
                }
            },
        };
        r.end()?;
        Ok(v)
    }
}

impl Record for QueueRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.body);
        w.u8(self.qos);
        match self.delivery {
            Delivery::Queued => w.u8(0),
            Delivery::Sent(id) => {
                w.u8(1);
                w.u16(id);
            }
            Delivery::Released(id) => {
                w.u8(2);
                w.u16(id);
            }
        }
        // The first identifier as format 1 wrote its only one; any more
        // follow as a count and the identifiers (absent in older records).
        w.opt(self.subscription_ids.first().copied(), Writer::u32);
        if let [_, more @ ..] = &self.subscription_ids[..] {
            if !more.is_empty() {
                w.u32(more.len() as u32);
                for &id in more {
                    w.u32(id);
                }
            }
        }
        w.finish()
    }
    fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value)?;
        let body = r.u64()?;
        let qos = r.u8()?;
        let delivery = match r.u8()? {
            0 => Delivery::Queued,
            1 => Delivery::Sent(r.u16()?),
            2 => Delivery::Released(r.u16()?),
            _ => return Err(Corrupt),
        };
        let mut subscription_ids: Vec<u32> = r.opt(Reader::u32)?.into_iter().collect();
        if !r.is_empty() {
            let n = r.u32()?;
            if subscription_ids.is_empty() || n == 0 {
                return Err(Corrupt);
            }
            for _ in 0..n {
                subscription_ids.push(r.u32()?);
            }
        }
        let v = Self {
            body,
            qos,
            delivery,
            subscription_ids,
        };
        r.end()?;
        Ok(v)
    }
}

/// A bare `u64` (a body's reference count, the clock): same framing.
impl Record for u64 {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(*self);
        w.finish()
    }
    fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value)?;
        let v = r.u64()?;
        r.end()?;
        Ok(v)
    }
}

/// An empty marker value (incoming QoS 2 awaiting PUBREL): same framing.
impl Record for () {
    fn encode(&self) -> Vec<u8> {
        Writer::new().finish()
    }
    fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        Reader::new(value)?.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opt<T: core::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
        proptest::option::of(s)
    }

    prop_compose! {
        fn session()(client_id in ".{0,20}", protocol in 3u8..=5, expiry_interval: u32,
                     expires_at_ms in opt(any::<u64>()), user_name in opt(".{0,10}"),
                     will in opt(proptest::collection::vec(any::<u8>(), 0..40)),
                     will_due_ms in opt(any::<u64>())) -> SessionRecord {
            SessionRecord { client_id, protocol, expiry_interval, expires_at_ms, user_name, will, will_due_ms }
        }
    }

    prop_compose! {
        fn body()(topic in ".{0,20}", payload in proptest::collection::vec(any::<u8>(), 0..200),
                  qos in 0u8..=2, retain: bool,
                  properties in proptest::collection::vec(any::<u8>(), 0..20),
                  expires_at_ms in opt(any::<u64>()), owner in opt(".{0,10}")) -> BodyRecord {
            BodyRecord { topic, payload, qos, retain, properties, expires_at_ms, owner }
        }
    }

    proptest! {
        #[test]
        fn session_roundtrips(s in session()) {
            prop_assert_eq!(SessionRecord::decode(&s.encode()), Ok(s));
        }

        #[test]
        fn body_roundtrips(b in body()) {
            prop_assert_eq!(BodyRecord::decode(&b.encode()), Ok(b));
        }

        #[test]
        fn queue_roundtrips(body: u64, qos in 0u8..=2, kind in 0u8..3, id: u16,
                            sids in proptest::collection::vec(any::<u32>(), 0..5)) {
            let delivery = match kind { 0 => Delivery::Queued, 1 => Delivery::Sent(id), _ => Delivery::Released(id) };
            let q = QueueRecord { body, qos, delivery, subscription_ids: sids };
            prop_assert_eq!(QueueRecord::decode(&q.encode()), Ok(q.clone()));
        }

        /// Any single flipped bit, and any cut, is caught: never a wrong record.
        #[test]
        fn damage_is_caught(b in body(), at: prop::sample::Index, bit in 0u8..8, cut: prop::sample::Index) {
            let v = b.encode();
            let mut flipped = v.clone();
            let i = at.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert_eq!(BodyRecord::decode(&flipped), Err(Corrupt));
            let n = cut.index(v.len());
            prop_assert_eq!(BodyRecord::decode(&v[..n]), Err(Corrupt));
        }

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn garbage_never_panics(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = SessionRecord::decode(&v);
            let _ = BodyRecord::decode(&v);
            let _ = QueueRecord::decode(&v);
            let _ = SubscriptionRecord::decode(&v);
        }
    }
}
