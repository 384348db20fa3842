//! Client-side statements, checked against tern-client: each test runs the
//! client on its own thread (a current-thread tokio runtime) against a
//! scripted broker that this thread plays with raw packets, so it can send
//! exactly the CONNACK or PUBLISH that puts the client to the test.

use super::{Case, v3, v5};
use crate::{
    ensure,
    harness::{Conn, Ctx, PACKET_TIMEOUT, QUIET_TIME, Stop, TestResult, fail, name, string},
};
use bytes::Bytes;
use std::{
    future::{Future, IntoFuture},
    io::Read,
    net::{SocketAddr, TcpListener},
    num::{NonZeroU16, NonZeroU32},
    sync::mpsc,
    time::{Duration, Instant},
};
use tern_client::{Address, Backoff, Client, Options};
use tern_codec::{
    ConnAck, ConnAckProperties, ConnectProperties, Packet, PubAck, PubComp, PubRec, PubRel,
    Publish, PublishProperties, QoS, ReasonCode, Will,
};

pub(crate) const CASES: &[Case] = &[
    v3!(client "MQTT-3.1.2-11", "client: no will, will QoS and retain 0", connect_plain),
    v3!(client "MQTT-3.1.2-13", "client: no will, will QoS 0", connect_plain),
    v3!(client "MQTT-3.1.2-15", "client: no will, will retain 0", connect_plain),
    v3!(client "MQTT-3.1.2-18", "client: no user name flag, no user name", connect_plain),
    v3!(client "MQTT-3.1.2-20", "client: no password flag, no password", connect_plain),
    v3!(client "MQTT-3.1.2-22", "client: no user name, no password flag", connect_plain),
    v3!(client "MQTT-3.1.3-3", "client: client id first in the payload", connect_plain),
    v3!(client "MQTT-3.1.3-4", "client: client id is UTF-8", connect_plain),
    v5!(client "MQTT-3.1.2-11", "client: no will, will QoS 0", connect_plain),
    v5!(client "MQTT-3.1.2-13", "client: no will, will retain 0", connect_plain),
    v5!(client "MQTT-3.1.2-16", "client: no user name flag, no user name", connect_plain),
    v5!(client "MQTT-3.1.2-18", "client: no password flag, no password", connect_plain),
    v5!(client "MQTT-3.1.3-3", "client: client id first in the payload", connect_plain),
    v5!(client "MQTT-3.1.3-4", "client: client id is UTF-8", connect_plain),
    v3!(client "MQTT-3.1.2-9", "client: will fields present with the will flag", connect_full),
    v3!(client "MQTT-3.1.2-14", "client: will QoS 0, 1 or 2", connect_full),
    v3!(client "MQTT-3.1.2-19", "client: user name flag, user name present", connect_full),
    v3!(client "MQTT-3.1.2-21", "client: password flag, password present", connect_full),
    v3!(client "MQTT-3.1.3-1", "client: payload fields in order", connect_full),
    v3!(client "MQTT-3.1.3-10", "client: will topic is UTF-8", connect_full),
    v3!(client "MQTT-3.1.3-11", "client: user name is UTF-8", connect_full),
    v5!(client "MQTT-3.1.2-9", "client: will fields present with the will flag", connect_full),
    v5!(client "MQTT-3.1.2-12", "client: will QoS 0, 1 or 2", connect_full),
    v5!(client "MQTT-3.1.2-17", "client: user name flag, user name present", connect_full),
    v5!(client "MQTT-3.1.2-19", "client: password flag, password present", connect_full),
    v5!(client "MQTT-3.1.3-1", "client: payload fields in order", connect_full),
    v5!(client "MQTT-3.1.3-11", "client: will topic is UTF-8", connect_full),
    v5!(client "MQTT-3.1.3-12", "client: user name is UTF-8", connect_full),
    v3!(client "MQTT-2.3.1-2", "client: unused packet ids", packet_ids),
    v5!(client "MQTT-2.2.1-3", "client: non-zero unused packet ids", packet_ids),
    v5!(client "MQTT-4.12.0-7", "client: no AUTH without an Authentication Method", packet_ids),
    v3!(client "MQTT-3.8.3-1", "client: SUBSCRIBE filters are UTF-8", filters_utf8),
    v5!(client "MQTT-3.8.3-1", "client: SUBSCRIBE filters are UTF-8", filters_utf8),
    v3!(client "MQTT-3.10.3-1", "client: UNSUBSCRIBE filters are UTF-8", filters_utf8),
    v5!(client "MQTT-3.10.3-1", "client: UNSUBSCRIBE filters are UTF-8", filters_utf8),
    v3!(client "MQTT-3.1.2-23", "client: PINGREQ within the keep alive", keep_alive),
    v5!(client "MQTT-3.1.2-20", "client: PINGREQ within the keep alive", keep_alive),
    v5!(client "MQTT-3.1.2-21", "client: Server Keep Alive used", server_keep_alive),
    v5!(client "MQTT-3.2.2-21", "client: Server Keep Alive used", server_keep_alive),
    v5!(client "MQTT-3.2.2-4", "client: session present without session closes", unexpected_session),
    v5!(client "MQTT-3.2.2-11", "client: nothing above Maximum QoS", maximum_qos),
    v5!(client "MQTT-3.2.2-14", "client: no RETAIN when Retain Available is 0", retain_unavailable),
    v5!(client "MQTT-3.2.2-15", "client: nothing above the server's Maximum Packet Size", max_packet_size),
    v5!(client "MQTT-3.2.2-18", "client: no Topic Alias without a maximum", no_aliases),
    v5!(client "MQTT-3.2.2-17", "client: Topic Alias within the server's maximum", aliases_within_max),
    v5!(client "MQTT-3.3.2-9", "client: Topic Alias within the server's maximum", aliases_within_max),
    v5!(client "MQTT-3.3.2-10", "client: accepts Topic Aliases up to its maximum", accepts_aliases),
    v5!(client "MQTT-3.3.4-7", "client: no more than Receive Maximum unacknowledged", receive_maximum),
    v5!(client "MQTT-3.3.4-8", "client: other packets not delayed at the quota", receive_maximum),
    v3!(client "MQTT-4.5.0-2", "client: acknowledges every PUBLISH", ack_order),
    v5!(client "MQTT-4.5.0-2", "client: acknowledges every PUBLISH", ack_order),
    v3!(client "MQTT-4.6.0-2", "client: PUBACKs in PUBLISH order", ack_order),
    v5!(client "MQTT-4.6.0-2", "client: PUBACKs in PUBLISH order", ack_order),
    v3!(client "MQTT-4.6.0-3", "client: PUBRECs in PUBLISH order", ack_order),
    v5!(client "MQTT-4.6.0-3", "client: PUBRECs in PUBLISH order", ack_order),
    v3!(client "MQTT-4.6.0-4", "client: PUBRELs in PUBREC order", pubrel_order),
    v5!(client "MQTT-4.6.0-4", "client: PUBRELs in PUBREC order", pubrel_order),
    v3!(client "MQTT-4.6.0-1", "client: resends PUBLISH in the original order", resend_order),
    v5!(client "MQTT-4.6.0-1", "client: resends PUBLISH in the original order", resend_order),
    v3!(client "MQTT-2.3.1-3", "client: a resend keeps its packet id", resend_order),
    v3!(client "MQTT-3.14.4-1", "client: closes after DISCONNECT", disconnect),
    v3!(client "MQTT-3.14.4-2", "client: nothing after DISCONNECT", disconnect),
    v3!(client "MQTT-6.0.0-3", "client: offers the \"mqtt\" subprotocol", ws_subprotocol),
    v5!(client "MQTT-6.0.0-3", "client: offers the \"mqtt\" subprotocol", ws_subprotocol),
    v3!(client "MQTT-3.1.3-7", "client: empty client id only with clean session", empty_id_clean),
    v5!(client "MQTT-3.1.2-30", "client: only AUTH or DISCONNECT before CONNACK with a method", auth_method_wait),
    v5!(client "MQTT-4.12.0-3", "client: answers the server's AUTH with AUTH 0x18", scram_exchange),
    v5!(client "MQTT-4.12.0-5", "client: every AUTH names the CONNECT's method", scram_exchange),
    v5!(client "MQTT-4.12.1-1", "client: re-authenticates with AUTH 0x19, same method", scram_exchange),
    v5!(client "MQTT-3.2.2-5", "client: session present 0 discards the session", session_discarded),
    v3!(client "MQTT-1.5.3-1", "client: ill-formed UTF-8 from the server closes", bad_utf8_in),
    v5!(client "MQTT-1.5.4-1", "client: ill-formed UTF-8 from the server closes", bad_utf8_in),
    v3!(client "MQTT-1.5.3-2", "client: U+0000 from the server closes", null_in),
    v5!(client "MQTT-1.5.4-2", "client: U+0000 from the server closes", null_in),
    v3!(client "MQTT-3.3.1-4", "client: QoS 3 PUBLISH closes", qos3_in),
    v5!(client "MQTT-3.3.1-4", "client: QoS 3 PUBLISH closes", qos3_in),
    v3!(client "MQTT-2.2.2-2", "client: invalid flags close", bad_flags_in),
    v5!(client "MQTT-2.1.3-1", "client: invalid reserved flags close", bad_flags_in),
    v3!(client "MQTT-3.3.2-2", "client: wildcard topic name from the server closes", wildcard_in),
    v5!(client "MQTT-3.3.2-2", "client: wildcard topic name from the server closes", wildcard_in),
    v5!(client "MQTT-3.3.2-8", "client: Topic Alias 0 from the server closes", alias_zero_in),
    v3!(client "MQTT-4.3.2-2", "client: PUBACK with the PUBLISH's id", ack_order),
    v5!(client "MQTT-4.3.2-4", "client: PUBACK with the PUBLISH's id", ack_order),
    v3!(client "MQTT-4.3.3-2", "client: PUBREC with the PUBLISH's id", ack_order),
    v5!(client "MQTT-4.3.3-8", "client: PUBREC with the PUBLISH's id", ack_order),
    v5!(client "MQTT-4.3.3-11", "client: PUBCOMP with the PUBREL's id", ack_order),
    v3!(client "MQTT-2.3.1-6", "client: acks carry the PUBLISH's id", ack_order),
    v5!(client "MQTT-2.2.1-5", "client: acks carry the PUBLISH's id", ack_order),
    v5!(client "MQTT-3.4.2-1", "client: PUBACK uses PUBACK reason codes", ack_order),
];

