//! Fixed seeds per fault profile that must pass. `cargo xtask sim` runs
//! many more, in release mode.

use tern_sim::{FaultProfile, Options, run};

fn sweep(faults: FaultProfile, seeds: std::ops::Range<u64>, clients: usize, steps: usize) {
    let o = Options {
        clients,
        steps,
        faults,
        ..Options::default()
    };
    for seed in seeds {
        if let Err(f) = run(seed, &o) {
            panic!("\n{f}");
        }
    }
}

#[test]
fn seeds_pass_without_faults() {
    sweep(FaultProfile::NONE, 0..25, 8, 400);
}

#[test]
fn seeds_pass_with_light_faults() {
    sweep(FaultProfile::LIGHT, 0..25, 8, 400);
}

#[test]
fn seeds_pass_with_heavy_faults() {
    sweep(FaultProfile::HEAVY, 0..25, 8, 400);
}

#[test]
fn seeds_pass_with_few_and_many_clients() {
    sweep(FaultProfile::HEAVY, 100..110, 3, 150);
    sweep(FaultProfile::HEAVY, 200..204, 16, 800);
}
