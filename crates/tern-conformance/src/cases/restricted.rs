//! Statements about servers that support less: run against a second
//! instance of the broker configured with Maximum QoS 1, without retained
//! messages, and with an ACL file that refuses publishing under
//! `acl-denied/` ([`RESTRICTED_ACL`](crate::RESTRICTED_ACL);
//! `--restricted HOST:PORT`), and offering MQTT 5 enhanced authentication
//! with SCRAM-SHA-256 for [`SCRAM_USER`](crate::SCRAM_USER) and
//! SCRAM-SHA-512 for [`SCRAM_SHA512_USER`](crate::SCRAM_SHA512_USER)
//! (anonymous clients still allowed), and without wildcard subscriptions.

use super::Case;
use crate::{
    ensure,
    harness::{Ctx, TestResult, fail, name, string},
};
use bytes::Bytes;
use tern_codec::{Packet, QoS, Subscribe, SubscribeFilter, SubscriptionOptions, Will};

pub(crate) const CASES: &[Case] = &[
    super::v5!(restricted "MQTT-3.2.2-9", "restricted server announces Maximum QoS", announces_max_qos),
    super::v5!(restricted "MQTT-3.2.2-10", "QoS-limited server accepts SUBSCRIBE at QoS 0, 1, 2", subscribe_all_qos),
    super::v5!(restricted "MQTT-3.2.2-12", "will QoS above Maximum QoS refused", will_qos_refused),
    super::v5!(restricted "MQTT-3.2.2-13", "retained will without retain support refused", will_retain_refused),
    super::v3!(restricted "MQTT-3.3.5-2", "unauthorized PUBLISH acknowledged or connection closed", unauthorized_publish),
    super::v5!(restricted "MQTT-4.12.0-2", "SCRAM-SHA-256/512: server continues with AUTH 0x18", scram_login),
    super::v5!(restricted "MQTT-4.12.0-5", "SCRAM-SHA-256/512: server's AUTH and CONNACK name the method", scram_login),
    super::v5!(restricted "MQTT-3.15.2-1", "SCRAM: server's AUTH reason codes are 0x00 or 0x18", scram_reauth),
    super::v5!(restricted "MQTT-4.12.0-4", "SCRAM-SHA-256/512: a wrong password is refused, then closed", scram_wrong_password),
    super::v5!(restricted "MQTT-4.12.1-2", "SCRAM: failed re-authentication disconnects", scram_reauth_fails),
    super::v5!(restricted "MQTT-3.15.1-1", "SCRAM: AUTH with reserved flag bits closes", scram_auth_bad_flags),
    super::v5!(restricted "MQTT-3.1.3-8", "rejected client identifier: CONNACK 0x85, then close", client_id_rejected),
    super::v5!(restricted "MQTT-3.15.2-2", "SCRAM: no AUTH Reason String beyond Maximum Packet Size", auth_reason_string_fits),
    super::v5!(restricted "MQTT-3.15.2-3", "SCRAM: no AUTH User Property beyond Maximum Packet Size", auth_user_properties_fit),
    super::v3!(restricted "MQTT-3.8.3-2", "server without wildcard support refuses filters holding them", wildcards_refused),
];

