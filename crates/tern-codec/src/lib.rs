//! Encoder and decoder for every MQTT 3.1, 3.1.1 and 5.0 control packet.
//!
//! `tern-codec` is the one wire format of the Tern MQTT stack: the client, the
//! broker, the conformance suite and the fuzzers all go through it. It is
//! `no_std` (with `alloc`), does no I/O, and is:
//!
//! - **complete**: all fifteen packet types of MQTT 3.1 (protocol level 3,
//!   `"MQIsdp"`), 3.1.1 (level 4) and 5.0 (level 5, including `AUTH`), with
//!   every MQTT 5 property and reason code;
//! - **zero-copy**: topic names, payloads, and string and binary properties are
//!   [`Bytes`](bytes::Bytes) slices of the buffer the packet was read from;
//! - **streaming**: [`Packet::decode`] either returns a whole packet (consuming
//!   its bytes), or `Ok(None)` when more bytes are needed (consuming nothing),
//!   or a typed [`DecodeError`];
//! - **strict**: every violation the specifications define is a distinct
//!   [`DecodeErrorKind`] that names the rule and byte offset, and maps to the
//!   reason code a server sends for it ([`DecodeError::reason_code`]).
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use tern_codec::{Packet, ProtocolVersion, Publish, QoS, MqttString};
//!
//! let publish = Publish {
//!     topic: MqttString::from_static("sensors/kitchen/temp"),
//!     payload: bytes::Bytes::from_static(b"21.5"),
//!     qos: QoS::AtLeastOnce,
//!     packet_id: core::num::NonZeroU16::new(7),
//!     ..Publish::default()
//! };
//! let packet = Packet::Publish(publish);
//!
//! let mut wire = BytesMut::new();
//! packet.encode(ProtocolVersion::V5, &mut wire)?;
//! assert_eq!(wire.len(), packet.encoded_len(ProtocolVersion::V5));
//!
//! let decoded = Packet::decode(&mut wire, ProtocolVersion::V5, 1024)?;
//! assert_eq!(decoded, Some(packet));
//! assert!(wire.is_empty());
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! # Versions in the types
//!
//! There is one packet model for all versions: the MQTT 5 packets are a
//! superset of the 3.x ones. Parts that only exist in MQTT 5 are grouped in a
//! `properties` field (empty for 3.x) and in [`ReasonCode`]s. Decoding a 3.x
//! packet yields empty properties and the reason code the 3.x packet means;
//! encoding for 3.x refuses (with [`EncodeError::NotInVersion`]) anything the
//! older version cannot express, instead of silently dropping it.

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;

#[cfg(feature = "arbitrary")]
mod arbitrary;
mod error;
mod framing;
mod packet;
mod primitives;
mod properties;
mod qos;
mod reason;
#[cfg(feature = "serde")]
mod serde_impls;
mod string;
mod user_properties;
mod varint;
mod version;

#[cfg(feature = "arbitrary")]
pub use crate::arbitrary::arbitrary_packet;
pub use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
pub use crate::framing::{FixedHeader, FrameStatus, PacketType, check_frame};
pub use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PubAck, PubComp, PubRec, PubRel, Publish,
    RetainHandling, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, UnsubAck, Unsubscribe,
    Will,
};
pub use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PropertyId, PublishProperties, PublishPropertiesBox, SubscribeProperties,
    SubscriptionId, UnsubscribeProperties, UserProperty, WillProperties,
};
pub use crate::qos::QoS;
pub use crate::reason::ReasonCode;
pub use crate::string::{MqttString, StringError};
pub use crate::user_properties::{Iter as UserPropertiesIter, UserProperties};
pub use crate::varint::{VARINT_MAX, varint_len};
pub use crate::version::ProtocolVersion;
/// Why a topic filter is invalid, as [`DecodeErrorKind::InvalidTopicFilter`]
/// reports it (from tern-topic, whose rules the decoder applies).
pub use tern_topic::TopicError;

/// A packet identifier: a non-zero 16-bit number [MQTT-2.2.1-3].
///
/// Zero is not a valid identifier, so it is not representable.
pub type PacketId = core::num::NonZeroU16;

/// The largest Remaining Length the fixed header can express (268,435,455).
pub const MAX_REMAINING_LENGTH: u32 = VARINT_MAX;

/// The largest whole packet: fixed header (5 bytes) plus the largest Remaining Length.
pub const MAX_PACKET_SIZE: u32 = MAX_REMAINING_LENGTH + 5;

#[doc(hidden)]
pub use bytes;

// The hot types stay small: a `Packet` and a `Publish` are moved between the
// codec, the session and the broker, and queued per subscriber
// (`size_of` was 432 and 232 bytes before the large variants and the MQTT 5
// PUBLISH properties were boxed).
const _: () = assert!(core::mem::size_of::<Packet>() <= 96);
const _: () = assert!(core::mem::size_of::<Publish>() <= 96);
