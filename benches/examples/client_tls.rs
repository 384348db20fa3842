//! tern-client's throughput over TLS against plain TCP, in one run: two
//! mosquitto processes (one plain listener, one TLS listener with a CA and
//! server certificate made here), the same pipelined QoS 1 publisher
//! (`try_publish`, 64 B payloads) against each in alternating rounds.
//!
//! ```sh
//! cargo run --release -p tern-benches --example client_tls [MESSAGES] [ROUNDS]
//! ```

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::{collections::VecDeque, time::Instant};
use tern_client::{Client, Error, Options, QoS, TlsOptions};
use tern_testkit::Broker;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let messages: u32 = args.next().map_or(Ok(50_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;

    // A CA and a certificate for localhost; readable by mosquitto's user.
    let dir = std::env::temp_dir().join(format!("tern-client-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key)?.pem())?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".into()])?
        .signed_by(&key, &Issuer::new(ca, ca_key))?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    let file = |f: &str| dir.join(f).display().to_string();

    let plain = Broker::mosquitto().start()?;
    let tls = Broker::mosquitto()
        .listener_settings(&format!(
            "certfile {}\nkeyfile {}\n",
            file("server.pem"),
            file("server.key")
        ))
        .start()?;
    let plain_url = plain.url();
    let tls_url = format!("mqtts://localhost:{}", tls.tcp().port());
    let ca_file = file("ca.pem");

    let (mut over_tcp, mut over_tls) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let tcp_rate = run(Options::from_url(&plain_url)?, messages).await?;
        let tls_rate = run(
            Options::from_url(&tls_url)?.tls(TlsOptions::new().ca_file(&ca_file)),
            messages,
        )
        .await?;
        println!("round {round}: TCP {tcp_rate:.0} msg/s, TLS {tls_rate:.0} msg/s");
        over_tcp.push(tcp_rate);
        over_tls.push(tls_rate);
    }
    let (tcp, tls_median) = (median(&mut over_tcp), median(&mut over_tls));
    println!(
        "median over {rounds} rounds of {messages} QoS 1 messages: TCP {tcp:.0} msg/s, TLS {tls_median:.0} msg/s, TLS/TCP {:.2}",
        tls_median / tcp
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Publishes `messages` QoS 1 messages pipelined; returns messages per second.
async fn run(options: Options, messages: u32) -> Result<f64, Error> {
    let (client, _incoming) = Client::connect(options.client_id("tern-tls-bench")?).await?;
    let payload = vec![0u8; 64];
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut sent = 0;
    while sent < messages {
        match client.try_publish("bench/tls", payload.clone(), QoS::AtLeastOnce, false) {
            Ok(pending) => {
                in_flight.push_back(pending);
                sent += 1;
            }
            Err(Error::Backpressure) => {
                in_flight.pop_front().expect("something in flight").await?;
            }
            Err(e) => return Err(e),
        }
    }
    for pending in in_flight {
        pending.await?;
    }
    let rate = f64::from(messages) / started.elapsed().as_secs_f64();
    client.disconnect().await?;
    Ok(rate)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
