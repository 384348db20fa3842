//! tern-topic: subscription matching, insert and remove rates, memory per
//! subscription, and retained-index queries, each next to the naive scan (a
//! list of every filter or topic checked with `tern_topic::matches`) measured
//! in the same run as the floor to beat.
//!
//! Run with `cargo bench -p tern-benches --bench topic -- --measurement-time 3`.
//! The fixtures are built once per process (the 1,000,000-subscription one
//! takes a few seconds) and described on stderr: sizes, node counts, bytes
//! per subscription, and the match count of every benchmarked topic, each
//! checked against the naive scan before anything is timed.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::{
    alloc::System,
    collections::BTreeSet,
    hint::black_box,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};
use tern_topic::{
    DeliveryOptions, MatchBuffer, RetainedIndex, SubscriptionFilter, SubscriptionTree, TopicFilter,
    TopicName, matches,
};

/// Counts every allocation, to measure what the tree holds.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated by the whole process.
fn live_bytes() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

// ---------------------------------------------------------------------------
// A deterministic workload.

/// SplitMix64: a fixed-seed generator, so every run builds the same fixture.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const DOMAINS: &[&str] = &[
    "factory", "fleet", "grid", "home", "lab", "office", "retail", "farm",
];
const SITES: u64 = 500;
const DEVICES: u64 = 1000;
const KINDS: &[&str] = &["telemetry", "status", "cmd", "config", "event", "alarm"];
const METRICS: &[&str] = &[
    "temp", "humidity", "power", "voltage", "current", "rssi", "battery", "door", "motion", "co2",
];
const STATS: &[&str] = &["raw", "avg", "min", "max"];

/// A device: (domain, site, device).
type Device = (u64, u64, u64);

/// The device a client belongs to: 100,000 clients cover 100,000 devices.
fn own_device(client: u32) -> Device {
    let c = u64::from(client);
    (c % 8, (c / 8) % SITES, c / (8 * SITES))
}

fn random_device(rng: &mut Rng) -> Device {
    (rng.below(8), rng.below(SITES), rng.below(DEVICES))
}

/// The first `depth` (1..=7) levels of a topic of `device`:
/// `domain/site-S/dev-D/kind/metric/ch-C/stat`.
fn topic_levels(rng: &mut Rng, device: Device, depth: usize) -> Vec<String> {
    let (d, s, v) = device;
    let all = [
        DOMAINS[d as usize].to_string(),
        format!("site-{s}"),
        format!("dev-{v}"),
        rng.pick(KINDS).to_string(),
        rng.pick(METRICS).to_string(),
        format!("ch-{}", rng.below(8)),
        rng.pick(STATS).to_string(),
    ];
    all[..depth].to_vec()
}

/// One subscription filter of the realistic mix: 5% shared; of the rest 70%
/// exact, 20% with one `+`, 10% ending in `#`; depths 3 to 7; four in five
/// on the client's own device.
fn random_filter(rng: &mut Rng, client: u32, shared_pool: &[String]) -> String {
    if rng.below(100) < 5 {
        let filter = &shared_pool[rng.below(shared_pool.len() as u64) as usize];
        return format!("$share/workers-{}/{filter}", rng.below(10));
    }
    let device = if rng.below(5) < 4 {
        own_device(client)
    } else {
        random_device(rng)
    };
    plain_filter(rng, device)
}

fn plain_filter(rng: &mut Rng, device: Device) -> String {
    let depth = 3 + rng.below(5) as usize;
    let kind = rng.below(100);
    if kind < 70 {
        topic_levels(rng, device, depth).join("/")
    } else if kind < 90 {
        let mut levels = topic_levels(rng, device, depth);
        let at = if rng.below(20) == 0 {
            0
        } else {
            1 + rng.below(depth as u64 - 1) as usize
        };
        levels[at] = "+".into();
        levels.join("/")
    } else {
        let mut levels = topic_levels(rng, device, depth - 1);
        levels.push("#".into());
        levels.join("/")
    }
}

/// Subscription options: what a broker would store.
#[derive(Clone, Copy, Debug)]
struct Opts {
    qos: u8,
    id: u32,
}

impl DeliveryOptions for Opts {
    type Qos = u8;
    fn granted_qos(&self) -> u8 {
        self.qos
    }
    fn subscription_identifier(&self) -> Option<u32> {
        (self.id != 0).then_some(self.id)
    }
}

fn parse(text: &str) -> SubscriptionFilter {
    SubscriptionFilter::parse(Bytes::copy_from_slice(text.as_bytes())).expect("valid filter")
}

fn topic(text: &str) -> TopicName {
    TopicName::try_from(text).expect("valid topic")
}

