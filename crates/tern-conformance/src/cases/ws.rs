//! MQTT over WebSocket (section 6), through a minimal blocking WebSocket
//! client written here so the tests control every frame.

use super::{Case, v3, v5};
use crate::{
    ensure,
    harness::{Ctx, PACKET_TIMEOUT, Stop, TestResult, encode, fail, name, pid, string},
};
use bytes::BytesMut;
use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Instant,
};
use tern_codec::{Packet, QoS, Subscribe, SubscribeFilter, SubscriptionOptions};

pub(crate) const CASES: &[Case] = &[
    v3!(
        "MQTT-6.0.0-4",
        "server selects the \"mqtt\" subprotocol",
        subprotocol
    ),
    v5!(
        "MQTT-6.0.0-4",
        "server selects the \"mqtt\" subprotocol",
        subprotocol
    ),
    v3!(
        "MQTT-6.0.0-2",
        "packets split across and packed into frames",
        split_and_packed
    ),
    v5!(
        "MQTT-6.0.0-2",
        "packets split across and packed into frames",
        split_and_packed
    ),
    v3!(
        "MQTT-6.0.0-1",
        "a text frame closes the connection",
        text_frame_closes
    ),
    v5!(
        "MQTT-6.0.0-1",
        "a text frame closes the connection",
        text_frame_closes
    ),
];

/// Frame opcodes.
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;

/// One WebSocket connection carrying MQTT.
struct Ws {
    stream: TcpStream,
    /// The `Sec-WebSocket-Protocol` the server answered with.
    protocol: Option<String>,
    /// MQTT bytes from binary frames, not yet decoded.
    mqtt: BytesMut,
    /// Raw bytes from the socket, not yet parsed into frames.
    raw: Vec<u8>,
    closed: bool,
}

impl Ws {
    fn open(ctx: &Ctx) -> Result<Ws, Stop> {
        let url = ctx
            .target
            .ws
            .clone()
            .ok_or_else(|| Stop::Skip("no WebSocket listener given (--ws URL)".into()))?;
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| fail(format!("--ws {url}: only ws:// URLs are supported")))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()
            .map_err(|e| fail(format!("{host}: {e}")))?
            .next()
            .ok_or_else(|| fail(format!("{host}: no address")))?;
        let mut stream = TcpStream::connect_timeout(&addr, PACKET_TIMEOUT)
            .map_err(|e| fail(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| fail(format!("handshake: {e}")))?;
        let _ = stream.set_read_timeout(Some(PACKET_TIMEOUT));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return Err(fail("WebSocket handshake: no complete response")),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head.lines().next().unwrap_or_default();
        ensure!(
            status.contains(" 101"),
            "WebSocket handshake answered {status:?}"
        );
        let protocol = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-protocol")
                .then(|| v.trim().to_string())
        });
        Ok(Ws {
            stream,
            protocol,
            mqtt: BytesMut::new(),
            raw: Vec::new(),
            closed: false,
        })
    }

    /// Sends one masked frame.
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> TestResult {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .map_err(|e| fail(format!("send failed: {e}")))
    }

    fn send_packet(&mut self, ctx: &Ctx, packet: &Packet) -> TestResult {
        self.send_frame(BINARY, &encode(packet, ctx.protocol()))
    }

    /// Parses whole frames out of `raw`; binary payloads go to `mqtt`.
    fn parse_frames(&mut self) -> Result<(), Stop> {
        loop {
            let r = &self.raw;
            if r.len() < 2 {
                return Ok(());
            }
            let opcode = r[0] & 0x0F;
            let masked = r[1] & 0x80 != 0;
            let (len, mut at) = match r[1] & 0x7F {
                126 if r.len() >= 4 => (usize::from(u16::from_be_bytes([r[2], r[3]])), 4),
                127 if r.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&r[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => return Ok(()),
                n => (usize::from(n), 2),
            };
            let mask_at = at;
            if masked {
                at += 4;
            }
            if r.len() < at + len {
                return Ok(());
            }
            let mut payload = r[at..at + len].to_vec();
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= r[mask_at + i % 4];
                }
            }
            self.raw.drain(..at + len);
            match opcode {
                BINARY | 0 => self.mqtt.extend_from_slice(&payload),
                CLOSE => self.closed = true,
                PING => {
                    let mut pong = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    let _ = self.stream.write_all(&pong);
                }
                TEXT => return Err(fail("server sent a text frame")),
                _ => {}
            }
        }
    }

    /// The next MQTT packet, or `None` once the server closed.
    fn next(&mut self, ctx: &Ctx) -> Result<Option<Packet>, Stop> {
        let deadline = Instant::now() + PACKET_TIMEOUT;
        loop {
            self.parse_frames()?;
            if !self.mqtt.is_empty() {
                match Packet::decode(&mut self.mqtt, ctx.protocol(), u32::MAX) {
                    Ok(Some(p)) => return Ok(Some(p)),
                    Ok(None) => {}
                    Err(e) => return Err(fail(format!("broker sent a malformed packet: {e}"))),
                }
            }
            if self.closed {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(fail("nothing from the broker within the timeout"));
            }
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.closed = true,
            }
        }
    }

    fn recv(&mut self, ctx: &Ctx) -> Result<Packet, Stop> {
        self.next(ctx)?
            .ok_or_else(|| fail("broker closed the WebSocket while a packet was expected"))
    }
}

