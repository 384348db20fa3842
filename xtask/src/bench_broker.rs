//! `cargo xtask bench-broker`: Tern's broker against Debian's mosquitto
//! (and rumqttd, when given a binary), side by side in one run, with
//! `tern bench` as the load.
//!
//! Each scenario runs against a freshly started broker of each kind in
//! turn, so the brokers share the machine's noise and every RSS figure
//! starts from an empty broker. The brokers are child processes on
//! loopback, started and stopped (by PID) with tern-testkit's launcher. The table goes to standard output and
//! into BENCHMARKS.md between the `bench-broker` markers.

use crate::tools::{cargo, ensure_apt, root, run, target_dir};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tern_testkit::Broker;

const USAGE: &str = "cargo xtask bench-broker [--seconds N] [--runs R] [--rumqttd PATH] \
                     [--metrics [--scrape-connections N] [--scrape-offline M] [--scrape-only]] \
                     [--tls] [--no-write]\n       \
                     cargo xtask bench-broker --instructions [--messages N] [--runs R] [--no-write]";
const TLS_START: &str = "<!-- bench-broker-tls:start -->";
const TLS_END: &str = "<!-- bench-broker-tls:end -->";
/// Clients connecting at once in the TLS connect churn.
const CHURN_CLIENTS: u32 = 64;
/// Idle connections in the TLS memory scenario (each a full handshake).
const TLS_CONNECTIONS: u32 = 2_000;
const METRICS_START: &str = "<!-- bench-broker-metrics:start -->";
const METRICS_END: &str = "<!-- bench-broker-metrics:end -->";
/// How often the metrics run's scraper reads `/metrics` (Prometheus' default
/// is every 15 s: this is harsher).
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// Scrapes timed in the scrape-cost measurement.
const SCRAPES: u32 = 2000;
const START: &str = "<!-- bench-broker:start -->";
const END: &str = "<!-- bench-broker:end -->";
/// Open files asked for the brokers and the bench (10k connections need more
/// than the usual 1,024); where the hard limit is lower, they get that.
const NOFILE: u32 = 65536;
/// The aggregate delivered rate of the paced scenarios.
const PACED: u32 = 20_000;
/// Idle connections in the connection scenario.
const CONNECTIONS: u32 = 10_000;
/// Scrape-cost clients per loopback source address: above about 14,000
/// connections from one address, connects stall for seconds while the
/// kernel looks for a free ephemeral port.
const PER_SOURCE: u32 = 5_000;
/// Offline sessions made per `tern bench sub` run (under the open-file
/// cap), spread over 4 loopback source addresses.
const OFFLINE_BATCH: u32 = 16_000;

