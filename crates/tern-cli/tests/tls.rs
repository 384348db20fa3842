//! `tern pub` and `tern sub` over TLS against Debian's mosquitto, with
//! mosquitto's flags (`--cafile`, `--cert`, `--key`, `--insecure`) and
//! `mqtts://` URLs, and certificates made for the run.

#[path = "../../tern-client/tests/support/mosquitto.rs"]
mod mosquitto;
#[path = "../../tern-client/tests/support/pki.rs"]
mod pki;

use assert_cmd::Command;
use mosquitto::Mosquitto;
use pki::Pki;
use predicates::prelude::*;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(10);

fn tern() -> Command {
    let mut command = Command::cargo_bin("tern").expect("the tern binary is built");
    command.timeout(PATIENCE);
    command
}

#[test]
fn pub_and_sub_with_a_client_certificate() {
    let pki = Pki::new("cli");
    let broker = Mosquitto::start_with_listener_settings(&pki.listener_settings(true));
    let port = broker.port.to_string();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let tls = [
        "--cafile",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    tern()
        .args([
            "pub",
            "-h",
            "localhost",
            "-p",
            &port,
            "-t",
            "tls/cli",
            "-m",
            "secret",
            "-r",
            "-q",
            "1",
        ])
        .args(tls)
        .assert()
        .success();
    // The retained message, read back over an mqtts:// URL.
    tern()
        .args([
            "sub",
            "-L",
            &format!("mqtts://localhost:{port}/tls/cli"),
            "-C",
            "1",
        ])
        .args(tls)
        .assert()
        .success()
        .stdout("secret\n");
}

#[test]
fn the_hostname_is_checked_unless_insecure() {
    let pki = Pki::new("cli-insecure");
    let broker = Mosquitto::start_with_listener_settings(&pki.listener_settings(false));
    let port = broker.port.to_string();
    let ca = pki.path("ca.pem");
    let args = [
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "t",
        "-m",
        "x",
        "--cafile",
    ];
    // The certificate names localhost only.
    tern()
        .args(args)
        .arg(&ca)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("TLS").and(predicate::str::contains("certificate")));
    tern()
        .args(args)
        .arg(&ca)
        .arg("--insecure")
        .assert()
        .success();
}

#[test]
fn tls_flags_without_tls_are_a_usage_error() {
    tern()
        .args(["pub", "-t", "t", "-m", "x", "--insecure"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("need TLS"));
    tern()
        .args([
            "pub",
            "-t",
            "t",
            "-m",
            "x",
            "--cafile",
            "/nonexistent/ca.pem",
            "-p",
            "1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/ca.pem"));
}
