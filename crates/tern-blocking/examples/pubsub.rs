//! Subscribe, publish from a second thread, and receive, with no async
//! runtime: `cargo run -p tern-blocking --example pubsub -- mqtt://127.0.0.1:1883`
use std::net::TcpStream;
use tern_blocking::{Client, ClientEvent, ConnectOptions, MqttString, QoS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://127.0.0.1:1883".into());
    let address = url.trim_start_matches("mqtt://");
    let options = ConnectOptions::new(MqttString::from_static("tern-blocking-example"));
    let (mut client, _) = Client::connect(TcpStream::connect(address)?, options)?;

    client.subscribe("tern/blocking/#", QoS::ExactlyOnce)?;
    // Wait for the SUBACK before publishing, so no message is missed.
    while !matches!(client.next_event()?, ClientEvent::Subscribed { .. }) {}

    let publisher = client.publisher();
    let sender = std::thread::spawn(move || {
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let topic = format!("tern/blocking/{i}");
            publisher.publish(&topic, format!("message {i}"), qos)?;
        }
        Ok::<(), tern_blocking::Error>(())
    });

    let (mut received, mut acknowledged) = (0, 0);
    while received < 3 || acknowledged < 2 {
        match client.next_event()? {
            ClientEvent::Message { publish, .. } => {
                received += 1;
                let text = String::from_utf8_lossy(&publish.payload);
                println!("{} ({:?}): {text}", publish.topic, publish.qos);
            }
            ClientEvent::Published { reason_code, .. } => {
                acknowledged += 1;
                println!("acknowledged: {reason_code:?}");
            }
            _ => {}
        }
    }
    sender.join().expect("the sending thread")?;
    client.disconnect()?;
    println!("received {received} messages, {acknowledged} acknowledged");
    Ok(())
}
