//! MQTT 5 enhanced authentication with SCRAM-SHA-256 against the `tern
//! broker` binary (127.0.0.1 port 0), with a credential `tern passwd
//! --scram` wrote: tern-client logging in and re-authenticating, wrong
//! passwords, and, from a raw socket, the packets a client library would
//! never send. Statement ids are MQTT 5.0's.

mod support;

use assert_cmd::Command;
use bytes::Bytes;
use std::{io::Write, path::PathBuf};
use support::*;
use tern_codec::{
    Auth, AuthProperties, Connect, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
};
use tern_session::scram::ScramClient;

const V5: ProtocolVersion = ProtocolVersion::V5;
const SCRAM: &str = "SCRAM-SHA-256";

/// A password file with `alice` (SCRAM, password `wonderland`), `bob`
/// (SCRAM, `builder`) and `carol` (mosquitto's `$7$`, `plain`), written by
/// `tern passwd`, and a broker reading it; removed on drop.
struct Setup {
    dir: PathBuf,
    broker: BrokerProcess,
}

impl Setup {
    fn start(name: &str) -> Setup {
        let dir =
            std::env::temp_dir().join(format!("tern-cli-scram-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passwd");
        let file = file.to_str().unwrap();
        let tern = || Command::cargo_bin("tern").expect("the tern binary is built");
        tern()
            .args(["passwd", "-c", "-b", "--scram", file, "alice", "wonderland"])
            .assert()
            .success();
        tern()
            .args(["passwd", "-b", "--scram", file, "bob", "builder"])
            .assert()
            .success();
        tern()
            .args(["passwd", "-b", file, "carol", "plain"])
            .assert()
            .success();
        tern()
            .args(["passwd", "-b", "--scram", file, "dora", "IX"])
            .assert()
            .success();
        tern()
            .args(["passwd", "-b", "--scram-sha512", file, "erin", "sha-512"])
            .assert()
            .success();
        // Precomposed letters (NFC), as most keyboards type them.
        tern()
            .args(["passwd", "-b", "--scram", file, ANGSTROM, "kelvin"])
            .assert()
            .success();
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains("alice:SCRAM-SHA-256$4096:"), "{text}");
        assert!(text.contains("erin:SCRAM-SHA-512$4096:"), "{text}");
        assert!(text.contains("carol:$7$101$"), "{text}");
        let (broker, _, _) =
            BrokerProcess::start_with(&["--tcp", "127.0.0.1:0", "--password-file", file], 1, 0);
        Setup { dir, broker }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).unwrap()
}

fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: s(client_id),
        ..Connect::default()
    }
}

fn scram_connect(id: &str, method: &str, data: Vec<u8>) -> Connect {
    let mut c = connect(V5, id);
    c.properties.authentication_method = Some(s(method));
    c.properties.authentication_data = Some(Bytes::from(data));
    c
}

fn auth(code: ReasonCode, method: Option<&str>, data: Option<Vec<u8>>) -> Auth {
    Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: method.map(s),
            authentication_data: data.map(Bytes::from),
            ..Default::default()
        },
    }
}

/// The next packet must be AUTH 0x18 with SCRAM's method; its data.
fn expect_continue(raw: &mut Raw) -> Vec<u8> {
    match raw.next() {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication); // [MQTT-4.12.0-2]
            let method = a
                .properties
                .authentication_method
                .as_ref()
                .map(|m| m.as_str());
            assert_eq!(method, Some(SCRAM)); // [MQTT-4.12.0-5]
            a.properties.authentication_data.unwrap().to_vec()
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

fn expect_connack(raw: &mut Raw, code: ReasonCode) -> tern_codec::ConnAck {
    match raw.next() {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason_code, code, "{ack:?}");
            *ack
        }
        other => panic!("expected CONNACK {code}, got {other:?}"),
    }
}

fn expect_closed(raw: &mut Raw) {
    assert_eq!(raw.next(), None, "the broker closes the connection");
}

