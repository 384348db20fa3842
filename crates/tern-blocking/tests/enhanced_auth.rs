//! MQTT 5 enhanced authentication on the blocking client against Tern's
//! broker (in process, 127.0.0.1 port 0) with a password file holding a
//! SCRAM-SHA-256 and a SCRAM-SHA-512 user: the login follows section 4.12
//! (AUTH 0x18 answered, the CONNACK's server signature checked
//! [MQTT-4.12.0-2] [MQTT-4.12.0-5]), a re-authentication on the open
//! connection succeeds with messages arriving meanwhile kept
//! [MQTT-4.12.1-1], and a wrong password is refused with 0x86
//! [MQTT-4.12.0-4].

use std::net::{SocketAddr, TcpStream};
use tern_blocking::{
    AuthMethod, Bytes, Client, ClientEvent, CloseReason, ConnectOptions, Error, MqttString,
    ProtocolVersion, QoS, ReasonCode, ScramSha256,
};
use tern_broker::security::{PasswordHash, SCRAM_SALT_LEN, scram::Mechanism};

/// Tern's broker with `alice` (SCRAM-SHA-256, `wonderland`) and `erin`
/// (SCRAM-SHA-512, `sha-512`); stopped when dropped.
struct Broker {
    addr: SocketAddr,
    _running: Box<tern_broker::server::Running>,
    _runtime: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
}

impl Broker {
    fn start(name: &str) -> Broker {
        let dir = std::env::temp_dir().join(format!("tern-blocking-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        let line = |user: &str, m: Mechanism, pw: &[u8]| {
            format!(
                "{user}:{}\n",
                PasswordHash::scram(m, pw, [4; SCRAM_SALT_LEN], 4096)
            )
        };
        std::fs::write(
            &passwd,
            line("alice", Mechanism::Sha256, b"wonderland")
                + &line("erin", Mechanism::Sha512, b"sha-512"),
        )
        .unwrap();
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let mut settings = tern_broker::server::BrokerSettings::default();
        settings.listeners.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        settings.listeners.ws = Vec::new();
        settings.security.password_file = Some(passwd);
        let running = runtime
            .block_on(tern_broker::server::start(settings))
            .expect("tern broker starts");
        Broker {
            addr: running.tcp_addr().expect("a TCP listener"),
            _running: Box::new(running),
            _runtime: runtime,
            dir,
        }
    }

    fn login(&self, id: &'static str, method: impl AuthMethod) -> Result<Client<TcpStream>, Error> {
        let stream = TcpStream::connect(self.addr).expect("the broker accepts");
        let options = ConnectOptions {
            version: ProtocolVersion::V5,
            ..ConnectOptions::new(MqttString::from_static(id))
        };
        Client::connect_with_auth(stream, options, method).map(|(client, _)| client)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next message's payload, skipping acknowledgements.
fn message(client: &mut Client<TcpStream>) -> Bytes {
    loop {
        match client.next_event().expect("the connection stays open") {
            ClientEvent::Message { publish, .. } => return publish.payload,
            ClientEvent::Closed(reason) => panic!("closed: {reason:?}"),
            _ => {}
        }
    }
}

#[test]
fn scram_login_and_re_authentication_against_tern() {
    let broker = Broker::start("scram");
    for (id, method) in [
        ("blocking-256", ScramSha256::new("alice", b"wonderland")),
        ("blocking-512", ScramSha256::sha512("erin", b"sha-512")),
    ] {
        let mut client = broker.login(id, method).expect("SCRAM login");
        let topic = format!("scram/{id}");
        client.subscribe(&topic, QoS::AtLeastOnce).unwrap();
        // The SUBACK comes before the message: subscribed when it arrives.
        client.publish(&topic, "before", QoS::AtLeastOnce).unwrap();
        assert_eq!(&message(&mut client)[..], b"before");
        // A message published before the re-authentication arrives while
        // it runs, and is kept for next_event.
        client.publish(&topic, "during", QoS::AtMostOnce).unwrap();
        client.reauthenticate().expect("re-authenticated");
        client.reauthenticate().expect("and again");
        assert_eq!(&message(&mut client)[..], b"during");
        client.publish(&topic, "after", QoS::AtLeastOnce).unwrap();
        assert_eq!(&message(&mut client)[..], b"after");
        client.disconnect().unwrap();
    }
}

#[test]
fn wrong_passwords_and_mechanisms_are_refused_with_0x86() {
    let broker = Broker::start("refused");
    for (id, method) in [
        ("wrong-password", ScramSha256::new("alice", b"wonderlan")),
        ("unknown-user", ScramSha256::new("nobody", b"wonderland")),
        // erin has a SCRAM-SHA-512 credential only.
        ("wrong-mechanism", ScramSha256::new("erin", b"sha-512")),
    ] {
        match broker.login(id, method) {
            Err(Error::Closed(CloseReason::ConnectRefused(code))) => {
                assert_eq!(code, ReasonCode::BadUserNameOrPassword, "{id}")
            }
            other => panic!("{id}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}
