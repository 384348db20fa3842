//! CONNECT, CONNACK, sessions, wills, keep alive, PINGREQ, DISCONNECT.

use super::{Case, v3, v5};
use crate::{
    ensure,
    harness::{Conn, Ctx, QUIET_TIME, Stop, TestResult, encode, fail, name, raw, string},
};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tern_codec::{ConnectProperties, Packet, QoS, ReasonCode, Will, WillProperties};

pub(crate) const CASES: &[Case] = &[
    v3!(
        "MQTT-3.1.0-1",
        "first packet not CONNECT closes",
        first_packet_not_connect
    ),
    v5!(
        "MQTT-3.1.0-1",
        "first packet not CONNECT closes",
        first_packet_not_connect
    ),
    v3!("MQTT-3.1.0-2", "second CONNECT closes", second_connect),
    v5!("MQTT-3.1.0-2", "second CONNECT closes", second_connect),
    v3!(
        "MQTT-3.1.2-2",
        "protocol level 6 gets CONNACK 0x01 and close",
        bad_level_v3
    ),
    v5!("MQTT-3.1.2-2", "protocol level 6 closes", bad_level_v5),
    v3!(
        "MQTT-3.1.2-3",
        "reserved CONNECT flag closes",
        reserved_connect_flag
    ),
    v5!(
        "MQTT-3.1.2-3",
        "reserved CONNECT flag closes",
        reserved_connect_flag
    ),
    v3!(
        "MQTT-3.1.2-4",
        "clean session 0 resumes the session",
        session_resumed
    ),
    v5!(
        "MQTT-3.1.2-5",
        "clean start 0 resumes the session",
        session_resumed
    ),
    v3!(
        "MQTT-3.1.2-5",
        "offline QoS 1 messages stored",
        offline_messages_stored
    ),
    v5!(
        "MQTT-3.1.2-23",
        "session kept after close while expiry > 0",
        offline_messages_stored
    ),
    v3!(
        "MQTT-3.1.2-6",
        "clean session 1 discards the session",
        clean_discards
    ),
    v5!(
        "MQTT-3.1.2-4",
        "clean start 1 discards the session",
        clean_discards
    ),
    v3!(
        "MQTT-3.1.2-7",
        "retained messages survive session end",
        retained_survives_session
    ),
    v3!(
        "MQTT-3.1.2-8",
        "will published on abnormal close",
        will_on_abrupt_close
    ),
    v5!(
        "MQTT-3.1.2-7",
        "will stored and published on abnormal close",
        will_on_abrupt_close
    ),
    v5!(
        "MQTT-3.1.2-8",
        "will published after will delay elapses",
        will_after_delay
    ),
    v3!(
        "MQTT-3.1.2-10",
        "will removed after DISCONNECT",
        will_discarded_on_disconnect
    ),
    v5!(
        "MQTT-3.1.2-10",
        "will removed after DISCONNECT",
        will_discarded_on_disconnect
    ),
    v3!(
        "MQTT-3.14.4-3",
        "DISCONNECT discards the will",
        will_discarded_on_disconnect
    ),
    v5!(
        "MQTT-3.14.4-3",
        "DISCONNECT 0x00 discards the will",
        will_discarded_on_disconnect
    ),
    v3!("MQTT-3.1.2-12", "no will flag, no will", no_will_no_message),
    v3!(
        "MQTT-3.1.2-16",
        "will retain 0 publishes non-retained",
        will_not_retained
    ),
    v5!(
        "MQTT-3.1.2-14",
        "will retain 0 publishes non-retained",
        will_not_retained
    ),
    v3!(
        "MQTT-3.1.2-17",
        "will retain 1 publishes retained",
        will_retained
    ),
    v5!(
        "MQTT-3.1.2-15",
        "will retain 1 publishes retained",
        will_retained
    ),
    v3!("MQTT-3.1.2-24", "keep alive closes at 1.5x", keep_alive),
    v5!("MQTT-3.1.2-22", "keep alive closes at 1.5x", keep_alive),
    v5!(
        "MQTT-3.2.2-22",
        "no Server Keep Alive: client's keep alive used",
        keep_alive
    ),
    v3!(
        "MQTT-3.1.3-5",
        "23-character alphanumeric client id accepted",
        client_id_23
    ),
    v5!(
        "MQTT-3.1.3-5",
        "23-character alphanumeric client id accepted",
        client_id_23
    ),
    v3!(
        "MQTT-3.1.3-6",
        "empty client id gets a unique session",
        empty_client_id
    ),
    v5!(
        "MQTT-3.1.3-6",
        "empty client id gets a unique session",
        empty_client_id
    ),
    v5!(
        "MQTT-3.1.3-7",
        "assigned client id returned in CONNACK",
        assigned_client_id
    ),
    v5!(
        "MQTT-3.2.2-16",
        "empty client id: Assigned Client Identifier",
        assigned_client_id
    ),
    v3!(
        "MQTT-3.1.3-8",
        "empty client id with clean session 0 rejected",
        empty_id_persistent_v3
    ),
    v3!(
        "MQTT-3.1.3-9",
        "rejected client id: CONNACK 0x02 and close",
        empty_id_persistent_v3
    ),
    v3!(
        "MQTT-3.1.4-1",
        "malformed CONNECT closes without CONNACK",
        malformed_connect
    ),
    v5!(
        "MQTT-3.1.4-1",
        "malformed CONNECT closes",
        malformed_connect
    ),
    v5!(
        "MQTT-3.14.0-1",
        "no DISCONNECT before CONNACK",
        malformed_connect
    ),
    v3!("MQTT-3.1.4-2", "same client id takes over", takeover),
    v5!(
        "MQTT-3.1.4-3",
        "same client id takes over with DISCONNECT 0x8E",
        takeover
    ),
    v5!(
        "MQTT-3.14.2-2",
        "server DISCONNECT has no Session Expiry",
        takeover
    ),
    v3!(
        "MQTT-3.1.4-4",
        "accepted CONNECT gets CONNACK 0x00",
        connack_success
    ),
    v5!(
        "MQTT-3.1.4-5",
        "accepted CONNECT gets CONNACK 0x00",
        connack_success
    ),
    v5!(
        "MQTT-3.2.2-1",
        "CONNACK reserved flag bits are 0",
        connack_success
    ),
    v3!(
        "MQTT-3.1.4-5",
        "data after a rejected CONNECT not processed",
        rejected_then_data_v3
    ),
    v5!(
        "MQTT-3.1.4-6",
        "data after a rejected CONNECT not processed",
        rejected_then_data_v5
    ),
    v3!("MQTT-3.2.0-1", "CONNACK is the first packet", connack_first),
    v5!("MQTT-3.2.0-1", "CONNACK is the first packet", connack_first),
    v3!(
        "MQTT-3.2.2-1",
        "clean session: session present 0",
        session_present_clean
    ),
    v5!(
        "MQTT-3.2.2-2",
        "clean start: session present 0",
        session_present_clean
    ),
    v3!(
        "MQTT-3.2.2-2",
        "resumed session: session present 1",
        session_present_resumed
    ),
    v5!(
        "MQTT-3.2.2-3",
        "resumed session: session present 1",
        session_present_resumed
    ),
    v3!(
        "MQTT-3.2.2-3",
        "no stored session: session present 0",
        session_present_new
    ),
    v5!(
        "MQTT-3.1.2-6",
        "no stored session: new session, present 0",
        session_present_new
    ),
    v3!(
        "MQTT-3.2.2-4",
        "refused CONNACK has session present 0",
        refused_connack_v3
    ),
    v3!(
        "MQTT-3.2.2-5",
        "refused CONNACK then close",
        refused_connack_v3
    ),
    v5!(
        "MQTT-3.2.2-6",
        "refused CONNACK has session present 0",
        refused_connack_v5
    ),
    v5!(
        "MQTT-3.2.2-7",
        "CONNACK >= 0x80 then close",
        refused_connack_v5
    ),
    v5!(
        "MQTT-4.12.0-1",
        "unsupported authentication method refused",
        refused_connack_v5
    ),
    v3!("MQTT-3.12.4-1", "PINGREQ gets PINGRESP", ping),
    v5!("MQTT-3.12.4-1", "PINGREQ gets PINGRESP", ping),
    v3!(
        "MQTT-3.14.1-1",
        "DISCONNECT reserved bits close",
        disconnect_reserved_bits
    ),
    v5!(
        "MQTT-3.14.1-1",
        "DISCONNECT reserved bits close",
        disconnect_reserved_bits
    ),
    v5!(
        "MQTT-3.1.3-9",
        "reconnect within will delay: no will",
        will_delay_reconnect
    ),
    v5!(
        "MQTT-4.1.0-2",
        "session discarded after expiry",
        session_expires
    ),
    v5!(
        "MQTT-3.1.2-28",
        "no Response Information unless requested",
        no_response_info
    ),
    v5!(
        "MQTT-3.1.3-10",
        "will user properties keep their order",
        will_user_properties
    ),
    v5!(
        "MQTT-3.14.2-1",
        "server DISCONNECT uses a DISCONNECT reason code",
        takeover
    ),
    v5!(
        "MQTT-3.14.4-1",
        "nothing sent after the server's DISCONNECT",
        takeover
    ),
    v5!(
        "MQTT-3.14.4-2",
        "server closes after its DISCONNECT",
        takeover
    ),
    v5!(
        "MQTT-3.1.2-1",
        "protocol name other than MQTT closes",
        bad_protocol_name
    ),
    v3!(
        "MQTT-3.1.4-3",
        "CleanSession processed on CONNECT",
        clean_discards
    ),
    v5!(
        "MQTT-3.1.4-4",
        "Clean Start processed on CONNECT",
        clean_discards
    ),
    v3!(
        "MQTT-3.1.3-2",
        "client id identifies the session",
        session_resumed
    ),
    v5!(
        "MQTT-3.1.3-2",
        "client id identifies the session",
        session_resumed
    ),
    v5!(
        "MQTT-3.2.2-8",
        "CONNACK uses a CONNECT reason code",
        refused_connack_v5
    ),
    v5!(
        "MQTT-4.13.2-1",
        "CONNACK >= 0x80 closes the connection",
        refused_connack_v5
    ),
    v3!(
        "MQTT-3.2.2-6",
        "no applicable return code: close without CONNACK",
        malformed_connect
    ),
    v3!(
        "MQTT-4.1.0-1",
        "session state kept for the session's duration",
        session_kept_while_open
    ),
    v3!(
        "MQTT-4.1.0-2",
        "session lasts while the connection is open",
        session_kept_while_open
    ),
    v5!(
        "MQTT-4.1.0-1",
        "session kept while connected past its expiry",
        session_kept_while_open
    ),
];

