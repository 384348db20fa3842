//! A simulated network link: sans-IO, seeded, with the same input / poll
//! shape as the protocol state machines.
//!
//! A link has two directions, each a queue of `(deliver_at, chunk)`. A
//! transmitted packet is split at random points into chunks (split reads)
//! and chunks are sometimes glued to the one before (coalesced reads); each
//! chunk is delivered at `max(previous deliver_at, now + latency + jitter)`,
//! so the byte stream keeps its order, as TCP does. Everything due is read
//! in one go, so several packets, or a packet and a half, arrive together.
//!
//! Faults: [`Link::reset`] (both ends see the close; bytes not yet
//! delivered vanish, so each side received a prefix of the other's stream),
//! [`Link::go_silent`] (half-open: everything is dropped without a word;
//! only keep alive can notice), and [`Link::close`] (an orderly FIN after
//! the data already sent).

use crate::{FaultProfile, rng::Rng};
use bytes::{Bytes, BytesMut};
use core::time::Duration;
use std::collections::VecDeque;
use tern_session::Instant;

/// A direction on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Client to broker.
    ToBroker,
    /// Broker to client.
    ToClient,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToBroker => 0,
            Dir::ToClient => 1,
        }
    }
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Bytes (everything that was due, coalesced).
    Data(Bytes),
    /// The stream ended: FIN after the data, or a reset.
    Closed,
}

#[derive(Debug, Clone)]
enum Chunk {
    Data(Bytes),
    Closed,
}

#[derive(Debug, Clone, Default)]
struct Pipe {
    chunks: VecDeque<(Instant, Chunk)>,
    last_at: Instant,
    /// A FIN or reset is queued: later transmits are dropped.
    ended: bool,
    bytes: usize,
}

impl Pipe {
    fn push(&mut self, at: Instant, chunk: Chunk) {
        let at = at.max(self.last_at);
        self.last_at = at;
        if let Chunk::Data(d) = &chunk {
            self.bytes += d.len();
        }
        self.chunks.push_back((at, chunk));
    }
}

/// One simulated connection between a client and the broker.
#[derive(Debug, Clone)]
pub struct Link {
    latency: Duration,
    pipes: [Pipe; 2],
    silent: bool,
}

impl Link {
    /// A link with a one-way base latency drawn from the profile.
    pub fn new(rng: &mut Rng, profile: &FaultProfile) -> Self {
        let (lo, hi) = profile.latency_us;
        Self {
            latency: Duration::from_micros(rng.range(lo, hi)),
            pipes: [Pipe::default(), Pipe::default()],
            silent: false,
        }
    }

    /// The base one-way latency.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Whether the link has gone silent (half-open).
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// Bytes sent in `dir` and not yet delivered.
    pub fn in_flight(&self, dir: Dir) -> usize {
        self.pipes[dir.index()].bytes
    }

    /// Whether `dir` has ended (FIN or reset queued or delivered).
    pub fn is_ended(&self, dir: Dir) -> bool {
        self.pipes[dir.index()].ended
    }

    // ---- input ----

    /// Sends one encoded packet in `dir`.
    pub fn transmit(
        &mut self,
        now: Instant,
        dir: Dir,
        data: Bytes,
        rng: &mut Rng,
        profile: &FaultProfile,
    ) {
        let pipe = &mut self.pipes[dir.index()];
        if self.silent || pipe.ended || data.is_empty() {
            return;
        }
        let mut pieces = Vec::new();
        if data.len() > 1 && rng.chance(profile.split) {
            let cuts = rng.range(1, 3.min(data.len() as u64 - 1));
            let mut points: Vec<usize> = (0..cuts)
                .map(|_| rng.range(1, data.len() as u64 - 1) as usize)
                .collect();
            points.sort_unstable();
            points.dedup();
            let mut start = 0;
            for p in points {
                pieces.push(data.slice(start..p));
                start = p;
            }
            pieces.push(data.slice(start..));
        } else {
            pieces.push(data);
        }
        for piece in pieces {
            let at = if rng.chance(profile.coalesce) {
                // Glued to what is already queued.
                now + self.latency
            } else {
                now + self.latency + Duration::from_micros(rng.range(0, profile.jitter_us))
            };
            pipe.push(at, Chunk::Data(piece));
        }
    }

    /// Ends `dir` in order: a FIN delivered after the data already sent.
    pub fn close(&mut self, now: Instant, dir: Dir) {
        let pipe = &mut self.pipes[dir.index()];
        if self.silent || pipe.ended {
            return;
        }
        pipe.ended = true;
        pipe.push(now + self.latency, Chunk::Closed);
    }

