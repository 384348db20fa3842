//! The application's side: the [`Client`] handle, the request builders, the
//! [`Messages`] stream and the [`Message`]s it yields.

use crate::{Error, Options, driver};
use bytes::Bytes;
use futures_util::Stream;
use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tern_codec::{
    AckProperties, ConnAck, DisconnectProperties, MqttString, PacketId, Publish, PublishProperties,
    PublishPropertiesBox, QoS, ReasonCode, SubscribeFilter, SubscribeProperties, SubscriptionId,
    SubscriptionOptions, UnsubscribeProperties, UserProperty,
};
use tern_session::AckToken;
use tokio::sync::{mpsc, oneshot, watch};

/// A boxed future, as the request builders return from `into_future`.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A request for the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        publish: Publish,
        reply: oneshot::Sender<Result<Published, Error>>,
    },
    Subscribe {
        filters: Vec<SubscribeFilter>,
        properties: SubscribeProperties,
        reply: oneshot::Sender<Result<Subscribed, Error>>,
    },
    Unsubscribe {
        filters: Vec<MqttString>,
        properties: UnsubscribeProperties,
        reply: oneshot::Sender<Result<Unsubscribed, Error>>,
    },
}

/// A request the connection task takes even while it holds back
/// [`Command`]s (because the session's queue is full, or while it
/// reconnects): acknowledgements and disconnecting never wait behind
/// publishing.
#[derive(Debug)]
pub(crate) enum Control {
    Ack {
        token: AckToken,
        reason: ReasonCode,
        reply: Option<oneshot::Sender<Result<Acked, Error>>>,
    },
    Disconnect {
        reason: ReasonCode,
        properties: DisconnectProperties,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Reauthenticate {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// Where the client's connection stands; see [`Client::state_changes`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum State {
    /// Opening a network connection and waiting for CONNACK.
    Connecting,
    /// Connected.
    Connected {
        /// Whether the broker resumed the session.
        session_present: bool,
        /// The broker's CONNACK: its limits, an assigned client identifier, ...
        /// (boxed: it is far larger than the other states).
        connack: Box<ConnAck>,
    },
    /// The connection was lost; the next attempt starts after `retry_in`.
    Disconnected {
        /// Why the last connection (or attempt) ended.
        error: Error,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// Closed for good: after [`Client::disconnect`] (no error), or because
    /// of `error` (reconnecting is off, or cannot help).
    Closed {
        /// Why, unless the application closed it.
        error: Option<Error>,
    },
}

/// The end of a QoS 1 or 2 flow (or the acceptance of a QoS 0 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The packet identifier the message was sent with (QoS 1 and 2).
    pub packet_id: Option<PacketId>,
    /// The QoS it was published at.
    pub qos: QoS,
    /// The broker's reason code from PUBACK or PUBREC (MQTT 5; `Success`
    /// in MQTT 3.1.1 and for QoS 0). Below 0x80 the message was accepted
    /// (0x10 No matching subscribers is a success); 0x80 and above it was
    /// refused.
    pub reason_code: ReasonCode,
}

impl Published {
    /// Whether the broker accepted the message.
    pub fn is_success(&self) -> bool {
        self.reason_code.is_success()
    }
}

/// The SUBACK for a [`Client::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// One per filter, in order: the granted QoS (`Success`, `GrantedQos1`,
    /// `GrantedQos2`) or why the filter was refused (0x80 and above).
    pub reason_codes: Vec<ReasonCode>,
    /// The Reason String and User Properties (MQTT 5).
    pub properties: AckProperties,
}

/// The UNSUBACK for a [`Client::unsubscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribed {
    /// One per filter, in order (always `Success` in MQTT 3.1.1, whose
    /// UNSUBACK carries no reason codes).
    pub reason_codes: Vec<ReasonCode>,
    /// The Reason String and User Properties (MQTT 5).
    pub properties: AckProperties,
}

