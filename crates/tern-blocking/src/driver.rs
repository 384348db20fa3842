//! The driver: one session, the caller's thread reading, a writer thread.
//!
//! The session ([`ClientConnection`]) sits behind a mutex that is never held
//! across I/O. The thread that calls [`Client::next_event`] reads the socket
//! and feeds the session; a writer thread takes the bytes the session has to
//! send and writes them. So a reader is never stuck behind a full socket
//! (which, with a broker that stops reading a client that does not read,
//! would deadlock), and what waits to be sent waits in the session's own
//! bounded queue rather than in a buffer here.

use crate::{AuthMethod, Error, Transport};
use bytes::BytesMut;
use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};
use tern_codec::{
    DisconnectProperties, MqttString, PacketId, Publish, QoS, ReasonCode, SubscribeFilter,
    SubscribeProperties, SubscriptionOptions, UnsubscribeProperties,
};
use tern_session::{
    AckToken, ClientConnection, ClientEvent, ClientSession, CloseReason, ConnectOptions, Instant,
};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// The writer takes at most this much from the session before writing it.
const WRITE_BATCH: usize = 64 * 1024;
/// How long `disconnect` waits for the server to close after DISCONNECT.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A connected client. Its owner's thread receives with [`next_event`];
/// [`Publisher`]s send from other threads.
///
/// [`next_event`]: Client::next_event
#[derive(Debug)]
pub struct Client<T: Transport> {
    shared: Arc<Shared>,
    reader: T,
    input: BytesMut,
    events: VecDeque<ClientEvent>,
    /// Events that arrived while [`Client::connect`] or
    /// [`Client::reauthenticate`] waited for their own; returned first.
    held: VecDeque<ClientEvent>,
    closed: Option<CloseReason>,
    writer: Option<JoinHandle<()>>,
    /// The enhanced authentication method, with `connect_with_auth`.
    auth: Option<Auth>,
}

/// An [`AuthMethod`], shown by its name.
struct Auth(Box<dyn AuthMethod>);

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AuthMethod").field(&self.0.method()).finish()
    }
}

/// Publishes, subscribes and unsubscribes on a [`Client`]'s connection from
/// any thread. Cheap to clone. Outcomes (PUBACK, SUBACK…) arrive as events
/// on the client's thread.
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The session's clock starts here.
    epoch: std::time::Instant,
    state: Mutex<State>,
    /// Signalled whenever the session may have something to send.
    writable: Condvar,
}

#[derive(Debug)]
struct State {
    conn: ClientConnection,
    /// Set when the writer should finish what is queued and stop.
    stopping: bool,
    /// Why the writer stopped early.
    write_error: Option<io::ErrorKind>,
}

impl Shared {
    fn now(&self) -> Instant {
        Instant::from_std(self.epoch, std::time::Instant::now())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the session as it was at
        // the last completed call: keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a command on the session and wakes the writer.
    fn command<R>(&self, f: impl FnOnce(&mut ClientConnection, Instant) -> R) -> R {
        let now = self.now();
        let result = f(&mut self.lock().conn, now);
        self.writable.notify_one();
        result
    }
}

impl<T: Transport> Client<T> {
    /// Sends CONNECT over `stream` and waits for the CONNACK; returns the
    /// client and whether the server had a session (Session Present).
    pub fn connect(stream: T, options: ConnectOptions) -> Result<(Self, bool), Error> {
        Self::connect_with_session(stream, options, ClientSession::new())
    }

    /// As [`connect`](Client::connect), resuming `session` (from
    /// [`into_session`](Client::into_session) of an earlier connection):
    /// its in-flight messages are sent again if the server kept its side.
    pub fn connect_with_session(
        stream: T,
        options: ConnectOptions,
        session: ClientSession,
    ) -> Result<(Self, bool), Error> {
        Self::open(stream, options, session, None)
    }

