//! `cargo xtask examples`: runs every crate's examples as a new user would
//! (`cargo run --example NAME -- URL`), and checks what each prints: the
//! tern-client ones against `tern broker`, the drivers (tern-blocking's,
//! tern-session's smol driver) and tern-codec's socket example against both
//! `tern broker` and mosquitto, the offline ones (tern-codec, tern-topic)
//! alone, and the TLS one against mosquitto with a TLS listener and
//! certificates made by `openssl` for the run.

use crate::tools::{cargo, ensure_apt, run, target_dir};
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};
use tern_testkit::Broker;

/// Each example that needs only a broker URL, and a line it must print.
const PLAIN: &[(&str, &str)] = &[
    ("publish_subscribe", "tern/example/qos2 (2): b\"hello\""),
    ("manual_acks", "acknowledged with 0x80 Unspecified error"),
    ("pipelined", "10000 QoS 1 messages acknowledged"),
    ("connection_state", "connected (session present: false)"),
];

/// Examples run against `tern broker` and against mosquitto: the same
/// publish/subscribe (and, for the drivers, keep-alive) scenario as
/// tern-client's.
const BOTH: &[(&str, &str)] = &[
    ("pubsub", "received 3 messages, 2 acknowledged"),
    (
        "smol_driver",
        "smol driver: message received: true; kept alive for 3 s",
    ),
    ("stream_decode", "message on tern/codec/example: b\"hello\""),
];

/// Examples that need no broker.
const OFFLINE: &[(&str, &str)] = &[
    ("encode", "reason code MalformedPacket"),
    ("shared_round_robin", "jobs/6: auditor, worker-c"),
];

pub(crate) fn command(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err("usage: cargo xtask examples".into());
    }
    run(cargo().args([
        "build",
        "-p",
        "tern-client",
        "-p",
        "tern-blocking",
        "-p",
        "tern-session",
        "-p",
        "tern-codec",
        "-p",
        "tern-topic",
        "--features",
        "tern-session/std",
        "--examples",
        "-p",
        "tern-cli",
        "--bin",
        "tern",
    ]))?;
    let debug = target_dir().join("debug");
    let broker = Broker::tern(debug.join("tern")).start()?;
    let mut failed = Vec::new();
    for (name, expect) in PLAIN.iter().chain(BOTH) {
        check(&debug, name, &[&broker.url()], expect, &mut failed);
    }
    drop(broker);
    let mosquitto = Broker::mosquitto().start()?;
    for (name, expect) in BOTH {
        check(&debug, name, &[&mosquitto.url()], expect, &mut failed);
    }
    drop(mosquitto);
    for (name, expect) in OFFLINE {
        check(&debug, name, &[], expect, &mut failed);
    }

    ensure_apt(&["openssl"], &["openssl"])?;
    // Under the temporary directory: mosquitto, started as root, reads the
    // files as its own user, who may not be able to enter the checkout.
    let pki = std::env::temp_dir().join(format!("tern-examples-pki-{}", std::process::id()));
    make_pki(&pki)?;
    let mosquitto = Broker::mosquitto()
        .listener_settings(&format!(
            "cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n\
             require_certificate true\n",
            pki.display()
        ))
        .start()?;
    let url = format!("mqtts://localhost:{}", mosquitto.tcp().port());
    let file = |f: &str| pki.join(f).display().to_string();
    check(
        &debug,
        "tls",
        &[
            &url,
            &file("ca.pem"),
            &file("client.pem"),
            &file("client.key"),
        ],
        // mosquitto answers 0x10 No matching subscribers: nobody listens.
        "published over TLS: 0x10",
        &mut failed,
    );
    drop(mosquitto);
    let _ = std::fs::remove_dir_all(&pki);
    let total = PLAIN.len() + 2 * BOTH.len() + OFFLINE.len() + 1;
    println!("{} passed, {} failed", total - failed.len(), failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("examples failed: {}", failed.join(", ")))
    }
}

/// Runs one example binary; prints PASS or FAIL with what it printed.
fn check(debug: &Path, name: &str, args: &[&str], expect: &str, failed: &mut Vec<String>) {
    let out = Command::new(debug.join("examples").join(name))
        .args(args)
        .output();
    let (ok, shown) = match out {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let ok = out.status.success() && stdout.contains(expect);
            let stderr = String::from_utf8_lossy(&out.stderr);
            (ok, format!("exit {}\n{stdout}{stderr}", out.status))
        }
        Err(e) => (false, format!("could not run: {e}")),
    };
    if ok {
        println!("PASS example {name}");
    } else {
        println!("FAIL example {name}: expected {expect:?}; {shown}");
        failed.push(name.to_string());
    }
}

/// A CA, a server certificate for localhost and a client certificate.
fn make_pki(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // `run` works in the workspace root: every path is absolute.
    let path = |f: &str| dir.join(f).display().to_string();
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args));
    let (ca_key, ca) = (path("ca.key"), path("ca.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-subj",
        "/CN=tern example CA",
    ])?;
    for (stem, subject, ext) in [
        ("server", "/CN=localhost", "subjectAltName=DNS:localhost"),
        (
            "client",
            "/CN=tern example client",
            "extendedKeyUsage=clientAuth",
        ),
    ] {
        let [key, csr, pem, extfile] =
            ["key", "csr", "pem", "ext"].map(|suffix| path(&format!("{stem}.{suffix}")));
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ])?;
        std::fs::write(&extfile, ext).map_err(|e| format!("{extfile}: {e}"))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ])?;
        // mosquitto started as root reads its files as the `mosquitto`
        // user; openssl writes keys for their owner only. Throwaway keys.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
}
