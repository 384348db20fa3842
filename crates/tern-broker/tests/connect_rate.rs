//! `[limits] connections_per_second_per_address` against a real broker on
//! 127.0.0.1:0, with raw sockets: connections beyond the rate from one
//! address are refused at their CONNECT, with CONNACK 0x9F Connection rate
//! exceeded in MQTT 5 and return code 3 (Server unavailable) in MQTT 3.1.1
//! [MQTT-3.2.2-6] [MQTT-3.2.2-7], closed, and counted in
//! `$SYS/broker/limits/refused`; the connections within the rate are
//! served as usual.

mod common;

use common::*;
use std::time::Duration;
use tern_codec::{ProtocolVersion, QoS, ReasonCode};

#[tokio::test]
async fn connections_beyond_the_rate_are_refused_with_the_code_of_their_version() {
    let broker = start_with(|s| {
        s.limits.connections_per_second_per_address = 2;
        s.limits.sys_interval = Duration::from_millis(50);
    })
    .await;
    // Two within the rate: the first watches the refusal counter.
    let mut sys = Raw::connected(broker.tcp, ProtocolVersion::V5, "rate-sys").await;
    sys.subscribe("$SYS/broker/limits/refused", QoS::AtMostOnce)
        .await;
    let _second = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "rate-2").await;

    for (version, id) in [
        (ProtocolVersion::V5, "rate-3"),
        (ProtocolVersion::V3_1_1, "rate-4"),
    ] {
        let (mut raw, ack) = Raw::connect(broker.tcp, connect(version, id)).await;
        // MQTT 3.1.1 has no 0x9F: return code 3, which reads back as 0x88.
        let want = if version.is_v5() {
            ReasonCode::ConnectionRateExceeded
        } else {
            ReasonCode::ServerUnavailable
        };
        assert_eq!(ack.reason_code, want, "{version:?}");
        assert!(!ack.session_present);
        let after = raw.closed(WAIT).await;
        assert!(after.is_empty(), "closed after the CONNACK: {after:?}");
    }

    // Counted: the watcher sees limits/refused reach 2.
    let mut seen = Vec::new();
    loop {
        let p = sys.recv_publish().await;
        let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        if n == 2 {
            break;
        }
        seen.push(n);
        assert!(n < 2, "limits/refused went past 2: {seen:?}");
    }
    // The connections within the rate are still served.
    sys.ping().await;

    // The rate is per second: once the window has passed, the address may
    // connect again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _later = Raw::connected(broker.tcp, ProtocolVersion::V5, "rate-5").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn without_the_setting_there_is_no_rate() {
    let broker = start().await;
    let mut open = Vec::new();
    for i in 0..20 {
        open.push(Raw::connected(broker.tcp, ProtocolVersion::V5, &format!("norate-{i}")).await);
    }
    broker.shutdown().await;
}

/// `[limits] connections_per_second_per_listener`: the connections into
/// one listener from any address count together; beyond the rate they are
/// refused at their CONNECT as for the per-address rate (0x9F; 3.1.1:
/// return code 3) [MQTT-3.2.2-6] [MQTT-3.2.2-7] and counted in
/// `$SYS/broker/limits/refused`, while another listener has its own window
/// and the per-address rate is not in force.
#[tokio::test]
async fn connections_beyond_a_listeners_rate_are_refused_and_other_listeners_are_not() {
    let broker = start_with(|s| {
        s.listeners.tcp = vec![
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ];
        s.limits.connections_per_second_per_listener = 2;
        s.limits.sys_interval = Duration::from_millis(50);
    })
    .await;
    let [first, second] = broker.running.tcp_addrs()[..] else {
        panic!("two TCP listeners: {:?}", broker.running.tcp_addrs());
    };
    // The watcher of the refusal counter comes in by the other listener.
    let mut sys = Raw::connected(second, ProtocolVersion::V5, "listener-sys").await;
    sys.subscribe("$SYS/broker/limits/refused", QoS::AtMostOnce)
        .await;
    let _a = Raw::connected(first, ProtocolVersion::V5, "listener-1").await;
    let _b = Raw::connected(first, ProtocolVersion::V3_1_1, "listener-2").await;
    for (version, id) in [
        (ProtocolVersion::V5, "listener-3"),
        (ProtocolVersion::V3_1_1, "listener-4"),
    ] {
        let (mut raw, ack) = Raw::connect(first, connect(version, id)).await;
        let want = if version.is_v5() {
            ReasonCode::ConnectionRateExceeded
        } else {
            ReasonCode::ServerUnavailable
        };
        assert_eq!(ack.reason_code, want, "{version:?}");
        let after = raw.closed(WAIT).await;
        assert!(after.is_empty(), "closed after the CONNACK: {after:?}");
    }
    // Counted: the watcher sees limits/refused reach 2.
    loop {
        let p = sys.recv_publish().await;
        let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        assert!(n <= 2, "limits/refused went past 2: {n}");
        if n == 2 {
            break;
        }
    }
    // The other listener, same source address, has a window of its own
    // (the watcher was its first).
    let _c = Raw::connected(second, ProtocolVersion::V5, "listener-5").await;
    broker.shutdown().await;
}