/// A CONNECT with a will on `topic`.
fn with_will(ctx: &Ctx, topic: &str, retain: bool) -> tern_codec::Connect {
    let mut connect = ctx.connect_packet();
    connect.will = Some(Will {
        topic: string(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain,
        properties: WillProperties::default(),
    });
    connect
}

/// A CONNECT whose session outlives the connection (3.1.1: clean session
/// 0; 5.0: a Session Expiry Interval, with Clean Start `clean`), for
/// `client_id`.
fn persistent(ctx: &Ctx, client_id: &str, clean: bool) -> tern_codec::Connect {
    ctx.persistent(client_id);
    let mut connect = ctx.connect_packet();
    connect.client_id = string(client_id);
    // 3.1.1 keeps the session only with clean session 0; a 5.0 session
    // outlives the connection by its expiry, whatever Clean Start says.
    connect.clean_start = clean && ctx.v5();
    if ctx.v5() {
        connect.properties.session_expiry_interval = Some(300);
    }
    connect
}

/// Waits for the broker to close, allowing a refusing CONNACK first (and,
/// for 5.0, nothing else). Fails on a successful CONNACK.
fn expect_refused(conn: &mut Conn) -> TestResult {
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    for p in &seen {
        match p {
            Packet::ConnAck(a) if a.reason_code.is_error() => {}
            other => return Err(fail(format!("broker sent {} before closing", name(other)))),
        }
    }
    Ok(())
}

fn first_packet_not_connect(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.open()?;
    conn.send(Packet::PingReq)?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    ensure!(
        seen.is_empty(),
        "broker answered a PINGREQ before CONNECT: {:?}",
        seen.iter().map(name).collect::<Vec<_>>()
    );
    Ok(())
}

fn second_connect(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.connect()?;
    conn.send(Packet::Connect(Box::new(ctx.connect_packet())))?;
    conn.expect_closed_with_error()
}

/// The CONNECT bytes with the protocol level byte replaced.
fn connect_bytes_with(ctx: &Ctx, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = encode(
        &Packet::Connect(Box::new(ctx.connect_packet())),
        ctx.protocol(),
    );
    edit(&mut bytes);
    bytes
}

/// Offsets in a short CONNECT: 2 bytes fixed header, 6 bytes "MQTT".
const LEVEL_AT: usize = 8;
const FLAGS_AT: usize = 9;

fn bad_protocol_name(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.open()?;
    conn.send_raw(&connect_bytes_with(ctx, |b| {
        b[4..8].copy_from_slice(b"MQXX")
    }))?;
    let bytes = conn.read_raw_until_closed(crate::harness::CLOSE_TIMEOUT)?;
    match bytes.as_slice() {
        [] => Ok(()),
        [0x20, _, 0, code, ..] if *code >= 0x80 => Ok(()),
        other => Err(fail(format!(
            "expected close, or a 5.0 CONNACK 0x84 then close; got bytes {other:02x?}"
        ))),
    }
}

fn session_kept_while_open(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("k");
    let mut connect = ctx.connect_packet();
    if ctx.v5() {
        connect.properties.session_expiry_interval = Some(1);
    }
    let (mut s, _) = ctx.connect_ok(connect)?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    std::thread::sleep(Duration::from_millis(1600));
    let mut p = ctx.connect()?;
    p.publish(&topic, b"x", QoS::AtLeastOnce, false)?;
    let got = s.recv_publish_acked()?;
    ensure!(&got.payload[..] == b"x", "got {:?}", got.payload);
    p.disconnect()?;
    s.disconnect()
}

fn bad_level_v3(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.open()?;
    conn.send_raw(&connect_bytes_with(ctx, |b| b[LEVEL_AT] = 6))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [Packet::ConnAck(a)] if a.reason_code == ReasonCode::UnsupportedProtocolVersion => Ok(()),
        other => Err(fail(format!(
            "expected CONNACK 0x01 then close, got {:?} then close",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

fn bad_level_v5(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.open()?;
    conn.send_raw(&connect_bytes_with(ctx, |b| b[LEVEL_AT] = 6))?;
    // The broker does not know the version, so it may answer in either
    // format: 3.x return code 0x01, or 5.0 reason code 0x84.
    let bytes = conn.read_raw_until_closed(crate::harness::CLOSE_TIMEOUT)?;
    match bytes.as_slice() {
        [] | [0x20, 2, 0, 0x01] => Ok(()),
        [0x20, _, 0, 0x84, ..] => Ok(()),
        other => Err(fail(format!(
            "expected close, or CONNACK 0x01/0x84 then close; got bytes {other:02x?}"
        ))),
    }
}

fn reserved_connect_flag(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.open()?;
    conn.send_raw(&connect_bytes_with(ctx, |b| b[FLAGS_AT] |= 0x01))?;
    if ctx.v5() {
        expect_refused(&mut conn)
    } else {
        let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
        ensure!(
            seen.is_empty(),
            "broker sent {:?} before closing",
            seen.iter().map(name).collect::<Vec<_>>()
        );
        Ok(())
    }
}

/// Publishes one message from a fresh connection.
fn publish_from_other(
    ctx: &Ctx,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> TestResult {
    let mut p = ctx.connect()?;
    p.publish(topic, payload, qos, retain)?;
    p.disconnect()
}

fn session_resumed(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let topic = ctx.topic("s");
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, true))?;
    c.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    c.disconnect()?;
    let (mut c, ack) = ctx.connect_ok(persistent(ctx, &id, false))?;
    ensure!(
        ack.session_present,
        "session present 0 on resuming a stored session"
    );
    publish_from_other(ctx, &topic, b"x", QoS::AtLeastOnce, false)?;
    let p = c.recv_publish_acked()?;
    ensure!(p.topic == topic.as_str(), "got {}", p.topic);
    c.disconnect()
}

fn offline_messages_stored(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let topic = ctx.topic("s");
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, true))?;
    c.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    c.disconnect()?;
    publish_from_other(ctx, &topic, b"1", QoS::AtLeastOnce, false)?;
    publish_from_other(ctx, &topic, b"2", QoS::ExactlyOnce, false)?;
    let (mut c, ack) = ctx.connect_ok(persistent(ctx, &id, false))?;
    ensure!(ack.session_present, "session not present");
    let a = c.recv_publish_acked()?;
    let b = c.recv_publish_acked()?;
    ensure!(
        &a.payload[..] == b"1" && &b.payload[..] == b"2",
        "stored messages came back as {:?}, {:?}",
        a.payload,
        b.payload
    );
    c.disconnect()
}

fn clean_discards(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let topic = ctx.topic("s");
    let marker = ctx.topic("marker");
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, true))?;
    c.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    c.disconnect()?;
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    connect.clean_start = true;
    let (mut c, ack) = ctx.connect_ok(connect)?;
    ensure!(!ack.session_present, "session present 1 after clean start");
    c.subscribe_ok(&marker, QoS::AtLeastOnce)?;
    let mut p = ctx.connect()?;
    p.publish(&topic, b"old subscription", QoS::AtLeastOnce, false)?;
    p.publish(&marker, b"m", QoS::AtLeastOnce, false)?;
    let got = c.recv_publish_acked()?;
    ensure!(
        got.topic == marker.as_str(),
        "the discarded session's subscription still delivered {}",
        got.topic
    );
    p.disconnect()?;
    c.disconnect()
}