/// A cheap-to-clone handle to one MQTT connection.
///
/// [`Client::connect`] spawns a task that owns the network connection and
/// the [`tern_session::ClientConnection`], and returns the handle and the
/// stream of incoming [`Messages`]. Every method sends a request to that
/// task over a bounded channel.
///
/// # Reconnecting
///
/// With [`Options::reconnect`] set (the default), a lost connection is
/// opened again after an exponential backoff with jitter, and the session
/// carries over: unacknowledged messages are sent again by tern-session,
/// futures of pending requests stay pending and complete when their flow
/// completes on the new connection, and if the broker lost the session its
/// subscriptions are made again. Reconnects resume the session (Clean Start
/// 0) when it is persistent ([`Options::is_persistent`]); otherwise they
/// start clean and unacknowledged messages go again as new ones.
///
/// The first connection is not retried: [`Client::connect`] returns its
/// error. Later, a refusal that retrying cannot change (bad credentials, not
/// authorised, banned, ...) and a DISCONNECT with 0x8E Session taken over
/// end the client: see [`State::Closed`]. While reconnecting, new requests
/// wait (bounded by [`Options::command_capacity`]).
///
/// The connection task ends after [`Client::disconnect`], after an error
/// that ends the client, or when every `Client` handle and the [`Messages`]
/// stream are dropped (it then disconnects normally).
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    control: mpsc::UnboundedSender<Control>,
    state: watch::Receiver<State>,
}

