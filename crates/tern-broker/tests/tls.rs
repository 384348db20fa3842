//! The `tls` and `wss` listeners on a running server (in process,
//! 127.0.0.1 port 0): MQTT over TLS with and without a client certificate,
//! `require_certificate`, `use_identity_as_username` with the ACL file, and
//! certificates reloaded without dropping connections.

#[path = "../../tern-client/tests/support/pki.rs"]
mod pki;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use pki::Pki;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tern_broker::server::{self, BrokerSettings, Running};
use tern_codec::{Connect, MAX_PACKET_SIZE, MqttString, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    },
};

const WAIT: Duration = Duration::from_secs(5);

fn settings(pki: &Pki, require: bool) -> BrokerSettings {
    let mut s = BrokerSettings::default();
    s.listeners.tcp = Vec::new();
    s.listeners.ws = Vec::new();
    s.listeners.tls = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    s.listeners.wss = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    s.limits.sys_interval = Duration::ZERO;
    s.tls.cert = Some(pki.path("server.pem"));
    s.tls.key = Some(pki.path("server.key"));
    s.tls.cafile = Some(pki.path("ca.pem"));
    s.tls.require_certificate = require;
    s
}

/// A client configuration trusting `ca`'s CA, presenting `client`'s
/// certificate if given.
fn client_config(ca: &Pki, client: Option<&Pki>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca.path("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match client {
        Some(pki) => {
            let chain = CertificateDer::pem_file_iter(pki.path("client.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(pki.path("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

async fn tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

fn connect(id: &'static str) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: MqttString::from_static(id),
        ..Connect::default()
    }
}

/// MQTT over a TLS stream: sends `packet`, returns the next packet (`None`:
/// closed).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    packet: impl Into<Packet>,
) -> Option<Packet> {
    let mut out = BytesMut::new();
    packet.into().encode(ProtocolVersion::V5, &mut out).unwrap();
    stream.write_all(&out).await.ok()?;
    let mut buf = BytesMut::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(p) = Packet::decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE).unwrap()
            {
                return Some(p);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("an answer in time")
}

async fn connack<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    c: Connect,
) -> ReasonCode {
    match exchange(stream, c).await {
        Some(Packet::ConnAck(ack)) => ack.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn start(s: BrokerSettings) -> (Running, SocketAddr, SocketAddr) {
    let running = server::start(s).await.expect("broker starts");
    let (tls, wss) = (running.tls_addrs()[0], running.wss_addrs()[0]);
    (running, tls, wss)
}

#[tokio::test]
async fn mqtt_over_tls_with_a_required_client_certificate() {
    let pki = Pki::new("broker-tls-required");
    let (running, addr, _) = start(settings(&pki, true)).await;
    let mut stream = tls(addr, client_config(&pki, Some(&pki)))
        .await
        .expect("handshake");
    assert_eq!(
        connack(&mut stream, connect("with-cert")).await,
        ReasonCode::Success
    );
    assert_eq!(
        exchange(&mut stream, Packet::PingReq).await,
        Some(Packet::PingResp)
    );
    // Without a certificate the handshake (or the first read) fails: no CONNACK.
    let refused = match tls(addr, client_config(&pki, None)).await {
        Err(_) => true,
        Ok(mut s) => exchange(&mut s, connect("no-cert")).await.is_none(),
    };
    assert!(refused, "require_certificate refuses a client without one");
    running.shutdown().await;
}

#[tokio::test]
async fn a_certificate_is_optional_without_require_certificate_and_wss_works() {
    let pki = Pki::new("broker-tls-optional");
    let (running, addr, wss) = start(settings(&pki, false)).await;
    let mut stream = tls(addr, client_config(&pki, None))
        .await
        .expect("handshake");
    assert_eq!(
        connack(&mut stream, connect("no-cert")).await,
        ReasonCode::Success
    );
    // MQTT over WebSocket over TLS.
    let stream = tls(wss, client_config(&pki, None))
        .await
        .expect("handshake");
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "wss://localhost/mqtt",
    )
    .unwrap();
    let mut request = request;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("upgrade");
    let mut out = BytesMut::new();
    Packet::from(connect("wss"))
        .encode(ProtocolVersion::V5, &mut out)
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        out.freeze(),
    ))
    .await
    .unwrap();
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut buf = BytesMut::from(&frame.into_data()[..]);
    match Packet::decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE).unwrap() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    running.shutdown().await;
}

