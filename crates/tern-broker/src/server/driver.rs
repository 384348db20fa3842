//! The core task: the one owner of the [`Broker`].
//!
//! Everything protocol happens here, on one task, one input at a time: bytes
//! from a connection, a report that bytes were written, a closed socket, a
//! deadline, the shutdown signal. After each input the task follows the
//! drain rule (tern-session's, and the core's): drain `poll_transmit`,
//! encoding each packet for its connection; hand each connection its bytes;
//! drain `poll_event`; and re-arm the timer from `poll_timeout` before
//! waiting again.
//!
//! The task never awaits a connection. Output goes to each connection over
//! an unbounded channel, and what bounds it is credit: the task counts the
//! bytes it handed a connection and the connection has not yet reported
//! written. Above [`HIGH_WATER`] it tells the core the connection is not
//! writable, so the core keeps that client's messages in its session's
//! bounded queue, and pauses the connection's reader; below [`LOW_WATER`]
//! it is writable and read again. A slow reader slows only itself.

use super::connection::{Gate, Input, Output, OutputSender};
use crate::{Broker, BrokerConfig, BrokerEvent, ConnId, Transmit};
use bytes::{Bytes, BytesMut};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tern_codec::Packet;
use tern_session::Instant;
use tokio::sync::{broadcast, mpsc, watch};

/// Inputs waiting for the core at most; connection readers wait beyond that.
pub(crate) const INPUT_CAPACITY: usize = 64;

/// Bytes handed to a connection and not yet written above which the core
/// stops producing for it.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// Unwritten bytes below which a throttled connection is writable again.
pub(crate) const LOW_WATER: usize = 16 * 1024;

/// Payloads at least this long are not copied into a connection's buffer:
/// the payload `Bytes` itself is queued, shared by every subscriber.
pub(crate) const SHARED_PAYLOAD: usize = 1024;

/// What the core task knows of one connection.
#[derive(Debug)]
struct Link {
    /// Where its bytes go (see [`Output`]).
    writer: OutputSender,
    /// Pauses its reader while its output is held back; says when it is closed.
    gate: watch::Sender<Gate>,
    /// Its [`Input::Data`] handled so far (see `READS_AHEAD` in connection.rs).
    consumed: Arc<AtomicU64>,
    /// Received bytes the core has not consumed: a partial packet. Empty
    /// (and without an allocation) between packets.
    input: BytesMut,
    /// Encoded and not yet handed to the writer, in order.
    batch: Vec<Bytes>,
    /// Bytes encoded for it and not yet reported written.
    unwritten: usize,
    /// What the core was last told.
    writable: bool,
    /// The core stopped consuming its input (publisher backpressure).
    blocked: bool,
    peer: SocketAddr,
    transport: &'static str,
}

/// The core task's state.
struct Driver {
    broker: Broker,
    /// The epoch of the core's [`Instant`]s.
    start: std::time::Instant,
    links: BTreeMap<ConnId, Link>,
    /// Shared encode buffer: each connection's packets are split off it, so
    /// idle connections own no write buffer.
    scratch: BytesMut,
    /// The connection whose packets sit at the end of `scratch`, unsplit.
    scratch_owner: Option<ConnId>,
    /// Connections with a non-empty batch.
    dirty: Vec<ConnId>,
}

