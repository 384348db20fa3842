//! `cargo xtask ci`: everything CI checks, in one command.
//!
//! Order: cheap checks first, then the shared debug build (clippy, tests, docs
//! use the same features so cargo reuses dependency builds), the simulation
//! seeds (release build), then tools that need installing, then the fuzz
//! smoke run. [`STEPS`] names them in order; `cargo xtask help` prints that
//! list, and the run checks it takes exactly those steps.

use crate::{
    cluster, conformance, crash, examples, fuzz, hostile, interop, sim,
    tools::{cargo, ensure_apt, ensure_cargo_tool, root, run, target_dir},
};

/// Every step of `cargo xtask ci`, in the order it runs them, with what each
/// does (for `cargo xtask help`).
pub(crate) const STEPS: &[(&str, &str)] = &[
    (
        "rustfmt",
        "cargo fmt --check (the workspace, fuzz/, xtask/nostd-check/)",
    ),
    (
        "clippy",
        "clippy -D warnings (the workspace, fuzz/, xtask/nostd-check/)",
    ),
    ("mosquitto", "installs Debian's mosquitto and its clients"),
    (
        "chromium",
        "installs Debian's chromium (the dashboard's browser test)",
    ),
    (
        "nats-server",
        "installs Debian's nats-server 2.9 (the cluster's tests)",
    ),
    ("tests", "cargo test --workspace --all-features"),
    ("interop", "cargo xtask interop"),
    ("examples", "cargo xtask examples"),
    (
        "conformance",
        "cargo xtask conformance, against Tern and against mosquitto",
    ),
    (
        "hostile",
        "cargo xtask hostile --scale smoke (Tern and mosquitto; known failures listed)",
    ),
    (
        "crash",
        "cargo xtask crash --runs 3 (kill -9 of `tern broker --data-dir`)",
    ),
    (
        "cluster",
        "cargo xtask cluster --smoke (3 nats-server, 3 Tern nodes; < 1 min)",
    ),
    ("docs", "cargo doc -D warnings"),
    (
        "no_std",
        "builds the codec, topic and session crates into a no_std binary",
    ),
    (
        "simulation",
        "500 seeds each of the light and heavy faults, 300 crash-point seeds",
    ),
    (
        "packaging",
        "cargo package of each published crate (own CARGO_HOME)",
    ),
    ("cargo-deny", "licenses, bans, sources (offline)"),
    ("fuzz smoke", "each fuzz target for 15 s"),
];

/// The no_std check crate, its own workspace (see its Cargo.toml).
const NOSTD_CHECK: &str = "xtask/nostd-check";

/// The pinned cargo-deny version.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// `cargo xtask crash` runs in CI.
const CRASH_SMOKE_RUNS: u32 = 3;

/// Seconds each fuzz target runs in CI.
const FUZZ_SMOKE_SECONDS: u64 = 15;

/// Library crates that must package (and so publish) on their own.
const PUBLISHED: &[&str] = &[
    "tern-codec",
    "tern-topic",
    "tern-session",
    "tern-broker",
    "tern-client",
    "tern-blocking",
    "tern-store",
];

pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let fuzz_seconds = match args {
        [] => FUZZ_SMOKE_SECONDS,
        [flag, n] if flag == "--fuzz-seconds" => n
            .parse()
            .map_err(|_| "--fuzz-seconds needs a whole number")?,
        _ => return Err("usage: cargo xtask ci [--fuzz-seconds N]".into()),
    };
    let started = std::time::Instant::now();
    let mut steps = STEPS.iter().map(|(name, _)| *name);
    let mut step = |name: &str| {
        // The list `cargo xtask help` prints is the list that runs.
        assert_eq!(steps.next(), Some(name), "ci::STEPS is out of order");
        eprintln!("\n==== {name} ({}s) ====", started.elapsed().as_secs());
    };
    let fuzz_manifest = root().join("fuzz/Cargo.toml");
    let nostd_manifest = root().join(NOSTD_CHECK).join("Cargo.toml");
    let nostd_target = target_dir().join("nostd-check");

    step("rustfmt");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    nostd_lock()?;
    for manifest in [&fuzz_manifest, &nostd_manifest] {
        run(cargo()
            .args(["fmt", "--check", "--manifest-path"])
            .arg(manifest))?;
    }

    step("clippy");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    // fuzz/ is its own workspace; checked without cargo-fuzz's flags, in a
    // target directory of its own.
    run(cargo()
        .args(["clippy", "--all-targets", "--manifest-path"])
        .arg(&fuzz_manifest)
        .arg("--target-dir")
        .arg(target_dir().join("fuzz-check"))
        .args(["--", "-D", "warnings"]))?;
    run(cargo()
        .args(["clippy", "--manifest-path"])
        .arg(&nostd_manifest)
        .arg("--target-dir")
        .arg(&nostd_target)
        .args(["--", "-D", "warnings"]))?;

    step("mosquitto");
    // The interop tests drive Debian's mosquitto broker and mosquitto_pub /
    // mosquitto_sub; they fail (never skip) without them.
    ensure_apt(
        &["mosquitto", "mosquitto_pub", "mosquitto_sub"],
        &["mosquitto", "mosquitto-clients"],
    )?;

    step("chromium");
    // tern-broker's dashboard test drives headless Chromium and fails (never
    // skips) without it; the screenshot it takes is kept at
    // target/dashboard.png. Debian stable's own build: its security updates
    // replace the archive's version, so an exact-version pin would stop
    // installing; the release (the machine's Debian) is the pin.
    ensure_apt(&["chromium"], &["chromium"])?;

    step("nats-server");
    // tern-cluster's tests run real nats-server processes and fail (never
    // skip) without it; Debian's 2.9 series is the pin (checked).
    cluster::ensure_nats_server()?;

    step("tests");
    run(cargo().args(["test", "--workspace", "--all-features"]))?;

    step("interop");
    // Real third-party clients against our broker, and ours against
    // mosquitto: about a minute once the tools are installed.
    interop::command(&[])?;

    step("examples");
    // Every tern-client example, run as a user would, against real brokers.
    examples::command(&[])?;

    step("conformance");
    // The MQTT conformance suite against our broker, then against Debian's
    // mosquitto (installed above) to keep the suite itself honest; about
    // 10 s each once built.
    conformance::command(&[])?;
    conformance::command(&["--against-mosquitto".to_string()])?;

    step("hostile");
    // Attacks by anonymous clients against Tern and mosquitto, small
    // versions (about two minutes); a case listed in
    // xtask/hostile-expected-failures.txt may fail, any other failure and
    // any listed case that passes fail the step.
    hostile::command(&[])?;

    step("crash");
    // A smoke of issue 14's check (about 40 s): a durable broker killed
    // with SIGKILL at three random moments loses no acknowledged message
    // and delivers no QoS 2 message twice; the long run is
    // `cargo xtask crash --runs 1000`.
    crash::command(&["--runs".to_string(), CRASH_SMOKE_RUNS.to_string()])?;
    step("cluster");
    // Three NATS servers and three Tern nodes on loopback, briefly: the
    // cross-node checks, and a NATS server killed mid-stream.
    cluster::command(&["--smoke".to_string()])?;

    step("docs");
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;

    step("no_std");
    // A #![no_std] #![no_main] binary over tern-codec, tern-topic and
    // tern-session with only alloc: a dependency that links std fails it
    // ("duplicate lang item `panic_impl`").
    nostd_lock()?;
    run(cargo()
        .args(["build", "--manifest-path"])
        .arg(&nostd_manifest)
        .arg("--target-dir")
        .arg(&nostd_target))?;

    step("simulation");
    // A fixed range of seeds per fault profile, and of crash points, in
    // release mode; the long runs are `cargo xtask sim --seeds 100000
    // --faults heavy` and `cargo xtask sim --crash --seeds 10000`.
    sim::ci()?;

    step("packaging");
    // Packaged together so path dependencies resolve to the local packages.
    // Cargo treats those as immutable registry crates: it unpacks them into
    // its registry cache once and never rebuilds them. So packaging gets a
    // cargo home of its own under target/, where stale copies of our
    // packages can be removed without touching the user's ~/.cargo, and the
    // verify build must not find an older build of ours.
    let verify_dir = target_dir().join("package-verify");
    let package_home = target_dir().join("package-home");
    forget_tern_builds(&verify_dir, &package_home)?;
    let mut package = cargo();
    package
        .env("CARGO_HOME", &package_home)
        .args(["package", "--allow-dirty", "--target-dir"])
        .arg(&verify_dir);
    for krate in PUBLISHED {
        package.args(["-p", krate]);
    }
    run(&mut package)?;

    step("cargo-deny");
    ensure_cargo_tool("cargo-deny", CARGO_DENY_VERSION)?;
    // --offline needs every platform's crates in the local cache.
    run(cargo().args(["fetch", "--locked"]))?;
    run(cargo().args(["deny", "--offline", "check", "licenses", "bans", "sources"]))?;

    step("fuzz smoke");
    for target in fuzz::TARGETS {
        fuzz::fuzz_target(target, fuzz_seconds)?;
    }

    assert_eq!(
        steps.next(),
        None,
        "ci::STEPS lists a step that did not run"
    );
    eprintln!(
        "\nci: all checks passed in {}s",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// The no_std check resolves its dependencies to the workspace's versions:
/// it starts from a copy of the workspace's Cargo.lock (cargo drops what it
/// does not use), so it needs nothing the workspace build did not fetch.
fn nostd_lock() -> Result<(), String> {
    let from = root().join("Cargo.lock");
    let to = root().join(NOSTD_CHECK).join("Cargo.lock");
    std::fs::copy(&from, &to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// Removes every build of a `tern-*` crate under `target_dir`, keeping the
/// dependencies' builds, and the copies of our packages an earlier run left
/// in the registry of packaging's own `cargo_home` (cargo extracts a package
/// only once, so a stale copy would be verified against instead of the new
/// one). Nothing outside those two directories is touched.
fn forget_tern_builds(
    target_dir: &std::path::Path,
    cargo_home: &std::path::Path,
) -> Result<(), String> {
    let mut dirs: Vec<std::path::PathBuf> = ["debug/.fingerprint", "debug/deps", "debug/build"]
        .iter()
        .map(|sub| target_dir.join(sub))
        .collect();
    for kind in ["src", "cache"] {
        if let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join(kind)) {
            dirs.extend(registries.flatten().map(|r| r.path()));
        }
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("tern-")
                || name.starts_with("libtern_")
                || name.starts_with("tern_")
            {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step this file runs is in [`STEPS`], in that order,
    /// so the help text cannot list a step that does not run, or miss one.
    #[test]
    fn the_steps_listed_are_the_steps_run() {
        let source = include_str!("ci.rs");
        let called: Vec<&str> = source
            .match_indices("step(\"")
            .map(|(i, m)| {
                let rest = &source[i + m.len()..];
                &rest[..rest.find('"').expect("a closing quote")]
            })
            .collect();
        let listed: Vec<&str> = STEPS.iter().map(|(name, _)| *name).collect();
        assert_eq!(called, listed);
        let help = crate::help();
        for name in listed {
            assert!(help.contains(&format!("\n    {name}")), "{help}");
        }
    }

    /// Packaging cleans only its own cargo home, never the user's.
    #[test]
    fn packaging_leaves_the_users_cargo_home_alone() {
        let source = include_str!("ci.rs");
        let body = &source[source.find("fn forget_tern_builds").unwrap()..];
        let body = &body[..body.find("\n}\n").unwrap()];
        for user_home in ["\"HOME\"", "\"CARGO_HOME\")", ".cargo\""] {
            assert!(
                !body.contains(user_home),
                "forget_tern_builds reads {user_home}"
            );
        }
    }
}
