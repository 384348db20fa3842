//! An async MQTT 3.1.1 and 5.0 client for tokio, over TCP or WebSocket.
//!
//! tern-client is a thin shell around [`tern_session::ClientConnection`]: a
//! task owns the network connection and the session state machine, and
//! moves bytes, time and requests in and events out. QoS flows, keep alive,
//! resending and resubscribing are tern-session's; this crate adds sockets,
//! timers, futures, a stream of messages, reconnecting and backpressure.
//!
//! ```no_run
//! use tern_client::{Client, Options, QoS};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tern_client::Error> {
//! let options = Options::from_url("mqtt://localhost:1883")?.client_id("greeter")?;
//! let (client, mut messages) = Client::connect(options).await?;
//!
//! client.subscribe([("hello/#", QoS::AtLeastOnce)]).await?;
//! let published = client.publish("hello/world", "hi", QoS::ExactlyOnce, false).await?;
//! println!("PUBCOMP: {}", published.reason_code);
//!
//! if let Some(message) = messages.recv().await {
//!     println!("{}: {:?}", message.topic, message.payload);
//! }
//! client.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it does
//!
//! - [`Client::connect`] opens `mqtt://host:port` or `ws://host:port/path`
//!   (WebSocket with the `mqtt` subprotocol, binary frames), or their TLS
//!   forms `mqtts://` and `wss://` ([`TlsOptions`]: a CA file or the
//!   platform's roots, a client certificate), or a stream your own
//!   [`Options::connector`] opens; sends CONNECT with everything in
//!   [`Options`] (version, client identifier, clean start, session expiry,
//!   keep alive, will, credentials, MQTT 5 properties) and waits for CONNACK.
//! - [`Client::publish`], [`Client::subscribe`] and [`Client::unsubscribe`]
//!   return futures that complete when the broker's answer arrives (PUBACK,
//!   PUBCOMP, SUBACK, UNSUBACK, with the MQTT 5 reason codes).
//! - Incoming messages arrive on [`Messages`], a [`Stream`](futures_util::Stream).
//!   With [`Options::manual_acks`] each QoS 1 and 2 [`Message`] is
//!   acknowledged only when the application calls [`Message::ack`], with the
//!   reason code it chooses.
//! - A lost connection is reopened with exponential backoff and jitter
//!   ([`Backoff`]), resuming the session: see [`Client`] for the rules.
//!   [`Client::state_changes`] shows what is happening.
//! - Everything is bounded. Requests wait for room in a bounded channel and
//!   in the session's queue (whose in-flight window the broker's Receive
//!   Maximum bounds); incoming messages wait in a bounded channel, and while
//!   it is full the client stops reading the socket.
//! - One [`Error`] type, with the cause to match on.
//!
//! # Cancel safety
//!
//! Each async method documents it. In short: [`Messages::recv`] is
//! cancel-safe; a request future (`publish`, `subscribe`, `unsubscribe`,
//! `disconnect`) dropped after its first successful poll has already handed
//! the request over, which then happens anyway (only the answer is lost);
//! [`Message::ack`] sends the acknowledgement when called, not when polled.

//! # Features
//!
//! - `tls` (default): `mqtts://` and `wss://` with rustls and its ring
//!   provider, trusting the platform's root certificates (read with
//!   rustls-native-certs) unless given a CA file.
//! - `websocket` (default): `ws://` and `wss://` with tokio-tungstenite.
//!
//! With `default-features = false` the client speaks plain TCP (or the
//! streams of an [`Options::connector`]) and pulls in neither.

#![forbid(unsafe_code)]

mod auth;
mod client;
mod driver;
mod error;
mod options;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use crate::auth::{AuthMethod, ScramSha256};
pub use crate::client::{
    Acked, Acker, BoxFuture, Client, DisconnectBuilder, IntoFilter, Message, Messages,
    PendingPublish, PublishBuilder, Published, State, SubscribeBuilder, Subscribed,
    UnsubscribeBuilder, Unsubscribed,
};
pub use crate::error::{Error, Timeout};
pub use crate::options::{Address, Backoff, Options, ParsedUrl, Transport};
#[cfg(feature = "tls")]
pub use crate::tls::TlsOptions;
pub use crate::transport::{BoxStream, Connector, Stream};

// What the API takes and returns, so a user needs no other Tern crate (and
// no `bytes` dependency) for everyday use.
pub use bytes::Bytes;
/// The codec, for everything else (packets, properties, decoding).
pub use tern_codec as codec;
pub use tern_codec::{
    ConnAck, ConnectProperties, DisconnectProperties, MqttString, ProtocolVersion,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubscribeFilter, SubscribeProperties,
    SubscriptionId, SubscriptionOptions, UnsubscribeProperties, UserProperty, Will, WillProperties,
};
pub use tern_session::{AckError, CommandError, PublishError, QueueLimits, Rule, Violation};
