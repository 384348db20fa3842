//! Decode and encode errors, each naming the rule broken and the reason code it causes.

use crate::{PacketType, ProtocolVersion, ReasonCode, TopicError, properties::PropertyId};
use core::fmt;

/// Why bytes received are not a valid packet.
///
/// Carries the rule that was broken ([`DecodeError::kind`]), the byte offset
/// from the start of the packet where it was found, and, via
/// [`DecodeError::reason_code`], the MQTT 5 reason code the receiver sends in
/// its DISCONNECT (or CONNACK, for a bad CONNECT) before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    offset: usize,
    packet_type: Option<PacketType>,
    version: Option<ProtocolVersion>,
}

/// The rule a received packet broke.
///
/// Variants are grouped by the reason code they map to; see
/// [`DecodeErrorKind::reason_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    // ---- Malformed Packet (0x81) ----
    /// The packet type nibble is 0, or 15 before MQTT 5.
    ReservedPacketType(u8),
    /// The fixed header flags are not the ones this packet type requires [MQTT-2.2.2-2].
    InvalidHeaderFlags {
        /// The flag nibble received.
        flags: u8,
    },
    /// A Variable Byte Integer would need a fifth byte.
    VarIntTooLong,
    /// A Variable Byte Integer was not encoded in the minimum number of bytes [MQTT-1.5.5-1].
    VarIntNotMinimal,
    /// The Remaining Length ends before a field does.
    UnexpectedEnd,
    /// Bytes are left over after the last field the Remaining Length covers.
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// A string is not well-formed UTF-8 [MQTT-1.5.4-1].
    InvalidUtf8,
    /// A string contains U+0000 [MQTT-1.5.4-2].
    NullCharacter,
    /// The CONNECT reserved flag is not zero [MQTT-3.1.2-3].
    ConnectReservedFlag,
    /// Will QoS or Will Retain is set without the Will Flag [MQTT-3.1.2-11] [MQTT-3.1.2-13].
    WillFlagsWithoutWill,
    /// Will QoS is 3 [MQTT-3.1.2-12].
    InvalidWillQos,
    /// A password without a user name, which MQTT 3.x forbids [MQTT-3.1.2-22].
    PasswordWithoutUsername,
    /// The CONNACK acknowledge flags have reserved bits set.
    ConnAckReservedFlags,
    /// PUBLISH QoS is 3 [MQTT-3.3.1-4].
    InvalidPublishQos,
    /// DUP is set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    DupWithQos0,
    /// Reserved bits of a subscription options byte are set [MQTT-3.8.3-5].
    SubscriptionOptionsReserved,
    /// A property identifier that is unknown or not allowed in this packet.
    PropertyNotAllowed {
        /// The identifier received.
        id: u8,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE Topic Filter breaks the topic filter
    /// rules (3.1.1 [MQTT-4.7.1-2] [MQTT-4.7.1-3]; 5.0 [MQTT-4.7.1-1]
    /// [MQTT-4.7.1-2]; both [MQTT-4.7.3-1] [MQTT-4.7.3-2]) or, in MQTT 5,
    /// the shared subscription syntax [MQTT-4.8.2-1] [MQTT-4.8.2-2]; the
    /// [`TopicError`] names the rule. MQTT 5's SUBACK code 0x8F is for a
    /// filter that is "correctly formed but not allowed", so a filter that is
    /// not correctly formed makes the packet malformed.
    InvalidTopicFilter(TopicError),

    // ---- Protocol Error (0x82) ----
    /// A Packet Identifier is zero [MQTT-2.2.1-3].
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filters [MQTT-3.8.3-3] [MQTT-3.10.3-2].
    NoTopicFilters,
    /// Requested QoS of 3 in a subscription.
    InvalidRequestedQos,
    /// Retain Handling of 3 in a subscription.
    InvalidRetainHandling,
    /// A property that may appear once appears again.
    DuplicateProperty(PropertyId),
    /// A property value outside its allowed range (for example Receive Maximum 0).
    InvalidPropertyValue(PropertyId),
    /// Authentication Data without an Authentication Method.
    AuthDataWithoutMethod,
    /// A reason code that is not defined for this packet type.
    InvalidReasonCode(u8),
    /// A CONNACK with an error reason code and Session Present set [MQTT-3.2.2-6].
    SessionPresentOnError,
    /// A zero-length PUBLISH topic without a Topic Alias.
    EmptyTopic,
    /// No Local set on a shared subscription [MQTT-3.8.3-4] (5.0).
    NoLocalOnSharedSubscription,
    /// A SUBACK, or an MQTT 5 UNSUBACK, with no reason code: it must carry
    /// one per filter of the request, which has at least one (3.1.1
    /// [MQTT-3.8.4-5]; 5.0 [MQTT-3.8.4-6] [MQTT-3.9.3-2] [MQTT-3.11.3-2]).
    NoReasonCodes,

    // ---- Other reason codes ----
    /// The protocol name is not `MQTT` (or `MQIsdp` for level 3) [MQTT-3.1.2-1].
    InvalidProtocolName,
    /// The protocol level is not 3, 4 or 5 [MQTT-3.1.2-2].
    UnsupportedProtocolLevel(u8),
    /// A PUBLISH or Will topic name contains `+` or `#` [MQTT-3.3.2-2].
    WildcardInTopicName,
    /// The packet is larger than the receiver's maximum packet size.
    PacketTooLarge {
        /// The whole packet's size in bytes, from its fixed header.
        size: u64,
        /// The receiver's limit.
        max: u32,
    },
}