impl Client {
    /// Connects to the broker and waits for its CONNACK.
    ///
    /// Returns the handle and the stream of incoming messages. Must be called
    /// inside a tokio runtime (it spawns the connection task).
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`], [`Error::WebSocket`], [`Error::Timeout`],
    /// [`Error::ConnectionRefused`] with the broker's reason code, ...: the
    /// first attempt is never retried. [`Error::InvalidOptions`] before
    /// anything is sent, for options that break a rule of the CONNECT
    /// packet (say, an MQTT 3.1.1 persistent session without a client
    /// identifier).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the attempt: the task stops and closes
    /// whatever connection it opened.
    pub async fn connect(options: Options) -> Result<(Client, Messages), Error> {
        // Refused before anything is sent [MQTT-3.1.3-7].
        options.session.validate().map_err(Error::InvalidOptions)?;
        let layers = crate::transport::Layers {
            // Files are read now, so a bad one is reported before anything
            // is sent.
            #[cfg(feature = "tls")]
            tls: match options.address.tls {
                true => Some(options.tls.build()?),
                false => None,
            },
            connector: options.connector.clone(),
        };
        let (commands, commands_rx) = mpsc::channel(options.command_capacity.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        let (messages_tx, messages_rx) = mpsc::channel(options.message_capacity.max(1));
        let (state_tx, state) = watch::channel(State::Connecting);
        let (ready_tx, ready_rx) = oneshot::channel();
        let client = Client {
            commands,
            control: control.clone(),
            state,
        };
        let messages = Messages { rx: messages_rx };
        tokio::spawn(driver::run(driver::Channels {
            options,
            layers,
            commands: commands_rx,
            control: control_rx,
            control_tx: control.clone(),
            messages: messages_tx,
            state: state_tx,
            ready: ready_tx,
        }));
        match ready_rx.await {
            Ok(Ok(())) => Ok((client, messages)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Publishes `payload` to `topic`. Await the result (or add MQTT 5
    /// properties first with the [`PublishBuilder`] methods).
    ///
    /// The future completes when the QoS flow does: at once for QoS 0 (the
    /// message is queued), at PUBACK for QoS 1, at PUBCOMP for QoS 2 (or at
    /// a PUBREC that refuses the message), with the broker's reason code.
    /// It waits while the session's queue is full (the in-flight window is
    /// bounded by the broker's Receive Maximum) and while reconnecting;
    /// across a reconnect the flow continues and the future completes once.
    /// It never waits forever on a dead connection: without reconnecting it
    /// fails with the connection's error; with reconnecting it waits for the
    /// broker to come back, so wrap it in `tokio::time::timeout` to bound that.
    ///
    /// ```no_run
    /// # async fn f(client: tern_client::Client) -> Result<(), tern_client::Error> {
    /// use tern_client::QoS;
    ///
    /// let done = client.publish("sensors/17/temp", "21.5", QoS::ExactlyOnce, false).await?;
    /// assert!(done.is_success(), "refused: {}", done.reason_code);
    /// client
    ///     .publish("sensors/17/temp", "21.6", QoS::AtLeastOnce, true)
    ///     .message_expiry(3600)
    ///     .user_property("unit", "celsius")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe in the sense that retrying is harmless: once the
    /// request has been handed to the connection task (the first poll after
    /// there is room in the request channel), dropping the future does not
    /// withdraw the message; it is still delivered, and only the completion
    /// is lost. Dropped before that, nothing is sent.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> PublishBuilder {
        PublishBuilder {
            client: self.clone(),
            publish: MqttString::try_from(topic)
                .map(|topic| Publish {
                    topic,
                    qos,
                    retain,
                    payload: payload.into(),
                    ..Publish::default()
                })
                .map_err(Error::from),
        }
    }

    /// Publishes without waiting: the message is handed to the connection
    /// task at once if its request queue has room, and
    /// [`Error::Backpressure`] says when it has not, so a producer can pipeline
    /// many QoS 1 or 2 messages from one task without spawning a task per
    /// publish, and decide itself what to do when the broker or the network
    /// cannot keep up. The returned [`PendingPublish`] completes with the
    /// QoS flow, as [`publish`](Self::publish)'s future does; dropping it
    /// does not withdraw the message.
    ///
    /// ```no_run
    /// # async fn f(client: tern_client::Client) -> Result<(), tern_client::Error> {
    /// use tern_client::{Error, QoS};
    ///
    /// let mut pending = Vec::new();
    /// for n in 0..1000 {
    ///     match client.try_publish("counter", n.to_string(), QoS::AtLeastOnce, false) {
    ///         Ok(p) => pending.push(p),
    ///         // Full: wait for the oldest to finish, then go on.
    ///         Err(Error::Backpressure) => {
    ///             pending.remove(0).await?;
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// for p in pending {
    ///     p.await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PendingPublish, Error> {
        self.publish(topic, payload, qos, retain).try_send()
    }

    /// A publish request for a message already in hand (a received one
    /// being forwarded, say): its topic, payload, QoS, retain flag and
    /// properties are sent as they are, without checking or copying the
    /// topic again. Its packet identifier and DUP flag are the session's to
    /// set, and are ignored.
    pub fn publish_message(&self, publish: Publish) -> PublishBuilder {
        PublishBuilder {
            client: self.clone(),
            publish: Ok(fresh(publish)),
        }
    }

    /// [`try_publish`](Self::try_publish) for a message already in hand
    /// (see [`publish_message`](Self::publish_message)). When the request
    /// queue is full ([`Error::Backpressure`]) or the client is closed, the
    /// message comes back with the error, so a caller can keep it for later
    /// without having cloned it.
    ///
    /// # Errors
    ///
    /// As [`PublishBuilder::try_send`], with the message.
    pub fn try_publish_message(
        &self,
        publish: Publish,
    ) -> Result<PendingPublish, (Error, Publish)> {
        match self.commands.try_reserve() {
            Ok(permit) => {
                let (reply, result) = oneshot::channel();
                permit.send(Command::Publish {
                    publish: fresh(publish),
                    reply,
                });
                Ok(PendingPublish {
                    result,
                    client: self.clone(),
                })
            }
            Err(mpsc::error::TrySendError::Full(())) => Err((Error::Backpressure, publish)),
            Err(mpsc::error::TrySendError::Closed(())) => Err((self.closed_error(), publish)),
        }
    }

    /// Subscribes to one or more filters, each given as `(filter, QoS)`,
    /// `(filter, SubscriptionOptions)` or a [`SubscribeFilter`]. The future
    /// completes with the SUBACK: one reason code per filter.
    ///
    /// ```no_run
    /// # async fn f(client: tern_client::Client) -> Result<(), tern_client::Error> {
    /// use tern_client::QoS;
    ///
    /// let suback = client
    ///     .subscribe([("sensors/+/temp", QoS::AtLeastOnce), ("alerts/#", QoS::ExactlyOnce)])
    ///     .await?;
    /// for code in &suback.reason_codes {
    ///     assert!(code.is_success(), "refused: {code}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As for [`publish`](Self::publish): once handed over, the SUBSCRIBE is
    /// sent whether or not the future is still there.
    pub fn subscribe<I>(&self, filters: I) -> SubscribeBuilder
    where
        I: IntoIterator,
        I::Item: IntoFilter,
    {
        SubscribeBuilder {
            client: self.clone(),
            filters: filters.into_iter().map(IntoFilter::into_filter).collect(),
            properties: SubscribeProperties::default(),
        }
    }

    /// Unsubscribes from one or more filters. The future completes with the
    /// UNSUBACK: one reason code per filter.
    ///
    /// # Cancel safety
    ///
    /// As for [`publish`](Self::publish).
    pub fn unsubscribe<I>(&self, filters: I) -> UnsubscribeBuilder
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        UnsubscribeBuilder {
            client: self.clone(),
            filters: filters
                .into_iter()
                .map(|f| MqttString::try_from(f.as_ref()).map_err(Error::from))
                .collect(),
            properties: UnsubscribeProperties::default(),
        }
    }

    /// Disconnects normally (or with the reason set on the builder, for
    /// example 0x04 Disconnect with Will Message) and closes the client. The
    /// future completes once DISCONNECT has been written and the connection
    /// closed. Pending `publish`, `subscribe` and `unsubscribe` futures end
    /// with [`Error::Closed`]: await them first to be sure of their outcome.
    /// Disconnecting a client that is already closed does nothing.
    ///
    /// # Cancel safety
    ///
    /// The request is sent when the builder is awaited (first poll);
    /// dropping the future after that still disconnects.
    pub fn disconnect(&self) -> DisconnectBuilder {
        DisconnectBuilder {
            client: self.clone(),
            reason: ReasonCode::Success,
            properties: DisconnectProperties::default(),
        }
    }

    /// Re-authenticates the connection with the [`Options::enhanced_auth`]
    /// method (MQTT 5 AUTH 0x19 [MQTT-4.12.1-1]): completes when the broker
    /// accepted (and, for SCRAM, proved itself). If the broker refuses, it
    /// disconnects [MQTT-4.12.1-2] and this returns that error (the client
    /// then reconnects as its options say, authenticating afresh).
    /// [`Error::Command`] with `NoAuthPending` without a method, while not
    /// connected, or while a re-authentication is already under way.
    ///
    /// [`Options::enhanced_auth`]: crate::Options::enhanced_auth
    pub async fn reauthenticate(&self) -> Result<(), Error> {
        let (reply, result) = oneshot::channel();
        if self
            .control
            .send(Control::Reauthenticate { reply })
            .is_err()
        {
            return Err(self.closed_error());
        }
        result.await.unwrap_or_else(|_| Err(self.closed_error()))
    }

    /// Where the connection stands now.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of [`State`]: await
    /// `changed()` on it, or `wait_for` a state.
    pub fn state_changes(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Why the client is closed, for a request that found it closed.
    fn closed_error(&self) -> Error {
        match &*self.state.borrow() {
            State::Closed { error: Some(e) } => e.clone(),
            _ => Error::Closed,
        }
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (reply, result) = oneshot::channel();
        if self.commands.send(make(reply)).await.is_err() {
            return Err(self.closed_error());
        }
        match result.await {
            Ok(r) => r,
            Err(_) => Err(self.closed_error()),
        }
    }
}

