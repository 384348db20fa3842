//! Every case, in the order they run.

use super::{Attack, Case, Setup, budget, connections, retained, slow, topics};
use std::time::Duration;

const fn secs(smoke: u64, full: u64) -> (Duration, Duration) {
    (Duration::from_secs(smoke), Duration::from_secs(full))
}

/// The cases of issue 13, and more.
pub(crate) const ALL: &[Case] = &[
    Case {
        name: "baseline",
        what: "no attack: the bystander alone, for the machine's own noise",
        run: |_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(Attack::default())
            })
        },
        limit: secs(10, 10),
        setup: Setup::Anonymous,
    },
    Case {
        name: "deep-retained",
        what: "retains topics of ~65,535 levels (128 KiB smoke, 1 MiB full)",
        run: |ctx| Box::pin(topics::deep_retained(ctx)),
        limit: secs(20, 120),
        setup: Setup::Anonymous,
    },
    Case {
        name: "deep-filters",
        what: "subscribes with deep filters (2×256 KiB smoke, 10×960 KiB full), then disconnects",
        run: |ctx| Box::pin(topics::deep_filters(ctx)),
        limit: secs(20, 180),
        setup: Setup::Anonymous,
    },
    Case {
        name: "slow-fanout",
        what: "never-reading subscribers (4 smoke, 40 full) while a publisher floods QoS 0",
        run: |ctx| Box::pin(slow::slow_fanout(ctx)),
        limit: secs(20, 90),
        setup: Setup::Anonymous,
    },
    Case {
        name: "qos1-unacked",
        what: "QoS 1 subscribers that never read or acknowledge (4 smoke, 10 full)",
        run: |ctx| Box::pin(slow::qos1_unacked(ctx)),
        limit: secs(20, 120),
        setup: Setup::Anonymous,
    },
    Case {
        name: "retained-fanout",
        what: "`#` subscriber over many retained topics (10,000 smoke, 100,000 full)",
        run: |ctx| Box::pin(retained::retained_fanout(ctx)),
        limit: secs(20, 120),
        setup: Setup::Anonymous,
    },
    Case {
        name: "props-retained",
        what: "retained ~1 MB PUBLISHes of 200,000 empty user properties (2 smoke, 10 full)",
        run: |ctx| Box::pin(retained::props_retained(ctx)),
        limit: secs(20, 120),
        setup: Setup::Anonymous,
    },
    Case {
        name: "props-queued",
        what: "the same PUBLISHes at QoS 1, queued for an offline session",
        run: |ctx| Box::pin(retained::props_queued(ctx)),
        limit: secs(20, 120),
        setup: Setup::Anonymous,
    },
    Case {
        name: "memory-budget",
        what: "with a 32 MiB budget (max_memory / memory_limit): 8 KiB retained QoS 1 messages on new topics, queued for 4 offline sessions, until 2× (smoke) or 6× (full) the budget is sent; then 200 connections",
        run: |ctx| Box::pin(budget::memory_budget(ctx)),
        limit: secs(60, 180),
        setup: Setup::MemoryBudget(budget::BUDGET),
    },
    Case {
        name: "qos2-flood",
        what: "QoS 2 PUBLISHes never released (10,000 smoke, 65,535 full)",
        run: |ctx| Box::pin(slow::qos2_flood(ctx)),
        limit: secs(20, 120),
        setup: Setup::Anonymous,
    },
    Case {
        name: "slowloris",
        what: "connections sending CONNECT byte by byte, or holding a partial PUBLISH (300 smoke, 3,000 full; 3 s or 15 s)",
        run: |ctx| Box::pin(connections::slowloris(ctx)),
        limit: secs(20, 90),
        setup: Setup::Anonymous,
    },
    Case {
        name: "ws-half-open",
        what: "WebSocket upgrades never finished (300 smoke, 3,000 full; 3 s or 15 s)",
        run: |ctx| Box::pin(connections::ws_half_open(ctx)),
        limit: secs(20, 60),
        setup: Setup::Anonymous,
    },
    Case {
        name: "connect-storm",
        what: "CONNECT, CONNACK, drop, as fast as possible (32 clients smoke, 128 full)",
        run: |ctx| Box::pin(connections::connect_storm(ctx)),
        limit: secs(20, 60),
        setup: Setup::Anonymous,
    },
    Case {
        name: "password-storm",
        what: "CONNECTs with a password ($7$, 101 PBKDF2 rounds, as mosquitto_passwd writes), 32 at a time (300 smoke, 1,000 full)",
        run: |ctx| Box::pin(connections::password_storm(ctx)),
        limit: secs(30, 120),
        setup: Setup::Passwords {
            iterations: 101,
            check_threads: None,
        },
    },
    Case {
        name: "password-storm-heavy",
        what: "the same with 20,000 PBKDF2 rounds a hash (300 smoke, 1,000 full)",
        run: |ctx| Box::pin(connections::password_storm(ctx)),
        limit: secs(60, 240),
        setup: Setup::Passwords {
            iterations: 20_000,
            check_threads: None,
        },
    },
    Case {
        name: "password-storm-inline",
        what: "password-storm-heavy with Tern's checks on its routing task (check_threads = 0), as before they moved off it",
        run: |ctx| Box::pin(connections::password_storm(ctx)),
        limit: secs(60, 240),
        setup: Setup::Passwords {
            iterations: 20_000,
            check_threads: Some(0),
        },
    },
    Case {
        name: "password-storm-argon2id",
        what: "the password storm with an argon2id line as mosquitto 2.1 writes it (46 MiB, one pass); Tern only: mosquitto 2.0.11 cannot read it",
        run: |ctx| Box::pin(connections::password_storm(ctx)),
        limit: secs(120, 400),
        setup: Setup::Argon2id,
    },
];
