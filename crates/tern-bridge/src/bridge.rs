//! One bridge: its two clients, its subscriptions, its notifications and
//! its two pumps, started again after `restart_timeout` if the remote ends
//! it for good (a refusal that retrying cannot change, a session taken over).

use crate::{Status, pump, topics::Mapping};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tern_broker::server::{
    BridgeDirection, BridgeSettings, BridgeStats, LocalConnector,
    bridge_settings::{BridgeProtocol, split_address},
};
use tern_client::{
    Address, Backoff, BoxStream, Client, Error, Message, MqttString, Options, ProtocolVersion, QoS,
    ReasonCode, RetainHandling, State, SubscribeFilter, SubscriptionId, SubscriptionOptions,
    TlsOptions, Will, codec::UserProperties,
};
use tokio::sync::{oneshot, watch};

/// In-flight QoS 1 and 2 messages the local broker may send the bridge.
const LOCAL_RECEIVE_MAXIMUM: u16 = u16::MAX;

/// Messages each client may hold for its pump.
const MESSAGE_CAPACITY: usize = 1024;

/// The connected notification's payload, and the will's.
const UP: &str = "1";
const DOWN: &str = "0";

/// Why a bridge stops, which decides what becomes of its local session
/// (the messages queued for it).
#[derive(Debug, Clone)]
pub(crate) enum Stop {
    /// The broker shuts down: the session stays, for the next start.
    Shutdown,
    /// The bridge was removed from the settings: its session goes.
    Remove,
    /// The bridge is replaced by a new configuration of the same name: the
    /// session (and what is queued in it) carries over, without the local
    /// subscriptions the new configuration no longer has.
    Replace {
        /// The local filters of the new configuration's `out` topics.
        keep: Vec<String>,
    },
}

/// Runs the bridge until `stop` fires; then publishes the 0 notification
/// and disconnects both sides.
pub(crate) async fn run(
    settings: BridgeSettings,
    local: LocalConnector,
    status: watch::Sender<Status>,
    local_ready: watch::Sender<bool>,
    counters: Arc<BridgeStats>,
    mut stop: oneshot::Receiver<Stop>,
) {
    let name = settings.name.clone();
    let mut attempt = 0u32;
    loop {
        let (stop_session, stopped) = oneshot::channel();
        let session = run_session(&settings, &local, &status, &local_ready, &counters, stopped);
        tokio::pin!(session);
        let ended = tokio::select! {
            ended = &mut session => ended,
            why = &mut stop => {
                let _ = stop_session.send(why.unwrap_or(Stop::Shutdown));
                let _ = session.await;
                counters.disconnected();
                let _ = status.send(Status::Stopped);
                return;
            }
        };
        // Whatever became of the first attempt, nobody waits for it now.
        local_ready.send_replace(true);
        match ended {
            Ok(()) => tracing::info!(bridge = %name, "bridge ended"),
            Err(e) => tracing::warn!(bridge = %name, "bridge failed: {e}"),
        }
        counters.disconnected();
        let _ = status.send(Status::Down);
        let delay = backoff(&settings).delay(attempt, unit());
        attempt = attempt.saturating_add(1);
        tracing::info!(bridge = %name, "bridge restarting in {delay:?}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            why = &mut stop => {
                // Between sessions: a short local connection settles it.
                if let (Ok(why), Ok(options)) = (why, local_options(&settings, local.clone())) {
                    if let Ok((local, _rx)) = Client::connect(options).await {
                        settle(&settings, &local, &why).await;
                    }
                }
                counters.disconnected();
                let _ = status.send(Status::Stopped);
                return;
            }
        }
    }
}

