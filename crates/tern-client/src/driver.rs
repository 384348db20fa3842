//! The connection task: one per [`Client`](crate::Client), owning the
//! network connection and the [`ClientConnection`].
//!
//! It is a shell. Every protocol decision (QoS flows, keep alive, resends,
//! resubscribing) is tern-session's; the task moves bytes, reads the clock,
//! arms one timer, and turns session events into completed futures and
//! stream items. It follows the drain rule after every input: transmits
//! (until the write buffer is full), then the timeout, then the events.
//!
//! Why each channel exists:
//! - `commands` (bounded): publish / subscribe / unsubscribe. The task stops
//!   taking them while it holds one the session cannot accept yet (queue full,
//!   identifiers exhausted, no connection), so callers wait instead of memory
//!   growing.
//! - `control` (unbounded, but bounded by construction: one acknowledgement
//!   per delivered message, one request per `disconnect` call): manual
//!   acknowledgements and disconnecting, which must never wait behind a held
//!   publish.
//! - `messages` (bounded): incoming messages. The task handles an incoming
//!   packet only when the previous message has been delivered, and reads the
//!   socket only then, so a slow consumer stops the reads.
//! - `state` (watch): connection state for whoever wants to watch it.
//! - `ready` (oneshot): the first CONNACK, or the first error, for `connect`.

use crate::{
    Acked, Acker, Error, Message, Options, Published, State, Subscribed, Unsubscribed,
    client::{Command, Control},
    error::Timeout,
    options::Jitter,
    transport::{self, Layers, Reader, Writer},
};
use bytes::BytesMut;
use std::{
    collections::{BTreeMap, VecDeque},
    io,
    sync::Arc,
    time::Duration,
};
use tern_codec::{FrameStatus, PacketId, ReasonCode, check_frame};
use tern_session::{
    AckError, AckToken, ClientConnection, ClientEvent, ClientSession, CloseReason, CommandError,
    ConnectOptions, PublishError,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant as TokioInstant,
};

/// Stop taking packets from the session once this much waits to be written
/// (the drain rule's "write buffer full"); reading stops too, so a peer that
/// does not read cannot make acknowledgements pile up.
const HIGH_WATER: usize = 64 * 1024;

/// How long a closing connection may take to send its last bytes (a final
/// DISCONNECT) to a peer that may have stopped reading.
const LINGER: Duration = Duration::from_secs(1);

/// What [`Client::connect`](crate::Client::connect) hands the task.
pub(crate) struct Channels {
    pub(crate) options: Options,
    /// The TLS configuration (built once, by `Client::connect`) and the
    /// application's connector.
    pub(crate) layers: Layers,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) control_tx: mpsc::UnboundedSender<Control>,
    pub(crate) messages: mpsc::Sender<Message>,
    pub(crate) state: watch::Sender<State>,
    pub(crate) ready: oneshot::Sender<Result<(), Error>>,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Runs the client until it closes for good.
pub(crate) async fn run(channels: Channels) {
    let mut driver = Driver::new(channels);
    let error = driver.run().await;
    driver.finish(error);
}

struct Driver {
    options: Options,
    layers: Layers,
    /// `tern_session::Instant::ZERO` on the tokio clock.
    start: TokioInstant,
    commands: mpsc::Receiver<Command>,
    /// Some `Client` handle is still alive (or commands are still queued).
    commands_open: bool,
    control: mpsc::UnboundedReceiver<Control>,
    /// For the [`Acker`]s of delivered messages.
    control_tx: mpsc::UnboundedSender<Control>,
    messages: mpsc::Sender<Message>,
    state: watch::Sender<State>,
    ready: Option<oneshot::Sender<Result<(), Error>>>,
    /// A command the session could not accept yet; while it is here no other
    /// command is taken.
    held: Option<Command>,
    /// Acknowledgements given while there was no connection.
    offline_acks: VecDeque<(AckToken, ReasonCode, Option<Reply<Acked>>)>,
    publishes: BTreeMap<PacketId, Reply<Published>>,
    subscribes: BTreeMap<PacketId, Reply<Subscribed>>,
    unsubscribes: BTreeMap<PacketId, Reply<Unsubscribed>>,
    /// `disconnect` callers, answered when the task ends.
    disconnects: Vec<Reply<()>>,
    /// The application asked to disconnect.
    stopping: bool,
    /// A connection reached CONNACK at least once.
    connected_once: bool,
    /// Reconnect attempts since the last connection that lasted.
    attempt: u32,
    /// When the current connection's CONNACK arrived.
    connected_at: Option<TokioInstant>,
    jitter: Jitter,
    /// A `reauthenticate` caller, answered when the broker's AUTH 0x00
    /// arrives (or the connection ends).
    reauth: Option<Reply<()>>,
}

