//! SCRAM-SHA-256 through the sans-IO broker core: the server nonce comes
//! from the random bytes the authenticator is handed (here a counter, in a
//! shell the operating system), so the same inputs give the same bytes on
//! the wire; and the exchange's steps become AUTH and CONNACK packets as
//! section 4.12 says.

use bytes::Bytes;
use std::sync::Arc;
use tern_broker::{
    AuthDecision, AuthExchange, AuthStart, Authenticator, Broker, BrokerConfig, MemoryStore,
    security::{PasswordFile, PasswordHash, scram::start_scram},
};
use tern_codec::{
    Auth, AuthProperties, Connect, ConnectProperties, MqttString, Packet, ProtocolVersion,
    ReasonCode,
};
use tern_session::{Instant, scram::ScramClient};

/// SCRAM for the users of a password file, nonces from a counter.
struct Seeded {
    users: Arc<PasswordFile>,
    next: u8,
}

impl Authenticator for Seeded {
    fn authenticate(&mut self, _: &Connect, _: Option<&str>) -> AuthDecision {
        AuthDecision::Accept
    }

    fn start_auth(&mut self, method: &str, start: AuthStart<'_>) -> Option<Box<dyn AuthExchange>> {
        self.next += 1;
        (method == "SCRAM-SHA-256")
            .then(|| start_scram(self.users.clone(), start, &[self.next; 18]))
    }
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).unwrap()
}

/// One login as `alice` with `password`; every packet the broker sent.
fn login(password: &[u8]) -> Vec<Packet> {
    let line = format!(
        "alice:{}\n",
        PasswordHash::scram_sha256(b"pw", [5; 16], 4096)
    );
    let users = Arc::new(PasswordFile::parse(&line).unwrap());
    let now = Instant::ZERO;
    let mut broker = Broker::with_hooks(
        BrokerConfig::default(),
        now,
        Box::new(MemoryStore::new()),
        Box::new(Seeded { users, next: 0 }),
    );
    let conn = broker.accept(now);
    let mut client = ScramClient::new("alice", password, "fixed").unwrap();
    broker.handle_packet(
        now,
        conn,
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: s("c"),
            properties: ConnectProperties {
                authentication_method: Some(s("SCRAM-SHA-256")),
                authentication_data: Some(Bytes::from(client.client_first())),
                ..Default::default()
            },
            ..Connect::default()
        })),
    );
    let mut sent = Vec::new();
    let server_first = match broker.poll_transmit(now).map(|t| t.packet) {
        Some(Packet::Auth(a)) => {
            let data = a.properties.authentication_data.clone().unwrap();
            sent.push(Packet::Auth(a));
            data
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    };
    let last = client.server_first(&server_first).unwrap();
    broker.handle_packet(
        now,
        conn,
        Packet::Auth(Box::new(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM-SHA-256")),
                authentication_data: Some(Bytes::from(last)),
                ..Default::default()
            },
        })),
    );
    sent.extend(std::iter::from_fn(|| {
        broker.poll_transmit(now).map(|t| t.packet)
    }));
    if let Some(Packet::ConnAck(ack)) = sent.get(1) {
        if ack.reason_code == ReasonCode::Success {
            client
                .server_final(ack.properties.authentication_data.as_ref().unwrap())
                .unwrap();
        }
    }
    sent
}

#[test]
fn the_server_nonce_is_the_injected_randomness() {
    let sent = login(b"pw");
    let Packet::Auth(a) = &sent[0] else {
        unreachable!()
    };
    let server_first = a.properties.authentication_data.as_ref().unwrap();
    // The client's nonce, then base64 of the 18 bytes the authenticator drew.
    assert!(
        server_first.starts_with(b"r=fixedAQEBAQEBAQEBAQEBAQEBAQEB,s=BQUF"),
        "{server_first:?}"
    );
    // Same inputs, same bytes: a simulation replays it.
    assert_eq!(sent, login(b"pw"));
}

#[test]
fn steps_become_connack_success_or_0x86() {
    let ok = login(b"pw");
    assert!(
        matches!(&ok[1], Packet::ConnAck(a) if a.reason_code == ReasonCode::Success),
        "{ok:?}"
    );
    let refused = login(b"wrong");
    assert!(
        matches!(&refused[1], Packet::ConnAck(a) if a.reason_code == ReasonCode::BadUserNameOrPassword),
        "{refused:?}"
    );
}
