//! A readable trace of the run: one line per packet and per notable event.
//!
//! The last lines are kept for the failure report; every line also feeds a
//! running FNV-1a hash, so two runs can be compared cheaply (the
//! determinism test compares the hashes and, with `full_trace`, the lines).

use std::{collections::VecDeque, fmt::Write as _};
use tern_codec::{Packet, QoS, ReasonCode};
use tern_session::Instant;

/// How many lines a failure report shows.
pub const TAIL: usize = 60;

/// The trace of one run.
#[derive(Debug, Clone)]
pub struct Trace {
    tail: VecDeque<String>,
    full: Option<Vec<String>>,
    hash: u64,
    lines: u64,
}

impl Trace {
    /// A trace that keeps the last [`TAIL`] lines, or every line if `full`.
    pub fn new(full: bool) -> Self {
        Self {
            tail: VecDeque::with_capacity(TAIL + 1),
            full: full.then(Vec::new),
            hash: 0xcbf2_9ce4_8422_2325,
            lines: 0,
        }
    }

    /// Adds a line, stamped with the virtual time.
    pub fn line(&mut self, now: Instant, text: &str) {
        let mut line = String::with_capacity(text.len() + 16);
        let nanos = now.as_nanos();
        let _ = write!(
            line,
            "t={}.{:06}s {}",
            nanos / 1_000_000_000,
            (nanos % 1_000_000_000) / 1000,
            text
        );
        for b in line.bytes() {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.lines += 1;
        if let Some(full) = &mut self.full {
            full.push(line.clone());
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// The last lines.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Every line, if kept.
    pub fn full(&self) -> Option<&[String]> {
        self.full.as_deref()
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many lines were written.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

fn q(qos: QoS) -> u8 {
    qos.as_u8()
}

fn code(c: ReasonCode) -> String {
    format!("0x{:02x}", c as u8)
}

/// A one-line description of a packet: `PUBLISH q1 id=5 t/a/x dup=0 "c1:7"`.
pub fn describe(p: &Packet) -> String {
    match p {
        Packet::Connect(c) => {
            let mut s = format!(
                "CONNECT v{} {} clean={} ka={}",
                c.protocol.level(),
                c.client_id,
                u8::from(c.clean_start),
                c.keep_alive
            );
            if let Some(e) = c.properties.session_expiry_interval {
                let _ = write!(s, " sei={e}");
            }
            if let Some(r) = c.properties.receive_maximum {
                let _ = write!(s, " rm={r}");
            }
            if let Some(w) = &c.will {
                let _ = write!(
                    s,
                    " will={} q{} r={} delay={}",
                    String::from_utf8_lossy(&w.payload),
                    q(w.qos),
                    u8::from(w.retain),
                    w.properties.will_delay_interval.unwrap_or(0)
                );
            }
            s
        }
        Packet::ConnAck(c) => format!(
            "CONNACK sp={} {}",
            u8::from(c.session_present),
            code(c.reason_code)
        ),
        Packet::Publish(p) => {
            let mut s = format!("PUBLISH q{}", q(p.qos));
            if let Some(id) = p.packet_id {
                let _ = write!(s, " id={id}");
            }
            let _ = write!(
                s,
                " {} dup={} r={} {:?}",
                p.topic,
                u8::from(p.dup),
                u8::from(p.retain),
                String::from_utf8_lossy(&p.payload)
            );
            if let Some(a) = p.properties.topic_alias {
                let _ = write!(s, " alias={a}");
            }
            if let Some(e) = p.properties.message_expiry_interval {
                let _ = write!(s, " mei={e}");
            }
            s
        }
        Packet::PubAck(a) => format!("PUBACK id={} {}", a.packet_id, code(a.reason_code)),
        Packet::PubRec(a) => format!("PUBREC id={} {}", a.packet_id, code(a.reason_code)),
        Packet::PubRel(a) => format!("PUBREL id={} {}", a.packet_id, code(a.reason_code)),
        Packet::PubComp(a) => format!("PUBCOMP id={} {}", a.packet_id, code(a.reason_code)),
        Packet::Subscribe(s) => {
            let mut out = format!("SUBSCRIBE id={}", s.packet_id);
            for f in &s.filters {
                let o = &f.options;
                let _ = write!(
                    out,
                    " {} q{} nl={} rap={} rh={}",
                    f.filter,
                    q(o.qos),
                    u8::from(o.no_local),
                    u8::from(o.retain_as_published),
                    o.retain_handling as u8
                );
            }
            if let Some(id) = s.properties.subscription_identifier {
                let _ = write!(out, " sid={}", id.get());
            }
            out
        }
        Packet::SubAck(s) => {
            let codes: Vec<String> = s.reason_codes.iter().map(|c| code(*c)).collect();
            format!("SUBACK id={} [{}]", s.packet_id, codes.join(","))
        }
        Packet::Unsubscribe(u) => {
            let filters: Vec<&str> = u.filters.iter().map(|f| f.as_str()).collect();
            format!("UNSUBSCRIBE id={} {}", u.packet_id, filters.join(" "))
        }
        Packet::UnsubAck(u) => format!("UNSUBACK id={}", u.packet_id),
        Packet::PingReq => "PINGREQ".into(),
        Packet::PingResp => "PINGRESP".into(),
        Packet::Disconnect(d) => {
            let mut s = format!("DISCONNECT {}", code(d.reason_code));
            if let Some(e) = d.properties.session_expiry_interval {
                let _ = write!(s, " sei={e}");
            }
            s
        }
        Packet::Auth(a) => format!("AUTH {}", code(a.reason_code)),
    }
}
