//! TLS for `mqtts://` and `wss://`, with rustls (ring provider).
//!
//! [`TlsOptions`] says whom to trust and who we are; it becomes a
//! `rustls::ClientConfig` once, when [`Client::connect`](crate::Client::connect)
//! starts, so a missing or unreadable file is reported before anything is
//! sent. The handshake itself happens in the transport, on every connection.

use crate::Error;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Whom a TLS connection trusts and how it identifies itself.
///
/// The default trusts the platform's root certificates (read with
/// rustls-native-certs) and checks that the broker's certificate names the
/// host in the URL, as a browser does.
///
/// ```
/// use tern_client::{Options, TlsOptions};
///
/// let options = Options::from_url("mqtts://broker.example:8883")?
///     .tls(TlsOptions::new().ca_file("ca.crt").client_auth("me.crt", "me.key"));
/// # Ok::<(), tern_client::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct TlsOptions {
    ca_file: Option<PathBuf>,
    client_auth: Option<(PathBuf, PathBuf)>,
    skip_hostname_check: bool,
    config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_file", &self.ca_file)
            .field("client_auth", &self.client_auth)
            .field("skip_hostname_check", &self.skip_hostname_check)
            .field("custom_config", &self.config.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// The platform's root certificates, no client certificate, host names
    /// checked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the certificates in this PEM file instead of the platform's
    /// roots (mosquitto's `--cafile`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate chain and private key, both PEM
    /// (mosquitto's `--cert` and `--key`).
    pub fn client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_auth = Some((cert.into(), key.into()));
        self
    }

    /// Accepts a certificate that does not name the host, while still
    /// checking that a trusted authority signed it and that it is in date
    /// (mosquitto's `--insecure`). For tests and hosts reached by an address
    /// their certificate does not list; it lets anyone holding a certificate
    /// from the same authority pose as the broker.
    pub fn skip_hostname_check(mut self, skip: bool) -> Self {
        self.skip_hostname_check = skip;
        self
    }

    /// Uses this rustls configuration as it is (its own roots, verifier,
    /// client certificate, ALPN, ...); the other settings are then ignored.
    pub fn config(config: Arc<ClientConfig>) -> Self {
        Self {
            config: Some(config),
            ..Self::default()
        }
    }

    /// Reads the files and builds the rustls configuration.
    pub(crate) fn build(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let roots = Arc::new(match &self.ca_file {
            Some(path) => roots_from_file(path)?,
            None => platform_roots()?,
        });
        let provider = Arc::new(ring_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls(format!("TLS versions: {e}")))?;
        let builder = if self.skip_hostname_check {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| Error::Tls(format!("certificate verifier: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostName(webpki)))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    Error::Tls(format!("private key {}: {}", key.display(), pem_error(&e)))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::Tls(format!("client certificate {}: {e}", cert.display()))
                })?
            }
        };
        Ok(Arc::new(config))
    }
}

/// rustls's ring provider: chosen over aws-lc-rs because it builds in half
/// the time and needs no C toolchain beyond a compiler. rustls deprecates it
/// only because ring offers no post-quantum key exchange.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificates in a PEM file; an error if there are none.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let read = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {}", path.display(), pem_error(&e))))?;
    let chain = read
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {}", path.display(), pem_error(&e))))?;
    if chain.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(chain)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn platform_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none installed".to_string(), |e| e.to_string());
        return Err(Error::Tls(format!(
            "no root certificates found on this system ({why}); give a CA file"
        )));
    }
    Ok(roots)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM item of that kind in the file".into()
        }
        other => format!("{other:?}"),
    }
}

/// The server name rustls checks the certificate against: the host in the
/// URL, a DNS name or an IP address.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_string())
        .map_err(|e| Error::Tls(format!("{host:?} is not a valid TLS server name: {e}")))
}

/// Full WebPKI verification except the host name (mosquitto's `--insecure`).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