/// Runs the comparison.
pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let mut seconds = 10.0_f64;
    let mut runs = 1_usize;
    let mut rumqttd: Option<PathBuf> = None;
    let mut write = true;
    let mut metrics = false;
    let mut scrape_connections = CONNECTIONS;
    let mut scrape_only = false;
    let mut scrape_offline = 0_u32;
    let mut instructions = false;
    let mut messages = 10_000_u64;
    let mut tls = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or(USAGE)?;
            }
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|r| *r > 0)
                    .ok_or(USAGE)?;
            }
            "--rumqttd" => rumqttd = Some(PathBuf::from(it.next().ok_or(USAGE)?)),
            "--no-write" => write = false,
            "--metrics" => metrics = true,
            "--scrape-connections" => {
                scrape_connections = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or(USAGE)?;
            }
            "--scrape-only" => scrape_only = true,
            "--tls" => tls = true,
            "--scrape-offline" => {
                scrape_offline = it.next().and_then(|s| s.parse().ok()).ok_or(USAGE)?;
            }
            "--instructions" => instructions = true,
            "--messages" => {
                messages = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or(USAGE)?;
            }
            _ => return Err(format!("unknown argument `{arg}`\nusage: {USAGE}")),
        }
    }
    if tls && (metrics || rumqttd.is_some() || instructions) {
        return Err(format!(
            "--tls runs Tern and mosquitto only, without --metrics or --instructions\nusage: {USAGE}"
        ));
    }
    if (scrape_only || scrape_connections != CONNECTIONS || scrape_offline > 0) && !metrics {
        return Err(format!(
            "--scrape-only, --scrape-connections and --scrape-offline need --metrics\n\
             usage: {USAGE}"
        ));
    }
    run(cargo().args(["build", "--release", "-p", "tern-cli", "--bin", "tern"]))?;
    let tern = target_dir().join("release/tern");
    if instructions {
        return crate::bench_instructions::command(&tern, messages, runs, write);
    }
    ensure_apt(&["mosquitto"], &["mosquitto"])?;
    let work = std::env::temp_dir().join(format!("tern-bench-broker-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;

    let mut brokers = vec![Kind::Tern(tern.clone())];
    if metrics {
        // Right after Tern, so the `Tern / Tern+metrics` column is the
        // cost of metrics (1.00×: none).
        brokers.push(Kind::TernMetrics(tern.clone()));
    }
    brokers.push(Kind::Mosquitto);
    if let Some(path) = rumqttd {
        brokers.push(Kind::Rumqttd(path));
    }
    let load_before = loadavg();
    let started = now_utc();
    let pki = if tls { Some(Pki::make(&work)?) } else { None };
    let scenarios = if scrape_only {
        Vec::new()
    } else if tls {
        tls_scenarios(seconds)
    } else {
        scenarios(seconds)
    };
    let mut rows = Vec::new();
    for scenario in &scenarios {
        // Interleaved: each run goes through every broker in turn, so a
        // burst of other work on the machine spreads over the columns
        // instead of landing on one broker's runs.
        let mut measured: Vec<Vec<Measured>> = brokers.iter().map(|_| Vec::new()).collect();
        for run in 0..runs {
            for (kind, runs_of) in brokers.iter().zip(&mut measured) {
                eprintln!(
                    "xtask: {} on {} (run {})",
                    scenario.name,
                    kind.name(),
                    run + 1
                );
                runs_of.push(measure(&tern, kind, scenario, &work, pki.as_ref())?);
            }
        }
        let mut results = Vec::new();
        for mut runs_of in measured {
            // The median run by the scenario's headline figure.
            runs_of.sort_by(|a, b| a.headline().total_cmp(&b.headline()));
            let median = runs_of.swap_remove(runs_of.len() / 2);
            eprintln!("xtask:   {}", median.brief());
            results.push(median);
        }
        rows.push((scenario, results));
    }
    let scrape = if metrics {
        eprintln!("xtask: scrape cost with {scrape_connections} connected sessions");
        Some(scrape_cost(
            &tern,
            &work,
            scrape_connections,
            scrape_offline,
        )?)
    } else {
        None
    };
    let load_after = loadavg();
    let _ = std::fs::remove_dir_all(&work);

    let names: Vec<&str> = brokers.iter().map(Kind::name).collect();
    let table = render(&names, &rows);
    let mut command = format!("cargo xtask bench-broker --seconds {seconds}");
    if runs > 1 {
        command.push_str(&format!(" --runs {runs}"));
    }
    if let Some(Kind::Rumqttd(path)) = brokers.last() {
        command.push_str(&format!(" --rumqttd {}", path.display()));
    }
    if tls {
        command.push_str(" --tls");
    }
    if metrics {
        command.push_str(" --metrics");
        if scrape_connections != CONNECTIONS {
            command.push_str(&format!(" --scrape-connections {scrape_connections}"));
        }
        if scrape_offline > 0 {
            command.push_str(&format!(" --scrape-offline {scrape_offline}"));
        }
        if scrape_only {
            command.push_str(" --scrape-only");
        }
    }
    let (start, end) = if tls {
        (TLS_START, TLS_END)
    } else {
        (START, END)
    };
    let section = format!(
        "{start}\nCommand (one run, {started}; load average {load_before} before and \
         {load_after} after; {}; {}):\n\n```sh\n{command}\n```\n\n{table}{end}",
        cpu_model(),
        mosquitto_version(),
    );
    println!("{section}");
    if let Some(scrape) = &scrape {
        println!("{scrape}");
    }
    if write {
        if metrics {
            // The metrics run has its own section; the main table stays
            // the plain Tern-against-peers comparison.
            let section = section.replace(START, METRICS_START).replace(END, "");
            let full = format!("{section}\n{}\n{METRICS_END}", scrape.unwrap_or_default());
            write_section(&full, METRICS_START, METRICS_END, "## Broker metrics")?;
        } else if tls {
            write_section(&section, TLS_START, TLS_END, "## TLS")?;
        } else {
            write_benchmarks(&section)?;
        }
        eprintln!("xtask: BENCHMARKS.md updated");
    }
    Ok(())
}

/// The broker CPU one `/metrics` scrape costs with `clients` clients
/// connected and `offline` offline sessions, and in the same broker before
/// any session existed (the baseline): the broker's CPU time over
/// [`SCRAPES`] back-to-back scrapes, less what it spends idle over the
/// same time.
fn scrape_cost(tern: &Path, work: &Path, clients: u32, offline: u32) -> Result<String, String> {
    let kind = Kind::TernMetrics(tern.to_path_buf());
    let (broker, metrics) = kind.start_with_port(work, NOFILE.max(clients + 1024))?;
    let metrics = metrics.ok_or("no metrics port")?;
    let pid = broker.pid();
    let gauge = |port: u16, name: &str| -> Result<f64, String> {
        Ok(scrape(port)?
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    };
    let load_before = loadavg();
    eprintln!("xtask: baseline scrape cost with no sessions");
    let baseline = scrape_cpu(pid, metrics)?;
    // Offline sessions first: batches of subscribers with a session expiry
    // that connect, subscribe and leave. Each batch is spread over its own
    // loopback source addresses: one address runs short of ephemeral ports
    // (and connects stall) well before the 28k of the port range, and the
    // closed ports of earlier batches wait in TIME_WAIT.
    let offline_start = Instant::now();
    let mut made = 0;
    let mut batch_no = 0;
    while made < offline {
        let batch = (offline - made).min(OFFLINE_BATCH);
        let first = batch_no * 4 + 1;
        batch_no += 1;
        eprintln!("xtask: offline sessions {made}..{}", made + batch);
        let status = limited(&format!(
            "exec {} bench sub -c {batch} --session-expiry 86400 -t 'scrape/off/%i' -d 0.2 \
             --drain 0 --conn-rate 5000 --bind 127.0.1.{first}-127.0.1.{} -h 127.0.0.1 -p {} \
             --quiet",
            tern.display(),
            first + 3,
            broker.tcp().port()
        ))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run tern bench sub: {e}"))?;
        if !status.success() {
            return Err(format!("tern bench sub for offline sessions: {status}"));
        }
        made += batch;
        let deadline = Instant::now() + Duration::from_secs(60);
        // All of them in, and every socket of the batch closed (the
        // open-file cap holds one batch at a time).
        while gauge(metrics, "tern_sessions")? < f64::from(made)
            || gauge(metrics, "tern_sockets")? > 0.0
        {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {made} offline sessions",
                    gauge(metrics, "tern_sessions")?
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let offline_took = offline_start.elapsed();
    // Spread over loopback source addresses, [`PER_SOURCE`] each.
    let bind = if clients > PER_SOURCE {
        format!(" --bind 127.0.0.1-127.0.0.{}", clients.div_ceil(PER_SOURCE))
    } else {
        String::new()
    };
    let bench_log = work.join("scrape-bench.log");
    let bench_err =
        std::fs::File::create(&bench_log).map_err(|e| format!("{}: {e}", bench_log.display()))?;
    let connect_start = Instant::now();
    let mut bench = limited(&format!(
        "exec {} bench conn -c {clients}{bind} --conn-rate 5000 -d 600 -h 127.0.0.1 -p {} --quiet",
        tern.display(),
        broker.tcp().port()
    ))
    .stdout(Stdio::null())
    .stderr(bench_err)
    .spawn()
    .map_err(|e| format!("cannot run tern bench conn: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut connected = 0.0;
    while connected < f64::from(clients) {
        if Instant::now() > deadline || bench.try_wait().ok().flatten().is_some() {
            let _ = bench.kill();
            let _ = bench.wait();
            let said = std::fs::read_to_string(&bench_log).unwrap_or_default();
            return Err(format!(
                "only {connected} of {clients} clients connected (broker RSS {} kB); \
                 tern bench said: {}",
                vm_rss(pid).unwrap_or(0),
                said.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
        connected = gauge(metrics, "tern_connections")?;
    }
    let connect_took = connect_start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("xtask: scrape cost with {clients} connected and {offline} offline sessions");
    let full = scrape_cpu(pid, metrics)?;
    let last = scrape(metrics)?;
    let rss = vm_rss(pid).unwrap_or(0);
    let _ = bench.kill();
    let _ = bench.wait();
    drop(broker);
    let value = |name: &str| {
        last.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or("?")
            .to_string()
    };
    Ok(format!(
        "Scrape cost, one broker, measured twice: first with no session (baseline), then with \
         {clients} clients connected (each an online session; {:.1} s to connect) and \
         {offline} offline sessions (each with one subscription and an expiry of a day; {:.1} \
         s to make). Each measurement is {SCRAPES} back-to-back scrapes of `/metrics`; broker \
         CPU (all threads: the HTTP task and the core task's snapshot copy) from \
         /proc/PID/stat in 10 ms ticks, less what the broker spends idle over the same time. \
         Load average {load_before} before, {} after.\n\n\
         | | sessions | bytes per scrape | wall per scrape (HTTP over loopback) | broker CPU per scrape |\n\
         |---|---|---|---|---|\n\
         | baseline | 0 | {} | {:.0} µs | **{:.0} µs** |\n\
         | full | {} ({} connected) | {} | {:.0} µs | **{:.0} µs** |\n\n\
         Full / baseline CPU per scrape: **{:.2}×**. Broker RSS at the end {:.0} MB. The \
         machine's hard limit of {} open files per process caps the connected clients; the \
         rest of the sessions are offline, which a scrape treats the same (it reads counters, \
         never the sessions).\n",
        connect_took.as_secs_f64(),
        offline_took.as_secs_f64(),
        loadavg(),
        baseline.bytes,
        baseline.wall_us,
        baseline.cpu_us,
        value("tern_sessions"),
        value("tern_connections"),
        full.bytes,
        full.wall_us,
        full.cpu_us,
        full.cpu_us / baseline.cpu_us.max(1.0),
        rss as f64 / 1024.0,
        hard_nofile().map_or("?".to_string(), |n| n.to_string()),
    ))
}

/// One scrape-cost measurement.
struct ScrapeCpu {
    /// Body size of the last scrape.
    bytes: usize,
    /// Wall time per scrape, µs.
    wall_us: f64,
    /// Broker CPU per scrape, idle subtracted, µs.
    cpu_us: f64,
}

/// [`SCRAPES`] back-to-back scrapes of the broker `pid` on `metrics`,
/// after 5 s of measuring its idle CPU.
fn scrape_cpu(pid: u32, metrics: u16) -> Result<ScrapeCpu, String> {
    let idle_wall = Duration::from_secs(5);
    let before = cpu_ticks(pid).ok_or("cannot read the broker's CPU time")?;
    std::thread::sleep(idle_wall);
    let idle_ticks = cpu_ticks(pid).unwrap_or(before) - before;
    let before = cpu_ticks(pid).unwrap_or(0);
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        bytes = scrape(metrics)?.len();
    }
    let wall = start.elapsed();
    let ticks = cpu_ticks(pid).unwrap_or(before) - before;
    let idle_share = idle_ticks as f64 / idle_wall.as_secs_f64();
    let cpu = ticks as f64 / 100.0 - idle_share / 100.0 * wall.as_secs_f64();
    Ok(ScrapeCpu {
        bytes,
        wall_us: wall.as_secs_f64() / f64::from(SCRAPES) * 1e6,
        cpu_us: cpu / f64::from(SCRAPES) * 1e6,
    })
}

/// This process's hard limit of open files (the brokers it starts inherit it).
fn hard_nofile() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(4)?
        .parse()
        .ok()
}

/// GET /metrics on `port`; the body.
pub(crate) fn scrape(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("cannot reach /metrics on port {port}: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("/metrics answered {head}"));
    }
    Ok(body.to_string())
}

/// A broker to measure.
enum Kind {
    Tern(PathBuf),
    /// Tern with `--metrics`, scraped every [`SCRAPE_EVERY`] during the run.
    TernMetrics(PathBuf),
    Mosquitto,
    Rumqttd(PathBuf),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Tern(_) => "Tern",
            Kind::TernMetrics(_) => "Tern+metrics",
            Kind::Mosquitto => "mosquitto",
            Kind::Rumqttd(_) => "rumqttd",
        }
    }

    /// Starts the broker on loopback with the open-file limit raised, through
    /// tern-testkit's launcher: ready once it accepts connections, stopped
    /// by PID (SIGTERM, then SIGKILL) when dropped. Returns the monitoring
    /// port too, for [`Kind::TernMetrics`].
    /// `nofile` is the open-file limit asked for (the hard limit where lower).
    /// With `tls`, the port returned is a TLS listener's with that
    /// certificate and key (for mosquitto, its only listener becomes TLS).
    fn start_with_port(&self, work: &Path, nofile: u32) -> Result<(Broker, Option<u16>), String> {
        self.start_with(work, nofile, None)
    }

    fn start_with(
        &self,
        work: &Path,
        nofile: u32,
        tls: Option<&Pki>,
    ) -> Result<(Broker, Option<u16>), String> {
        let metrics = match self {
            Kind::TernMetrics(_) => Some(tern_testkit::unused_port()?),
            _ => None,
        };
        let tls_port = match (self, tls) {
            (Kind::Tern(_), Some(_)) => Some(tern_testkit::unused_port()?),
            _ => None,
        };
        let tern_tls = match (tls_port, tls) {
            (Some(port), Some(pki)) => format!(
                "tls = [\"127.0.0.1:{port}\"]\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                pki.cert.display(),
                pki.key.display()
            ),
            _ => String::new(),
        };
        let launch = match self {
            Kind::Tern(tern) | Kind::TernMetrics(tern) => Broker::tern(tern)
                .settings(&format!(
                    "[limits]\nmax_connections = 1000000\nmax_queued_messages = 100000\n\
                     max_queued_bytes = 268435456\nmax_inflight_messages = 1024\n\
                     [listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n{tern_tls}",
                ))
                .args(["--log", "warn"])
                .args(
                    metrics
                        .map(|port| vec!["--metrics".to_string(), format!("127.0.0.1:{port}")])
                        .unwrap_or_default(),
                ),
            Kind::Mosquitto => {
                let launch = Broker::mosquitto().settings(
                    "max_connections -1\nmax_queued_messages 100000\nmax_inflight_messages 1024\n\
                     set_tcp_nodelay true\n",
                );
                match tls {
                    Some(pki) => launch.listener_settings(&format!(
                        "certfile {}\nkeyfile {}\n",
                        pki.cert.display(),
                        pki.key.display()
                    )),
                    None => launch,
                }
            }
            Kind::Rumqttd(path) => Broker::rumqttd(path),
        };
        let broker = launch.nofile(nofile).dir(work).name(self.name()).start()?;
        match (tls, tls_port) {
            (Some(_), Some(port)) => Ok((broker, Some(port))),
            (Some(_), None) => {
                let port = broker.tcp().port();
                Ok((broker, Some(port)))
            }
            (None, _) => Ok((broker, metrics)),
        }
    }
}

/// The TLS scenarios' certificates: a CA and a server certificate for
/// 127.0.0.1, both ECDSA P-256, made with openssl for each run.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn make(work: &Path) -> Result<Pki, String> {
        let dir = work.join("pki");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let f = |name: &str| dir.join(name).display().to_string();
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args));
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &f("ca.key"),
        ])?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &f("ca.key"),
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=tern-bench-ca",
            "-out",
            &f("ca.pem"),
        ])?;
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &f("ec.key"),
        ])?;
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &f("ec.key"),
            "-out",
            &f("server.key"),
        ])?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &f("server.key"),
            "-subj",
            "/CN=localhost",
            "-out",
            &f("server.csr"),
        ])?;
        write_file(
            &dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &f("server.csr"),
            "-CA",
            &f("ca.pem"),
            "-CAkey",
            &f("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &f("ext"),
            "-out",
            &f("server.pem"),
        ])?;
        // mosquitto, started as root, reads them as its own user.
        for name in ["server.pem", "server.key"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))
                .map_err(|e| format!("{}: {e}", f(name)))?;
        }
        Ok(Pki {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        })
    }
}

