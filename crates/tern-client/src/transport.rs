//! The byte pipes under MQTT: TCP, or WebSocket binary frames.
//!
//! Both are split into a read half and a write half so the driver can wait
//! on reading and writing at the same time. Nothing here knows MQTT: the
//! driver hands bytes to tern-session and takes bytes from it.

use crate::{Address, Error, Transport};
use bytes::BytesMut;
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use std::{future::poll_fn, io, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_tungstenite::{
    WebSocketStream, client_async,
    tungstenite::{self, ClientRequestBuilder, Message as WsMessage, http::Uri},
};

type Ws = WebSocketStream<TcpStream>;

/// How much to read at a time.
const READ_CHUNK: usize = 8 * 1024;

/// The read half of a connection.
pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Ws(SplitStream<Ws>),
}

/// The write half of a connection.
pub(crate) enum Writer {
    Tcp(OwnedWriteHalf),
    Ws {
        sink: SplitSink<Ws, WsMessage>,
        /// A frame was handed to the sink and not yet flushed.
        unflushed: bool,
    },
}

/// Opens the network connection (and the WebSocket handshake, with the
/// `mqtt` subprotocol).
pub(crate) async fn connect(address: &Address) -> Result<(Reader, Writer), Error> {
    let tcp = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .map_err(|e| Error::Unreachable {
            addr: address.authority(),
            source: Arc::new(e),
        })?;
    // MQTT packets are small and latency matters more than batching.
    let _ = tcp.set_nodelay(true);
    match &address.transport {
        Transport::Tcp => {
            let (r, w) = tcp.into_split();
            Ok((Reader::Tcp(r), Writer::Tcp(w)))
        }
        Transport::WebSocket { path } => {
            let uri: Uri = format!("ws://{}{}", address.authority(), path)
                .parse()
                .map_err(|e| Error::InvalidUrl(format!("{address}: {e}")))?;
            let request = ClientRequestBuilder::new(uri).with_sub_protocol("mqtt");
            let (ws, _response) = client_async(request, tcp)
                .await
                .map_err(|e| Error::WebSocket(format!("{address}: {e}")))?;
            let (sink, stream) = ws.split();
            Ok((
                Reader::Ws(stream),
                Writer::Ws {
                    sink,
                    unflushed: false,
                },
            ))
        }
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl Reader {
    /// Appends what arrives to `buf`; `Ok(0)` when the peer closed.
    ///
    /// Cancel-safe: bytes are appended only when the future completes (a
    /// WebSocket frame is taken from the stream whole, when it is returned).
    pub(crate) async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Reader::Tcp(r) => {
                buf.reserve(READ_CHUNK);
                r.read_buf(buf).await
            }
            // An MQTT packet may span frames, and a frame may hold several
            // packets: frames are only a way to carry the byte stream.
            Reader::Ws(stream) => loop {
                match stream.next().await {
                    None | Some(Ok(WsMessage::Close(_))) => return Ok(0),
                    Some(Ok(WsMessage::Binary(data))) if !data.is_empty() => {
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Some(Ok(WsMessage::Text(_))) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a WebSocket text frame (MQTT travels in binary frames)",
                        ));
                    }
                    // Pings are answered by tungstenite; empty frames carry nothing.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(ws_io(e)),
                }
            },
        }
    }
}

impl Writer {
    /// Whether [`write`](Self::write) has anything to do.
    pub(crate) fn wants_write(&self, buf: &BytesMut) -> bool {
        !buf.is_empty()
            || matches!(
                self,
                Writer::Ws {
                    unflushed: true,
                    ..
                }
            )
    }

    /// Writes some or all of `buf`, removing what was written.
    ///
    /// Cancel-safe: bytes leave `buf` only once the socket (or the WebSocket
    /// sink) has taken them, and a frame the sink holds unflushed is flushed
    /// by the next call ([`wants_write`](Self::wants_write) says so).
    pub(crate) async fn write(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => {
                if w.write_buf(buf).await? == 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(())
            }
            Writer::Ws { sink, unflushed } => {
                if !buf.is_empty() {
                    poll_fn(|cx| sink.poll_ready_unpin(cx))
                        .await
                        .map_err(ws_io)?;
                    let data = buf.split().freeze();
                    sink.start_send_unpin(WsMessage::Binary(data))
                        .map_err(ws_io)?;
                    *unflushed = true;
                }
                poll_fn(|cx| sink.poll_flush_unpin(cx))
                    .await
                    .map_err(ws_io)?;
                *unflushed = false;
                Ok(())
            }
        }
    }

    /// Closes the sending side (TCP FIN, or a WebSocket Close frame).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Ws { sink, .. } => sink.close().await.map_err(ws_io),
        }
    }
}