/// The server's first AUTH of a SCRAM-SHA-256 login whose CONNECT gives
/// `max` as its Maximum Packet Size.
fn scram_first_auth(ctx: &Ctx, max: Option<u32>) -> Result<Auth, crate::harness::Stop> {
    let client = ScramClient::new(
        crate::SCRAM_USER,
        crate::SCRAM_PASSWORD.as_bytes(),
        "conformance",
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut connect = ctx.connect_packet();
    connect.properties.authentication_method = Some(string(SCRAM_SHA_256));
    connect.properties.authentication_data = Some(Bytes::from(client.client_first()));
    connect.properties.maximum_packet_size = max.and_then(core::num::NonZeroU32::new);
    let mut c = ctx.open()?;
    c.send(Packet::Connect(Box::new(connect)))?;
    match c.recv()? {
        Packet::Auth(a) => Ok(*a),
        other => Err(fail(format!(
            "expected AUTH 0x18 (no SCRAM-SHA-256 offered?), got {}",
            name(&other)
        ))),
    }
}

/// A login without a limit shows the AUTH with the diagnostics `has`
/// looks for; a second login allows one byte less than that AUTH took,
/// and its AUTH must come within that size, without them [MQTT-3.15.2-2]
/// [MQTT-3.15.2-3].
fn auth_diagnostics_fit(ctx: &Ctx, what: &str, has: fn(&Auth) -> bool) -> TestResult {
    let full = scram_first_auth(ctx, None)?;
    ensure!(
        has(&full),
        "the broker's AUTH 0x18 carries no {what}: the limit cannot be put to the test"
    );
    let size = Packet::Auth(Box::new(full)).encoded_len(tern_codec::ProtocolVersion::V5);
    let limit = u32::try_from(size - 1).map_err(|e| fail(e.to_string()))?;
    let small = scram_first_auth(ctx, Some(limit))?;
    ensure!(!has(&small), "the AUTH still carries the {what}");
    let got = Packet::Auth(Box::new(small)).encoded_len(tern_codec::ProtocolVersion::V5);
    ensure!(
        got < size,
        "an AUTH of {got} bytes against a Maximum Packet Size of {limit}"
    );
    Ok(())
}

fn auth_reason_string_fits(ctx: &Ctx) -> TestResult {
    auth_diagnostics_fit(ctx, "Reason String", |a| {
        a.properties.reason_string.is_some()
    })
}

fn auth_user_properties_fit(ctx: &Ctx) -> TestResult {
    auth_diagnostics_fit(ctx, "User Property", |a| {
        !a.properties.user_properties.is_empty()
    })
}

/// The restricted broker supports no wildcards: in one SUBSCRIBE, the
/// filters holding `+` or `#` are refused (0x80) and the plain one beside
/// them is granted [MQTT-3.8.3-2 of 3.1.1].
fn wildcards_refused(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let filters = [ctx.topic("+/one"), ctx.topic("#"), ctx.topic("plain")];
    let packet_id = c.next_pid();
    c.send(Packet::Subscribe(Subscribe {
        packet_id,
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| SubscribeFilter {
                filter: string(f),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            })
            .collect(),
    }))?;
    let suback = c.expect_suback(packet_id)?;
    let refused: Vec<bool> = suback.reason_codes.iter().map(|c| c.is_error()).collect();
    ensure!(
        refused == [true, true, false],
        "SUBACK codes {:?} for {filters:?}: the wildcard filters must be refused, the plain one granted",
        suback.reason_codes
    );
    c.disconnect()
}

/// The restricted broker takes only identifiers starting with
/// [`RESTRICTED_CLIENT_ID_PREFIX`](crate::RESTRICTED_CLIENT_ID_PREFIX): one
/// without it gets a refusing CONNACK (0x85 is the code the statement names;
/// it MAY send another) and the connection closes [MQTT-3.1.3-8].
fn client_id_rejected(ctx: &Ctx) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.client_id = string(&format!("x{}", ctx.client_id()));
    let mut conn = ctx.open()?;
    conn.send(Packet::Connect(Box::new(connect)))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [Packet::ConnAck(a)] if a.reason_code.is_error() => Ok(()),
        other => Err(fail(format!(
            "expected a refusing CONNACK (0x85) then close, got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

// ---- MQTT 5 enhanced authentication, SCRAM-SHA-256 ----

use tern_codec::{Auth, AuthProperties, ReasonCode};
use tern_session::scram::{Mechanism, SCRAM_SHA_256, ScramClient};

/// The mechanisms the login statements are tested with, each for its own
/// user.
const MECHANISMS: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

/// The restricted broker's user with a credential for `m`.
fn user_for(m: Mechanism) -> &'static str {
    match m {
        Mechanism::Sha512 => crate::SCRAM_SHA512_USER,
        _ => crate::SCRAM_USER,
    }
}

fn scram_auth(code: ReasonCode, data: Vec<u8>) -> Packet {
    scram_auth_as(Mechanism::Sha256, code, data)
}

fn scram_auth_as(m: Mechanism, code: ReasonCode, data: Vec<u8>) -> Packet {
    Packet::Auth(Box::new(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(string(m.name())),
            authentication_data: Some(Bytes::from(data)),
            ..Default::default()
        },
    }))
}

