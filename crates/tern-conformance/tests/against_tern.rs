//! The whole suite, as `cargo xtask conformance` runs it, against Tern's
//! broker started in-process on free ports (plus the restricted instance:
//! Maximum QoS 1, no retained messages, an ACL file), so `cargo test` enforces it too.
//! Tern's known deviations are skipped by `skips/tern.toml`.

use std::{net::SocketAddr, sync::mpsc, thread};
use tern_broker::server::{self, BrokerSettings};
use tern_codec::QoS;
use tern_conformance::{
    cases,
    harness::Target,
    runner::{self, Outcome},
    skips::Skips,
};
use tokio::sync::oneshot;

/// A broker running on its own runtime thread; stopped on drop.
struct Broker {
    tcp: SocketAddr,
    ws: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Broker {
    fn start(mut settings: BrokerSettings, ws: bool) -> Broker {
        settings.listeners.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        settings.listeners.ws = if ws {
            vec![SocketAddr::from(([127, 0, 0, 1], 0))]
        } else {
            Vec::new()
        };
        let (addrs_tx, addrs_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let running = server::start(settings).await.expect("broker starts");
                let tcp = running.tcp_addrs()[0];
                let ws = running.ws_addrs().first().copied();
                addrs_tx.send((tcp, ws)).expect("test is waiting");
                running
                    .run_until(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (tcp, ws) = addrs_rx.recv().expect("broker reports its addresses");
        Broker {
            tcp,
            ws,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn the_whole_suite_passes_against_tern() {
    let broker = Broker::start(BrokerSettings::default(), true);
    let mut restricted_settings = BrokerSettings::default();
    restricted_settings.limits.maximum_qos = QoS::AtLeastOnce;
    restricted_settings.limits.retain_available = false;
    restricted_settings.limits.wildcard_subscriptions = false;
    let acl = std::env::temp_dir().join(format!("tern-conformance-{}.acl", std::process::id()));
    std::fs::write(&acl, tern_conformance::RESTRICTED_ACL).expect("the ACL file is written");
    restricted_settings.security.acl_file = Some(acl.clone());
    // SCRAM-SHA-256 for the enhanced authentication statements; anonymous
    // clients still get in for the others.
    let passwd = acl.with_extension("passwd");
    let credential = |m| {
        tern_broker::security::PasswordHash::scram(
            m,
            tern_conformance::SCRAM_PASSWORD.as_bytes(),
            [7; tern_broker::security::SCRAM_SALT_LEN],
            4096,
        )
    };
    use tern_broker::security::scram::Mechanism;
    std::fs::write(
        &passwd,
        format!(
            "{}:{}\n{}:{}\n",
            tern_conformance::SCRAM_USER,
            credential(Mechanism::Sha256),
            tern_conformance::SCRAM_SHA512_USER,
            credential(Mechanism::Sha512),
        ),
    )
    .expect("the password file is written");
    restricted_settings.security.password_file = Some(passwd.clone());
    restricted_settings.security.allow_anonymous = Some(true);
    restricted_settings.security.clientid_prefixes =
        Some(tern_conformance::RESTRICTED_CLIENT_ID_PREFIX.into());
    let restricted = Broker::start(restricted_settings, false);
    // Read at start-up.
    let _ = std::fs::remove_file(&acl);
    let _ = std::fs::remove_file(&passwd);

    let mut target = Target::new(
        &broker.tcp.to_string(),
        broker.ws.map(|a| format!("ws://{a}/mqtt")),
    )
    .expect("target");
    target.restricted = Some(restricted.tcp);
    let skips = Skips::builtin("tern")
        .expect("tern has a skip list")
        .expect("it parses");
    let selected = cases::select(None, None, true, true);
    assert_eq!(selected.len(), cases::all().len(), "every test is selected");

    let mut out = Vec::new();
    let report = runner::run("tern", &target, &selected, &skips, 16, &mut out);
    let failures: Vec<String> = report
        .tests
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Fail(_)))
        .map(runner::line)
        .collect();
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
    // Only the skip list's entries are skipped: nothing skips for lack of a
    // listener or feature.
    for t in &report.tests {
        if let Outcome::Skip(why) = &t.outcome {
            assert!(
                why.starts_with(runner::SKIP_LIST_PREFIX),
                "{} skipped: {why}",
                t.id
            );
        }
    }
    assert_eq!(report.tests.len(), selected.len());
}
