//! In-process connections: an MQTT client inside the broker's own process
//! (a bridge) served over an in-memory pipe instead of a socket.
//!
//! [`LocalConnector::connect`] makes a `tokio::io::duplex` pair, hands one
//! end to the core task exactly as a listener hands it an accepted socket,
//! and returns the other end, for a client (tern-client's
//! `Options::connector`) to speak MQTT over. The core cannot tell it from a
//! TCP connection except by what the shell tells it: the connection is
//! trusted (it skips the password check and the anonymous rule, like a
//! client certificate with `use_identity_as_username`) and its user name is
//! the identity given, so ACL rules for that user name apply to it; it may
//! publish under `$SYS/broker/connection/` (a bridge's state). It does not
//! count against `max_connections`.

use super::{
    bridge_stats::{BridgeRegistry, BridgeStats},
    connection::{Accepted, ConnReader, ConnWriter, Guards},
};
use bytes::{Bytes, BytesMut};
use std::{io, net::SocketAddr, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf},
    sync::mpsc,
};

/// Bytes the in-memory pipe buffers each way before a writer waits.
const PIPE_CAPACITY: usize = 256 * 1024;

/// How much one read takes at most.
const READ_CHUNK: usize = 64 * 1024;

/// Opens in-process connections to a running server; see the module docs.
/// Cheap to clone; outlives neither the core (connecting fails once it has
/// stopped) nor keeps shutdown waiting.
#[derive(Debug, Clone)]
pub struct LocalConnector {
    pub(crate) accepted: mpsc::Sender<Accepted>,
    /// Upgraded for each connection: shutdown waits for connections, not
    /// for this handle.
    pub(crate) shutdown_complete: mpsc::WeakSender<()>,
    /// The bridges' counters, which `/metrics` shows.
    pub(crate) bridges: BridgeRegistry,
}

impl LocalConnector {
    /// A new connection to the broker, trusted, authenticated as user
    /// `identity`: the returned stream is the client's end.
    ///
    /// Fails (`NotConnected`) once the server is shutting down.
    pub async fn connect(&self, identity: &str) -> io::Result<DuplexStream> {
        let stopped = || io::Error::new(io::ErrorKind::NotConnected, "the broker has stopped");
        let shutdown_complete = self.shutdown_complete.upgrade().ok_or_else(stopped)?;
        let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
        let (read, write) = tokio::io::split(server);
        let accepted = Accepted {
            reader: ConnReader::Local(LocalReader(read)),
            writer: ConnWriter::Local(LocalWriter(write)),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            listener: None,
            transport: "local",
            identity: Some(identity.to_string()),
            bridge: true,
            guards: Guards {
                _permit: None,
                _shutdown_complete: shutdown_complete,
            },
        };
        self.accepted.send(accepted).await.map_err(|_| stopped())?;
        Ok(client)
    }

    /// The counters of the bridge called `name`, which `/metrics` and
    /// `/api/stats` show: the same ones for a bridge started again under
    /// the same name.
    pub fn bridge_stats(&self, name: &str) -> Arc<BridgeStats> {
        self.bridges.get(name)
    }

    /// Drops the counters of a bridge removed from the settings.
    pub fn forget_bridge(&self, name: &str) {
        self.bridges.remove(name);
    }
}

/// The broker's read half of an in-process connection.
pub(crate) struct LocalReader(ReadHalf<DuplexStream>);

impl LocalReader {
    /// Cancel-safe, as `read_buf` is.
    pub(crate) async fn read(&mut self) -> io::Result<Option<BytesMut>> {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match self.0.read_buf(&mut buf).await? {
            0 => Ok(None),
            _ => Ok(Some(buf)),
        }
    }
}

/// The broker's write half of an in-process connection.
pub(crate) struct LocalWriter(WriteHalf<DuplexStream>);

impl LocalWriter {
    pub(crate) async fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        for chunk in chunks {
            self.0.write_all(chunk).await?;
        }
        self.0.flush().await
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}