/// The server's AUTH: 0x18 with the CONNECT's method [MQTT-4.12.0-2]
/// [MQTT-4.12.0-5] [MQTT-3.15.2-1]; its data.
fn server_continue(c: &mut crate::harness::Conn) -> Result<Bytes, crate::harness::Stop> {
    server_continue_as(c, Mechanism::Sha256)
}

fn server_continue_as(
    c: &mut crate::harness::Conn,
    m: Mechanism,
) -> Result<Bytes, crate::harness::Stop> {
    match c.recv()? {
        Packet::Auth(a) => {
            ensure!(
                a.reason_code == ReasonCode::ContinueAuthentication,
                "AUTH {:?}, expected 0x18",
                a.reason_code
            );
            ensure!(
                a.properties.authentication_method == Some(string(m.name())),
                "AUTH method {:?}",
                a.properties.authentication_method
            );
            a.properties
                .authentication_data
                .ok_or_else(|| fail("AUTH 0x18 without data"))
        }
        other => Err(fail(format!(
            "expected AUTH 0x18 (no {} offered?), got {}",
            m.name(),
            name(&other)
        ))),
    }
}

/// CONNECT with SCRAM-SHA-256 as `password`, through the server's first
/// AUTH; returns the connection, the client and the client-final to send.
fn scram_start(
    ctx: &Ctx,
    password: &str,
) -> Result<(crate::harness::Conn, ScramClient, Vec<u8>), crate::harness::Stop> {
    scram_start_as(ctx, Mechanism::Sha256, password)
}

/// [`scram_start`] under `m`, as [`user_for`] `m`.
fn scram_start_as(
    ctx: &Ctx,
    m: Mechanism,
    password: &str,
) -> Result<(crate::harness::Conn, ScramClient, Vec<u8>), crate::harness::Stop> {
    let mut client =
        ScramClient::with_mechanism(m, user_for(m), password.as_bytes(), "conformance")
            .map_err(|e| fail(e.to_string()))?;
    let mut connect = ctx.connect_packet();
    connect.properties.authentication_method = Some(string(m.name()));
    connect.properties.authentication_data = Some(Bytes::from(client.client_first()));
    let mut c = ctx.open()?;
    c.send(Packet::Connect(Box::new(connect)))?;
    let server_first = server_continue_as(&mut c, m)?;
    let last = client
        .server_first(&server_first)
        .map_err(|e| fail(e.to_string()))?;
    Ok((c, client, last))
}

/// A full SCRAM-SHA-256 login; the connection, accepted.
fn scram_connected(ctx: &Ctx) -> Result<crate::harness::Conn, crate::harness::Stop> {
    scram_connected_as(ctx, Mechanism::Sha256)
}

/// A full SCRAM login under `m`; the connection, accepted.
fn scram_connected_as(
    ctx: &Ctx,
    m: Mechanism,
) -> Result<crate::harness::Conn, crate::harness::Stop> {
    let (mut c, client, last) = scram_start_as(ctx, m, crate::SCRAM_PASSWORD)?;
    c.send(scram_auth_as(m, ReasonCode::ContinueAuthentication, last))?;
    match c.recv()? {
        Packet::ConnAck(ack) => {
            ensure!(
                ack.reason_code == ReasonCode::Success,
                "CONNACK {:?}",
                ack.reason_code
            );
            // [MQTT-4.12.0-5]
            ensure!(
                ack.properties.authentication_method == Some(string(m.name())),
                "CONNACK method {:?}",
                ack.properties.authentication_method
            );
            let v = ack
                .properties
                .authentication_data
                .ok_or_else(|| fail("CONNACK without the server signature"))?;
            client.server_final(&v).map_err(|e| fail(e.to_string()))?;
        }
        other => return Err(fail(format!("expected CONNACK, got {}", name(&other)))),
    }
    Ok(c)
}