/// Something [`Client::subscribe`] accepts as a filter.
pub trait IntoFilter {
    /// The filter with its options, or why the string is not valid.
    fn into_filter(self) -> Result<SubscribeFilter, Error>;
}

impl<S: AsRef<str>> IntoFilter for (S, QoS) {
    fn into_filter(self) -> Result<SubscribeFilter, Error> {
        (self.0, SubscriptionOptions::with_qos(self.1)).into_filter()
    }
}

impl<S: AsRef<str>> IntoFilter for (S, SubscriptionOptions) {
    fn into_filter(self) -> Result<SubscribeFilter, Error> {
        Ok(SubscribeFilter {
            filter: MqttString::try_from(self.0.as_ref())?,
            options: self.1,
        })
    }
}

impl IntoFilter for SubscribeFilter {
    fn into_filter(self) -> Result<SubscribeFilter, Error> {
        Ok(self)
    }
}

/// Checks a filter against tern-topic's rules before it is sent.
fn check_filter(filter: &MqttString) -> Result<(), Error> {
    tern_topic::SubscriptionFilter::parse(filter.as_shared_bytes().clone())
        .map(drop)
        .map_err(|error| Error::InvalidFilter {
            filter: filter.to_string(),
            error,
        })
}

/// A message to publish as the session will number it: no packet
/// identifier, no DUP flag.
fn fresh(mut publish: Publish) -> Publish {
    publish.packet_id = None;
    publish.dup = false;
    publish
}

fn user_property(key: &str, value: &str) -> Result<UserProperty, Error> {
    Ok(UserProperty::new(
        MqttString::try_from(key)?,
        MqttString::try_from(value)?,
    ))
}

