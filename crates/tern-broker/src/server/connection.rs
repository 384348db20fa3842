//! One task per connection: read bytes and hand them to the core; write what
//! the core hands back.
//!
//! The task does not look inside the bytes. It talks to the core over two
//! channels:
//!
//! - [`Input`], shared by every connection and bounded: the core is the
//!   bottleneck by design, and when it falls behind a reader waits in `send`,
//!   stops reading its socket, and TCP flow control pushes back on the client.
//!   Reports of bytes written travel apart ([`Inputs::written`]), so that
//!   they never queue behind other connections' input.
//! - [`Output`], one per connection and unbounded so the core never waits on
//!   a connection. The core bounds it itself by credit: it counts the bytes
//!   it sent here and we report written ([`Inputs::written`]), and stops
//!   producing for us above its high-water mark.
//!
//! and a third, the [`Gate`], a `watch` the core sets per connection: it
//! pauses reading while the core holds back output for a connection, and
//! says when the core has closed it.
//!
//! The reader and the writer run concurrently inside the task. The reader
//! pauses while the gate says so: a client that does not read what we send
//! must not make us queue answers (PINGRESP, PUBACK) without bound, so we
//! stop reading it until its output drains (the drain rule of tern-session).
//! Once the connection is ending, the writer gets [`FLUSH_TIMEOUT`] to write
//! what it holds; a peer that stops reading cannot keep the task alive.

use super::FLUSH_TIMEOUT;
use crate::ConnId;
use bytes::{Bytes, BytesMut};
use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

/// What the core allows a connection's reader to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Read.
    Open,
    /// Do not read: the core is holding back this connection's output.
    Paused,
    /// The core closed the connection.
    Closed,
}

/// What connection tasks tell the core task.
#[derive(Debug)]
pub(crate) enum Input {
    /// A new socket: the core answers with its [`ConnId`] and keeps `writer`.
    Accepted {
        writer: OutputSender,
        gate: watch::Sender<Gate>,
        /// How many of its [`Input::Data`] the core has handled; the core
        /// bumps the gate after each, so a reader waiting on it wakes.
        consumed: Arc<AtomicU64>,
        peer: SocketAddr,
        transport: &'static str,
        reply: oneshot::Sender<ConnId>,
    },
    /// Bytes read from the socket.
    Data(ConnId, BytesMut),
    /// The peer closed the socket, or it failed.
    Closed(ConnId),
}

/// A connection's way to the core task.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    /// [`Input`]s, in order per connection; bounded, so a busy core slows
    /// the readers down.
    pub(crate) data: mpsc::Sender<Input>,
    /// This many bytes of [`Output::Data`] are written to the socket. Apart
    /// from the data so that a report never waits behind other connections'
    /// input: it is what lets the core produce for this connection again.
    /// Unbounded, but a connection sends one per write, and writes only
    /// what the core's credit allows.
    pub(crate) written: mpsc::UnboundedSender<(ConnId, usize)>,
}

/// What the core task tells a connection task.
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
    /// Close the socket: everything before was written.
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
pub(crate) struct OutputSender(pub(crate) Arc<OutputQueue>);

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

/// Reads from a socket, allocating a buffer only when there is something
/// to read.
pub(crate) trait Reader {
    /// The next bytes, or `None` at end of stream.
    async fn read(&mut self) -> io::Result<Option<BytesMut>>;
}

/// Writes chunks to a socket.
pub(crate) trait Writer {
    /// Writes every chunk, in order.
    async fn write(&mut self, chunks: &[Bytes]) -> io::Result<()>;
    /// Closes the socket (after the last write).
    async fn close(&mut self);
}

/// What a connection task holds for its whole life: dropped when it ends.
pub(crate) struct Guards {
    /// Its place under the connection cap.
    pub(crate) _permit: OwnedSemaphorePermit,
    /// Shutdown waits until every clone of this is dropped.
    pub(crate) _shutdown_complete: mpsc::Sender<()>,
}

