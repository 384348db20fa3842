//! MQTT 5 enhanced authentication (section 4.12) in the sans-IO state
//! machines, both roles, one rule each, named by the statement it checks.
//! The broker's use of it is tested end to end in tern-cli's `scram` test.

use bytes::Bytes;
use tern_codec::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, MqttString,
    Packet, ProtocolVersion, Publish, ReasonCode,
};
use tern_session::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const NOW: Instant = Instant::ZERO;

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn connect(method: Option<&'static str>) -> Connect {
    Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: s("c"),
        properties: ConnectProperties {
            authentication_method: method.map(s),
            authentication_data: method.map(|_| Bytes::from_static(b"first")),
            ..Default::default()
        },
        ..Connect::default()
    }
}

fn auth(code: ReasonCode, method: Option<&'static str>, data: &'static [u8]) -> Packet {
    Packet::Auth(Box::new(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: method.map(s),
            authentication_data: Some(Bytes::from_static(data)).filter(|_| method.is_some()),
            ..Default::default()
        },
    }))
}

fn accept(server: &mut ServerConnection, data: Option<Bytes>) {
    server
        .accept(
            NOW,
            Accept {
                session: ServerSession::new(s("c"), QueueLimits::default()),
                session_present: false,
                assigned_client_id: None,
                properties: ConnAckProperties {
                    authentication_data: data,
                    ..Default::default()
                },
            },
        )
        .unwrap();
}

/// A server that got `connect` and answered with AUTH 0x18 if it has a method.
fn server_with(connect: Connect) -> ServerConnection {
    let mut server = ServerConnection::new(NOW, ServerConfig::default());
    server.handle_packet(NOW, Packet::Connect(Box::new(connect)));
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::ConnectRequest(_))
    ));
    server
}

fn close_code(server: &mut ServerConnection) -> ReasonCode {
    loop {
        match server.poll_event() {
            Some(ServerEvent::Closed {
                reason: CloseReason::ProtocolViolation(v),
                ..
            }) => return v.reason_code(),
            Some(ServerEvent::Closed { reason, .. }) => panic!("closed: {reason:?}"),
            Some(_) => continue,
            None => panic!("not closed"),
        }
    }
}

#[test]
fn mqtt_4_12_0_2_and_5_an_exchange_names_the_method_in_every_packet() {
    let mut server = server_with(connect(Some("M")));
    server
        .auth_continue(NOW, Some(Bytes::from_static(b"challenge")))
        .unwrap();
    match server.poll_transmit(NOW) {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(a.properties.authentication_method, Some(s("M")));
            assert_eq!(&a.properties.authentication_data.unwrap()[..], b"challenge");
        }
        other => panic!("{other:?}"),
    }
    server.handle_packet(
        NOW,
        auth(ReasonCode::ContinueAuthentication, Some("M"), b"answer"),
    );
    assert!(
        matches!(server.poll_event(), Some(ServerEvent::Auth(a)) if a.reason_code == ReasonCode::ContinueAuthentication)
    );
    accept(&mut server, Some(Bytes::from_static(b"final")));
    match server.poll_transmit(NOW) {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.reason_code, ReasonCode::Success);
            assert_eq!(a.properties.authentication_method, Some(s("M")));
            assert_eq!(&a.properties.authentication_data.unwrap()[..], b"final");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_4_12_0_6_no_auth_and_no_method_for_a_client_that_sent_none() {
    let mut server = server_with(connect(None));
    assert_eq!(
        server.auth_continue(NOW, None),
        Err(CommandError::NoAuthPending)
    );
    accept(&mut server, Some(Bytes::from_static(b"stray")));
    match server.poll_transmit(NOW) {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.properties.authentication_method, None);
            assert_eq!(a.properties.authentication_data, None);
        }
        other => panic!("{other:?}"),
    }
    // [MQTT-4.12.0-7]: and the client may not send AUTH.
    server.handle_packet(NOW, auth(ReasonCode::ReAuthenticate, Some("M"), b""));
    assert_eq!(close_code(&mut server), ReasonCode::ProtocolError);
    assert!(
        matches!(server.poll_transmit(NOW), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ProtocolError)
    );
}

#[test]
fn mqtt_3_1_2_30_only_auth_or_disconnect_before_connack() {
    let mut server = server_with(connect(Some("M")));
    server.auth_continue(NOW, None).unwrap();
    let _ = server.poll_transmit(NOW);
    server.handle_packet(
        NOW,
        Packet::Publish(Publish {
            topic: s("t"),
            ..Publish::default()
        }),
    );
    assert_eq!(close_code(&mut server), ReasonCode::ProtocolError);
    // A CONNACK, never a DISCONNECT, before CONNACK [MQTT-3.14.0-1].
    assert!(
        matches!(server.poll_transmit(NOW), Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::ProtocolError)
    );
}

