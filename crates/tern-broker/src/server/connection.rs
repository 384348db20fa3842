//! A connection's two halves, and the small task that writes to it.
//!
//! A socket is split when it is accepted. The **read half** goes to the core
//! task, which reads it itself (see `driver.rs`): that is how input ready on
//! several connections is handled in the order it arrived, and how a
//! connection is paused: the core simply does not read it. The **write half**
//! goes to one task per connection, [`run`], which writes what the core
//! hands it and, at the end, closes the socket gracefully.
//!
//! The core never waits on this task. Output reaches it through an
//! [`OutputQueue`] (unbounded; the core bounds it by credit, from the
//! [`Report`]s of bytes written this task sends back).

use super::websocket::{WsReader, WsWriter};
use super::{FLUSH_TIMEOUT, LINGER_BYTES, LINGER_TIMEOUT};
use crate::ConnId;
use bytes::{Bytes, BytesMut};
use std::{io, net::SocketAddr};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// A new connection, from a listener to the core task.
pub(crate) struct Accepted {
    pub(crate) reader: ConnReader,
    pub(crate) writer: ConnWriter,
    pub(crate) peer: SocketAddr,
    pub(crate) transport: &'static str,
    /// Its verified TLS client certificate's name, when that is its user
    /// name (`use_identity_as_username`).
    pub(crate) identity: Option<String>,
    pub(crate) guards: Guards,
}

/// What a connection's writer tells the core task.
#[derive(Debug)]
pub(crate) enum Report {
    /// This many bytes of [`Output::Data`] are written to the socket.
    Written(ConnId, usize),
    /// A write failed: the socket is broken.
    Failed(ConnId),
}

/// What the core task tells a connection's writer.
#[derive(Debug)]
pub(crate) enum Output {
    /// Bytes to write, in order. Large payloads arrive as chunks of their
    /// own, shared with every other subscriber's connection.
    Data(Vec<Bytes>),
    /// Write what came before, then close the socket.
    Close,
}

/// A connection's output, filled by the core task and emptied by the
/// connection's writer: an unbounded queue (bounded by the core's credit)
/// that costs an idle connection a few words, where a channel would
/// allocate a block of slots up front.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    pending: std::sync::Mutex<Pending>,
    /// Wakes the writer (a permit is kept if it is not waiting yet).
    ready: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    chunks: Vec<Bytes>,
    close: bool,
    /// The core dropped its [`OutputSender`].
    gone: bool,
}

/// What the writer is to do next.
enum Next {
    /// Write these chunks (then ask again).
    Write(Vec<Bytes>),
    /// Close the socket gracefully: everything before was written.
    Close,
    /// The core forgot the connection: stop.
    Gone,
}

impl OutputQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding it leaves plain data behind: carry on.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for something to do.
    async fn next(&self) -> Next {
        loop {
            {
                let mut p = self.lock();
                if !p.chunks.is_empty() {
                    return Next::Write(std::mem::take(&mut p.chunks));
                }
                if p.close {
                    return Next::Close;
                }
                if p.gone {
                    return Next::Gone;
                }
            }
            self.ready.notified().await;
        }
    }

    /// What is pending, without waiting (for tests).
    #[cfg(test)]
    pub(crate) fn try_take(&self) -> Option<Output> {
        let mut p = self.lock();
        if !p.chunks.is_empty() {
            Some(Output::Data(std::mem::take(&mut p.chunks)))
        } else if p.close {
            Some(Output::Close)
        } else {
            None
        }
    }
}

/// The core's end of an [`OutputQueue`]; dropping it tells the writer to
/// write what it has and stop.
#[derive(Debug)]
pub(crate) struct OutputSender(pub(crate) std::sync::Arc<OutputQueue>);

impl OutputSender {
    /// Queues output for the writer; never waits.
    pub(crate) fn send(&self, output: Output) {
        {
            let mut p = self.0.lock();
            match output {
                Output::Data(batch) if p.chunks.is_empty() => p.chunks = batch,
                Output::Data(batch) => p.chunks.extend(batch),
                Output::Close => p.close = true,
            }
        }
        self.0.ready.notify_one();
    }
}

impl Drop for OutputSender {
    fn drop(&mut self) {
        self.0.lock().gone = true;
        self.0.ready.notify_one();
    }
}

/// A socket's read half: TCP, or MQTT bytes out of WebSocket frames.
pub(crate) enum ConnReader {
    Tcp(super::listener::TcpReader),
    Tls(super::tls::TlsReader),
    Ws(WsReader),
    /// An in-process connection (a bridge's local client).
    Local(super::local::LocalReader),
}