/// A command run by `sh` with the open-file limit raised first (`exec`
/// keeps the PID).
fn limited(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n {NOFILE} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; {script}"
        ))
        .stdin(Stdio::null());
    cmd
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// What a scenario does.
struct Scenario {
    name: String,
    /// `tern bench` arguments (without host, port and output flags).
    args: Vec<String>,
    /// Idle connections: the figure is the connect rate and RSS per connection.
    conn: bool,
    /// Connect-CONNACK-disconnect rounds: the figure is rounds per second
    /// and the broker's CPU per round.
    churn: bool,
    /// Over TLS (the `--tls` run).
    tls: bool,
}

fn scenarios(seconds: f64) -> Vec<Scenario> {
    let d = seconds.to_string();
    let mut list = Vec::new();
    let mut msg = |name: String, args: &[&str]| {
        let mut a: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        a.extend(["-d".to_owned(), d.clone(), "-s".to_owned(), "64".to_owned()]);
        list.push(Scenario {
            name,
            args: a,
            conn: false,
            churn: false,
            tls: false,
        });
    };
    for (label, pubs, subs) in [("fan-in 4→1", 4u32, 1u32), ("fan-out 1→8", 1, 8)] {
        for qos in ["0", "1"] {
            // Paced: the publishers together send PACED / subs messages a
            // second, so PACED are delivered.
            let rate = (f64::from(PACED) / f64::from(subs) / f64::from(pubs)).to_string();
            let (p, s) = (pubs.to_string(), subs.to_string());
            msg(
                format!("{label} QoS {qos}, {}k msg/s", PACED / 1000),
                &["pubsub", "-c", &p, "-S", &s, "-q", qos, "--rate", &rate],
            );
            msg(
                format!("{label} QoS {qos}, unthrottled"),
                &["pubsub", "-c", &p, "-S", &s, "-q", qos],
            );
        }
    }
    msg(
        "1→1 QoS 1, 1k msg/s (latency)".into(),
        &["pubsub", "-c", "1", "-S", "1", "-q", "1", "--rate", "1000"],
    );
    msg(
        "bench ceiling: pub QoS 0, no subscribers".into(),
        &["pub", "-c", "1", "-q", "0"],
    );
    list.push(Scenario {
        name: format!("{}k idle connections", CONNECTIONS / 1000),
        args: ["conn", "-c", &CONNECTIONS.to_string(), "-d", "3"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        conn: true,
        churn: false,
        tls: false,
    });
    list
}

/// The `--tls` run: every connection a full TLS handshake (ECDSA P-256
/// certificate; the bench verifies nothing, so it spends its CPU on the
/// handshake itself).
fn tls_scenarios(seconds: f64) -> Vec<Scenario> {
    let d = seconds.to_string();
    let owned = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        Scenario {
            name: format!("TLS connect churn, {CHURN_CLIENTS} clients at once"),
            args: owned(&["churn", "-c", &CHURN_CLIENTS.to_string(), "-d", &d]),
            conn: false,
            churn: true,
            tls: true,
        },
        Scenario {
            name: "TLS fan-in 4→1 QoS 0, unthrottled".into(),
            args: owned(&[
                "pubsub", "-c", "4", "-S", "1", "-q", "0", "-d", &d, "-s", "64",
            ]),
            conn: false,
            churn: false,
            tls: true,
        },
        Scenario {
            name: format!("{}k idle TLS connections", TLS_CONNECTIONS as f64 / 1000.0),
            args: owned(&["conn", "-c", &TLS_CONNECTIONS.to_string(), "-d", "3"]),
            conn: true,
            churn: false,
            tls: true,
        },
    ]
}

