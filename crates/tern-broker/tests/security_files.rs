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