/// One network connection and the session state machine driving it.
struct Link {
    conn: ClientConnection,
    reader: Reader,
    writer: Writer,
    read_buf: BytesMut,
    write_buf: BytesMut,
    deadline: Option<tern_session::Instant>,
    /// A message the stream had no room for. While it waits, no packet is
    /// handled and the socket is not read. (At most one: each packet yields
    /// at most one message.)
    undelivered: VecDeque<Message>,
    /// Set by the session's `Closed` event.
    closed: Option<CloseReason>,
    /// The I/O error that closed the transport, if any.
    io_error: Option<Arc<io::Error>>,
    /// Overrides the close reason (a packet that could not be encoded).
    fatal: Option<Error>,
}

/// How a connection attempt or a wait between attempts ended early.
enum Interrupted {
    /// Stop the client: the application disconnected or went away.
    Stop,
}

impl Driver {
    fn new(c: Channels) -> Self {
        let jitter = Jitter::new(c.options.reconnect.and_then(|b| b.seed));
        Self {
            options: c.options,
            layers: c.layers,
            start: TokioInstant::now(),
            commands: c.commands,
            commands_open: true,
            control: c.control,
            control_tx: c.control_tx,
            messages: c.messages,
            state: c.state,
            ready: Some(c.ready),
            held: None,
            offline_acks: VecDeque::new(),
            publishes: BTreeMap::new(),
            subscribes: BTreeMap::new(),
            unsubscribes: BTreeMap::new(),
            disconnects: Vec::new(),
            stopping: false,
            connected_once: false,
            attempt: 0,
            connected_at: None,
            jitter,
            reauth: None,
        }
    }

