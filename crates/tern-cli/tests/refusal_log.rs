//! `tern broker`'s refusal log under a flood of refused PUBLISHes (issue
//! 13): every refusal reaches the client (PUBACK 0x90) and is counted, but
//! the log gets the first and then at most a line a second per connection,
//! saying how many it left out, instead of a line per message (29,000
//! lines in a 1.2 s flood took more of the broker's time than routing).

use std::time::Instant;
use tern_client::{Address, Client, Options, QoS};
use tern_codec::ReasonCode;
use tern_testkit::Broker;

/// PUBLISHes refused.
const N: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_publishes_is_logged_a_line_a_second_and_counted() {
    let broker = Broker::tern(env!("CARGO_BIN_EXE_tern"))
        .settings("[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[limits]\nmax_topic_levels = 2\n")
        .start()
        .expect("tern starts");
    let options = Options::new(Address::tcp("127.0.0.1", broker.tcp().port()))
        .client_id("flooder")
        .unwrap();
    let (client, _rx) = Client::connect(options).await.unwrap();
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..N {
        // Three levels, over `max_topic_levels`: PUBACK 0x90 Topic Name
        // invalid [MQTT-3.3.2-2] (MQTT 5), the connection stays.
        let published = client
            .publish("a/b/c", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        if published.reason_code == ReasonCode::TopicNameInvalid {
            refused += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(refused, N, "every one refused to the client");
    // Still connected and served.
    client
        .publish("a/b", "ok", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    drop(client);

    let log = broker.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    let seconds = took.as_secs() as usize + 1;
    assert!(
        !lines.is_empty() && lines.len() <= seconds + 1,
        "{} refusal lines for {N} refusals in {took:?}:\n{}",
        lines.len(),
        lines.iter().take(5).copied().collect::<Vec<_>>().join("\n")
    );
    assert!(lines[0].contains("client_id=flooder"), "{}", lines[0]);
    // The lines after the first say how many were left out; with the first
    // they account for every refusal.
    let counted: usize = lines
        .iter()
        .map(|l| {
            l.split("not_logged_since=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
                .expect("not_logged_since on every line")
        })
        .sum::<usize>()
        + lines.len();
    assert!(counted <= N, "{counted} accounted for, {N} refused");
}