#[tokio::test]
async fn the_certificate_common_name_is_the_user_name_for_the_acl() {
    let pki = Pki::new("broker-tls-identity");
    let dir = pki.path("acl");
    std::fs::write(&dir, "user tern client\ntopic readwrite mine/#\n").unwrap();
    let mut s = settings(&pki, false);
    s.tls.use_identity_as_username = true;
    s.security.acl_file = Some(dir);
    // Clients must authenticate: the certificate is how.
    s.security.allow_anonymous = Some(false);
    let (running, addr, _) = start(s).await;
    let mut stream = tls(addr, client_config(&pki, Some(&pki)))
        .await
        .expect("handshake");
    // No password is asked for, and a user name sent is replaced.
    let mut c = connect("cn");
    c.username = Some(MqttString::from_static("someone else"));
    assert_eq!(connack(&mut stream, c).await, ReasonCode::Success);
    let publish = |topic: &'static str, id: u16| tern_codec::Publish {
        qos: tern_codec::QoS::AtLeastOnce,
        topic: MqttString::from_static(topic),
        packet_id: std::num::NonZeroU16::new(id),
        payload: bytes::Bytes::from_static(b"x"),
        ..tern_codec::Publish::default()
    };
    match exchange(&mut stream, publish("mine/a", 1)).await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::NoMatchingSubscribers),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    match exchange(&mut stream, publish("theirs/a", 2)).await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // Without a certificate there is no identity: the connection is closed.
    let refused = match tls(addr, client_config(&pki, None)).await {
        Err(_) => true,
        Ok(mut s) => exchange(&mut s, connect("anon")).await.is_none(),
    };
    assert!(refused);
    running.shutdown().await;
}

#[tokio::test]
async fn certificates_are_reloaded_without_dropping_connections() {
    let pki = Pki::new("broker-tls-reload");
    let next = Pki::new("broker-tls-reload-next");
    let (running, addr, _) = start(settings(&pki, false)).await;
    let mut old = tls(addr, client_config(&pki, None))
        .await
        .expect("handshake");
    assert_eq!(connack(&mut old, connect("old")).await, ReasonCode::Success);
    // Clients trusting only the next CA do not get in yet.
    assert!(tls(addr, client_config(&next, None)).await.is_err());
    // New files in place (another CA), then the reload.
    for file in ["server.pem", "server.key", "ca.pem"] {
        std::fs::copy(next.path(file), pki.path(file)).unwrap();
    }
    running.reload().expect("the new files are good");
    assert!(
        tls(addr, client_config(&next, None)).await.is_ok(),
        "the new certificate"
    );
    // The connection made before the reload is still served.
    assert_eq!(
        exchange(&mut old, Packet::PingReq).await,
        Some(Packet::PingResp)
    );
    // A broken file: the error names it, the certificates in force stay.
    std::fs::write(pki.path("server.key"), "not a key").unwrap();
    let e = running.reload().unwrap_err().to_string();
    assert!(
        e.contains(&pki.path("server.key").display().to_string()),
        "{e}"
    );
    assert!(tls(addr, client_config(&next, None)).await.is_ok());
    running.shutdown().await;
}

#[tokio::test]
async fn tls_listeners_without_files_are_refused_at_start() {
    let pki = Pki::new("broker-tls-missing");
    let mut s = settings(&pki, false);
    s.tls.cert = None;
    let e = server::start(s).await.unwrap_err().to_string();
    assert!(e.contains("[tls] cert and key"), "{e}");
    let mut s = settings(&pki, false);
    s.tls.cafile = None;
    s.tls.use_identity_as_username = true;
    let e = server::start(s).await.unwrap_err().to_string();
    assert!(e.contains("use_identity_as_username needs"), "{e}");
    let mut s = settings(&pki, false);
    s.tls.key = Some(pki.path("missing.key"));
    let e = server::start(s).await.unwrap_err().to_string();
    assert!(
        e.contains(&pki.path("missing.key").display().to_string()),
        "{e}"
    );
}