    /// As [`connect`](Client::connect), logging in with MQTT 5 enhanced
    /// authentication (section 4.12): the CONNECT carries `method`'s name
    /// and first data, each AUTH 0x18 from the server is answered with its
    /// next step, and the CONNACK's data is checked by
    /// [`AuthMethod::finish`]. A refusal by the server is
    /// [`Error::Closed`] with its reason code; one by the method sends
    /// DISCONNECT 0x80 and is [`Error::Auth`].
    pub fn connect_with_auth(
        stream: T,
        mut options: ConnectOptions,
        mut method: impl AuthMethod,
    ) -> Result<(Self, bool), Error> {
        options.properties.authentication_method = Some(MqttString::try_from(method.method())?);
        options.properties.authentication_data =
            crate::auth::start(&mut method).map_err(Error::Auth)?;
        Self::open(
            stream,
            options,
            ClientSession::new(),
            Some(Auth(Box::new(method))),
        )
    }

    fn open(
        stream: T,
        options: ConnectOptions,
        session: ClientSession,
        auth: Option<Auth>,
    ) -> Result<(Self, bool), Error> {
        let writer = stream.try_clone()?;
        let epoch = std::time::Instant::now();
        let shared = Arc::new(Shared {
            epoch,
            state: Mutex::new(State {
                conn: ClientConnection::new(Instant::ZERO, options, session),
                stopping: false,
                write_error: None,
            }),
            writable: Condvar::new(),
        });
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("tern-blocking-writer".into())
            .spawn(move || write_loop(&for_writer, writer))?;
        let mut client = Client {
            shared,
            reader: stream,
            input: BytesMut::with_capacity(READ_CHUNK),
            events: VecDeque::new(),
            held: VecDeque::new(),
            closed: None,
            writer: Some(writer),
            auth,
        };
        loop {
            match client.next_raw()? {
                ClientEvent::Connected {
                    session_present,
                    connack,
                } => {
                    let data = connack.properties.authentication_data.as_deref();
                    if let Some(Err(why)) = client.auth.as_mut().map(|a| a.0.finish(data)) {
                        return Err(client.auth_failed(why));
                    }
                    return Ok((client, session_present));
                }
                ClientEvent::Auth(auth) => {
                    client.auth_step(&auth)?;
                }
                ClientEvent::Closed(reason) => return Err(Error::Closed(reason)),
                other => client.held.push_back(other),
            }
        }
    }

    /// Re-authenticates the open connection with the method given to
    /// [`connect_with_auth`](Client::connect_with_auth) (section 4.12.1):
    /// AUTH 0x19 with its first data, its steps, and the AUTH 0x00 that
    /// ends it, checked by [`AuthMethod::finish`]. Events arriving
    /// meanwhile are kept for [`next_event`](Client::next_event). A
    /// refusal by the server closes the connection ([`Error::Closed`] with
    /// its DISCONNECT's reason code).
    pub fn reauthenticate(&mut self) -> Result<(), Error> {
        let Some(auth) = self.auth.as_mut() else {
            return Err(Error::Auth(
                "no enhanced authentication method (connect_with_auth)".into(),
            ));
        };
        let data = crate::auth::start(&mut *auth.0).map_err(Error::Auth)?;
        self.shared
            .command(|conn, now| conn.reauthenticate(now, data))?;
        loop {
            match self.next_raw()? {
                ClientEvent::Auth(auth) => {
                    if self.auth_step(&auth)? {
                        return Ok(());
                    }
                }
                ClientEvent::Closed(reason) => {
                    self.held.push_back(ClientEvent::Closed(reason.clone()));
                    return Err(Error::Closed(reason));
                }
                other => self.held.push_back(other),
            }
        }
    }

    /// Runs the method's step for the server's AUTH: 0x18 is answered with
    /// AUTH 0x18 (`false`), 0x00 ends a re-authentication (`true`).
    fn auth_step(&mut self, auth: &tern_codec::Auth) -> Result<bool, Error> {
        let Some(method) = self.auth.as_mut() else {
            // tern-session refuses an AUTH nobody asked for.
            return Ok(false);
        };
        let data = auth.properties.authentication_data.as_deref();
        let result = if auth.reason_code == ReasonCode::Success {
            method.0.finish(data).map(|()| true)
        } else {
            method.0.step(data).and_then(|next| {
                self.shared
                    .command(|conn, now| conn.auth_continue(now, next))
                    .map(|()| false)
                    .map_err(|e| e.to_string())
            })
        };
        result.map_err(|why| self.auth_failed(why))
    }