/// What the naive scan counts as a match for `topic`: each matching plain
/// subscription, and each matching (group, filter) once.
fn naive_count(subs: &[(u32, SubscriptionFilter, Opts)], t: &TopicName) -> usize {
    let mut groups = BTreeSet::new();
    let mut plain = 0;
    for (_, f, _) in subs {
        if matches(f.filter(), t) {
            match f.group() {
                None => plain += 1,
                Some(g) => {
                    groups.insert((g.clone(), f.filter().clone()));
                }
            }
        }
    }
    plain + groups.len()
}

/// The naive floor: scan every subscription with the spec matcher, keeping
/// the indices of the matches (in a reused buffer, like the tree).
fn naive_match(subs: &[(u32, SubscriptionFilter, Opts)], t: &TopicName, out: &mut Vec<u32>) {
    out.clear();
    for (i, (_, f, _)) in subs.iter().enumerate() {
        if matches(f.filter(), t) {
            out.push(i as u32);
        }
    }
}

fn tree_count(tree: &SubscriptionTree<u32, Opts>, t: &TopicName, buf: &mut MatchBuffer) -> usize {
    let m = tree.matches(t, buf);
    m.plain_len() + m.shared_len()
}

struct Fixture {
    subs: Vec<(u32, SubscriptionFilter, Opts)>,
    tree: SubscriptionTree<u32, Opts>,
    /// (label, matches, topic), for 0, 1, 10 and 1,000 matches.
    topics: Vec<(&'static str, usize, TopicName)>,
    /// Subscriptions for new clients, for the insert and remove rates.
    extra: Vec<(u32, SubscriptionFilter, Opts)>,
}

/// `planted` subscriptions that each match `hot` (a topic on a device that is
/// not in the random vocabulary): 70% exact, 20% `+`, 10% `#`.
fn planted_filters(hot: &str, n: usize) -> Vec<String> {
    let levels: Vec<&str> = hot.split('/').collect();
    let plus = format!("{}/{}/+/{}", levels[0], levels[1], levels[3..].join("/"));
    let hash = format!("{}/#", levels[..3].join("/"));
    (0..n)
        .map(|i| match i % 10 {
            0..=6 => hot.to_string(),
            7 | 8 => plus.clone(),
            _ => hash.clone(),
        })
        .collect()
}

fn build_fixture(total: usize, clients: u32) -> Fixture {
    let started = Instant::now();
    let mut rng = Rng(0x5EED_0000 ^ total as u64);
    let per_client = total / clients as usize;
    let shared_pool: Vec<String> = (0..1000)
        .map(|_| {
            let device = random_device(&mut rng);
            plain_filter(&mut rng, device)
        })
        .collect();
    let mut texts: Vec<Vec<String>> = (0..clients)
        .map(|c| {
            let mut mine: Vec<String> = Vec::with_capacity(per_client);
            while mine.len() < per_client {
                let f = random_filter(&mut rng, c, &shared_pool);
                if !mine.contains(&f) {
                    mine.push(f);
                }
            }
            mine
        })
        .collect();

    // Plant exactly 10 and 1,000 matches on two topics: count what the random
    // subscriptions already match, then give the rest to clients whose last
    // subscription matches neither topic.
    let hot = [
        (1000, "fleet/site-0/dev-hot/status/battery", 0u32),
        (10, "grid/site-7/dev-warm/status/battery", clients / 2),
    ];
    let hot_topics: Vec<TopicName> = hot.iter().map(|(_, t, _)| topic(t)).collect();
    for (i, &(target, hot_text, first_client)) in hot.iter().enumerate() {
        let flat: Vec<(u32, SubscriptionFilter, Opts)> = texts
            .iter()
            .enumerate()
            .flat_map(|(c, fs)| {
                fs.iter()
                    .map(move |f| (c as u32, parse(f), Opts { qos: 0, id: 0 }))
            })
            .collect();
        let already = naive_count(&flat, &hot_topics[i]);
        assert!(already <= target, "{already} random matches for {hot_text}");
        let mut planted = planted_filters(hot_text, target - already).into_iter();
        let mut client = first_client;
        let mut next = planted.next();
        while let Some(filter) = next.take() {
            let mine = &mut texts[client as usize];
            let last = parse(mine.last().unwrap());
            let hits_hot = hot_topics.iter().any(|t| matches(last.filter(), t));
            if !hits_hot && !mine.contains(&filter) {
                *mine.last_mut().unwrap() = filter;
                next = planted.next();
            } else {
                next = Some(filter);
            }
            client += 1;
        }
    }

    let subs: Vec<(u32, SubscriptionFilter, Opts)> = texts
        .iter()
        .enumerate()
        .flat_map(|(c, fs)| {
            fs.iter().enumerate().map(move |(i, f)| {
                let opts = Opts {
                    qos: (i % 3) as u8,
                    id: if i % 2 == 0 { c as u32 + 1 } else { 0 },
                };
                (c as u32, parse(f), opts)
            })
        })
        .collect();
    drop(texts);

    // Memory: everything the tree allocates while the subscriptions go in
    // (filters are passed by reference; the tree copies what it keeps).
    let before = live_bytes();
    let mut tree = SubscriptionTree::new();
    for (c, f, o) in &subs {
        tree.insert(*c, f, *o);
    }
    let tree_bytes = live_bytes() - before;
    assert_eq!(tree.len(), subs.len());

    let mut buf = MatchBuffer::new();
    // 1 match: the first deep random topic with exactly one whose sibling
    // (last level replaced by an unknown one) has none, so the miss is
    // measured on the same path. Also the first deep random topic with no
    // match at all.
    let (one, sibling) = loop {
        let device = random_device(&mut rng);
        let depth = 5 + rng.below(3) as usize;
        let mut levels = topic_levels(&mut rng, device, depth);
        let t = topic(&levels.join("/"));
        if tree_count(&tree, &t, &mut buf) != 1 {
            continue;
        }
        *levels.last_mut().unwrap() = "unknown".into();
        let miss = topic(&levels.join("/"));
        if tree_count(&tree, &miss, &mut buf) == 0 {
            break (t, miss);
        }
    };
    let random_miss = loop {
        let device = random_device(&mut rng);
        let depth = 5 + rng.below(3) as usize;
        let t = topic(&topic_levels(&mut rng, device, depth).join("/"));
        if tree_count(&tree, &t, &mut buf) == 0 {
            break t;
        }
    };
    let topics = vec![
        ("0-sibling", 0, sibling),
        ("0-random", 0, random_miss),
        ("1", 1, one),
        ("10", 10, hot_topics[1].clone()),
        ("1000", 1000, hot_topics[0].clone()),
    ];
    for (_, want, t) in &topics {
        assert_eq!(naive_count(&subs, t), *want, "naive count for {t}");
        assert_eq!(tree_count(&tree, t, &mut buf), *want, "tree count for {t}");
    }

    // Memory after churn: insert and remove 100,000 more; what stays?
    let extra: Vec<(u32, SubscriptionFilter, Opts)> = (0..100_000u32)
        .map(|i| {
            let c = clients + i / 10;
            (
                c,
                parse(&random_filter(&mut rng, c, &shared_pool)),
                Opts { qos: 1, id: 0 },
            )
        })
        .collect();
    // Three rounds: the first may grow the slabs' capacity, later ones
    // must not grow it further.
    let nodes_before = tree.node_count();
    let mut retained_after = Vec::new();
    let mut peak = 0;
    let before_churn = live_bytes();
    for _ in 0..3 {
        for (c, f, o) in &extra {
            tree.insert(*c, f, *o);
        }
        peak = peak.max(live_bytes() - before_churn);
        for (c, f, _) in &extra {
            tree.remove(c, f);
        }
        retained_after.push(live_bytes() - before_churn);
    }
    assert_eq!(tree.len(), subs.len());
    assert_eq!(
        tree.node_count(),
        nodes_before,
        "churn leaves no node behind"
    );

    eprintln!(
        "fixture: {} subscriptions of {} clients, {} trie nodes, {:.1} bytes/subscription \
         ({} MB); 3 rounds of inserting and removing 100,000 more: +{} MB at peak, \
         {:?} bytes retained after each round (slab capacity); built in {:.1?}",
        subs.len(),
        clients,
        tree.node_count(),
        tree_bytes as f64 / subs.len() as f64,
        tree_bytes / 1_000_000,
        peak / 1_000_000,
        retained_after,
        started.elapsed(),
    );
    for (label, _, t) in &topics {
        eprintln!("  {label:>9}: {t}");
    }
    Fixture {
        subs,
        tree,
        topics,
        extra,
    }
}

fn fixture_100k() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build_fixture(100_000, 10_000))
}

