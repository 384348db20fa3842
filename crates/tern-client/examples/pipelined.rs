//! Publish many QoS 1 messages from one task without a task per publish:
//! `try_publish` hands each over at once and says when the client cannot
//! take more, so the producer decides how to wait.
//!
//! ```sh
//! cargo run -p tern-client --example pipelined [mqtt://localhost:1883]
//! ```

use std::collections::VecDeque;
use tern_client::{Client, Error, Options, QoS};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://localhost:1883".into());
    let options = Options::from_url(&url)?.client_id("tern-example-pipelined")?;
    let (client, _messages) = Client::connect(options).await?;

    let started = std::time::Instant::now();
    let mut in_flight = VecDeque::new();
    let mut n = 0u32;
    while n < 10_000 {
        match client.try_publish("tern/counter", n.to_string(), QoS::AtLeastOnce, false) {
            Ok(pending) => {
                in_flight.push_back(pending);
                n += 1;
            }
            // Full: wait for the oldest PUBACK, then go on.
            Err(Error::Backpressure) => {
                in_flight
                    .pop_front()
                    .expect("something is in flight")
                    .await?;
            }
            Err(e) => return Err(e),
        }
    }
    for pending in in_flight {
        pending.await?;
    }
    println!(
        "10000 QoS 1 messages acknowledged in {:?}",
        started.elapsed()
    );
    client.disconnect().await
}
