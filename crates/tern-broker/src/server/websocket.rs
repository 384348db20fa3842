//! MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): the HTTP upgrade, and a
//! transport that moves MQTT bytes in binary frames.
//!
//! WebSocket frames carry a byte stream, nothing more: a packet may be split
//! across frames and a frame may hold several packets [MQTT-6.0.0-2], so the
//! frames' contents go to the core exactly as TCP reads do, and the core's
//! framing does the rest. A text frame closes the connection [MQTT-6.0.0-1].

use super::BrokerSettings;
use super::tls::Socket;
use bytes::{Bytes, BytesMut};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use std::io;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        handshake::server::{ErrorResponse, Request, Response},
        http::{HeaderValue, StatusCode},
        protocol::WebSocketConfig,
    },
};

/// The subprotocols we speak, in order of preference: `mqtt` (MQTT 3.1.1 and
/// 5.0) and `mqttv3.1` (MQTT 3.1 clients).
pub(crate) const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// How WebSocket connections are accepted.
pub(crate) struct Config {
    path: String,
    protocol: WebSocketConfig,
}

impl Config {
    pub(crate) fn new(settings: &BrokerSettings) -> Self {
        // A message may hold several packets; allow one largest packet plus
        // room for small ones. Anything bigger is refused by tungstenite
        // before it is buffered.
        let max = (settings.limits.max_packet_size as usize).saturating_add(64 * 1024);
        Self {
            path: settings.listeners.ws_path.clone(),
            protocol: WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(0)
                .max_message_size(Some(max))
                .max_frame_size(Some(max)),
        }
    }
}

/// Runs the HTTP upgrade: the configured path, and subprotocol `mqtt` (or
/// `mqttv3.1`) when the client offers one.
pub(crate) async fn accept(
    socket: Socket,
    config: &Config,
) -> Result<(WsReader, WsWriter), tokio_tungstenite::tungstenite::Error> {
    let path = config.path.as_str();
    #[allow(clippy::result_large_err, reason = "the error type is tungstenite's")]
    let callback = |request: &Request, mut response: Response| {
        if request.uri().path() != path {
            return Err(refusal(StatusCode::NOT_FOUND, format!("MQTT is at {path}")));
        }
        let offered: Vec<&str> = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let chosen = SUBPROTOCOLS
            .into_iter()
            .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
        match chosen {
            Some(p) => {
                response
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
            }
            // No subprotocol offered: accepted, as mosquitto does.
            None if offered.is_empty() => {}
            None => {
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "the WebSocket subprotocol must be `mqtt` or `mqttv3.1`".into(),
                ));
            }
        }
        Ok(response)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(socket, callback, Some(config.protocol))
            .await?;
    let (sink, stream) = ws.split();
    Ok((WsReader(stream), WsWriter(sink)))
}

#[allow(clippy::result_large_err, reason = "the error type is tungstenite's")]
fn refusal(status: StatusCode, message: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(message));
    *response.status_mut() = status;
    response
}

/// Reads MQTT bytes out of binary frames.
pub(crate) struct WsReader(SplitStream<WebSocketStream<Socket>>);

impl WsReader {
    pub(crate) async fn read(&mut self) -> io::Result<Option<BytesMut>> {
        loop {
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(bytes))) if bytes.is_empty() => {}
                Some(Ok(Message::Binary(bytes))) => {
                    return Ok(Some(super::listener::fitted(
                        bytes
                            .try_into_mut()
                            .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
                    )));
                }
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text frame [MQTT-6.0.0-1]",
                    ));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// Writes MQTT bytes as binary frames: one frame per batch, so whole packets
/// travel together.
pub(crate) struct WsWriter(SplitSink<WebSocketStream<Socket>, Message>);

impl WsWriter {
    pub(crate) async fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        // tungstenite copies into its frame buffer anyway, so join the chunks.
        let frame = match chunks {
            [one] => one.clone(),
            many => {
                let mut joined = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for c in many {
                    joined.extend_from_slice(c);
                }
                joined.freeze()
            }
        };
        self.0
            .send(Message::Binary(frame))
            .await
            .map_err(io::Error::other)
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.0.close().await;
    }
}
