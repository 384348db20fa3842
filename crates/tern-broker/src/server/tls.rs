//! TLS for the `tls` and `wss` listeners: the server's certificate and key,
//! optionally a CA to verify client certificates with, as mosquitto's
//! `certfile`, `keyfile`, `cafile`, `require_certificate` and
//! `use_identity_as_username` mean them. TLS 1.2 and 1.3 only, with rustls
//! and its ring provider.
//!
//! [`TlsFiles::load`] reads and checks everything at once, naming the file
//! and the problem (missing, unreadable, no certificate, no private key, a
//! key that does not match the certificate), so a broker never starts, or
//! reloads, with half a configuration.

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Where the TLS files are and how clients are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that sign client certificates; without it no
    /// client certificate is asked for.
    pub cafile: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `cafile` (mosquitto's
    /// `require_certificate`). Without it a certificate is optional, and
    /// verified when one is presented.
    pub require_certificate: bool,
}

/// A TLS file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault (or the certificate, for a key that does not match).
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for TlsError {}

fn error(path: &Path, why: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// rustls's ring provider (built in half the time of aws-lc-rs; rustls
/// deprecates it only for its lack of post-quantum key exchange).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Reads the files and builds the rustls configuration.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| error(&self.key, pem_why(&e, "private key")))?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| error(&self.cert, e.to_string()))?;
        let builder = match &self.cafile {
            None if self.require_certificate => {
                return Err(error(
                    &self.cert,
                    "require_certificate needs a cafile to verify client certificates with",
                ));
            }
            None => builder.with_no_client_auth(),
            Some(cafile) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(cafile)? {
                    roots.add(cert).map_err(|e| error(cafile, e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.require_certificate {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| error(cafile, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => {
                    format!(
                        "the key {} does not match this certificate",
                        self.key.display()
                    )
                }
                other => other.to_string(),
            };
            error(&self.cert, why)
        })?;
        Ok(Arc::new(config))
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(path, pem_why(&e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, pem_why(&e, "certificate")))?;
    if chain.is_empty() {
        return Err(error(path, "no PEM certificate in the file"));
    }
    Ok(chain)
}

fn pem_why(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => format!("no PEM {what} in the file"),
        other => format!("not a PEM {what}: {other:?}"),
    }
}

/// The Common Name of a client certificate's subject: the user name under
/// mosquitto's `use_identity_as_username`.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_string)
}
