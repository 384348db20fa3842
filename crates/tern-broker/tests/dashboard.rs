//! The dashboard in a real browser: Debian's headless Chromium loads `/` from
//! the monitoring listener, and the numbers it shows are the broker's and
//! move while this test publishes. A screenshot is kept at
//! `target/dashboard.png` (a CI artifact).
//!
//! Chromium is required: without it the test fails, naming it (`cargo
//! xtask ci` installs it).

mod common;

use common::*;
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tern_codec::{ProtocolVersion, QoS};

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Runs headless Chromium on `url` with `args`; returns its standard output.
/// Virtual time lets the page's timers run `budget_ms` ahead; its requests
/// to the broker are real.
async fn chromium(url: &str, budget_ms: u32, args: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "tern-dashboard-chromium-{}-{budget_ms}",
        std::process::id()
    ));
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1200,1100",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .args(args)
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let output = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium runs (Debian package `chromium`; `cargo xtask ci` installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the element with `id` in a DOM dump.
fn element(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap() + open;
    rest[open..close].to_string()
}

fn number(dom: &str, id: &str) -> f64 {
    let text = element(dom, id).replace(',', "");
    text.parse()
        .unwrap_or_else(|_| panic!("#{id} is {text:?}, not a number"))
}

async fn publish_many(addr: SocketAddr, id: &str, n: u16) {
    let mut publisher = Raw::connected(addr, ProtocolVersion::V5, id).await;
    for i in 1..=n {
        publisher
            .publish(publish("dash/busy", b"payload", QoS::AtLeastOnce, i))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_numbers_in_chromium() {
    let broker = start_with(|s| {
        s.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        s.limits.sys_interval = Duration::from_millis(200);
    })
    .await;
    let url = format!(
        "http://{}/",
        broker.running.metrics_addr().expect("a metrics listener")
    );
    let _watcher = Raw::connected(broker.tcp, ProtocolVersion::V5, "dash-watcher").await;

    // Before any traffic: the page loads and shows the broker's state.
    let dom = chromium(&url, 3000, &["--dump-dom"]).await;
    assert_eq!(number(&dom, "connections"), 1.0, "one client connected");
    assert_eq!(number(&dom, "received"), 0.0);
    assert!(
        element(&dom, "status").starts_with("live"),
        "{}",
        element(&dom, "status")
    );

    // While a client publishes, the page polls and its numbers move: the
    // rate needs two polls that saw different totals.
    publish_many(broker.tcp, "dash-pub-1", 200).await;
    let background = tokio::spawn({
        let addr = broker.tcp;
        async move {
            // Until aborted: the screenshot shows traffic too.
            for round in 0.. {
                publish_many(addr, &format!("dash-bg-{round}"), 100).await;
            }
        }
    });
    let dom = chromium(&url, 5000, &["--dump-dom"]).await;
    let received = number(&dom, "received");
    assert!(received >= 200.0, "received {received}");
    assert!(
        number(&dom, "polls") >= 2.0,
        "updates {}",
        element(&dom, "polls")
    );
    assert!(
        number(&dom, "peak-in") > 0.0,
        "peak rate {} after {} updates",
        element(&dom, "peak-in"),
        element(&dom, "polls")
    );
    assert!(dom.contains(">dash/busy<"), "busiest topics list dash/busy");
    assert!(
        dom.contains(">no_subscribers<"),
        "drops by reason are listed"
    );

    // The screenshot, for people (a CI artifact).
    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&url, 5000, &[&format!("--screenshot={}", shot.display())]).await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    background.abort();
    broker.shutdown().await;
}
