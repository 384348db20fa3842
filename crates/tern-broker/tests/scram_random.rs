//! A broker whose random source fails while it runs (in process, 127.0.0.1
//! port 0, SCRAM nonces from an injected source): the SCRAM client that
//! needs a nonce then is refused with CONNACK 0x80 Unspecified error
//! [MQTT-4.12.0-4] and the connection closed, while the broker goes on
//! serving: a SCRAM login before the failure got its AUTH 0x18, and a
//! client without enhanced authentication still connects afterwards.

mod common;

use bytes::Bytes;
use common::{Raw, WAIT, connect, s, settings};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tern_broker::{
    security::{PasswordHash, SCRAM_SALT_LEN},
    server::{self, security::RandomError},
};
use tern_codec::{ConnAck, Packet, ProtocolVersion, ReasonCode};
use tern_session::scram::{SCRAM_SHA_256, ScramClient};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A CONNECT starting a SCRAM-SHA-256 login as `alice`.
fn scram_connect(id: &str) -> tern_codec::Connect {
    let client = ScramClient::new("alice", b"pw", "nonce").unwrap();
    let mut c = connect(V5, id);
    c.properties.authentication_method = Some(s(SCRAM_SHA_256));
    c.properties.authentication_data = Some(Bytes::from(client.client_first()));
    c
}

#[tokio::test]
async fn a_failing_random_source_refuses_the_scram_client_and_the_broker_goes_on() {
    let dir = std::env::temp_dir().join(format!("tern-scram-random-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd");
    let credential = PasswordHash::scram_sha256(b"pw", [3; SCRAM_SALT_LEN], 4096);
    std::fs::write(&passwd, format!("alice:{credential}\n")).unwrap();
    let mut s = settings();
    s.security.password_file = Some(passwd);
    s.security.allow_anonymous = Some(true);

    let broken = Arc::new(AtomicBool::new(false));
    let source = broken.clone();
    let random: server::security::RandomSource = Arc::new(move |buf: &mut [u8]| {
        if source.load(Ordering::SeqCst) {
            return Err(RandomError("injected failure".into()));
        }
        buf.fill(7);
        Ok(())
    });
    let running = server::start_with_random(s, random).await.unwrap();
    let tcp = running.tcp_addr().unwrap();

    // While the source works: the exchange starts.
    let mut raw = Raw::open(tcp).await;
    raw.send(scram_connect("before")).await;
    match raw.recv().await {
        Packet::Auth(a) => assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication),
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }

    broken.store(true, Ordering::SeqCst);
    let mut raw = Raw::open(tcp).await;
    raw.send(scram_connect("after")).await;
    match raw.recv().await {
        Packet::ConnAck(ack) => {
            let ack: ConnAck = *ack;
            assert_eq!(ack.reason_code, ReasonCode::UnspecifiedError, "{ack:?}");
        }
        other => panic!("expected CONNACK 0x80, got {other:?}"),
    }
    let after = raw.closed(WAIT).await;
    assert!(after.is_empty(), "closed after the CONNACK: {after:?}");

    // The broker is still up for everyone else.
    let _plain = Raw::connected(tcp, V5, "plain").await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
