//! The broker's TLS files, as `server::tls::TlsFiles` loads them: errors
//! that name the file and the problem, client certificates required or
//! optional, and the Common Name that `use_identity_as_username` reads.
//! Certificates are made for each run (rcgen).

#[path = "../../tern-client/tests/support/pki.rs"]
mod pki;

use pki::Pki;
use std::sync::Arc;
use tern_broker::server::tls::{TlsFiles, common_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector, rustls};

fn files(pki: &Pki, cafile: bool, require: bool) -> TlsFiles {
    TlsFiles {
        cert: pki.path("server.pem"),
        key: pki.path("server.key"),
        cafile: cafile.then(|| pki.path("ca.pem")),
        require_certificate: require,
    }
}

#[test]
fn every_problem_names_its_file() {
    let pki = Pki::new("tls-files");
    let other = Pki::new("tls-files-other");
    assert!(files(&pki, true, true).load().is_ok());

    let mut missing = files(&pki, false, false);
    missing.cert = pki.path("nope.pem");
    let e = missing.load().unwrap_err();
    assert_eq!(e.path, pki.path("nope.pem"));
    assert!(e.why.contains("No such file"), "{e}");

    let mut no_key = files(&pki, false, false);
    no_key.key = pki.path("server.pem");
    let e = no_key.load().unwrap_err();
    assert_eq!(e.path, pki.path("server.pem"));
    assert!(e.why.contains("no PEM private key"), "{e}");

    let mut wrong_key = files(&pki, false, false);
    wrong_key.key = other.path("server.key");
    let e = wrong_key.load().unwrap_err();
    assert!(e.why.contains("does not match"), "{e}");

    let mut empty_ca = files(&pki, true, true);
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, "").unwrap();
    empty_ca.cafile = Some(empty.clone());
    let e = empty_ca.load().unwrap_err();
    assert_eq!(e.path, empty);

    let e = files(&pki, false, true).load().unwrap_err();
    assert!(e.why.contains("needs a cafile"), "{e}");
}

#[test]
fn the_common_name_of_a_client_certificate() {
    let pki = Pki::new("tls-cn");
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_file(pki.path("client.pem")).unwrap();
    assert_eq!(common_name(&der).as_deref(), Some("tern client"));
}

/// Runs one handshake between the server configuration and a client that
/// trusts the test CA, with or without the client certificate; returns the
/// client certificate's Common Name the server saw, or the error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    pki: &Pki,
    with_cert: bool,
) -> Result<Option<String>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let client = if with_cert {
        let chain = CertificateDer::pem_file_iter(pki.path("client.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("client.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let cn = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(common_name);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(&byte).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(cn)
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let client = async {
        let mut tls = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(())
    };
    let client = client.await;
    let served = serving.await.unwrap();
    match (client, served) {
        (Ok(()), Ok(cn)) => Ok(cn),
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e),
    }
}

#[tokio::test]
async fn client_certificates_are_required_or_optional() {
    let pki = Pki::new("tls-handshake");
    let required = files(&pki, true, true).load().unwrap();
    assert_eq!(
        handshake(required.clone(), &pki, true).await,
        Ok(Some("tern client".into()))
    );
    assert!(handshake(required, &pki, false).await.is_err());
    let optional = files(&pki, true, false).load().unwrap();
    assert_eq!(handshake(optional.clone(), &pki, false).await, Ok(None));
    assert_eq!(
        handshake(optional, &pki, true).await,
        Ok(Some("tern client".into()))
    );
    // Without a cafile no certificate is asked for.
    let plain = files(&pki, false, false).load().unwrap();
    assert_eq!(handshake(plain, &pki, true).await, Ok(None));
}