impl ConnReader {
    /// The next bytes, or `None` at end of stream. Cancel-safe: the core
    /// drops a pending read to stop reading.
    pub(crate) async fn read(&mut self) -> io::Result<Option<BytesMut>> {
        match self {
            ConnReader::Tcp(r) => r.read().await,
            ConnReader::Tls(r) => r.read().await,
            ConnReader::Ws(r) => r.read().await,
            ConnReader::Local(r) => r.read().await,
        }
    }
}

/// A socket's write half.
pub(crate) enum ConnWriter {
    Tcp(super::listener::TcpWriter),
    Tls(super::tls::TlsWriter),
    Ws(WsWriter),
    Local(super::local::LocalWriter),
}

impl ConnWriter {
    /// Writes every chunk, in order.
    async fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        match self {
            ConnWriter::Tcp(w) => w.write(chunks).await,
            ConnWriter::Tls(w) => w.write(chunks).await,
            ConnWriter::Ws(w) => w.write(chunks).await,
            ConnWriter::Local(w) => w.write(chunks).await,
        }
    }

    /// Ends our direction: a FIN (TCP), a close frame (WebSocket).
    async fn close(&mut self) {
        match self {
            ConnWriter::Tcp(w) => w.close().await,
            ConnWriter::Tls(w) => w.close().await,
            ConnWriter::Ws(w) => w.close().await,
            ConnWriter::Local(w) => w.close().await,
        }
    }
}

/// What a connection holds for its whole life: dropped when it ends.
pub(crate) struct Guards {
    /// Its place under the connection cap (in-process connections have none).
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
    /// Shutdown waits until every clone of this is dropped.
    pub(crate) _shutdown_complete: mpsc::Sender<()>,
}

/// The connection's writer task: writes what the core hands it until the
/// core lets the connection go, then closes the socket.
///
/// `handback` resolves when the core is done with the connection: with the
/// read half when the core closed it (so we can close gracefully), or
/// empty when the peer closed it, a write failed, or the broker stopped.
/// From then on the writer gets [`FLUSH_TIMEOUT`] to write what it holds:
/// a peer that stops reading cannot keep the task alive.
pub(crate) async fn run(
    conn: ConnId,
    mut writer: ConnWriter,
    output: std::sync::Arc<OutputQueue>,
    handback: oneshot::Receiver<ConnReader>,
    reports: mpsc::UnboundedSender<Report>,
    guards: Guards,
) {
    let reader = {
        let writes = write_loop(&mut writer, &output, conn, &reports);
        tokio::pin!(writes, handback);
        tokio::select! {
            reader = &mut handback => {
                if tokio::time::timeout(FLUSH_TIMEOUT, writes).await.is_err() {
                    tracing::debug!(%conn, "gave up flushing after {FLUSH_TIMEOUT:?}");
                }
                reader.ok()
            }
            () = &mut writes => handback.await.ok(),
        }
    };
    // Our direction ends (the DISCONNECT, if any, is before the FIN)...
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer.close()).await;
    // The connection is over as far as the cap and shutdown are concerned.
    drop(guards);
    // ... and input the peer sent meanwhile is read and dropped, so that
    // closing does not meet unread input: the kernel would answer it with
    // a reset, which can destroy the DISCONNECT still in flight.
    if let Some(reader) = reader {
        linger(reader).await;
    }
}

/// Reads and discards until the peer closes, for [`LINGER_TIMEOUT`] and
/// [`LINGER_BYTES`] at most.
async fn linger(mut reader: ConnReader) {
    let drain = async {
        let mut n = 0;
        while let Ok(Some(bytes)) = reader.read().await {
            n += bytes.len();
            if n > LINGER_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// Writes until the core closes or forgets the connection, or a write fails
/// (then the core must hear of it).
async fn write_loop(
    writer: &mut ConnWriter,
    output: &OutputQueue,
    conn: ConnId,
    reports: &mpsc::UnboundedSender<Report>,
) {
    loop {
        // Everything queued so far, for one vectored write.
        let chunks = match output.next().await {
            Next::Write(chunks) => chunks,
            Next::Close | Next::Gone => return,
        };
        let n = chunks.iter().map(Bytes::len).sum();
        if let Err(e) = writer.write(&chunks).await {
            tracing::debug!(%conn, "write failed: {e}");
            let _ = reports.send(Report::Failed(conn));
            return;
        }
        // The core ignores reports once it has let the connection go.
        let _ = reports.send(Report::Written(conn, n));
    }
}
