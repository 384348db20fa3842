//! Interop against an independent implementation: rumqttc 0.24's packet types
//! (`rumqttc::mqttbytes::v4` for MQTT 3.1.1, `rumqttc::v5::mqttbytes::v5` for
//! MQTT 5.0).
//!
//! Each case builds the same packet twice, once in rumqttc's types and once in
//! ours, then checks both directions: rumqttc's bytes decode with tern-codec
//! to our value, and our bytes decode with rumqttc to theirs. Equality is
//! whole-struct (`PartialEq`), so every field is compared.
//!
//! Where rumqttc 0.24 itself is wrong, the case says so with the bytes as
//! evidence and checks what each side does, instead of bending our codec.

use bytes::{Bytes, BytesMut};
use tern_codec::{
    AckProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect,
    DisconnectProperties, MqttString, Packet, PacketId, PayloadFormat, ProtocolVersion, PubAck,
    PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, SubscribeFilter, SubscribeProperties, SubscriptionId, SubscriptionOptions, UnsubAck,
    Unsubscribe, UnsubscribeProperties, UserProperty, Will, WillProperties,
};

const MAX: u32 = 1 << 20;

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero")
}

fn user(key: &'static str, value: &'static str) -> UserProperty {
    UserProperty::new(s(key), s(value))
}

/// Decodes one whole packet with tern-codec.
#[track_caller]
fn ours_decode(wire: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(wire);
    let packet = Packet::decode(&mut buf, version, MAX)
        .unwrap_or_else(|e| panic!("tern-codec refused rumqttc's {wire:02x?}: {e}"))
        .expect("a whole packet");
    assert!(buf.is_empty(), "tern-codec left bytes of {wire:02x?}");
    packet
}

#[track_caller]
fn ours_encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).expect("valid packet");
    buf
}

// ====================================================================== MQTT 3.1.1

mod v4 {
    use super::*;
    use rumqttc::mqttbytes::{Protocol, QoS as RQoS, v4 as r};

    const V: ProtocolVersion = ProtocolVersion::V3_1_1;

    /// rumqttc's bytes → ours, and ours → rumqttc's value.
    #[track_caller]
    fn both_ways(theirs: r::Packet, ours: Packet) {
        let mut wire = BytesMut::new();
        let written = match &theirs {
            r::Packet::Connect(p) => p.write(&mut wire),
            r::Packet::ConnAck(p) => p.write(&mut wire),
            r::Packet::Publish(p) => p.write(&mut wire),
            r::Packet::PubAck(p) => p.write(&mut wire),
            r::Packet::PubRec(p) => p.write(&mut wire),
            r::Packet::PubRel(p) => p.write(&mut wire),
            r::Packet::PubComp(p) => p.write(&mut wire),
            r::Packet::Subscribe(p) => p.write(&mut wire),
            r::Packet::SubAck(p) => p.write(&mut wire),
            r::Packet::Unsubscribe(p) => p.write(&mut wire),
            r::Packet::UnsubAck(p) => p.write(&mut wire),
            r::Packet::PingReq => r::PingReq.write(&mut wire),
            r::Packet::PingResp => r::PingResp.write(&mut wire),
            r::Packet::Disconnect => r::Disconnect.write(&mut wire),
        };
        written.expect("rumqttc writes it");
        assert_eq!(ours_decode(&wire, V), ours, "rumqttc → tern-codec");

        let mut ours_wire = ours_encode(&ours, V);
        let decoded = r::read(&mut ours_wire, MAX as usize)
            .unwrap_or_else(|e| panic!("rumqttc refused our {:02x?}: {e:?}", &ours_wire[..]));
        assert!(ours_wire.is_empty(), "rumqttc left bytes");
        assert_eq!(decoded, theirs, "tern-codec → rumqttc");
    }

