//! `tern passwd`: manages a password file as `mosquitto_passwd` does, with
//! its flags, so the same file serves mosquitto and `tern broker`.
//!
//! The hashing is tern-broker's (`security::PasswordHash`); this module
//! adds the salt (from the operating system's random source), the file
//! editing and the prompts.

use crate::codec::Failure;
use crate::mqtt::{failure, usage};
use clap::{Args, ValueEnum};
use std::{
    io::{BufRead, IsTerminal},
    path::{Path, PathBuf},
};
use tern_broker::security::{
    DEFAULT_ITERATIONS, MOSQUITTO_SALT_LEN, PasswordHash, SALT_LEN, SCRAM_SALT_LEN,
};

pub(crate) const ABOUT: &str = "\
Manage a password file for `tern broker` and mosquitto, with mosquitto_passwd's
flags and file format: one `user:$7$101$salt$hash` line per user (PBKDF2 with
SHA-512, mosquitto 2.0's default; -I sets the iterations), `$6$salt$hash` with
`-H sha512` (mosquitto 1.6's SHA-512), or with `-H argon2id` the
`$argon2id$v=19$m=47104,t=1,p=1$salt$hash` line mosquitto 2.1 writes by
default (mosquitto 2.0, Debian 12's, cannot read it). Lines of other users and
comments are kept.

With --scram the line is a SCRAM-SHA-256 credential instead, for MQTT 5
enhanced authentication (method SCRAM-SHA-256) with `tern broker`:
`user:SCRAM-SHA-256$4096:salt$StoredKey:ServerKey` (RFC 5803's form); with
--scram-sha512 a SCRAM-SHA-512 one (`user:SCRAM-SHA-512$4096:...`). Such a
user may also log in with a plain password. mosquitto does not read these
lines: keep SCRAM users in a file only Tern reads.

Without -b the password is read from the terminal twice, without echo (or
once from standard input when it is not a terminal).";

pub(crate) const EXAMPLE: &str = "\
Example:
  $ tern passwd -c /etc/tern/passwd alice
  $ tern passwd -b /etc/tern/passwd bob s3cret
  $ tern passwd -H argon2id -b /etc/tern/passwd dana s3cret
  $ tern passwd -b --scram /etc/tern/passwd carol s3cret
  $ tern passwd -D /etc/tern/passwd bob
  $ tern passwd -U /etc/tern/plain-text-passwords";

/// The hash to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Hash {
    /// PBKDF2-HMAC-SHA512, 101 iterations (`$7$`).
    #[value(name = "sha512-pbkdf2")]
    Pbkdf2,
    /// SHA-512 of the password and salt (`$6$`), for mosquitto 1.6.
    Sha512,
    /// Argon2id with mosquitto 2.1's parameters (`$argon2id$`; 46 MiB,
    /// one pass): mosquitto 2.1's default; mosquitto 2.0 cannot read it.
    Argon2id,
}

/// `tern passwd`'s flags, as mosquitto_passwd's.
#[derive(Debug, Args)]
pub(crate) struct PasswdArgs {
    /// The hash algorithm.
    #[arg(short = 'H', value_enum, default_value = "sha512-pbkdf2")]
    hash: Hash,
    /// Create the file (overwriting one that exists).
    #[arg(short = 'c', conflicts_with_all = ["delete", "update"])]
    create: bool,
    /// Delete the user instead of setting a password.
    #[arg(short = 'D', conflicts_with_all = ["batch", "update"])]
    delete: bool,
    /// Batch mode: the password is the last argument.
    #[arg(short = 'b')]
    batch: bool,
    /// Hash every plain-text password of FILE in place.
    #[arg(short = 'U', conflicts_with_all = ["batch"])]
    update: bool,
    /// Write a SCRAM-SHA-256 credential (4096 iterations) instead of a
    /// mosquitto hash, for MQTT 5 enhanced authentication.
    #[arg(long)]
    scram: bool,
    /// Write a SCRAM-SHA-512 credential (4096 iterations) instead, for
    /// enhanced authentication with the method SCRAM-SHA-512.
    #[arg(long = "scram-sha512", conflicts_with = "scram")]
    scram_sha512: bool,
    /// PBKDF2 iterations for `-H sha512-pbkdf2` (mosquitto 2.1's `-I`;
    /// default 101, what mosquitto 2.0 writes). Every CONNECT of the user
    /// costs this many HMAC-SHA512 rounds.
    #[arg(short = 'I', value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    iterations: Option<u32>,
    /// The password file.
    file: PathBuf,
    /// The user (not with -U).
    user: Option<String>,
    /// The password (only with -b).
    password: Option<String>,
}

pub(crate) fn run(args: &PasswdArgs) -> Result<(), Failure> {
    if args.iterations.is_some() && (args.scram || args.scram_sha512 || args.hash != Hash::Pbkdf2) {
        return Err(usage("-I is for -H sha512-pbkdf2 only".into()));
    }
    if args.update {
        if args.user.is_some() {
            return Err(usage("-U takes only the file".into()));
        }
        return update(args);
    }
    let user = args
        .user
        .as_deref()
        .ok_or_else(|| usage("a user name is needed".into()))?;
    if user.is_empty() || user.contains(':') {
        return Err(usage(format!(
            "{user:?}: a user name must be non-empty and cannot contain ':'"
        )));
    }
    if args.password.is_some() && !args.batch {
        return Err(usage("a password argument needs -b".into()));
    }
    let mut lines = if args.create {
        Vec::new()
    } else {
        read_lines(&args.file)?
    };
    let position = lines.iter().position(|l| line_user(l) == Some(user));
    if args.delete {
        let at = position
            .ok_or_else(|| failure(format!("{}: no user {user:?}", args.file.display())))?;
        lines.remove(at);
    } else {
        let password = match (&args.password, args.batch) {
            (Some(p), true) => p.clone(),
            (None, true) => return Err(usage("-b needs the password as the last argument".into())),
            _ => prompt()?,
        };
        let line = format!("{user}:{}", hash(args, password.as_bytes())?);
        match position {
            Some(at) => lines[at] = line,
            None => lines.push(line),
        }
    }
    write_lines(&args.file, &lines)
}

/// `-U`: hashes the passwords that are not hashes yet.
fn update(args: &PasswdArgs) -> Result<(), Failure> {
    let mut lines = read_lines(&args.file)?;
    for line in &mut lines {
        let Some((user, password)) = line.split_once(':') else {
            continue;
        };
        if line.starts_with('#') || PasswordHash::parse(password.trim()).is_ok() {
            continue;
        }
        *line = format!("{user}:{}", hash(args, password.as_bytes())?);
    }
    write_lines(&args.file, &lines)
}

fn hash(args: &PasswdArgs, password: &[u8]) -> Result<PasswordHash, Failure> {
    let random = |salt: &mut [u8]| {
        getrandom::fill(salt)
            .map_err(|e| failure(format!("no random salt from the operating system: {e}")))
    };
    if args.scram || args.scram_sha512 {
        let mut salt = [0u8; SCRAM_SALT_LEN];
        random(&mut salt)?;
        let mechanism = if args.scram_sha512 {
            tern_broker::security::scram::Mechanism::Sha512
        } else {
            tern_broker::security::scram::Mechanism::Sha256
        };
        return Ok(PasswordHash::scram(
            mechanism,
            password,
            salt,
            tern_broker::security::scram::MIN_ITERATIONS,
        ));
    }
    if args.hash == Hash::Argon2id {
        let mut salt = [0u8; MOSQUITTO_SALT_LEN];
        random(&mut salt)?;
        return Ok(PasswordHash::argon2id(password, salt));
    }
    let mut salt = [0u8; SALT_LEN];
    random(&mut salt)?;
    Ok(match args.hash {
        Hash::Sha512 => PasswordHash::sha512(password, salt),
        _ => PasswordHash::pbkdf2(
            password,
            salt,
            args.iterations.unwrap_or(DEFAULT_ITERATIONS),
        ),
    })
}

/// The user a `user:hash` line is for.
fn line_user(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(user, _)| user.trim())
}

fn read_lines(path: &Path) -> Result<Vec<String>, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| failure(format!("{}: {e}", path.display())))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Writes the file through a temporary file and a rename, so a crash never
/// leaves half a password file.
fn write_lines(path: &Path, lines: &[String]) -> Result<(), Failure> {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let tmp = path.with_extension("tern-tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| failure(format!("{}: {e}", path.display())))
}

/// The password, twice from a terminal (without echo), or once from a pipe.
fn prompt() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| failure(format!("reading the password: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let read = |what: &str| {
        rpassword::prompt_password(what).map_err(|e| failure(format!("reading the password: {e}")))
    };
    let first = read("Password: ")?;
    if read("Reenter password: ")? != first {
        return Err(failure("Passwords do not match.".into()));
    }
    Ok(first)
}
