//! `tern broker --tls --cert --key --cafile --require-certificate` as a
//! user runs it, with Debian's mosquitto_pub and mosquitto_sub and with
//! tern-client over `mqtts://`, and certificates made for the run.

#[path = "../../tern-client/tests/support/pki.rs"]
mod pki;
mod support;

use pki::Pki;
use std::{net::SocketAddr, process::Output};
use support::*;

/// `tern broker` with a TLS listener (and a TCP one, which the launcher
/// wants); returns the TLS address from its `listening tls` line.
fn broker(pki: &Pki, extra: &[&str]) -> (BrokerProcess, SocketAddr) {
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let mut args = vec![
        "--tcp",
        "127.0.0.1:0",
        "--tls",
        "127.0.0.1:0",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--cafile",
        ca.to_str().unwrap(),
    ];
    args.extend(extra);
    let (broker, _, _) = BrokerProcess::start_with(&args, 1, 0);
    let stdout = broker.stdout();
    let tls = stdout
        .lines()
        .find_map(|l| l.strip_prefix("listening tls "))
        .unwrap_or_else(|| panic!("a `listening tls` line in {stdout:?}"))
        .parse()
        .unwrap();
    (broker, tls)
}

/// mosquitto_pub or _sub over TLS to `localhost` (the server certificate's
/// name), with the client certificate if `cert`.
fn mosquitto(tool: &str, pki: &Pki, addr: SocketAddr, cert: bool, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(tool);
    cmd.args(["-h", "localhost", "-p", &addr.port().to_string()])
        .arg("--cafile")
        .arg(pki.path("ca.pem"));
    if cert {
        cmd.arg("--cert").arg(pki.path("client.pem"));
        cmd.arg("--key").arg(pki.path("client.key"));
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (Debian's mosquitto-clients): {e}"))
}

#[test]
fn mosquitto_clients_over_tls_with_a_required_client_certificate() {
    let pki = Pki::new("cli-broker-tls");
    let (_broker, addr) = broker(&pki, &["--require-certificate"]);
    for version in ["mqttv311", "mqttv5"] {
        let out = mosquitto(
            "mosquitto_pub",
            &pki,
            addr,
            true,
            &["-V", version, "-t", "tls/t", "-m", version, "-r", "-q", "1"],
        );
        assert!(out.status.success(), "{version}: {out:?}");
        let out = mosquitto(
            "mosquitto_sub",
            &pki,
            addr,
            true,
            &["-V", version, "-t", "tls/t", "-C", "1", "-W", "5"],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{version}\n"),
            "{out:?}"
        );
    }
    let refused = mosquitto("mosquitto_pub", &pki, addr, false, &["-t", "t", "-m", "x"]);
    assert!(!refused.status.success(), "no certificate: {refused:?}");
}

#[test]
fn tern_client_over_mqtts_with_a_client_certificate_named_by_its_common_name() {
    let pki = Pki::new("cli-broker-mqtts");
    let acl = pki.path("acl");
    std::fs::write(&acl, "user tern client\ntopic readwrite tern/#\n").unwrap();
    let (_broker, addr) = broker(
        &pki,
        &[
            "--use-identity-as-username",
            "--acl-file",
            acl.to_str().unwrap(),
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tern_client::{Client, Options, QoS, ReasonCode, TlsOptions};
        let url = format!("mqtts://localhost:{}", addr.port());
        let options = Options::from_url(&url)
            .unwrap()
            .client_id("cn-client")
            .unwrap()
            .tls(
                TlsOptions::new()
                    .ca_file(pki.path("ca.pem"))
                    .client_auth(pki.path("client.pem"), pki.path("client.key")),
            );
        let (client, mut messages) = Client::connect(options).await.expect("connects over mqtts");
        client.subscribe([("#", QoS::AtLeastOnce)]).await.unwrap();
        // Its Common Name, `tern client`, may write and read tern/# only.
        let refused = client
            .publish("other/t", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(refused.reason_code, ReasonCode::NotAuthorized);
        let done = client
            .publish("tern/t", "hello", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(done.reason_code, ReasonCode::Success);
        let message = tokio::time::timeout(WAIT, messages.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&*message.topic, "tern/t");
        client.disconnect().await.unwrap();
    });
}

/// Waits until the broker's log has a line containing `needle`.
fn logged(broker: &BrokerProcess, needle: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(line) = broker
            .stderr
            .recv_timeout(std::time::Duration::from_millis(100))
        {
            if line.contains(needle) {
                return;
            }
        }
    }
    panic!("the broker did not log {needle:?}");
}

/// SIGHUP puts new certificate files in force for new handshakes, and a
/// mosquitto_sub connected before it keeps receiving.
#[test]
fn sighup_reloads_the_certificates_and_keeps_connections() {
    let pki = Pki::new("cli-broker-tls-hup");
    let next = Pki::new("cli-broker-tls-hup-next");
    let (broker, addr) = broker(&pki, &[]);
    // Line-buffered, so its SUBACK line arrives while it runs.
    let mut sub = std::process::Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args(["-h", "localhost", "-p", &addr.port().to_string()])
        .arg("--cafile")
        .arg(pki.path("ca.pem"))
        .args(["-t", "hup/t", "-C", "1", "-W", "20", "-d"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs (Debian's mosquitto-clients)");
    let sub_lines = lines(sub.stdout.take().unwrap());
    // Subscribed before the reload.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let line = sub_lines
            .recv_timeout(deadline - std::time::Instant::now())
            .expect("mosquitto_sub subscribes");
        if line.contains("SUBACK") {
            break;
        }
    }
    let new_ca = |tool_args: &[&str]| mosquitto_with_ca(&next, addr, tool_args);
    assert!(
        !new_ca(&["-t", "x", "-m", "x"]).status.success(),
        "clients trusting only the next CA do not get in yet"
    );
    for file in ["server.pem", "server.key", "ca.pem"] {
        std::fs::copy(next.path(file), pki.path(file)).unwrap();
    }
    broker.signal("-HUP");
    logged(&broker, "reloaded the TLS certificates");
    let out = new_ca(&["-t", "hup/t", "-m", "after"]);
    assert!(out.status.success(), "the new certificate: {out:?}");
    // The subscriber connected with the old certificate got it.
    let got: Vec<String> = std::iter::from_fn(|| sub_lines.recv_timeout(WAIT).ok()).collect();
    assert!(got.iter().any(|l| l == "after"), "{got:?}");
    assert!(sub.wait().unwrap().success());
}

/// mosquitto_pub to `localhost` trusting `pki`'s CA.
fn mosquitto_with_ca(pki: &Pki, addr: SocketAddr, args: &[&str]) -> Output {
    std::process::Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &addr.port().to_string()])
        .arg("--cafile")
        .arg(pki.path("ca.pem"))
        .args(args)
        .output()
        .expect("mosquitto_pub runs (Debian's mosquitto-clients)")
}