impl DecodeErrorKind {
    /// The MQTT 5 reason code a server sends for this error.
    pub const fn reason_code(self) -> ReasonCode {
        use DecodeErrorKind::*;
        match self {
            ReservedPacketType(_)
            | InvalidHeaderFlags { .. }
            | VarIntTooLong
            | VarIntNotMinimal
            | UnexpectedEnd
            | TrailingBytes { .. }
            | InvalidUtf8
            | NullCharacter
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | InvalidWillQos
            | PasswordWithoutUsername
            | ConnAckReservedFlags
            | InvalidPublishQos
            | DupWithQos0
            | SubscriptionOptionsReserved
            | PropertyNotAllowed { .. }
            | InvalidTopicFilter(_) => ReasonCode::MalformedPacket,
            ZeroPacketId
            | NoTopicFilters
            | InvalidRequestedQos
            | InvalidRetainHandling
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | InvalidReasonCode(_)
            | SessionPresentOnError
            | EmptyTopic
            | NoLocalOnSharedSubscription
            | NoReasonCodes => ReasonCode::ProtocolError,
            InvalidProtocolName | UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            WildcardInTopicName => ReasonCode::TopicNameInvalid,
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match *self {
            ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            InvalidHeaderFlags { flags } => {
                write!(f, "invalid fixed header flags 0b{flags:04b} [MQTT-2.2.2-2]")
            }
            VarIntTooLong => f.write_str("variable byte integer longer than 4 bytes"),
            VarIntNotMinimal => f.write_str(
                "variable byte integer not in the minimum number of bytes [MQTT-1.5.5-1]",
            ),
            UnexpectedEnd => f.write_str("remaining length ends inside a field"),
            TrailingBytes { count } => {
                write!(f, "{count} bytes left over after the last field")
            }
            InvalidUtf8 => f.write_str("string is not well-formed UTF-8 [MQTT-1.5.4-1]"),
            NullCharacter => f.write_str("string contains U+0000 [MQTT-1.5.4-2]"),
            ConnectReservedFlag => f.write_str("CONNECT reserved flag is set [MQTT-3.1.2-3]"),
            WillFlagsWithoutWill => f.write_str(
                "will QoS or will retain set without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]",
            ),
            InvalidWillQos => f.write_str("will QoS is 3 [MQTT-3.1.2-12]"),
            PasswordWithoutUsername => {
                f.write_str("password flag set without user name flag [MQTT-3.1.2-22]")
            }
            ConnAckReservedFlags => f.write_str("CONNACK acknowledge flags reserved bits set"),
            InvalidPublishQos => f.write_str("PUBLISH QoS is 3 [MQTT-3.3.1-4]"),
            DupWithQos0 => f.write_str("DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]"),
            SubscriptionOptionsReserved => {
                f.write_str("subscription options reserved bits set [MQTT-3.8.3-5]")
            }
            PropertyNotAllowed { id } => {
                write!(f, "property 0x{id:02X} is not allowed in this packet")
            }
            InvalidTopicFilter(e) => write!(f, "invalid topic filter: {e}"),
            ZeroPacketId => f.write_str("packet identifier is 0 [MQTT-2.2.1-3]"),
            NoTopicFilters => {
                f.write_str("no topic filters in the payload [MQTT-3.8.3-3] [MQTT-3.10.3-2]")
            }
            InvalidRequestedQos => f.write_str("requested QoS is 3"),
            InvalidRetainHandling => f.write_str("retain handling is 3"),
            DuplicateProperty(id) => write!(f, "property {id} included more than once"),
            InvalidPropertyValue(id) => write!(f, "invalid value for property {id}"),
            AuthDataWithoutMethod => {
                f.write_str("authentication data without an authentication method")
            }
            InvalidReasonCode(code) => {
                write!(f, "reason code 0x{code:02X} is not defined for this packet")
            }
            SessionPresentOnError => {
                f.write_str("session present set with an error reason code [MQTT-3.2.2-6]")
            }
            EmptyTopic => f.write_str("empty topic name without a topic alias"),
            NoLocalOnSharedSubscription => {
                f.write_str("No Local set on a shared subscription [MQTT-3.8.3-4]")
            }
            NoReasonCodes => f.write_str(
                "no reason codes: one is required per topic filter of the request \
                 (3.1.1 [MQTT-3.8.4-5]; 5.0 [MQTT-3.9.3-2] [MQTT-3.11.3-2])",
            ),
            InvalidProtocolName => f.write_str("protocol name is not MQTT [MQTT-3.1.2-1]"),
            UnsupportedProtocolLevel(l) => {
                write!(f, "unsupported protocol level {l} [MQTT-3.1.2-2]")
            }
            WildcardInTopicName => f.write_str("topic name contains a wildcard [MQTT-3.3.2-2]"),
            PacketTooLarge { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds the maximum packet size {max}"
                )
            }
        }
    }
}