fn retained_survives_session(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    ctx.retained(&topic);
    let id = ctx.client_id();
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, false))?;
    c.publish(&topic, b"kept", QoS::AtLeastOnce, true)?;
    c.disconnect()?;
    // End the session.
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    let (mut c, _) = ctx.connect_ok(connect)?;
    c.disconnect()?;
    let mut s = ctx.connect()?;
    s.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let p = s.recv_publish_acked()?;
    ensure!(
        &p.payload[..] == b"kept" && p.retain,
        "retained message lost with the session"
    );
    s.disconnect()
}

/// Subscribes a watcher to `topic`.
fn watcher(ctx: &Ctx, topic: &str) -> Result<Conn, Stop> {
    let mut w = ctx.connect()?;
    w.subscribe_ok(topic, QoS::AtLeastOnce)?;
    Ok(w)
}

fn will_on_abrupt_close(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    let mut w = watcher(ctx, &topic)?;
    let (c, _) = ctx.connect_ok(with_will(ctx, &topic, false))?;
    c.drop_abruptly();
    let p = w.recv_publish_acked()?;
    ensure!(
        p.topic == topic.as_str() && &p.payload[..] == b"gone",
        "wrong will {p:?}"
    );
    w.disconnect()
}

fn will_after_delay(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    let mut w = watcher(ctx, &topic)?;
    // The session outlives the delay: a will goes out when the delay
    // elapses or the session ends, whichever is first.
    let id = ctx.client_id();
    let mut connect = persistent(ctx, &id, true);
    connect.will = with_will(ctx, &topic, false).will;
    if let Some(will) = connect.will.as_mut() {
        will.properties.will_delay_interval = Some(1);
    }
    let (c, _) = ctx.connect_ok(connect)?;
    let closed = Instant::now();
    c.drop_abruptly();
    let p = w.recv_publish_acked()?;
    let after = closed.elapsed();
    ensure!(p.topic == topic.as_str(), "wrong will {p:?}");
    ensure!(
        after >= Duration::from_millis(900),
        "will with a 1 s delay published after {} ms",
        after.as_millis()
    );
    w.disconnect()
}

