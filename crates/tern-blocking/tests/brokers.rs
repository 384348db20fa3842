//! The blocking client against real brokers: Debian's mosquitto (a child
//! process) and Tern's own (`tern_broker::server`, in process), on free
//! ports of 127.0.0.1, in MQTT 3.1.1 and 5.0. The same scenario as
//! tern-client's tests: publish and subscribe at every QoS, publishing from
//! another thread, keep alive across idle time, and a stream that fills the
//! socket in both directions at once.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};
use tern_blocking::{
    Client, ClientEvent, ConnectOptions, MqttString, ProtocolVersion, PublishError, QoS, ReasonCode,
};
use tern_testkit::Broker;

/// A broker for one test, stopped when dropped.
enum TestBroker {
    Mosquitto(Broker),
    Tern {
        addr: SocketAddr,
        _running: Box<tern_broker::server::Running>,
        _runtime: tokio::runtime::Runtime,
    },
}

impl TestBroker {
    fn mosquitto() -> Self {
        TestBroker::Mosquitto(
            Broker::mosquitto()
                .start()
                .expect("mosquitto starts (apt-get install mosquitto)"),
        )
    }

    fn tern() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let mut settings = tern_broker::server::BrokerSettings::default();
        settings.listeners.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        settings.listeners.ws = Vec::new();
        let running = runtime
            .block_on(tern_broker::server::start(settings))
            .expect("tern broker starts");
        TestBroker::Tern {
            addr: running.tcp_addr().expect("a TCP listener"),
            _running: Box::new(running),
            _runtime: runtime,
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            TestBroker::Mosquitto(broker) => broker.tcp(),
            TestBroker::Tern { addr, .. } => *addr,
        }
    }

    fn connect(
        &self,
        id: &'static str,
        version: ProtocolVersion,
        keep_alive: u16,
    ) -> Client<TcpStream> {
        let stream = TcpStream::connect(self.addr()).expect("the broker accepts");
        let options = ConnectOptions {
            version,
            keep_alive,
            ..ConnectOptions::new(MqttString::from_static(id))
        };
        let (client, session_present) = Client::connect(stream, options).expect("connected");
        assert!(!session_present, "a clean start has no session");
        client
    }
}

/// The next event that `pick` accepts, skipping others; fails if the
/// connection closes first.
fn next<R>(client: &mut Client<TcpStream>, mut pick: impl FnMut(ClientEvent) -> Option<R>) -> R {
    loop {
        let event = client.next_event().expect("the connection stays open");
        if let ClientEvent::Closed(reason) = &event {
            panic!("closed: {reason}");
        }
        if let Some(r) = pick(event) {
            return r;
        }
    }
}

fn subscribe(client: &mut Client<TcpStream>, filter: &str, qos: QoS) {
    client.subscribe(filter, qos).expect("subscribe is sent");
    next(client, |e| {
        matches!(e, ClientEvent::Subscribed { .. }).then_some(())
    });
}

/// Every QoS, published from another thread, arrives once, in order per
/// topic and QoS [MQTT-4.6.0-6], and the QoS 1 and 2 publishes are
/// acknowledged [MQTT-4.3.2-1] [MQTT-4.3.3-1].
fn every_qos_from_another_thread(broker: &TestBroker) {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut client = broker.connect("blocking-every-qos", version, 30);
        subscribe(&mut client, "blocking/q/#", QoS::ExactlyOnce);
        let publisher = client.publisher();
        let sender = std::thread::spawn(move || {
            for i in 0..30u8 {
                let qos = QoS::from_u8(i % 3).expect("a QoS");
                publisher
                    .publish(&format!("blocking/q/{}", qos.as_u8()), vec![i], qos)
                    .expect("publish is queued");
            }
        });
        let mut payloads = Vec::new();
        let mut acknowledged = 0;
        while payloads.len() < 30 || acknowledged < 20 {
            next(&mut client, |e| {
                match e {
                    ClientEvent::Message { publish, .. } => {
                        assert_eq!(publish.qos.as_u8(), publish.payload[0] % 3);
                        payloads.push(publish.payload[0]);
                    }
                    ClientEvent::Published { reason_code, .. } => {
                        assert!(reason_code.is_success(), "{reason_code:?}");
                        acknowledged += 1;
                    }
                    _ => {}
                }
                Some(())
            });
        }
        sender.join().expect("the sender");
        // In order per QoS (a broker may deliver QoS 2 on PUBREL, after
        // QoS 0 and 1 messages sent later), and each exactly once.
        for qos in 0..3 {
            let of_qos: Vec<u8> = payloads.iter().copied().filter(|p| p % 3 == qos).collect();
            let sent: Vec<u8> = (0..30).filter(|p| p % 3 == qos).collect();
            assert_eq!(of_qos, sent, "QoS {qos}, {version:?}");
        }
        assert_eq!(payloads.len(), 30);
        client.disconnect().expect("a clean disconnect");
    }
}

