//! Connect over TLS with a CA file and a client certificate, as
//! mosquitto_pub's `--cafile`, `--cert` and `--key` do.
//!
//! ```sh
//! cargo run -p tern-client --example tls -- mqtts://broker:8883 ca.pem [client.pem client.key]
//! ```

use tern_client::{Client, Error, Options, QoS, TlsOptions};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, ca, rest @ ..] = args.as_slice() else {
        eprintln!("usage: tls mqtts://host:port CA.pem [CERT.pem KEY.pem]");
        std::process::exit(2);
    };
    let mut tls = TlsOptions::new().ca_file(ca);
    if let [cert, key] = rest {
        tls = tls.client_auth(cert, key);
    }
    // Errors name the file or the certificate problem, before or during
    // the handshake: Error::Tls("... certificate not valid for name ...").
    let options = Options::from_url(url)?
        .client_id("tern-example-tls")?
        .tls(tls);
    let (client, _messages) = Client::connect(options).await?;
    let done = client
        .publish("tern/tls", "secret", QoS::AtLeastOnce, false)
        .await?;
    println!("published over TLS: {}", done.reason_code);
    client.disconnect().await
}
