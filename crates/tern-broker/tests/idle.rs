//! An idle connection costs no task: its writer task runs only while the
//! core has output for it, and ends (parking the socket's write half) once
//! everything is written.

mod common;

use common::*;
use std::time::Duration;
use tern_codec::{ProtocolVersion, QoS};

/// Tasks alive in this runtime, once the count stops changing (writer tasks
/// end right after their last write, not at once).
async fn settled_task_count() -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = metrics.num_alive_tasks();
    loop {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = metrics.num_alive_tasks();
        if now == last || tokio::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_hold_no_writer_task() {
    let broker = start().await;
    let before = settled_task_count().await;
    let mut clients = Vec::new();
    for i in 0..50 {
        // CONNACK written: each connection had output once.
        clients.push(Raw::connected(broker.tcp, ProtocolVersion::V5, &format!("idle-{i}")).await);
    }
    let idle = settled_task_count().await;
    assert!(
        idle < before + 5,
        "{before} tasks before, {idle} with 50 idle connections: a task per connection"
    );
    // Output wakes a writer again: a message still reaches an idle client.
    clients[0].subscribe("idle/t", QoS::AtMostOnce).await;
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "idle-pub").await;
    publisher
        .send(publish("idle/t", b"wake", QoS::AtMostOnce, 0))
        .await;
    let received = clients[0].recv_publish().await;
    assert_eq!(&received.payload[..], b"wake");
    broker.shutdown().await;
}
