//! TLS end to end against Debian's mosquitto with a certificate authority,
//! a server certificate and client certificates made for each run (rcgen):
//! `mqtts://` and `wss://`, client certificates, untrusted and misnamed
//! servers, files that do not exist, and a connector of the application's.

mod support;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
use support::{mosquitto::Mosquitto, pki::Pki, within};
use tern_client::{Address, BoxStream, Client, Error, Options, TlsOptions};
use tern_codec::{ProtocolVersion, QoS};

/// Trusts the test CA and presents the client certificate.
fn client_tls(pki: &Pki) -> TlsOptions {
    TlsOptions::new()
        .ca_file(pki.path("ca.pem"))
        .client_auth(pki.path("client.pem"), pki.path("client.key"))
}

fn options(url: &str, id: &str, tls: TlsOptions) -> Options {
    Options::from_url(url)
        .unwrap()
        .client_id(id)
        .unwrap()
        .version(ProtocolVersion::V5)
        .reconnect(None)
        .tls(tls)
}

/// Subscribes, publishes a QoS 1 message to itself and receives it.
async fn round_trip(options: Options) {
    let (client, mut messages) = within("connect", Client::connect(options))
        .await
        .expect("connected over TLS");
    client
        .subscribe([("tls/t", QoS::AtLeastOnce)])
        .await
        .unwrap();
    client
        .publish("tls/t", "over tls", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let message = within("the message", messages.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"over tls");
    client.disconnect().await.unwrap();
}

async fn refused(options: Options) -> Error {
    match within("the refusal", Client::connect(options)).await {
        Ok(_) => panic!("connected, but should have been refused"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn mqtts_and_wss_with_a_client_certificate() {
    let pki = Pki::new("both");
    let broker = Mosquitto::start_with_listener_settings(&pki.listener_settings(true));
    let mqtts = format!("mqtts://localhost:{}", broker.port);
    round_trip(options(&mqtts, "tls-tcp", client_tls(&pki))).await;
    let wss = format!("wss://localhost:{}/mqtt", broker.ws_port.unwrap());
    round_trip(options(&wss, "tls-ws", client_tls(&pki))).await;
}

#[tokio::test]
async fn a_broker_that_wants_a_client_certificate_refuses_a_client_without_one() {
    let pki = Pki::new("nocert");
    let broker = Mosquitto::start_with_listener_settings(&pki.listener_settings(true));
    let url = format!("mqtts://localhost:{}", broker.port);
    // With TLS 1.3 the client learns of the refusal after its handshake
    // ends, when the server's alert arrives: an error, whichever kind.
    let tls = TlsOptions::new().ca_file(pki.path("ca.pem"));
    refused(options(&url, "no-cert", tls)).await;
    // Without the requirement the same client is welcome.
    let open = Mosquitto::start_with_listener_settings(&pki.listener_settings(false));
    let url = format!("mqtts://localhost:{}", open.port);
    round_trip(options(
        &url,
        "no-cert",
        TlsOptions::new().ca_file(pki.path("ca.pem")),
    ))
    .await;
}

#[tokio::test]
async fn an_untrusted_or_misnamed_server_is_refused_with_a_tls_error() {
    let pki = Pki::new("trust");
    let broker = Mosquitto::start_with_listener_settings(&pki.listener_settings(false));
    // A CA that did not sign the server's certificate.
    let other = Pki::new("trust-other");
    let url = format!("mqtts://localhost:{}", broker.port);
    let e = refused(options(
        &url,
        "c",
        TlsOptions::new().ca_file(other.path("ca.pem")),
    ))
    .await;
    assert!(
        matches!(&e, Error::Tls(why) if why.contains("certificate")),
        "{e}"
    );

    // The right CA, but the certificate names localhost, not 127.0.0.1.
    let by_ip = format!("mqtts://127.0.0.1:{}", broker.port);
    let trusted = || TlsOptions::new().ca_file(pki.path("ca.pem"));
    let e = refused(options(&by_ip, "c", trusted())).await;
    assert!(
        matches!(&e, Error::Tls(why) if why.contains("certificate")),
        "{e}"
    );
    // mosquitto's --insecure: the name is not checked, the signature is.
    round_trip(options(&by_ip, "c", trusted().skip_hostname_check(true))).await;
    let e = refused(options(
        &by_ip,
        "c",
        TlsOptions::new()
            .ca_file(other.path("ca.pem"))
            .skip_hostname_check(true),
    ))
    .await;
    assert!(matches!(e, Error::Tls(_)), "{e}");
}

#[tokio::test]
async fn missing_or_empty_files_are_named_before_anything_is_sent() {
    let pki = Pki::new("files");
    // Nothing listens at this address: an error that names a file can only
    // come from reading the files, before connecting.
    let url = "mqtts://localhost:1";
    let missing = pki.path("nope.pem");
    let e = refused(options(url, "c", TlsOptions::new().ca_file(&missing))).await;
    assert!(
        matches!(&e, Error::Tls(why) if why.contains(&missing.display().to_string())),
        "{e}"
    );
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = refused(options(url, "c", TlsOptions::new().ca_file(&empty))).await;
    assert!(
        matches!(&e, Error::Tls(why) if why.contains("no PEM certificate")),
        "{e}"
    );
    // A certificate file given as the key.
    let tls = TlsOptions::new()
        .ca_file(pki.path("ca.pem"))
        .client_auth(pki.path("client.pem"), pki.path("client.pem"));
    let e = refused(options(url, "c", tls)).await;
    assert!(
        matches!(&e, Error::Tls(why) if why.contains("private key")),
        "{e}"
    );
}

#[tokio::test]
async fn a_connector_of_the_applications_opens_every_connection() {
    let pki = Pki::new("connector");
    let broker = Mosquitto::start_with_listener_settings(&pki.listener_settings(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let port = broker.port;
    let counter = opened.clone();
    // The address names a host that does not resolve: only the connector
    // knows where the broker is. TLS is still layered on top.
    let options = Options::new(Address::tcp("localhost", 1).with_tls())
        .client_id("via-connector")
        .unwrap()
        .reconnect(None)
        .tls(TlsOptions::new().ca_file(pki.path("ca.pem")))
        .connector(move |address| {
            assert_eq!(address.port, 1);
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                Ok(Box::new(tcp) as BoxStream)
            }
        });
    round_trip(options).await;
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

/// The files this test writes are readable PEM (a check of the test itself).
#[test]
fn the_test_pki_is_pem() {
    let pki = Pki::new("pem");
    for file in ["ca.pem", "server.pem", "client.pem"] {
        let text = std::fs::read_to_string(pki.path(file)).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{file}");
    }
    assert!(Path::new(&pki.path("client.key")).is_file());
}

#[tokio::test]
async fn mqtts_and_wss_against_terns_own_tls_listeners() {
    let pki = Pki::new("tern");
    let mut settings = tern_broker::server::BrokerSettings::default();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.listeners.tcp = Vec::new();
    settings.listeners.ws = Vec::new();
    settings.listeners.tls = vec![any];
    settings.listeners.wss = vec![any];
    settings.tls.cert = Some(pki.path("server.pem"));
    settings.tls.key = Some(pki.path("server.key"));
    settings.tls.cafile = Some(pki.path("ca.pem"));
    settings.tls.require_certificate = true;
    let running = tern_broker::server::start(settings)
        .await
        .expect("tern broker starts");
    let tls = running.tls_addrs()[0];
    let wss = running.wss_addrs()[0];
    let mqtts = format!("mqtts://localhost:{}", tls.port());
    round_trip(options(&mqtts, "tern-tls-tcp", client_tls(&pki))).await;
    let wss = format!("wss://localhost:{}/mqtt", wss.port());
    round_trip(options(&wss, "tern-tls-ws", client_tls(&pki))).await;
    // Without a client certificate, Tern refuses as mosquitto does (an
    // error of whichever kind: see the mosquitto test above).
    let no_cert = TlsOptions::new().ca_file(pki.path("ca.pem"));
    refused(options(&mqtts, "tern-tls-nocert", no_cert)).await;
    drop(running);
}