fn will_delay_reconnect(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    let mut w = watcher(ctx, &topic)?;
    let id = ctx.client_id();
    let mut connect = persistent(ctx, &id, true);
    connect.will = with_will(ctx, &topic, false).will;
    if let Some(will) = connect.will.as_mut() {
        will.properties.will_delay_interval = Some(2);
    }
    let (c, _) = ctx.connect_ok(connect)?;
    c.drop_abruptly();
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, false))?;
    w.expect_silence(Duration::from_millis(2500))?;
    c.disconnect()?;
    w.disconnect()
}

fn will_discarded_on_disconnect(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    let mut w = watcher(ctx, &topic)?;
    let (mut c, _) = ctx.connect_ok(with_will(ctx, &topic, false))?;
    c.disconnect()?;
    w.expect_silence(QUIET_TIME)?;
    w.disconnect()
}

fn no_will_no_message(ctx: &Ctx) -> TestResult {
    let mut w = watcher(ctx, &format!("{}/#", ctx.prefix()))?;
    let c = ctx.connect()?;
    c.drop_abruptly();
    w.expect_silence(QUIET_TIME)?;
    w.disconnect()
}

fn will_not_retained(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    ctx.retained(&topic);
    let mut w = watcher(ctx, &topic)?;
    let (c, _) = ctx.connect_ok(with_will(ctx, &topic, false))?;
    c.drop_abruptly();
    let p = w.recv_publish_acked()?;
    ensure!(!p.retain, "will delivered with RETAIN 1");
    let mut late = ctx.connect()?;
    late.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    late.expect_silence(QUIET_TIME)?;
    w.disconnect()?;
    late.disconnect()
}

