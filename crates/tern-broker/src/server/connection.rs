//! A connection's two halves, and the short-lived task that writes to it.
//!
//! A socket is split when it is accepted. The **read half** goes to the core
//! task, which reads it itself (see `driver.rs`): that is how input ready on
//! several connections is handled in the order it arrived, and how a
//! connection is paused: the core simply does not read it. The **write half**
//! is parked in the connection's [`OutputQueue`]. When the core queues
//! output, a writer task ([`run`]) takes it, writes until nothing is left,
//! and parks it again, ending; at the end of the connection one closes the
//! socket gracefully. An idle connection has no task: it costs its parked
//! write half and a few words.
//!
//! The core never waits on this task. Output reaches it through the
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
    /// The local address of the listener it came in on (none for a local
    /// connection).
    pub(crate) listener: Option<SocketAddr>,
    pub(crate) transport: &'static str,
    /// Its verified TLS client certificate's name, when that is its user
    /// name (`use_identity_as_username`).
    pub(crate) identity: Option<String>,
    /// An in-process bridge (see `Broker::set_bridge`).
    pub(crate) bridge: bool,
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

/// A connection's output, filled by the core task and emptied by a writer
/// task: an unbounded queue (bounded by the core's credit) with the write
/// half parked beside it while no task writes.
#[derive(Default)]
pub(crate) struct OutputQueue {
    pending: std::sync::Mutex<Pending>,
}

impl std::fmt::Debug for OutputQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.lock();
        f.debug_struct("OutputQueue")
            .field("chunks", &p.chunks.len())
            .field("close", &p.close)
            .field("gone", &p.gone)
            .field("parked", &p.parked.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Pending {
    chunks: Vec<Bytes>,
    close: bool,
    /// The core dropped its [`OutputSender`].
    gone: bool,
    /// The write half and what goes with it, while no writer task runs.
    /// Taken (and a task spawned) by the first output after it was parked;
    /// put back, under this same lock, only when nothing is left to write,
    /// so output is never left behind with no task to write it.
    parked: Option<Parked>,
}

/// What a writer task owns: parked in the [`OutputQueue`] between tasks.
pub(crate) struct Parked {
    pub(crate) conn: ConnId,
    pub(crate) writer: ConnWriter,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
    /// Resolves when the core is done with the connection (see [`run`]).
    pub(crate) handback: oneshot::Receiver<ConnReader>,
    pub(crate) guards: Guards,
}

/// What the writer is to do next.
enum Next {
    /// Write these chunks (then ask again).
    Write(Vec<Bytes>),
    /// Nothing to write for now.
    Idle,
    /// Write nothing more: the core closed or forgot the connection.
    Finish,
}

impl OutputQueue {
    /// A queue with the writer parked in it: no task runs until there is
    /// output.
    pub(crate) fn parked(parked: Parked) -> Self {
        OutputQueue {
            pending: std::sync::Mutex::new(Pending {
                parked: Some(parked),
                ..Pending::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding it leaves plain data behind: carry on.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What to do next, without waiting.
    fn next(&self) -> Next {
        let mut p = self.lock();
        if !p.chunks.is_empty() {
            Next::Write(std::mem::take(&mut p.chunks))
        } else if p.close || p.gone {
            Next::Finish
        } else {
            Next::Idle
        }
    }

    /// Parks the writer if there is still nothing to write; gives it back
    /// otherwise.
    fn park(&self, parked: Parked) -> Option<Parked> {
        let mut p = self.lock();
        if p.chunks.is_empty() && !p.close && !p.gone {
            p.parked = Some(parked);
            None
        } else {
            Some(parked)
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
    /// Queues output and, if no writer task runs, starts one; never waits.
    pub(crate) fn send(&self, output: Output) {
        let parked = {
            let mut p = self.0.lock();
            match output {
                Output::Data(batch) if p.chunks.is_empty() => p.chunks = batch,
                Output::Data(batch) => p.chunks.extend(batch),
                Output::Close => p.close = true,
            }
            p.parked.take()
        };
        self.wake(parked);
    }

    fn wake(&self, parked: Option<Parked>) {
        if let Some(parked) = parked {
            tokio::spawn(run(parked, self.0.clone()));
        }
    }
}

impl Drop for OutputSender {
    fn drop(&mut self) {
        let parked = {
            let mut p = self.0.lock();
            p.gone = true;
            p.parked.take()
        };
        self.wake(parked);
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

/// A writer task: writes what the core queued until nothing is left, then
/// parks the write half and ends; or, once the core has closed or let go of
/// the connection, finishes it.
///
/// `handback` resolves when the core is done with the connection: with the
/// read half when the core closed it (so we can close gracefully), or
/// empty when the peer closed it, a write failed, or the broker stopped.
/// From then on the writer gets [`FLUSH_TIMEOUT`] to write what it holds:
/// a peer that stops reading cannot keep the task alive.
pub(crate) async fn run(mut parked: Parked, output: std::sync::Arc<OutputQueue>) {
    let reader = loop {
        let finished = {
            let Parked {
                conn,
                writer,
                reports,
                handback,
                ..
            } = &mut parked;
            let writes = write_loop(writer, &output, *conn, reports);
            tokio::pin!(writes);
            tokio::select! {
                reader = &mut *handback => {
                    if tokio::time::timeout(FLUSH_TIMEOUT, writes).await.is_err() {
                        tracing::debug!(%conn, "gave up flushing after {FLUSH_TIMEOUT:?}");
                    }
                    Some(reader.ok())
                }
                idle = &mut writes => if idle { None } else { Some(handback.await.ok()) },
            }
        };
        match finished {
            Some(reader) => break reader,
            None => match output.park(parked) {
                None => return,
                // Output came in meanwhile: go on writing.
                Some(back) => parked = back,
            },
        }
    };
    let Parked {
        mut writer, guards, ..
    } = parked;
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

/// Writes until nothing is left (`true`: idle), or until the core closes or
/// forgets the connection, or a write fails (then the core must hear of it)
/// (`false`).
async fn write_loop(
    writer: &mut ConnWriter,
    output: &OutputQueue,
    conn: ConnId,
    reports: &mpsc::UnboundedSender<Report>,
) -> bool {
    loop {
        // Everything queued so far, for one vectored write.
        let chunks = match output.next() {
            Next::Write(chunks) => chunks,
            Next::Idle => return true,
            Next::Finish => return false,
        };
        let n = chunks.iter().map(Bytes::len).sum();
        if let Err(e) = writer.write(&chunks).await {
            tracing::debug!(%conn, "write failed: {e}");
            let _ = reports.send(Report::Failed(conn));
            return false;
        }
        // The core ignores reports once it has let the connection go.
        let _ = reports.send(Report::Written(conn, n));
    }
}