fn subprotocol(ctx: &Ctx) -> TestResult {
    let mut ws = Ws::open(ctx)?;
    ensure!(
        ws.protocol.as_deref() == Some("mqtt"),
        "server selected subprotocol {:?}",
        ws.protocol
    );
    ws.send_packet(ctx, &Packet::Connect(Box::new(ctx.connect_packet())))?;
    let ack = ws.recv(ctx)?;
    ensure!(matches!(ack, Packet::ConnAck(_)), "got {}", name(&ack));
    Ok(())
}

fn split_and_packed(ctx: &Ctx) -> TestResult {
    let mut ws = Ws::open(ctx)?;
    let connect = encode(
        &Packet::Connect(Box::new(ctx.connect_packet())),
        ctx.protocol(),
    );
    let (a, b) = connect.split_at(connect.len() / 2);
    ws.send_frame(BINARY, a)?;
    ws.send_frame(BINARY, b)?;
    let mut packed = encode(
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: string(&ctx.topic("ws")),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }),
        ctx.protocol(),
    );
    packed.extend(encode(&Packet::PingReq, ctx.protocol()));
    ws.send_frame(BINARY, &packed)?;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(ws.recv(ctx)?);
    }
    ensure!(
        matches!(got[0], Packet::ConnAck(_))
            && got[1..].iter().any(|p| matches!(p, Packet::SubAck(_)))
            && got[1..].iter().any(|p| matches!(p, Packet::PingResp)),
        "got {:?}",
        got.iter().map(name).collect::<Vec<_>>()
    );
    Ok(())
}

fn text_frame_closes(ctx: &Ctx) -> TestResult {
    let mut ws = Ws::open(ctx)?;
    ws.send_packet(ctx, &Packet::Connect(Box::new(ctx.connect_packet())))?;
    let ack = ws.recv(ctx)?;
    ensure!(matches!(ack, Packet::ConnAck(_)), "got {}", name(&ack));
    ws.send_frame(TEXT, &encode(&Packet::PingReq, ctx.protocol()))?;
    match ws.next(ctx)? {
        None => Ok(()),
        Some(Packet::Disconnect(d)) if ctx.v5() => {
            ensure!(d.reason_code.is_error(), "DISCONNECT {:?}", d.reason_code);
            ensure!(ws.next(ctx)?.is_none(), "connection stayed open");
            Ok(())
        }
        Some(other) => Err(fail(format!(
            "text frame answered with {} instead of a close",
            name(&other)
        ))),
    }
}
