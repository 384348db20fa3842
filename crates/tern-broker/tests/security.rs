//! The password file, `allow_anonymous` and the ACL file on a running
//! server (in process, 127.0.0.1 port 0), seen by raw MQTT 5 and 3.1.1
//! clients: the reason codes, what is delivered and what is not, wills,
//! retained messages, `$SYS`, and reloading the files.
//!
//! What is *not* delivered is shown with a marker: a message every client
//! may read, published after it on the same path, must arrive first.

mod common;

use bytes::Bytes;
use common::{Raw, WAIT, connect, publish, s, start_with};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use tern_broker::security::PasswordHash;
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode, Will};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

const ACL: &str = "\
topic read public/#
pattern read marker/#

user admin
topic readwrite #

user alice
topic readwrite alice/#
topic write public/#

user sysop
topic read $SYS/#

user marker
topic write marker/#
";

/// A directory with `passwd` (admin, alice, sysop; password `pw-NAME`) and
/// `acl`, removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("tern-sec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = Files { dir };
        files.passwords(&[
            ("admin", "pw-admin"),
            ("alice", "pw-alice"),
            ("sysop", "pw-sysop"),
            ("marker", "pw-marker"),
        ]);
        std::fs::write(files.acl(), ACL).unwrap();
        files
    }

    fn passwd(&self) -> PathBuf {
        self.dir.join("passwd")
    }

    fn acl(&self) -> PathBuf {
        self.dir.join("acl")
    }

    fn passwords(&self, users: &[(&str, &str)]) {
        let text: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{}\n", PasswordHash::pbkdf2(p.as_bytes(), [7; 12], 101)))
            .collect();
        std::fs::write(self.passwd(), text).unwrap();
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn with_files(
    files: &Files,
    acl: bool,
    allow_anonymous: Option<bool>,
) -> impl FnOnce(&mut tern_broker::server::BrokerSettings) + use<> {
    let (passwd, acl_path) = (files.passwd(), files.acl());
    move |settings| {
        settings.security.password_file = Some(passwd);
        settings.security.acl_file = acl.then_some(acl_path);
        settings.security.allow_anonymous = allow_anonymous;
    }
}

fn login(version: ProtocolVersion, id: &str, user: Option<(&str, &str)>) -> tern_codec::Connect {
    let mut c = connect(version, id);
    if let Some((user, password)) = user {
        c.username = Some(s(user));
        c.password = Some(Bytes::from(password.to_string()));
    }
    c
}

async fn as_user(addr: std::net::SocketAddr, version: ProtocolVersion, user: &str) -> Raw {
    let password = format!("pw-{user}");
    let id = format!("{user}-{version:?}");
    let (raw, ack) = Raw::connect(addr, login(version, &id, Some((user, &password)))).await;
    assert_eq!(ack.reason_code, ReasonCode::Success, "{user}: {ack:?}");
    raw
}

/// Publishes a marker (readable by everyone) as user `marker` and returns
/// the topics `raw` received before it (earlier markers left out).
async fn received_before_marker(raw: &mut Raw, marker_user: &mut Raw, n: u16) -> Vec<String> {
    let marker = format!("marker/{n}");
    marker_user
        .publish(publish(&marker, b"m", QoS::AtLeastOnce, 1000 + n))
        .await;
    let mut topics = Vec::new();
    loop {
        match raw.next(WAIT).await {
            Some(Packet::Publish(p)) => {
                raw.ack(&p).await;
                if p.topic.as_str() == marker {
                    return topics;
                }
                if !p.topic.as_str().starts_with("marker/") {
                    topics.push(p.topic.to_string());
                }
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn passwords_are_checked_with_the_reason_code_of_each_version() {
    let files = Files::new("passwords");
    let broker = start_with(with_files(&files, false, None)).await;
    for version in [V5, V4] {
        let cases: [(Option<(&str, &str)>, ReasonCode); 5] = [
            (Some(("alice", "pw-alice")), ReasonCode::Success),
            // [MQTT-3.1.4-2]; 3.1.1 return code 4 decodes as 0x86.
            (Some(("alice", "wrong")), ReasonCode::BadUserNameOrPassword),
            (
                Some(("mallory", "pw-alice")),
                ReasonCode::BadUserNameOrPassword,
            ),
            // A password file and no allow_anonymous: anonymous clients are
            // refused (3.1.1 return code 5 decodes as 0x87).
            (None, ReasonCode::NotAuthorized),
            (Some(("alice", "")), ReasonCode::BadUserNameOrPassword),
        ];
        for (user, expected) in cases {
            let (mut raw, ack) = Raw::connect(broker.tcp, login(version, "c", user)).await;
            assert_eq!(ack.reason_code, expected, "{version:?} {user:?}");
            if expected != ReasonCode::Success {
                // Refused: the connection is closed after the CONNACK.
                raw.closed(WAIT).await;
            }
        }
        // A user name without a password.
        let mut c = login(version, "c", None);
        c.username = Some(s("alice"));
        let (_, ack) = Raw::connect(broker.tcp, c).await;
        assert_eq!(
            ack.reason_code,
            ReasonCode::BadUserNameOrPassword,
            "{version:?}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn allow_anonymous_lets_clients_without_a_user_name_in() {
    let files = Files::new("anonymous");
    let broker = start_with(with_files(&files, false, Some(true))).await;
    let (_, ack) = Raw::connect(broker.tcp, login(V4, "anon", None)).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // A wrong password is still refused.
    let (_, ack) = Raw::connect(broker.tcp, login(V4, "c", Some(("alice", "x")))).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    broker.shutdown().await;

    // Without a password file a user name proves nothing: allow_anonymous
    // false refuses everyone.
    let broker = start_with(|s| s.security.allow_anonymous = Some(false)).await;
    let (_, ack) = Raw::connect(broker.tcp, login(V5, "c", Some(("alice", "pw-alice")))).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_publish_the_acl_refuses_is_0x87_in_mqtt5_and_dropped_in_311() {
    let files = Files::new("write");
    let broker = start_with(with_files(&files, true, None)).await;
    let mut m = as_user(broker.tcp, V5, "marker").await;
    let mut admin = as_user(broker.tcp, V5, "admin").await;
    admin.subscribe("#", QoS::AtLeastOnce).await;
    let mut alice5 = as_user(broker.tcp, V5, "alice").await;
    let mut alice4 = as_user(broker.tcp, V4, "alice").await;
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        let code = alice5.publish(publish("secret/5", b"x", qos, id)).await;
        assert_eq!(code, ReasonCode::NotAuthorized, "MQTT 5 PUBACK/PUBREC 0x87");
        // 3.1.1 has no failure code there: acknowledged, and dropped
        // (3.1.1 [MQTT-3.3.5-2]).
        let code = alice4.publish(publish("secret/4", b"x", qos, id)).await;
        assert_eq!(code, ReasonCode::Success);
    }
    alice4
        .publish(publish("alice/ok", b"x", QoS::AtLeastOnce, 3))
        .await;
    alice4
        .publish(publish("public/ok", b"x", QoS::AtMostOnce, 4))
        .await;
    alice4.ping().await;
    assert_eq!(
        received_before_marker(&mut admin, &mut m, 1).await,
        vec!["alice/ok", "public/ok"],
        "the refused messages were not routed"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn messages_are_delivered_only_where_the_acl_allows_reading() {
    let files = Files::new("read");
    let broker = start_with(with_files(&files, true, Some(true))).await;
    let mut m = as_user(broker.tcp, V5, "marker").await;
    let mut admin = as_user(broker.tcp, V5, "admin").await;
    // Retained messages the admin may write anywhere.
    for (n, topic) in ["alice/r", "public/r", "other/r"].into_iter().enumerate() {
        let mut p = publish(topic, b"r", QoS::AtLeastOnce, n as u16 + 1);
        p.retain = true;
        admin.publish(p).await;
    }
    let (mut anon, _) = Raw::connect(broker.tcp, login(V4, "anon", None)).await;
    // Subscribing is always granted (mosquitto checks each message).
    anon.subscribe("#", QoS::AtLeastOnce).await;
    let mut alice = as_user(broker.tcp, V5, "alice").await;
    alice.subscribe("#", QoS::AtLeastOnce).await;
    // Retained messages on subscribe, filtered by `read`.
    assert_eq!(
        received_before_marker(&mut anon, &mut m, 1).await,
        vec!["public/r"]
    );
    assert_eq!(
        received_before_marker(&mut alice, &mut m, 2).await,
        vec!["alice/r"]
    );
    // Live messages, filtered the same way.
    for (n, topic) in ["alice/x", "public/x", "other/x"].into_iter().enumerate() {
        admin
            .publish(publish(topic, b"x", QoS::AtLeastOnce, n as u16 + 10))
            .await;
    }
    assert_eq!(
        received_before_marker(&mut anon, &mut m, 3).await,
        vec!["public/x"]
    );
    assert_eq!(
        received_before_marker(&mut alice, &mut m, 4).await,
        vec!["alice/x"]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn wills_are_checked_for_writing_and_each_delivery_for_reading() {
    let files = Files::new("wills");
    let broker = start_with(with_files(&files, true, Some(true))).await;
    let mut m = as_user(broker.tcp, V5, "marker").await;
    let mut admin = as_user(broker.tcp, V5, "admin").await;
    admin.subscribe("#", QoS::AtLeastOnce).await;
    let (mut anon, _) = Raw::connect(broker.tcp, login(V5, "anon", None)).await;
    anon.subscribe("#", QoS::AtLeastOnce).await;
    let will = |topic: &str| Will {
        topic: s(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    // alice may write alice/# and public/#, not secret/.
    for (id, topic) in [
        ("w1", "alice/will"),
        ("w2", "secret/will"),
        ("w3", "public/will"),
    ] {
        let mut c = login(V5, id, Some(("alice", "pw-alice")));
        c.will = Some(will(topic));
        let (raw, ack) = Raw::connect(broker.tcp, c).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        drop(raw);
    }
    // The admin reads everything alice may write; the anonymous client only public/.
    let mut got = Vec::new();
    while got.len() < 2 {
        match admin.next(WAIT).await {
            Some(Packet::Publish(p)) => {
                admin.ack(&p).await;
                got.push(p.topic.to_string());
            }
            other => panic!("expected the wills, got {other:?}"),
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec!["alice/will", "public/will"],
        "secret/will not written"
    );
    assert_eq!(
        received_before_marker(&mut anon, &mut m, 1).await,
        vec!["public/will"]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_topics_go_only_where_the_acl_names_them() {
    let files = Files::new("sys");
    let broker = start_with(|settings| {
        with_files(&files, true, None)(settings);
        settings.limits.sys_interval = Duration::from_millis(50);
    })
    .await;
    let mut m = as_user(broker.tcp, V5, "marker").await;
    let mut admin = as_user(broker.tcp, V5, "admin").await;
    let mut sysop = as_user(broker.tcp, V5, "sysop").await;
    // `#` in admin's `readwrite #` does not match `$SYS` topics.
    admin.subscribe("$SYS/#", QoS::AtMostOnce).await;
    sysop.subscribe("$SYS/#", QoS::AtMostOnce).await;
    match sysop.next(WAIT).await {
        Some(Packet::Publish(p)) => assert!(p.topic.as_str().starts_with("$SYS/")),
        other => panic!("expected $SYS, got {other:?}"),
    }
    admin.subscribe("marker/#", QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // several $SYS rounds
    assert!(
        received_before_marker(&mut admin, &mut m, 1)
            .await
            .is_empty()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_new_files_and_keeps_connections() {
    let files = Files::new("reload");
    let broker = start_with(with_files(&files, false, None)).await;
    let mut alice = as_user(broker.tcp, V5, "alice").await;
    files.passwords(&[("alice", "new-pw")]);
    broker.running.reload().expect("the new file is good");
    // The connection made under the old file stays.
    alice.ping().await;
    let (_, ack) = Raw::connect(broker.tcp, login(V5, "a2", Some(("alice", "pw-alice")))).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    let (_, ack) = Raw::connect(broker.tcp, login(V5, "a3", Some(("alice", "new-pw")))).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // A bad file: the error names it, and the rules in force stay.
    std::fs::write(files.passwd(), "alice\n").unwrap();
    let e = broker.running.reload().unwrap_err().to_string();
    assert!(
        e.contains(&files.passwd().display().to_string()) && e.contains("line 1"),
        "{e}"
    );
    let (_, ack) = Raw::connect(broker.tcp, login(V5, "a4", Some(("alice", "new-pw")))).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_stops_the_start_naming_it() {
    let files = Files::new("bad");
    std::fs::write(files.acl(), "topic read a\nuser\n").unwrap();
    let mut settings = common::settings();
    with_files(&files, true, None)(&mut settings);
    let e = tern_broker::server::start(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&files.acl().display().to_string()) && e.contains("line 2"),
        "{e}"
    );
    let mut settings = common::settings();
    settings.security.password_file = Some(Path::new("/nonexistent/passwd").into());
    let e = tern_broker::server::start(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/passwd") && e.contains("cannot read"),
        "{e}"
    );
}