/// One scenario against one broker.
struct Measured {
    conn: bool,
    churn: bool,
    summary: Value,
    /// Seconds the bench ran.
    wall: f64,
    /// The broker's CPU time over the bench, in seconds.
    broker_cpu: f64,
    /// The broker's resident set before the bench, and its peak during it (KiB).
    rss_before: u64,
    rss_peak: u64,
}

impl Measured {
    fn num(&self, key: &str) -> f64 {
        self.summary[key].as_f64().unwrap_or(0.0)
    }

    /// The figure the scenario is about: delivered msg/s, sent msg/s
    /// without subscribers, or connections per second.
    fn headline(&self) -> f64 {
        if self.conn || self.churn {
            self.num("connect_rate")
        } else if self.summary["subscribers"] == 0 {
            self.num("sent_per_second")
        } else {
            self.num("delivered_per_second")
        }
    }

    fn latency(&self, key: &str) -> Option<f64> {
        self.summary["latency_us"][key].as_f64()
    }

    fn brief(&self) -> String {
        format!(
            "{:.0}/s, p50 {:?} µs, p99 {:?} µs, delivered {:?} %, broker CPU {:.0} %, \
             bench CPU {:.0} %, RSS {} → {} KiB, errors {}",
            self.headline(),
            self.latency("p50"),
            self.latency("p99"),
            self.summary["delivered_percent"].as_f64(),
            self.broker_cpu / self.wall * 100.0,
            self.num("cpu_seconds") / self.wall * 100.0,
            self.rss_before,
            self.rss_peak,
            self.summary["errors"],
        )
    }
}