/// The scripted broker's listening socket.
struct FakeBroker {
    listener: TcpListener,
    addr: SocketAddr,
}

impl FakeBroker {
    fn new() -> Result<FakeBroker, Stop> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| fail(format!("bind: {e}")))?;
        let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        Ok(FakeBroker { listener, addr })
    }

    /// Waits (bounded) for the client's next connection.
    fn accept(&self, ctx: &Ctx) -> Result<Conn, Stop> {
        let deadline = Instant::now() + PACKET_TIMEOUT;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    return Ok(Conn::from_stream(stream, ctx.protocol()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ensure!(Instant::now() < deadline, "the client did not connect");
                    // Polling a non-blocking accept: no event to wait on.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(fail(format!("accept: {e}"))),
            }
        }
    }

    /// Client options for this broker: the test's version, a fresh id, no
    /// automatic reconnect.
    fn options(&self, ctx: &Ctx) -> Result<Options, Stop> {
        Ok(Options::new(Address::tcp("127.0.0.1", self.addr.port()))
            .client_id(&ctx.client_id())
            .map_err(|e| fail(e.to_string()))?
            .version(ctx.protocol())
            .reconnect(None)
            .connect_timeout(PACKET_TIMEOUT))
    }

    /// Accepts, reads the CONNECT (raw and decoded) and answers `connack`.
    fn handshake(&self, ctx: &Ctx, connack: ConnAck) -> Result<(Conn, Bytes), Stop> {
        let mut conn = self.accept(ctx)?;
        let frame = conn.recv_frame()?;
        conn.send(Packet::ConnAck(Box::new(connack)))?;
        Ok((conn, frame))
    }
}