/// Idle for more than twice the keep-alive interval: without the client's
/// PINGREQs the broker would close the connection after 1.5 times the
/// interval (3.1.1: MQTT-3.1.2-24); with them, a message still gets through.
fn keep_alive_across_idle_time(broker: &TestBroker) {
    let mut client = broker.connect("blocking-keep-alive", ProtocolVersion::V5, 1);
    subscribe(&mut client, "blocking/idle", QoS::AtLeastOnce);
    let publisher = client.publisher();
    let sender = std::thread::spawn(move || {
        // Not synchronisation: the idle time is the scenario.
        std::thread::sleep(Duration::from_millis(2600));
        publisher.publish("blocking/idle", "still here", QoS::AtLeastOnce)
    });
    let payload = next(&mut client, |e| match e {
        ClientEvent::Message { publish, .. } => Some(publish.payload),
        _ => None,
    });
    assert_eq!(&payload[..], b"still here");
    sender.join().expect("the sender").expect("published");
    client.disconnect().expect("a clean disconnect");
}

/// A subscriber to its own stream of large messages: the socket fills in
/// both directions at once. The reader must never wait on a write, or
/// client and broker would each wait for the other to read. Every publish
/// ends: delivered back, or refused visibly (0x97 Quota exceeded, when the
/// broker's queue for this subscriber is full), never lost.
fn full_sockets_both_ways(broker: &TestBroker) {
    let mut client = broker.connect("blocking-full", ProtocolVersion::V5, 30);
    subscribe(&mut client, "blocking/full", QoS::AtLeastOnce);
    let publisher = client.publisher();
    const COUNT: usize = 2000;
    let sender = std::thread::spawn(move || {
        for _ in 0..COUNT {
            // The session's queue is bounded: wait for room when it is full.
            loop {
                match publisher.publish("blocking/full", vec![7u8; 16 * 1024], QoS::AtLeastOnce) {
                    Ok(_) => break,
                    Err(tern_blocking::Error::Publish(PublishError::QueueFull)) => {
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    let (mut received, mut outcomes, mut accepted) = (0, 0, 0);
    while outcomes < COUNT || received < accepted {
        next(&mut client, |e| {
            match e {
                ClientEvent::Message { publish, .. } => {
                    assert_eq!(publish.payload.len(), 16 * 1024);
                    received += 1;
                }
                ClientEvent::Published { reason_code, .. } => {
                    outcomes += 1;
                    if reason_code.is_success() {
                        accepted += 1;
                    } else {
                        assert_eq!(reason_code, ReasonCode::QuotaExceeded);
                    }
                }
                _ => {}
            }
            Some(())
        });
    }
    sender.join().expect("the sender");
    assert_eq!(received, accepted, "every accepted message came back once");
    assert!(accepted > 0, "nothing was accepted");
    client.disconnect().expect("a clean disconnect");
}

/// Runs a scenario on a thread of its own and fails the test if it has not
/// finished in two minutes (a blocking client that deadlocks would
/// otherwise hang the test run).
fn within_deadline(scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => worker.join().expect("the scenario"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario did not finish in 120 s")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the scenario ended without saying so"),
        },
    }
}

macro_rules! both_brokers {
    ($($name:ident),* $(,)?) => {
        mod mosquitto {
            $(#[test] fn $name() {
                super::within_deadline(|| super::$name(&super::TestBroker::mosquitto()));
            })*
        }
        mod tern {
            $(#[test] fn $name() {
                super::within_deadline(|| super::$name(&super::TestBroker::tern()));
            })*
        }
    };
}

both_brokers!(
    every_qos_from_another_thread,
    keep_alive_across_idle_time,
    full_sockets_both_ways,
);