/// Runs a SCRAM login on a raw socket up to the CONNACK; returns it open.
fn raw_login(addr: std::net::SocketAddr, id: &str, user: &str, password: &[u8]) -> Raw {
    let mut raw = Raw::open(addr, V5);
    let mut client = ScramClient::new(user, password, "rawnonce").unwrap();
    raw.send(scram_connect(id, SCRAM, client.client_first()));
    let server_first = expect_continue(&mut raw);
    let last = client.server_first(&server_first).unwrap();
    raw.send(auth(
        ReasonCode::ContinueAuthentication,
        Some(SCRAM),
        Some(last),
    ));
    let ack = expect_connack(&mut raw, ReasonCode::Success);
    // [MQTT-4.12.0-5]: the CONNACK names the method; its data is the
    // server's signature, which proves the broker holds the credential.
    let method = ack
        .properties
        .authentication_method
        .as_ref()
        .map(|m| m.as_str());
    assert_eq!(method, Some(SCRAM));
    client
        .server_final(&ack.properties.authentication_data.unwrap())
        .unwrap();
    raw
}

/// Re-authenticates on an open raw connection; returns the packet that
/// ends the exchange (AUTH 0x00 or DISCONNECT).
fn raw_reauth(raw: &mut Raw, user: &str, password: &[u8]) -> (ScramClient, Option<Packet>) {
    let mut client = ScramClient::new(user, password, "again").unwrap();
    // [MQTT-4.12.1-1]: AUTH 0x19 with the same method.
    raw.send(auth(
        ReasonCode::ReAuthenticate,
        Some(SCRAM),
        Some(client.client_first()),
    ));
    match raw.next() {
        Some(Packet::Auth(a)) if a.reason_code == ReasonCode::ContinueAuthentication => {
            let server_first = a.properties.authentication_data.unwrap();
            let last = client.server_first(&server_first).unwrap();
            raw.send(auth(
                ReasonCode::ContinueAuthentication,
                Some(SCRAM),
                Some(last),
            ));
            let end = raw.next();
            (client, end)
        }
        other => (client, other),
    }
}

/// A non-ASCII SCRAM user, `Ångström` with precomposed letters.
const ANGSTROM: &str = "\u{C5}ngstr\u{F6}m";

/// The same name with combining marks (NFD), as some systems write it:
/// SASLprep (RFC 4013 §2.2, NFKC) makes it [`ANGSTROM`].
const ANGSTROM_DECOMPOSED: &str = "A\u{30A}ngstro\u{308}m";

/// A CONNECT whose User Name is the decomposed form, with SCRAM naming the
/// user (the client SASLprep'd it, RFC 5802 §5.1): the broker compares the
/// two after SASLprep, so they are the same user and the login succeeds
/// (without it: 0x87, the names differ byte for byte).
#[test]
fn the_connect_user_name_is_saslprepped_before_it_is_compared() {
    let setup = Setup::start("saslprep");
    let mut raw = Raw::open(setup.broker.tcp, V5);
    let mut client = ScramClient::new(ANGSTROM_DECOMPOSED, b"kelvin", "rawnonce").unwrap();
    let mut connect = scram_connect("angstrom", SCRAM, client.client_first());
    connect.username = Some(s(ANGSTROM_DECOMPOSED));
    raw.send(connect);
    let server_first = expect_continue(&mut raw);
    let last = client.server_first(&server_first).unwrap();
    raw.send(auth(
        ReasonCode::ContinueAuthentication,
        Some(SCRAM),
        Some(last),
    ));
    let ack = expect_connack(&mut raw, ReasonCode::Success);
    client
        .server_final(&ack.properties.authentication_data.unwrap())
        .unwrap();
}

#[test]
fn a_raw_scram_login_follows_section_4_12_packet_by_packet() {
    let setup = Setup::start("raw-login");
    let mut raw = raw_login(setup.broker.tcp, "raw-alice", "alice", b"wonderland");
    raw.send(Packet::PingReq);
    assert_eq!(raw.next(), Some(Packet::PingResp));
}

