//! Test brokers: Debian's mosquitto and Tern's own (behind one "which
//! broker" fixture), a scripted fake broker for what a real broker will not
//! do, and a proxy that can lose a connection's traffic and cut it.

#![allow(dead_code, unreachable_pub)]

pub mod broker;
pub mod fake;
pub mod mosquitto;
pub mod pki;
pub mod proxy;

use std::{future::Future, time::Duration};

/// How long any one awaited event may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`PATIENCE`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}

/// Asserts that `future` does not complete within `window` (how else to see
/// that something is still waiting).
pub async fn still_pending<F: Future>(what: &str, window: Duration, future: F)
where
    F::Output: std::fmt::Debug,
{
    if let Ok(out) = tokio::time::timeout(window, future).await {
        panic!("{what} completed ({out:?}) but should still be waiting");
    }
}
