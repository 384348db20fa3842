//! Accept loops, and the plain TCP transport.
//!
//! A semaphore with `max_connections` permits caps the connections. When it
//! is exhausted the listener still accepts, and closes the new socket at
//! once (logging it), rather than leaving clients to wait in the kernel's
//! listen backlog until their own timeout: an immediate close is an answer
//! a client can act on, and accepting keeps the backlog from filling with
//! connections nobody will serve.

use super::connection::{Accepted, ConnReader, ConnWriter, Guards};
use super::{tls::Socket, websocket};
use bytes::{Bytes, BytesMut};
use std::{io, io::IoSlice, sync::Arc, time::Duration};
use tokio::{
    io::AsyncWriteExt,
    net::{
        TcpListener,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Semaphore, broadcast, mpsc, watch},
};

/// What the listeners share.
pub(crate) struct Shared {
    /// New connections go to the core task. Bounded: when the core falls
    /// behind, the accept loops wait, and new clients wait in the backlog.
    pub(crate) accepted: mpsc::Sender<Accepted>,
    /// One permit per open connection.
    pub(crate) limit: Arc<Semaphore>,
    /// The cap, for the log (a reload may change it).
    pub(crate) max_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Cloned into each writer task (see [`Guards`]).
    pub(crate) shutdown_complete: mpsc::Sender<()>,
    /// How long a WebSocket upgrade may take (the connect timeout: the MQTT
    /// clock only starts once the upgrade is done).
    pub(crate) handshake_timeout: Duration,
    pub(crate) websocket: websocket::Config,
    /// The TLS configuration of the `tls` and `wss` listeners, if any.
    pub(crate) tls: Option<super::tls::Acceptor>,
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Tcp,
    WebSocket,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Kind {
    /// The name in logs and in `listening` lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::WebSocket => "ws",
            Kind::Tls => "tls",
            Kind::Wss => "wss",
        }
    }
}

/// Accepts connections until shutdown, once `opened` says so (until then
/// they wait in the kernel's backlog).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    kind: Kind,
    shared: Arc<Shared>,
    mut opened: watch::Receiver<bool>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let local = listener.local_addr().ok();
    tokio::select! {
        open = opened.wait_for(|open| *open) => if open.is_err() { return },
        _ = shutdown.recv() => return,
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => return,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors, typically: back off a little
                // rather than spin, as mini-redis does.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.limit.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                client_id = "-",
                limit = shared.max_connections.load(std::sync::atomic::Ordering::Relaxed),
                "refused: connection limit reached, socket closed before CONNECT"
            );
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let guards = Guards {
            _permit: Some(permit),
            _shutdown_complete: shared.shutdown_complete.clone(),
        };
        match kind {
            Kind::Tcp => {
                let (read, write) = socket.into_split();
                let accepted = Accepted {
                    reader: ConnReader::Tcp(TcpReader::new(read)),
                    writer: ConnWriter::Tcp(TcpWriter(write)),
                    peer,
                    listener: local,
                    transport: "tcp",
                    identity: None,
                    bridge: false,
                    guards,
                };
                if shared.accepted.send(accepted).await.is_err() {
                    return; // the core has stopped
                }
            }
            kind => {
                // TLS and the WebSocket upgrade take round trips: they run
                // in a task of their own so that one slow client does not
                // hold up the others.
                let shared = shared.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        shared.handshake_timeout,
                        handshake(kind, socket, &shared),
                    );
                    match handshake.await {
                        Ok(Ok((reader, writer, identity))) => {
                            let accepted = Accepted {
                                reader,
                                writer,
                                peer,
                                listener: local,
                                transport: kind.name(),
                                identity,
                                bridge: false,
                                guards,
                            };
                            let _ = shared.accepted.send(accepted).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "{} handshake failed: {e}", kind.name())
                        }
                        Err(_) => tracing::debug!(%peer, "{} handshake timed out", kind.name()),
                    }
                });
            }
        }
    }
}