/// A publish request; await it (it implements [`IntoFuture`]), after adding
/// MQTT 5 properties if needed. See [`Client::publish`].
#[must_use = "nothing is published until the builder is awaited"]
#[derive(Debug)]
pub struct PublishBuilder {
    client: Client,
    publish: Result<Publish, Error>,
}

impl PublishBuilder {
    fn edit(mut self, f: impl FnOnce(&mut PublishProperties) -> Result<(), Error>) -> Self {
        if let Ok(p) = &mut self.publish {
            if let Err(e) = f(&mut p.properties) {
                self.publish = Err(e);
            }
        }
        self
    }

    /// Replaces all MQTT 5 properties (ignored by MQTT 3.1.1).
    pub fn properties(self, properties: PublishProperties) -> Self {
        self.edit(|p| {
            *p = properties;
            Ok(())
        })
    }

    /// Adds a User Property.
    pub fn user_property(self, key: &str, value: &str) -> Self {
        self.edit(|p| {
            p.user_properties.push(user_property(key, value)?);
            Ok(())
        })
    }

    /// The Message Expiry Interval in seconds.
    pub fn message_expiry(self, seconds: u32) -> Self {
        self.edit(|p| {
            p.message_expiry_interval = Some(seconds);
            Ok(())
        })
    }

    /// The Content Type.
    pub fn content_type(self, content_type: &str) -> Self {
        self.edit(|p| {
            p.content_type = Some(MqttString::try_from(content_type)?);
            Ok(())
        })
    }

    /// The Response Topic.
    pub fn response_topic(self, topic: &str) -> Self {
        self.edit(|p| {
            p.response_topic = Some(MqttString::try_from(topic)?);
            Ok(())
        })
    }

    /// The Correlation Data.
    pub fn correlation_data(self, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        self.edit(|p| {
            p.correlation_data = Some(data);
            Ok(())
        })
    }
}

impl PublishBuilder {
    /// Hands the message to the connection task without waiting, as
    /// [`Client::try_publish`] does; the returned [`PendingPublish`] completes
    /// as awaiting the builder would have, and may be dropped unawaited.
    ///
    /// # Errors
    ///
    /// [`Error::Backpressure`] when the request queue is full (the message
    /// is not taken: retry later, or await [`Client::publish`] to wait for
    /// room); the client's error once it is closed; a bad topic or property.
    pub fn try_send(self) -> Result<PendingPublish, Error> {
        let publish = self.publish?;
        let (reply, result) = oneshot::channel();
        match self
            .client
            .commands
            .try_send(Command::Publish { publish, reply })
        {
            Ok(()) => Ok(PendingPublish {
                result,
                client: self.client,
            }),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Error::Backpressure),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.client.closed_error()),
        }
    }
}

/// A publish handed over by [`Client::try_publish`] or
/// [`PublishBuilder::try_send`]; await it for the end of its QoS flow, or
/// drop it: the message is sent either way.
#[derive(Debug)]
pub struct PendingPublish {
    result: oneshot::Receiver<Result<Published, Error>>,
    client: Client,
}

impl Future for PendingPublish {
    type Output = Result<Published, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.result).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.client.closed_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl IntoFuture for PublishBuilder {
    type Output = Result<Published, Error>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let publish = self.publish?;
            self.client
                .request(|reply| Command::Publish { publish, reply })
                .await
        })
    }
}

/// A subscribe request; await it. See [`Client::subscribe`].
#[must_use = "nothing is sent until the builder is awaited"]
#[derive(Debug)]
pub struct SubscribeBuilder {
    client: Client,
    filters: Result<Vec<SubscribeFilter>, Error>,
    properties: SubscribeProperties,
}

impl SubscribeBuilder {
    /// The Subscription Identifier (MQTT 5): messages matched by these
    /// filters carry it in their properties.
    pub fn subscription_id(mut self, id: SubscriptionId) -> Self {
        self.properties.subscription_identifier = Some(id);
        self
    }

    /// Adds a User Property (MQTT 5).
    pub fn user_property(mut self, key: &str, value: &str) -> Self {
        match user_property(key, value) {
            Ok(p) => self.properties.user_properties.push(p),
            Err(e) => self.filters = Err(e),
        }
        self
    }

