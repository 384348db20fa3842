//! The `tern` binary, run as a user would.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

fn tern() -> Command {
    Command::cargo_bin("tern").expect("the tern binary is built")
}

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

/// A capture of an MQTT 3.1.1 client session start, as Wireshark shows it:
/// CONNECT (client id "sensor-1", clean session, keep alive 60), PUBLISH QoS 1
/// to "home/temp" with payload "21.5" and packet id 1, then DISCONNECT.
const CAPTURE: &str = "\
10 14 00 04 4d 51 54 54 04 02 00 3c 00 08 73 65 6e 73 6f 72 2d 31
32 11 00 09 68 6f 6d 65 2f 74 65 6d 70 00 01 32 31 2e 35
e0 00";

#[test]
fn decode_a_known_capture() {
    // The default protocol is 5; the CONNECT switches to 3.1.1, so the PUBLISH
    // has no Property Length (in 5.0 its payload would not parse the same).
    let output = tern().args(["decode", CAPTURE]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_json(&output),
        json!([
            {
                "type": "CONNECT",
                "protocol": "V3_1_1",
                "clean_start": true,
                "keep_alive": 60,
                "properties": {},
                "client_id": "sensor-1"
            },
            {
                "type": "PUBLISH",
                "dup": false,
                "qos": "AtLeastOnce",
                "retain": false,
                "topic": "home/temp",
                "packet_id": 1,
                "properties": {},
                "payload": "32312e35"
            },
            {
                "type": "DISCONNECT",
                "reason_code": "Success",
                "properties": {}
            }
        ])
    );
}

#[test]
fn decode_reads_standard_input() {
    tern()
        .args(["decode", "--protocol", "4", "-"])
        .write_stdin("c0 00\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"PINGREQ\""));
    tern()
        .arg("decode")
        .write_stdin("D000")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"PINGRESP\""));
}

#[test]
fn encode_then_decode_gives_back_the_same_json() {
    let packets = json!([
        {
            "type": "PUBLISH",
            "dup": true,
            "qos": "ExactlyOnce",
            "retain": true,
            "topic": "a/b",
            "packet_id": 513,
            "properties": {
                "payload_format_indicator": "Utf8",
                "message_expiry_interval": 60,
                "correlation_data": "cafe",
                "user_properties": [{"key": "k", "value": "v"}]
            },
            "payload": "00ff"
        },
        {
            "type": "SUBSCRIBE",
            "packet_id": 2,
            "properties": {"subscription_identifier": 7},
            "filters": [{
                "filter": "a/+",
                "options": {
                    "qos": "AtLeastOnce",
                    "no_local": true,
                    "retain_as_published": false,
                    "retain_handling": "DoNotSend"
                }
            }]
        },
        {"type": "AUTH", "reason_code": "ContinueAuthentication",
         "properties": {"authentication_method": "m", "authentication_data": "01"}}
    ]);
    let encoded = tern()
        .args(["encode", &packets.to_string()])
        .output()
        .unwrap();
    assert!(encoded.status.success(), "{encoded:?}");
    let hex = String::from_utf8(encoded.stdout).unwrap();
    // The PUBLISH's fixed header: DUP, QoS 2, RETAIN.
    assert!(hex.starts_with("3d "), "{hex}");

    let decoded = tern().args(["decode", hex.trim()]).output().unwrap();
    assert!(decoded.status.success(), "{decoded:?}");
    assert_eq!(stdout_json(&decoded), packets);

    // And decode's output, piped back into encode, gives the same hex.
    let again = tern()
        .arg("encode")
        .write_stdin(decoded.stdout)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), hex);
}

#[test]
fn encode_a_single_packet_for_mqtt_3_1_1() {
    tern()
        .args([
            "encode",
            "--protocol",
            "4",
            r#"{"type":"PUBLISH","topic":"a/b/c","payload":"68656c6c6f"}"#,
        ])
        .assert()
        .success()
        .stdout("30 0c 00 05 61 2f 62 2f 63 68 65 6c 6c 6f\n");
}

