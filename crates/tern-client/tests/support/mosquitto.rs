//! Debian's mosquitto broker, started for one test through tern-testkit's
//! launcher (ready once its listeners are open, SIGTERM then SIGKILL when
//! dropped). Std only, so the CLI's tests include it too.

#![allow(dead_code, unreachable_pub)]

/// A running mosquitto.
pub struct Mosquitto {
    broker: Option<tern_testkit::Broker>,
    /// Its MQTT (TCP) port on 127.0.0.1.
    pub port: u16,
    /// Its WebSocket port on 127.0.0.1, if asked for.
    pub ws_port: Option<u16>,
}

/// A port nobody listens on right now (for a client that must find no
/// broker there).
pub fn free_port() -> u16 {
    tern_testkit::unused_port().expect("an unused port")
}

impl Mosquitto {
    /// Anonymous access on one TCP listener.
    pub fn start() -> Self {
        Self::launch(tern_testkit::Broker::mosquitto())
    }

    /// With a WebSocket listener too.
    pub fn start_with_websocket() -> Self {
        Self::launch(tern_testkit::Broker::mosquitto().websocket(true))
    }

    /// Starts mosquitto with `settings` (global options such as
    /// `allow_anonymous`) and the listeners.
    pub fn start_with(websocket: bool, settings: &str) -> Self {
        Self::launch(
            tern_testkit::Broker::mosquitto()
                .websocket(websocket)
                .settings(settings),
        )
    }

    /// Both listeners (TCP and WebSocket) with `listener_settings` under
    /// each: `cafile`, `certfile`, `keyfile`, `require_certificate` for TLS.
    pub fn start_with_listener_settings(listener_settings: &str) -> Self {
        Self::launch(
            tern_testkit::Broker::mosquitto()
                .websocket(true)
                .listener_settings(listener_settings),
        )
    }

    /// Anonymous access on one TCP listener on `port` (to restart a broker
    /// where its clients will look for it).
    pub fn start_on(port: u16) -> Self {
        Self::launch(tern_testkit::Broker::mosquitto().port(port))
    }

    /// As [`start_on`](Self::start_on), with `listener_settings` (TLS).
    pub fn start_on_with_listener_settings(port: u16, listener_settings: &str) -> Self {
        Self::launch(
            tern_testkit::Broker::mosquitto()
                .port(port)
                .listener_settings(listener_settings),
        )
    }

    fn launch(launch: tern_testkit::Launch) -> Self {
        let broker = launch.args(["-v"]).start().unwrap_or_else(|e| {
            panic!(
                "{e}\nThese tests run against Debian's mosquitto broker: install it with \
                 `apt-get install -y mosquitto` (`cargo xtask ci` does this)."
            )
        });
        Self {
            port: broker.tcp().port(),
            ws_port: broker.ws().map(|a| a.port()),
            broker: Some(broker),
        }
    }

    /// Kills the process (SIGKILL, by its PID: a crash, so nothing is
    /// saved) and waits for it.
    pub fn kill(&mut self) {
        if let Some(broker) = &mut self.broker {
            broker.kill();
        }
    }

    /// The broker's log so far (it runs with `-v`).
    pub fn log(&self) -> String {
        self.broker
            .as_ref()
            .map(tern_testkit::Broker::log)
            .unwrap_or_default()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:WSPORT/mqtt`.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/mqtt",
            self.ws_port.expect("started with a WebSocket listener")
        )
    }
}