fn will_retained(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    ctx.retained(&topic);
    let mut w = watcher(ctx, &topic)?;
    let (c, _) = ctx.connect_ok(with_will(ctx, &topic, true))?;
    c.drop_abruptly();
    w.recv_publish_acked()?;
    let mut late = ctx.connect()?;
    late.subscribe_ok(&topic, QoS::AtLeastOnce)?;
    let p = late.recv_publish_acked()?;
    ensure!(
        p.retain && &p.payload[..] == b"gone",
        "will not retained: {p:?}"
    );
    w.disconnect()?;
    late.disconnect()
}

/// How late after 1.5 x Keep Alive a close may be seen: thread and timer
/// scheduling on a loaded machine, nothing a broker may add on purpose.
const KEEP_ALIVE_MARGIN: Duration = Duration::from_millis(250);

fn keep_alive(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.keep_alive = 1;
    let (mut c, ack) = ctx.connect_ok(connect)?;
    let started = Instant::now();
    if let Some(server) = ack.properties.server_keep_alive {
        return Err(Stop::Skip(format!(
            "broker imposes Server Keep Alive {server}"
        )));
    }
    // Waits longer than allowed, so a late close says how late it was.
    c.expect_closed_within(Duration::from_millis(3000))?;
    let after = started.elapsed();
    ensure!(
        after >= Duration::from_millis(900),
        "closed after {} ms, before the keep alive (1 s) ran out",
        after.as_millis()
    );
    // The statement: no packet for 1.5 x Keep Alive, the connection is
    // closed. `started` is taken after CONNACK, later than the broker's
    // last receipt, so only scheduling can make the close look late.
    let allowed = Duration::from_millis(1500) + KEEP_ALIVE_MARGIN;
    ensure!(
        after <= allowed,
        "closed only after {} ms (1.5 x 1 s, plus {} ms for scheduling, allowed)",
        after.as_millis(),
        KEEP_ALIVE_MARGIN.as_millis()
    );
    Ok(())
}