    fn now(&self) -> tern_session::Instant {
        let nanos = self.start.elapsed().as_nanos();
        tern_session::Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn to_tokio(&self, t: tern_session::Instant) -> TokioInstant {
        self.start + Duration::from_nanos(t.as_nanos())
    }

    /// Connects, runs connections and reconnects until the client ends;
    /// returns why (`None`: the application closed it).
    async fn run(&mut self) -> Option<Error> {
        let mut session = ClientSession::new();
        loop {
            self.state.send_replace(State::Connecting);
            let error = match self.establish().await {
                Err(Interrupted::Stop) => return None,
                Ok(Err(e)) => e,
                Ok(Ok((reader, writer))) => {
                    let options = match self.connect_options() {
                        Ok(options) => options,
                        Err(e) => return Some(e),
                    };
                    let conn = ClientConnection::new(self.now(), options, session);
                    let mut link = Link {
                        conn,
                        reader,
                        writer,
                        read_buf: BytesMut::new(),
                        write_buf: BytesMut::new(),
                        deadline: None,
                        undelivered: VecDeque::new(),
                        closed: None,
                        io_error: None,
                        fatal: None,
                    };
                    let reason = self.run_link(&mut link).await;
                    let error = link
                        .fatal
                        .take()
                        .unwrap_or_else(|| Error::from_close(reason.clone(), link.io_error.take()));
                    session = link.conn.into_session();
                    // A local close is the application's, unless enhanced
                    // authentication failed on our side.
                    if matches!(reason, CloseReason::Local(_)) && !matches!(error, Error::Auth(_)) {
                        return None;
                    }
                    error
                }
            };
            if self.stopping {
                return None;
            }
            if !self.connected_once {
                // The first attempt is not retried: `connect` reports it.
                return Some(error);
            }
            let Some(backoff) = self.options.reconnect.filter(|_| error.is_transient()) else {
                return Some(error);
            };
            // Start the backoff again only after a connection that lasted:
            // one the broker accepts and then drops at once (a request it
            // rejects by closing, say) must not be retried at full speed.
            if self
                .connected_at
                .take()
                .is_some_and(|at| at.elapsed() >= backoff.max)
            {
                self.attempt = 0;
            }
            let delay = backoff.delay(self.attempt, self.jitter.next_unit());
            self.attempt = self.attempt.saturating_add(1);
            self.state.send_replace(State::Disconnected {
                error,
                retry_in: delay,
            });
            let sleep = tokio::time::sleep(delay);
            if let Err(Interrupted::Stop) = self.offline(sleep).await {
                return None;
            }
        }
    }

    /// The options for the next connection: after the first, resume the
    /// session when the broker keeps it, and use the identifier it assigned.
    /// With enhanced authentication, a new exchange starts: its first data
    /// goes in the CONNECT.
    fn connect_options(&self) -> Result<ConnectOptions, Error> {
        let mut options = self.options.session.clone();
        if self.connected_once {
            options.clean_start = !self.options.is_persistent();
        }
        if let Some(auth) = &self.options.auth {
            options.properties.authentication_data = auth.start().map_err(Error::Auth)?;
        }
        Ok(options)
    }

    /// The enhanced authentication steps: the broker's AUTH, and the data
    /// of its successful CONNACK. A step our method refuses ends the
    /// connection (DISCONNECT 0x80: a client has no "not authorized").
    fn auth_step(&mut self, link: &mut Link, auth: &tern_codec::Auth) {
        let Some(method) = self.options.auth.clone() else {
            return; // tern-session refuses an AUTH we did not ask for
        };
        let data = auth.properties.authentication_data.as_deref();
        let now = self.now();
        let result = if auth.reason_code == ReasonCode::Success {
            // The end of a re-authentication.
            let result = method.with(|m| m.finish(data));
            if result.is_ok() {
                if let Some(reply) = self.reauth.take() {
                    let _ = reply.send(Ok(()));
                }
            }
            result
        } else {
            method.with(|m| m.step(data)).and_then(|next| {
                link.conn
                    .auth_continue(now, next)
                    .map_err(|e| e.to_string())
            })
        };
        if let Err(why) = result {
            self.auth_failed(link, why);
        }
    }

    fn auth_failed(&mut self, link: &mut Link, why: String) {
        let error = Error::Auth(why);
        if let Some(reply) = self.reauth.take() {
            let _ = reply.send(Err(error.clone()));
        }
        link.fatal = Some(error);
        let _ = link
            .conn
            .disconnect(self.now(), ReasonCode::UnspecifiedError, Default::default());
    }

    /// Opens the transport, within the connect timeout.
    async fn establish(&mut self) -> Result<Result<(Reader, Writer), Error>, Interrupted> {
        let address = self.options.address.clone();
        let layers = self.layers.clone();
        let timeout = self.options.session.connect_timeout;
        let opening = async move {
            match timeout {
                Some(t) => tokio::time::timeout(t, transport::connect(&address, &layers))
                    .await
                    .unwrap_or(Err(Error::Timeout(Timeout::Connect))),
                None => transport::connect(&address, &layers).await,
            }
        };
        self.offline(opening).await
    }

    /// Waits for `future` while there is no connection, still taking
    /// control requests (and holding at most one command).
    async fn offline<F: Future>(&mut self, future: F) -> Result<F::Output, Interrupted> {
        tokio::pin!(future);
        loop {
            tokio::select! {
                out = &mut future => return Ok(out),
                Some(control) = self.control.recv() => match control {
                    Control::Ack { token, reason, reply } => {
                        self.offline_acks.push_back((token, reason, reply));
                    }
                    Control::Disconnect { reply, .. } => {
                        self.disconnects.push(reply);
                        self.stopping = true;
                        return Err(Interrupted::Stop);
                    }
                    Control::Reauthenticate { reply } => {
                        // Not connected: the next connection authenticates anyway.
                        let _ = reply.send(Err(Error::Command(CommandError::NoAuthPending)));
                    }
                },
                command = self.commands.recv(), if self.held.is_none() && self.commands_open => {
                    match command {
                        Some(c) => self.held = Some(c),
                        None => self.commands_open = false,
                    }
                }
                () = self.messages.closed(), if !self.commands_open => {
                    return Err(Interrupted::Stop);
                }
            }
        }
    }

    /// Runs one connection until the session closes it; returns why.
    async fn run_link(&mut self, link: &mut Link) -> CloseReason {
        let now = self.now();
        for (token, reason, reply) in std::mem::take(&mut self.offline_acks) {
            let result = ack_result(link.conn.ack(now, token, reason));
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
        self.drain(link);
        loop {
            if let Some(command) = self.held.take() {
                self.apply(link, command);
            }
            self.handle_frames(link);
            if link.closed.is_some() {
                break;
            }
            let deadline = link.deadline.map(|d| self.to_tokio(d));
            let can_read = link.undelivered.is_empty() && link.write_buf.len() < HIGH_WATER;
            let wants_write = link.writer.wants_write(&link.write_buf);
            let take_commands = self.held.is_none() && self.commands_open;
            // An owned sender, so the permit does not borrow `self`.
            let deliver = (!link.undelivered.is_empty()).then(|| self.messages.clone());
            tokio::select! {
                biased;
                Some(control) = self.control.recv() => self.on_control(link, control),
                written = link.writer.write(&mut link.write_buf), if wants_write => {
                    if let Err(e) = written {
                        link.io_error = Some(Arc::new(e));
                        link.conn.handle_closed(self.now());
                    }
                    self.drain(link);
                }
                permit = reserve(deliver), if !link.undelivered.is_empty() => {
                    // Room for the waiting message (or nobody listens any more;
                    // dropping it then acknowledges it).
                    let message = link.undelivered.pop_front();
                    if let (Ok(permit), Some(message)) = (permit, message) {
                        permit.send(message);
                    }
                }
                read = link.reader.read(&mut link.read_buf), if can_read => {
                    match read {
                        Ok(0) => link.conn.handle_closed(self.now()),
                        Ok(_) => {}
                        Err(e) => {
                            link.io_error = Some(Arc::new(e));
                            link.conn.handle_closed(self.now());
                        }
                    }
                    // The bytes are handled by `handle_frames`, one packet at a time.
                    self.drain(link);
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    link.conn.handle_timeout(self.now());
                    self.drain(link);
                }
                command = self.commands.recv(), if take_commands => match command {
                    Some(command) => self.apply(link, command),
                    None => self.commands_open = false,
                },
                () = self.messages.closed(), if !self.commands_open => {
                    // Every handle and the stream are gone: nobody can use
                    // the connection any more.
                    let _ = link.conn.disconnect(
                        self.now(),
                        ReasonCode::Success,
                        Default::default(),
                    );
                    self.drain(link);
                }
            }
        }
        // Send what is left (a final DISCONNECT), briefly, then close.
        if link.io_error.is_none() {
            let Link {
                writer, write_buf, ..
            } = link;
            let _ = tokio::time::timeout(LINGER, async {
                while writer.wants_write(write_buf) {
                    writer.write(write_buf).await?;
                }
                writer.shutdown().await
            })
            .await;
        }
        link.closed.take().unwrap_or(CloseReason::TransportClosed)
    }

    /// Hands whole packets from the read buffer to the session, one at a
    /// time, while each one's message can be delivered and the write buffer
    /// has room.
    fn handle_frames(&mut self, link: &mut Link) {
        // The session's own limit, so an oversized packet is refused from its
        // header instead of being buffered here first.
        let max = self
            .options
            .session
            .properties
            .maximum_packet_size
            .map_or(tern_codec::MAX_PACKET_SIZE, |m| m.get());
        while link.undelivered.is_empty()
            && link.write_buf.len() < HIGH_WATER
            && link.closed.is_none()
        {
            let now = self.now();
            match check_frame(&link.read_buf, link.conn.version(), max) {
                Ok(FrameStatus::Complete(header)) => {
                    let mut packet = link.read_buf.split_to(header.packet_len());
                    link.conn.handle_bytes(now, &mut packet);
                }
                Ok(FrameStatus::Incomplete { .. }) => return,
                // The session decodes it again and closes with the reason code.
                Err(_) => link.conn.handle_bytes(now, &mut link.read_buf),
            }
            self.drain(link);
        }
    }

    /// The drain rule: transmits, then the timeout, then the events.
    /// An event may answer with a packet (an enhanced authentication
    /// step), so the rule runs again until no event comes.
    fn drain(&mut self, link: &mut Link) {
        loop {
            let now = self.now();
            // The session writes its packets into the buffer itself.
            while link.write_buf.len() < HIGH_WATER {
                if link
                    .conn
                    .write_transmit(now, &mut link.write_buf, usize::MAX)
                    .is_none()
                {
                    break;
                }
            }
            link.deadline = link.conn.poll_timeout();
            let mut any = false;
            while let Some(event) = link.conn.poll_event() {
                any = true;
                self.on_event(link, event);
            }
            if !any {
                return;
            }
        }
    }

    fn on_event(&mut self, link: &mut Link, event: ClientEvent) {
        match event {
            ClientEvent::Connected {
                session_present,
                connack,
            } => {
                if let Some(method) = self.options.auth.clone() {
                    let data = connack.properties.authentication_data.as_deref();
                    if let Err(why) = method.with(|m| m.finish(data)) {
                        // The broker did not prove itself: not connected.
                        self.auth_failed(link, why);
                        return;
                    }
                }
                self.connected_once = true;
                self.connected_at = Some(TokioInstant::now());
                // Reconnect as the client the broker assigned, to resume its session.
                if let Some(id) = &connack.properties.assigned_client_identifier {
                    if self.options.session.client_id.is_empty() {
                        self.options.session.client_id = id.clone();
                    }
                }
                // The state first: `Client::connect` returns on `ready`, and
                // its caller must already see `Connected`.
                self.state.send_replace(State::Connected {
                    session_present,
                    connack,
                });
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            ClientEvent::Message { publish, ack } => {
                let acker = ack.map(|token| Acker::new(token, self.control_tx.clone()));
                let message = Message::new(publish, acker);
                match self.messages.try_send(message) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(m)) => link.undelivered.push_back(m),
                    // Nobody listens; dropping the message acknowledges it.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            ClientEvent::Published {
                packet_id,
                qos,
                reason_code,
            } => {
                if let Some(reply) = self.publishes.remove(&packet_id) {
                    let _ = reply.send(Ok(Published {
                        packet_id: Some(packet_id),
                        qos,
                        reason_code,
                    }));
                }
            }
            ClientEvent::PublishDropped {
                packet_id: Some(id),
            } => {
                if let Some(reply) = self.publishes.remove(&id) {
                    let _ = reply.send(Err(Error::Dropped));
                }
            }
            ClientEvent::Subscribed {
                packet_id,
                reason_codes,
                properties,
            } => {
                if let Some(reply) = self.subscribes.remove(&packet_id) {
                    let _ = reply.send(Ok(Subscribed {
                        reason_codes,
                        properties,
                    }));
                }
            }
            ClientEvent::Unsubscribed {
                packet_id,
                reason_codes,
                properties,
            } => {
                if let Some(reply) = self.unsubscribes.remove(&packet_id) {
                    let _ = reply.send(Ok(Unsubscribed {
                        reason_codes,
                        properties,
                    }));
                }
            }
            ClientEvent::Closed(reason) => {
                if let Some(reply) = self.reauth.take() {
                    let error = link
                        .fatal
                        .clone()
                        .unwrap_or_else(|| Error::from_close(reason.clone(), None));
                    let _ = reply.send(Err(error));
                }
                link.closed = Some(reason);
            }
            ClientEvent::Auth(auth) => self.auth_step(link, &auth),
            _ => {}
        }
    }

    /// Gives a command to the session, or holds it until the session can
    /// take it.
    fn apply(&mut self, link: &mut Link, command: Command) {
        let now = self.now();
        match command {
            Command::Publish { publish, reply } => {
                let qos = publish.qos;
                match link.conn.publish(now, publish.clone()) {
                    Ok(Some(id)) => {
                        self.publishes.insert(id, reply);
                    }
                    Ok(None) => {
                        let _ = reply.send(Ok(Published {
                            packet_id: None,
                            qos,
                            reason_code: ReasonCode::Success,
                        }));
                    }
                    // An empty queue that cannot take it never will.
                    Err(PublishError::QueueFull) if link.conn.session().queue_len() == 0 => {
                        let _ = reply.send(Err(Error::Publish(PublishError::QueueFull)));
                    }
                    Err(
                        PublishError::QueueFull
                        | PublishError::PacketIdsExhausted
                        | PublishError::Closed,
                    ) => self.held = Some(Command::Publish { publish, reply }),
                    Err(e) => {
                        let _ = reply.send(Err(Error::Publish(e)));
                    }
                }
            }
            Command::Subscribe {
                filters,
                properties,
                reply,
            } => match link
                .conn
                .subscribe(now, filters.clone(), properties.clone())
            {
                Ok(id) => {
                    self.subscribes.insert(id, reply);
                }
                Err(CommandError::PacketIdsExhausted | CommandError::Closed) => {
                    self.held = Some(Command::Subscribe {
                        filters,
                        properties,
                        reply,
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Command(e)));
                }
            },
            Command::Unsubscribe {
                filters,
                properties,
                reply,
            } => match link
                .conn
                .unsubscribe(now, filters.clone(), properties.clone())
            {
                Ok(id) => {
                    self.unsubscribes.insert(id, reply);
                }
                Err(CommandError::PacketIdsExhausted | CommandError::Closed) => {
                    self.held = Some(Command::Unsubscribe {
                        filters,
                        properties,
                        reply,
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Command(e)));
                }
            },
        }
        self.drain(link);
    }

    fn on_control(&mut self, link: &mut Link, control: Control) {
        let now = self.now();
        match control {
            Control::Ack {
                token,
                reason,
                reply,
            } => {
                let result = ack_result(link.conn.ack(now, token, reason));
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Control::Disconnect {
                reason,
                properties,
                reply,
            } => match link.conn.disconnect(now, reason, properties) {
                // The caller asked for something the version cannot say,
                // or a session expiry it may not set: nothing happens.
                Err(e @ (CommandError::Invalid(_) | CommandError::SessionExpiryRaisedFromZero)) => {
                    let _ = reply.send(Err(Error::Command(e)));
                }
                _ => {
                    self.stopping = true;
                    self.disconnects.push(reply);
                    // Closing for another reason at the same time: still stop.
                    if link.closed.is_none() {
                        link.closed = Some(CloseReason::Local(reason));
                    }
                }
            },
            Control::Reauthenticate { reply } => {
                let result = match (&self.options.auth, &self.reauth) {
                    (Some(method), None) => method.start().map_err(Error::Auth).and_then(|data| {
                        link.conn.reauthenticate(now, data).map_err(Error::Command)
                    }),
                    _ => Err(Error::Command(CommandError::NoAuthPending)),
                };
                match result {
                    Ok(()) => self.reauth = Some(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
        self.drain(link);
    }

    /// Ends the client: records the state, then answers everything pending.
    fn finish(mut self, error: Option<Error>) {
        self.state.send_replace(State::Closed {
            error: error.clone(),
        });
        let error = error.unwrap_or(Error::Closed);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error.clone()));
        }
        for (_, reply) in std::mem::take(&mut self.publishes) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in std::mem::take(&mut self.subscribes) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in std::mem::take(&mut self.unsubscribes) {
            let _ = reply.send(Err(error.clone()));
        }
        // Requests not yet taken: close the channel so no more arrive.
        self.commands.close();
        let mut waiting: Vec<Command> = self.held.take().into_iter().collect();
        while let Ok(command) = self.commands.try_recv() {
            waiting.push(command);
        }
        for command in waiting {
            match command {
                Command::Publish { reply, .. } => {
                    let _ = reply.send(Err(error.clone()));
                }
                Command::Subscribe { reply, .. } => {
                    let _ = reply.send(Err(error.clone()));
                }
                Command::Unsubscribe { reply, .. } => {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        for (_, _, reply) in self.offline_acks.drain(..) {
            if let Some(reply) = reply {
                let _ = reply.send(Err(Error::Closed));
            }
        }
        self.control.close();
        while let Ok(control) = self.control.try_recv() {
            match control {
                Control::Ack { reply, .. } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(Error::Closed));
                    }
                }
                Control::Disconnect { reply, .. } => self.disconnects.push(reply),
                Control::Reauthenticate { reply } => {
                    let _ = reply.send(Err(Error::Closed));
                }
            }
        }
        for reply in self.disconnects.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }
}

/// A stale token is not a failure: the broker resends that message.
fn ack_result(result: Result<(), AckError>) -> Result<Acked, Error> {
    match result {
        Ok(()) => Ok(Acked::Sent),
        Err(AckError::Stale) => Ok(Acked::Stale),
        Err(e) => Err(Error::Ack(e)),
    }
}

async fn reserve(
    sender: Option<mpsc::Sender<Message>>,
) -> Result<mpsc::OwnedPermit<Message>, mpsc::error::SendError<()>> {
    match sender {
        Some(sender) => sender
            .reserve_owned()
            .await
            .map_err(|_| mpsc::error::SendError(())),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