#[test]
fn wrong_passwords_and_unknown_users_get_0x86() {
    let setup = Setup::start("wrong");
    for (user, password) in [("alice", &b"wonderlan"[..]), ("nobody", b"wonderland")] {
        let mut raw = Raw::open(setup.broker.tcp, V5);
        let mut client = ScramClient::new(user, password, "n1").unwrap();
        raw.send(scram_connect("w", SCRAM, client.client_first()));
        // An unknown user goes through the same steps as a wrong password
        // (a decoy credential): the exchange does not tell who exists.
        let server_first = expect_continue(&mut raw);
        let last = client.server_first(&server_first).unwrap();
        raw.send(auth(
            ReasonCode::ContinueAuthentication,
            Some(SCRAM),
            Some(last),
        ));
        // [MQTT-4.12.0-4]: CONNACK 0x80 or above, then close.
        expect_connack(&mut raw, ReasonCode::BadUserNameOrPassword);
        expect_closed(&mut raw);
    }
}

#[test]
fn an_unsupported_method_gets_0x8c() {
    let setup = Setup::start("method");
    let mut raw = Raw::open(setup.broker.tcp, V5);
    raw.send(scram_connect(
        "m",
        "SCRAM-SHA-1",
        b"n,,n=alice,r=x".to_vec(),
    ));
    // [MQTT-4.12.0-1]
    expect_connack(&mut raw, ReasonCode::BadAuthenticationMethod);
    expect_closed(&mut raw);
}

#[test]
fn a_scram_user_may_also_log_in_with_a_plain_password() {
    let setup = Setup::start("plain");
    for (user, password, code) in [
        ("alice", "wonderland", ReasonCode::Success),
        ("alice", "x", ReasonCode::BadUserNameOrPassword),
        ("carol", "plain", ReasonCode::Success),
    ] {
        let mut raw = Raw::open(setup.broker.tcp, V5);
        let mut c = connect(V5, "p");
        c.username = Some(s(user));
        c.password = Some(Bytes::from(password.to_owned()));
        raw.send(c);
        let ack = expect_connack(&mut raw, code);
        // [MQTT-4.12.0-6]: no method in the CONNECT, none in the CONNACK.
        assert_eq!(ack.properties.authentication_method, None);
    }
}

#[test]
fn packets_a_client_library_would_not_send_are_refused() {
    let setup = Setup::start("raw-rules");
    let addr = setup.broker.tcp;

    // AUTH before CONNECT: not this protocol; closed without an answer [MQTT-3.1.0-1].
    let mut raw = Raw::open(addr, V5);
    raw.send(auth(ReasonCode::ContinueAuthentication, Some(SCRAM), None));
    expect_closed(&mut raw);

    // During the exchange (before CONNACK), each wrong answer is refused
    // with a CONNACK (a DISCONNECT may not precede it [MQTT-3.14.0-1]).
    let cases: [(&str, Packet, ReasonCode); 4] = [
        // Another method than the CONNECT's [MQTT-4.12.0-5].
        (
            "wrong method",
            auth(
                ReasonCode::ContinueAuthentication,
                Some("PLAIN"),
                Some(vec![1]),
            )
            .into(),
            ReasonCode::BadAuthenticationMethod,
        ),
        // No method at all (a Protocol Error, section 3.15.2.2.2).
        (
            "no method",
            auth(ReasonCode::ContinueAuthentication, None, None).into(),
            ReasonCode::ProtocolError,
        ),
        // Re-authentication before CONNACK: the answer must be 0x18 [MQTT-4.12.0-3].
        (
            "0x19 in the exchange",
            auth(ReasonCode::ReAuthenticate, Some(SCRAM), Some(vec![1])).into(),
            ReasonCode::ProtocolError,
        ),
        // Nothing but AUTH or DISCONNECT before CONNACK [MQTT-3.1.2-30].
        (
            "PUBLISH in the exchange",
            Publish {
                topic: s("t"),
                ..Publish::default()
            }
            .into(),
            ReasonCode::ProtocolError,
        ),
    ];
    for (what, packet, code) in cases {
        let mut raw = Raw::open(addr, V5);
        let client = ScramClient::new("alice", b"wonderland", "n2").unwrap();
        raw.send(scram_connect(what, SCRAM, client.client_first()));
        expect_continue(&mut raw);
        raw.send(packet);
        match raw.next() {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, code, "{what}"),
            other => panic!("{what}: expected CONNACK {code}, got {other:?}"),
        }
        expect_closed(&mut raw);
    }

    // A client that named no method may not send AUTH [MQTT-4.12.0-7].
    let mut raw = Raw::open(addr, V5);
    let mut c = connect(V5, "no-method");
    c.username = Some(s("carol"));
    c.password = Some(Bytes::from_static(b"plain"));
    raw.send(c);
    expect_connack(&mut raw, ReasonCode::Success);
    raw.send(auth(ReasonCode::ReAuthenticate, Some(SCRAM), None));
    match raw.next() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    expect_closed(&mut raw);

    // An MQTT 3.1.1 client has no AUTH: packet type 15 is reserved there,
    // a malformed packet that closes the connection (3.1.1 [MQTT-4.8.0-1]).
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1);
    let mut c = connect(ProtocolVersion::V3_1_1, "v311");
    c.username = Some(s("carol"));
    c.password = Some(Bytes::from_static(b"plain"));
    raw.send(c);
    expect_connack(&mut raw, ReasonCode::Success);
    raw.stream.write_all(&[0xF0, 0x00]).unwrap();
    expect_closed(&mut raw);
}

