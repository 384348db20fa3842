//! Test support for Tern: one launcher for the brokers that xtask, the
//! tests and the benches run as child processes.
//!
//! [`Broker::tern`], [`Broker::mosquitto`] and [`Broker::rumqttd`] give a
//! [`Launch`] to configure; [`Launch::start`] starts the process and
//! returns once it accepts connections on every listener, or fails within
//! [`Launch::ready_within`] (10 s by default) with the broker's log, never
//! hanging. A [`Broker`] is stopped when dropped: SIGTERM, then SIGKILL if
//! it has not exited after [`STOP_GRACE`], always by its PID.
//!
//! Ports: Tern binds port 0 and reports what it bound in its `--ready-file`
//! (JSON), so there is no race for a port. mosquitto and rumqttd cannot
//! report a port, so the launcher picks unused ones and, if the broker
//! cannot bind them (another process took one in between), tries again with
//! new ones, up to [`PORT_ATTEMPTS`] times. They are ready when the
//! process itself holds a listening socket on each port ([`listens_on`],
//! through /proc) and each port accepts a connection.
//!
//! ```no_run
//! let broker = tern_testkit::Broker::mosquitto().websocket(true).start()?;
//! println!("mqtt://{} ws://{}", broker.tcp(), broker.ws().unwrap());
//! # Ok::<(), String>(())
//! ```

#![forbid(unsafe_code)]

pub mod nats;

use std::{
    ffi::OsString,
    fs,
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

/// How long a broker may take to become ready, unless told otherwise.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopped broker may take to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many sets of ports a broker that cannot report its own is tried on.
pub const PORT_ATTEMPTS: usize = 5;

/// Where Debian installs mosquitto.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Which broker a [`Launch`] starts.
#[derive(Debug, Clone)]
enum Kind {
    Tern(PathBuf),
    Mosquitto(PathBuf),
    Rumqttd(PathBuf),
}

/// A broker to start: what it is, its listeners, its settings.
#[derive(Debug, Clone)]
#[must_use = "nothing starts until `start`"]
pub struct Launch {
    kind: Kind,
    websocket: bool,
    args: Vec<OsString>,
    settings: String,
    listener_settings: String,
    port: Option<u16>,
    dir: Option<PathBuf>,
    nofile: Option<u32>,
    capture_stderr: bool,
    ready_within: Duration,
    name: Option<String>,
}

/// A running broker, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    name: String,
    tcp: Vec<SocketAddr>,
    ws: Vec<SocketAddr>,
    dir: PathBuf,
    log: PathBuf,
    remove_dir: bool,
    stderr: Option<mpsc::Receiver<String>>,
}

impl Broker {
    /// `tern broker` from the binary at `tern`; with no listener flags it
    /// gets one TCP listener on 127.0.0.1 port 0 (and a WebSocket one with
    /// [`Launch::websocket`]). [`Launch::args`] adds `tern broker` flags
    /// (`--config FILE`, `--tcp`, `--log`, ...); with `--tcp`, `--ws` or
    /// `--config` among them, the listeners are theirs.
    pub fn tern(tern: impl Into<PathBuf>) -> Launch {
        Launch::new(Kind::Tern(tern.into()))
    }

    /// Debian's mosquitto (from the PATH, else [`MOSQUITTO`]): anonymous
    /// access, no persistence, one TCP listener on 127.0.0.1 (and a
    /// WebSocket one, path `/mqtt`, with [`Launch::websocket`]).
    /// [`Launch::settings`] adds global configuration lines.
    pub fn mosquitto() -> Launch {
        let program = if which("mosquitto") {
            PathBuf::from("mosquitto")
        } else {
            PathBuf::from(MOSQUITTO)
        };
        Launch::new(Kind::Mosquitto(program))
    }

    /// rumqttd (0.19) from the binary at `path`, with one MQTT 5 listener
    /// on 127.0.0.1. [`Launch::settings`] replaces the `[router]` table.
    pub fn rumqttd(path: impl Into<PathBuf>) -> Launch {
        Launch::new(Kind::Rumqttd(path.into()))
    }

    /// The broker's name: `tern`, `mosquitto`, `rumqttd`, or as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first TCP listener.
    pub fn tcp(&self) -> SocketAddr {
        *self.tcp.first().expect("a broker has a TCP listener")
    }