/// Runs the core until the shutdown signal; then shuts the broker down,
/// hands every connection its last packets and a close, and returns.
pub(crate) async fn run(
    config: BrokerConfig,
    auth: Box<dyn crate::Authenticator>,
    mut inputs: mpsc::Receiver<Input>,
    mut written: mpsc::UnboundedReceiver<(ConnId, usize)>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let start = std::time::Instant::now();
    let mut driver = Driver {
        broker: Broker::with_hooks(
            config,
            Instant::ZERO,
            Box::new(crate::MemoryStore::new()),
            auth,
        ),
        start,
        links: BTreeMap::new(),
        scratch: BytesMut::new(),
        scratch_owner: None,
        dirty: Vec::new(),
    };
    loop {
        // Re-armed on every turn from the core's next deadline.
        let deadline = driver
            .broker
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(start + Duration::from_nanos(t.as_nanos())));
        tokio::select! {
            // Reports of written bytes first: they make connections writable.
            biased;
            Some((conn, n)) = written.recv() => {
                driver.written(conn, n);
                while let Ok((conn, n)) = written.try_recv() {
                    driver.written(conn, n);
                }
            }
            input = inputs.recv() => match input {
                Some(input) => driver.handle_input(input),
                // Every listener and connection is gone: nothing more can come.
                None => break,
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = driver.now();
                driver.broker.handle_timeout(now);
            }
            _ = shutdown.recv() => break,
        }
        driver.drain();
    }
    let now = driver.now();
    driver.broker.shutdown(now);
    driver.drain();
    // Links still open (none should be) are closed by dropping their senders.
    tracing::debug!(stats = ?driver.broker.stats(), "core stopped");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    fn handle_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Accepted {
                writer,
                gate,
                consumed,
                peer,
                transport,
                reply,
            } => {
                let conn = self.broker.accept(now);
                if reply.send(conn).is_err() {
                    // The connection task is already gone.
                    self.broker.handle_closed(now, conn);
                    return;
                }
                tracing::debug!(%conn, %peer, transport, "accepted");
                self.links.insert(
                    conn,
                    Link {
                        writer,
                        gate,
                        consumed,
                        input: BytesMut::new(),
                        batch: Vec::new(),
                        unwritten: 0,
                        writable: true,
                        blocked: false,
                        peer,
                        transport,
                    },
                );
            }
            Input::Data(conn, bytes) => {
                // Data from a connection the core already closed is dropped.
                let Some(link) = self.links.get_mut(&conn) else {
                    return;
                };
                if link.input.is_empty() {
                    link.input = bytes;
                } else {
                    link.input.extend_from_slice(&bytes);
                }
                // Let its reader read on (it waits when two reads ahead).
                link.consumed.fetch_add(1, Ordering::Release);
                link.gate.send_modify(|_| {});
                self.consume(now, conn);
            }
            Input::Closed(conn) => {
                // Dropping the link drops its writer's sender: the writer
                // flushes what it holds and ends.
                if self.links.remove(&conn).is_some() {
                    self.broker.handle_closed(now, conn);
                }
            }
        }
    }

    /// A connection wrote `n` bytes of what it was handed.
    fn written(&mut self, conn: ConnId, n: usize) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        link.unwritten = link.unwritten.saturating_sub(n);
        if !link.writable && link.unwritten <= LOW_WATER {
            link.writable = true;
            if !link.blocked {
                link.gate.send_replace(Gate::Open);
            }
            self.broker.set_writable(conn, true);
        }
    }

    /// Hands the core a connection's input; pauses its reader while the
    /// core leaves input unconsumed (publisher backpressure), since more
    /// would only wait here.
    fn consume(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        self.broker.handle_bytes(now, conn, &mut link.input);
        if link.input.is_empty() {
            // Give the read buffer back between packets.
            link.input = BytesMut::new();
        }
        let blocked = self.broker.is_blocked(conn);
        if blocked != link.blocked {
            link.blocked = blocked;
            let gate = if blocked || !link.writable {
                Gate::Paused
            } else {
                Gate::Open
            };
            link.gate.send_if_modified(|g| {
                let changed = *g != gate && *g != Gate::Closed;
                if changed {
                    *g = gate;
                }
                changed
            });
        }
    }

    /// The drain rule, repeated until the core has nothing more to say
    /// (closing a connection can publish a will, which makes more output).
    fn drain(&mut self) {
        loop {
            let now = self.now();
            let mut progress = false;
            while let Some(transmit) = self.broker.poll_transmit(now) {
                progress = true;
                self.encode(transmit);
            }
            self.flush();
            while let Some(event) = self.broker.poll_event() {
                progress = true;
                self.handle_event(now, event);
            }
            if !progress {
                return;
            }
        }
    }

    /// Encodes one packet at the end of its connection's batch.
    fn encode(&mut self, t: Transmit) {
        if !self.links.contains_key(&t.conn) {
            return;
        }
        if self.scratch_owner != Some(t.conn) {
            self.seal();
            self.scratch_owner = Some(t.conn);
        }
        let len = t.packet.encoded_len(t.version);
        let result = match &t.packet {
            Packet::Publish(p) if p.payload.len() >= SHARED_PAYLOAD => {
                self.scratch.reserve(len - p.payload.len());
                let header = p.encode_header(t.version, &mut self.scratch);
                if header.is_ok() {
                    self.seal();
                    self.push(t.conn, p.payload.clone());
                }
                header
            }
            packet => {
                self.scratch.reserve(len);
                packet.encode(t.version, &mut self.scratch)
            }
        };
        if let Err(e) = result {
            // The core only emits packets valid for the connection's version.
            tracing::error!(conn = %t.conn, packet = ?t.packet.packet_type(), "cannot encode: {e}");
            return;
        }
        let Some(link) = self.links.get_mut(&t.conn) else {
            return;
        };
        link.unwritten += len;
        if link.writable && link.unwritten > HIGH_WATER {
            // Hold its output in its session's bounded queue, and stop
            // reading it so it cannot make us queue answers without bound.
            link.writable = false;
            link.gate.send_replace(Gate::Paused);
            self.broker.set_writable(t.conn, false);
        }
    }

    /// Splits the scratch bytes off into their connection's batch.
    fn seal(&mut self) {
        if let Some(owner) = self.scratch_owner.take() {
            if !self.scratch.is_empty() {
                let chunk = self.scratch.split().freeze();
                self.push(owner, chunk);
            }
        }
    }

    fn push(&mut self, conn: ConnId, chunk: Bytes) {
        if let Some(link) = self.links.get_mut(&conn) {
            if link.batch.is_empty() {
                self.dirty.push(conn);
            }
            link.batch.push(chunk);
        }
    }

    /// Hands every batch to its connection's writer.
    fn flush(&mut self) {
        self.seal();
        for conn in self.dirty.drain(..) {
            if let Some(link) = self.links.get_mut(&conn) {
                let batch = std::mem::take(&mut link.batch);
                // A send fails only when the connection task has ended; its
                // `Closed` is on its way.
                link.writer.send(Output::Data(batch));
            }
        }
    }

    fn handle_event(&mut self, now: Instant, event: BrokerEvent) {
        match event {
            BrokerEvent::Close(conn) => {
                // Its last packets were flushed above; the writer writes
                // them, then closes the socket.
                if let Some(link) = self.links.remove(&conn) {
                    link.writer.send(Output::Close);
                    link.gate.send_replace(Gate::Closed);
                }
                self.broker.handle_closed(now, conn);
            }
            BrokerEvent::Unblocked(conn) => self.consume(now, conn),
            BrokerEvent::Connected {
                conn,
                client_id,
                version,
                session_present,
            } => {
                let (peer, transport) = self.describe(conn);
                tracing::info!(
                    %conn, %client_id, %version, session_present, peer, transport,
                    "client connected"
                );
            }
            BrokerEvent::Disconnected {
                conn,
                client_id,
                reason,
            } => {
                let client_id = client_id.as_ref().map_or("-", |c| c.as_str());
                tracing::info!(%conn, client_id, %reason, "client disconnected");
            }
        }
    }

    fn describe(&self, conn: ConnId) -> (String, &'static str) {
        self.links
            .get(&conn)
            .map_or((String::new(), ""), |l| (l.peer.to_string(), l.transport))
    }
}