/// Registers with the core, then reads and writes until either side ends.
pub(crate) async fn serve<R: Reader, W: Writer>(
    mut reader: R,
    mut writer: W,
    peer: SocketAddr,
    transport: &'static str,
    inputs: Inputs,
    _guards: Guards,
) {
    let output = Arc::new(OutputQueue::default());
    let output_tx = OutputSender(output.clone());
    let (gate_tx, gate) = watch::channel(Gate::Open);
    let (reply_tx, reply_rx) = oneshot::channel();
    let consumed = Arc::new(AtomicU64::new(0));
    let accepted = Input::Accepted {
        writer: output_tx,
        gate: gate_tx,
        consumed: consumed.clone(),
        peer,
        transport,
        reply: reply_tx,
    };
    if inputs.data.send(accepted).await.is_err() {
        return; // shutting down
    }
    let Ok(conn) = reply_rx.await else {
        return;
    };

    {
        let read = read_loop(&mut reader, conn, &inputs.data, gate.clone(), &consumed);
        let write = write_loop(&mut writer, &output, conn, &inputs.written);
        tokio::pin!(read, write);
        let written = tokio::select! {
            () = &mut read => {
                // The peer closed its side (or the socket failed). The core's
                // answer is to drop our output channel; the writer writes what
                // is still queued (the peer may still be reading) and ends.
                let _ = inputs.data.send(Input::Closed(conn)).await;
                false
            }
            () = closed(gate) => false,
            () = &mut write => {
                // The core closed us, or a write failed (then the core must
                // hear of it; after its own close it ignores the report).
                let _ = inputs.data.send(Input::Closed(conn)).await;
                true
            }
        };
        // Reading has stopped. The writer flushes, for a bounded time.
        if !written && tokio::time::timeout(FLUSH_TIMEOUT, write).await.is_err() {
            tracing::debug!(%conn, "gave up flushing after {FLUSH_TIMEOUT:?}");
        }
    }
    writer.close().await;
}

/// Completes when the core closes the connection (or forgets it).
async fn closed(mut gate: watch::Receiver<Gate>) {
    let _ = gate.wait_for(|g| *g == Gate::Closed).await;
}

/// Reads handed to the core and not yet handled by it, at most: a reader
/// does not run ahead of the core, so what the core stops consuming (a
/// blocked publisher's input) stays in the socket, not in memory.
const READS_AHEAD: u64 = 2;

async fn read_loop<R: Reader>(
    reader: &mut R,
    conn: ConnId,
    inputs: &mpsc::Sender<Input>,
    mut gate: watch::Receiver<Gate>,
    consumed: &AtomicU64,
) {
    let mut sent = 0u64;
    loop {
        // Wait while paused or too far ahead; stop once closed (or once the
        // core forgot us).
        let ready = |g: &Gate| {
            *g == Gate::Closed
                || (*g == Gate::Open && sent - consumed.load(Ordering::Acquire) < READS_AHEAD)
        };
        match gate.wait_for(ready).await {
            Ok(g) if *g == Gate::Open => {}
            _ => return,
        }
        match reader.read().await {
            Ok(Some(bytes)) => {
                sent += 1;
                if inputs.send(Input::Data(conn, bytes)).await.is_err() {
                    return; // the core has stopped
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%conn, "read failed: {e}");
                return;
            }
        }
    }
}

async fn write_loop<W: Writer>(
    writer: &mut W,
    output: &OutputQueue,
    conn: ConnId,
    written: &mpsc::UnboundedSender<(ConnId, usize)>,
) {
    loop {
        // Everything queued so far, for one vectored write. `Gone`: the core
        // dropped its sender (after our `Closed`, or at shutdown).
        let chunks = match output.next().await {
            Next::Write(chunks) => chunks,
            Next::Close | Next::Gone => return,
        };
        let n = chunks.iter().map(Bytes::len).sum();
        if let Err(e) = writer.write(&chunks).await {
            tracing::debug!(%conn, "write failed: {e}");
            return;
        }
        // The core ignores reports once it has let the connection go.
        let _ = written.send((conn, n));
    }
}