#[test]
fn mqtt_4_12_0_5_another_method_is_0x8c() {
    let mut server = server_with(connect(Some("M")));
    server.auth_continue(NOW, None).unwrap();
    let _ = server.poll_transmit(NOW);
    server.handle_packet(
        NOW,
        auth(ReasonCode::ContinueAuthentication, Some("N"), b""),
    );
    assert_eq!(close_code(&mut server), ReasonCode::BadAuthenticationMethod);
}

#[test]
fn mqtt_4_12_1_1_re_authentication_is_started_by_the_client_with_0x19() {
    let mut server = server_with(connect(Some("M")));
    accept(&mut server, None);
    let _ = server.poll_transmit(NOW);
    // Nothing to answer yet.
    assert_eq!(
        server.auth_success(NOW, None),
        Err(CommandError::NoAuthPending)
    );
    server.handle_packet(NOW, auth(ReasonCode::ReAuthenticate, Some("M"), b"again"));
    assert!(
        matches!(server.poll_event(), Some(ServerEvent::Auth(a)) if a.reason_code == ReasonCode::ReAuthenticate)
    );
    server.auth_continue(NOW, None).unwrap();
    server.handle_packet(
        NOW,
        auth(ReasonCode::ContinueAuthentication, Some("M"), b"x"),
    );
    assert!(matches!(server.poll_event(), Some(ServerEvent::Auth(_))));
    server
        .auth_success(NOW, Some(Bytes::from_static(b"ok")))
        .unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| server.poll_transmit(NOW)).collect();
    assert!(matches!(&sent[..], [Packet::Auth(c), Packet::Auth(ok)]
        if c.reason_code == ReasonCode::ContinueAuthentication && ok.reason_code == ReasonCode::Success));
    // A 0x18 with no exchange under way is out of sequence [MQTT-4.12.0-3].
    server.handle_packet(
        NOW,
        auth(ReasonCode::ContinueAuthentication, Some("M"), b""),
    );
    assert_eq!(close_code(&mut server), ReasonCode::ProtocolError);
}

fn client_with(method: Option<&'static str>) -> ClientConnection {
    let mut options = ConnectOptions::new(s("c"));
    options.properties.authentication_method = method.map(s);
    let mut client = ClientConnection::new(NOW, options, ClientSession::new());
    let _ = client.poll_transmit(NOW);
    client
}

fn client_close(client: &mut ClientConnection) -> Rule {
    loop {
        match client.poll_event() {
            Some(ClientEvent::Closed(CloseReason::ProtocolViolation(Violation::Rule(r)))) => {
                return r;
            }
            Some(ClientEvent::Closed(other)) => panic!("{other:?}"),
            Some(_) => continue,
            None => panic!("not closed"),
        }
    }
}

#[test]
fn mqtt_4_12_0_6_a_client_refuses_auth_it_did_not_ask_for() {
    let mut client = client_with(None);
    client.handle_packet(
        NOW,
        auth(ReasonCode::ContinueAuthentication, Some("M"), b""),
    );
    assert_eq!(client_close(&mut client), Rule::AuthWithoutMethod);
    let mut client = client_with(None);
    assert_eq!(
        client.reauthenticate(NOW, None),
        Err(CommandError::NoAuthPending)
    );
}

#[test]
fn mqtt_4_12_0_5_a_client_refuses_a_connack_with_another_method() {
    let mut client = client_with(Some("M"));
    client.handle_packet(
        NOW,
        Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties {
                authentication_method: Some(s("N")),
                ..Default::default()
            },
        })),
    );
    assert_eq!(client_close(&mut client), Rule::AuthMethodMismatch);
}

#[test]
fn mqtt_4_12_1_1_a_client_re_authenticates_and_takes_the_servers_0x00() {
    let mut client = client_with(Some("M"));
    client.handle_packet(
        NOW,
        Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties {
                authentication_method: Some(s("M")),
                ..Default::default()
            },
        })),
    );
    assert!(matches!(
        client.poll_event(),
        Some(ClientEvent::Connected { .. })
    ));
    // A 0x00 nobody asked for is out of sequence; first a real one.
    client
        .reauthenticate(NOW, Some(Bytes::from_static(b"r")))
        .unwrap();
    assert!(
        matches!(client.poll_transmit(NOW), Some(Packet::Auth(a)) if a.reason_code == ReasonCode::ReAuthenticate && a.properties.authentication_method == Some(s("M")))
    );
    client.handle_packet(NOW, auth(ReasonCode::Success, Some("M"), b"done"));
    assert!(matches!(client.poll_event(), Some(ClientEvent::Auth(_))));
    client.handle_packet(NOW, auth(ReasonCode::Success, Some("M"), b"again"));
    assert_eq!(client_close(&mut client), Rule::AuthOutOfSequence);
}
