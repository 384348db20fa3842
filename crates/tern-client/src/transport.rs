//! The byte pipes under MQTT: TCP, TLS, WebSocket binary frames, or a
//! stream the application opens itself, layered as the address asks
//! (`wss://` is WebSocket over TLS over TCP).
//!
//! Each is split into a read half and a write half so the driver can wait
//! on reading and writing at the same time. Nothing here knows MQTT: the
//! driver hands bytes to tern-session and takes bytes from it.

use crate::{Address, Error, Transport};
use bytes::BytesMut;
use std::{future::Future, io, pin::Pin, sync::Arc};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
#[cfg(feature = "websocket")]
use {
    futures_util::{
        SinkExt, StreamExt,
        stream::{SplitSink, SplitStream},
    },
    std::future::poll_fn,
    tokio_tungstenite::{
        WebSocketStream, client_async,
        tungstenite::{self, ClientRequestBuilder, Message as WsMessage, http::Uri},
    },
};

/// A byte stream MQTT can run over: what a [`Connector`] returns.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// Opens the network connection to an address in place of TCP, for each
/// connection the client makes (see [`Options::connector`](crate::Options::connector)).
pub type Connector = Arc<
    dyn Fn(&Address) -> Pin<Box<dyn Future<Output = io::Result<BoxStream>> + Send>> + Send + Sync,
>;

#[cfg(feature = "websocket")]
type Ws = WebSocketStream<BoxStream>;

/// How much to read at a time.
const READ_CHUNK: usize = 8 * 1024;

/// The read half of a connection.
pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Stream(ReadHalf<BoxStream>),
    #[cfg(feature = "websocket")]
    Ws(SplitStream<Ws>),
}

/// The write half of a connection.
pub(crate) enum Writer {
    Tcp(OwnedWriteHalf),
    /// TLS, or the application's stream: written bytes may wait in the
    /// stream until flushed.
    Stream {
        w: WriteHalf<BoxStream>,
        /// Bytes were written and not yet flushed.
        unflushed: bool,
    },
    #[cfg(feature = "websocket")]
    Ws {
        sink: SplitSink<Ws, WsMessage>,
        /// A frame was handed to the sink and not yet flushed.
        unflushed: bool,
    },
}

/// What a connection is opened with besides the address: the TLS
/// configuration (built once per client) and the application's connector.
#[derive(Clone, Default)]
pub(crate) struct Layers {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) connector: Option<Connector>,
}

/// Opens the network connection: TCP (or the application's connector), then
/// TLS for `mqtts://` and `wss://`, then the WebSocket handshake with the
/// `mqtt` subprotocol for `ws://` and `wss://`.
pub(crate) async fn connect(address: &Address, layers: &Layers) -> Result<(Reader, Writer), Error> {
    let unreachable = |e: io::Error| Error::Unreachable {
        addr: address.authority(),
        source: Arc::new(e),
    };
    let stream: BoxStream = match &layers.connector {
        Some(connect) => connect(address).await.map_err(unreachable)?,
        None => {
            let tcp = TcpStream::connect((address.host.as_str(), address.port))
                .await
                .map_err(unreachable)?;
            // MQTT packets are small and latency matters more than batching.
            let _ = tcp.set_nodelay(true);
            if !address.tls && address.transport == Transport::Tcp {
                // The common case keeps tokio's lock-free halves.
                let (r, w) = tcp.into_split();
                return Ok((Reader::Tcp(r), Writer::Tcp(w)));
            }
            Box::new(tcp)
        }
    };
    let stream = if address.tls {
        tls_handshake(address, layers, stream).await?
    } else {
        stream
    };
    match &address.transport {
        Transport::Tcp => {
            let (r, w) = tokio::io::split(stream);
            Ok((
                Reader::Stream(r),
                Writer::Stream {
                    w,
                    unflushed: false,
                },
            ))
        }
        #[cfg(feature = "websocket")]
        Transport::WebSocket { path } => {
            let scheme = if address.tls { "wss" } else { "ws" };
            let uri: Uri = format!("{scheme}://{}{}", address.authority(), path)
                .parse()
                .map_err(|e| Error::InvalidUrl(format!("{address}: {e}")))?;
            let request = ClientRequestBuilder::new(uri).with_sub_protocol("mqtt");
            let (ws, _response) = client_async(request, stream)
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
        #[cfg(not(feature = "websocket"))]
        Transport::WebSocket { .. } => Err(Error::WebSocketNotSupported),
    }
}

#[cfg(feature = "tls")]
async fn tls_handshake(
    address: &Address,
    layers: &Layers,
    stream: BoxStream,
) -> Result<BoxStream, Error> {
    let config = match &layers.tls {
        Some(config) => config.clone(),
        None => crate::TlsOptions::new().build()?,
    };
    let name = crate::tls::server_name(&address.host)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                // The peer's certificate or the handshake: retrying won't help.
                Some(tls) => Error::Tls(format!("{}: {tls}", address.authority())),
                None => Error::Io(Arc::new(e)),
            }
        })?;
    Ok(Box::new(tls))
}

#[cfg(not(feature = "tls"))]
async fn tls_handshake(_: &Address, _: &Layers, _: BoxStream) -> Result<BoxStream, Error> {
    Err(Error::TlsNotSupported)
}

#[cfg(feature = "websocket")]
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
            Reader::Stream(r) => {
                buf.reserve(READ_CHUNK);
                r.read_buf(buf).await
            }
            // An MQTT packet may span frames, and a frame may hold several
            // packets: frames are only a way to carry the byte stream.
            #[cfg(feature = "websocket")]
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
        match self {
            Writer::Stream {
                unflushed: true, ..
            } => true,
            #[cfg(feature = "websocket")]
            Writer::Ws {
                unflushed: true, ..
            } => true,
            _ => !buf.is_empty(),
        }
    }

    /// Writes some or all of `buf`, removing what was written.
    ///
    /// Cancel-safe: bytes leave `buf` only once the socket (or the WebSocket
    /// sink) has taken them, and a frame the sink holds unflushed is flushed
    /// by the next call ([`wants_write`](Self::wants_write) says so).
    pub(crate) async fn write(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => write_some(w, buf).await,
            Writer::Stream { w, unflushed } => {
                if !buf.is_empty() {
                    write_some(w, buf).await?;
                    *unflushed = true;
                }
                w.flush().await?;
                *unflushed = false;
                Ok(())
            }
            #[cfg(feature = "websocket")]
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
            Writer::Stream { w, .. } => w.shutdown().await,
            #[cfg(feature = "websocket")]
            Writer::Ws { sink, .. } => sink.close().await.map_err(ws_io),
        }
    }
}

/// Writes some of `buf` to `w`, removing what was written.
async fn write_some<W: AsyncWrite + Unpin>(w: &mut W, buf: &mut BytesMut) -> io::Result<()> {
    if w.write_buf(buf).await? == 0 && !buf.is_empty() {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(())
}