#[test]
fn re_authentication_succeeds_and_fails_with_a_disconnect() {
    let setup = Setup::start("reauth");
    let addr = setup.broker.tcp;

    // Success: AUTH 0x00 with the method and the server's signature.
    let mut raw = raw_login(addr, "re-ok", "alice", b"wonderland");
    for _ in 0..2 {
        let (client, end) = raw_reauth(&mut raw, "alice", b"wonderland");
        match end {
            Some(Packet::Auth(a)) => {
                assert_eq!(a.reason_code, ReasonCode::Success);
                let method = a
                    .properties
                    .authentication_method
                    .as_ref()
                    .map(|m| m.as_str());
                assert_eq!(method, Some(SCRAM)); // [MQTT-4.12.0-5]
                client
                    .server_final(&a.properties.authentication_data.unwrap())
                    .unwrap();
            }
            other => panic!("expected AUTH 0x00, got {other:?}"),
        }
    }
    raw.send(Packet::PingReq);
    assert_eq!(raw.next(), Some(Packet::PingResp), "still connected");

    // Failures end with DISCONNECT and the reason [MQTT-4.12.1-2]: a wrong
    // password (0x86 is not a DISCONNECT code: 0x87), another user than
    // the connection's (0x87), another method (0x8C).
    for (what, user, password, method, code) in [
        (
            "wrong password",
            "alice",
            &b"nope"[..],
            SCRAM,
            ReasonCode::NotAuthorized,
        ),
        (
            "other user",
            "bob",
            b"builder",
            SCRAM,
            ReasonCode::NotAuthorized,
        ),
        (
            "other method",
            "alice",
            b"wonderland",
            "PLAIN",
            ReasonCode::BadAuthenticationMethod,
        ),
    ] {
        let mut raw = raw_login(addr, what, "alice", b"wonderland");
        let end = if method == SCRAM {
            raw_reauth(&mut raw, user, password).1
        } else {
            raw.send(auth(
                ReasonCode::ReAuthenticate,
                Some(method),
                Some(vec![1]),
            ));
            raw.next()
        };
        match end {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code, "{what}"),
            other => panic!("{what}: expected DISCONNECT {code}, got {other:?}"),
        }
        expect_closed(&mut raw);
    }
}