/// Ends the local side as `why` asks: drops the subscriptions the next
/// configuration does not have, or the whole session.
async fn settle(s: &BridgeSettings, local: &Client, why: &Stop) {
    match why {
        Stop::Shutdown => {
            let _ = local.disconnect().await;
        }
        Stop::Remove => {
            tracing::info!(bridge = %s.name, "bridge removed: its local session ends");
            let _ = local.disconnect().session_expiry(0).await;
        }
        Stop::Replace { keep } => {
            let stale: Vec<String> = s
                .topic
                .iter()
                .filter(|t| t.direction.outbound())
                .map(|t| t.local_filter())
                .filter(|f| !keep.contains(f))
                .collect();
            if !stale.is_empty() {
                let _ = local.unsubscribe(stale).await;
            }
            let _ = local.disconnect().await;
        }
    }
}

/// The bridge's two connections, for as long as both last.
async fn run_session(
    s: &BridgeSettings,
    connector: &LocalConnector,
    status: &watch::Sender<Status>,
    local_ready: &watch::Sender<bool>,
    counters: &Arc<BridgeStats>,
    mut stop: oneshot::Receiver<Stop>,
) -> Result<(), Error> {
    let name = s.name.as_str();
    let mappings: Arc<Vec<Mapping>> = Arc::new(s.topic.iter().filter_map(Mapping::new).collect());

    // The local side first: its persistent session is the bridge's
    // outgoing queue from here on, whether the remote is up or not.
    let (local, local_messages) = Client::connect(local_options(s, connector.clone())?).await?;
    // A resumed session's messages come before the SUBACKs and while the
    // remote is away: they are held here (unacknowledged) from the start,
    // or the local client, its channel full, would stop reading and the
    // bridge would wait for a SUBACK it never reads.
    let mut held = pump::Held::new(local_messages);
    for (i, m) in mappings.iter().enumerate() {
        if m.topic.direction.outbound() {
            // No Local: what the bridge publishes here (from the remote)
            // does not come back to it.
            let filter = m.topic.local_filter();
            held.during(subscribe(&local, filter, m.topic.qos, true, i))
                .await?;
        }
    }
    local_ready.send_replace(true);

    // Not connected yet, as far as this broker's clients are concerned.
    if s.notifications {
        let _ = local
            .publish(&s.notification_topic(), DOWN, QoS::AtLeastOnce, true)
            .try_send();
    }
    // The remote: tried until it answers (the client reconnects by itself
    // after that).
    let _ = status.send(Status::Connecting);
    let mut attempt = 0;
    // mosquitto's try_private (3.1.1), until the remote refuses it.
    let mut private = s.try_private && s.protocol == BridgeProtocol::V3_1_1;
    let connected = held.during(async { loop {
        let connect = Client::connect(remote_options(s, private)?);
        tokio::select! {
            connected = connect => match connected {
                Ok(pair) => break Ok::<_, Error>(Some(pair)),
                Err(Error::ConnectionRefused(ReasonCode::UnsupportedProtocolVersion)) if private => {
                    // It does not know the mark: plain 3.1.1 from now on
                    // (for this session), as mosquitto falls back.
                    tracing::info!(bridge = name, "the remote refused try_private: connecting as plain MQTT 3.1.1");
                    private = false;
                }
                Err(e) => {
                    let delay = backoff(s).delay(attempt, unit());
                    attempt += 1;
                    tracing::info!(bridge = name, "cannot connect to the remote: {e}; again in {delay:?}");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        why = &mut stop => {
                            settle(s, &local, &why.unwrap_or(Stop::Shutdown)).await;
                            return Ok(None);
                        }
                    }
                }
            },
            why = &mut stop => {
                settle(s, &local, &why.unwrap_or(Stop::Shutdown)).await;
                return Ok(None);
            }
        }
    } }).await?;
    let Some((remote, remote_messages)) = connected else {
        return Ok(());
    };
    let v5 = s.protocol == BridgeProtocol::V5;
    // The remote session's messages may come before its SUBACKs too.
    let mut held_remote = pump::Held::new(remote_messages);
    for (i, m) in mappings.iter().enumerate() {
        if m.topic.direction.inbound() {
            let filter = m.topic.remote_filter();
            let subscribed = held_remote.during(subscribe(&remote, filter, m.topic.qos, v5, i));
            held.during(subscribed).await?;
        }
    }
    let watcher = tokio::spawn(watch_remote(
        name.to_string(),
        remote.clone(),
        local.clone(),
        s.notifications.then(|| s.notification_topic()),
        status.clone(),
        counters.clone(),
    ));

    // The pumps.
    let outbound = {
        let (mappings, mark, forward_bridged) =
            (mappings.clone(), pump::mark(name), s.forward_bridged);
        pump::run(
            held,
            remote.clone(),
            move |m| outgoing(m, &mappings, &mark, forward_bridged, v5),
            counters.clone(),
            BridgeDirection::Out,
        )
    };
    let inbound = {
        let (mappings, mark, forward_bridged) =
            (mappings.clone(), pump::mark(name), s.forward_bridged);
        pump::run(
            held_remote,
            local.clone(),
            move |m| incoming(m, &mappings, &mark, forward_bridged),
            counters.clone(),
            BridgeDirection::In,
        )
    };
    tokio::pin!(outbound, inbound);
    let result = tokio::select! {
        (r, owed) = &mut outbound => finish(r, owed, "out", &local, &remote).await,
        (r, owed) = &mut inbound => finish(r, owed, "in", &local, &remote).await,
        why = &mut stop => {
            if let Some(topic) = s.notifications.then(|| s.notification_topic()) {
                // A normal DISCONNECT discards the will: say it ourselves,
                // there and here.
                let down = remote.publish(&topic, DOWN, QoS::AtLeastOnce, true);
                let _ = tokio::time::timeout(Duration::from_secs(2), down).await;
                let down = local.publish(&topic, DOWN, QoS::AtLeastOnce, true);
                let _ = tokio::time::timeout(Duration::from_secs(2), down).await;
            }
            // The local side first: acknowledgements still owed by the
            // pumps (dropped with them below) must not reach the broker,
            // which then keeps those messages for the next session.
            settle(s, &local, &why.unwrap_or(Stop::Shutdown)).await;
            // The remote may be away (then there is no one to tell).
            let _ = tokio::time::timeout(Duration::from_secs(2), remote.disconnect()).await;
            Ok(())
        }
    };
    watcher.abort();
    result
}