fn fixture_1m() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(build_fixture(1_000_000, 100_000)))
}

// ---------------------------------------------------------------------------
// Subscription benchmarks.

fn bench_match(c: &mut Criterion, name: &str, fixture: &Fixture) {
    let mut group = c.benchmark_group(format!("topic/match/{name}"));
    let mut buf = MatchBuffer::new();
    for (label, _, t) in &fixture.topics {
        group.bench_with_input(BenchmarkId::new("tree", label), t, |b, t| {
            b.iter(|| {
                // Visit every match, as a broker must: each plain
                // subscription and each shared group.
                let m = fixture.tree.matches(black_box(t), &mut buf);
                let plain = m.plain().map(|p| *p.key() as usize).sum::<usize>();
                black_box(plain + m.shared().map(|g| g.members().len()).sum::<usize>())
            })
        });
    }
    for (label, _, t) in fixture.topics.iter().filter(|(_, n, _)| *n >= 10) {
        group.bench_with_input(BenchmarkId::new("tree+merge", label), t, |b, t| {
            b.iter(|| {
                let mut m = fixture.tree.matches(black_box(t), &mut buf);
                let mut sum = 0usize;
                for client in m.per_client() {
                    sum +=
                        usize::from(client.max_qos()) + client.subscription_identifiers().count();
                }
                black_box(sum + m.shared_len())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("topic/match/{name}"));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let mut out = Vec::new();
    for (label, _, t) in &fixture.topics {
        group.bench_with_input(BenchmarkId::new("naive", label), t, |b, t| {
            b.iter(|| {
                naive_match(&fixture.subs, black_box(t), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// Inserts (or removes) `fixture.extra` in batches, timing only one side.
fn churn(fixture: &mut Fixture, iters: u64, time_insert: bool) -> Duration {
    let Fixture { tree, extra, .. } = fixture;
    let mut elapsed = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let batch = &extra[..left.min(extra.len())];
        let start = Instant::now();
        for (c, f, o) in batch {
            tree.insert(*c, f, *o);
        }
        if time_insert {
            elapsed += start.elapsed();
        }
        let start = Instant::now();
        for (c, f, _) in batch {
            tree.remove(c, f);
        }
        if !time_insert {
            elapsed += start.elapsed();
        }
        left -= batch.len();
    }
    elapsed
}

fn bench_subscriptions(c: &mut Criterion) {
    bench_match(c, "100k", fixture_100k());
    {
        let fixture = fixture_1m().lock().unwrap();
        bench_match(c, "1m", &fixture);
    }
    let mut group = c.benchmark_group("topic/churn/1m");
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| churn(&mut fixture_1m().lock().unwrap(), iters, true))
    });
    group.bench_function("remove", |b| {
        b.iter_custom(|iters| churn(&mut fixture_1m().lock().unwrap(), iters, false))
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// Retained index benchmarks.

struct RetainedFixture {
    topics: Vec<TopicName>,
    index: RetainedIndex<u32>,
    /// (label, filter, matches).
    filters: Vec<(&'static str, TopicFilter, usize)>,
}

fn retained_fixture() -> &'static RetainedFixture {
    static F: OnceLock<RetainedFixture> = OnceLock::new();
    F.get_or_init(|| {
        let started = Instant::now();
        let mut rng = Rng(0x7E7A_1AED);
        let mut seen = BTreeSet::new();
        while seen.len() < 1_000_000 {
            let device = random_device(&mut rng);
            let depth = 3 + rng.below(5) as usize;
            seen.insert(topic_levels(&mut rng, device, depth).join("/"));
        }
        let topics: Vec<TopicName> = seen.into_iter().map(|t| topic(&t)).collect();
        let before = live_bytes();
        let mut index = RetainedIndex::new();
        for (i, t) in topics.iter().enumerate() {
            index.insert(t.clone(), i as u32);
        }
        let bytes = live_bytes() - before;
        let exact = topics[topics.len() / 2].to_string();
        let filters = [
            ("exact", exact.as_str()),
            ("plus", "fleet/+/dev-7/status"),
            ("hash", "fleet/site-3/#"),
        ]
        .map(|(label, f)| {
            let filter = TopicFilter::try_from(f).unwrap();
            let n = index.matching(&filter).count();
            let naive = topics.iter().filter(|t| matches(&filter, t)).count();
            assert_eq!(n, naive, "retained matches for {f}");
            (label, filter, n)
        });
        eprintln!(
            "retained fixture: {} topics, {} trie nodes, {:.1} bytes/topic beyond the names; \
             built in {:.1?}",
            index.len(),
            index.node_count(),
            bytes as f64 / index.len() as f64,
            started.elapsed(),
        );
        for (label, f, n) in &filters {
            eprintln!("  {label}: {f} matches {n}");
        }
        RetainedFixture {
            topics,
            index,
            filters: filters.to_vec(),
        }
    })
}

fn bench_retained(c: &mut Criterion) {
    let fixture = retained_fixture();
    let mut group = c.benchmark_group("topic/retained/1m");
    for (label, filter, _) in &fixture.filters {
        group.bench_with_input(BenchmarkId::new("index", label), filter, |b, f| {
            b.iter(|| fixture.index.matching(black_box(f)).count())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("topic/retained/1m");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (label, filter, _) in &fixture.filters {
        group.bench_with_input(BenchmarkId::new("naive", label), filter, |b, f| {
            b.iter(|| {
                fixture
                    .topics
                    .iter()
                    .filter(|t| matches(black_box(f), t))
                    .count()
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_subscriptions(&mut c);
    bench_retained(&mut c);
    c.final_summary();
}
