//! One seed, one run: the same seed replays exactly, and a failure comes
//! back the same every time, with what it takes to reproduce it.

use tern_sim::{FaultProfile, Options, minimise, run};

fn options(faults: FaultProfile) -> Options {
    Options {
        clients: 6,
        steps: 250,
        faults,
        full_trace: true,
        ..Options::default()
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for faults in FaultProfile::ALL {
        let o = options(faults);
        let a = run(11, &o).expect("seed 11 passes");
        let b = run(11, &o).expect("seed 11 passes");
        assert!(a.trace_lines > 100, "{faults}: a real run");
        assert_eq!(a.trace, b.trace, "{faults}: every line the same");
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.end, b.end);
        assert_eq!(a.stats, b.stats);
    }
}

#[test]
fn different_seeds_make_different_runs() {
    let o = options(FaultProfile::HEAVY);
    let a = run(1, &o).unwrap();
    let b = run(2, &o).unwrap();
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn a_failure_replays_exactly_and_says_how_to_reproduce_it() {
    // Self-test: a durable subscriber's application loses a message.
    let o = Options {
        lose_delivery: Some(3),
        ..Options::default()
    };
    let a = run(11, &o).expect_err("the loss is caught");
    let b = run(11, &o).expect_err("again");
    assert_eq!(a.checker, "delivery");
    assert_eq!(a.message, b.message);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.trace_hash, b.trace_hash);
    let report = a.to_string();
    assert!(report.contains("seed 11 FAILED [delivery]"), "{report}");
    assert!(
        report.contains("--seed 11 --clients 8 --steps 600 --faults light --lose-delivery 3"),
        "{report}"
    );
    // The lines about the lost message, from publish to loss.
    assert!(a.related.iter().any(|l| l.contains("LOSES")), "{report}");
    assert!(
        a.related.iter().any(|l| l.contains("->b PUBLISH")),
        "{report}"
    );
    assert!(!a.trace.is_empty());
}

#[test]
fn the_minimiser_finds_smaller_options_that_still_fail() {
    let o = Options {
        lose_delivery: Some(3),
        ..Options::default()
    };
    let small = minimise(11, &o).expect("it fails");
    assert_eq!(small.checker, "delivery");
    assert!(small.options.clients <= o.clients);
    assert!(small.options.steps <= o.steps);
    assert!(small.options.clients < o.clients || small.options.steps < o.steps);
    // The smaller options reproduce the failure on their own.
    assert!(run(11, &small.options).is_err());
}