    /// Our method refused a step: DISCONNECT 0x80 (a client has no "not
    /// authorized"), and the error to return.
    fn auth_failed(&mut self, why: String) -> Error {
        let _ = self.shared.command(|conn, now| {
            conn.disconnect(
                now,
                ReasonCode::UnspecifiedError,
                DisconnectProperties::default(),
            )
        });
        Error::Auth(why)
    }

    /// A handle for sending from other threads.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Publishes `payload` on `topic`; see [`Publisher::publish`].
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<bytes::Bytes>,
        qos: QoS,
    ) -> Result<Option<PacketId>, Error> {
        self.publisher().publish(topic, payload, qos)
    }

    /// Subscribes to `filter`; see [`Publisher::subscribe`].
    pub fn subscribe(&self, filter: &str, qos: QoS) -> Result<PacketId, Error> {
        self.publisher().subscribe(filter, qos)
    }

    /// Acknowledges a message delivered with an [`AckToken`] (when
    /// `ConnectOptions::manual_acks` is set).
    pub fn ack(&self, token: AckToken, reason_code: ReasonCode) -> Result<(), Error> {
        Ok(self
            .shared
            .command(|conn, now| conn.ack(now, token, reason_code))?)
    }

    /// Blocks until the next event: a message, an acknowledgement of what
    /// was sent, or `Closed` (after which every call returns
    /// [`Error::Closed`]). Keep alive is handled while waiting; with
    /// enhanced authentication, so are the server's AUTH packets.
    pub fn next_event(&mut self) -> Result<ClientEvent, Error> {
        if let Some(event) = self.held.pop_front() {
            return Ok(event);
        }
        loop {
            match self.next_raw()? {
                ClientEvent::Auth(auth) if self.auth.is_some() => {
                    self.auth_step(&auth)?;
                }
                event => return Ok(event),
            }
        }
    }

    /// The session's next event, as it comes.
    fn next_raw(&mut self) -> Result<ClientEvent, Error> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            if let Some(event) = self.events.pop_front() {
                if let ClientEvent::Closed(reason) = &event {
                    self.closed = Some(reason.clone());
                }
                return Ok(event);
            }
            if let Some(reason) = &self.closed {
                return Err(Error::Closed(reason.clone()));
            }
            let deadline = {
                let mut state = self.shared.lock();
                while let Some(event) = state.conn.poll_event() {
                    self.events.push_back(event);
                }
                if let Some(kind) = state.write_error {
                    return Err(Error::Io(kind.into()));
                }
                state.conn.poll_timeout()
            };
            if !self.events.is_empty() {
                continue;
            }
            let timeout = tern_session::read_timeout(self.shared.now(), deadline);
            self.reader.set_read_timeout(timeout)?;
            let read = self.reader.read(&mut chunk);
            let now = self.shared.now();
            let mut state = self.shared.lock();
            match read {
                Ok(0) => state.conn.handle_closed(now),
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    state.conn.handle_bytes(now, &mut self.input);
                }
                Err(e) if is_timeout(&e) => state.conn.handle_timeout(now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    state.conn.handle_closed(now);
                    return Err(Error::Io(e));
                }
            }
            drop(state);
            self.shared.writable.notify_one();
        }
    }

    /// Sends DISCONNECT (Normal disconnection), waits for it to be written
    /// and for the server to close, and closes the stream.
    pub fn disconnect(mut self) -> Result<(), Error> {
        self.shared.command(|conn, now| {
            conn.disconnect(now, ReasonCode::Success, DisconnectProperties::default())
        })?;
        self.stop_writer();
        // Read until the server closes (bounded), so the socket is never
        // closed with unread input (which would reset the connection).
        let _ = self.reader.set_read_timeout(Some(CLOSE_WAIT));
        let mut chunk = [0u8; READ_CHUNK];
        while matches!(self.reader.read(&mut chunk), Ok(n) if n > 0) {}
        Ok(())
    }

    /// Ends the connection without DISCONNECT (the server publishes the
    /// will) and returns the session, to resume with
    /// [`connect_with_session`](Client::connect_with_session).
    pub fn into_session(mut self) -> ClientSession {
        let now = self.shared.now();
        self.shared.lock().conn.handle_closed(now);
        self.stop_writer();
        let _ = self.reader.shutdown();
        let mut state = self.shared.lock();
        // The connection is closed: what it held is the session's now.
        let placeholder = ClientConnection::new(
            now,
            ConnectOptions::new(MqttString::new()),
            ClientSession::new(),
        );
        std::mem::replace(&mut state.conn, placeholder).into_session()
    }

    fn stop_writer(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.writable.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl<T: Transport> Drop for Client<T> {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let now = self.shared.now();
            self.shared.lock().conn.handle_closed(now);
            self.stop_writer();
            let _ = self.reader.shutdown();
        }
    }
}

