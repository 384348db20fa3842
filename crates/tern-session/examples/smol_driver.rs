//! A tern-session driver on smol: publish, receive and keep alive in one
//! loop that keeps the drain rule. Run against a broker with
//! `cargo run -p tern-session --features std --example smol_driver -- mqtt://127.0.0.1:1883`
#![allow(
    clippy::disallowed_methods,
    reason = "a driver reads the clock that the session never does"
)]
use smol::{Timer, future, io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};
use std::time::Duration;
use tern_codec::{MqttString, Publish, QoS, SubscribeFilter, bytes::BytesMut};
use tern_session::{ClientConnection, ClientEvent, ClientSession, ConnectOptions, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://127.0.0.1:1883".into());
    smol::block_on(async {
        let mut stream = TcpStream::connect(url.trim_start_matches("mqtt://")).await?;
        let epoch = std::time::Instant::now();
        let now = || Instant::from_std(epoch, std::time::Instant::now());
        let topic = MqttString::from_static("tern/smol");
        let id = MqttString::from_static("tern-smol");
        let options = ConnectOptions {
            keep_alive: 1,
            ..ConnectOptions::new(id)
        };
        let mut conn = ClientConnection::new(now(), options, ClientSession::new());
        let (mut input, mut output, mut chunk) = (BytesMut::new(), BytesMut::new(), [0; 4096]);
        let mut idle_until = None;
        let message = |payload: &'static str| Publish {
            topic: topic.clone(),
            qos: QoS::AtLeastOnce,
            payload: payload.into(),
            ..Default::default()
        };
        loop {
            // The drain rule: write everything, then take every event.
            while conn
                .write_transmit(now(), &mut output, usize::MAX)
                .is_some()
            {}
            stream.write_all(&output.split()).await?;
            while let Some(event) = conn.poll_event() {
                match event {
                    ClientEvent::Connected { .. } => {
                        let filter = SubscribeFilter {
                            filter: topic.clone(),
                            options: Default::default(),
                        };
                        conn.subscribe(now(), vec![filter], Default::default())?;
                    }
                    ClientEvent::Subscribed { .. } => _ = conn.publish(now(), message("before"))?,
                    ClientEvent::Message { publish, .. } if publish.payload == "before" => {
                        // Stay idle for 2.5 keep-alive intervals, then publish again.
                        idle_until = Some(now() + Duration::from_millis(2500));
                    }
                    ClientEvent::Message { .. } => {
                        conn.disconnect(now(), Default::default(), Default::default())?;
                        while conn
                            .write_transmit(now(), &mut output, usize::MAX)
                            .is_some()
                        {}
                        stream.write_all(&output).await?;
                        println!(
                            "smol driver: received both messages, kept alive across 2.5 s idle"
                        );
                        return Ok(());
                    }
                    ClientEvent::Closed(reason) => return Err(reason.to_string().into()),
                    _ => {}
                }
            }
            // Wait for input or the earliest deadline (keep alive's or ours).
            let deadline = conn.poll_timeout().into_iter().chain(idle_until).min();
            let timer = async {
                match deadline {
                    Some(d) => _ = Timer::at(d.to_std(epoch)).await,
                    None => future::pending().await,
                }
                None
            };
            match future::or(async { Some(stream.read(&mut chunk).await) }, timer).await {
                Some(Ok(0)) => conn.handle_closed(now()),
                Some(Ok(n)) => {
                    input.extend_from_slice(&chunk[..n]);
                    conn.handle_bytes(now(), &mut input)
                }
                Some(Err(e)) => return Err(e.into()),
                None if idle_until.is_some_and(|t| now() >= t) => {
                    idle_until = None;
                    conn.publish(now(), message("after"))?;
                }
                None => conn.handle_timeout(now()),
            }
        }
    })
}