#[tokio::test]
async fn tern_client_logs_in_and_re_authenticates_with_scram() {
    let setup = Setup::start("client");
    let url = format!("mqtt://{}", setup.broker.tcp);

    let options = tern_client::Options::from_url(&url)
        .unwrap()
        .client_id("scram-client")
        .unwrap()
        .reconnect(None)
        .scram_sha256("alice", b"wonderland")
        .unwrap();
    let connected = tern_client::Client::connect(options).await;
    if connected.is_err() {
        while let Ok(line) = setup
            .broker
            .stderr
            .recv_timeout(std::time::Duration::from_secs(1))
        {
            eprintln!("broker: {line}");
        }
    }
    let (client, mut messages) = connected.unwrap();
    client
        .subscribe([("scram/t", QoS::AtLeastOnce)])
        .await
        .unwrap();
    client
        .publish("scram/t", "hello", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = messages.recv().await.expect("own message");
    assert_eq!(&m.payload[..], b"hello");
    client.reauthenticate().await.unwrap();
    client.reauthenticate().await.unwrap();
    client
        .publish("scram/t", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&messages.recv().await.unwrap().payload[..], b"after");
    client.disconnect().await.unwrap();

    for (user, password) in [("alice", &b"wrong"[..]), ("nobody", b"x")] {
        let options = tern_client::Options::from_url(&url)
            .unwrap()
            .reconnect(None)
            .scram_sha256(user, password)
            .unwrap();
        match tern_client::Client::connect(options).await {
            Err(tern_client::Error::ConnectionRefused(code)) => {
                assert_eq!(code, ReasonCode::BadUserNameOrPassword, "{user}")
            }
            other => panic!("{user}: expected refusal 0x86, got {other:?}"),
        }
    }
}

#[test]
fn tern_pub_logs_in_with_scram() {
    let setup = Setup::start("pub");
    let port = setup.broker.tcp.port().to_string();
    let publish = |user: &str, password: &str| {
        Command::cargo_bin("tern")
            .unwrap()
            .args(["pub", "-h", "127.0.0.1", "-p", &port, "--scram"])
            .args(["-u", user, "-P", password, "-t", "scram/pub", "-m", "hi"])
            .timeout(WAIT)
            .output()
            .unwrap()
    };
    let ok = publish("alice", "wonderland");
    assert!(ok.status.success(), "{ok:?}");
    // SASLprep (RFC 4013) on both sides: a soft hyphen is mapped to
    // nothing, and ROMAN NUMERAL NINE is "IX" after NFKC.
    for password in ["I\u{AD}X", "\u{2168}"] {
        let ok = publish("dora", password);
        assert!(ok.status.success(), "{password:?}: {ok:?}");
    }
    assert!(!publish("dora", "I X").status.success());
    // SCRAM-SHA-512, for the user with a SCRAM-SHA-512 line only: another
    // mechanism than the user's line is refused like a wrong password.
    let publish_with = |flag: &str, user: &str, password: &str| {
        Command::cargo_bin("tern")
            .unwrap()
            .args(["pub", "-h", "127.0.0.1", "-p", &port, flag])
            .args(["-u", user, "-P", password, "-t", "scram/pub", "-m", "hi"])
            .timeout(WAIT)
            .output()
            .unwrap()
    };
    let ok = publish_with("--scram-sha512", "erin", "sha-512");
    assert!(ok.status.success(), "{ok:?}");
    for (flag, user, password) in [
        ("--scram-sha512", "erin", "sha-51"),
        ("--scram", "erin", "sha-512"),
        ("--scram-sha512", "alice", "wonderland"),
    ] {
        let refused = publish_with(flag, user, password);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains("0x86"),
            "{flag} {user}: {stderr}"
        );
    }
    let refused = publish("alice", "wrong");
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("0x86"), "{stderr}");
    // MQTT 3.1.1 has no enhanced authentication.
    let v311 = Command::cargo_bin("tern")
        .unwrap()
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--scram",
            "-V",
            "311",
        ])
        .args(["-u", "alice", "-P", "wonderland", "-t", "t", "-m", "m"])
        .output()
        .unwrap();
    assert!(!v311.status.success());
    assert!(String::from_utf8_lossy(&v311.stderr).contains("--scram needs MQTT 5"));
}