/// The TLS handshake and the WebSocket upgrade, as `kind` needs; the
/// connection's halves and, with `use_identity_as_username`, the client
/// certificate's name.
async fn handshake(
    kind: Kind,
    socket: tokio::net::TcpStream,
    shared: &Shared,
) -> io::Result<(ConnReader, ConnWriter, Option<String>)> {
    let tls = || {
        shared
            .tls
            .as_ref()
            .ok_or_else(|| io::Error::other("a TLS listener without a TLS configuration"))
    };
    let (socket, identity) = match kind {
        Kind::Tls | Kind::Wss => {
            let (stream, identity) = tls()?.accept(socket).await?;
            (Socket::Tls(Box::new(stream)), identity)
        }
        Kind::Tcp | Kind::WebSocket => (Socket::Plain(socket), None),
    };
    match (kind, socket) {
        (Kind::Tls, Socket::Tls(stream)) => {
            let (reader, writer) = super::tls::split(*stream);
            Ok((ConnReader::Tls(reader), ConnWriter::Tls(writer), identity))
        }
        (_, socket) => {
            if let Socket::Plain(tcp) = &socket {
                request_head_arrived(tcp).await?;
            }
            // Boxed: its state (tungstenite's buffers) is allocated only
            // once the request is there, not for every waiting socket.
            let (reader, writer) = Box::pin(websocket::accept(socket, &shared.websocket))
                .await
                .map_err(io::Error::other)?;
            Ok((ConnReader::Ws(reader), ConnWriter::Ws(writer), identity))
        }
    }
}

/// The most of a WebSocket upgrade request looked at while waiting for it.
const HEAD_PEEK: usize = 4096;

