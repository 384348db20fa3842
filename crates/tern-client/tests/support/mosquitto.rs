//! Debian's mosquitto broker, started for one test on free ports and killed
//! by its PID when dropped. Std only, so the CLI's tests include it too.

#![allow(dead_code, unreachable_pub)]

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running mosquitto.
pub struct Mosquitto {
    child: Child,
    dir: PathBuf,
    /// Its MQTT (TCP) port on 127.0.0.1.
    pub port: u16,
    /// Its WebSocket port on 127.0.0.1, if asked for.
    pub ws_port: Option<u16>,
}

/// A port nobody listens on right now: bind port 0, read it, let it go.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

impl Mosquitto {
    /// Anonymous access on one TCP listener.
    pub fn start() -> Self {
        Self::start_with(false, "allow_anonymous true\n")
    }

    /// With a WebSocket listener too.
    pub fn start_with_websocket() -> Self {
        Self::start_with(true, "allow_anonymous true\n")
    }

    /// Starts mosquitto with `settings` (global options such as
    /// `allow_anonymous`) and the listeners; waits until they accept.
    pub fn start_with(websocket: bool, settings: &str) -> Self {
        Self::launch(free_port(), websocket.then(free_port), settings, "")
    }

    /// Both listeners (TCP and WebSocket) with `listener_settings` under
    /// each: `cafile`, `certfile`, `keyfile`, `require_certificate` for TLS.
    pub fn start_with_listener_settings(listener_settings: &str) -> Self {
        Self::launch(
            free_port(),
            Some(free_port()),
            "allow_anonymous true\n",
            listener_settings,
        )
    }

    /// Anonymous access on one TCP listener on `port` (to restart a broker
    /// where its clients will look for it).
    pub fn start_on(port: u16) -> Self {
        Self::launch(port, None, "allow_anonymous true\n", "")
    }

    fn launch(port: u16, ws_port: Option<u16>, settings: &str, listener_settings: &str) -> Self {
        assert!(
            Path::new(MOSQUITTO).is_file(),
            "{MOSQUITTO} is missing: these tests run against Debian's mosquitto broker. \
             Install it with `apt-get install -y mosquitto` (`cargo xtask ci` does this)."
        );
        let dir = std::env::temp_dir().join(format!(
            "tern-mosquitto-{}-{port}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("temp dir");
        let mut conf = format!("{settings}listener {port} 127.0.0.1\n{listener_settings}");
        if let Some(ws) = ws_port {
            conf.push_str(&format!(
                "listener {ws} 127.0.0.1\nprotocol websockets\n{listener_settings}"
            ));
        }
        let conf_path = dir.join("mosquitto.conf");
        fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let log = fs::File::create(dir.join("mosquitto.log")).expect("log file");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf_path)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {MOSQUITTO}: {e}"));
        let mut broker = Self {
            child,
            dir,
            port,
            ws_port,
        };
        for p in std::iter::once(port).chain(ws_port) {
            broker.wait_until_accepting(p);
        }
        broker
    }

    fn wait_until_accepting(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mosquitto exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not open port {port} within 10 s:\n{}",
                self.log()
            );
            // Nothing announces the listener is up; poll the port.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (by its PID) and waits for it; dropping does the same.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The broker's log so far (it runs with `-v`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
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

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID, nothing else.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
