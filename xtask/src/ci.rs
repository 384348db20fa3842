//! `cargo xtask ci`: everything CI checks, in one command.
//!
//! Order: cheap checks first, then the shared debug build (clippy, tests, docs
//! use the same features so cargo reuses dependency builds), the simulation
//! seeds (release build), then tools that need installing, then the fuzz
//! smoke run.

use crate::{
    conformance, fuzz, interop, sim,
    tools::{cargo, ensure_apt, ensure_cargo_tool, run},
};

/// The pinned cargo-deny version.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Seconds each fuzz target runs in CI.
const FUZZ_SMOKE_SECONDS: u64 = 30;

/// Library crates that must package (and so publish) on their own.
const PUBLISHED: &[&str] = &[
    "tern-codec",
    "tern-topic",
    "tern-session",
    "tern-broker",
    "tern-client",
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
    let step = |name: &str| eprintln!("\n==== {name} ({}s) ====", started.elapsed().as_secs());

    step("rustfmt");
    run(cargo().args(["fmt", "--all", "--check"]))?;

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

    step("mosquitto");
    // The interop tests drive Debian's mosquitto broker and mosquitto_pub /
    // mosquitto_sub; they fail (never skip) without them.
    ensure_apt(
        &["mosquitto", "mosquitto_pub", "mosquitto_sub"],
        &["mosquitto", "mosquitto-clients"],
    )?;

    step("tests");
    run(cargo().args(["test", "--workspace", "--all-features"]))?;

    step("interop");
    // Real third-party clients against our broker, and ours against
    // mosquitto: about a minute once the tools are installed.
    interop::command(&[])?;

    step("conformance");
    // The MQTT conformance suite against our broker, then against Debian's
    // mosquitto (installed above) to keep the suite itself honest; about
    // 10 s each once built.
    conformance::command(&[])?;
    conformance::command(&["--against-mosquitto".to_string()])?;

    step("docs");
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;

    step("simulation");
    // A fixed range of seeds per fault profile, in release mode; the long
    // run is `cargo xtask sim --seeds 100000 --faults heavy`.
    sim::ci()?;

    step("packaging");
    // Packaged together so path dependencies resolve to the local packages.
    // Cargo treats those as immutable registry crates and never rebuilds
    // them, so a verify build must not find an older build of ours.
    let verify_dir = std::path::Path::new("target/package-verify");
    forget_tern_builds(verify_dir)?;
    let mut package = cargo();
    package.args(["package", "--allow-dirty", "--target-dir"]);
    package.arg(verify_dir);
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

    eprintln!(
        "\nci: all checks passed in {}s",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Removes every build of a `tern-*` crate under `target_dir`, keeping the
/// dependencies' builds, and the copies of our packages an earlier run left
/// in cargo's registry cache (cargo extracts a package only once, so a
/// stale copy would be verified against instead of the new one).
fn forget_tern_builds(target_dir: &std::path::Path) -> Result<(), String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let mut dirs: Vec<std::path::PathBuf> = ["debug/.fingerprint", "debug/deps", "debug/build"]
        .iter()
        .map(|sub| target_dir.join(sub))
        .collect();
    if let Some(home) = cargo_home {
        for kind in ["src", "cache"] {
            if let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) {
                dirs.extend(registries.flatten().map(|r| r.path()));
            }
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