    /// Every TCP listener.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// The first WebSocket listener, if any (path `/mqtt`).
    pub fn ws(&self) -> Option<SocketAddr> {
        self.ws.first().copied()
    }

    /// Every WebSocket listener.
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws
    }

    /// `mqtt://ADDR` of the first TCP listener.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.tcp())
    }

    /// `ws://ADDR/mqtt` of the first WebSocket listener.
    pub fn ws_url(&self) -> Option<String> {
        self.ws().map(|a| format!("ws://{a}/mqtt"))
    }

    /// The file the broker's output goes to (unless standard error is
    /// captured with [`Launch::capture_stderr`]).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Standard error, line by line, when captured with
    /// [`Launch::capture_stderr`].
    pub fn stderr(&self) -> &mpsc::Receiver<String> {
        self.stderr
            .as_ref()
            .expect("started with Launch::capture_stderr")
    }

    /// Takes the captured standard error ([`Launch::capture_stderr`]).
    pub fn take_stderr(&mut self) -> Option<mpsc::Receiver<String>> {
        self.stderr.take()
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, ...) to the broker, by PID.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        send_signal(self.child.id(), signal)
    }

    /// Waits up to `within` for the broker to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    return Err(format!(
                        "{} (pid {}) did not exit within {within:?}",
                        self.name,
                        self.child.id()
                    ));
                }
                Err(e) => return Err(format!("waiting for {}: {e}", self.name)),
            }
        }
    }

    /// Stops the broker: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    /// Returns how it exited. Dropping does the same.
    pub fn stop(mut self) -> Result<ExitStatus, String> {
        self.stop_now()
    }

    /// Kills the broker with SIGKILL at once (a crash, for tests), and
    /// waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop_now(&mut self) -> Result<ExitStatus, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let _ = self.signal("TERM");
        match self.wait_exit(STOP_GRACE) {
            Ok(status) => Ok(status),
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(format!("{e} after SIGTERM; killed"))
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.stop_now();
        if self.remove_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Launch {
    fn new(kind: Kind) -> Launch {
        Launch {
            kind,
            websocket: false,
            args: Vec::new(),
            settings: String::new(),
            listener_settings: String::new(),
            port: None,
            dir: None,
            nofile: None,
            capture_stderr: false,
            ready_within: READY_TIMEOUT,
            name: None,
        }
    }

    /// A WebSocket listener too (path `/mqtt`).
    pub fn websocket(mut self, on: bool) -> Launch {
        self.websocket = on;
        self
    }

    /// Extra command-line arguments (Tern: `tern broker` flags).
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Configuration text: for mosquitto, global lines before the
    /// listeners (`allow_anonymous false`, `max_qos 1`, ...); for Tern, a
    /// settings file (TOML) passed with `--config`; for rumqttd, the
    /// `[router]` table.
    pub fn settings(mut self, text: &str) -> Launch {
        self.settings.push_str(text);
        if !self.settings.ends_with('\n') {
            self.settings.push('\n');
        }
        self
    }

    /// mosquitto only: lines for each listener (`max_qos 1`, `certfile`,
    /// ...), written under every `listener` line (TCP and WebSocket).
    pub fn listener_settings(mut self, text: &str) -> Launch {
        self.listener_settings.push_str(text);
        if !self.listener_settings.ends_with('\n') {
            self.listener_settings.push('\n');
        }
        self
    }

    /// Listen on this TCP port instead of a chosen one (to restart a broker
    /// where its clients look for it). Not tried again elsewhere.
    pub fn port(mut self, port: u16) -> Launch {
        self.port = Some(port);
        self
    }

    /// Keep the configuration and log in `dir` (created; kept after the
    /// broker stops) instead of a temporary directory removed on drop.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Launch {
        self.dir = Some(dir.into());
        self
    }

    /// The name used for files in [`Launch::dir`] and in messages.
    pub fn name(mut self, name: &str) -> Launch {
        self.name = Some(name.to_string());
        self
    }

    /// Raise the open-file limit to `n` (or the hard limit, if lower)
    /// before starting the broker.
    pub fn nofile(mut self, n: u32) -> Launch {
        self.nofile = Some(n);
        self
    }

    /// Capture standard error line by line ([`Broker::stderr`]) instead of
    /// writing it to the log file.
    pub fn capture_stderr(mut self) -> Launch {
        self.capture_stderr = true;
        self
    }

    /// How long the broker may take to become ready.
    pub fn ready_within(mut self, timeout: Duration) -> Launch {
        self.ready_within = timeout;
        self
    }

    fn default_name(&self) -> &'static str {
        match self.kind {
            Kind::Tern(_) => "tern",
            Kind::Mosquitto(_) => "mosquitto",
            Kind::Rumqttd(_) => "rumqttd",
        }
    }

    /// Starts the broker and waits until it is ready (see the crate docs).
    pub fn start(self) -> Result<Broker, String> {
        let attempts = match self.kind {
            Kind::Tern(_) => 1,
            _ if self.port.is_some() => 1,
            _ => PORT_ATTEMPTS,
        };
        let mut last = String::new();
        for _ in 0..attempts {
            match self.try_start() {
                Ok(broker) => return Ok(broker),
                Err(Failure::PortTaken(e)) => last = e,
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        Err(format!(
            "{} could not bind its ports in {attempts} attempts: {last}",
            self.default_name()
        ))
    }

    fn try_start(&self) -> Result<Broker, Failure> {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| self.default_name().to_string());
        let (dir, remove_dir) = match &self.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "tern-testkit-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )),
                true,
            ),
        };
        fs::create_dir_all(&dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
        let file = |suffix: &str| dir.join(format!("{name}{suffix}"));
        let log = file(".log");
        let ready = file(".ready.json");
        let _ = fs::remove_file(&ready);

        // Ports for brokers that cannot report their own.
        let port = |fixed: Option<u16>| match fixed {
            Some(p) => Ok(p),
            None => unused_port().map_err(other),
        };
        let (program, mut args, tcp_port, ws_port) = match &self.kind {
            Kind::Tern(tern) => {
                let mut args: Vec<OsString> = vec!["broker".into()];
                let listeners = self
                    .args
                    .iter()
                    .any(|a| a == "--tcp" || a == "--ws" || a == "--config");
                if !self.settings.is_empty() {
                    let conf = file(".toml");
                    write(&conf, &self.settings)?;
                    args.extend(["--config".into(), conf.into_os_string()]);
                } else if !listeners {
                    let at = format!("127.0.0.1:{}", self.port.unwrap_or(0));
                    args.extend(["--tcp".into(), at.into()]);
                    if self.websocket {
                        args.extend(["--ws".into(), "127.0.0.1:0".into()]);
                    }
                }
                args.extend(["--ready-file".into(), ready.clone().into_os_string()]);
                (tern.clone(), args, None, None)
            }
            Kind::Mosquitto(program) => {
                let tcp = port(self.port)?;
                let ws = if self.websocket {
                    Some(port(None)?)
                } else {
                    None
                };
                // Anonymous access unless the settings decide.
                let anonymous = if self.settings.contains("allow_anonymous") {
                    ""
                } else {
                    "allow_anonymous true\n"
                };
                let mut conf = format!(
                    "# Written by tern-testkit.\n\
                     {anonymous}\
                     persistence false\n\
                     log_dest stderr\n\
                     log_type error\n\
                     log_type warning\n\
                     log_type information\n\
                     {}\
                     listener {tcp} 127.0.0.1\n\
                     {}",
                    self.settings, self.listener_settings
                );
                if let Some(ws) = ws {
                    conf.push_str(&format!(
                        "listener {ws} 127.0.0.1\nprotocol websockets\n{}",
                        self.listener_settings
                    ));
                }
                let path = file(".conf");
                write(&path, &conf)?;
                let args = vec!["-c".into(), path.into_os_string()];
                (program.clone(), args, Some(tcp), ws)
            }
            Kind::Rumqttd(program) => {
                let tcp = port(self.port)?;
                let router = if self.settings.is_empty() {
                    "[router]\nid = 0\nmax_connections = 20010\nmax_outgoing_packet_count = 200\n\
                     max_segment_size = 104857600\nmax_segment_count = 10\n"
                        .to_string()
                } else {
                    self.settings.clone()
                };
                let conf = format!(
                    "id = 0\n\n{router}\n\
                     [v5.1]\nname = \"v5-1\"\nlisten = \"127.0.0.1:{tcp}\"\nnext_connection_delay_ms = 0\n\
                     [v5.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 1048576\n\
                     max_inflight_count = 1024\ndynamic_filters = true\n"
                );
                let path = file(".toml");
                write(&path, &conf)?;
                let args = vec!["--config".into(), path.into_os_string()];
                (program.clone(), args, Some(tcp), None)
            }
        };
        args.extend(self.args.iter().cloned());

        let mut command = match self.nofile {
            // `exec` keeps the PID: the broker is the child we stop.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -n {n} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" \"$@\""
                    ))
                    .arg(&program)
                    .args(&args);
                c
            }
            None => {
                let mut c = Command::new(&program);
                c.args(&args);
                c
            }
        };
        let out = fs::File::create(&log).map_err(|e| other(format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| other(format!("{}: {e}", log.display())))?;
        command.stdin(Stdio::null()).stdout(out);
        if self.capture_stderr {
            command.stderr(Stdio::piped());
        } else {
            command.stderr(err);
        }
        let mut child = command
            .spawn()
            .map_err(|e| other(format!("cannot start {}: {e}", program.display())))?;
        let stderr = child.stderr.take().map(lines);
        let mut broker = Broker {
            child,
            name,
            tcp: Vec::new(),
            ws: Vec::new(),
            dir,
            log,
            remove_dir,
            stderr,
        };
        let deadline = Instant::now() + self.ready_within;
        let result = match &self.kind {
            Kind::Tern(_) => broker.await_ready_file(&ready, deadline),
            Kind::Mosquitto(_) | Kind::Rumqttd(_) => {
                let ports: Vec<u16> = tcp_port.into_iter().chain(ws_port).collect();
                let loopback = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
                broker.tcp = tcp_port.into_iter().map(loopback).collect();
                broker.ws = ws_port.into_iter().map(loopback).collect();
                broker.await_ports(&ports, deadline)
            }
        };
        match result {
            Ok(()) => Ok(broker),
            Err(e) => {
                broker.kill();
                Err(e)
            }
        }
    }
}

