//! MQTT 5 reason codes (§2.4) and their MQTT 3.x projections.

use crate::framing::PacketType;
use core::fmt;

/// Bit for a packet type in a reason code's "allowed in" mask.
const fn bit(t: PacketType) -> u16 {
    1 << (t as u8)
}

const CONNACK: u16 = bit(PacketType::ConnAck);
const PUBACK: u16 = bit(PacketType::PubAck);
const PUBREC: u16 = bit(PacketType::PubRec);
const PUBREL: u16 = bit(PacketType::PubRel);
const PUBCOMP: u16 = bit(PacketType::PubComp);
const SUBACK: u16 = bit(PacketType::SubAck);
const UNSUBACK: u16 = bit(PacketType::UnsubAck);
const DISCONNECT: u16 = bit(PacketType::Disconnect);
const AUTH: u16 = bit(PacketType::Auth);

macro_rules! reason_codes {
    ($( $(#[$attr:meta])* $name:ident = $value:literal, $text:literal, $mask:expr; )*) => {
        /// An MQTT 5 reason code (MQTT 5.0 §2.4, Table 2-6).
        ///
        /// One type serves every packet that carries a reason code; the
        /// decoder and encoder check that a code is defined for the packet it
        /// is in ([`ReasonCode::is_valid_for`]). Values below 0x80 report
        /// success, 0x80 and above report failure.
        ///
        /// MQTT 3.x packets carry no reason codes except CONNACK's return code
        /// and SUBACK's return codes; those decode to the equivalent MQTT 5
        /// code (see [`ReasonCode::from_v3_connack`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $( $(#[$attr])* $name = $value, )*
        }

        impl ReasonCode {
            /// The reason code with this numeric value, if one is defined.
            pub const fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The reason code's name as the specification writes it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                }
            }

            const fn mask(self) -> u16 {
                match self {
                    $( Self::$name => $mask, )*
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00: Success; also Normal disconnection (DISCONNECT) and Granted QoS 0 (SUBACK).
    #[default]
    Success = 0x00, "Success", CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH;
    /// 0x01: Granted QoS 1 (SUBACK).
    GrantedQos1 = 0x01, "Granted QoS 1", SUBACK;
    /// 0x02: Granted QoS 2 (SUBACK).
    GrantedQos2 = 0x02, "Granted QoS 2", SUBACK;
    /// 0x04: Disconnect with Will Message (DISCONNECT from a client).
    DisconnectWithWill = 0x04, "Disconnect with Will Message", DISCONNECT;
    /// 0x10: No matching subscribers (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10, "No matching subscribers", PUBACK | PUBREC;
    /// 0x11: No subscription existed (UNSUBACK).
    NoSubscriptionExisted = 0x11, "No subscription existed", UNSUBACK;
    /// 0x18: Continue authentication (AUTH).
    ContinueAuthentication = 0x18, "Continue authentication", AUTH;
    /// 0x19: Re-authenticate (AUTH).
    ReAuthenticate = 0x19, "Re-authenticate", AUTH;
    /// 0x80: Unspecified error.
    UnspecifiedError = 0x80, "Unspecified error", CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT;
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81, "Malformed Packet", CONNACK | DISCONNECT;
    /// 0x82: Protocol Error.
    ProtocolError = 0x82, "Protocol Error", CONNACK | DISCONNECT;
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83, "Implementation specific error", CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT;
    /// 0x84: Unsupported Protocol Version (CONNACK).
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version", CONNACK;
    /// 0x85: Client Identifier not valid (CONNACK).
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid", CONNACK;
    /// 0x86: Bad User Name or Password (CONNACK).
    BadUserNameOrPassword = 0x86, "Bad User Name or Password", CONNACK;
    /// 0x87: Not authorized.
    NotAuthorized = 0x87, "Not authorized", CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT;
    /// 0x88: Server unavailable (CONNACK).
    ServerUnavailable = 0x88, "Server unavailable", CONNACK;
    /// 0x89: Server busy.
    ServerBusy = 0x89, "Server busy", CONNACK | DISCONNECT;
    /// 0x8A: Banned (CONNACK).
    Banned = 0x8A, "Banned", CONNACK;
    /// 0x8B: Server shutting down (DISCONNECT).
    ServerShuttingDown = 0x8B, "Server shutting down", DISCONNECT;
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C, "Bad authentication method", CONNACK | DISCONNECT;
    /// 0x8D: Keep Alive timeout (DISCONNECT).
    KeepAliveTimeout = 0x8D, "Keep Alive timeout", DISCONNECT;
    /// 0x8E: Session taken over (DISCONNECT).
    SessionTakenOver = 0x8E, "Session taken over", DISCONNECT;
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F, "Topic Filter invalid", SUBACK | UNSUBACK | DISCONNECT;
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90, "Topic Name invalid", CONNACK | PUBACK | PUBREC | DISCONNECT;
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91, "Packet Identifier in use", PUBACK | PUBREC | SUBACK | UNSUBACK;
    /// 0x92: Packet Identifier not found (PUBREL, PUBCOMP).
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found", PUBREL | PUBCOMP;
    /// 0x93: Receive Maximum exceeded (DISCONNECT).
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded", DISCONNECT;
    /// 0x94: Topic Alias invalid (DISCONNECT).
    TopicAliasInvalid = 0x94, "Topic Alias invalid", DISCONNECT;
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95, "Packet too large", CONNACK | DISCONNECT;
    /// 0x96: Message rate too high (DISCONNECT).
    MessageRateTooHigh = 0x96, "Message rate too high", DISCONNECT;
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97, "Quota exceeded", CONNACK | PUBACK | PUBREC | SUBACK | DISCONNECT;
    /// 0x98: Administrative action (DISCONNECT).
    AdministrativeAction = 0x98, "Administrative action", DISCONNECT;
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99, "Payload format invalid", CONNACK | PUBACK | PUBREC | DISCONNECT;
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A, "Retain not supported", CONNACK | DISCONNECT;
    /// 0x9B: QoS not supported.
    QosNotSupported = 0x9B, "QoS not supported", CONNACK | DISCONNECT;
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C, "Use another server", CONNACK | DISCONNECT;
    /// 0x9D: Server moved.
    ServerMoved = 0x9D, "Server moved", CONNACK | DISCONNECT;
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported", SUBACK | DISCONNECT;
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded", CONNACK | DISCONNECT;
    /// 0xA0: Maximum connect time (DISCONNECT).
    MaximumConnectTime = 0xA0, "Maximum connect time", DISCONNECT;
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported", SUBACK | DISCONNECT;
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported", SUBACK | DISCONNECT;
}

impl ReasonCode {
    /// 0x00 in a DISCONNECT: Normal disconnection.
    pub const NORMAL_DISCONNECTION: Self = Self::Success;
    /// 0x00 in a SUBACK: Granted QoS 0.
    pub const GRANTED_QOS_0: Self = Self::Success;

    /// The numeric value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// `true` for values below 0x80.
    pub const fn is_success(self) -> bool {
        (self as u8) < 0x80
    }

    /// `true` for values of 0x80 and above.
    pub const fn is_error(self) -> bool {
        !self.is_success()
    }

    /// Whether MQTT 5 defines this code for this packet type (Table 2-6).
    pub const fn is_valid_for(self, packet: PacketType) -> bool {
        self.mask() & bit(packet) != 0
    }

    /// The SUBACK code granting `qos`.
    pub const fn granted(qos: crate::QoS) -> Self {
        match qos {
            crate::QoS::AtMostOnce => Self::Success,
            crate::QoS::AtLeastOnce => Self::GrantedQos1,
            crate::QoS::ExactlyOnce => Self::GrantedQos2,
        }
    }

    /// The MQTT 3.x CONNACK return code (0 to 5) with this meaning, if any.
    ///
    /// 1 unacceptable protocol version, 2 identifier rejected, 3 server
    /// unavailable, 4 bad user name or password, 5 not authorized.
    pub const fn v3_connack_code(self) -> Option<u8> {
        match self {
            Self::Success => Some(0),
            Self::UnsupportedProtocolVersion => Some(1),
            Self::ClientIdentifierNotValid => Some(2),
            Self::ServerUnavailable => Some(3),
            Self::BadUserNameOrPassword => Some(4),
            Self::NotAuthorized => Some(5),
            _ => None,
        }
    }

    /// The nearest MQTT 3.x CONNACK meaning for any CONNACK reason code:
    /// the exact equivalent where one exists, otherwise "not authorized" for
    /// policy refusals and "server unavailable" for the rest.
    pub const fn to_v3_connack(self) -> Self {
        if self.v3_connack_code().is_some() {
            return self;
        }
        match self {
            Self::Banned | Self::BadAuthenticationMethod | Self::QuotaExceeded => {
                Self::NotAuthorized
            }
            _ => Self::ServerUnavailable,
        }
    }

    /// The reason code for an MQTT 3.x CONNACK return code.
    pub const fn from_v3_connack(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Success),
            1 => Some(Self::UnsupportedProtocolVersion),
            2 => Some(Self::ClientIdentifierNotValid),
            3 => Some(Self::ServerUnavailable),
            4 => Some(Self::BadUserNameOrPassword),
            5 => Some(Self::NotAuthorized),
            _ => None,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} {}", self.as_u8(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_value_round_trips() {
        let mut defined = 0;
        for v in 0..=255u8 {
            if let Some(code) = ReasonCode::from_u8(v) {
                assert_eq!(code.as_u8(), v);
                defined += 1;
            }
        }
        // MQTT 5.0 Table 2-6 defines 43 distinct values.
        assert_eq!(defined, 43);
    }

    #[test]
    fn table_2_6_spot_checks() {
        use PacketType::*;
        assert!(ReasonCode::Success.is_valid_for(Auth));
        assert!(!ReasonCode::GrantedQos1.is_valid_for(PubAck));
        assert!(ReasonCode::PacketIdentifierNotFound.is_valid_for(PubRel));
        assert!(!ReasonCode::PacketIdentifierNotFound.is_valid_for(PubAck));
        assert!(ReasonCode::SessionTakenOver.is_valid_for(Disconnect));
        assert!(!ReasonCode::SessionTakenOver.is_valid_for(ConnAck));
        assert!(ReasonCode::TopicNameInvalid.is_valid_for(ConnAck));
        assert!(!ReasonCode::UnspecifiedError.is_valid_for(PubRel));
    }

    #[test]
    fn v3_connack_codes_round_trip() {
        for code in 0..=5 {
            let reason = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(reason.v3_connack_code(), Some(code));
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(
            ReasonCode::Banned.to_v3_connack(),
            ReasonCode::NotAuthorized
        );
        assert_eq!(
            ReasonCode::ServerBusy.to_v3_connack(),
            ReasonCode::ServerUnavailable
        );
    }
}
