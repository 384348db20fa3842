//! A blocking MQTT client: [tern-session]'s state machine driven by a
//! thread and a socket, with no async runtime.
//!
//! It is also the reference for writing a driver on `std`: every rule of
//! the session's contract (the drain rule, time as an argument, read
//! timeouts from `poll_timeout`) is kept in its `driver` module's few
//! functions.
//!
//! - [`Client::connect`] runs the handshake over any [`Transport`]
//!   (`TcpStream` and `UnixStream` are ones; implement it for your own).
//! - [`Client::next_event`] blocks until the next [`ClientEvent`],
//!   answering keep alive in between.
//! - A [`Publisher`] (from [`Client::publisher`]) publishes, subscribes and
//!   unsubscribes from any other thread while the client thread waits.
//! - [`Client::connect_with_auth`] logs in with MQTT 5 enhanced
//!   authentication ([`ScramSha256`], or your own [`AuthMethod`]), and
//!   [`Client::reauthenticate`] runs it again on the open connection.
//!
//! ```no_run
//! use tern_blocking::{Client, ClientEvent, ConnectOptions, MqttString, QoS};
//!
//! let stream = std::net::TcpStream::connect("127.0.0.1:1883")?;
//! let (mut client, _session_present) =
//!     Client::connect(stream, ConnectOptions::new(MqttString::from_static("blocking-1")))?;
//! client.subscribe("hello/#", QoS::AtLeastOnce)?;
//! let publisher = client.publisher();
//! std::thread::spawn(move || {
//!     publisher.publish("hello/world", "hi", QoS::AtLeastOnce)
//! });
//! loop {
//!     if let ClientEvent::Message { publish, .. } = client.next_event()? {
//!         println!("{}: {:?}", publish.topic, publish.payload);
//!         break;
//!     }
//! }
//! client.disconnect()?;
//! # Ok::<(), tern_blocking::Error>(())
//! ```
//!
//! [tern-session]: tern_session

#![forbid(unsafe_code)]

mod auth;
mod driver;
mod error;
mod transport;

pub use crate::auth::{AuthMethod, ScramSha256};
pub use crate::driver::{Client, Publisher};
pub use crate::error::Error;
pub use crate::transport::Transport;

pub use bytes::Bytes;
pub use tern_codec as codec;
pub use tern_codec::{
    MqttString, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, SubscribeFilter,
};
pub use tern_session::{
    AckError, AckToken, ClientEvent, ClientSession, CloseReason, CommandError, ConnectOptions,
    PublishError,
};