#[cfg(test)]
mod tests {
    use super::super::connection::OutputQueue;
    use super::*;
    use tern_codec::{MqttString, ProtocolVersion, Publish};

    fn driver() -> Driver {
        Driver {
            broker: Broker::new(BrokerConfig::default(), Instant::ZERO),
            start: std::time::Instant::now(),
            links: BTreeMap::new(),
            scratch: BytesMut::new(),
            scratch_owner: None,
            dirty: Vec::new(),
        }
    }

    fn link(d: &mut Driver) -> (ConnId, Arc<OutputQueue>) {
        let conn = d.broker.accept(Instant::ZERO);
        let rx = Arc::new(OutputQueue::default());
        let writer = OutputSender(rx.clone());
        let (gate, _) = watch::channel(Gate::Open);
        d.links.insert(
            conn,
            Link {
                writer,
                gate,
                consumed: Arc::default(),
                input: BytesMut::new(),
                batch: Vec::new(),
                unwritten: 0,
                writable: true,
                blocked: false,
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                transport: "test",
            },
        );
        (conn, rx)
    }

    fn chunks(rx: &mut Arc<OutputQueue>) -> Vec<Bytes> {
        match rx.try_take() {
            Some(Output::Data(chunks)) => chunks,
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn one_payload_is_shared_by_every_subscriber_and_small_ones_are_copied() {
        let mut d = driver();
        let (a, mut rx_a) = link(&mut d);
        let (b, mut rx_b) = link(&mut d);
        let payload = Bytes::from(vec![42u8; SHARED_PAYLOAD]);
        let publish = |payload: Bytes| {
            Packet::Publish(Publish {
                topic: MqttString::from_static("t"),
                payload,
                ..Publish::default()
            })
        };
        for (conn, version) in [(a, ProtocolVersion::V5), (b, ProtocolVersion::V3_1_1)] {
            d.encode(Transmit {
                conn,
                version,
                packet: publish(payload.clone()),
            });
            d.encode(Transmit {
                conn,
                version,
                packet: publish(Bytes::from_static(b"small")),
            });
        }
        d.flush();
        for (rx, version) in [
            (&mut rx_a, ProtocolVersion::V5),
            (&mut rx_b, ProtocolVersion::V3_1_1),
        ] {
            let chunks = chunks(rx);
            // Header, the shared payload, then the small PUBLISH copied whole.
            assert_eq!(chunks.len(), 3, "{chunks:?}");
            assert_eq!(
                chunks[1].as_ptr(),
                payload.as_ptr(),
                "the payload is not copied"
            );
            let mut expected = BytesMut::new();
            publish(payload.clone())
                .encode(version, &mut expected)
                .unwrap();
            publish(Bytes::from_static(b"small"))
                .encode(version, &mut expected)
                .unwrap();
            assert_eq!(chunks.concat(), expected.to_vec());
        }
    }

    #[test]
    fn credit_throttles_a_connection_and_pauses_its_reader() {
        let mut d = driver();
        let (a, mut rx) = link(&mut d);
        let gate = d.links[&a].gate.subscribe();
        let big = Bytes::from(vec![0u8; HIGH_WATER]);
        d.encode(Transmit {
            conn: a,
            version: ProtocolVersion::V5,
            packet: Packet::Publish(Publish {
                topic: MqttString::from_static("t"),
                payload: big,
                ..Publish::default()
            }),
        });
        d.flush();
        let n: usize = chunks(&mut rx).iter().map(Bytes::len).sum();
        assert!(!d.links[&a].writable);
        assert_eq!(*gate.borrow(), Gate::Paused);
        // Written down to the low-water mark: writable and read again.
        d.written(a, n - LOW_WATER);
        assert!(d.links[&a].writable);
        assert_eq!(*gate.borrow(), Gate::Open);
    }
}