    #[test]
    fn connect_with_will_and_credentials() {
        let theirs = r::Connect {
            protocol: Protocol::V4,
            keep_alive: 30,
            client_id: "client-1".into(),
            clean_session: true,
            last_will: Some(r::LastWill::new(
                "status/client-1",
                "offline",
                RQoS::AtLeastOnce,
                true,
            )),
            login: Some(r::Login::new("alice", "secret")),
        };
        let ours = Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 30,
            client_id: s("client-1"),
            will: Some(Will {
                topic: s("status/client-1"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some(s("alice")),
            password: Some(Bytes::from_static(b"secret")),
            ..Connect::default()
        };
        both_ways(r::Packet::Connect(theirs), ours.into());
    }

    #[test]
    fn connect_minimal() {
        let theirs = r::Connect {
            protocol: Protocol::V4,
            keep_alive: 0,
            client_id: "c".into(),
            clean_session: false,
            last_will: None,
            login: None,
        };
        let ours = Connect {
            protocol: V,
            client_id: s("c"),
            ..Connect::default()
        };
        both_ways(r::Packet::Connect(theirs), ours.into());
    }

    #[test]
    fn connack_every_return_code() {
        let codes = [
            (r::ConnectReturnCode::Success, ReasonCode::Success),
            (
                r::ConnectReturnCode::RefusedProtocolVersion,
                ReasonCode::UnsupportedProtocolVersion,
            ),
            (
                r::ConnectReturnCode::BadClientId,
                ReasonCode::ClientIdentifierNotValid,
            ),
            (
                r::ConnectReturnCode::ServiceUnavailable,
                ReasonCode::ServerUnavailable,
            ),
            (
                r::ConnectReturnCode::BadUserNamePassword,
                ReasonCode::BadUserNameOrPassword,
            ),
            (
                r::ConnectReturnCode::NotAuthorized,
                ReasonCode::NotAuthorized,
            ),
        ];
        for (theirs, ours) in codes {
            both_ways(
                r::Packet::ConnAck(r::ConnAck::new(theirs, false)),
                ConnAck {
                    reason_code: ours,
                    ..ConnAck::default()
                }
                .into(),
            );
        }
        both_ways(
            r::Packet::ConnAck(r::ConnAck::new(r::ConnectReturnCode::Success, true)),
            ConnAck {
                session_present: true,
                ..ConnAck::default()
            }
            .into(),
        );
    }

    #[test]
    fn publish_every_qos() {
        for (rq, q, id) in [
            (RQoS::AtMostOnce, QoS::AtMostOnce, 0),
            (RQoS::AtLeastOnce, QoS::AtLeastOnce, 7),
            (RQoS::ExactlyOnce, QoS::ExactlyOnce, 0xFFFF),
        ] {
            let mut theirs = r::Publish::new("sensors/kitchen/temp", rq, b"21.5".to_vec());
            theirs.pkid = id;
            theirs.retain = id == 7;
            theirs.dup = id == 0xFFFF;
            let ours = Publish {
                dup: id == 0xFFFF,
                qos: q,
                retain: id == 7,
                topic: s("sensors/kitchen/temp"),
                packet_id: PacketId::new(id),
                properties: Default::default(),
                payload: Bytes::from_static(b"21.5"),
            };
            both_ways(r::Packet::Publish(theirs), ours.into());
        }
    }

    #[test]
    fn publish_acks() {
        both_ways(
            r::Packet::PubAck(r::PubAck::new(1)),
            PubAck::new(pid(1)).into(),
        );
        both_ways(
            r::Packet::PubRec(r::PubRec::new(2)),
            PubRec::new(pid(2)).into(),
        );
        both_ways(
            r::Packet::PubRel(r::PubRel::new(3)),
            PubRel::new(pid(3)).into(),
        );
        both_ways(
            r::Packet::PubComp(r::PubComp::new(0xFFFF)),
            PubComp::new(pid(0xFFFF)).into(),
        );
    }

    #[test]
    fn subscribe_and_suback() {
        let mut theirs = r::Subscribe::new_many([
            r::SubscribeFilter::new("a/+".into(), RQoS::AtMostOnce),
            r::SubscribeFilter::new("b/#".into(), RQoS::AtLeastOnce),
            r::SubscribeFilter::new("c".into(), RQoS::ExactlyOnce),
        ]);
        theirs.pkid = 9;
        let filter = |f: &'static str, q| SubscribeFilter {
            filter: s(f),
            options: SubscriptionOptions::with_qos(q),
        };
        let ours = Subscribe {
            packet_id: pid(theirs.pkid),
            properties: SubscribeProperties::default(),
            filters: vec![
                filter("a/+", QoS::AtMostOnce),
                filter("b/#", QoS::AtLeastOnce),
                filter("c", QoS::ExactlyOnce),
            ],
        };
        both_ways(r::Packet::Subscribe(theirs), ours.into());

        let theirs = r::SubAck::new(
            9,
            vec![
                r::SubscribeReasonCode::Success(RQoS::AtMostOnce),
                r::SubscribeReasonCode::Success(RQoS::AtLeastOnce),
                r::SubscribeReasonCode::Success(RQoS::ExactlyOnce),
                r::SubscribeReasonCode::Failure,
            ],
        );
        let ours = SubAck {
            packet_id: pid(9),
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::UnspecifiedError,
            ],
        };
        both_ways(r::Packet::SubAck(theirs), ours.into());
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        let theirs = r::Unsubscribe {
            pkid: 12,
            topics: vec!["a/+".into(), "b".into()],
        };
        let ours = Unsubscribe {
            packet_id: pid(12),
            properties: UnsubscribeProperties::default(),
            filters: vec![s("a/+"), s("b")],
        };
        both_ways(r::Packet::Unsubscribe(theirs), ours.into());
        both_ways(
            r::Packet::UnsubAck(r::UnsubAck::new(12)),
            UnsubAck::v3(pid(12)).into(),
        );
    }

