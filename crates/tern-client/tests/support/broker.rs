//! "Which broker": the end-to-end tests run the same bodies against
//! Debian's mosquitto (a child process) and Tern's own broker (the
//! `tern_broker::server` shell, in this test's runtime), both on free ports
//! of 127.0.0.1.

#![allow(dead_code, unreachable_pub)]

use super::mosquitto::Mosquitto;
use std::net::SocketAddr;
use tern_broker::server::{self, BrokerSettings, Running};

/// The broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `/usr/sbin/mosquitto`.
    Mosquitto,
    /// `tern_broker::server`, in process.
    Tern,
}

/// A running broker of either kind; stopped when dropped (mosquitto is
/// killed by its PID, Tern's tasks end with the test's runtime).
pub enum TestBroker {
    /// A mosquitto child process.
    Mosquitto(Mosquitto),
    /// Tern's server and its bound addresses.
    Tern {
        /// `None` while stopped (between [`TestBroker::stop`] and a restart).
        running: Option<Box<Running>>,
        /// The TCP listener.
        tcp: SocketAddr,
        /// The WebSocket listener, if asked for.
        ws: Option<SocketAddr>,
    },
}

fn tern_settings(tcp: SocketAddr, websocket: bool) -> BrokerSettings {
    let mut s = BrokerSettings::default();
    s.listeners.tcp = vec![tcp];
    s.listeners.ws = if websocket {
        vec![SocketAddr::from(([127, 0, 0, 1], 0))]
    } else {
        Vec::new()
    };
    s.limits.sys_interval = std::time::Duration::ZERO;
    s
}

impl TestBroker {
    /// Anonymous access on one TCP listener.
    pub async fn start(kind: Kind) -> Self {
        Self::launch(kind, false).await
    }

    /// With a WebSocket listener (path `/mqtt`) too.
    pub async fn start_with_websocket(kind: Kind) -> Self {
        Self::launch(kind, true).await
    }

    async fn launch(kind: Kind, websocket: bool) -> Self {
        match kind {
            Kind::Mosquitto if websocket => {
                TestBroker::Mosquitto(Mosquitto::start_with_websocket())
            }
            Kind::Mosquitto => TestBroker::Mosquitto(Mosquitto::start()),
            Kind::Tern => {
                let settings = tern_settings(SocketAddr::from(([127, 0, 0, 1], 0)), websocket);
                let running = server::start(settings).await.expect("tern broker starts");
                TestBroker::Tern {
                    tcp: running.tcp_addr().expect("a TCP listener"),
                    ws: running.ws_addr(),
                    running: Some(Box::new(running)),
                }
            }
        }
    }

    /// Tern's broker with `configure` applied to its settings (for limits
    /// only Tern's tests need).
    pub async fn start_tern_with(configure: impl FnOnce(&mut BrokerSettings)) -> Self {
        let mut settings = tern_settings(SocketAddr::from(([127, 0, 0, 1], 0)), false);
        configure(&mut settings);
        let running = server::start(settings).await.expect("tern broker starts");
        TestBroker::Tern {
            tcp: running.tcp_addr().expect("a TCP listener"),
            ws: running.ws_addr(),
            running: Some(Box::new(running)),
        }
    }

    /// Which broker this is.
    pub fn kind(&self) -> Kind {
        match self {
            TestBroker::Mosquitto(_) => Kind::Mosquitto,
            TestBroker::Tern { .. } => Kind::Tern,
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        match self {
            TestBroker::Mosquitto(m) => m.port,
            TestBroker::Tern { tcp, .. } => tcp.port(),
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }

    /// `ws://127.0.0.1:WSPORT/mqtt`.
    pub fn ws_url(&self) -> String {
        match self {
            TestBroker::Mosquitto(m) => m.ws_url(),
            TestBroker::Tern { ws, .. } => format!(
                "ws://{}/mqtt",
                ws.expect("started with a WebSocket listener")
            ),
        }
    }

    /// Stops the broker; its clients lose their connections (mosquitto is
    /// killed; Tern shuts down gracefully, sending MQTT 5 clients 0x8B).
    /// Both forget every session: neither stores them durably.
    pub async fn stop(&mut self) {
        match self {
            TestBroker::Mosquitto(m) => m.kill(),
            TestBroker::Tern { running, .. } => {
                if let Some(r) = running.take() {
                    r.shutdown().await;
                }
            }
        }
    }

    /// Starts the broker again on the same TCP port (after [`stop`](Self::stop)).
    pub async fn restart(&mut self) {
        match self {
            TestBroker::Mosquitto(m) => *m = Mosquitto::start_on(m.port),
            TestBroker::Tern { running, tcp, .. } => {
                let r = server::start(tern_settings(*tcp, false))
                    .await
                    .expect("tern broker starts again on its port");
                *running = Some(Box::new(r));
            }
        }
    }

    /// The broker's log, for failure messages (mosquitto only; Tern logs
    /// through tracing, which these tests do not capture).
    pub fn log(&self) -> String {
        match self {
            TestBroker::Mosquitto(m) => m.log(),
            TestBroker::Tern { .. } => String::new(),
        }
    }
}
