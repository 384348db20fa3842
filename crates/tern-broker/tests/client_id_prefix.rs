//! `[security] clientid_prefixes` (mosquitto's option) against a real
//! broker on 127.0.0.1:0, with raw sockets: a client identifier without the
//! prefix is refused with CONNACK 0x85 Client Identifier not valid in MQTT
//! 5 and return code 2 (Identifier rejected) in MQTT 3.1.1, then closed
//! [MQTT-3.1.3-8] [MQTT-3.1.3-9]; one with it is served. An empty
//! identifier is judged by the one the broker would assign.

mod common;

use common::*;
use tern_codec::{ProtocolVersion, ReasonCode};

#[tokio::test]
async fn identifiers_without_the_prefix_are_refused_with_the_code_of_their_version() {
    let broker = start_with(|s| s.security.clientid_prefixes = Some("dev-".into())).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let (mut raw, ack) = Raw::connect(broker.tcp, connect(version, "prod-1")).await;
        // 3.1.1's return code 2 reads back as 0x85.
        assert_eq!(
            ack.reason_code,
            ReasonCode::ClientIdentifierNotValid,
            "{version:?}"
        );
        assert!(!ack.session_present);
        let after = raw.closed(WAIT).await;
        assert!(after.is_empty(), "closed after the CONNACK: {after:?}");

        let mut ok = Raw::connected(broker.tcp, version, "dev-1").await;
        ok.ping().await;
    }
    // An empty identifier would be assigned one without the prefix.
    let (mut raw, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "")).await;
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(raw.closed(WAIT).await.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn without_the_setting_any_identifier_connects() {
    let broker = start().await;
    let mut raw = Raw::connected(broker.tcp, ProtocolVersion::V5, "prod-1").await;
    raw.ping().await;
    broker.shutdown().await;
}