    #[test]
    fn ping_and_disconnect() {
        both_ways(r::Packet::PingReq, Packet::PingReq);
        both_ways(r::Packet::PingResp, Packet::PingResp);
        both_ways(r::Packet::Disconnect, Disconnect::default().into());
    }
}

// ====================================================================== MQTT 5.0

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::{QoS as RQoS, v5 as r};

    const V: ProtocolVersion = ProtocolVersion::V5;

    #[track_caller]
    fn theirs_to_ours(theirs: &r::Packet) -> Packet {
        let mut wire = BytesMut::new();
        theirs.write(&mut wire).expect("rumqttc writes it");
        ours_decode(&wire, V)
    }

    #[track_caller]
    fn ours_to_theirs(ours: &Packet) -> r::Packet {
        let mut wire = ours_encode(ours, V);
        let decoded = r::Packet::read(&mut wire, Some(MAX as usize))
            .unwrap_or_else(|e| panic!("rumqttc refused our packet: {e:?}"));
        assert!(wire.is_empty(), "rumqttc left bytes");
        decoded
    }

    #[track_caller]
    fn both_ways(theirs: r::Packet, ours: impl Into<Packet>) {
        let ours = ours.into();
        assert_eq!(theirs_to_ours(&theirs), ours, "rumqttc → tern-codec");
        assert_eq!(ours_to_theirs(&ours), theirs, "tern-codec → rumqttc");
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn connect_with_will_properties_and_credentials() {
        let theirs = r::Packet::Connect(
            r::Connect {
                keep_alive: 60,
                client_id: "client-5".into(),
                clean_start: true,
                properties: Some(r::ConnectProperties {
                    session_expiry_interval: Some(3600),
                    receive_maximum: Some(32),
                    max_packet_size: Some(65536),
                    topic_alias_max: Some(16),
                    request_response_info: Some(1),
                    request_problem_info: Some(0),
                    user_properties: pairs(&[("region", "eu"), ("region", "us")]),
                    authentication_method: Some("SCRAM-SHA-256".into()),
                    authentication_data: Some(Bytes::from_static(b"\x00\x01nonce")),
                }),
            },
            Some(r::LastWill {
                topic: Bytes::from_static(b"status/client-5"),
                message: Bytes::from_static(b"gone"),
                qos: RQoS::ExactlyOnce,
                retain: false,
                properties: Some(r::LastWillProperties {
                    delay_interval: Some(10),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(120),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("replies/client-5".into()),
                    correlation_data: Some(Bytes::from_static(b"\xCA\xFE")),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            Some(r::Login::new("alice", "secret")),
        );
        let ours = Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(32.try_into().unwrap()),
                maximum_packet_size: Some(65536.try_into().unwrap()),
                topic_alias_maximum: Some(16),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                authentication_method: Some(s("SCRAM-SHA-256")),
                authentication_data: Some(Bytes::from_static(b"\x00\x01nonce")),
                user_properties: vec![user("region", "eu"), user("region", "us")],
            },
            client_id: s("client-5"),
            will: Some(Will {
                topic: s("status/client-5"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: WillProperties {
                    will_delay_interval: Some(10),
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(120),
                    content_type: Some(s("text/plain")),
                    response_topic: Some(s("replies/client-5")),
                    correlation_data: Some(Bytes::from_static(b"\xCA\xFE")),
                    user_properties: vec![user("k", "v")].into(),
                },
            }),
            username: Some(s("alice")),
            password: Some(Bytes::from_static(b"secret")),
            bridge: false,
        };
        both_ways(theirs, ours);
    }

    #[test]
    fn connect_without_properties() {
        let theirs = r::Packet::Connect(
            r::Connect {
                keep_alive: 5,
                client_id: "c".into(),
                clean_start: false,
                properties: None,
            },
            None,
            None,
        );
        let ours = Connect {
            protocol: V,
            keep_alive: 5,
            client_id: s("c"),
            ..Connect::default()
        };
        both_ways(theirs, ours);
    }

    #[test]
    fn connack_with_properties_and_refusals() {
        let theirs = r::Packet::ConnAck(r::ConnAck {
            session_present: true,
            code: r::ConnectReturnCode::Success,
            properties: Some(r::ConnAckProperties {
                session_expiry_interval: Some(600),
                receive_max: Some(100),
                max_qos: Some(1),
                retain_available: Some(0),
                max_packet_size: Some(1 << 16),
                assigned_client_identifier: Some("auto-7".into()),
                topic_alias_max: Some(8),
                reason_string: Some("welcome".into()),
                user_properties: pairs(&[("a", "b")]),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(1),
                server_keep_alive: Some(45),
                response_information: Some("resp/".into()),
                server_reference: Some("other:1883".into()),
                authentication_method: Some("m".into()),
                authentication_data: Some(Bytes::from_static(b"d")),
            }),
        });
        let ours = ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties {
                session_expiry_interval: Some(600),
                receive_maximum: Some(100.try_into().unwrap()),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: Some((1 << 16).try_into().unwrap()),
                assigned_client_identifier: Some(s("auto-7")),
                topic_alias_maximum: Some(8),
                reason_string: Some(s("welcome")),
                wildcard_subscription_available: Some(true),
                subscription_identifier_available: Some(false),
                shared_subscription_available: Some(true),
                server_keep_alive: Some(45),
                response_information: Some(s("resp/")),
                server_reference: Some(s("other:1883")),
                authentication_method: Some(s("m")),
                authentication_data: Some(Bytes::from_static(b"d")),
                user_properties: vec![user("a", "b")],
            },
        };
        both_ways(theirs, ours);

        for (theirs, ours) in [
            (
                r::ConnectReturnCode::NotAuthorized,
                ReasonCode::NotAuthorized,
            ),
            (r::ConnectReturnCode::Banned, ReasonCode::Banned),
            (
                r::ConnectReturnCode::ConnectionRateExceeded,
                ReasonCode::ConnectionRateExceeded,
            ),
            (
                r::ConnectReturnCode::UnsupportedProtocolVersion,
                ReasonCode::UnsupportedProtocolVersion,
            ),
        ] {
            both_ways(
                r::Packet::ConnAck(r::ConnAck {
                    session_present: false,
                    code: theirs,
                    properties: None,
                }),
                ConnAck {
                    reason_code: ours,
                    ..ConnAck::default()
                },
            );
        }
    }

    #[test]
    fn publish_every_qos_with_properties() {
        for (rq, q, id) in [
            (RQoS::AtMostOnce, QoS::AtMostOnce, 0),
            (RQoS::AtLeastOnce, QoS::AtLeastOnce, 1),
            (RQoS::ExactlyOnce, QoS::ExactlyOnce, 0xABCD),
        ] {
            let theirs = r::Publish {
                dup: id == 0xABCD,
                qos: rq,
                retain: id == 1,
                topic: Bytes::from_static(b"sensors/kitchen/temp"),
                pkid: id,
                payload: Bytes::from_static(b"{\"t\":21.5}"),
                properties: Some(r::PublishProperties {
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(30),
                    topic_alias: Some(4),
                    response_topic: Some("replies/1".into()),
                    correlation_data: Some(Bytes::from_static(b"req-1")),
                    user_properties: pairs(&[("unit", "C"), ("src", "k1")]),
                    subscription_identifiers: vec![1, 300, 268_435_455],
                    content_type: Some("application/json".into()),
                }),
            };
            let ours = Publish {
                dup: id == 0xABCD,
                qos: q,
                retain: id == 1,
                topic: s("sensors/kitchen/temp"),
                packet_id: PacketId::new(id),
                properties: PublishProperties {
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(30),
                    topic_alias: Some(4.try_into().unwrap()),
                    response_topic: Some(s("replies/1")),
                    correlation_data: Some(Bytes::from_static(b"req-1")),
                    content_type: Some(s("application/json")),
                    user_properties: vec![user("unit", "C"), user("src", "k1")].into(),
                    subscription_identifiers: [1, 300, 268_435_455]
                        .into_iter()
                        .map(|v| SubscriptionId::new(v).unwrap())
                        .collect(),
                }
                .into(),
                payload: Bytes::from_static(b"{\"t\":21.5}"),
            };
            both_ways(r::Packet::Publish(theirs), ours);
        }
    }

    #[test]
    fn publish_without_properties() {
        let theirs = r::Publish::new("a/b", RQoS::AtMostOnce, "hi", None);
        let ours = Publish {
            topic: s("a/b"),
            payload: Bytes::from_static(b"hi"),
            ..Publish::default()
        };
        both_ways(r::Packet::Publish(theirs), ours);
    }

    #[test]
    fn publish_acks_short_and_long_forms() {
        // Success, no properties: Remaining Length 2 on both sides.
        both_ways(
            r::Packet::PubAck(r::PubAck::new(5, None)),
            PubAck::new(pid(5)),
        );
        both_ways(
            r::Packet::PubRec(r::PubRec::new(6, None)),
            PubRec::new(pid(6)),
        );
        both_ways(
            r::Packet::PubRel(r::PubRel::new(7, None)),
            PubRel::new(pid(7)),
        );
        both_ways(
            r::Packet::PubComp(r::PubComp::new(8, None)),
            PubComp::new(pid(8)),
        );
        // A failure with a Reason String and User Property.
        let props = AckProperties {
            reason_string: Some(s("quota")),
            user_properties: vec![user("k", "v")],
        };
        both_ways(
            r::Packet::PubAck(r::PubAck {
                pkid: 9,
                reason: r::PubAckReason::QuotaExceeded,
                properties: Some(r::PubAckProperties {
                    reason_string: Some("quota".into()),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            PubAck {
                packet_id: pid(9),
                reason_code: ReasonCode::QuotaExceeded,
                properties: props.clone(),
            },
        );
        both_ways(
            r::Packet::PubRec(r::PubRec {
                pkid: 10,
                reason: r::PubRecReason::NoMatchingSubscribers,
                properties: Some(r::PubRecProperties {
                    reason_string: Some("quota".into()),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            PubRec {
                packet_id: pid(10),
                reason_code: ReasonCode::NoMatchingSubscribers,
                properties: props.clone(),
            },
        );
        both_ways(
            r::Packet::PubRel(r::PubRel {
                pkid: 11,
                reason: r::PubRelReason::PacketIdentifierNotFound,
                properties: Some(r::PubRelProperties {
                    reason_string: Some("quota".into()),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            PubRel {
                packet_id: pid(11),
                reason_code: ReasonCode::PacketIdentifierNotFound,
                properties: props.clone(),
            },
        );
        both_ways(
            r::Packet::PubComp(r::PubComp {
                pkid: 12,
                reason: r::PubCompReason::PacketIdentifierNotFound,
                properties: Some(r::PubCompProperties {
                    reason_string: Some("quota".into()),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            PubComp {
                packet_id: pid(12),
                reason_code: ReasonCode::PacketIdentifierNotFound,
                properties: props,
            },
        );
    }

    /// A reason code without properties: rumqttc writes Remaining Length 4
    /// (reason and a zero Property Length), we write the shorter Remaining
    /// Length 3 form §3.4.2.2.1 allows; each reads the other's.
    #[test]
    fn publish_ack_reason_without_properties() {
        let theirs = r::Packet::PubAck(r::PubAck {
            pkid: 3,
            reason: r::PubAckReason::NotAuthorized,
            properties: None,
        });
        let ours = PubAck::with_reason(pid(3), ReasonCode::NotAuthorized);
        both_ways(theirs, ours);
    }

    #[test]
    fn subscribe_with_options_and_suback() {
        let theirs = r::Packet::Subscribe(r::Subscribe {
            pkid: 21,
            filters: vec![
                r::Filter {
                    path: "a/+".into(),
                    qos: RQoS::AtLeastOnce,
                    nolocal: true,
                    preserve_retain: true,
                    retain_forward_rule: r::RetainForwardRule::Never,
                },
                r::Filter {
                    path: "$share/g/b/#".into(),
                    qos: RQoS::ExactlyOnce,
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: r::RetainForwardRule::OnNewSubscribe,
                },
                r::Filter::new("c", RQoS::AtMostOnce),
            ],
            properties: Some(r::SubscribeProperties {
                id: Some(77),
                user_properties: pairs(&[("k", "v")]),
            }),
        });
        let ours = Subscribe {
            packet_id: pid(21),
            properties: SubscribeProperties {
                subscription_identifier: SubscriptionId::new(77),
                user_properties: vec![user("k", "v")],
            },
            filters: vec![
                SubscribeFilter {
                    filter: s("a/+"),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                },
                SubscribeFilter {
                    filter: s("$share/g/b/#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendAtSubscribeIfNew,
                    },
                },
                SubscribeFilter {
                    filter: s("c"),
                    options: SubscriptionOptions::default(),
                },
            ],
        };
        both_ways(theirs, ours);

        let theirs = r::Packet::SubAck(r::SubAck {
            pkid: 21,
            return_codes: vec![
                r::SubscribeReasonCode::Success(RQoS::AtLeastOnce),
                r::SubscribeReasonCode::Success(RQoS::ExactlyOnce),
                r::SubscribeReasonCode::Success(RQoS::AtMostOnce),
                r::SubscribeReasonCode::NotAuthorized,
                r::SubscribeReasonCode::SharedSubscriptionsNotSupported,
                r::SubscribeReasonCode::WildcardSubscriptionsNotSupported,
            ],
            properties: Some(r::SubAckProperties {
                reason_string: Some("partly".into()),
                user_properties: Vec::new(),
            }),
        });
        let ours = SubAck {
            packet_id: pid(21),
            properties: AckProperties {
                reason_string: Some(s("partly")),
                user_properties: Vec::new(),
            },
            reason_codes: vec![
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::NotAuthorized,
                ReasonCode::SharedSubscriptionsNotSupported,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
        };
        both_ways(theirs, ours);
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        let theirs = r::Packet::Unsubscribe(r::Unsubscribe {
            pkid: 30,
            filters: vec!["a/+".into(), "b".into()],
            properties: Some(r::UnsubscribeProperties {
                user_properties: pairs(&[("k", "v")]),
            }),
        });
        let ours = Unsubscribe {
            packet_id: pid(30),
            properties: UnsubscribeProperties {
                user_properties: vec![user("k", "v")],
            },
            filters: vec![s("a/+"), s("b")],
        };
        both_ways(theirs, ours);

        let theirs = r::Packet::UnsubAck(r::UnsubAck {
            pkid: 30,
            reasons: vec![
                r::UnsubAckReason::Success,
                r::UnsubAckReason::NoSubscriptionExisted,
                r::UnsubAckReason::NotAuthorized,
            ],
            properties: None,
        });
        let ours = UnsubAck {
            packet_id: pid(30),
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::Success,
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::NotAuthorized,
            ],
        };
        both_ways(theirs, ours);
    }

    #[test]
    fn ping() {
        both_ways(r::Packet::PingReq(r::PingReq), Packet::PingReq);
        both_ways(r::Packet::PingResp(r::PingResp), Packet::PingResp);
    }

    /// rumqttc 0.24 does not export `DisconnectProperties` (its `disconnect`
    /// module is private and `v5::mqttbytes::v5` re-exports only `Disconnect`
    /// and `DisconnectReasonCode`), so the value cannot be built by name. We
    /// let rumqttc read our bytes, compare every field it read, then have it
    /// write that value back and decode it with ours.
    #[test]
    fn disconnect_with_reason_and_properties() {
        let ours: Packet = Disconnect {
            reason_code: ReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("moving")),
                server_reference: Some(s("other:1883")),
                user_properties: vec![user("k", "v")],
            },
        }
        .into();
        let theirs = ours_to_theirs(&ours);
        let r::Packet::Disconnect(d) = &theirs else {
            panic!("rumqttc read {theirs:?}")
        };
        assert_eq!(d.reason_code, r::DisconnectReasonCode::UseAnotherServer);
        let p = d.properties.as_ref().expect("properties");
        assert_eq!(p.session_expiry_interval, Some(0));
        assert_eq!(p.reason_string.as_deref(), Some("moving"));
        assert_eq!(p.server_reference.as_deref(), Some("other:1883"));
        assert_eq!(p.user_properties, pairs(&[("k", "v")]));
        assert_eq!(theirs_to_ours(&theirs), ours);
    }

    /// Normal disconnection, no properties: both write `E0 00`. rumqttc 0.24's
    /// `Packet::read` cannot read it back: for a Remaining Length of 0 it
    /// accepts only PINGREQ and PINGRESP and returns `PayloadRequired`
    /// (v5/mqttbytes/v5/mod.rs, `Packet::read`), although §3.14.2.1 defines
    /// `E0 00` as Normal disconnection. We check what each side does.
    #[test]
    fn disconnect_normal_remaining_length_0_rumqttc_cannot_read() {
        let theirs = r::Packet::Disconnect(r::Disconnect::new(
            r::DisconnectReasonCode::NormalDisconnection,
        ));
        let mut wire = BytesMut::new();
        theirs.write(&mut wire).unwrap();
        assert_eq!(&wire[..], [0xE0, 0x00]);
        assert_eq!(ours_decode(&wire, V), Disconnect::default().into());

        let mut ours = ours_encode(&Disconnect::default().into(), V);
        assert_eq!(&ours[..], [0xE0, 0x00], "the same bytes");
        assert!(matches!(
            r::Packet::read(&mut ours, None),
            Err(rumqttc::v5::mqttbytes::Error::PayloadRequired)
        ));
    }

    /// A reason code without properties, which §3.14.2.2.1 lets a sender
    /// write as Remaining Length 1 ("if the Remaining Length is less than 2, a
    /// value of 0 is used" for the Property Length). rumqttc 0.24 gets both
    /// directions wrong:
    ///
    /// - `Disconnect::write` computes Remaining Length 1 (the reason only)
    ///   but then also writes a zero Property Length, emitting `E0 01 8B 00`:
    ///   a one-byte DISCONNECT followed by a stray 0x00 that starts no valid
    ///   packet. We decode the DISCONNECT it meant, then refuse the stray byte
    ///   as packet type 0.
    /// - `Disconnect::read` insists on a Property Length after the reason, so
    ///   it refuses `E0 01 8B` (ours, and the frame of its own output) with
    ///   `InsufficientBytes`.
    #[test]
    fn disconnect_reason_without_properties_rumqttc_is_wrong_both_ways() {
        let theirs = r::Packet::Disconnect(r::Disconnect::new(
            r::DisconnectReasonCode::ServerShuttingDown,
        ));
        let mut wire = BytesMut::new();
        theirs.write(&mut wire).unwrap();
        assert_eq!(&wire[..], [0xE0, 0x01, 0x8B, 0x00], "rumqttc's bytes");
        let first = Packet::decode(&mut wire, V, MAX).unwrap();
        assert_eq!(
            first,
            Some(Disconnect::new(ReasonCode::ServerShuttingDown).into())
        );
        assert_eq!(
            Packet::decode(&mut wire, V, MAX).unwrap_err().kind(),
            tern_codec::DecodeErrorKind::ReservedPacketType(0)
        );

        let ours: Packet = Disconnect::new(ReasonCode::ServerShuttingDown).into();
        let mut ours_wire = ours_encode(&ours, V);
        assert_eq!(&ours_wire[..], [0xE0, 0x01, 0x8B]);
        assert!(matches!(
            r::Packet::read(&mut ours_wire, None),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_))
        ));
    }
}