impl DecodeError {
    pub(crate) const fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        Self {
            kind,
            offset,
            packet_type: None,
            version: None,
        }
    }

    pub(crate) const fn in_packet(mut self, packet_type: PacketType) -> Self {
        self.packet_type = Some(packet_type);
        self
    }

    pub(crate) const fn with_version(mut self, version: ProtocolVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// The rule broken.
    pub const fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// The byte offset from the start of the packet (its first fixed-header byte).
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// The packet type, when the fixed header was read.
    pub const fn packet_type(&self) -> Option<PacketType> {
        self.packet_type
    }

    /// For a bad CONNECT, the protocol version it asked for, once the protocol
    /// level was read: the version in which to answer with a CONNACK.
    pub const fn connect_version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The MQTT 5 reason code a server sends for this error.
    pub const fn reason_code(&self) -> ReasonCode {
        self.kind.reason_code()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.packet_type {
            Some(t) => write!(f, "{t} at byte {}: {}", self.offset, self.kind),
            None => write!(f, "at byte {}: {}", self.offset, self.kind),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a packet cannot be encoded.
///
/// The encoder refuses packets that break the specification rather than
/// writing them; nothing is written when it returns an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet, or one of its fields, does not exist in this protocol version
    /// (for example properties or a non-success reason code in MQTT 3.1.1).
    NotInVersion {
        /// What cannot be expressed.
        what: &'static str,
        /// The version it was encoded for.
        version: ProtocolVersion,
    },
    /// A packet identifier is missing at QoS 1 or 2, or present at QoS 0.
    PacketIdMismatch,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    DupWithQos0,
    /// A topic name contains `+` or `#` [MQTT-3.3.2-2].
    WildcardInTopicName,
    /// An empty topic name where one is required.
    EmptyTopic,
    /// SUBSCRIBE or UNSUBSCRIBE without topic filters.
    NoTopicFilters,
    /// SUBACK, or MQTT 5 UNSUBACK, without reason codes.
    NoReasonCodes,
    /// A reason code not defined for this packet type.
    InvalidReasonCode(ReasonCode),
    /// A binary field longer than 65,535 bytes.
    BinaryTooLong,
    /// Authentication Data without an Authentication Method.
    AuthDataWithoutMethod,
    /// A CONNACK with Session Present and an error reason code.
    SessionPresentOnError,
    /// The packet would be longer than the Remaining Length can express.
    PacketTooLarge,
    /// A field holds a value the specification forbids; names the field.
    InvalidValue(&'static str),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInVersion { what, version } => {
                write!(f, "{what} cannot be expressed in MQTT {version}")
            }
            Self::PacketIdMismatch => {
                f.write_str("packet identifier must be present exactly when QoS > 0")
            }
            Self::DupWithQos0 => f.write_str("DUP must be 0 for QoS 0 [MQTT-3.3.1-2]"),
            Self::WildcardInTopicName => {
                f.write_str("topic name contains a wildcard [MQTT-3.3.2-2]")
            }
            Self::EmptyTopic => f.write_str("topic name is empty"),
            Self::NoTopicFilters => f.write_str("at least one topic filter is required"),
            Self::NoReasonCodes => f.write_str("at least one reason code is required"),
            Self::InvalidReasonCode(code) => {
                write!(f, "reason code {code} is not defined for this packet")
            }
            Self::BinaryTooLong => f.write_str("binary field longer than 65,535 bytes"),
            Self::AuthDataWithoutMethod => {
                f.write_str("authentication data requires an authentication method")
            }
            Self::SessionPresentOnError => {
                f.write_str("session present must be 0 with an error reason code")
            }
            Self::PacketTooLarge => f.write_str("packet exceeds the maximum remaining length"),
            Self::InvalidValue(what) => write!(f, "invalid value: {what}"),
        }
    }
}

impl core::error::Error for EncodeError {}
