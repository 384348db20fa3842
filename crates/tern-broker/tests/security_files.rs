//! The password and ACL files, checked against mosquitto's own tools and
//! manual: files written by Debian's `mosquitto_passwd` verify here, and
//! the ACL rules mean what mosquitto.conf(5) says they mean.

use std::process::Command;
use tern_broker::security::{Access, AclFile, PasswordFile};
use tern_topic::TopicName;

const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

/// Runs `mosquitto_passwd ARGS` (batch mode), failing the test if it is
/// missing (CI installs Debian's mosquitto) or fails.
fn mosquitto_passwd(args: &[&str]) {
    let status = Command::new(MOSQUITTO_PASSWD)
        .args(args)
        .status()
        .unwrap_or_else(|e| {
            panic!("{MOSQUITTO_PASSWD}: {e}; install Debian's mosquitto (cargo xtask ci does)")
        });
    assert!(status.success(), "mosquitto_passwd {args:?}: {status}");
}

#[test]
fn files_written_by_mosquitto_passwd_verify() {
    let dir = std::env::temp_dir().join(format!("tern-pwfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let path = file.to_str().unwrap();
    // PBKDF2 ($7$, mosquitto 2's default) and plain SHA-512 ($6$, 1.6's).
    mosquitto_passwd(&["-c", "-b", path, "alice", "s3cret"]);
    mosquitto_passwd(&["-H", "sha512", "-b", path, "bob", "p:w d"]);
    mosquitto_passwd(&["-b", path, "carol", ""]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$7$101$"), "{text}");
    assert!(text.contains("bob:$6$"), "{text}");
    let users = PasswordFile::parse(&text).unwrap();
    assert_eq!(users.len(), 3);
    assert!(users.verify("alice", b"s3cret"));
    assert!(!users.verify("alice", b"s3cret\n"));
    assert!(!users.verify("alice", b"S3cret"));
    assert!(users.verify("bob", b"p:w d"));
    assert!(!users.verify("bob", b"p:w"));
    assert!(users.verify("carol", b""));
    assert!(!users.verify("carol", b" "));
    assert!(!users.verify("dave", b""));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).unwrap()
}

/// The rules as mosquitto.conf(5)'s acl_file section describes them (deny
/// first, `%c`/`%u` patterns, anonymous rules before any `user` line, `$`
/// topics only by `$` rules, wildcard ids refused once patterns exist).
#[test]
fn acl_rules_mean_what_mosquittos_manual_says() {
    let acl = AclFile::parse(
        "# anonymous clients\n\
         topic read public/#\n\
         \n\
         user alice\n\
         topic readwrite alice/#\n\
         topic deny alice/secret\n\
         topic write sensors/+/temp\n\
         topic $SYS/broker/clients/#\n\
         \n\
         user bob\n\
         topic read alice/#\n\
         \n\
         pattern write devices/%c/status\n\
         pattern read users/%u/#\n",
    )
    .unwrap();
    let can = |client: &str, user: Option<&str>, t: &str, access| {
        acl.allows(client, user, &topic(t), access)
    };
    use Access::{Read, Write};
    // Topic lines before any user line apply to anonymous clients only.
    assert!(can("anon", None, "public/news", Read));
    assert!(!can("anon", None, "public/news", Write));
    assert!(!can("alice-1", Some("alice"), "public/news", Read));
    // A user's topic lines.
    assert!(can("a", Some("alice"), "alice/x/y", Write));
    assert!(
        can("a", Some("alice"), "alice", Read),
        "alice/# matches alice"
    );
    assert!(can("a", Some("alice"), "sensors/kitchen/temp", Write));
    assert!(!can("a", Some("alice"), "sensors/kitchen/temp", Read));
    assert!(can("b", Some("bob"), "alice/x", Read));
    assert!(!can("b", Some("bob"), "alice/x", Write));
    // deny wins over any grant, wherever it stands.
    assert!(!can("a", Some("alice"), "alice/secret", Read));
    assert!(!can("a", Some("alice"), "alice/secret", Write));
    // Wildcards at the start do not reach $ topics; a $ rule does.
    assert!(can(
        "a",
        Some("alice"),
        "$SYS/broker/clients/connected",
        Read
    ));
    assert!(!can(
        "b",
        Some("bob"),
        "$SYS/broker/clients/connected",
        Read
    ));
    // No access word means readwrite.
    assert!(can("a", Some("alice"), "$SYS/broker/clients/total", Write));
    // Patterns apply to everyone, with %c and %u substituted.
    assert!(can("dev7", None, "devices/dev7/status", Write));
    assert!(!can("dev7", None, "devices/dev8/status", Write));
    assert!(can("b", Some("bob"), "users/bob/inbox", Read));
    assert!(!can("b", Some("bob"), "users/alice/inbox", Read));
    // A %u pattern does not apply to anonymous clients.
    assert!(!can("x", None, "users/%u/inbox", Read));
    // A client id or user name with a wildcard could widen a pattern:
    // refused everything once patterns exist.
    assert!(!can("+", None, "devices/x/status", Write));
    assert!(!can("b", Some("#"), "users/x/inbox", Read));
    // Unknown users have no topic rules, only patterns.
    assert!(!can("c", Some("carol"), "public/news", Read));
    assert!(can("c", Some("carol"), "users/carol/a", Read));
}

#[test]
fn acl_files_that_mosquitto_refuses_are_refused_with_the_line() {
    for (text, line, needle) in [
        ("topic read\nuser\n", 2, "missing user name"),
        ("topic writ a/b\n", 1, "unknown access"),
        ("topics read a\n", 1, "unknown keyword"),
        ("# c\ntopic read a/#/b\n", 2, "invalid topic filter"),
    ] {
        let e = AclFile::parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.why.contains(needle), "{text:?}: {e}");
    }
    // mosquitto reads `topic read` alone as readwrite on the topic "read".
    let acl = AclFile::parse("topic read\n").unwrap();
    assert!(acl.allows("c", None, &topic("read"), Access::Write));
}

mod common;

use common::{Raw, WAIT, connect, publish};
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use tern_testkit::Broker;

/// The ACL of the differential test; `admin` may do anything.
const ACL: &str = "\
topic read public/#
topic write inbox/anonymous

user admin
topic readwrite #

user alice
topic readwrite alice/#
topic deny alice/secret
topic write sensors/+/temp
topic read public/+

user bob
topic read alice/#
topic readwrite bob

pattern write devices/%c/status
pattern read users/%u/#
pattern read marker/%c
";

/// Each `(client id, user, topic)` is tried for writing and reading.
const CASES: &[(&str, Option<&str>, &str)] = &[
    ("anon", None, "public/news"),
    ("anon", None, "public/a/b"),
    ("anon", None, "inbox/anonymous"),
    ("anon", None, "alice/x"),
    ("a1", Some("alice"), "alice/x"),
    ("a1", Some("alice"), "alice"),
    ("a1", Some("alice"), "alice/secret"),
    ("a1", Some("alice"), "sensors/kitchen/temp"),
    ("a1", Some("alice"), "public/news"),
    ("a1", Some("alice"), "public/a/b"),
    ("b1", Some("bob"), "alice/x"),
    ("b1", Some("bob"), "alice/secret"),
    ("b1", Some("bob"), "bob"),
    ("b1", Some("bob"), "bob/x"),
    ("dev7", None, "devices/dev7/status"),
    ("dev7", Some("bob"), "devices/dev7/status"),
    ("dev7", None, "devices/dev8/status"),
    ("c1", Some("carol"), "users/carol/inbox"),
    ("c1", Some("carol"), "users/bob/inbox"),
    ("c1", Some("carol"), "public/news"),
];

fn login(client_id: &str, user: Option<&str>) -> tern_codec::Connect {
    let mut c = connect(ProtocolVersion::V5, client_id);
    if let Some(user) = user {
        c.username = Some(common::s(user));
        c.password = Some(bytes::Bytes::from(format!("pw-{user}")));
    }
    c
}

/// Whether mosquitto lets `(client_id, user)` publish to `topic`: MQTT 5
/// answers a refused QoS 1 PUBLISH with PUBACK 0x87.
async fn mosquitto_allows_write(
    addr: std::net::SocketAddr,
    id: &str,
    user: Option<&str>,
    topic: &str,
) -> bool {
    let (mut raw, ack) = Raw::connect(addr, login(id, user)).await;
    assert_eq!(ack.reason_code, ReasonCode::Success, "{id} {user:?}");
    let code = raw.publish(publish(topic, b"w", QoS::AtLeastOnce, 1)).await;
    assert!(
        matches!(
            code,
            ReasonCode::Success | ReasonCode::NoMatchingSubscribers | ReasonCode::NotAuthorized
        ),
        "{code:?}"
    );
    code != ReasonCode::NotAuthorized
}

/// Whether mosquitto lets `(client_id, user)` receive `topic`: the
/// retained message there arrives before the one on `marker/ID`, which
/// every client may read and which is subscribed second.
async fn mosquitto_allows_read(
    addr: std::net::SocketAddr,
    id: &str,
    user: Option<&str>,
    topic: &str,
) -> bool {
    let (mut raw, _) = Raw::connect(addr, login(id, user)).await;
    let marker = format!("marker/{id}");
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    raw.subscribe_with(1, &[(topic, qos1), (&marker, qos1)], None)
        .await;
    let mut got = false;
    loop {
        match raw.next(WAIT).await {
            Some(Packet::Publish(p)) => {
                raw.ack(&p).await;
                if p.topic == *marker {
                    return got;
                }
                got |= p.topic == *topic;
            }
            other => panic!("{id}: expected the retained messages, got {other:?}"),
        }
    }
}

/// The ACL file means the same to Tern as to a running mosquitto, case by
/// case, for publishing and for receiving: both as `AclFile` decides and as
/// a running Tern broker, given the same password and ACL files, behaves.
#[tokio::test]
async fn acl_decisions_match_a_running_mosquitto() {
    let dir = std::env::temp_dir().join(format!("tern-acl-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pw, acl_path) = (dir.join("passwd"), dir.join("acl"));
    mosquitto_passwd(&["-c", "-b", pw.to_str().unwrap(), "admin", "pw-admin"]);
    for user in ["alice", "bob", "carol"] {
        mosquitto_passwd(&["-b", pw.to_str().unwrap(), user, &format!("pw-{user}")]);
    }
    std::fs::write(&acl_path, ACL).unwrap();
    let broker = Broker::mosquitto()
        .settings(&format!(
            "allow_anonymous true\npassword_file {}\nacl_file {}\n",
            pw.display(),
            acl_path.display()
        ))
        .start()
        .expect("mosquitto starts");
    let tern = common::start_with(|s| {
        s.security.password_file = Some(pw.clone());
        s.security.acl_file = Some(acl_path.clone());
        s.security.allow_anonymous = Some(true);
    })
    .await;
    for addr in [broker.tcp(), tern.tcp] {
        retain_everything(addr).await;
    }
    let addr = broker.tcp();
    let ours = AclFile::parse(ACL).unwrap();
    let mut mismatches = Vec::new();
    for &(id, user, t) in CASES {
        let write = mosquitto_allows_write(addr, id, user, t).await;
        let read = mosquitto_allows_read(addr, id, user, t).await;
        let tern_write = ours.allows(id, user, &topic(t), Access::Write);
        let tern_read = ours.allows(id, user, &topic(t), Access::Read);
        let running_write = mosquitto_allows_write(tern.tcp, id, user, t).await;
        let running_read = mosquitto_allows_read(tern.tcp, id, user, t).await;
        if (write, read) != (tern_write, tern_read)
            || (write, read) != (running_write, running_read)
        {
            mismatches.push(format!(
                "{id} {user:?} {t}: mosquitto write {write} read {read}, tern write {tern_write} \
                 read {tern_read}, running tern write {running_write} read {running_read}"
            ));
        }
    }
    tern.shutdown().await;
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Retained messages on every topic and marker, by the admin.
async fn retain_everything(addr: std::net::SocketAddr) {
    let (mut admin, _) = Raw::connect(addr, login("admin", Some("admin"))).await;
    let mut n = 1;
    for (id, _, topic) in CASES {
        for t in [topic.to_string(), format!("marker/{id}")] {
            let mut p = publish(&t, b"r", QoS::AtLeastOnce, n);
            p.retain = true;
            let code = admin.publish(p).await;
            assert!(
                matches!(
                    code,
                    ReasonCode::Success | ReasonCode::NoMatchingSubscribers
                ),
                "admin writes {t}: {code:?}"
            );
            n += 1;
        }
    }
}