/// The client side of a test, running on its own thread.
struct ClientRun<T> {
    rx: mpsc::Receiver<Result<T, String>>,
}

impl<T> ClientRun<T> {
    /// Waits for the client script's result.
    fn join(self) -> Result<T, Stop> {
        match self.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(fail(format!("client: {e}"))),
            Err(_) => Err(fail("the client script did not finish")),
        }
    }
}

/// Runs `script` on a current-thread tokio runtime on a new thread.
fn spawn_client<T, F, Fut>(script: F) -> ClientRun<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, String>>,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(script()),
            Err(e) => Err(e.to_string()),
        };
        let _ = tx.send(result);
    });
    ClientRun { rx }
}

/// A spawned request that panicked or was cancelled.
fn join_error(e: tokio::task::JoinError) -> tern_client::Error {
    tern_client::Error::Io(std::sync::Arc::new(std::io::Error::other(e.to_string())))
}

fn accept_all() -> ConnAck {
    ConnAck::default()
}

/// Connects, runs `body` with the client, disconnects.
fn client_with<F, Fut>(options: Options, body: F) -> ClientRun<()>
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), tern_client::Error>>,
{
    spawn_client(move || async move {
        let (client, _messages) = Client::connect(options).await.map_err(|e| e.to_string())?;
        body(client).await.map_err(|e| e.to_string())
    })
}

/// The CONNECT's flags byte (after the protocol name and level).
fn connect_flags(frame: &[u8]) -> u8 {
    let mut at = 1;
    while frame[at] & 0x80 != 0 {
        at += 1;
    }
    frame[at + 1 + 6 + 1]
}

fn decode_connect(ctx: &Ctx, frame: &Bytes) -> Result<tern_codec::Connect, Stop> {
    match Packet::decode_exact(frame.clone(), ctx.protocol()) {
        Ok(Packet::Connect(c)) => Ok(*c),
        Ok(other) => Err(fail(format!("first packet is {}", name(&other)))),
        Err(e) => Err(fail(format!("client sent a malformed CONNECT: {e}"))),
    }
}

