//! Subscribe, publish at every QoS, and read the messages back.
//!
//! ```sh
//! cargo run -p tern-client --example publish_subscribe [mqtt://localhost:1883]
//! ```

use tern_client::{Client, Error, Options, QoS};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://localhost:1883".into());
    let options = Options::from_url(&url)?.client_id("tern-example-pubsub")?;
    let (client, mut messages) = Client::connect(options).await?;

    let suback = client
        .subscribe([("tern/example/#", QoS::ExactlyOnce)])
        .await?;
    println!("subscribed: {:?}", suback.reason_codes);

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("tern/example/qos{}", qos.as_u8());
        // Completes at PUBACK (QoS 1) or PUBCOMP (QoS 2), with the reason code.
        let done = client.publish(&topic, "hello", qos, false).await?;
        println!("published at {qos}: {}", done.reason_code);
    }
    for _ in 0..3 {
        let Some(message) = messages.recv().await else {
            break;
        };
        println!("{} ({}): {:?}", message.topic, message.qos, message.payload);
    }
    client.disconnect().await
}