/// A pump stopped: both clients go (the local one first, so that the
/// acknowledgements still owed are never sent and its broker sends those
/// messages again to the next session).
async fn finish(
    result: Result<(), Error>,
    owed: Vec<tern_client::Acker>,
    which: &str,
    local: &Client,
    remote: &Client,
) -> Result<(), Error> {
    tracing::debug!(which, owed = owed.len(), "a bridge pump stopped");
    let _ = local.disconnect().await;
    drop(owed);
    let _ = tokio::time::timeout(Duration::from_secs(2), remote.disconnect()).await;
    match result {
        Ok(()) => Err(Error::Closed),
        Err(e) => Err(e),
    }
}

/// Follows the remote connection: logs it, keeps the status, and publishes
/// the notifications: 1 on the remote after each (re)connection, and the
/// state (1 or 0) here, retained, as mosquitto does.
async fn watch_remote(
    name: String,
    remote: Client,
    local: Client,
    notification: Option<String>,
    status: watch::Sender<Status>,
    counters: Arc<BridgeStats>,
) {
    let here = |state: &str| {
        if let Some(topic) = &notification {
            let _ = local
                .publish(topic, state.to_string(), QoS::AtLeastOnce, true)
                .try_send();
        }
    };
    let mut changes = remote.state_changes();
    loop {
        let state = changes.borrow_and_update().clone();
        match state {
            State::Connected {
                session_present, ..
            } => {
                tracing::info!(bridge = %name, session_present, "bridge connected to the remote");
                counters.connected();
                let _ = status.send(Status::Up);
                here(UP);
                if let Some(topic) = &notification {
                    // Handed over without waiting: the client sends it once
                    // connected, after anything queued before.
                    let _ = remote.publish(topic, UP, QoS::AtLeastOnce, true).try_send();
                }
            }
            State::Disconnected { error, retry_in } => {
                tracing::warn!(bridge = %name, "bridge lost the remote: {error}; again in {retry_in:?}");
                counters.disconnected();
                let _ = status.send(Status::Connecting);
                here(DOWN);
            }
            State::Connecting => {}
            State::Closed { .. } => return,
            _ => {}
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// A local message on its way to the remote, or `None` (dropped, and so
/// acknowledged).
fn outgoing(
    message: Message,
    mappings: &[Mapping],
    mark: &UserProperties,
    forward_bridged: bool,
    v5: bool,
) -> Option<pump::Forward> {
    if !forward_bridged && pump::is_bridged(&message) {
        // It came in over a bridge: it goes out over none.
        return None;
    }
    let topic = message.topic.as_str();
    let mapping = by_subscription(&message, mappings)
        .filter(|m| m.topic.direction.outbound())
        .or_else(|| {
            mappings
                .iter()
                .find(|m| m.topic.direction.outbound() && m.matches_local(topic))
        })?;
    let remote = mapping.to_remote(&message.topic)?;
    Some(pump::Forward::new(message, remote, mark, v5))
}

/// A remote message on its way here.
fn incoming(
    message: Message,
    mappings: &[Mapping],
    mark: &UserProperties,
    forward_bridged: bool,
) -> Option<pump::Forward> {
    if !forward_bridged && pump::is_bridged(&message) {
        // It crossed a bridge to reach the remote: it crosses no other.
        return None;
    }
    let topic = message.topic.as_str();
    let mapping = by_subscription(&message, mappings)
        .filter(|m| m.topic.direction.inbound())
        .or_else(|| {
            mappings
                .iter()
                .find(|m| m.topic.direction.inbound() && m.matches_remote(topic))
        })?;
    let local = mapping.to_local(&message.topic)?;
    // The local side is MQTT 5: the message is marked.
    Some(pump::Forward::new(message, local, mark, true))
}

/// The mapping whose subscription delivered the message (MQTT 5: the
/// subscription identifier is the mapping's index + 1).
fn by_subscription<'a>(message: &Message, mappings: &'a [Mapping]) -> Option<&'a Mapping> {
    let id = *message.properties.get().subscription_identifiers.first()?;
    mappings.get((u32::from(id) as usize).checked_sub(1)?)
}

async fn subscribe(
    client: &Client,
    filter: String,
    qos: QoS,
    v5: bool,
    index: usize,
) -> Result<(), Error> {
    let options = SubscriptionOptions {
        qos,
        no_local: v5,
        retain_as_published: v5,
        // Each session start subscribes again: retained messages come only
        // with a subscription the (persistent) session did not have yet, so
        // a restart does not send them across again (MQTT 5).
        retain_handling: if v5 {
            RetainHandling::SendAtSubscribeIfNew
        } else {
            RetainHandling::SendAtSubscribe
        },
    };
    let filter = SubscribeFilter {
        filter: MqttString::try_from(filter)?,
        options,
    };
    let mut request = client.subscribe([filter]);
    if v5 {
        if let Some(id) = u32::try_from(index + 1).ok().and_then(SubscriptionId::new) {
            request = request.subscription_id(id);
        }
    }
    let suback = request.await?;
    if let Some(code) = suback.reason_codes.iter().find(|c| !c.is_success()) {
        tracing::warn!("a bridge subscription was refused: {code}");
    }
    Ok(())
}

/// The local client: MQTT 5 over an in-process connection, a persistent
/// session (the outgoing queue), acknowledging only what the remote took.
fn local_options(s: &BridgeSettings, connector: LocalConnector) -> Result<Options, Error> {
    let identity = s.local_username();
    let mut options = Options::new(Address::tcp("local", 1))
        .connector(move |_| {
            let (connector, identity) = (connector.clone(), identity.clone());
            async move { Ok(Box::new(connector.connect(&identity).await?) as BoxStream) }
        })
        // By name, not by remote client id: a bridge whose settings change
        // (SIGHUP) finds its queue again.
        .client_id(&format!("local.{}", s.name))?
        .version(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry(u32::MAX)
        .keep_alive(Duration::ZERO)
        .manual_acks(true)
        .message_capacity(MESSAGE_CAPACITY)
        .reconnect(Some(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            ..Backoff::default()
        }));
    options.session.properties.receive_maximum = std::num::NonZeroU16::new(LOCAL_RECEIVE_MAXIMUM);
    Ok(options)
}

/// The remote client: the settings' protocol, session and credentials;
/// addresses tried in turn by the connector; reconnecting with the
/// `restart_timeout` backoff; with `private`, mosquitto's try_private mark.
fn remote_options(s: &BridgeSettings, private: bool) -> Result<Options, Error> {
    let tls = s.uses_tls();
    let default_port = if tls { 8883 } else { 1883 };
    let addresses: Vec<(String, u16)> = s
        .address
        .iter()
        .filter_map(|a| split_address(a, default_port).ok())
        .collect();
    let (host, port) = addresses.first().cloned().ok_or(Error::Closed)?;
    let mut address = Address::tcp(host, port);
    if tls {
        address = address.with_tls();
    }
    let next = Arc::new(AtomicUsize::new(0));
    let round_robin = s.round_robin;
    let addresses = Arc::new(addresses);
    let mut options = Options::new(address)
        .connector(move |_| {
            let (addresses, next) = (addresses.clone(), next.clone());
            async move {
                let start = if round_robin {
                    next.load(Ordering::Relaxed)
                } else {
                    0
                };
                let mut last = None;
                for k in 0..addresses.len() {
                    let i = (start + k) % addresses.len();
                    let (host, port) = &addresses[i];
                    match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            next.store((i + 1) % addresses.len(), Ordering::Relaxed);
                            return Ok(Box::new(stream) as BoxStream);
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
            }
        })
        .client_id(s.client_id())?
        .version(match s.protocol {
            BridgeProtocol::V3_1_1 => ProtocolVersion::V3_1_1,
            BridgeProtocol::V5 => ProtocolVersion::V5,
        })
        .keep_alive(Duration::from_secs(u64::from(s.keep_alive)))
        .clean_start(s.clean_start)
        .manual_acks(true)
        .message_capacity(MESSAGE_CAPACITY)
        .connect_timeout(Duration::from_secs(10))
        .reconnect(Some(backoff(s)));
    if s.protocol == BridgeProtocol::V5 {
        options = options.session_expiry(s.session_expiry());
    }
    options.session.try_private = private;
    if let Some(user) = &s.username {
        options = options.credentials(user, s.password.as_deref().map(str::as_bytes))?;
    }
    if s.notifications {
        options = options.will(Will {
            topic: MqttString::try_from(s.notification_topic())?,
            payload: DOWN.into(),
            qos: QoS::AtLeastOnce,
            retain: true,
            ..Will::default()
        });
    }
    if tls {
        let mut t = TlsOptions::new().skip_hostname_check(s.insecure);
        if let Some(ca) = &s.cafile {
            t = t.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&s.certfile, &s.keyfile) {
            t = t.client_auth(cert, key);
        }
        options = options.tls(t);
    }
    Ok(options)
}

/// mosquitto's `restart_timeout`: constant, or exponential from base to cap,
/// with jitter.
fn backoff(s: &BridgeSettings) -> Backoff {
    let r = s.restart_timeout;
    Backoff {
        initial: r.base,
        factor: if r.cap > r.base { 2.0 } else { 1.0 },
        max: r.cap,
        jitter: 0.25,
        seed: None,
    }
}

/// A number in `[0, 1)` for the restart jitter (the shell may read the clock).
fn unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}
