//! Runs the suite against one broker and reports.
//!
//! Tests run concurrently on a few worker threads (their client ids and
//! topics are unique, so they do not interfere); each runs on its own thread
//! with a watchdog, so a hung test fails instead of hanging the run. Results
//! print in registration order, one line each.

use crate::{
    Version,
    cases::Case,
    harness::{Ctx, Stop, Target},
    skips::Skips,
};
use serde::{Deserialize, Serialize};
use std::{
    io::Write,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// The longest a single test may take before it counts as failed.
pub const TEST_WATCHDOG: Duration = Duration::from_secs(30);

/// How a skip caused by the broker's skip list begins its reason.
pub const SKIP_LIST_PREFIX: &str = "skip list: ";

/// A test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    /// The broker honoured the statement.
    Pass,
    /// It did not, with what was seen.
    Fail(String),
    /// The test did not run, with why.
    Skip(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// The statement id.
    pub id: String,
    /// `3.1.1` or `5`.
    pub version: String,
    /// The test's title.
    pub title: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it took.
    pub millis: u64,
    /// Whether it tested tern-client (against a scripted broker) rather
    /// than the broker.
    #[serde(default)]
    pub client: bool,
}

/// The whole run, as written by `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The broker's name (`tern`, `mosquitto`, or as given).
    pub broker: String,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests skipped.
    pub skipped: usize,
    /// One entry per test, in registration order.
    pub tests: Vec<TestReport>,
}

impl RunReport {
    /// The report of one test, if it ran.
    pub fn get(&self, version: Version, id: &str) -> Option<&TestReport> {
        self.all(version, id).next()
    }

    /// The reports of every test of one statement (a statement about
    /// either side may have a broker test and a client test).
    pub fn all(&self, version: Version, id: &str) -> impl Iterator<Item = &TestReport> {
        self.tests
            .iter()
            .filter(move |t| t.id == id && t.version == version.name())
    }
}

/// How a skip-list entry that passed begins its failure.
pub const UNEXPECTED_PASS: &str = "unexpected pass: ";

/// The outcome of a test that `ran`, given the skip list's entry for it
/// (`listed`) and whether a skip list is in force, as BoGo judges: a listed
/// test that fails or skips is skipped with the list's reason; a listed test
/// that passes fails as an unexpected pass; with a list in force, a test
/// that skips itself unlisted fails. Without a list, outcomes stand.
pub fn judge(ran: Outcome, listed: Option<&str>, in_force: bool) -> Outcome {
    match (ran, listed) {
        (Outcome::Pass, Some(reason)) => Outcome::Fail(format!(
            "{UNEXPECTED_PASS}the skip list says \"{reason}\"; remove the entry"
        )),
        (Outcome::Fail(_) | Outcome::Skip(_), Some(reason)) => {
            Outcome::Skip(format!("{SKIP_LIST_PREFIX}{reason}"))
        }
        (Outcome::Skip(why), None) if in_force => Outcome::Fail(format!(
            "skipped itself ({why}), and the skip list does not list it"
        )),
        (ran, None) => ran,
    }
}

/// The line printed for a test.
pub fn line(report: &TestReport) -> String {
    let head = format!("{} {} (v{})", report.id, report.title, report.version);
    match &report.outcome {
        Outcome::Pass => format!("PASS {head}"),
        Outcome::Fail(why) => format!("FAIL {head}: {why}"),
        Outcome::Skip(why) => format!("SKIP {head}: {why}"),
    }
}