fn measure(
    tern: &Path,
    kind: &Kind,
    scenario: &Scenario,
    work: &Path,
    pki: Option<&Pki>,
) -> Result<Measured, String> {
    let pki = pki.filter(|_| scenario.tls);
    let (broker, port) = kind.start_with(work, NOFILE, pki)?;
    let pid = broker.pid();
    let (metrics, port) = match pki {
        Some(_) => (None, port.ok_or("no TLS port")?),
        None => (port, broker.tcp().port()),
    };
    let rss_before = vm_rss(pid).ok_or("cannot read the broker's VmRSS")?;
    let cpu_before = cpu_ticks(pid).ok_or("cannot read the broker's CPU time")?;
    // Sample the broker's resident set while the bench runs; keep the peak.
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next_scrape = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = vm_rss(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                // A Prometheus stand-in for the metrics run.
                if let Some(port) = metrics {
                    if Instant::now() >= next_scrape {
                        next_scrape += SCRAPE_EVERY;
                        let _ = scrape(port);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let json = work.join("summary.json");
    let _ = std::fs::remove_file(&json);
    let mut script = format!("exec {} bench", tern.display());
    for arg in &scenario.args {
        script.push_str(&format!(" '{arg}'"));
    }
    script.push_str(&format!(
        " -h 127.0.0.1 -p {} --quiet --json {}",
        port,
        json.display()
    ));
    if scenario.tls {
        script.push_str(" --tls --insecure");
    }
    let start = Instant::now();
    let output = limited(&script)
        .output()
        .map_err(|e| format!("cannot run tern bench: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let cpu_after = cpu_ticks(pid).unwrap_or(cpu_before);
    drop(broker);
    let summary: Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .ok_or_else(|| {
            format!(
                "tern bench wrote no summary ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    if !output.status.success() {
        eprintln!(
            "xtask:   tern bench reported errors: {}",
            summary["error_messages"]
        );
    }
    Ok(Measured {
        conn: scenario.conn,
        churn: scenario.churn,
        summary,
        wall,
        broker_cpu: (cpu_after - cpu_before) as f64 / 100.0,
        rss_before,
        rss_peak: peak.load(Ordering::Relaxed),
    })
}

/// VmRSS of a process in KiB.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a process (all threads) in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().take(3).collect();
            (f.len() == 3).then(|| f.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown date".into())
}

pub(crate) fn cpu_model() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}

pub(crate) fn mosquitto_version() -> String {
    Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "mosquitto (version unknown)".into())
}

fn fmt_rate(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_latency(m: &Measured) -> String {
    let ms = |us: f64| {
        if us >= 10_000.0 {
            format!("{:.0} ms", us / 1000.0)
        } else if us >= 1000.0 {
            format!("{:.1} ms", us / 1000.0)
        } else {
            format!("{us:.0} µs")
        }
    };
    match (m.latency("p50"), m.latency("p99")) {
        (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
        _ => "—".into(),
    }
}

/// The Markdown table: one row per scenario, the brokers side by side.
fn render(names: &[&str], rows: &[(&Scenario, Vec<Measured>)]) -> String {
    let joined = |f: &dyn Fn(&str) -> String| names.iter().map(|n| f(n)).collect::<Vec<_>>();
    let mut head = vec!["scenario".to_owned()];
    head.extend(joined(&|n| format!("{n} msg/s")));
    head.extend(names[1..].iter().map(|p| format!("Tern / {p}")));
    head.extend(joined(&|n| format!("{n} p50 / p99")));
    head.push("delivered %".into());
    head.push("broker CPU %".into());
    head.push("broker peak RSS MiB".into());
    head.push("bench CPU %".into());
    let mut out = format!(
        "Rates are delivered messages per second (sent, with no subscribers; \
         connections per second for idle connections). Cells with several figures \
         list {}, in that order. CPU is the share of one core over the whole \
         bench run (connecting and draining included).\n\n| {} |\n",
        names.join(" · "),
        head.join(" | ")
    );
    out += &format!(
        "|---|{}\n",
        head[1..].iter().map(|_| "---:|").collect::<String>()
    );
    let mut conn_lines = Vec::new();
    for (scenario, results) in rows {
        let tern = &results[0];
        let mut cells = vec![scenario.name.clone()];
        if scenario.churn {
            cells.extend(
                results
                    .iter()
                    .map(|m| format!("{} conn/s", fmt_rate(m.headline()))),
            );
            let per = |m: &Measured| m.broker_cpu / m.num("connected").max(1.0) * 1e6;
            conn_lines.push(format!(
                "- {}: broker CPU per round (handshake, CONNECT, CONNACK, DISCONNECT): {}",
                scenario.name,
                results
                    .iter()
                    .zip(names)
                    .map(|(m, n)| format!("{n} **{:.0} µs**", per(m)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if scenario.conn {
            cells.extend(
                results
                    .iter()
                    .map(|m| format!("{} conn/s", fmt_rate(m.headline()))),
            );
            for (i, m) in results.iter().enumerate() {
                let per =
                    (m.rss_peak.saturating_sub(m.rss_before)) as f64 / m.num("connected").max(1.0);
                conn_lines.push(format!(
                    "- {}: {} of {} connections, RSS {:.1} → {:.1} MiB, **{per:.1} KiB per connection**",
                    names[i],
                    m.summary["connected"],
                    m.summary["connections"],
                    m.rss_before as f64 / 1024.0,
                    m.rss_peak as f64 / 1024.0,
                ));
            }
        } else {
            cells.extend(results.iter().map(|m| fmt_rate(m.headline())));
        }
        for peer in &results[1..] {
            let r = if peer.headline() > 0.0 {
                format!("{:.2}×", tern.headline() / peer.headline())
            } else {
                "—".into()
            };
            cells.push(r);
        }
        let all =
            |f: &dyn Fn(&Measured) -> String| results.iter().map(f).collect::<Vec<_>>().join(" · ");
        cells.extend(results.iter().map(fmt_latency));
        cells.push(all(&|m: &Measured| {
            m.summary["delivered_percent"]
                .as_f64()
                .map_or("—".into(), |p| format!("{p:.1}"))
        }));
        cells.push(all(&|m: &Measured| {
            format!("{:.0}", m.broker_cpu / m.wall * 100.0)
        }));
        cells.push(all(&|m: &Measured| {
            format!("{:.0}", m.rss_peak as f64 / 1024.0)
        }));
        cells.push(format!(
            "{:.0}",
            results
                .iter()
                .map(|m| m.num("cpu_seconds") / m.wall * 100.0)
                .fold(0.0, f64::max)
        ));
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out += "\n";
    for line in conn_lines {
        out += &line;
        out += "\n";
    }
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|(s, results)| {
            results.iter().zip(names).filter_map(move |(m, n)| {
                let e = m.summary["errors"].as_u64().unwrap_or(0)
                    + m.summary["connect_failed"].as_u64().unwrap_or(0);
                (e > 0).then(|| {
                    format!(
                        "- {} on {n}: {e} errors: {}",
                        s.name, m.summary["error_messages"]
                    )
                })
            })
        })
        .collect();
    if !errors.is_empty() {
        out += "\nErrors the bench reported:\n\n";
        out += &errors.join("\n");
        out += "\n";
    }
    out
}

/// Replaces the text between the markers in BENCHMARKS.md, or appends a
/// `## Broker` section holding them.
fn write_benchmarks(section: &str) -> Result<(), String> {
    write_section(section, START, END, "## Broker")
}

/// Replaces the text between `start` and `end` in BENCHMARKS.md, or appends
/// a `heading` section holding them.
fn write_section(section: &str, start: &str, end: &str, heading: &str) -> Result<(), String> {
    let path = root().join("BENCHMARKS.md");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read BENCHMARKS.md: {e}"))?;
    write_file(&path, &splice_between(&text, section, start, end, heading))
}

/// `text` with `section` (markers included) in place of the marked part.
#[cfg(test)]
fn splice(text: &str, section: &str) -> String {
    splice_between(text, section, START, END, "## Broker")
}

/// `text` with `section` in place of the part between `start` and `end`
/// (markers included), or appended under `heading`.
fn splice_between(text: &str, section: &str, start: &str, end: &str, heading: &str) -> String {
    match (text.find(start), text.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &text[..a], &text[b + end.len()..])
        }
        _ => format!("{}\n\n{heading}\n\n{section}\n", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_accepted_by_tern_bench_flags() {
        // The scenario list is what the xtask runs for minutes; check its
        // shape here so a typo does not surface only at the end of a run.
        let list = scenarios(2.0);
        assert!(list.iter().any(|s| s.conn));
        let tls = tls_scenarios(2.0);
        assert!(tls.iter().all(|s| s.tls) && tls.iter().any(|s| s.churn));
        for s in list.iter().chain(&tls) {
            assert!(
                ["pub", "pubsub", "conn", "churn"].contains(&s.args[0].as_str()),
                "{}",
                s.name
            );
            assert!(s.args.windows(2).any(|w| w[0] == "-d"), "{}", s.name);
        }
        // Paced fan-out sends PACED / 8 a second from its one publisher.
        let fan_out = list
            .iter()
            .find(|s| s.name.starts_with("fan-out") && s.name.contains("QoS 0, 20k"))
            .unwrap();
        let rate = fan_out.args.windows(2).find(|w| w[0] == "--rate").unwrap();
        assert_eq!(rate[1], "2500");
    }

    #[test]
    fn the_section_replaces_the_old_one_between_the_markers() {
        let text = format!("# B\n\n## Broker\n\n{START}\nold\n{END}\n\n## Later\n");
        let new = splice(&text, &format!("{START}\nnew\n{END}"));
        assert_eq!(
            new,
            format!("# B\n\n## Broker\n\n{START}\nnew\n{END}\n\n## Later\n")
        );
        // Without markers, a Broker section is appended.
        let new = splice("# B\n", &format!("{START}\nx\n{END}"));
        assert_eq!(new, format!("# B\n\n## Broker\n\n{START}\nx\n{END}\n"));
    }

    #[test]
    fn proc_readers_see_this_process() {
        let pid = std::process::id();
        assert!(vm_rss(pid).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks(pid).is_some());
    }
}