    /// Resets the link: undelivered bytes in both directions vanish and both
    /// ends see the close at `now` (the reset outruns queued data).
    pub fn reset(&mut self, now: Instant) {
        self.silent = false;
        for pipe in &mut self.pipes {
            if pipe.ended && pipe.chunks.is_empty() {
                continue;
            }
            pipe.chunks.clear();
            pipe.bytes = 0;
            pipe.ended = true;
            pipe.last_at = now;
            pipe.push(now, Chunk::Closed);
        }
    }

    /// Half-open: from now on everything is dropped without notice.
    pub fn go_silent(&mut self) {
        self.silent = true;
        for pipe in &mut self.pipes {
            pipe.chunks.clear();
            pipe.bytes = 0;
        }
    }

    // ---- output ----

    /// When the next chunk is due, in either direction.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pipes
            .iter()
            .filter_map(|p| p.chunks.front().map(|c| c.0))
            .min()
    }

    /// When the next chunk is due in `dir`.
    pub fn next_due(&self, dir: Dir) -> Option<Instant> {
        self.pipes[dir.index()].chunks.front().map(|c| c.0)
    }

    /// Everything due in `dir` by `now`: the bytes, coalesced, or the close
    /// once the bytes before it were read.
    pub fn poll_deliver(&mut self, now: Instant, dir: Dir) -> Option<Delivery> {
        let pipe = &mut self.pipes[dir.index()];
        let mut out = BytesMut::new();
        while let Some((at, chunk)) = pipe.chunks.front() {
            if *at > now {
                break;
            }
            match chunk {
                Chunk::Data(d) => {
                    out.extend_from_slice(d);
                    pipe.bytes -= d.len();
                    pipe.chunks.pop_front();
                }
                Chunk::Closed => {
                    if out.is_empty() {
                        pipe.chunks.pop_front();
                        return Some(Delivery::Closed);
                    }
                    break;
                }
            }
        }
        (!out.is_empty()).then(|| Delivery::Data(out.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(link: &mut Link, dir: Dir) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut closed = false;
        while let Some(t) = link.next_due(dir) {
            match link.poll_deliver(t, dir) {
                Some(Delivery::Data(d)) => got.extend_from_slice(&d),
                Some(Delivery::Closed) => closed = true,
                None => unreachable!("due"),
            }
        }
        (got, closed)
    }

    #[test]
    fn keeps_order_through_splits_jitter_and_coalescing() {
        let mut rng = Rng::new(3);
        let mut link = Link::new(&mut rng, &FaultProfile::HEAVY);
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let data: Vec<u8> = (0..(i % 17 + 1)).map(|b| (b + i) as u8).collect();
            sent.extend_from_slice(&data);
            let now = Instant::from_millis(u64::from(i));
            link.transmit(
                now,
                Dir::ToBroker,
                data.into(),
                &mut rng,
                &FaultProfile::HEAVY,
            );
        }
        link.close(Instant::from_secs(1), Dir::ToBroker);
        let (got, closed) = drain(&mut link, Dir::ToBroker);
        assert_eq!(got, sent);
        assert!(closed);
    }

    #[test]
    fn a_reset_delivers_a_prefix_then_the_close() {
        let mut rng = Rng::new(4);
        let mut link = Link::new(&mut rng, &FaultProfile::LIGHT);
        let p = FaultProfile::LIGHT;
        link.transmit(
            Instant::ZERO,
            Dir::ToClient,
            Bytes::from_static(b"abc"),
            &mut rng,
            &p,
        );
        let first_due = link.next_due(Dir::ToClient).unwrap();
        let _ = link.poll_deliver(first_due, Dir::ToClient);
        link.transmit(
            first_due,
            Dir::ToClient,
            Bytes::from_static(b"def"),
            &mut rng,
            &p,
        );
        link.reset(first_due);
        assert_eq!(
            link.poll_deliver(first_due, Dir::ToClient),
            Some(Delivery::Closed)
        );
        assert_eq!(
            link.poll_deliver(first_due, Dir::ToBroker),
            Some(Delivery::Closed)
        );
        link.transmit(
            first_due,
            Dir::ToClient,
            Bytes::from_static(b"late"),
            &mut rng,
            &p,
        );
        assert_eq!(link.poll_timeout(), None);
    }

    #[test]
    fn a_silent_link_drops_everything() {
        let mut rng = Rng::new(5);
        let p = FaultProfile::NONE;
        let mut link = Link::new(&mut rng, &p);
        link.transmit(
            Instant::ZERO,
            Dir::ToBroker,
            Bytes::from_static(b"x"),
            &mut rng,
            &p,
        );
        link.go_silent();
        link.transmit(
            Instant::ZERO,
            Dir::ToBroker,
            Bytes::from_static(b"y"),
            &mut rng,
            &p,
        );
        link.close(Instant::ZERO, Dir::ToBroker);
        assert_eq!(link.poll_timeout(), None);
    }
}