    /// Replaces all MQTT 5 properties.
    pub fn properties(mut self, properties: SubscribeProperties) -> Self {
        self.properties = properties;
        self
    }
}

impl IntoFuture for SubscribeBuilder {
    type Output = Result<Subscribed, Error>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let filters = self.filters?;
            for f in &filters {
                check_filter(&f.filter)?;
            }
            let properties = self.properties;
            self.client
                .request(|reply| Command::Subscribe {
                    filters,
                    properties,
                    reply,
                })
                .await
        })
    }
}

/// An unsubscribe request; await it. See [`Client::unsubscribe`].
#[must_use = "nothing is sent until the builder is awaited"]
#[derive(Debug)]
pub struct UnsubscribeBuilder {
    client: Client,
    filters: Result<Vec<MqttString>, Error>,
    properties: UnsubscribeProperties,
}

impl UnsubscribeBuilder {
    /// Adds a User Property (MQTT 5).
    pub fn user_property(mut self, key: &str, value: &str) -> Self {
        match user_property(key, value) {
            Ok(p) => self.properties.user_properties.push(p),
            Err(e) => self.filters = Err(e),
        }
        self
    }

    /// Replaces all MQTT 5 properties.
    pub fn properties(mut self, properties: UnsubscribeProperties) -> Self {
        self.properties = properties;
        self
    }
}

impl IntoFuture for UnsubscribeBuilder {
    type Output = Result<Unsubscribed, Error>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let filters = self.filters?;
            for f in &filters {
                check_filter(f)?;
            }
            let properties = self.properties;
            self.client
                .request(|reply| Command::Unsubscribe {
                    filters,
                    properties,
                    reply,
                })
                .await
        })
    }
}

/// A disconnect request; await it. See [`Client::disconnect`].
#[must_use = "nothing is sent until the builder is awaited"]
#[derive(Debug)]
pub struct DisconnectBuilder {
    client: Client,
    reason: ReasonCode,
    properties: DisconnectProperties,
}

impl DisconnectBuilder {
    /// The reason code (MQTT 5): 0x04 Disconnect with Will Message has the
    /// broker publish the will. MQTT 3.1.1 cannot carry one.
    pub fn reason(mut self, reason: ReasonCode) -> Self {
        self.reason = reason;
        self
    }

    /// A new Session Expiry Interval (MQTT 5; it cannot be raised from 0).
    pub fn session_expiry(mut self, seconds: u32) -> Self {
        self.properties.session_expiry_interval = Some(seconds);
        self
    }

    /// Replaces all MQTT 5 properties.
    pub fn properties(mut self, properties: DisconnectProperties) -> Self {
        self.properties = properties;
        self
    }
}

impl IntoFuture for DisconnectBuilder {
    type Output = Result<(), Error>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (reply, result) = oneshot::channel();
            let control = Control::Disconnect {
                reason: self.reason,
                properties: self.properties,
                reply,
            };
            if self.client.control.send(control).is_err() {
                // Already closed: there is nothing left to disconnect.
                return Ok(());
            }
            // The task answers once DISCONNECT is written; if it ended
            // first, the client is closed either way.
            result.await.unwrap_or(Ok(()))
        })
    }
}

/// The stream of incoming application messages.
///
/// Bounded: while [`Options::message_capacity`] messages wait here, the
/// connection task stops reading the network connection, so a slow consumer
/// slows the broker down instead of growing memory. (The broker's PINGRESP
/// then waits too: a consumer that stalls for longer than about twice the
/// keep alive makes the connection time out and reconnect. Unacknowledged
/// QoS 1 and 2 messages are delivered again; nothing is lost.)
///
/// The stream ends when the client closes for good.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Message>,
}

impl Messages {
    /// The next message, or `None` once the client is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is only taken when the future completes.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

impl Stream for Messages {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}

/// An incoming application message.
#[derive(Debug)]
#[non_exhaustive]
pub struct Message {
    /// The topic (resolved from any topic alias).
    pub topic: MqttString,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was delivered at.
    pub qos: QoS,
    /// Whether it was a retained message (MQTT 5: as the subscription's
    /// Retain As Published option says).
    pub retain: bool,
    /// Whether the broker marked it as a possible duplicate.
    pub dup: bool,
    /// The MQTT 5 properties (user properties, subscription identifiers,
    /// content type, response topic, ...), behind one pointer that is not
    /// allocated when there are none; read them as a `PublishProperties`
    /// (`message.properties.content_type`).
    pub properties: PublishPropertiesBox,
    acker: Option<Acker>,
}

// A message is moved through the client's bounded channel: it stays small
// (104 bytes; 256 with the properties inline).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Message>() <= 104);

impl From<Publish> for Message {
    /// A message with nothing to acknowledge (for tests of code that
    /// consumes messages, for example).
    fn from(publish: Publish) -> Self {
        Message::new(publish, None)
    }
}

impl Message {
    pub(crate) fn new(publish: Publish, acker: Option<Acker>) -> Self {
        Self {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            dup: publish.dup,
            properties: publish.properties,
            acker,
        }
    }