/// A login with SCRAM-SHA-256, then one with SCRAM-SHA-512.
fn scram_login(ctx: &Ctx) -> TestResult {
    for m in MECHANISMS {
        // A failure names the method it expected (AUTH/CONNACK method).
        scram_connected_as(ctx, m)?.disconnect()?;
    }
    Ok(())
}

/// Re-authenticates as `password`; the packet that ends it.
fn scram_reauth_with(
    c: &mut crate::harness::Conn,
    password: &str,
) -> Result<(ScramClient, Packet), crate::harness::Stop> {
    let mut client = ScramClient::new(crate::SCRAM_USER, password.as_bytes(), "again")
        .map_err(|e| fail(e.to_string()))?;
    c.send(scram_auth(
        ReasonCode::ReAuthenticate,
        client.client_first(),
    ))?;
    let server_first = server_continue(c)?;
    let last = client
        .server_first(&server_first)
        .map_err(|e| fail(e.to_string()))?;
    c.send(scram_auth(ReasonCode::ContinueAuthentication, last))?;
    Ok((client, c.recv()?))
}

fn scram_reauth(ctx: &Ctx) -> TestResult {
    let mut c = scram_connected(ctx)?;
    let (client, end) = scram_reauth_with(&mut c, crate::SCRAM_PASSWORD)?;
    match end {
        Packet::Auth(a) => {
            ensure!(
                a.reason_code == ReasonCode::Success,
                "AUTH {:?} ending a re-authentication",
                a.reason_code
            );
            let v = a
                .properties
                .authentication_data
                .ok_or_else(|| fail("AUTH 0x00 without the server signature"))?;
            client.server_final(&v).map_err(|e| fail(e.to_string()))?;
        }
        other => return Err(fail(format!("expected AUTH 0x00, got {}", name(&other)))),
    }
    c.expect_alive()?;
    c.disconnect()
}

/// A wrong password, with SCRAM-SHA-256 and with SCRAM-SHA-512.
fn scram_wrong_password(ctx: &Ctx) -> TestResult {
    for m in MECHANISMS {
        let (mut c, _, last) = scram_start_as(ctx, m, "not-the-password")?;
        c.send(scram_auth_as(m, ReasonCode::ContinueAuthentication, last))?;
        match c
            .expect_closed_within(crate::harness::CLOSE_TIMEOUT)?
            .as_slice()
        {
            [] => {}
            [Packet::ConnAck(a)] => {
                ensure!(
                    a.reason_code.is_error(),
                    "{}: accepted: {:?}",
                    m.name(),
                    a.reason_code
                );
            }
            other => {
                return Err(fail(format!(
                    "{}: expected a refusing CONNACK then close, got {:?}",
                    m.name(),
                    other.iter().map(name).collect::<Vec<_>>()
                )));
            }
        }
    }
    Ok(())
}

fn scram_reauth_fails(ctx: &Ctx) -> TestResult {
    let mut c = scram_connected(ctx)?;
    let (_, end) = scram_reauth_with(&mut c, "not-the-password")?;
    match end {
        Packet::Disconnect(d) => {
            ensure!(d.reason_code.is_error(), "DISCONNECT {:?}", d.reason_code)
        }
        other => return Err(fail(format!("expected DISCONNECT, got {}", name(&other)))),
    }
    c.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    Ok(())
}

