//! `tern decode` and `tern encode`: debugging tools for people reading
//! captures. Every rule they report comes from tern-codec; this module only
//! moves text in and out.

use bytes::BytesMut;
use clap::{Args, ValueEnum};
use std::io::Read;
use tern_codec::{FrameStatus, MAX_PACKET_SIZE, Packet, ProtocolVersion, check_frame};

pub(crate) const DECODE_ABOUT: &str = "\
Decode MQTT packets from hex into JSON.

A debugging tool for people reading captures (Wireshark's hex dump, a log
line, a test vector). The input is hex digits, with any spaces or newlines
between them, holding one or more packets back to back. One packet prints
as a JSON object, several as a JSON array. A CONNECT sets the protocol
version for the packets after it.

Exit status: 0 when every byte decoded; 1 when the input breaks a rule (the
message names the rule, the packet and the byte offset) or is not hex; 2
when the input ends inside a packet (the message says how many more bytes
are needed at least).";

pub(crate) const DECODE_EXAMPLE: &str = "\
Example:
  $ tern decode --protocol 4 '30 0c 00 05 61 2f 62 2f 63 68 65 6c 6c 6f'
  {
    \"type\": \"PUBLISH\",
    \"dup\": false,
    \"qos\": \"AtMostOnce\",
    \"retain\": false,
    \"topic\": \"a/b/c\",
    \"properties\": {},
    \"payload\": \"68656c6c6f\"
  }";

pub(crate) const ENCODE_ABOUT: &str = "\
Encode MQTT packets from JSON into hex.

The reverse of `tern decode`, for building test input: a JSON packet (or an
array of packets, or `tern decode`'s output) becomes hex, one line. Binary
fields (payloads, passwords, correlation data) are hex strings. A CONNECT
sets the protocol version for the packets after it. Packets the protocol
forbids are refused with exit status 1.";

pub(crate) const ENCODE_EXAMPLE: &str = "\
Example:
  $ tern encode --protocol 4 '{\"type\":\"PUBLISH\",\"topic\":\"a/b/c\",\"payload\":\"68656c6c6f\"}'
  30 0c 00 05 61 2f 62 2f 63 68 65 6c 6c 6f";

/// The MQTT protocol version, as the CONNECT packet's protocol level.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Level {
    /// MQTT 3.1 ("MQIsdp")
    #[value(name = "3")]
    V3_1,
    /// MQTT 3.1.1
    #[value(name = "4")]
    V3_1_1,
    /// MQTT 5.0
    #[value(name = "5")]
    V5,
}

impl From<Level> for ProtocolVersion {
    fn from(level: Level) -> Self {
        match level {
            Level::V3_1 => ProtocolVersion::V3_1,
            Level::V3_1_1 => ProtocolVersion::V3_1_1,
            Level::V5 => ProtocolVersion::V5,
        }
    }
}

/// Arguments of `tern decode`.
#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Protocol level until a CONNECT says otherwise: 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0).
    #[arg(long, short, value_enum, default_value = "5")]
    protocol: Level,
    /// Hex bytes (spaces allowed); `-` or nothing reads standard input.
    hex: Option<String>,
}

/// Arguments of `tern encode`.
#[derive(Debug, Args)]
pub(crate) struct EncodeArgs {
    /// Protocol level until a CONNECT says otherwise: 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0).
    #[arg(long, short, value_enum, default_value = "5")]
    protocol: Level,
    /// A JSON packet or array of packets; `-` or nothing reads standard input.
    json: Option<String>,
}

/// Why a command failed: a one-line message and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) status: u8,
}

impl Failure {
    fn bad_input(message: String) -> Self {
        Self { message, status: 1 }
    }
}

/// Exit status for input that ends inside a packet.
const INCOMPLETE: u8 = 2;

fn read_input(arg: Option<&str>) -> Result<String, Failure> {
    match arg {
        Some(text) if text != "-" => Ok(text.to_owned()),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::bad_input(format!("error: reading standard input: {e}")))?;
            Ok(text)
        }
    }
}

