//! The tests, one per observable statement, registered in one table.
//!
//! A test is a plain function of a [`Ctx`] returning a [`TestResult`];
//! [`all`] lists every (id, version, title, function). Where the same
//! behaviour is stated in both versions (under the same or different ids),
//! one function is registered once per version.

use crate::{
    Version,
    harness::{Ctx, TestResult},
};

mod client;
mod connect;
mod mqtt5;
mod publish;
mod restricted;
mod retain;
mod subscribe;
mod ws;

/// One registered test.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The statement it checks, e.g. `MQTT-3.1.2-24`.
    pub id: &'static str,
    /// The version whose statement it is (and which the test speaks).
    pub version: Version,
    /// A short title.
    pub title: &'static str,
    /// The test.
    pub run: fn(&Ctx) -> TestResult,
    /// Which side it tests: the broker under test, or tern-client against
    /// a scripted broker.
    pub side: Side,
}

/// Which implementation a test checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The broker given to the runner.
    Broker,
    /// tern-client, driven against a scripted broker built from the codec;
    /// the broker under test plays no part.
    Client,
    /// The broker under test, configured with Maximum QoS 1, without
    /// retained messages, and with [`RESTRICTED_ACL`](crate::RESTRICTED_ACL)
    /// (`--restricted HOST:PORT`).
    Restricted,
}

/// Registers a test for MQTT 3.1.1.
macro_rules! v3 {
    ($id:literal, $title:literal, $f:path) => {
        $crate::cases::Case {
            id: $id,
            version: $crate::Version::V3_1_1,
            title: $title,
            run: $f,
            side: $crate::cases::Side::Broker,
        }
    };
    (client $id:literal, $title:literal, $f:path) => {
        $crate::cases::Case {
            id: $id,
            version: $crate::Version::V3_1_1,
            title: $title,
            run: $f,
            side: $crate::cases::Side::Client,
        }
    };
    (restricted $id:literal, $title:literal, $f:path) => {
        $crate::cases::Case {
            id: $id,
            version: $crate::Version::V3_1_1,
            title: $title,
            run: $f,
            side: $crate::cases::Side::Restricted,
        }
    };
}

/// Registers a test for MQTT 5.0.
macro_rules! v5 {
    ($id:literal, $title:literal, $f:path) => {
        $crate::cases::Case {
            id: $id,
            version: $crate::Version::V5,
            title: $title,
            run: $f,
            side: $crate::cases::Side::Broker,
        }
    };
    (client $id:literal, $title:literal, $f:path) => {
        $crate::cases::Case {
            id: $id,
            version: $crate::Version::V5,
            title: $title,
            run: $f,
            side: $crate::cases::Side::Client,
        }
    };
    (restricted $id:literal, $title:literal, $f:path) => {
        $crate::cases::Case {
            id: $id,
            version: $crate::Version::V5,
            title: $title,
            run: $f,
            side: $crate::cases::Side::Restricted,
        }
    };
}
pub(crate) use {v3, v5};

/// Every test, in registration order.
pub fn all() -> Vec<Case> {
    [
        connect::CASES,
        publish::CASES,
        subscribe::CASES,
        retain::CASES,
        mqtt5::CASES,
        ws::CASES,
        client::CASES,
        restricted::CASES,
    ]
    .concat()
}

/// The tests of `version` (or both) whose id or title contains `filter`;
/// the client-side tests only if `client` says so, those needing the
/// restricted broker only if `restricted` says so.
pub fn select(
    version: Option<Version>,
    filter: Option<&str>,
    client: bool,
    restricted: bool,
) -> Vec<Case> {
    all()
        .into_iter()
        .filter(|c| match c.side {
            Side::Broker => true,
            Side::Client => client,
            Side::Restricted => restricted,
        })
        .filter(|c| version.is_none_or(|v| v == c.version))
        .filter(|c| {
            filter.is_none_or(|f| {
                let f = f.to_lowercase();
                c.id.to_lowercase().contains(&f) || c.title.to_lowercase().contains(&f)
            })
        })
        .collect()
}