fn connect_plain(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?;
    let id = options.session.client_id.clone();
    let run = client_with(options, |c| async move { c.disconnect().await });
    let (mut conn, frame) = broker.handshake(ctx, accept_all())?;
    let flags = connect_flags(&frame);
    ensure!(
        flags & 0x3C == 0,
        "no will, but will flag/QoS/retain bits are {flags:#04x}"
    );
    ensure!(
        flags & 0xC0 == 0,
        "no credentials, but user name/password flags {flags:#04x}"
    );
    let connect = decode_connect(ctx, &frame)?;
    ensure!(
        connect.client_id == id,
        "client id {} sent as {}",
        id,
        connect.client_id
    );
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn connect_full(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let will_topic = "will/t\u{e9}";
    let options = broker
        .options(ctx)?
        .credentials("us\u{e9}r", Some(b"secret"))
        .map_err(|e| fail(e.to_string()))?
        .will(Will {
            topic: string(will_topic),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        });
    let run = client_with(options, |c| async move { c.disconnect().await });
    let (mut conn, frame) = broker.handshake(ctx, accept_all())?;
    let flags = connect_flags(&frame);
    ensure!(flags & 0x04 != 0, "will flag not set");
    ensure!(
        (flags >> 3) & 0x03 == 1,
        "will QoS bits {}",
        (flags >> 3) & 3
    );
    ensure!(flags & 0x20 != 0, "will retain not set");
    ensure!(
        flags & 0xC0 == 0xC0,
        "user name/password flags {flags:#04x}"
    );
    let connect = decode_connect(ctx, &frame)?;
    let will = connect.will.ok_or_else(|| fail("no will decoded"))?;
    ensure!(
        will.topic == will_topic && &will.payload[..] == b"bye",
        "will {will:?}"
    );
    ensure!(
        connect.username.as_deref() == Some("us\u{e9}r"),
        "user name {:?}",
        connect.username
    );
    ensure!(
        connect.password.as_deref() == Some(&b"secret"[..]),
        "password {:?}",
        connect.password
    );
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn packet_ids(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let run = client_with(broker.options(ctx)?, |c| async move {
        // Spawned so all five are in flight at once.
        let mut pending = Vec::new();
        for i in 0..3u8 {
            pending.push(tokio::spawn(
                c.publish("t/ids", vec![i], QoS::AtLeastOnce, false)
                    .into_future(),
            ));
        }
        let sub = tokio::spawn(c.subscribe([("t/+", QoS::AtLeastOnce)]).into_future());
        let unsub = tokio::spawn(c.unsubscribe(["t/x"]).into_future());
        sub.await.map_err(join_error)??;
        unsub.await.map_err(join_error)??;
        for p in pending {
            p.await.map_err(join_error)??;
        }
        c.disconnect().await
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    let mut ids = Vec::new();
    let mut publishes = Vec::new();
    while ids.len() < 5 {
        match conn.recv()? {
            Packet::Publish(p) => {
                let id = p
                    .packet_id
                    .ok_or_else(|| fail("QoS 1 PUBLISH without id"))?;
                ids.push(id.get());
                publishes.push(id);
            }
            Packet::Subscribe(s) => {
                ids.push(s.packet_id.get());
                conn.send(Packet::SubAck(tern_codec::SubAck {
                    packet_id: s.packet_id,
                    properties: Default::default(),
                    reason_codes: vec![ReasonCode::GrantedQos1],
                }))?;
            }
            Packet::Unsubscribe(u) => {
                ids.push(u.packet_id.get());
                let mut ack = tern_codec::UnsubAck::v3(u.packet_id);
                if ctx.v5() {
                    ack.reason_codes = vec![ReasonCode::Success];
                }
                conn.send(Packet::UnsubAck(ack))?;
            }
            Packet::Auth(_) => return Err(fail("AUTH sent without an Authentication Method")),
            other => return Err(fail(format!("unexpected {}", name(&other)))),
        }
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure!(
        unique.len() == ids.len(),
        "packet ids in use at once: {ids:?}"
    );
    for id in publishes {
        conn.send(Packet::PubAck(PubAck::new(id)))?;
    }
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn filters_utf8(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let filter = "caf\u{e9}/+/\u{1F600}";
    let run = client_with(broker.options(ctx)?, move |c| async move {
        c.subscribe([(filter, QoS::AtMostOnce)]).await?;
        c.unsubscribe([filter]).await?;
        c.disconnect().await
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    match conn.recv()? {
        Packet::Subscribe(s) => {
            ensure!(
                s.filters.len() == 1 && s.filters[0].filter == filter,
                "filters {:?}",
                s.filters
            );
            conn.send(Packet::SubAck(tern_codec::SubAck {
                packet_id: s.packet_id,
                properties: Default::default(),
                reason_codes: vec![ReasonCode::Success],
            }))?;
        }
        other => return Err(fail(format!("expected SUBSCRIBE, got {}", name(&other)))),
    }
    match conn.recv()? {
        Packet::Unsubscribe(u) => {
            ensure!(
                u.filters.len() == 1 && u.filters[0] == filter,
                "filters {:?}",
                u.filters
            );
            let mut ack = tern_codec::UnsubAck::v3(u.packet_id);
            if ctx.v5() {
                ack.reason_codes = vec![ReasonCode::Success];
            }
            conn.send(Packet::UnsubAck(ack))?;
        }
        other => return Err(fail(format!("expected UNSUBSCRIBE, got {}", name(&other)))),
    }
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

/// Waits for a PINGREQ within `limit` of the CONNACK; answers it.
fn expect_ping(conn: &mut Conn, limit: Duration) -> TestResult {
    let started = Instant::now();
    match conn.recv_within(limit + Duration::from_millis(500))? {
        Packet::PingReq => {
            let after = started.elapsed();
            ensure!(
                after <= limit + Duration::from_millis(300),
                "PINGREQ only after {} ms",
                after.as_millis()
            );
            conn.send(Packet::PingResp)
        }
        other => Err(fail(format!("expected PINGREQ, got {}", name(&other)))),
    }
}

fn keep_alive(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?.keep_alive(Duration::from_secs(1));
    let (tx, rx) = mpsc::channel::<()>();
    let run = client_with(options, move |c| async move {
        let _ = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(8))).await;
        c.disconnect().await
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    expect_ping(&mut conn, Duration::from_secs(1))?;
    let _ = tx.send(());
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn server_keep_alive(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?.keep_alive(Duration::from_secs(60));
    let (tx, rx) = mpsc::channel::<()>();
    let run = client_with(options, move |c| async move {
        let _ = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(8))).await;
        c.disconnect().await
    });
    let connack = ConnAck {
        properties: ConnAckProperties {
            server_keep_alive: Some(1),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    let (mut conn, _) = broker.handshake(ctx, connack)?;
    expect_ping(&mut conn, Duration::from_secs(1))?;
    let _ = tx.send(());
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn unexpected_session(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?.clean_start(true);
    let run = spawn_client(move || async move {
        // Either outcome is the client's to choose; what matters is the close.
        let _ = Client::connect(options).await;
        Ok(())
    });
    let connack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    let (mut conn, _) = broker.handshake(ctx, connack)?;
    let seen = conn.expect_closed_within(PACKET_TIMEOUT)?;
    for p in &seen {
        match p {
            Packet::Disconnect(d) if d.reason_code.is_error() => {}
            other => {
                return Err(fail(format!(
                    "client sent {} instead of closing",
                    name(other)
                )));
            }
        }
    }
    run.join()
}

/// Connects with `connack`, lets `script` publish, then the client sends a
/// QoS 0 marker on `marker`; returns the PUBLISHes before the marker.
fn publishes_until_marker<F, Fut>(
    ctx: &Ctx,
    connack: ConnAck,
    script: F,
) -> Result<Vec<Publish>, Stop>
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let broker = FakeBroker::new()?;
    let run = client_with(broker.options(ctx)?, move |c| async move {
        script(c.clone()).await;
        c.publish("marker", "m", QoS::AtMostOnce, false).await?;
        c.disconnect().await
    });
    let (mut conn, _) = broker.handshake(ctx, connack)?;
    let mut seen = Vec::new();
    loop {
        match conn.recv()? {
            Packet::Publish(p) if p.topic == "marker" => break,
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    match p.qos {
                        QoS::AtLeastOnce => conn.send(Packet::PubAck(PubAck::new(id)))?,
                        QoS::ExactlyOnce => conn.send(Packet::PubRec(PubRec::new(id)))?,
                        QoS::AtMostOnce => {}
                    }
                }
                seen.push(p);
            }
            Packet::PubRel(r) => conn.send(Packet::PubComp(PubComp::new(r.packet_id)))?,
            other => return Err(fail(format!("unexpected {}", name(&other)))),
        }
    }
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()?;
    Ok(seen)
}

fn maximum_qos(ctx: &Ctx) -> TestResult {
    let connack = ConnAck {
        properties: ConnAckProperties {
            maximum_qos: Some(QoS::AtMostOnce),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    let seen = publishes_until_marker(ctx, connack, |c| async move {
        let _ = c.publish("t/q", "2", QoS::ExactlyOnce, false).await;
        let _ = c.publish("t/q", "1", QoS::AtLeastOnce, false).await;
    })?;
    for p in &seen {
        ensure!(
            p.qos == QoS::AtMostOnce,
            "PUBLISH at QoS {} above Maximum QoS 0",
            p.qos.as_u8()
        );
    }
    Ok(())
}

fn retain_unavailable(ctx: &Ctx) -> TestResult {
    let connack = ConnAck {
        properties: ConnAckProperties {
            retain_available: Some(false),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    let seen = publishes_until_marker(ctx, connack, |c| async move {
        let _ = c.publish("t/r", "r", QoS::AtMostOnce, true).await;
    })?;
    ensure!(
        seen.iter().all(|p| !p.retain),
        "PUBLISH with RETAIN 1 though Retain Available is 0"
    );
    Ok(())
}

fn max_packet_size(ctx: &Ctx) -> TestResult {
    let connack = ConnAck {
        properties: ConnAckProperties {
            maximum_packet_size: NonZeroU32::new(64),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    let seen = publishes_until_marker(ctx, connack, |c| async move {
        let _ = c
            .publish("t/big", vec![b'x'; 200], QoS::AtMostOnce, false)
            .await;
        let _ = c
            .publish("t/big", vec![b'x'; 200], QoS::AtLeastOnce, false)
            .await;
    })?;
    ensure!(
        seen.is_empty(),
        "{} PUBLISH above the server's Maximum Packet Size 64 sent",
        seen.len()
    );
    Ok(())
}

fn no_aliases(ctx: &Ctx) -> TestResult {
    let seen = publishes_until_marker(ctx, accept_all(), |c| async move {
        for _ in 0..4 {
            let _ = c.publish("t/same/topic", "x", QoS::AtMostOnce, false).await;
        }
    })?;
    ensure!(seen.len() == 4, "{} of 4 messages", seen.len());
    ensure!(
        seen.iter().all(|p| p.properties.topic_alias.is_none()),
        "Topic Alias sent to a server without a Topic Alias Maximum"
    );
    Ok(())
}

fn aliases_within_max(ctx: &Ctx) -> TestResult {
    let connack = ConnAck {
        properties: ConnAckProperties {
            topic_alias_maximum: Some(1),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    let seen = publishes_until_marker(ctx, connack, |c| async move {
        for _ in 0..3 {
            for t in ["t/a", "t/b", "t/c"] {
                let _ = c.publish(t, "x", QoS::AtMostOnce, false).await;
            }
        }
    })?;
    ensure!(seen.len() == 9, "{} of 9 messages", seen.len());
    for p in &seen {
        if let Some(alias) = p.properties.topic_alias {
            ensure!(
                alias.get() <= 1,
                "Topic Alias {alias} above the server's maximum 1"
            );
        }
    }
    Ok(())
}

fn accepts_aliases(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?.properties(ConnectProperties {
        topic_alias_maximum: Some(3),
        ..Default::default()
    });
    let run = spawn_client(move || async move {
        let (client, mut messages) = Client::connect(options).await.map_err(|e| e.to_string())?;
        let mut topics = Vec::new();
        for _ in 0..2 {
            let m = tokio::time::timeout(Duration::from_secs(3), messages.recv())
                .await
                .map_err(|_| "no message".to_string())?
                .ok_or("messages ended")?;
            topics.push(m.topic.to_string());
        }
        client.disconnect().await.map_err(|e| e.to_string())?;
        Ok(topics)
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    let aliased = |topic: &str| Publish {
        topic: string(topic),
        payload: Bytes::from_static(b"x"),
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(3),
            ..Default::default()
        }
        .into(),
        ..Publish::default()
    };
    conn.send(Packet::Publish(aliased("t/alias")))?;
    conn.send(Packet::Publish(aliased("")))?;
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    let topics = run.join()?;
    ensure!(
        topics == ["t/alias", "t/alias"],
        "messages arrived on {topics:?}"
    );
    Ok(())
}

fn receive_maximum(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let run = client_with(broker.options(ctx)?, |c| async move {
        let publishes: Vec<_> = (0..3u8)
            .map(|i| {
                tokio::spawn(
                    c.publish("t/rm", vec![i], QoS::AtLeastOnce, false)
                        .into_future(),
                )
            })
            .collect();
        let sub = tokio::spawn(c.subscribe([("t/other", QoS::AtMostOnce)]).into_future());
        for p in publishes {
            p.await.map_err(join_error)??;
        }
        sub.await.map_err(join_error)??;
        c.disconnect().await
    });
    let connack = ConnAck {
        properties: ConnAckProperties {
            receive_maximum: NonZeroU16::new(1),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    let (mut conn, _) = broker.handshake(ctx, connack)?;
    let mut acked = 0;
    let mut subscribed = false;
    let mut unacked: Option<tern_codec::PacketId> = None;
    while acked < 3 || !subscribed {
        match conn.recv_within(QUIET_TIME) {
            Ok(Packet::Publish(p)) => {
                ensure!(
                    unacked.is_none(),
                    "second QoS 1 PUBLISH with Receive Maximum 1"
                );
                unacked = p.packet_id;
            }
            Ok(Packet::Subscribe(s)) => {
                subscribed = true;
                conn.send(Packet::SubAck(tern_codec::SubAck {
                    packet_id: s.packet_id,
                    properties: Default::default(),
                    reason_codes: vec![ReasonCode::Success],
                }))?;
            }
            Ok(other) => return Err(fail(format!("unexpected {}", name(&other)))),
            Err(_) => {
                // Quiet: the client is waiting for the PUBACK.
                let id = unacked.take().ok_or_else(|| {
                    fail(if subscribed {
                        "client stalled with nothing in flight"
                    } else {
                        "SUBSCRIBE delayed by the exhausted send quota"
                    })
                })?;
                ensure!(subscribed, "SUBSCRIBE delayed by the exhausted send quota");
                conn.send(Packet::PubAck(PubAck::new(id)))?;
                acked += 1;
            }
        }
    }
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn ack_order(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let (done, wait) = mpsc::channel::<()>();
    let run = spawn_client({
        let options = broker.options(ctx)?;
        move || async move {
            let (client, mut messages) =
                Client::connect(options).await.map_err(|e| e.to_string())?;
            for _ in 0..6 {
                tokio::time::timeout(Duration::from_secs(3), messages.recv())
                    .await
                    .map_err(|_| "message missing".to_string())?;
            }
            // Stay connected until the scripted broker has finished.
            let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(8)))
                .await;
            client.disconnect().await.map_err(|e| e.to_string())
        }
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    for (qos, ids) in [
        (QoS::AtLeastOnce, [7u16, 3, 5]),
        (QoS::ExactlyOnce, [9, 2, 4]),
    ] {
        for id in ids {
            conn.send(Packet::Publish(Publish {
                qos,
                packet_id: NonZeroU16::new(id),
                topic: string("t/in"),
                payload: Bytes::from_static(b"x"),
                ..Publish::default()
            }))?;
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            match (qos, conn.recv()?) {
                (QoS::AtLeastOnce, Packet::PubAck(a)) => got.push(a.packet_id.get()),
                (QoS::ExactlyOnce, Packet::PubRec(a)) => got.push(a.packet_id.get()),
                (_, other) => {
                    return Err(fail(format!(
                        "QoS {} PUBLISH answered with {}",
                        qos.as_u8(),
                        name(&other)
                    )));
                }
            }
        }
        ensure!(got == ids, "acknowledged {got:?}, received {ids:?}");
        if qos == QoS::ExactlyOnce {
            for id in ids {
                conn.send(Packet::PubRel(PubRel::new(
                    tern_codec::PacketId::new(id).expect("non-zero"),
                )))?;
                match conn.recv()? {
                    Packet::PubComp(c) => {
                        ensure!(c.packet_id.get() == id, "PUBCOMP {}", c.packet_id)
                    }
                    other => return Err(fail(format!("PUBREL answered with {}", name(&other)))),
                }
            }
        }
    }
    let _ = done.send(());
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn pubrel_order(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let run = client_with(broker.options(ctx)?, |c| async move {
        let publishes: Vec<_> = (0..3u8)
            .map(|i| {
                tokio::spawn(
                    c.publish("t/q2", vec![i], QoS::ExactlyOnce, false)
                        .into_future(),
                )
            })
            .collect();
        for p in publishes {
            p.await.map_err(join_error)??;
        }
        c.disconnect().await
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        match conn.recv()? {
            Packet::Publish(p) => ids.push(p.packet_id.ok_or_else(|| fail("no id"))?),
            other => return Err(fail(format!("unexpected {}", name(&other)))),
        }
    }
    ids.reverse();
    for id in &ids {
        conn.send(Packet::PubRec(PubRec::new(*id)))?;
    }
    let mut rels = Vec::new();
    for _ in 0..3 {
        match conn.recv()? {
            Packet::PubRel(r) => rels.push(r.packet_id),
            other => return Err(fail(format!("expected PUBREL, got {}", name(&other)))),
        }
    }
    ensure!(
        rels == ids,
        "PUBRELs for {rels:?}, PUBRECs were for {ids:?}"
    );
    for id in rels {
        conn.send(Packet::PubComp(PubComp::new(id)))?;
    }
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn resend_order(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let mut options = broker
        .options(ctx)?
        .clean_start(!ctx.v5())
        .reconnect(Some(Backoff {
            initial: Duration::from_millis(20),
            factor: 1.0,
            max: Duration::from_millis(20),
            jitter: 0.0,
            seed: Some(1),
        }));
    if ctx.v5() {
        options = options.session_expiry(300);
    } else {
        options = options.clean_start(false);
    }
    let run = client_with(options, |c| async move {
        let publishes: Vec<_> = (0..3u8)
            .map(|i| {
                tokio::spawn(
                    c.publish("t/re", vec![i], QoS::AtLeastOnce, false)
                        .into_future(),
                )
            })
            .collect();
        for p in publishes {
            p.await.map_err(join_error)??;
        }
        c.disconnect().await
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    let mut first = Vec::new();
    for _ in 0..3 {
        match conn.recv()? {
            Packet::Publish(p) => first.push((p.packet_id, p.payload)),
            other => return Err(fail(format!("unexpected {}", name(&other)))),
        }
    }
    conn.drop_abruptly();
    let connack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    let (mut conn, frame) = broker.handshake(ctx, connack)?;
    let connect = decode_connect(ctx, &frame)?;
    ensure!(
        !connect.clean_start,
        "reconnect with clean start: session not resumed"
    );
    let mut again = Vec::new();
    for _ in 0..3 {
        match conn.recv()? {
            Packet::Publish(p) => {
                ensure!(p.dup, "resent PUBLISH with DUP 0");
                again.push((p.packet_id, p.payload));
            }
            other => {
                return Err(fail(format!(
                    "expected resent PUBLISH, got {}",
                    name(&other)
                )));
            }
        }
    }
    ensure!(again == first, "resent {again:?}, originally {first:?}");
    for (id, _) in again {
        conn.send(Packet::PubAck(PubAck::new(
            id.ok_or_else(|| fail("no id"))?,
        )))?;
    }
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

fn disconnect(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let run = client_with(
        broker.options(ctx)?,
        |c| async move { c.disconnect().await },
    );
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    let seen = conn.expect_closed_within(PACKET_TIMEOUT)?;
    ensure!(
        matches!(seen.as_slice(), [Packet::Disconnect(_)]),
        "client sent {:?} then closed",
        seen.iter().map(name).collect::<Vec<_>>()
    );
    run.join()
}

fn ws_subprotocol(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let mut options = broker.options(ctx)?;
    options.address = Address::websocket("127.0.0.1", broker.addr.port(), "/mqtt");
    let run = spawn_client(move || async move {
        // The scripted server refuses the upgrade; only the request matters.
        let _ = Client::connect(options).await;
        Ok(())
    });
    let conn = broker.accept(ctx)?;
    let mut stream = conn.into_stream();
    let _ = stream.set_read_timeout(Some(PACKET_TIMEOUT));
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return Err(fail("incomplete WebSocket upgrade request")),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let offered = request.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-protocol")
                && v.split(',').any(|p| p.trim() == "mqtt")
        })
    });
    ensure!(
        offered,
        "upgrade request offers no \"mqtt\" subprotocol:\n{request}"
    );
    drop(stream);
    run.join()
}

fn empty_id_clean(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker
        .options(ctx)?
        .client_id("")
        .map_err(|e| fail(e.to_string()))?
        .clean_start(false);
    let run = spawn_client(move || async move {
        // Refusing locally is as good as sending a clean session.
        let _ = Client::connect(options).await;
        Ok(())
    });
    match broker.accept(ctx) {
        Err(_) => {}
        Ok(mut conn) => {
            if let Ok(frame) = conn.recv_frame() {
                let connect = decode_connect(ctx, &frame)?;
                ensure!(
                    !connect.client_id.is_empty() || connect.clean_start,
                    "zero-byte client id sent with clean session 0"
                );
                conn.send(Packet::ConnAck(Box::new(accept_all())))?;
            }
            let _ = conn.expect_closed_within(PACKET_TIMEOUT);
        }
    }
    run.join()
}

fn auth_method_wait(ctx: &Ctx) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?.properties(ConnectProperties {
        authentication_method: Some(string("SCRAM-SHA-1")),
        ..Default::default()
    });
    let run = spawn_client(move || async move {
        let _ = Client::connect(options).await;
        Ok(())
    });
    let mut conn = broker.accept(ctx)?;
    let frame = conn.recv_frame()?;
    let connect = decode_connect(ctx, &frame)?;
    ensure!(
        connect.properties.authentication_method.is_some(),
        "CONNECT lost the Authentication Method"
    );
    // No CONNACK yet: only AUTH or DISCONNECT may come.
    match conn.recv_within(QUIET_TIME) {
        Ok(Packet::Auth(_)) | Ok(Packet::Disconnect(_)) | Err(_) => {}
        Ok(other) => return Err(fail(format!("sent {} before CONNACK", name(&other)))),
    }
    let _ = conn.send(Packet::ConnAck(Box::new(ConnAck {
        reason_code: ReasonCode::BadAuthenticationMethod,
        ..ConnAck::default()
    })));
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

/// Enhanced authentication with tern-client's SCRAM-SHA-256: the scripted
/// broker plays the server side (tern-session's `ScramServer`, holding the
/// password's credential) and checks each of the client's AUTH packets:
/// 0x18 in answer to ours [MQTT-4.12.0-3], always the CONNECT's method
/// [MQTT-4.12.0-5]; then the client re-authenticates, which must be AUTH
/// 0x19 with the same method [MQTT-4.12.1-1].
fn scram_exchange(ctx: &Ctx) -> TestResult {
    use tern_codec::{Auth, AuthProperties};
    use tern_session::scram::{ClientFirst, SCRAM_SHA_256, ScramCredential, ScramServer};
    const PASSWORD: &[u8] = b"conformance";
    let broker = FakeBroker::new()?;
    let options = broker
        .options(ctx)?
        .scram_sha256("alice", PASSWORD)
        .map_err(|e| fail(e.to_string()))?;
    let run = spawn_client(move || async move {
        let (client, _messages) = Client::connect(options).await.map_err(|e| e.to_string())?;
        client.reauthenticate().await.map_err(|e| e.to_string())?;
        client.disconnect().await.map_err(|e| e.to_string())
    });
    let credential = ScramCredential::derive(PASSWORD, b"salt", 4096);
    let method = || Some(string(SCRAM_SHA_256));
    let auth = |code: ReasonCode, data: Vec<u8>| {
        Packet::Auth(Box::new(Auth {
            reason_code: code,
            properties: AuthProperties {
                authentication_method: method(),
                authentication_data: Some(Bytes::from(data)),
                ..Default::default()
            },
        }))
    };
    // The client's AUTH, checked: its reason code and method; its data.
    let client_auth = |conn: &mut Conn, want: ReasonCode| -> Result<Bytes, Stop> {
        match conn.recv()? {
            Packet::Auth(a) => {
                ensure!(
                    a.reason_code == want,
                    "AUTH {:?}, expected {want:?}",
                    a.reason_code
                );
                ensure!(
                    a.properties.authentication_method == method(),
                    "AUTH method {:?}, not the CONNECT's",
                    a.properties.authentication_method
                );
                a.properties
                    .authentication_data
                    .ok_or_else(|| fail("AUTH without data"))
            }
            other => Err(fail(format!("expected AUTH, got {}", name(&other)))),
        }
    };
    // One SCRAM exchange from the client's first message: our server-first,
    // its final (AUTH 0x18), and our verdict's data.
    let exchange = |conn: &mut Conn, first: &[u8]| -> Result<Vec<u8>, Stop> {
        let first = ClientFirst::parse(first).map_err(|e| fail(e.to_string()))?;
        let (server, server_first) = ScramServer::start(&first, credential.clone(), "srv")
            .map_err(|e| fail(e.to_string()))?;
        conn.send(auth(ReasonCode::ContinueAuthentication, server_first))?;
        let last = client_auth(conn, ReasonCode::ContinueAuthentication)?;
        server.finish(&last).map_err(|e| fail(e.to_string()))
    };
    let mut conn = broker.accept(ctx)?;
    let frame = conn.recv_frame()?;
    let connect = decode_connect(ctx, &frame)?;
    ensure!(
        connect.properties.authentication_method == method(),
        "CONNECT method {:?}",
        connect.properties.authentication_method
    );
    let first = connect
        .properties
        .authentication_data
        .ok_or_else(|| fail("CONNECT without SCRAM client-first data"))?;
    let server_final = exchange(&mut conn, &first)?;
    conn.send(Packet::ConnAck(Box::new(ConnAck {
        properties: ConnAckProperties {
            authentication_method: method(),
            authentication_data: Some(Bytes::from(server_final)),
            ..Default::default()
        },
        ..ConnAck::default()
    })))?;
    let first = client_auth(&mut conn, ReasonCode::ReAuthenticate)?;
    let server_final = exchange(&mut conn, &first)?;
    conn.send(auth(ReasonCode::Success, server_final))?;
    match conn.recv()? {
        Packet::Disconnect(_) => {}
        other => return Err(fail(format!("expected DISCONNECT, got {}", name(&other)))),
    }
    run.join()
}

/// Three QoS 1 messages in flight; the connection drops; the reconnect's
/// CONNACK says session present 0: the old flows are gone, so nothing may
/// come back as a resend (DUP 1). (tern-client sends the unacknowledged
/// messages again as new ones, DUP 0, which this statement allows.) Once
/// reconnected, the client publishes a marker, so the test sees the client
/// talking on the new connection (a client that sent nothing would
/// otherwise pass), and anything resent would come before it.
fn session_discarded(ctx: &Ctx) -> TestResult {
    const MARKER: &[u8] = b"after the reconnect";
    let broker = FakeBroker::new()?;
    let options = broker
        .options(ctx)?
        .session_expiry(300)
        .reconnect(Some(Backoff {
            initial: Duration::from_millis(20),
            factor: 1.0,
            max: Duration::from_millis(20),
            jitter: 0.0,
            seed: Some(1),
        }));
    let run = spawn_client(move || async move {
        let (client, _messages) = Client::connect(options).await.map_err(|e| e.to_string())?;
        let mut states = client.state_changes();
        for i in 0..3u8 {
            // Completion (or an error for the discarded flow) does not matter.
            drop(tokio::spawn(
                client
                    .publish("t/sd", vec![i], QoS::AtLeastOnce, false)
                    .into_future(),
            ));
        }
        // Wait for the connection to drop and come back.
        let back = async {
            let mut dropped = false;
            loop {
                states.changed().await.map_err(|e| e.to_string())?;
                match &*states.borrow_and_update() {
                    tern_client::State::Disconnected { .. } => dropped = true,
                    tern_client::State::Connected { .. } if dropped => return Ok(()),
                    tern_client::State::Closed { error } => {
                        return Err(format!("the client closed: {error:?}"));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(PACKET_TIMEOUT * 2, back)
            .await
            .map_err(|_| "the client did not reconnect".to_string())??;
        client
            .publish("t/sd", MARKER.to_vec(), QoS::AtLeastOnce, false)
            .await
            .map_err(|e| e.to_string())?;
        let _ = client.disconnect().await;
        Ok(())
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    for _ in 0..3 {
        match conn.recv()? {
            Packet::Publish(_) => {}
            other => return Err(fail(format!("unexpected {}", name(&other)))),
        }
    }
    conn.drop_abruptly();
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    let mut marker = false;
    loop {
        match conn.recv()? {
            Packet::Publish(p) => {
                ensure!(
                    !p.dup,
                    "after session present 0 the client resent {:?} (DUP 1)",
                    p.payload
                );
                marker |= p.payload == MARKER;
                if let Some(id) = p.packet_id {
                    conn.send(Packet::PubAck(PubAck::new(id)))?;
                }
            }
            Packet::PingReq => conn.send(Packet::PingResp)?,
            Packet::Disconnect(_) => break,
            other => return Err(fail(format!("unexpected {}", name(&other)))),
        }
    }
    ensure!(
        marker,
        "the client sent nothing after reconnecting, so nothing was checked"
    );
    let _ = conn.expect_closed_within(PACKET_TIMEOUT);
    run.join()
}

/// Connects tern-client, then sends `bytes` as the broker: the client must
/// close the connection (a DISCONNECT >= 0x80 first is allowed).
fn client_must_close(ctx: &Ctx, bytes: &[u8]) -> TestResult {
    let broker = FakeBroker::new()?;
    let options = broker.options(ctx)?;
    let run = spawn_client(move || async move {
        let (_client, mut messages) = Client::connect(options).await.map_err(|e| e.to_string())?;
        // The stream ends when the connection does; a message is fine too
        // as long as the connection then closes.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while messages.recv().await.is_some() {}
        })
        .await;
        Ok(())
    });
    let (mut conn, _) = broker.handshake(ctx, accept_all())?;
    conn.send_raw(bytes)?;
    let seen = conn.expect_closed_within(PACKET_TIMEOUT)?;
    for p in &seen {
        match p {
            Packet::Disconnect(d) if ctx.v5() && d.reason_code.is_error() => {}
            other => {
                return Err(fail(format!(
                    "client answered with {} instead of closing",
                    name(other)
                )));
            }
        }
    }
    run.join()
}

/// A QoS 0 PUBLISH with a raw topic (and, for 5.0, raw properties).
fn publish_bytes(ctx: &Ctx, first: u8, topic: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = crate::harness::raw_str(topic);
    if first & 0x06 != 0 {
        body.extend_from_slice(&1u16.to_be_bytes());
    }
    if ctx.v5() {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(b"x");
    crate::harness::raw(first, &body)
}

fn bad_utf8_in(ctx: &Ctx) -> TestResult {
    client_must_close(
        ctx,
        &publish_bytes(ctx, 0x30, &[b'a', 0xED, 0xA0, 0x80], &[]),
    )
}

fn null_in(ctx: &Ctx) -> TestResult {
    client_must_close(ctx, &publish_bytes(ctx, 0x30, b"a\0b", &[]))
}

fn qos3_in(ctx: &Ctx) -> TestResult {
    client_must_close(ctx, &publish_bytes(ctx, 0x36, b"t/q3", &[]))
}

fn bad_flags_in(ctx: &Ctx) -> TestResult {
    client_must_close(ctx, &[0xD1, 0x00])
}

fn wildcard_in(ctx: &Ctx) -> TestResult {
    client_must_close(ctx, &publish_bytes(ctx, 0x30, b"t/+", &[]))
}

fn alias_zero_in(ctx: &Ctx) -> TestResult {
    client_must_close(ctx, &publish_bytes(ctx, 0x30, b"t/a", &[0x23, 0, 0]))
}