/// Parses hex digits, ignoring whitespace. Positions in errors count
/// characters of the input from 0.
fn parse_hex(text: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::with_capacity(text.len() / 2);
    let mut high: Option<(usize, u8)> = None;
    for (position, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let Some(nibble) = c.to_digit(16) else {
            return Err(Failure::bad_input(format!(
                "error: invalid hex digit {c:?} at position {position}"
            )));
        };
        let nibble = nibble as u8;
        high = match high {
            None => Some((position, nibble)),
            Some((_, h)) => {
                bytes.push((h << 4) | nibble);
                None
            }
        };
    }
    if let Some((position, _)) = high {
        return Err(Failure::bad_input(format!(
            "error: odd number of hex digits: the digit at position {position} has no partner"
        )));
    }
    Ok(bytes)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Prints one packet as an object, several as an array.
fn print_packets(packets: &[Packet]) {
    let json = match packets {
        [one] => serde_json::to_string_pretty(one),
        many => serde_json::to_string_pretty(many),
    }
    .expect("packets serialise");
    println!("{json}");
}

/// `tern decode`.
pub(crate) fn decode(args: &DecodeArgs) -> Result<(), Failure> {
    let bytes = parse_hex(&read_input(args.hex.as_deref())?)?;
    let mut version = ProtocolVersion::from(args.protocol);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut packets = Vec::new();
    let mut start = 0;
    let outcome = loop {
        if buf.is_empty() {
            break Ok(());
        }
        match Packet::decode(&mut buf, version, MAX_PACKET_SIZE) {
            Ok(Some(packet)) => {
                if let Packet::Connect(connect) = &packet {
                    version = connect.protocol;
                }
                start = bytes.len() - buf.len();
                packets.push(packet);
            }
            Ok(None) => {
                let needed = match check_frame(&buf, version, MAX_PACKET_SIZE) {
                    Ok(FrameStatus::Incomplete { needed }) => needed,
                    other => unreachable!("decode said incomplete, check_frame said {other:?}"),
                };
                break Err(Failure {
                    message: format!(
                        "incomplete: packet {} starting at input byte {start} needs at least {needed} more byte{}",
                        packets.len() + 1,
                        if needed == 1 { "" } else { "s" },
                    ),
                    status: INCOMPLETE,
                });
            }
            Err(e) => {
                break Err(Failure::bad_input(format!(
                    "error: packet {} starting at input byte {start} (MQTT {version}): {e} (input byte {}; reason code {})",
                    packets.len() + 1,
                    start + e.offset(),
                    e.reason_code(),
                )));
            }
        }
    };
    if !packets.is_empty() {
        print_packets(&packets);
    }
    outcome
}

/// `tern encode`.
pub(crate) fn encode(args: &EncodeArgs) -> Result<(), Failure> {
    let text = read_input(args.json.as_deref())?;
    // A JSON packet, an array of packets, or several of either in a row (as
    // `tern decode` prints them).
    let mut packets = Vec::new();
    for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| Failure::bad_input(format!("error: invalid JSON: {e}")))?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        for item in items {
            let n = packets.len() + 1;
            let packet: Packet = serde_json::from_value(item)
                .map_err(|e| Failure::bad_input(format!("error: packet {n}: {e}")))?;
            packets.push(packet);
        }
    }
    if packets.is_empty() {
        return Err(Failure::bad_input("error: no packets in the input".into()));
    }
    let mut version = ProtocolVersion::from(args.protocol);
    let mut wire = Vec::new();
    for (i, packet) in packets.iter().enumerate() {
        if let Packet::Connect(connect) = packet {
            version = connect.protocol;
        }
        packet.encode(version, &mut wire).map_err(|e| {
            Failure::bad_input(format!(
                "error: packet {} ({}) cannot be encoded for MQTT {version}: {e}",
                i + 1,
                packet.packet_type()
            ))
        })?;
    }
    println!("{}", to_hex(&wire));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ignores_whitespace_and_case() {
        assert_eq!(
            parse_hex("c0 00\n\tD0\r\n00").unwrap(),
            [0xC0, 0x00, 0xD0, 0x00]
        );
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn hex_errors_name_the_position() {
        assert_eq!(
            parse_hex("c0 0g").unwrap_err().message,
            "error: invalid hex digit 'g' at position 4"
        );
        assert!(
            parse_hex("c0 0")
                .unwrap_err()
                .message
                .contains("position 3")
        );
    }

    #[test]
    fn to_hex_spaces_bytes() {
        assert_eq!(to_hex(&[0x30, 0x0c, 0xff]), "30 0c ff");
    }
}