impl Publisher {
    /// Publishes `payload` on `topic` at `qos`. Returns the packet
    /// identifier of a QoS 1 or 2 message, whose outcome arrives as a
    /// `Published` event; the message waits in the session's queue while
    /// the server's Receive Maximum or the socket holds it back.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<bytes::Bytes>,
        qos: QoS,
    ) -> Result<Option<PacketId>, Error> {
        let publish = Publish {
            topic: MqttString::try_from(topic)?,
            payload: payload.into(),
            qos,
            ..Publish::default()
        };
        self.publish_message(publish)
    }

    /// Publishes a message with every field chosen by the caller (retain,
    /// MQTT 5 properties).
    pub fn publish_message(&self, publish: Publish) -> Result<Option<PacketId>, Error> {
        Ok(self
            .shared
            .command(|conn, now| conn.publish(now, publish))?)
    }

    /// Subscribes to `filter` with a maximum QoS; the SUBACK arrives as a
    /// `Subscribed` event.
    pub fn subscribe(&self, filter: &str, qos: QoS) -> Result<PacketId, Error> {
        let filter = SubscribeFilter {
            filter: MqttString::try_from(filter)?,
            options: SubscriptionOptions::with_qos(qos),
        };
        self.subscribe_many(vec![filter], SubscribeProperties::default())
    }

    /// Subscribes to several filters with their own options in one SUBSCRIBE.
    pub fn subscribe_many(
        &self,
        filters: Vec<SubscribeFilter>,
        properties: SubscribeProperties,
    ) -> Result<PacketId, Error> {
        Ok(self
            .shared
            .command(|conn, now| conn.subscribe(now, filters, properties))?)
    }

    /// Unsubscribes from `filter`; the UNSUBACK arrives as an
    /// `Unsubscribed` event.
    pub fn unsubscribe(&self, filter: &str) -> Result<PacketId, Error> {
        let filter = MqttString::try_from(filter)?;
        Ok(self.shared.command(|conn, now| {
            conn.unsubscribe(now, vec![filter], UnsubscribeProperties::default())
        })?)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The writer thread: takes what the session has to send, writes it outside
/// the lock, and sleeps until there is more.
fn write_loop<T: Transport>(shared: &Shared, mut stream: T) {
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    loop {
        let finished = {
            let mut state = shared.lock();
            loop {
                let now = shared.now();
                while out.len() < WRITE_BATCH
                    && state
                        .conn
                        .write_transmit(now, &mut out, usize::MAX)
                        .is_some()
                {}
                if !out.is_empty() {
                    break false;
                }
                if state.stopping {
                    break true;
                }
                state = shared
                    .writable
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        if finished {
            // Everything queued before the stop is written: close our side.
            let _ = stream.shutdown_write();
            return;
        }
        if let Err(e) = stream.write_all(&out).and_then(|()| stream.flush()) {
            shared.lock().write_error = Some(e.kind());
            return;
        }
        out.clear();
    }
}
