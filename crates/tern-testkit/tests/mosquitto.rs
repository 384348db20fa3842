//! The launcher against Debian's mosquitto (installed by `cargo xtask ci`).

use std::{net::TcpStream, time::Duration};
use tern_testkit::Broker;

#[test]
fn mosquitto_is_ready_on_every_listener_and_stops_on_drop() {
    let broker = Broker::mosquitto()
        .websocket(true)
        .start()
        .expect("mosquitto starts");
    let (tcp, ws) = (broker.tcp(), broker.ws().expect("a WebSocket listener"));
    TcpStream::connect(tcp).expect("the TCP listener accepts");
    TcpStream::connect(ws).expect("the WebSocket listener accepts");
    assert!(broker.log().contains(&format!("port {}", tcp.port())));
    drop(broker);
    assert!(TcpStream::connect(tcp).is_err(), "stopped on drop");
}

#[test]
fn a_port_that_is_taken_fails_with_the_log() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let error = Broker::mosquitto()
        .port(port)
        .ready_within(Duration::from_secs(5))
        .start()
        .expect_err("the port is taken");
    assert!(error.contains("in use"), "{error}");
}
