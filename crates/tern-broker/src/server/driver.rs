//! The core task: the one owner of the [`Broker`], and the reader of every
//! socket.
//!
//! Everything protocol happens here, on one task, one input at a time: a new
//! connection, bytes read from one, a report that bytes were written, a
//! deadline, the shutdown signal. After each input the task follows the
//! drain rule (tern-session's, and the core's): drain `poll_transmit`,
//! encoding each packet for its connection; hand each connection its bytes;
//! drain `poll_event`; and re-arm the timer from `poll_timeout` before
//! waiting again.
//!
//! **Reading in arrival order.** The task reads the sockets itself: each
//! connection that may be read has one pending read in [`Driver::reads`], a
//! `FuturesUnordered`, which polls its futures in the order they were woken,
//! and tokio's I/O driver wakes them in the order the operating system
//! reported the sockets readable. So input ready on several connections is
//! handed to the core in the order it arrived. (With a task per connection
//! feeding a channel, the order was the order the scheduler ran those tasks,
//! and tokio runs the most recently woken task first: a client's SUBSCRIBE
//! could be handled after another client's PUBLISH that arrived later.)
//!
//! **Backpressure is the core's.** The task never awaits a connection:
//! output goes to each connection's writer task through an unbounded
//! [`OutputQueue`](super::connection::OutputQueue), and the writer reports
//! the bytes it wrote, which the task passes to
//! [`Broker::handle_written`]. The core bounds each connection's output by
//! that credit and says when to stop and resume reading a connection
//! ([`BrokerEvent::PauseReading`], [`BrokerEvent::ResumeReading`]); pausing a
//! connection is not re-arming its read, so its read half waits in its
//! [`Link`] until the core wants its input again.

