//! `tern passwd` writes files that Debian's mosquitto accepts: users it
//! adds can log in to a running mosquitto with their password and only
//! with it, deleted users cannot, and `-U` hashes a plain-text file.

#[path = "../../tern-client/tests/support/mosquitto.rs"]
mod mosquitto;

use assert_cmd::Command;
use mosquitto::Mosquitto;
use predicates::prelude::*;
use std::path::Path;

fn tern_passwd(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("tern")
        .expect("the tern binary is built")
        .arg("passwd")
        .args(args)
        .assert()
}

/// Whether mosquitto_pub can log in to `broker` as `user` with `password`.
fn logs_in(broker: &Mosquitto, user: &str, password: &str) -> bool {
    std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-u", user, "-P", password, "-t", "t", "-m", "x", "-q", "1"])
        .output()
        .expect("mosquitto_pub runs (Debian's mosquitto-clients)")
        .status
        .success()
}

fn broker_with(file: &Path) -> Mosquitto {
    Mosquitto::start_with(
        false,
        &format!("allow_anonymous false\npassword_file {}\n", file.display()),
    )
}

#[test]
fn users_added_by_tern_passwd_log_in_to_mosquitto() {
    let dir = std::env::temp_dir().join(format!("tern-passwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let path = file.to_str().unwrap();
    tern_passwd(&["-c", "-b", path, "alice", "s3cret"]).success();
    tern_passwd(&["-b", path, "bob", "p w:d"]).success();
    tern_passwd(&["-H", "sha512", "-b", path, "carol", "old-style"]).success();
    // mosquitto 2.1's -I: mosquitto 2.0 reads any iteration count.
    tern_passwd(&["-I", "2000", "-b", path, "ivy", "many rounds"]).success();
    tern_passwd(&["-b", path, "dave", "gone soon"]).success();
    // A new password replaces the old one, in place.
    tern_passwd(&["-b", path, "alice", "n3w"]).success();
    tern_passwd(&["-D", path, "dave"]).success();
    let text = std::fs::read_to_string(&file).unwrap();
    let users: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(users, ["alice", "bob", "carol", "ivy"], "{text}");
    assert!(
        text.contains("alice:$7$101$")
            && text.contains("carol:$6$")
            && text.contains("ivy:$7$2000$"),
        "{text}"
    );

    let broker = broker_with(&file);
    assert!(logs_in(&broker, "alice", "n3w"));
    assert!(
        !logs_in(&broker, "alice", "s3cret"),
        "the old password is gone"
    );
    assert!(logs_in(&broker, "bob", "p w:d"));
    assert!(!logs_in(&broker, "bob", "p w"));
    assert!(logs_in(&broker, "carol", "old-style"));
    assert!(logs_in(&broker, "ivy", "many rounds"));
    assert!(!logs_in(&broker, "ivy", "many round"));
    assert!(!logs_in(&broker, "dave", "gone soon"), "deleted");
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn update_hashes_a_plain_text_file_and_keeps_comments() {
    let dir = std::env::temp_dir().join(format!("tern-passwd-u-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    std::fs::write(&file, "# operators\nerin:plain one\nfrank:two\n").unwrap();
    tern_passwd(&["-U", file.to_str().unwrap()]).success();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# operators\nerin:$7$"), "{text}");
    assert!(!text.contains("plain one"), "{text}");
    // Running it again changes nothing: hashes are not hashed twice.
    tern_passwd(&["-U", file.to_str().unwrap()]).success();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let broker = broker_with(&file);
    assert!(logs_in(&broker, "erin", "plain one"));
    assert!(logs_in(&broker, "frank", "two"));
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mistakes_are_named() {
    tern_passwd(&["-D", "/nonexistent/passwd", "x"])
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/passwd"));
    tern_passwd(&["-b", "/tmp/x", "a:b", "pw"])
        .code(2)
        .stderr(predicate::str::contains("cannot contain ':'"));
    tern_passwd(&["/tmp/x", "a", "pw"])
        .code(2)
        .stderr(predicate::str::contains("needs -b"));
    tern_passwd(&["-H", "sha512", "-I", "5", "-b", "/tmp/x", "a", "pw"])
        .code(2)
        .stderr(predicate::str::contains("-I is for -H sha512-pbkdf2"));
    tern_passwd(&["-I", "0", "-b", "/tmp/x", "a", "pw"])
        .code(2)
        .stderr(predicate::str::contains("-I"));
}
