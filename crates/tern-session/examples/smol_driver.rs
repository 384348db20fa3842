//! A tern-session driver on smol, one loop that keeps the drain rule: subscribe,
//! publish, receive, and stay connected for 3 keep-alive intervals.
//! `cargo run -p tern-session --features std --example smol_driver -- mqtt://127.0.0.1:1883`
#![allow(clippy::disallowed_methods, reason = "a driver reads the clock")]
use smol::{Timer, future, io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};
use tern_session::codec::{MqttString, Publish, QoS, SubscribeFilter, bytes::BytesMut};
use tern_session::{ClientConnection, ClientEvent, ClientSession, ConnectOptions, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.as_deref().unwrap_or("mqtt://127.0.0.1:1883");
    smol::block_on(async {
        let mut stream = TcpStream::connect(url.trim_start_matches("mqtt://")).await?;
        let epoch = std::time::Instant::now();
        let now = || Instant::from_std(epoch, std::time::Instant::now());
        let topic = MqttString::from_static("tern/smol");
        let end = now() + std::time::Duration::from_secs(3);
        let mut options = ConnectOptions::new(MqttString::from_static("tern-smol"));
        options.keep_alive = 1;
        let mut conn = ClientConnection::new(now(), options, ClientSession::new());
        let (mut input, mut output, mut chunk) = (BytesMut::new(), BytesMut::new(), [0; 4096]);
        let mut got = false;
        loop {
            // The drain rule; events first, as our commands answer some.
            while let Some(event) = conn.poll_event() {
                match event {
                    ClientEvent::Connected { .. } => {
                        let filter = SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce);
                        conn.subscribe(now(), vec![filter], Default::default())?;
                        let message = Publish::new(topic.clone(), "hello", QoS::AtLeastOnce);
                        conn.publish(now(), message)?;
                    }
                    ClientEvent::Message { .. } => got = true,
                    ClientEvent::Closed(reason) => return Err(reason.to_string().into()),
                    _ => {}
                }
            }
            conn.write_transmits(now(), &mut output);
            stream.write_all(&output.split()).await?;
            // Wait for input or the earliest deadline (keep alive's or the end).
            let deadline = conn.poll_timeout().map_or(end, |t| t.min(end));
            let read = async { Ok(stream.read(&mut chunk).await) };
            match future::or(read, async { Err(Timer::at(deadline.to_std(epoch)).await) }).await {
                Ok(Ok(0)) => conn.handle_closed(now()),
                Ok(Ok(n)) => {
                    input.extend_from_slice(&chunk[..n]);
                    conn.handle_bytes(now(), &mut input)
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if now() >= end => break,
                Err(_) => conn.handle_timeout(now()),
            }
        }
        conn.disconnect(now(), Default::default(), Default::default())?;
        conn.write_transmits(now(), &mut output);
        stream.write_all(&output).await?;
        println!("smol driver: message received: {got}; kept alive for 3 s");
        Ok(())
    })
}