    /// Whether this message waits for [`ack`](Self::ack) (manual
    /// acknowledgement is on, it is QoS 1 or 2, and it was not yet acknowledged).
    pub fn needs_ack(&self) -> bool {
        self.acker.is_some()
    }

    /// Acknowledges the message with `reason` (MQTT 5: for example 0x87 Not
    /// authorized refuses it; MQTT 3.1.1 cannot carry a reason, any reason
    /// acknowledges). Only with [`Options::manual_acks`]; otherwise, and for
    /// QoS 0, there is nothing to acknowledge and the future is `Ok` at once.
    ///
    /// Acknowledgements leave in the order the messages arrived, whatever
    /// order they are given in; a message that is dropped unacknowledged is
    /// acknowledged with `Success` then, so it cannot hold up the others.
    ///
    /// The future says what became of it ([`Acked`]): sent, nothing to do,
    /// or stale (the message came on an earlier connection, so the broker
    /// will send it again and this acknowledgement has nothing left to
    /// acknowledge; not a failure, just skip the message or wait for the
    /// resend). It fails only for a reason code that cannot acknowledge a
    /// PUBLISH ([`Error::Ack`]) or a closed client.
    ///
    /// # Cancel safety
    ///
    /// The acknowledgement is handed to the connection task when `ack` is
    /// called, not when the future is polled; the future only reports what
    /// the session did with it. Dropping it is harmless.
    pub fn ack(&mut self, reason: ReasonCode) -> BoxFuture<Result<Acked, Error>> {
        match self.acker.take() {
            Some(acker) => acker.ack(reason),
            None => Box::pin(async { Ok(Acked::NothingToDo) }),
        }
    }

    /// Takes the acknowledgement handle, to acknowledge later (after the
    /// message has been processed elsewhere, say).
    pub fn take_acker(&mut self) -> Option<Acker> {
        self.acker.take()
    }
}

/// What became of an acknowledgement ([`Message::ack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acked {
    /// Queued to leave in the order the messages arrived.
    Sent,
    /// Nothing to acknowledge: QoS 0, automatic acknowledgement, or already
    /// acknowledged through this message.
    NothingToDo,
    /// The message came on an earlier connection; the broker sends it again
    /// (with DUP), and that copy is the one to acknowledge.
    Stale,
}

/// The right to acknowledge one message (manual acknowledgement).
///
/// Dropping it unused acknowledges the message with `Success`.
#[derive(Debug)]
pub struct Acker {
    token: AckToken,
    control: mpsc::UnboundedSender<Control>,
    used: bool,
}

impl Acker {
    pub(crate) fn new(token: AckToken, control: mpsc::UnboundedSender<Control>) -> Self {
        Self {
            token,
            control,
            used: false,
        }
    }

    /// The message's packet identifier.
    pub fn packet_id(&self) -> PacketId {
        self.token.packet_id()
    }

    /// Acknowledges with `reason`; see [`Message::ack`].
    pub fn ack(mut self, reason: ReasonCode) -> BoxFuture<Result<Acked, Error>> {
        self.used = true;
        let (reply, result) = oneshot::channel();
        let sent = self.send(reason, Some(reply));
        Box::pin(async move {
            if !sent {
                return Err(Error::Closed);
            }
            result.await.unwrap_or(Err(Error::Closed))
        })
    }

    fn send(
        &self,
        reason: ReasonCode,
        reply: Option<oneshot::Sender<Result<Acked, Error>>>,
    ) -> bool {
        self.control
            .send(Control::Ack {
                token: self.token,
                reason,
                reply,
            })
            .is_ok()
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        if !self.used {
            self.send(ReasonCode::Success, None);
        }
    }
}
