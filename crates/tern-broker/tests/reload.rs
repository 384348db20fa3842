//! SIGHUP's reload of the settings file ([`Running::reload`]): changed
//! limits apply to new connections, open ones stay; a bad file leaves the
//! settings in force.

mod common;

use common::*;
use tern_broker::server::{self, BrokerSettings};
use tern_codec::ProtocolVersion;

#[tokio::test]
async fn a_reload_applies_new_limits_to_new_connections_and_keeps_the_old_on_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("tern-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    let file = |inflight: &str| {
        format!(
            "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[limits]\nsys_interval = 0\n\
             max_inflight = {inflight}\n"
        )
    };
    std::fs::write(&path, file("10")).unwrap();
    let settings = BrokerSettings::load(&path).unwrap();
    let running = server::start(settings).await.unwrap();
    let tcp = running.tcp_addr().unwrap();
    let receive_maximum =
        |ack: tern_codec::ConnAck| ack.properties.receive_maximum.map(|r| r.get());

    let (old, ack) = Raw::connect(tcp, connect(ProtocolVersion::V5, "before")).await;
    assert_eq!(receive_maximum(ack), Some(10));

    std::fs::write(&path, file("20")).unwrap();
    running.reload().expect("the new file is good");
    let (_new, ack) = Raw::connect(tcp, connect(ProtocolVersion::V5, "after")).await;
    assert_eq!(
        receive_maximum(ack),
        Some(20),
        "new connections get the new limit"
    );

    // A bad file: refused, named, and the settings in force stay.
    std::fs::write(&path, file("\"lots\"")).unwrap();
    let e = running.reload().unwrap_err().to_string();
    assert!(
        e.contains("broker.toml") && e.contains("limits.max_inflight"),
        "{e}"
    );
    let (_third, ack) = Raw::connect(tcp, connect(ProtocolVersion::V5, "third")).await;
    assert_eq!(receive_maximum(ack), Some(20));

    // The connection from before is still open.
    let mut old = old;
    old.ping().await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reload_applies_new_retained_and_topic_limits_at_once() {
    let dir = std::env::temp_dir().join(format!("tern-reload-ret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    let file = |retained: usize, length: usize| {
        format!(
            "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[limits]\nsys_interval = 0\n\
             max_retained_messages = {retained}\nmax_topic_length = {length}\n"
        )
    };
    std::fs::write(&path, file(1, 8)).unwrap();
    let running = server::start(BrokerSettings::load(&path).unwrap())
        .await
        .unwrap();
    let tcp = running.tcp_addr().unwrap();
    let mut c = Raw::connected(tcp, ProtocolVersion::V5, "reload-ret").await;
    let retained = |topic: &str, id| {
        let mut p = publish(topic, b"v", tern_codec::QoS::AtLeastOnce, id);
        p.retain = true;
        p
    };
    use tern_codec::ReasonCode::{NoMatchingSubscribers, QuotaExceeded, TopicNameInvalid};
    assert_eq!(c.publish(retained("r/a", 1)).await, NoMatchingSubscribers);
    assert_eq!(c.publish(retained("r/b", 2)).await, QuotaExceeded);
    assert_eq!(c.publish(retained("r/1234567", 3)).await, TopicNameInvalid);

    // The open connection runs into the new limits at once: they are the
    // broker's, not negotiated with the client.
    std::fs::write(&path, file(2, 16)).unwrap();
    running.reload().expect("the new file is good");
    assert_eq!(c.publish(retained("r/b", 4)).await, NoMatchingSubscribers);
    assert_eq!(c.publish(retained("r/1234567", 5)).await, QuotaExceeded);
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reload_applies_a_new_memory_budget_at_once() {
    let dir = std::env::temp_dir().join(format!("tern-reload-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    let file = |max_memory: &str| {
        format!(
            "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[limits]\nsys_interval = 0\n\
             max_memory = {max_memory}\n"
        )
    };
    std::fs::write(&path, file("0")).unwrap();
    let running = server::start(BrokerSettings::load(&path).unwrap())
        .await
        .unwrap();
    let tcp = running.tcp_addr().unwrap();
    let mut c = Raw::connected(tcp, ProtocolVersion::V5, "reload-mem").await;
    use tern_codec::ReasonCode::{NoMatchingSubscribers, QuotaExceeded};
    let p = |id| publish("m", b"v", tern_codec::QoS::AtLeastOnce, id);
    assert_eq!(c.publish(p(1)).await, NoMatchingSubscribers, "0: no budget");
    // One byte: the broker already holds more, so PUBLISH gets 0x97.
    std::fs::write(&path, file("1")).unwrap();
    running.reload().expect("the new file is good");
    assert_eq!(c.publish(p(2)).await, QuotaExceeded);
    std::fs::write(&path, file("\"100%\"")).unwrap();
    running.reload().expect("the new file is good");
    assert_eq!(c.publish(p(3)).await, NoMatchingSubscribers);
    // A bad value is refused, naming the key; the budget in force stays.
    std::fs::write(&path, file("\"150%\"")).unwrap();
    let e = running.reload().expect_err("150% is refused").to_string();
    assert!(e.contains("max_memory"), "{e}");
    assert_eq!(c.publish(p(4)).await, NoMatchingSubscribers);
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