/// During the exchange, an AUTH whose fixed header flags are 0001.
fn scram_auth_bad_flags(ctx: &Ctx) -> TestResult {
    let (mut c, _, last) = scram_start(ctx, crate::SCRAM_PASSWORD)?;
    let mut wire = bytes::BytesMut::new();
    scram_auth(ReasonCode::ContinueAuthentication, last)
        .encode(tern_codec::ProtocolVersion::V5, &mut wire)
        .map_err(|e| fail(e.to_string()))?;
    wire[0] |= 0x01;
    c.send_raw(&wire)?;
    match c
        .expect_closed_within(crate::harness::CLOSE_TIMEOUT)?
        .as_slice()
    {
        [] => Ok(()),
        [Packet::ConnAck(a)] if a.reason_code.is_error() => Ok(()),
        other => Err(fail(format!(
            "expected a close (or a refusing CONNACK), got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

/// 3.1.1 has no way to tell a client its PUBLISH was not authorized: the
/// server acknowledges it as usual or closes the connection.
fn unauthorized_publish(ctx: &Ctx) -> TestResult {
    let mut c = ctx.connect()?;
    let packet_id = c.next_pid();
    c.send(Packet::Publish(tern_codec::Publish {
        qos: QoS::AtLeastOnce,
        topic: string(&format!("acl-denied/{}", ctx.client_id())),
        packet_id: Some(packet_id),
        payload: Bytes::from_static(b"refused"),
        ..tern_codec::Publish::default()
    }))?;
    match c.next_event(crate::harness::PACKET_TIMEOUT)? {
        crate::harness::Event::Packet(Packet::PubAck(a)) if a.packet_id == packet_id => {
            // A positive acknowledgement, and the connection carries on.
            c.expect_alive()?;
            c.disconnect()
        }
        crate::harness::Event::Closed => Ok(()),
        other => Err(fail(format!(
            "expected PUBACK {packet_id} or a close, got {other:?}"
        ))),
    }
}

fn announces_max_qos(ctx: &Ctx) -> TestResult {
    let (mut c, ack) = ctx.connect_ok(ctx.connect_packet())?;
    match ack.properties.maximum_qos {
        Some(q) => ensure!(q.as_u8() < 2, "Maximum QoS {}", q.as_u8()),
        None => {
            return Err(fail(
                "QoS-limited server sent no Maximum QoS (which means 2)",
            ));
        }
    }
    c.disconnect()
}

fn subscribe_all_qos(ctx: &Ctx) -> TestResult {
    let (mut c, ack) = ctx.connect_ok(ctx.connect_packet())?;
    let max = ack.properties.maximum_qos.map_or(2, QoS::as_u8);
    let packet_id = c.next_pid();
    c.send(Packet::Subscribe(Subscribe {
        packet_id,
        properties: Default::default(),
        filters: [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .iter()
            .enumerate()
            .map(|(i, q)| SubscribeFilter {
                filter: string(&ctx.topic(&i.to_string())),
                options: SubscriptionOptions::with_qos(*q),
            })
            .collect(),
    }))?;
    let suback = c.expect_suback(packet_id)?;
    for (asked, code) in suback.reason_codes.iter().enumerate() {
        ensure!(
            !code.is_error(),
            "SUBSCRIBE at QoS {asked} refused with {code:?}"
        );
        ensure!(
            code.as_u8() <= max,
            "QoS {} granted above the server's Maximum QoS {max}",
            code.as_u8()
        );
    }
    c.disconnect()
}

/// A CONNECT with a will at `qos`, `retain`; the broker must refuse it.
/// (The reason code, 0x9B or 0x9A, is a SHOULD: any refusal conforms.)
fn will_refused(ctx: &Ctx, qos: QoS, retain: bool) -> TestResult {
    let mut connect = ctx.connect_packet();
    connect.will = Some(Will {
        topic: string(&ctx.topic("will")),
        payload: Bytes::from_static(b"w"),
        qos,
        retain,
        properties: Default::default(),
    });
    let mut conn = ctx.open()?;
    conn.send(Packet::Connect(Box::new(connect)))?;
    let seen = conn.expect_closed_within(crate::harness::CLOSE_TIMEOUT)?;
    match seen.as_slice() {
        [] => Ok(()),
        [Packet::ConnAck(a)] => {
            ensure!(
                a.reason_code.is_error(),
                "CONNECT accepted ({:?})",
                a.reason_code
            );
            Ok(())
        }
        other => Err(fail(format!(
            "expected a refusing CONNACK then close, got {:?}",
            other.iter().map(name).collect::<Vec<_>>()
        ))),
    }
}

fn will_qos_refused(ctx: &Ctx) -> TestResult {
    will_refused(ctx, QoS::ExactlyOnce, false)
}

fn will_retain_refused(ctx: &Ctx) -> TestResult {
    will_refused(ctx, QoS::AtMostOnce, true)
}