#[test]
fn bad_packet_exits_1_naming_the_rule_and_offset() {
    // PINGREQ, then a PUBLISH (at input byte 2) whose topic "a/#" has a wildcard.
    tern()
        .args(["decode", "c0 00 30 05 00 03 61 2f 23"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("PINGREQ"))
        .stderr(
            predicate::str::contains("topic name contains a wildcard [MQTT-3.3.2-2]")
                .and(predicate::str::contains("starting at input byte 2"))
                .and(predicate::str::contains("PUBLISH at byte 2"))
                .and(predicate::str::contains("input byte 4"))
                .and(predicate::str::contains("0x90 Topic Name invalid"))
                .and(predicate::str::is_match(r"^[^\n]+\n$").unwrap()),
        );
}

#[test]
fn bad_topic_filters_and_empty_subacks_exit_1_naming_the_rule() {
    // MQTT 3.1.1 SUBSCRIBE of "a/#/b": `#` is not the last level.
    tern()
        .args([
            "decode",
            "--protocol",
            "4",
            "82 0a 00 01 00 05 61 2f 23 2f 62 00",
        ])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("SUBSCRIBE at byte 6: invalid topic filter")
                .and(predicate::str::contains("[MQTT-4.7.1-2]"))
                .and(predicate::str::contains("0x81 Malformed Packet")),
        );
    // MQTT 5 SUBSCRIBE of "$share//t": no ShareName.
    tern()
        .args([
            "decode",
            "--protocol",
            "5",
            "82 0e 00 01 00 00 09 24 73 68 61 72 65 2f 2f 74 00",
        ])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("SUBSCRIBE at byte 7: invalid topic filter")
                .and(predicate::str::contains("[MQTT-4.8.2-1]")),
        );
    // MQTT 5 SUBACK and UNSUBACK without a reason code.
    for hex in ["90 03 00 01 00", "b0 03 00 01 00"] {
        tern()
            .args(["decode", "--protocol", "5", hex])
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains("no reason codes")
                    .and(predicate::str::contains("0x82 Protocol Error")),
            );
    }
}

#[test]
fn incomplete_input_exits_2_saying_how_many_bytes_are_missing() {
    // PUBLISH with Remaining Length 13 and 12 body bytes: one more is needed.
    tern()
        .args([
            "decode",
            "--protocol",
            "4",
            "30 0d 00 05 61 2f 62 2f 63 68 65 6c 6c 6f",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs at least 1 more byte\n"));
    // A fixed header alone: the whole body is missing.
    tern()
        .args(["decode", "c0 00 82 0a"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("PINGREQ"))
        .stderr(predicate::str::contains(
            "packet 2 starting at input byte 2 needs at least 10 more bytes",
        ));
}

#[test]
fn bad_hex_exits_1_naming_the_position() {
    tern()
        .args(["decode", "c0 0x"])
        .assert()
        .code(1)
        .stderr("error: invalid hex digit 'x' at position 4\n");
    tern()
        .args(["decode", "c0 0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("odd number of hex digits"));
}

#[test]
fn encode_refuses_what_the_protocol_forbids() {
    tern()
        .args(["encode", "--protocol", "4", r#"{"type":"AUTH"}"#])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "AUTH cannot be expressed in MQTT 3.1.1",
        ));
    tern()
        .args(["encode", "{not json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid JSON"));
}

#[test]
fn help_says_what_the_tools_are_for() {
    tern().arg("--help").assert().success().stdout(
        predicate::str::contains("debugging tools for people reading captures")
            .and(predicate::str::contains("Example:"))
            .and(predicate::str::contains("tern decode")),
    );
    tern()
        .args(["help", "decode"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit status").and(predicate::str::contains("Example:")));
}