use super::connection::{self, Accepted, ConnReader, Output, OutputQueue, OutputSender, Report};
use super::listener::TcpReader;
use crate::{Broker, BrokerConfig, BrokerEvent, ConnId, WrittenTransmit};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream::FuturesUnordered};
use std::{
    collections::BTreeMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tern_session::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// New connections waiting for the core at most; the accept loops wait beyond that.
pub(crate) const ACCEPT_CAPACITY: usize = 64;

/// One pending read of one connection: ends with what was read, or when the
/// core asks for the read half back (`stop`).
///
/// A plain TCP socket is polled for readiness in place
/// ([`TcpReader::poll_read`]): the pending read is these few words inline
/// in [`Driver::reads`]' node, and an idle connection holds no future state
/// and no buffer. Other transports (TLS, WebSocket, in-process) read through
/// their `async` readers, boxed.
enum PendingRead {
    Tcp(Option<TcpRead>),
    Other(Pin<Box<dyn Future<Output = Read> + Send>>),
}

/// What a pending TCP read holds.
struct TcpRead {
    conn: ConnId,
    reader: TcpReader,
    stop: oneshot::Receiver<()>,
}

impl PendingRead {
    fn new(conn: ConnId, reader: ConnReader, stop: oneshot::Receiver<()>) -> Self {
        match reader {
            ConnReader::Tcp(reader) => Self::Tcp(Some(TcpRead { conn, reader, stop })),
            reader => Self::Other(Box::pin(read(conn, reader, stop))),
        }
    }
}

impl Future for PendingRead {
    type Output = Read;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Read> {
        match self.get_mut() {
            Self::Other(read) => read.as_mut().poll(cx),
            Self::Tcp(pending) => {
                let Some(tcp) = pending.as_mut() else {
                    // Polled after it finished: FuturesUnordered never does.
                    return Poll::Pending;
                };
                // Stopping comes first, as in `read`.
                let result = if Pin::new(&mut tcp.stop).poll(cx).is_ready() {
                    None
                } else {
                    Some(std::task::ready!(tcp.reader.poll_read(cx)))
                };
                let TcpRead { conn, reader, stop } = pending.take().expect("checked above");
                Poll::Ready(Read {
                    conn,
                    reader: ConnReader::Tcp(reader),
                    stop,
                    result,
                })
            }
        }
    }
}

/// A finished [`PendingRead`]: the read half comes back with the result.
struct Read {
    conn: ConnId,
    reader: ConnReader,
    stop: oneshot::Receiver<()>,
    /// `None`: stopped before anything was read.
    result: Option<io::Result<Option<BytesMut>>>,
}

async fn read(conn: ConnId, mut reader: ConnReader, mut stop: oneshot::Receiver<()>) -> Read {
    let result = tokio::select! {
        biased;
        _ = &mut stop => None,
        r = reader.read() => Some(r),
    };
    Read {
        conn,
        reader,
        stop,
        result,
    }
}

/// What the core task knows of one connection.
struct Link {
    /// Where its bytes go (see [`OutputQueue`]).
    writer: OutputSender,
    /// Its read half while it is not being read (paused); `None` while a
    /// read is pending in [`Driver::reads`].
    reader: Option<(ConnReader, oneshot::Receiver<()>)>,
    /// Ends its pending read, so its read half comes back.
    stop: Option<oneshot::Sender<()>>,
    /// Gives its writer task the read half when the core closes it (see
    /// `connection::run`).
    handback: oneshot::Sender<ConnReader>,
    /// Received bytes the core has not consumed: a partial packet. Empty
    /// (and without an allocation) between packets.
    input: BytesMut,
    /// Encoded and not yet handed to the writer, in order.
    batch: Vec<Bytes>,
    /// The core said [`BrokerEvent::PauseReading`] (and not yet
    /// [`BrokerEvent::ResumeReading`]).
    paused: bool,
    peer: SocketAddr,
    transport: &'static str,
    /// The core refused its CONNECT and that was logged: its close is not
    /// logged as a refusal again.
    refusal_logged: bool,
    /// Its other refusals' log lines (`refusal_log.rs`).
    refusals: super::refusal_log::RefusalLog,
}

/// The core task's state.
struct Driver {
    broker: Broker,
    /// The epoch of the core's [`Instant`]s.
    start: std::time::Instant,
    links: BTreeMap<ConnId, Link>,
    /// One pending read per connection being read, polled in wake order.
    reads: FuturesUnordered<PendingRead>,
    /// Connections the core closed whose pending read has not come back
    /// yet: the read half goes to their writer task when it does.
    closing: BTreeMap<ConnId, oneshot::Sender<ConnReader>>,
    /// Connections closed after their refused CONNECT was logged, until
    /// the core's `Disconnected` for them: a refusal is one line, not two.
    refused_gone: std::collections::BTreeSet<ConnId>,
    /// The durable store's state, for `/health`.
    storage_state: super::metrics::StorageState,
    /// Cloned into each connection's writer task.
    reports: mpsc::UnboundedSender<Report>,
    /// Shared encode buffer: each connection's packets are split off it, so
    /// idle connections own no write buffer.
    scratch: BytesMut,
    /// The connection whose packets sit at the end of `scratch`, unsplit.
    scratch_owner: Option<ConnId>,
    /// Connections with a non-empty batch.
    dirty: Vec<ConnId>,
    /// The storage thread, with a data directory: each batch the core cuts
    /// goes to it after each input (see `storage.rs`).
    storage: Option<tern_store::Storage>,
    /// With `storage`: the wall clock at the core's time zero.
    clock: Option<super::storage::WallClock>,
    /// Connections whose read half is parked and may be read again once
    /// the core's events for this input are handled (a `PauseReading`
    /// among them keeps it parked).
    parked: Vec<ConnId>,
    /// Runs the core's password checks off this task; `None`: they run
    /// on this task (`check_threads = 0`, and unit tests).
    checker: Option<super::checks::Checker>,
    /// The cluster link, with `--cluster` (see `cluster.rs`).
    cluster: Option<super::cluster::ClusterLink>,
}

/// What the core task works with besides its channels.
pub(crate) struct Parts {
    pub(crate) config: BrokerConfig,
    /// The data directory's contents and storage thread, with `--data-dir`.
    pub(crate) store: Option<super::storage::Opened>,
    pub(crate) auth: Box<dyn crate::Authenticator>,
    /// Threads for password checks; 0: on the core task.
    pub(crate) check_threads: usize,
    /// Their nice value.
    pub(crate) check_nice: i32,
    /// The cluster link, with `--cluster`.
    pub(crate) cluster: Option<super::cluster::ClusterLink>,
    /// A monitoring listener shows queue depths: count them every
    /// [`QUEUE_COUNT_EVERY`] when the `$SYS` tick does not (and a snapshot
    /// was asked for since the last count).
    pub(crate) count_queues: bool,
}

/// How often queues are counted for the monitoring listener when `$SYS`
/// is off or ticks less often (mosquitto's default `$SYS` period).
pub(crate) const QUEUE_COUNT_EVERY: Duration = Duration::from_secs(10);

/// Runs the core until the shutdown signal; then shuts the broker down,
/// hands every connection its last packets and a close, and returns.
pub(crate) async fn run(
    parts: Parts,
    mut accepted: mpsc::Receiver<Accepted>,
    mut control: mpsc::Receiver<Control>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let Parts {
        config,
        store,
        auth,
        check_threads,
        check_nice,
        cluster,
        count_queues,
    } = parts;
    // Reports of written bytes and failed writes, from every writer task.
    // Unbounded, but a writer sends one per write, and writes only what the
    // core's credit allows.
    let (reports, mut report_rx) = mpsc::unbounded_channel();
    // With a data directory: start from what it holds, and feed it.
    let (memory, storage, mut synced, clock) = match store {
        Some(opened) => (
            crate::MemoryStore::from_state(opened.state),
            Some(opened.storage),
            Some(opened.synced),
            Some(opened.clock),
        ),
        None => (crate::MemoryStore::new(), None, None, None),
    };
    let mut driver = Driver::new(
        Broker::with_hooks(config, Instant::ZERO, Box::new(memory), auth),
        reports,
    );
    // The core's time zero is when the store read the wall clock: its
    // deadlines were loaded against it.
    if let Some(clock) = clock {
        driver.start = clock.zero;
        driver.clock = Some(clock);
    }
    // Password hashes are computed off this task (see `checks.rs`); with
    // no threads for them, here.
    let (checker, mut checked) = super::checks::Checker::new(check_threads, check_nice);
    driver.checker = (check_threads > 0).then_some(checker);
    if storage.is_some() {
        driver.storage_state = super::metrics::StorageState::Ok;
    }
    driver.storage = storage;
    driver.cluster = cluster;
    let mut queue_count = count_queues.then(|| {
        let first = tokio::time::Instant::now() + QUEUE_COUNT_EVERY;
        let mut every = tokio::time::interval_at(first, QUEUE_COUNT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every
    });
    // A snapshot was asked for since the last queue count.
    let mut looked = false;
    loop {
        // Re-armed on every turn from the core's next deadline.
        let deadline = driver.broker.poll_timeout().map(|t| {
            tokio::time::Instant::from_std(driver.start + Duration::from_nanos(t.as_nanos()))
        });
        tokio::select! {
            // Reports first: they make connections writable. Reads last, so
            // that a stream of input delays neither deadlines nor accepts.
            biased;
            Some(report) = report_rx.recv() => {
                driver.report(report);
                while let Ok(report) = report_rx.try_recv() {
                    driver.report(report);
                }
            }
            _ = shutdown.recv() => break,
            Some(done) = recv_synced(&mut synced), if synced.is_some() => match done {
                Ok(seq) => {
                    let now = driver.now();
                    driver.broker.handle_store_synced(now, seq);
                }
                Err(e) => {
                    // Nothing later completes: what it would acknowledge
                    // stays unacknowledged, as it must.
                    tracing::error!("{e}: acknowledgements that need the store stop");
                    driver.storage_state = super::metrics::StorageState::Failed(e);
                    synced = None;
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = driver.now();
                driver.broker.handle_timeout(now);
            }
            _ = tick(&mut queue_count), if queue_count.is_some() => {
                // Only while someone reads them: nothing walks the
                // sessions for a listener nobody asks.
                let sys = driver.broker.config().sys_interval;
                if std::mem::take(&mut looked) && sys.is_none_or(|every| every > QUEUE_COUNT_EVERY) {
                    driver.broker.count_queues();
                }
            }
            Some((conn, outcome)) = checked.recv() => {
                let now = driver.now();
                driver.broker.handle_auth_checked(now, conn, outcome);
            }
            Some(new) = accepted.recv() => driver.accept(new),
            Some(request) = control.recv() => match request {
                // A copy of the counters for `/metrics` (never a walk of
                // the sessions: the cost does not grow with them).
                Control::Snapshot(reply) => {
                    looked = true;
                    let _ = reply.send(driver.snapshot());
                }
                Control::Reconfigure(config) => {
                    let now = driver.now();
                    driver.broker.set_config(now, *config);
                }
            },
            input = super::cluster::ClusterLink::recv(&mut driver.cluster) => {
                driver.cluster_input(input);
            }
            Some(read) = driver.reads.next() => driver.handle_read(read),
        }
        driver.drain();
    }
    let now = driver.now();
    driver.broker.shutdown(now);
    driver.drain();
    // Every read was stopped by the closes: collect the read halves so the
    // writers can close gracefully.
    while let Some(read) = driver.reads.next().await {
        driver.handle_read(read);
    }
    if let Some(storage) = driver.storage.take() {
        // Commits what is pending and syncs.
        storage.close();
    }
    tracing::debug!(stats = ?driver.broker.stats(), "core stopped");
}

/// The next tick of `interval` (never, without one).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The next completion from the storage thread (never, without one).
async fn recv_synced(
    rx: &mut Option<mpsc::UnboundedReceiver<Result<u64, String>>>,
) -> Option<Result<u64, String>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Requests to the core task from outside the data path: the monitoring
/// listener's snapshots and SIGHUP's new settings. Rare, and bounded by the
/// channel.
#[derive(Debug)]
pub(crate) enum Control {
    /// Copy the counters.
    Snapshot(oneshot::Sender<super::metrics::Snapshot>),
    /// Put new settings in force.
    Reconfigure(Box<BrokerConfig>),
}

/// Control requests waiting for the core at most.
pub(crate) const CONTROL_CAPACITY: usize = 64;

/// The reason code of a close that refused the client (a broken rule, a
/// malformed packet, a limit, a refused CONNECT); `None` for an ordinary end.
fn refusal_code(reason: &tern_session::CloseReason) -> Option<tern_codec::ReasonCode> {
    use tern_codec::ReasonCode as R;
    use tern_session::CloseReason as C;
    match reason {
        C::ProtocolViolation(v) => Some(v.reason_code()),
        C::ConnectRefused(code) => Some(*code),
        C::KeepAliveTimeout => Some(R::KeepAliveTimeout),
        C::ConnectTimeout => Some(R::MaximumConnectTime),
        C::Local(code)
            if code.is_error() && !matches!(code, R::ServerShuttingDown | R::SessionTakenOver) =>
        {
            Some(*code)
        }
        _ => None,
    }
}

/// `0x87`.
fn hex(code: tern_codec::ReasonCode) -> String {
    format!("0x{:02X}", code.as_u8())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn new(broker: Broker, reports: mpsc::UnboundedSender<Report>) -> Self {
        Driver {
            broker,
            start: std::time::Instant::now(),
            links: BTreeMap::new(),
            reads: FuturesUnordered::new(),
            closing: BTreeMap::new(),
            refused_gone: std::collections::BTreeSet::new(),
            storage_state: super::metrics::StorageState::Memory,
            clock: None,
            reports,
            scratch: BytesMut::new(),
            scratch_owner: None,
            dirty: Vec::new(),
            parked: Vec::new(),
            checker: None,
            storage: None,
            cluster: None,
        }
    }

    /// Hands what the cluster said to the core.
    fn cluster_input(&mut self, input: super::cluster::ClusterInput) {
        use super::cluster::ClusterInput as I;
        match input {
            I::Publish(p) => {
                let now = self.now();
                self.broker.handle_cluster_publish(now, p);
            }
            I::Interest { node, filter, on } => {
                self.broker.handle_cluster_interest(&node, &filter, on)
            }
            I::NodeGone(node) => self.broker.handle_cluster_node_gone(&node),
        }
    }

    /// The counters and gauges `/metrics` shows.
    fn snapshot(&self) -> super::metrics::Snapshot {
        let b = &self.broker;
        super::metrics::Snapshot {
            stats: b.stats(),
            sockets: b.connection_count() as u64,
            sessions: b.session_count() as u64,
            subscriptions: b.subscription_count() as u64,
            retained: b.retained_count() as u64,
            memory: b.memory_use().total() as u64,
            queues: b.queue_depths().clone(),
            uptime: self.start.elapsed().as_secs_f64(),
            top_topics: b.top_topics(),
            storage: self.storage_state.clone(),
            // The monitoring listener adds them (they are not the core's).
            bridges: Vec::new(),
            cluster: None,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// A new socket: the core gets a [`ConnId`], the socket a writer task
    /// and a pending read.
    fn accept(&mut self, new: Accepted) {
        let now = self.now();
        // In-process bridges are not counted against an address's or a
        // listener's rate.
        let conn = match (new.bridge, new.listener) {
            (true, _) => self.broker.accept(now),
            (false, Some(listener)) => self.broker.accept_on(now, new.peer.ip(), listener),
            (false, None) => self.broker.accept_from(now, new.peer.ip()),
        };
        if new.bridge {
            self.broker.set_bridge(conn);
        }
        if let Some(name) = new
            .identity
            .and_then(|n| tern_codec::MqttString::try_from(n).ok())
        {
            self.broker.set_identity(conn, name);
        }
        let (handback, handback_rx) = oneshot::channel();
        // No writer task until there is output (the CONNACK, usually).
        let output = Arc::new(OutputQueue::parked(connection::Parked {
            conn,
            writer: new.writer,
            reports: self.reports.clone(),
            handback: handback_rx,
            guards: new.guards,
        }));
        tracing::debug!(%conn, peer = %new.peer, transport = new.transport, "accepted");
        let (stop, stop_rx) = oneshot::channel();
        self.refused_gone.remove(&conn);
        self.links.insert(
            conn,
            Link {
                writer: OutputSender(output),
                reader: None,
                stop: Some(stop),
                handback,
                input: BytesMut::new(),
                batch: Vec::new(),
                paused: false,
                peer: new.peer,
                transport: new.transport,
                refusal_logged: false,
                refusals: Default::default(),
            },
        );
        self.reads.push(PendingRead::new(conn, new.reader, stop_rx));
    }

    /// A pending read finished.
    fn handle_read(&mut self, read: Read) {
        let Read {
            conn,
            reader,
            stop,
            result,
        } = read;
        let Some(link) = self.links.get_mut(&conn) else {
            // The core closed it (or its writer failed): the read half goes
            // to the writer task, to close gracefully, or is dropped.
            if let Some(handback) = self.closing.remove(&conn) {
                let _ = handback.send(reader);
            }
            return;
        };
        match result {
            Some(Ok(Some(bytes))) => {
                if link.input.is_empty() {
                    link.input = bytes;
                } else {
                    link.input.extend_from_slice(&bytes);
                }
                link.reader = Some((reader, stop));
                let now = self.now();
                self.consume(now, conn);
                // Read on only after the drain: the core may just have
                // blocked this publisher (its `PauseReading` is pending).
                self.parked.push(conn);
            }
            // Stopped while open: cannot happen (the core stops a read only
            // when it lets the connection go); keep the half, paused.
            None => link.reader = Some((reader, stop)),
            Some(Ok(None)) | Some(Err(_)) => {
                if let Some(Err(e)) = &result {
                    tracing::debug!(%conn, "read failed: {e}");
                }
                // Dropping the link drops its writer's sender: the writer
                // flushes what it holds and ends.
                self.links.remove(&conn);
                let now = self.now();
                self.broker.handle_closed(now, conn);
            }
        }
    }

    /// Reads a connection again if the core wants its input and it is not
    /// being read.
    fn rearm(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if link.paused {
            return;
        }
        if let Some((reader, stop)) = link.reader.take() {
            self.reads.push(PendingRead::new(conn, reader, stop));
        }
    }

    /// Lets a connection go: no more output or input from it. With
    /// `graceful`, its writer gets the read half to close gracefully.
    fn forget(&mut self, conn: ConnId, graceful: bool) {
        let Some(mut link) = self.links.remove(&conn) else {
            return;
        };
        if link.refusal_logged {
            self.refused_gone.insert(conn);
        }
        match link.reader.take() {
            // Paused: the read half is here.
            Some((reader, _)) => {
                if graceful {
                    let _ = link.handback.send(reader);
                }
            }
            // Being read: stop that read; the half comes back in `handle_read`.
            None => {
                if let Some(stop) = link.stop.take() {
                    let _ = stop.send(());
                }
                if graceful {
                    self.closing.insert(conn, link.handback);
                }
            }
        }
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Written(conn, n) => self.broker.handle_written(conn, n),
            Report::Failed(conn) => {
                if self.links.contains_key(&conn) {
                    self.forget(conn, false);
                    let now = self.now();
                    self.broker.handle_closed(now, conn);
                }
            }
        }
    }

    /// Hands the core a connection's input. What it leaves (a partial
    /// packet, or the rest of a blocked publisher's input) waits here.
    fn consume(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        self.broker.handle_bytes(now, conn, &mut link.input);
        if link.input.is_empty() {
            // Give the read buffer back between packets.
            link.input = BytesMut::new();
        }
        // What waits here counts against the memory budget.
        self.broker.set_shell_bytes(conn, link.input.capacity());
    }

    /// The drain rule, repeated until the core has nothing more to say
    /// (closing a connection can publish a will, which makes more output).
    ///
    /// Connections are read again (re-armed) before any output leaves: a
    /// peer can react only to bytes it got, so its reaction is read in the
    /// order it arrives among the others' input (see `tests/arrival.rs`),
    /// however soon the writer sends them.
    fn drain(&mut self) {
        loop {
            let now = self.now();
            let mut progress = false;
            // The core writes each packet at the end of `scratch`; the
            // shell only files the bytes under their connection.
            loop {
                let start = self.scratch.len();
                let Some(written) = self.broker.write_transmit(now, &mut self.scratch) else {
                    break;
                };
                progress = true;
                self.file(start, written);
            }
            self.seal();
            while let Some(event) = self.broker.poll_event() {
                progress = true;
                self.handle_event(now, event);
            }
            while let Some(check) = self.broker.poll_auth_check() {
                match &self.checker {
                    Some(checker) => checker.run(check),
                    None => {
                        progress = true;
                        let outcome = check.check.run();
                        self.broker.handle_auth_checked(now, check.conn, outcome);
                    }
                }
            }
            while let Some(batch) = self.broker.poll_store() {
                if let (Some(storage), Some(clock)) = (&self.storage, self.clock) {
                    storage.submit(batch.seq, super::storage::ops(batch.ops, clock));
                }
            }
            while let Some(out) = self.broker.poll_cluster() {
                if let Some(link) = &self.cluster {
                    link.send(out);
                }
            }
            if !progress {
                break;
            }
        }
        let parked = std::mem::take(&mut self.parked);
        for conn in parked {
            self.rearm(conn);
        }
        self.flush();
    }

    /// Files the packet the core just wrote at the end of `scratch` (from
    /// `start` on) under its connection; a large payload follows it as its
    /// own chunk.
    fn file(&mut self, start: usize, w: WrittenTransmit) {
        if self.scratch_owner != Some(w.conn) {
            // The bytes before `start` belong to the previous owner.
            if let Some(owner) = self.scratch_owner.take() {
                if start > 0 {
                    let chunk = self.scratch.split_to(start).freeze();
                    self.push(owner, chunk);
                }
            }
            self.scratch_owner = Some(w.conn);
        }
        if !self.links.contains_key(&w.conn) {
            // Its link is gone: everything in `scratch` is that connection's.
            self.scratch.clear();
            self.scratch_owner = None;
            return;
        }
        if let Some(payload) = w.payload {
            self.seal();
            self.push(w.conn, payload);
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
        let dirty = std::mem::take(&mut self.dirty);
        for &conn in &dirty {
            self.flush_one(conn);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Hands a connection's batch, if any, to its writer.
    fn flush_one(&mut self, conn: ConnId) {
        if let Some(link) = self.links.get_mut(&conn) {
            if !link.batch.is_empty() {
                let batch = std::mem::take(&mut link.batch);
                // The writer task may have ended (a failed write); its
                // `Report::Failed` is on its way.
                link.writer.send(Output::Data(batch));
            }
        }
    }

    fn handle_event(&mut self, now: Instant, event: BrokerEvent) {
        match event {
            BrokerEvent::Close(conn) => {
                // Its last packets first; the writer writes them, then
                // closes the socket gracefully.
                self.flush_one(conn);
                if let Some(link) = self.links.get(&conn) {
                    link.writer.send(Output::Close);
                    self.forget(conn, true);
                }
                self.broker.handle_closed(now, conn);
            }
            BrokerEvent::PauseReading(conn) => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.paused = true;
                }
            }
            BrokerEvent::ResumeReading(conn) => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.paused = false;
                    self.consume(now, conn);
                    self.parked.push(conn);
                }
            }
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
                let (peer, _) = self.describe(conn);
                let logged = self.links.get(&conn).is_some_and(|l| l.refusal_logged)
                    || self.refused_gone.remove(&conn);
                match refusal_code(&reason) {
                    Some(code) if !logged => tracing::warn!(
                        %conn, client_id, peer, reason_code = %hex(code), %reason,
                        "refused: connection closed"
                    ),
                    _ => tracing::info!(%conn, client_id, peer, %reason, "client disconnected"),
                }
            }
            BrokerEvent::Refused {
                conn,
                client_id,
                what,
                reason,
                limit,
            } => {
                // A CONNECT is refused once; the others are thinned to a
                // line a second per connection, counting the rest.
                let skipped = match (&what, self.links.get_mut(&conn)) {
                    (crate::Refusal::Connect, _) | (_, None) => Some(0),
                    (_, Some(link)) => link.refusals.admit(now),
                };
                let Some(skipped) = skipped else {
                    return;
                };
                let (peer, _) = self.describe(conn);
                let (what, topic) = match &what {
                    crate::Refusal::Connect => {
                        if let Some(link) = self.links.get_mut(&conn) {
                            link.refusal_logged = true;
                        }
                        ("connect", "")
                    }
                    crate::Refusal::Publish(topic) => ("publish", topic.as_str()),
                    crate::Refusal::Subscribe(filter) => ("subscribe", filter.as_str()),
                };
                let limit = limit.map_or(String::new(), |l| l.to_string());
                tracing::warn!(
                    %conn, %client_id, peer, what, topic, reason_code = %hex(reason),
                    reason = reason.name(), limit, not_logged_since = skipped, "refused"
                );
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
    use super::*;
    use tern_codec::{MqttString, Packet, ProtocolVersion, Publish};

    fn driver() -> Driver {
        Driver::new(
            Broker::new(BrokerConfig::default(), Instant::ZERO),
            mpsc::unbounded_channel().0,
        )
    }

    fn link(d: &mut Driver) -> (ConnId, Arc<OutputQueue>) {
        let conn = d.broker.accept(Instant::ZERO);
        let rx = Arc::new(OutputQueue::default());
        d.links.insert(
            conn,
            Link {
                writer: OutputSender(rx.clone()),
                reader: None,
                stop: None,
                handback: oneshot::channel().0,
                input: BytesMut::new(),
                batch: Vec::new(),
                paused: false,
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                transport: "test",
                refusal_logged: false,
                refusals: Default::default(),
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
        let payload = Bytes::from(vec![42u8; crate::SHARED_PAYLOAD]);
        let publish = |payload: Bytes| {
            Packet::Publish(Publish {
                topic: MqttString::from_static("t"),
                payload,
                ..Publish::default()
            })
        };
        // What `Broker::write_transmit` does: the packet (or, for a large
        // payload, its header) at the end of `scratch`, then `file`.
        let write = |d: &mut Driver, conn, version, packet: Packet| {
            let start = d.scratch.len();
            let payload = match &packet {
                Packet::Publish(p) if p.payload.len() >= crate::SHARED_PAYLOAD => {
                    p.encode_header(version, &mut d.scratch).unwrap();
                    Some(p.payload.clone())
                }
                _ => {
                    packet.encode(version, &mut d.scratch).unwrap();
                    None
                }
            };
            let len = d.scratch.len() - start;
            d.file(start, WrittenTransmit { conn, len, payload });
        };
        for (conn, version) in [(a, ProtocolVersion::V5), (b, ProtocolVersion::V3_1_1)] {
            write(&mut d, conn, version, publish(payload.clone()));
            write(&mut d, conn, version, publish(Bytes::from_static(b"small")));
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
}
