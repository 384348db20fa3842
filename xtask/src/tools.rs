//! Running commands and installing the tools the checks need.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace root (the parent of `xtask/`).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Runs a command to completion in the workspace root; fails if it fails.
/// Where cargo builds: `CARGO_TARGET_DIR`, or `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    cmd.current_dir(root());
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{}`: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed with {status}", describe(cmd)))
    }
}

/// `cargo`, as the one running xtask.
///
/// The variables `cargo run` set for the xtask itself are removed, so the
/// builds it starts see the same environment as a plain `cargo` command
/// and reuse its build (build scripts such as ring's rerun when they change).
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || matches!(
                &*key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&*key);
        }
    }
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Installs a cargo subcommand at a pinned version unless that version is
/// already installed. Fails loudly if it cannot.
pub(crate) fn ensure_cargo_tool(krate: &str, version: &str) -> Result<(), String> {
    let binary = krate;
    let installed = Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // `cargo-fuzz --version` prints "cargo-fuzz 0.13.2"; cargo-deny prints "cargo-deny 0.20.2".
    if installed.split_whitespace().any(|w| w == version) {
        return Ok(());
    }
    eprintln!("xtask: installing {krate} {version}");
    run(cargo().args(["install", "--locked", krate, "--version", version]))
}

/// Installs Debian packages unless every listed command already exists.
pub(crate) fn ensure_apt(commands: &[&str], packages: &[&str]) -> Result<(), String> {
    if commands.iter().all(|c| which(c)) {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {packages:?}");
    let sudo = if is_root() { None } else { Some("sudo") };
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)?;
    match commands.iter().find(|c| !which(c)) {
        Some(missing) => Err(format!(
            "`{missing}` still missing after installing {packages:?}"
        )),
        None => Ok(()),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether a command is on the PATH.
pub(crate) fn which(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
}