fn client_id_23(ctx: &Ctx) -> TestResult {
    let mut id = ctx.client_id();
    while id.len() < 23 {
        id.push('Z');
    }
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    let (mut c, _) = ctx.connect_ok(connect)?;
    c.expect_alive()?;
    c.disconnect()
}

fn empty_client_id(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.client_id = string("");
    let (mut a, ack) = ctx.connect_with(connect.clone())?;
    if ack.reason_code != ReasonCode::Success {
        return Err(Stop::Skip(format!(
            "broker does not allow empty client ids ({:?}); a server MAY refuse them",
            ack.reason_code
        )));
    }
    let (mut b, _) = ctx.connect_ok(connect)?;
    // Two clients with empty ids are different clients: neither took over.
    a.expect_alive()?;
    b.expect_alive()?;
    a.disconnect()?;
    b.disconnect()
}

fn assigned_client_id(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.client_id = string("");
    let (mut c, ack) = ctx.connect_with(connect)?;
    if ack.reason_code == ReasonCode::ClientIdentifierNotValid {
        return Err(Stop::Skip("broker does not allow empty client ids".into()));
    }
    ensure!(
        ack.reason_code == ReasonCode::Success,
        "refused: {:?}",
        ack.reason_code
    );
    let assigned = ack
        .properties
        .assigned_client_identifier
        .ok_or_else(|| fail("CONNACK without Assigned Client Identifier"))?;
    ensure!(!assigned.is_empty(), "empty Assigned Client Identifier");
    c.disconnect()
}

