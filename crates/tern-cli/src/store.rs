//! `tern store check DIR` and `tern store dump DIR`: an operator's view of a
//! broker's data directory (tern-store). Neither changes a record; both
//! refuse a directory a running broker holds.

use crate::codec::Failure;
use crate::mqtt::failure;
use clap::{Args, Subcommand};
use std::path::PathBuf;

pub(crate) const ABOUT: &str = "\
Inspect a broker's data directory (the one given to `tern broker --data-dir`)
while the broker is stopped.

`check` decodes every record, checks each record's checksum and the
references between records (every subscription, queued message and QoS 2
state belongs to a stored session; every queued message's body exists and
its reference count is right), prints the number of records per table and
each problem found, and exits 1 if there is any. Records the broker set
aside as corrupt at start-up are listed as problems too.

`dump` prints every record, one line each: table, key, decoded value.";

pub(crate) const EXAMPLE: &str = "\
Example:
  $ tern store check /var/lib/tern
  $ tern store dump /var/lib/tern | grep '^sessions'";

/// `tern store`'s subcommands.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Check every record and the references between them.
    Check {
        /// The data directory.
        dir: PathBuf,
    },
    /// Print every record.
    Dump {
        /// The data directory.
        dir: PathBuf,
    },
}

/// Runs `tern store …`.
pub(crate) fn run(args: &StoreArgs) -> Result<(), Failure> {
    match &args.command {
        StoreCommand::Check { dir } => {
            let report = tern_store::check(dir).map_err(|e| failure(e.to_string()))?;
            for (table, n) in &report.counts {
                println!("{table}: {n}");
            }
            for p in &report.problems {
                println!("problem: {p}");
            }
            if report.problems.is_empty() {
                println!("ok");
                Ok(())
            } else {
                Err(failure(format!("{} problem(s)", report.problems.len())))
            }
        }
        StoreCommand::Dump { dir } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            tern_store::dump(dir, &mut out).map_err(|e| failure(e.to_string()))
        }
    }
}
