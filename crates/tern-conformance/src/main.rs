//! `tern-conformance`: runs the conformance suite against a broker, or
//! writes CONFORMANCE.md from run reports. `cargo xtask conformance` starts
//! the broker and calls this.

use std::{io::Write, process::ExitCode};
use tern_conformance::{Version, cases, doc, harness::Target, runner, skips::Skips, table::Table};

const USAGE: &str = "\
tern-conformance run --broker HOST:PORT [--ws URL] [--version 3.1.1|5]
                     [--filter TEXT] [--json FILE] [--skips NAME|FILE]
                     [--name NAME] [--threads N] [--client yes]
                     [--restricted HOST:PORT]
tern-conformance doc --tern FILE --mosquitto FILE --out FILE
tern-conformance list [--version 3.1.1|5] [--filter TEXT]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("doc") => write_doc(&args[1..]),
        Some("list") => list(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("tern-conformance: {message}");
            ExitCode::from(2)
        }
    }
}

/// `--flag value` pairs; every flag takes a value.
fn flags(args: &[String], known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument `{flag}`\n{USAGE}"));
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        out.push((flag.clone(), value.clone()));
    }
    Ok(out)
}

fn get<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
}

fn version_flag(flags: &[(String, String)]) -> Result<Option<Version>, String> {
    get(flags, "--version")
        .map(|v| Version::parse(v).ok_or(format!("--version {v}: expected 3.1.1 or 5")))
        .transpose()
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let flags = flags(
        args,
        &[
            "--broker",
            "--ws",
            "--version",
            "--filter",
            "--json",
            "--skips",
            "--name",
            "--threads",
            "--client",
            "--restricted",
        ],
    )?;
    let broker = get(&flags, "--broker").ok_or("--broker HOST:PORT is required")?;
    let mut target = Target::new(broker, get(&flags, "--ws").map(str::to_string))?;
    if let Some(r) = get(&flags, "--restricted") {
        target.restricted = Some(Target::new(r, None)?.tcp);
    }
    let version = version_flag(&flags)?;
    let name = get(&flags, "--name").unwrap_or("broker");
    let skips = match get(&flags, "--skips") {
        None => Skips::default(),
        Some(s) => match Skips::builtin(s) {
            Some(parsed) => parsed?,
            None => {
                Skips::parse(&std::fs::read_to_string(s).map_err(|e| format!("--skips {s}: {e}"))?)?
            }
        },
    };
    let threads = match get(&flags, "--threads") {
        Some(n) => n.parse().map_err(|_| "--threads needs a number")?,
        None => 16,
    };
    // The client-side tests check tern-client against a scripted broker:
    // run them with our broker's run, not with another broker's.
    let client = get(&flags, "--client").is_some_and(|v| v == "yes");
    let selected = cases::select(
        version,
        get(&flags, "--filter"),
        client,
        target.restricted.is_some(),
    );
    let mut stdout = std::io::stdout();
    let report = runner::run(name, &target, &selected, &skips, threads, &mut stdout);
    if let Some(path) = get(&flags, "--json") {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n").map_err(|e| format!("--json {path}: {e}"))?;
    }
    let _ = writeln!(
        stdout,
        "{} passed, {} failed, {} skipped",
        report.passed, report.failed, report.skipped
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_report(path: &str) -> Result<runner::RunReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

fn write_doc(args: &[String]) -> Result<ExitCode, String> {
    let flags = flags(args, &["--tern", "--mosquitto", "--out"])?;
    let tern = read_report(get(&flags, "--tern").ok_or("--tern FILE is required")?)?;
    let mosquitto = read_report(get(&flags, "--mosquitto").ok_or("--mosquitto FILE is required")?)?;
    let out = get(&flags, "--out").ok_or("--out FILE is required")?;
    let table = Table::load()?;
    let text = doc::render(&table, &tern, &mosquitto)?;
    std::fs::write(out, text).map_err(|e| format!("{out}: {e}"))?;
    eprintln!("wrote {out}");
    Ok(ExitCode::SUCCESS)
}

fn list(args: &[String]) -> Result<ExitCode, String> {
    let flags = flags(args, &["--version", "--filter"])?;
    for case in cases::select(version_flag(&flags)?, get(&flags, "--filter"), true, true) {
        println!("{} {} (v{})", case.id, case.title, case.version);
    }
    Ok(ExitCode::SUCCESS)
}
