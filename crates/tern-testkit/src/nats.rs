//! `nats-server` processes for the cluster's tests and `cargo xtask
//! cluster` (issue 18): one server, or several clustered with JetStream.
//!
//! Client and monitoring ports are the server's own choice (`-p -1`, `-m
//! -1`), read back from its ports file, so they never race. Route ports
//! cannot be chosen that way: a JetStream cluster needs every server's
//! routes configured up front, itself included. So the launcher picks
//! unused ports, and if a server cannot bind its own (another process took
//! it in between), stops them all and tries again with new ones, up to
//! [`PORT_ATTEMPTS`](crate::PORT_ATTEMPTS) times.
//!
//! A missing `nats-server` is an error naming it, never a skip.

use crate::{send_signal, unused_port, which};
use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The NATS server tests expect: Debian's package.
pub const NATS_SERVER: &str = "nats-server";

/// A running `nats-server`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    name: String,
    client: SocketAddr,
    monitoring: SocketAddr,
    dir: PathBuf,
}

impl NatsServer {
    /// One server with JetStream on, on 127.0.0.1, its files under `dir`.
    pub fn start(dir: &Path, name: &str) -> Result<NatsServer, String> {
        spawn(dir, name, None, None)
    }

    /// Starts a server started by [`start`](Self::start) again, on the same
    /// client port and with the same JetStream directory, after it was
    /// killed (see [`kill9`](Self::kill9)).
    pub fn restart(&mut self) -> Result<(), String> {
        let again = spawn(&self.dir, &self.name, None, Some(self.client.port()))?;
        let old = std::mem::replace(self, again);
        // Already dead: dropping it sends nothing to the new process.
        drop(old);
        Ok(())
    }

    /// `n` servers clustered (routes between all, JetStream on), on
    /// 127.0.0.1, their files under `dir`.
    pub fn cluster(dir: &Path, n: usize) -> Result<Vec<NatsServer>, String> {
        let mut last = String::new();
        for _ in 0..crate::PORT_ATTEMPTS {
            let ports = (0..n)
                .map(|_| unused_port())
                .collect::<Result<Vec<_>, _>>()?;
            let mut servers = Vec::new();
            for (i, &port) in ports.iter().enumerate() {
                let routes = Routes {
                    own: port,
                    all: &ports,
                };
                match spawn(dir, &format!("nats{}", i + 1), Some(routes), None) {
                    Ok(s) => servers.push(s),
                    Err(e) => {
                        last = e;
                        break;
                    }
                }
            }
            if servers.len() == n {
                // JetStream serves once the servers have elected a meta
                // leader: `/healthz` says so.
                let deadline = Instant::now() + Duration::from_secs(30);
                while !servers.iter().all(NatsServer::healthy) {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "JetStream not healthy within 30 s: {}",
                            servers[0].log()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                return Ok(servers);
            }
        }
        Err(last)
    }

    /// Its name (`--server_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where clients connect.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    /// Its monitoring port (`/varz`, `/routez`, `/jsz`).
    pub fn monitoring(&self) -> SocketAddr {
        self.monitoring
    }

    /// Its log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Whether its `/healthz` answers `ok` (with JetStream clustered: a
    /// meta leader is known).
    pub fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.monitoring) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200")
    }

    /// Kills it with SIGKILL, now.
    pub fn kill9(&mut self) {
        let _ = send_signal(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = send_signal(self.child.id(), "TERM");
            let deadline = Instant::now() + crate::STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = send_signal(self.child.id(), "KILL");
            let _ = self.child.wait();
        }
    }
}

struct Routes<'a> {
    own: u16,
    all: &'a [u16],
}

fn spawn(
    dir: &Path,
    name: &str,
    routes: Option<Routes<'_>>,
    port: Option<u16>,
) -> Result<NatsServer, String> {
    if !which(NATS_SERVER) {
        return Err(format!(
            "{NATS_SERVER} is not installed (Debian: apt-get install nats-server; `cargo xtask cluster` installs it)"
        ));
    }
    let ports_dir = dir.join(format!("{name}.ports.d"));
    let _ = fs::remove_dir_all(&ports_dir);
    fs::create_dir_all(&ports_dir).map_err(|e| format!("{}: {e}", ports_dir.display()))?;
    let log = dir.join(format!("{name}.log"));
    let _ = fs::remove_file(&log);
    let port = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
    let mut cmd = Command::new(NATS_SERVER);
    cmd.args([
        "-a",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        "-1",
        "-js",
        "--server_name",
        name,
    ])
    .arg("-sd")
    .arg(dir.join(format!("{name}.js")))
    .arg("--ports_file_dir")
    .arg(&ports_dir)
    .arg("-l")
    .arg(&log)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(r) = &routes {
        let all: Vec<String> = r
            .all
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        cmd.arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", r.own))
            .args(["--cluster_name", "tern"])
            .arg("--routes")
            .arg(all.join(","));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {NATS_SERVER}: {e}"))?;
    let deadline = Instant::now() + crate::READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{NATS_SERVER} {name} exited ({status}): {}",
                fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if let Some((client, monitoring)) = read_ports(&ports_dir) {
            let server = NatsServer {
                child,
                name: name.to_string(),
                client,
                monitoring,
                dir: dir.to_path_buf(),
            };
            // With routes: ready once it listens on its route port too.
            let ready = routes
                .as_ref()
                .is_none_or(|r| crate::listens_on(server.pid(), r.own));
            if ready {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{NATS_SERVER} {name}: no route listener: {}",
                    server.log()
                ));
            }
            drop(server);
            return Err(format!("{NATS_SERVER} {name}: route port taken"));
        }
        if Instant::now() > deadline {
            let _ = send_signal(child.id(), "KILL");
            let _ = child.wait();
            return Err(format!(
                "{NATS_SERVER} {name} not ready within {:?}: {}",
                crate::READY_TIMEOUT,
                fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client and monitoring addresses from a ports file
/// (`{"nats":["nats://127.0.0.1:P"],"monitoring":["http://127.0.0.1:M"]}`).
fn read_ports(dir: &Path) -> Option<(SocketAddr, SocketAddr)> {
    let entry = fs::read_dir(dir).ok()?.flatten().next()?;
    let text = fs::read_to_string(entry.path()).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let addr = |key: &str, scheme: &str| -> Option<SocketAddr> {
        json.get(key)?
            .get(0)?
            .as_str()?
            .strip_prefix(scheme)?
            .parse()
            .ok()
    };
    Some((addr("nats", "nats://")?, addr("monitoring", "http://")?))
}
