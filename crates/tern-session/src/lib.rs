//! Sans-IO MQTT session state machines for both ends of a connection.
//!
//! The hardest part of MQTT — the QoS 1 and 2 flows, packet identifiers,
//! in-flight windows, redelivery on reconnect, keep alive, topic aliases —
//! lives here once, for the client ([`ClientConnection`]) and the server
//! ([`ServerConnection`]). There is no I/O, no clock and no async: the tokio
//! client, the broker, an embedded loop and a deterministic simulator all
//! drive the same code.
//!
//! # The contract
//!
//! - **Time** is an argument. Every input takes `now` (an [`Instant`] on the
//!   caller's monotonic clock); the crate never reads a clock.
//! - **Input**: `handle_bytes(now, &mut buf)` (decodes with tern-codec and
//!   enforces the Maximum Packet Size), `handle_packet(now, packet)`,
//!   `handle_timeout(now)`, `handle_closed(now)`.
//! - **Commands** from the application return `Result`: only the caller's
//!   own mistakes are errors. A peer's protocol violation closes the
//!   connection (MQTT 5: with a DISCONNECT carrying the reason code) and
//!   surfaces as a `Closed` event.
//! - **Output** is polled: `write_transmit(now, &mut buf, max_copy)` (the
//!   next packet, written into your buffer, with a few words about it in a
//!   [`Transmit`]; `poll_transmit(now)` is the same as a typed packet),
//!   `poll_timeout()` (when to call `handle_timeout` next), `poll_event()`.
//!
//! # The drain rule
//!
//! After every input or command, and before the next input:
//!
//! 1. call `write_transmit` until it returns `None` (or until your write
//!    buffer is full: then stop reading from the peer and call it again when
//!    the socket is writable; waiting messages stay in the session's bounded
//!    queue); `write_transmits` does the whole loop when you write the
//!    buffer out at once,
//! 2. call `poll_timeout` and (re)arm your timer with the result,
//! 3. call `poll_event` until it returns `None`.
//!
//! Time must never go backwards. Calling `handle_timeout` early is a
//! harmless no-op. When a `Closed` event arrives, finish sending what
//! `write_transmit` still writes (a final DISCONNECT), then close the socket.
//!
//! # Drivers on `std`
//!
//! The `std` feature adds what every `std` driver needs besides the drain
//! rule: [`Instant::from_std`] / [`Instant::to_std`] to put `std`'s clock on
//! the session's scale, and [`read_timeout`] to turn `poll_timeout` into a
//! socket read timeout. It adds no I/O: the `tern-blocking` crate is a
//! complete blocking client built on it, and `examples/smol_driver.rs` is a
//! driver on the smol executor.
//!
//! # Sessions and connections
//!
//! What survives a reconnect — in-flight messages by packet identifier, the
//! queue, incoming QoS 2 state, subscriptions — is a session
//! ([`ClientSession`], [`ServerSession`], serialisable with the `serde`
//! feature). What lives for one link — keep alive, negotiated limits, topic
//! aliases, the send quota — is the connection. A connection takes a session
//! when it starts and gives it back when it ends.
//!
//! # Example: a client and a server back to back
//!
//! ```
//! use tern_codec::{MqttString, Packet, Publish, QoS};
//! use tern_session::*;
//!
//! let now = Instant::ZERO;
//! let mut client = ClientConnection::new(
//!     now,
//!     ConnectOptions::new(MqttString::from_static("c1")),
//!     ClientSession::new(),
//! );
//! let mut server = ServerConnection::new(now, ServerConfig::default());
//!
//! // Deliver everything one side has to send to the other.
//! fn pump(c: &mut ClientConnection, s: &mut ServerConnection, now: Instant) {
//!     loop {
//!         let mut moved = false;
//!         while let Some(p) = c.poll_transmit(now) { s.handle_packet(now, p); moved = true; }
//!         while let Some(p) = s.poll_transmit(now) { c.handle_packet(now, p); moved = true; }
//!         if !moved { break; }
//!     }
//! }
//!
//! pump(&mut client, &mut server, now);
//! let Some(ServerEvent::ConnectRequest(connect)) = server.poll_event() else { panic!() };
//! let session = ServerSession::new(connect.client_id.clone(), Default::default());
//! server.accept(now, Accept {
//!     session,
//!     session_present: false,
//!     assigned_client_id: None,
//!     properties: Default::default(),
//! })?;
//! pump(&mut client, &mut server, now);
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Connected { .. })));
//!
//! let id = client.publish(now, Publish {
//!     topic: MqttString::from_static("a/b"),
//!     qos: QoS::AtLeastOnce,
//!     payload: "hi".into(),
//!     ..Publish::default()
//! })?;
//! pump(&mut client, &mut server, now);
//! assert!(matches!(server.poll_event(), Some(ServerEvent::Message { .. })));
//! assert!(matches!(
//!     client.poll_event(),
//!     Some(ClientEvent::Published { packet_id, .. }) if Some(packet_id) == id
//! ));
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod alias;
pub mod auth;
mod client;
mod core;
mod error;
mod idmap;
mod ids;
mod incoming;
mod message;
mod outgoing;
pub mod scram;
mod server;
mod time;
mod transmit;
mod window;

pub use crate::client::{
    ClientConnection, ClientEvent, ClientSession, ConnectOptions, ConnectionState,
    GrantedSubscription, ServerLimits,
};
pub use crate::error::{AckError, CloseReason, CommandError, PublishError, Rule, Violation};
pub use crate::ids::PacketIds;
pub use crate::incoming::AckToken;
pub use crate::message::{Delivery, MessageBody};
pub use crate::outgoing::{Enqueued, OutgoingNote, OverflowPolicy, QueueLimits, QueuedMessage};
pub use crate::server::{
    Accept, ServerConfig, ServerConnection, ServerEvent, ServerSession, requested_session_expiry,
};
pub use crate::time::Instant;
#[cfg(feature = "std")]
pub use crate::time::read_timeout;
pub use crate::transmit::Transmit;
/// The codec whose packets the sessions take and give, so a driver needs
/// no second dependency.
pub use tern_codec as codec;

// The hot types stay small: events and queue entries are moved through
// queues on every message, so their large, rare parts (a CONNACK, a will,
// AUTH) are boxed. `ClientEvent` was 264 bytes and `ServerEvent` 272 before.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(::core::mem::size_of::<ClientEvent>() <= 96);
    assert!(::core::mem::size_of::<ServerEvent>() <= 96);
    // A queued or in-flight message is a few words beside its shared body
    // (`QueuedMessage` was 88 bytes with a whole `Publish`).
    assert!(::core::mem::size_of::<Delivery>() <= 40);
    assert!(::core::mem::size_of::<QueuedMessage>() <= 48);
    assert!(::core::mem::size_of::<outgoing::InFlight>() <= 64);
    // What an idle connection holds inline (a broker keeps one per client):
    // the rare parts (outgoing topic aliases, the incoming alias map, QoS 2
    // flows on the link, an enhanced-authentication method, a client's
    // pool of message bodies) are boxed until used. The protocol core was
    // 264 bytes and `ServerConnection` 768 before.
    assert!(::core::mem::size_of::<core::Core<ServerEvent>>() <= 176);
    assert!(::core::mem::size_of::<ServerSession>() <= 328);
    assert!(::core::mem::size_of::<ServerConnection>() <= 640);
};
