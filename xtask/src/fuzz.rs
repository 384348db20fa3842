//! `cargo xtask fuzz`: cargo-fuzz on the stable toolchain.

use crate::tools::{self, cargo, ensure_cargo_tool, run};

/// The pinned cargo-fuzz version.
pub(crate) const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Every fuzz target, in the order CI's smoke run takes them.
pub(crate) const TARGETS: &[&str] = &[
    "decode",
    "roundtrip",
    "topic_tree",
    "session_server",
    "session_client",
    "broker",
    "store_records",
    "scram",
    "security_files",
    "http_request",
    "settings",
    "cluster_wire",
];

pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let mut target = None;
    let mut seconds = 60u64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a whole number")?;
            }
            t if target.is_none() && !t.starts_with('-') => target = Some(t.to_string()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let target = target.ok_or("which target? one of: all, decode, roundtrip, ...")?;
    if target == "all" {
        TARGETS.iter().try_for_each(|t| fuzz_target(t, seconds))
    } else if TARGETS.contains(&target.as_str()) {
        fuzz_target(&target, seconds)
    } else {
        Err(format!(
            "unknown fuzz target `{target}`; known: {TARGETS:?}"
        ))
    }
}

/// Runs one target for `seconds`, with its checked-in seed corpus.
pub(crate) fn fuzz_target(target: &str, seconds: u64) -> Result<(), String> {
    ensure_cargo_tool("cargo-fuzz", CARGO_FUZZ_VERSION)?;
    let corpus = tools::root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("creating {}: {e}", corpus.display()))?;
    run(cargo()
        .args([
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "--fuzz-dir",
            "fuzz",
            target,
        ])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ]))
}