/// Why a start failed: a port was taken (try other ports), or anything else.
enum Failure {
    PortTaken(String),
    Other(String),
}

fn other(message: String) -> Failure {
    Failure::Other(message)
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    fs::write(path, text).map_err(|e| other(format!("{}: {e}", path.display())))
}

impl Broker {
    /// The broker exited: why, with its log.
    fn exited(&mut self) -> Option<Failure> {
        let status = self.child.try_wait().ok().flatten()?;
        let log = self.log();
        let message = format!(
            "{} exited with {status} before it was ready; its log ({}):\n{log}",
            self.name,
            self.log.display()
        );
        Some(if log.contains("in use") {
            Failure::PortTaken(message)
        } else {
            Failure::Other(message)
        })
    }

    fn too_late(&self, what: &str) -> Failure {
        other(format!(
            "{} was not ready ({what}) in time; its log ({}):\n{}",
            self.name,
            self.log.display(),
            self.log()
        ))
    }

    /// Tern: waits for `--ready-file` and reads the bound addresses from it.
    fn await_ready_file(&mut self, ready: &Path, deadline: Instant) -> Result<(), Failure> {
        loop {
            if let Ok(text) = fs::read_to_string(ready) {
                let (tcp, ws) = parse_ready_file(&text).map_err(other)?;
                self.tcp = tcp;
                self.ws = ws;
                if self.tcp.is_empty() && self.ws.is_empty() {
                    return Err(other(format!("{}: no listeners in {text}", self.name)));
                }
                return Ok(());
            }
            if let Some(failure) = self.exited() {
                return Err(failure);
            }
            if Instant::now() > deadline {
                return Err(self.too_late("no ready file"));
            }
            // Nothing to block on but the file's appearance.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// mosquitto and rumqttd: every port is listened on by this very
    /// process (its own socket, found through /proc, so a port another
    /// process holds is never mistaken for the broker's) and accepts a
    /// connection.
    fn await_ports(&mut self, ports: &[u16], deadline: Instant) -> Result<(), Failure> {
        let mut waiting: Vec<u16> = ports.to_vec();
        while !waiting.is_empty() {
            let pid = self.child.id();
            waiting
                .retain(|&p| !(listens_on(pid, p) && TcpStream::connect(("127.0.0.1", p)).is_ok()));
            if let Some(failure) = self.exited() {
                return Err(failure);
            }
            if waiting.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.too_late(&format!("ports {waiting:?} not listened on")));
            }
            // Nothing announces a listener; poll.
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// Whether process `pid` holds a socket listening on TCP port `port`
/// (Linux: the socket's inode in /proc/net/tcp{,6} among /proc/PID/fd).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

/// Reads `tern broker --ready-file`'s JSON: `{"pid", "tcp": [..], "ws": [..]}`.
pub fn parse_ready_file(text: &str) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("ready file {text:?}: {e}"))?;
    let addrs = |key: &str| -> Result<Vec<SocketAddr>, String> {
        value[key]
            .as_array()
            .ok_or_else(|| format!("ready file without `{key}`: {text}"))?
            .iter()
            .map(|a| {
                a.as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("ready file: bad address {a} in `{key}`"))
            })
            .collect()
    };
    Ok((addrs("tcp")?, addrs("ws")?))
}