/// Waits until `socket` holds a whole HTTP request head (up to its blank
/// line, or [`HEAD_PEEK`] bytes of it), or is closed, without reading
/// it: until then a half-sent upgrade request waits in the kernel's socket
/// buffer, not in buffers of ours (tungstenite allocates 8 KiB per
/// handshake; issue 13, ws-half-open). The peek buffer lives on the stack
/// only while the socket is looked at, and each look scans only the bytes
/// that are new since the last one.
///
/// A client that closes before its head ends is an `UnexpectedEof` error:
/// its bytes stay in the socket and a closed socket stays readable, so
/// waiting for more would look at the same bytes again and again, at once,
/// until the handshake timeout (ws-half-open: 300 attackers closing at the
/// same moment kept both cores busy and stalled every client for seconds).
async fn request_head_arrived(socket: &tokio::net::TcpStream) -> io::Result<()> {
    use futures_util::FutureExt;
    use tokio::io::Interest;
    // Bytes already scanned for the blank line (less its last 3, which may
    // start it).
    let mut scanned = 0;
    loop {
        let ready = socket.ready(Interest::READABLE).await?;
        let arrived = socket.try_io(Interest::READABLE, || {
            let mut buf = [0u8; HEAD_PEEK];
            let n = socket
                .peek(&mut buf)
                .now_or_never()
                .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))?;
            let from = scanned.min(n).saturating_sub(3);
            if n == 0 || n == HEAD_PEEK || buf[from..n].windows(4).any(|w| w == b"\r\n\r\n") {
                Ok(())
            } else {
                scanned = n;
                // Not all there: wait for more bytes (this clears the
                // readiness the bytes already seen set).
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        match arrived {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && ready.is_read_closed() => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before its upgrade request head ended",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The smallest and largest read sizes: reads start small, so an idle
/// connection costs little, and grow while the socket fills them.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// Reads a TCP socket, allocating only once it is readable.
pub(crate) struct TcpReader {
    half: OwnedReadHalf,
    size: usize,
}

impl TcpReader {
    fn new(half: OwnedReadHalf) -> Self {
        Self {
            half,
            size: READ_MIN,
        }
    }
}

impl TcpReader {
    /// The next bytes, or `None` at end of stream; registers `cx` for the
    /// socket's readiness when there are none yet. Waiting holds nothing
    /// but the socket's own waker slot: no buffer (it is allocated once
    /// there are bytes) and no future state, so a pending read of an idle
    /// connection costs a few words (see `driver.rs`).
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Option<BytesMut>>> {
        loop {
            std::task::ready!(self.half.as_ref().poll_read_ready(cx))?;
            let mut buf = BytesMut::with_capacity(self.size);
            match self.half.try_read_buf(&mut buf) {
                Ok(0) => return std::task::Poll::Ready(Ok(None)),
                Ok(n) => {
                    if n == self.size {
                        self.size = (self.size * 2).min(READ_MAX);
                    } else if n < self.size / 4 {
                        self.size = (self.size / 2).max(READ_MIN);
                    }
                    return std::task::Poll::Ready(Ok(Some(fitted(buf))));
                }
                // Readiness was stale: cleared, so the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }

    /// The next bytes, or `None` at end of stream.
    pub(crate) async fn read(&mut self) -> io::Result<Option<BytesMut>> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }
}

/// A read that filled less than half its buffer, copied into a buffer of
/// its own size. Decoded packets are slices of the read buffer, and a
/// queued message's payload keeps the whole buffer alive: fitted, a
/// message pins only bytes its client sent with it (at most twice what was
/// read), not the unused rest of a 4 to 64 KiB buffer (issue 13: a client
/// sending one small QoS 1 message per read otherwise made each of its
/// queued messages hold 4 KiB while the memory budget counted its payload).
pub(crate) fn fitted(buf: BytesMut) -> BytesMut {
    if buf.len() * 2 >= buf.capacity() {
        buf
    } else {
        BytesMut::from(&buf[..])
    }
}

/// Buffers handed to one vectored write at most.
const MAX_SLICES: usize = 256;

/// Writes a TCP socket with vectored writes: shared payload chunks go out
/// without being copied.
pub(crate) struct TcpWriter(OwnedWriteHalf);

impl TcpWriter {
    pub(crate) async fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        write_chunks(&mut self.0, chunks).await
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// Writes every chunk, in order, with vectored writes of at most
/// [`MAX_SLICES`] buffers: no copy for TCP, and for TLS as few records and
/// system calls as rustls can make of them.
pub(crate) async fn write_chunks<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    chunks: &[Bytes],
) -> io::Result<()> {
    let (mut index, mut offset) = (0, 0);
    let mut slices = Vec::with_capacity(chunks.len());
    while index < chunks.len() {
        slices.clear();
        slices.push(IoSlice::new(&chunks[index][offset..]));
        // At most `MAX_SLICES` per call (writev's limit is 1024).
        slices.extend(
            chunks[index + 1..]
                .iter()
                .take(MAX_SLICES - 1)
                .map(|c| IoSlice::new(c)),
        );
        let mut n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // Advance past what was written.
        while index < chunks.len() && n >= chunks[index].len() - offset {
            n -= chunks[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_read_is_fitted_and_a_full_one_kept() {
        let mut small = BytesMut::with_capacity(READ_MIN);
        small.extend_from_slice(b"0123456789");
        let small = fitted(small);
        assert_eq!(&small[..], b"0123456789");
        assert!(small.capacity() < 20, "{}", small.capacity());

        let mut full = BytesMut::with_capacity(READ_MIN);
        full.extend_from_slice(&[7; READ_MIN]);
        let ptr = full.as_ptr();
        let full = fitted(full);
        assert_eq!(full.as_ptr(), ptr, "a full read is not copied");
    }

    /// Through a real socket: a client's 10-byte write comes back in a
    /// buffer of about its size, not the 4 KiB read size.
    #[tokio::test]
    async fn a_tcp_read_holds_what_was_read_not_the_read_size() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, _write) = server.into_split();
        let mut reader = TcpReader::new(read);
        client.write_all(b"0123456789").await.unwrap();
        let got = reader.read().await.unwrap().unwrap();
        assert_eq!(&got[..], b"0123456789");
        assert!(
            got.capacity() < 2 * 10 + 16,
            "{} bytes held",
            got.capacity()
        );
    }

    /// A half-sent upgrade request is waited for without being read: not
    /// there until its blank line arrives, and then still all in the socket.
    #[tokio::test]
    async fn an_upgrade_request_is_waited_for_in_the_socket_until_its_head_ends() {
        use futures_util::FutureExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let head = b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n";
        client.write_all(head).await.unwrap();
        // The bytes are there, the head is not complete.
        server.readable().await.unwrap();
        assert!(request_head_arrived(&server).now_or_never().is_none());
        client.write_all(b"\r\n").await.unwrap();
        request_head_arrived(&server).await.unwrap();
        let mut all = [0u8; 128];
        let n = server.peek(&mut all).await.unwrap();
        assert_eq!(n, head.len() + 2, "nothing was read");
    }

    /// A client that closes before its request head ends ends the wait with
    /// an error. Its bytes stay in the socket, and a closed socket stays
    /// readable: before, each peek found the same unfinished head and
    /// looked again at once, never yielding (ws-half-open: 300 attackers
    /// closing together took every worker thread, and the broker served
    /// nobody). The wait runs on a thread of its own so that the old
    /// behaviour fails here rather than hangs.
    #[test]
    fn a_request_head_closed_before_it_ends_is_not_waited_for() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let waited = rt.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let (server, _) = listener.accept().await.unwrap();
                client
                    .write_all(b"GET /mqtt HTTP/1.1\r\nHost: h\r\nX-Pad: a\r\n")
                    .await
                    .unwrap();
                drop(client);
                request_head_arrived(&server).await
            });
            let _ = tx.send(waited);
        });
        let waited = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the wait ends once the client has closed");
        let e = waited.expect_err("an unfinished head is an error");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
}
