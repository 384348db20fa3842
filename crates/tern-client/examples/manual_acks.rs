//! Acknowledge each message only once it is processed (MQTT 5 can refuse
//! one with a reason code); a message dropped unacknowledged is
//! acknowledged with Success, so it never holds up the ones behind it.
//!
//! ```sh
//! cargo run -p tern-client --example manual_acks [mqtt://localhost:1883]
//! ```

use tern_client::{Acked, Client, Error, Options, QoS, ReasonCode};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://localhost:1883".into());
    let options = Options::from_url(&url)?
        .client_id("tern-example-acks")?
        .manual_acks(true);
    let (client, mut messages) = Client::connect(options).await?;
    client.subscribe([("tern/jobs", QoS::AtLeastOnce)]).await?;
    for job in ["resize", "", "thumbnail"] {
        client
            .publish("tern/jobs", job, QoS::AtLeastOnce, false)
            .await?;
    }
    for _ in 0..3 {
        let Some(mut message) = messages.recv().await else {
            break;
        };
        // An empty job is refused (0x80 Unspecified error in MQTT 5).
        let reason = if message.payload.is_empty() {
            ReasonCode::UnspecifiedError
        } else {
            ReasonCode::Success
        };
        match message.ack(reason).await? {
            Acked::Sent => println!("{:?}: acknowledged with {reason}", message.payload),
            // It came on an earlier connection; the broker sends it again.
            Acked::Stale => println!("{:?}: will come again", message.payload),
            other => println!("{:?}: {other:?}", message.payload),
        }
    }
    client.disconnect().await
}