fn empty_id_persistent_v3(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.client_id = string("");
    connect.clean_start = false;
    let mut conn = ctx.open()?;
    conn.send(Packet::Connect(Box::new(connect)))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [Packet::ConnAck(a)] if a.reason_code == ReasonCode::ClientIdentifierNotValid => Ok(()),
        other => Err(fail(format!(
            "expected CONNACK 0x02 then close, got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

fn malformed_connect(ctx: &Ctx) -> TestResult {
    // Will QoS 1 with the Will Flag 0 [MQTT-3.1.2-11/-13].
    let mut conn = ctx.open()?;
    conn.send_raw(&connect_bytes_with(ctx, |b| b[FLAGS_AT] |= 0x08))?;
    if ctx.v5() {
        expect_refused(&mut conn)
    } else {
        let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
        ensure!(
            seen.is_empty(),
            "broker sent {:?} before closing",
            seen.iter().map(name).collect::<Vec<_>>()
        );
        Ok(())
    }
}

fn takeover(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    let (mut first, _) = ctx.connect_ok(connect.clone())?;
    let (mut second, _) = ctx.connect_ok(connect)?;
    let seen = first.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    if ctx.v5() {
        match seen.as_slice() {
            [] => {}
            [Packet::Disconnect(d)] => {
                ensure!(
                    d.reason_code == ReasonCode::SessionTakenOver,
                    "old connection got DISCONNECT {:?}, not 0x8E",
                    d.reason_code
                );
                ensure!(
                    d.properties.session_expiry_interval.is_none(),
                    "server DISCONNECT carries a Session Expiry Interval"
                );
            }
            other => {
                return Err(fail(format!(
                    "old connection got {:?}",
                    other.iter().map(name).collect::<Vec<_>>()
                )));
            }
        }
    }
    second.expect_alive()?;
    second.disconnect()
}

fn connack_success(ctx: &Ctx) -> TestResult {
    let (mut c, ack) = ctx.connect_ok(ctx.connect_packet())?;
    ensure!(
        !ack.session_present,
        "session present on a new clean session"
    );
    c.disconnect()
}

fn rejected_then_data_v3(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    ctx.retained(&topic);
    let mut bytes = connect_bytes_with(ctx, |b| b[LEVEL_AT] = 6);
    bytes.extend(retained_publish_bytes(ctx, &topic));
    let mut conn = ctx.open()?;
    conn.send_raw(&bytes)?;
    let _ = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    no_retained(ctx, &topic)
}

fn rejected_then_data_v5(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("r");
    ctx.retained(&topic);
    let mut connect = ctx.connect_packet();
    connect.properties.authentication_method = Some(string("tern-conformance-unknown"));
    let mut bytes = encode(&Packet::Connect(Box::new(connect)), ctx.protocol());
    bytes.extend(retained_publish_bytes(ctx, &topic));
    let mut conn = ctx.open()?;
    conn.send_raw(&bytes)?;
    match conn.recv()? {
        Packet::ConnAck(a) if a.reason_code.is_error() => {}
        Packet::Auth(_) => return Err(Stop::Skip("broker started authentication".into())),
        other => {
            return Err(Stop::Skip(format!(
                "broker did not refuse the CONNECT ({}): nothing to test",
                name(&other)
            )));
        }
    }
    let _ = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    no_retained(ctx, &topic)
}

fn retained_publish_bytes(ctx: &Ctx, topic: &str) -> Vec<u8> {
    encode(
        &Packet::Publish(tern_codec::Publish {
            retain: true,
            topic: string(topic),
            payload: Bytes::from_static(b"must not be stored"),
            ..Default::default()
        }),
        ctx.protocol(),
    )
}

fn no_retained(ctx: &Ctx, topic: &str) -> TestResult {
    let mut s = ctx.connect()?;
    s.subscribe_ok(topic, QoS::AtMostOnce)?;
    s.expect_silence(QUIET_TIME)?;
    s.disconnect()
}

fn connack_first(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("x");
    let mut bytes = encode(
        &Packet::Connect(Box::new(ctx.connect_packet())),
        ctx.protocol(),
    );
    bytes.extend(encode(
        &Packet::Subscribe(tern_codec::Subscribe {
            packet_id: crate::harness::pid(1),
            properties: Default::default(),
            filters: vec![tern_codec::SubscribeFilter {
                filter: string(&topic),
                options: tern_codec::SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }),
        ctx.protocol(),
    ));
    bytes.extend(encode(&Packet::PingReq, ctx.protocol()));
    let mut conn = ctx.open()?;
    conn.send_raw(&bytes)?;
    let first = conn.recv()?;
    ensure!(
        matches!(first, Packet::ConnAck(_)),
        "first packet was {}",
        name(&first)
    );
    // The packets sent with the CONNECT were processed after it.
    conn.wait_for(|p| matches!(p, Packet::SubAck(_)), "SUBACK")?;
    conn.wait_for(|p| matches!(p, Packet::PingResp), "PINGRESP")?;
    conn.disconnect()
}

fn session_present_clean(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, true))?;
    c.subscribe_ok(&ctx.topic("s"), QoS::AtLeastOnce)?;
    c.disconnect()?;
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&id);
    let (mut c, ack) = ctx.connect_ok(connect)?;
    ensure!(!ack.session_present, "session present 1 with clean start");
    c.disconnect()
}

fn session_present_resumed(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let (mut c, _) = ctx.connect_ok(persistent(ctx, &id, true))?;
    c.subscribe_ok(&ctx.topic("s"), QoS::AtLeastOnce)?;
    c.disconnect()?;
    let (mut c, ack) = ctx.connect_ok(persistent(ctx, &id, false))?;
    ensure!(
        ack.session_present,
        "session present 0 with a stored session"
    );
    c.disconnect()
}

fn session_present_new(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let (mut c, ack) = ctx.connect_ok(persistent(ctx, &id, false))?;
    ensure!(
        !ack.session_present,
        "session present 1 with no stored session"
    );
    c.subscribe_ok(&ctx.topic("s"), QoS::AtLeastOnce)?;
    c.disconnect()?;
    // The new session was created: it is there on the next connect.
    let (mut c, ack) = ctx.connect_ok(persistent(ctx, &id, false))?;
    ensure!(
        ack.session_present,
        "the session created on connect was not kept"
    );
    c.disconnect()
}

fn refused_connack_v3(ctx: &Ctx) -> TestResult {
    let mut conn = ctx.open()?;
    conn.send_raw(&connect_bytes_with(ctx, |b| b[LEVEL_AT] = 6))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [Packet::ConnAck(a)] => {
            ensure!(a.reason_code.is_error(), "refusal with {:?}", a.reason_code);
            ensure!(!a.session_present, "refusing CONNACK has session present 1");
            Ok(())
        }
        other => Err(fail(format!(
            "expected one refusing CONNACK then close, got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

fn refused_connack_v5(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.properties = ConnectProperties {
        authentication_method: Some(string("tern-conformance-unknown")),
        ..ConnectProperties::default()
    };
    let mut conn = ctx.open()?;
    conn.send(Packet::Connect(Box::new(connect)))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [] => Ok(()),
        [Packet::ConnAck(a)] => {
            ensure!(
                a.reason_code.is_error(),
                "unknown authentication method accepted"
            );
            ensure!(!a.session_present, "refusing CONNACK has session present 1");
            Ok(())
        }
        other => Err(fail(format!(
            "expected a refusing CONNACK then close, got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

fn ping(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send(Packet::PingReq)?;
    let p = c.recv()?;
    ensure!(
        matches!(p, Packet::PingResp),
        "PINGREQ answered with {}",
        name(&p)
    );
    c.disconnect()
}

fn disconnect_reserved_bits(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    c.send_raw(&raw(0xE1, &[]))?;
    c.expect_closed_with_error()
}

fn session_expires(ctx: &Ctx) -> TestResult {
    let id = ctx.client_id();
    let mut connect = persistent(ctx, &id, true);
    connect.properties.session_expiry_interval = Some(1);
    let (mut c, _) = ctx.connect_ok(connect)?;
    c.subscribe_ok(&ctx.topic("s"), QoS::AtLeastOnce)?;
    c.disconnect()?;
    std::thread::sleep(Duration::from_millis(2200));
    let (mut c, ack) = ctx.connect_ok(persistent(ctx, &id, false))?;
    ensure!(
        !ack.session_present,
        "session still present 2.2 s after a 1 s expiry"
    );
    c.disconnect()
}

fn no_response_info(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.properties.request_response_information = Some(false);
    let (mut c, ack) = ctx.connect_ok(connect)?;
    ensure!(
        ack.properties.response_information.is_none(),
        "Response Information sent though the client asked for none"
    );
    c.disconnect()
}

fn will_user_properties(ctx: &Ctx) -> TestResult {
    let topic = ctx.topic("will");
    let mut w = watcher(ctx, &topic)?;
    let mut connect = with_will(ctx, &topic, false);
    let props = vec![
        tern_codec::UserProperty::new(string("b"), string("1")),
        tern_codec::UserProperty::new(string("a"), string("2")),
        tern_codec::UserProperty::new(string("b"), string("3")),
    ];
    if let Some(will) = connect.will.as_mut() {
        will.properties.user_properties = props.clone().into();
    }
    let (c, _) = ctx.connect_ok(connect)?;
    c.drop_abruptly();
    let p = w.recv_publish_acked()?;
    ensure!(
        p.properties.user_properties == props,
        "will user properties arrived as {:?}",
        p.properties.user_properties
    );
    w.disconnect()
}