/// Runs `cases` against `target`, printing one line per test to `out` as
/// results arrive (in order), and returns the report.
pub fn run(
    broker: &str,
    target: &Target,
    cases: &[Case],
    skips: &Skips,
    threads: usize,
    out: &mut dyn Write,
) -> RunReport {
    let queue: Arc<Mutex<std::vec::IntoIter<(usize, Case)>>> = Arc::new(Mutex::new(
        cases
            .iter()
            .copied()
            .enumerate()
            .collect::<Vec<_>>()
            .into_iter(),
    ));
    let (tx, rx) = mpsc::channel::<(usize, TestReport)>();
    let mut workers = Vec::new();
    for _ in 0..threads.max(1) {
        let queue = Arc::clone(&queue);
        let tx = tx.clone();
        let target = target.clone();
        let skips = skips.clone();
        workers.push(std::thread::spawn(move || {
            loop {
                let next = queue.lock().expect("queue lock").next();
                let Some((index, case)) = next else { break };
                let report = run_one(&target, case, &skips);
                if tx.send((index, report)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut slots: Vec<Option<TestReport>> = vec![None; cases.len()];
    let mut printed = 0;
    for (index, report) in rx {
        slots[index] = Some(report);
        while let Some(Some(report)) = slots.get(printed) {
            let _ = writeln!(out, "{}", line(report));
            let _ = out.flush();
            printed += 1;
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    let tests: Vec<TestReport> = slots.into_iter().flatten().collect();
    let count = |f: fn(&Outcome) -> bool| tests.iter().filter(|t| f(&t.outcome)).count();
    RunReport {
        broker: broker.to_string(),
        passed: count(|o| matches!(o, Outcome::Pass)),
        failed: count(|o| matches!(o, Outcome::Fail(_))),
        skipped: count(|o| matches!(o, Outcome::Skip(_))),
        tests,
    }
}

/// Runs one test on its own thread under the watchdog, then its cleanup,
/// and judges the result against the skip list.
fn run_one(target: &Target, case: Case, skips: &Skips) -> TestReport {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut target = target.clone();
    if case.side == crate::cases::Side::Restricted {
        if let Some(restricted) = target.restricted {
            target.tcp = restricted;
        }
    }
    std::thread::spawn(move || {
        let ctx = Ctx::new(target, case.version);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&ctx)));
        ctx.cleanup();
        let _ = tx.send(result);
    });
    let ran = match rx.recv_timeout(TEST_WATCHDOG) {
        Ok(Ok(Ok(()))) => Outcome::Pass,
        Ok(Ok(Err(Stop::Fail(why)))) => Outcome::Fail(why),
        Ok(Ok(Err(Stop::Skip(why)))) => Outcome::Skip(why),
        Ok(Err(_)) => Outcome::Fail("test panicked".into()),
        Err(_) => Outcome::Fail(format!(
            "test did not finish within {} s",
            TEST_WATCHDOG.as_secs()
        )),
    };
    let outcome = judge(ran, skips.reason(case.version, case.id), skips.in_force());
    TestReport {
        id: case.id.to_string(),
        version: case.version.name().to_string(),
        title: case.title.to_string(),
        outcome,
        millis: started.elapsed().as_millis() as u64,
        client: case.side == crate::cases::Side::Client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Outcome {
        Outcome::Fail("saw something else".into())
    }

    fn skip() -> Outcome {
        Outcome::Skip("no WebSocket listener".into())
    }

    #[test]
    fn a_listed_test_that_fails_or_skips_is_skipped_with_the_lists_reason() {
        let listed = Outcome::Skip(format!("{SKIP_LIST_PREFIX}known"));
        assert_eq!(judge(fail(), Some("known"), true), listed);
        assert_eq!(judge(skip(), Some("known"), true), listed);
    }

    #[test]
    fn a_listed_test_that_passes_fails_the_run() {
        let Outcome::Fail(why) = judge(Outcome::Pass, Some("known"), true) else {
            panic!("an unexpected pass must fail");
        };
        assert!(why.starts_with(UNEXPECTED_PASS), "{why}");
    }

    #[test]
    fn an_unlisted_skip_fails_once_a_list_is_in_force() {
        assert!(matches!(judge(skip(), None, true), Outcome::Fail(_)));
        // Without a list (a broker given by address), a skip stays a skip.
        assert_eq!(judge(skip(), None, false), skip());
        assert_eq!(judge(Outcome::Pass, None, true), Outcome::Pass);
        assert_eq!(judge(fail(), None, true), fail());
    }

    #[test]
    fn a_parsed_list_is_in_force_even_when_empty() {
        assert!(Skips::parse("").unwrap().in_force());
        assert!(!Skips::default().in_force());
    }
}