/// A loopback port nobody listens on right now (bound, read and released).
/// Another process may take it before it is used: for brokers that cannot
/// bind port 0 and report it, [`Launch::start`] tries again on failure.
pub fn unused_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no unused port on 127.0.0.1: {e}"))
}

/// Sends `signal` (`TERM`, `INT`, `KILL`, ...) to the process `pid`.
pub fn send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid}: {status}"))
    }
}

/// A stream's lines, through a channel (so reads can time out).
pub fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Whether a command is on the PATH.
pub fn which(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_file_gives_every_address() {
        let (tcp, ws) = parse_ready_file(
            r#"{"pid": 7, "tcp": ["127.0.0.1:1883", "[::1]:1884"], "ws": ["127.0.0.1:8083"]}"#,
        )
        .unwrap();
        assert_eq!(tcp.len(), 2);
        assert_eq!(ws, ["127.0.0.1:8083".parse().unwrap()]);
        assert!(parse_ready_file(r#"{"tcp": ["nonsense"], "ws": []}"#).is_err());
        assert!(parse_ready_file(r#"{"tcp": ["127.0.0.1:1"]"#).is_err());
    }

    #[test]
    fn listens_on_finds_our_own_listener_only() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        let mut other = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(!listens_on(other.id(), port), "not the sleeper's socket");
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
        send_signal(other.id(), "KILL").unwrap();
        let _ = other.wait();
    }

    /// A process that never gets ready fails within the deadline, and is
    /// stopped, instead of hanging the caller.
    #[test]
    fn a_broker_that_never_gets_ready_fails_in_time() {
        let dir = std::env::temp_dir().join(format!("tern-testkit-hang-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hangs");
        fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        let chmod = Command::new("chmod").arg("+x").arg(&script).status();
        assert!(chmod.unwrap().success());
        let started = Instant::now();
        let result = Broker::tern(&script)
            .ready_within(Duration::from_millis(300))
            .start();
        let _ = fs::remove_dir_all(&dir);
        let error = result.expect_err("sleep writes no ready file");
        assert!(error.contains("not ready"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A broker that exits at once is reported with its status and log.
    #[test]
    fn a_broker_that_exits_is_reported() {
        let error = Broker::tern("/bin/false").start().expect_err("false exits");
        assert!(error.contains("exited with"), "{error}");
    }

    /// Dropping stops by SIGTERM: a process that exits on SIGTERM is gone
    /// at once, not after the grace period.
    #[test]
    fn drop_sends_sigterm_first() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let broker = Broker {
            child,
            name: "sleep".into(),
            tcp: Vec::new(),
            ws: Vec::new(),
            dir: std::env::temp_dir(),
            log: std::env::temp_dir().join("none.log"),
            remove_dir: false,
            stderr: None,
        };
        let started = Instant::now();
        let status = broker.stop().unwrap();
        assert!(started.elapsed() < STOP_GRACE, "{pid} needed SIGKILL");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
    }
}
