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

/// The TLS side of the `tls` and `wss` listeners: the configuration in
/// force (replaced by a reload; handshakes already done keep theirs) and
/// whether a client certificate's Common Name is its user name.
#[derive(Clone)]
pub(crate) struct Acceptor {
    config: Arc<std::sync::RwLock<Arc<ServerConfig>>>,
    use_identity_as_username: bool,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("use_identity_as_username", &self.use_identity_as_username)
            .finish_non_exhaustive()
    }
}

/// A TLS connection over TCP.
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl Acceptor {
    pub(crate) fn new(config: Arc<ServerConfig>, use_identity_as_username: bool) -> Self {
        Self {
            config: Arc::new(std::sync::RwLock::new(config)),
            use_identity_as_username,
        }
    }

    /// Puts a reloaded configuration in force for the next handshakes.
    pub(crate) fn replace(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Runs the handshake; with `use_identity_as_username`, also returns the
    /// client certificate's Common Name, and refuses a client without one
    /// (mosquitto refuses it too).
    pub(crate) async fn accept(
        &self,
        socket: tokio::net::TcpStream,
    ) -> std::io::Result<(TlsStream, Option<String>)> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stream = tokio_rustls::TlsAcceptor::from(config)
            .accept(socket)
            .await?;
        if !self.use_identity_as_username {
            return Ok((stream, None));
        }
        let name = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(common_name);
        match name {
            Some(name) => Ok((stream, Some(name))),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "use_identity_as_username: no client certificate with a Common Name",
            )),
        }
    }
}

/// A socket the WebSocket upgrade runs on: plain TCP (`ws`) or TLS (`wss`).
pub(crate) enum Socket {
    Plain(tokio::net::TcpStream),
    Tls(Box<TlsStream>),
}

impl tokio::io::AsyncRead for Socket {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Socket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The smallest and largest read sizes of a TLS connection. A read's
/// buffer is held while it waits, so reads start small (an idle connection
/// holds 1 KiB, not a whole record's 16 KiB) and grow while rustls fills
/// them (rustls keeps what does not fit, decrypted, for the next read).
const TLS_READ_MIN: usize = 1024;
const TLS_READ_MAX: usize = 16 * 1024;

/// Reads MQTT bytes from a TLS connection.
pub(crate) struct TlsReader {
    half: tokio::io::ReadHalf<TlsStream>,
    /// The next read's size, between the bounds above.
    size: usize,
}

/// Writes MQTT bytes to a TLS connection.
pub(crate) struct TlsWriter(tokio::io::WriteHalf<TlsStream>);

/// Splits a TLS connection for the core (reads) and the writer task.
pub(crate) fn split(stream: TlsStream) -> (TlsReader, TlsWriter) {
    let (read, write) = tokio::io::split(stream);
    let reader = TlsReader {
        half: read,
        size: TLS_READ_MIN,
    };
    (reader, TlsWriter(write))
}

impl TlsReader {
    /// Cancel-safe, as `read_buf` is: the core drops a pending read to
    /// stop reading, and rustls keeps what it decrypted.
    pub(crate) async fn read(&mut self) -> std::io::Result<Option<bytes::BytesMut>> {
        use tokio::io::AsyncReadExt;
        let mut buf = bytes::BytesMut::with_capacity(self.size);
        let n = self.half.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if n == self.size {
            self.size = (self.size * 2).min(TLS_READ_MAX);
        } else if n < self.size / 4 {
            self.size = (self.size / 2).max(TLS_READ_MIN);
        }
        Ok(Some(super::listener::fitted(buf)))
    }
}

impl TlsWriter {
    pub(crate) async fn write(&mut self, chunks: &[bytes::Bytes]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        // Vectored: rustls seals many small packets into one record (one
        // write per chunk would cost a record and a system call each).
        super::listener::write_chunks(&mut self.0, chunks).await?;
        self.0.flush().await
    }

    /// Sends close_notify and ends our direction.
    pub(crate) async fn close(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.0.shutdown().await;
    }
}
