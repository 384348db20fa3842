//! The application model: what each simulated client decides to do, drawn
//! from its own seeded stream.
//!
//! Topics come from a small space (`t/{a,b,c}/{x,y}`) so that filters with
//! `+` and `#`, shared groups and retained messages overlap often. Payloads
//! carry the message's identity ([`MsgId`]), so every delivery is
//! attributable to one publish.

use crate::{
    FaultProfile,
    model::{MsgId, Role},
    rng::Rng,
};
use bytes::Bytes;
use core::{
    num::{NonZeroU16, NonZeroU32},
    time::Duration,
};
use std::collections::BTreeSet;
use tern_codec::{
    ConnectProperties, MqttString, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubscribeFilter, SubscribeProperties, SubscriptionId, SubscriptionOptions,
    Will, WillProperties,
};
use tern_session::{
    ConnectOptions, OverflowPolicy, QueueLimits,
    scram::{SCRAM_SHA_256, ScramClient, nonce_from_bytes},
};

/// The topics messages go to.
pub const TOPICS: [&str; 6] = ["t/a/x", "t/a/y", "t/b/x", "t/b/y", "t/c/x", "t/c/y"];

/// Filters subscribers choose from.
pub const FILTERS: [&str; 8] = [
    "t/a/x", "t/b/y", "t/+/x", "t/a/+", "t/#", "#", "+/+/y", "t/+/+",
];

/// Shared subscriptions MQTT 5 subscribers choose from.
pub const SHARED: [&str; 3] = ["$share/g1/t/+/x", "$share/g2/t/#", "$share/g1/t/a/+"];

/// What an application does next.
#[derive(Debug, Clone)]
pub enum Action {
    /// Publish a message.
    Publish {
        /// Its identity.
        msg: MsgId,
        /// The message.
        publish: Publish,
    },
    /// Subscribe.
    Subscribe {
        /// The filters.
        filters: Vec<SubscribeFilter>,
        /// The properties.
        properties: SubscribeProperties,
    },
    /// Unsubscribe.
    Unsubscribe {
        /// The filters.
        filters: Vec<MqttString>,
    },
    /// Disconnect with a reason code, and stay away for a while.
    Disconnect {
        /// The reason code (MQTT 3.1.1: always normal).
        reason: ReasonCode,
        /// A new Session Expiry Interval for the DISCONNECT (MQTT 5).
        session_expiry: Option<u32>,
        /// How long to stay offline.
        offline_for: Duration,
    },
    /// The process restarts.
    Restart {
        /// Whether it persisted its session.
        with_session: bool,
        /// How long it is down.
        down_for: Duration,
    },
    /// Abandon the connection without closing it and connect again.
    TakeOver,
    /// Nothing this time.
    Nothing,
}

/// One simulated client application.
#[derive(Debug, Clone)]
pub struct App {
    /// The client index.
    pub index: usize,
    /// Its role.
    pub role: Role,
    /// Its client identifier.
    pub client_id: MqttString,
    /// Its protocol version.
    pub version: ProtocolVersion,
    rng: Rng,
    /// A second stream for choices added later (manual acknowledgement,
    /// client queue limits, maximum packet size), so they do not shift the
    /// first stream's draws.
    extra: Rng,
    /// A third: whether a connection logs in with SCRAM-SHA-256, and its
    /// client nonce.
    auth: Rng,
    /// The SCRAM-SHA-256 exchange of the connection being set up, if it
    /// uses enhanced authentication.
    pub scram: Option<ScramClient>,
    /// The next message sequence number.
    seq: u32,
    /// The next will sequence number.
    will_seq: u32,
    /// Whether its wills may be retained. Off under a memory budget: the
    /// broker then retains no will without a sign the model could see.
    pub retained_wills: bool,
    /// The filters a durable subscriber subscribes once.
    pub fixed: Vec<SubscribeFilter>,
    /// Its subscription identifier.
    fixed_id: Option<SubscriptionId>,
    /// Whether the fixed subscription was requested.
    pub subscribed: bool,
    /// Filters this application holds (as far as it knows).
    filters: BTreeSet<String>,
    /// Wants a persistent session on the next connection.
    persistent: bool,
    /// Restarted without its session: the next connection starts clean.
    lost_state: bool,
    /// The Maximum Packet Size it announces, if any (MQTT 5 general clients).
    max_packet: Option<NonZeroU32>,
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text.to_string()).expect("a valid string")
}

fn qos(n: u64) -> QoS {
    QoS::from_u8(n as u8).unwrap_or(QoS::AtMostOnce)
}

impl App {
    /// An application for client `index`.
    pub fn new(index: usize, role: Role, mut rng: Rng) -> Self {
        let mut extra = rng.fork(7);
        let auth = rng.fork(11);
        let version = match role {
            Role::RetainedProbe => ProtocolVersion::V5,
            _ if rng.chance(300) => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V5,
        };
        let v5 = version.is_v5();
        let max_packet = (role == Role::General && v5 && extra.chance(150))
            .then(|| NonZeroU32::new(extra.range(120, 500) as u32))
            .flatten();
        let mut fixed = Vec::new();
        match role {
            Role::WillWatcher => fixed.push(SubscribeFilter {
                filter: s("will/#"),
                options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            }),
            Role::Durable => {
                let n = rng.range(1, 3);
                let mut chosen = BTreeSet::new();
                for _ in 0..n {
                    chosen.insert(*rng.pick(&FILTERS));
                }
                for f in chosen {
                    let q = if rng.chance(100) { 0 } else { rng.range(1, 2) };
                    let mut options = SubscriptionOptions::with_qos(qos(q));
                    if v5 {
                        options.retain_handling = *rng.pick(&[
                            RetainHandling::SendAtSubscribe,
                            RetainHandling::SendAtSubscribeIfNew,
                            RetainHandling::DoNotSend,
                        ]);
                    }
                    fixed.push(SubscribeFilter {
                        filter: s(f),
                        options,
                    });
                }
            }
            Role::RetainedProbe => fixed.push(SubscribeFilter {
                filter: s("#"),
                options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            }),
            Role::General => {}
        }
        let fixed_id = (v5 && role == Role::Durable && rng.chance(400))
            .then(|| SubscriptionId::new(rng.range(1, 1000) as u32))
            .flatten();
        Self {
            index,
            role,
            client_id: s(&format!("c{index}")),
            version,
            rng,
            extra,
            auth,
            scram: None,
            seq: 0,
            will_seq: 0,
            retained_wills: true,
            fixed,
            fixed_id,
            subscribed: false,
            filters: BTreeSet::new(),
            persistent: true,
            lost_state: false,
            max_packet,
        }
    }

    fn v5(&self) -> bool {
        self.version.is_v5()
    }

    /// Whether the application keeps its session forever and never cleans it.
    pub fn is_durable(&self) -> bool {
        matches!(self.role, Role::Durable | Role::WillWatcher)
    }

    /// Options for the next connection; `heal` asks for a plain reconnect
    /// that resumes the session and leaves no will behind.
    pub fn connect_options(&mut self, heal: bool) -> ConnectOptions {
        let v5 = self.v5();
        let rng = &mut self.rng;
        let keep_alive = if rng.chance(100) {
            0
        } else {
            rng.range(2, 20) as u16
        };
        let mut properties = ConnectProperties::default();
        let mut options = ConnectOptions {
            version: self.version,
            keep_alive,
            connect_timeout: Some(Duration::from_secs(10)),
            ..ConnectOptions::new(self.client_id.clone())
        };
        if v5 {
            if rng.chance(250) {
                properties.receive_maximum = NonZeroU16::new(rng.range(1, 5) as u16);
            }
            if rng.chance(200) {
                properties.topic_alias_maximum = Some(rng.range(1, 4) as u16);
            }
            if rng.chance(200) {
                options.outgoing_topic_aliases = rng.range(1, 3) as u16;
            }
        }
        match self.role {
            Role::WillWatcher | Role::Durable => {
                options.clean_start = false;
                if v5 {
                    properties.session_expiry_interval = Some(u32::MAX);
                }
            }
            Role::RetainedProbe => {
                options.clean_start = true;
                options.keep_alive = 0;
            }
            Role::General => {
                // A process that lost its session state starts clean:
                // resuming the broker's session with none would leave the
                // broker's incoming QoS 2 state for identifiers the new
                // session hands out again, and a new message reusing one
                // would be taken for a resend and dropped.
                // (Until a connection that started clean is accepted: a
                // restart can interrupt the attempt.)
                let lost_state = self.lost_state;
                if heal {
                    options.clean_start = lost_state;
                    if v5 {
                        properties.session_expiry_interval = Some(u32::MAX);
                    }
                } else {
                    self.persistent = !rng.chance(250);
                    options.clean_start = !self.persistent || rng.chance(150);
                    options.clean_start |= lost_state;
                    if v5 {
                        let expiry = match rng.below(4) {
                            0 => 0,
                            1 => rng.range(1, 8) as u32,
                            2 => rng.range(20, 120) as u32,
                            _ => u32::MAX,
                        };
                        if expiry > 0 {
                            properties.session_expiry_interval = Some(expiry);
                        }
                    } else if !self.persistent {
                        options.clean_start = true;
                    }
                    if rng.chance(450) {
                        let id = MsgId::will(self.index as u16, self.will_seq);
                        self.will_seq += 1;
                        let pad = rng.range(0, 16) as usize;
                        let q = match rng.below(10) {
                            0 => 0,
                            1..=5 => 1,
                            _ => 2,
                        };
                        let delay = if v5 && rng.chance(500) {
                            Some(rng.range(1, 12) as u32)
                        } else {
                            None
                        };
                        options.will = Some(Will {
                            topic: s(&format!("will/c{}", self.index)),
                            payload: id.payload(pad),
                            qos: qos(q),
                            retain: rng.chance(250) && self.retained_wills,
                            properties: WillProperties {
                                will_delay_interval: delay,
                                ..WillProperties::default()
                            },
                        });
                    }
                }
            }
        }
        let extra = &mut self.extra;
        if self.role != Role::RetainedProbe && extra.chance(250) {
            // The application acknowledges each message itself, later.
            options.manual_acks = true;
        }
        if self.role == Role::General && !heal && extra.chance(200) {
            options.queue = QueueLimits {
                max_messages: extra.range(3, 20) as usize,
                max_bytes: extra.range(200, 2_000) as usize,
                overflow: if extra.chance(500) {
                    OverflowPolicy::DropOldest
                } else {
                    OverflowPolicy::DropNewest
                },
            };
        }
        // Larger messages are dropped by the broker for this client. Fixed
        // for the client's life: lowering it across a reconnect while QoS 2
        // messages are in flight strands the client's state for them.
        properties.maximum_packet_size = self.max_packet;
        // Now and then, MQTT 5 enhanced authentication with SCRAM-SHA-256.
        self.scram = None;
        if v5 && self.auth.chance(300) {
            let nonce = nonce_from_bytes(&self.auth.next_u64().to_le_bytes());
            let client = ScramClient::new(
                self.client_id.as_str(),
                &crate::auth::password(self.index),
                &nonce,
            )
            .expect("a base64 nonce is printable");
            properties.authentication_method = Some(s(SCRAM_SHA_256));
            properties.authentication_data = Some(Bytes::from(client.client_first()));
            self.scram = Some(client);
        }
        options.properties = properties;
        options
    }

    /// How long the application takes to acknowledge a message itself.
    pub fn ack_delay(&mut self) -> Duration {
        Duration::from_micros(self.extra.range(0, 400_000))
    }

    /// The reason code the application acknowledges with: now and then a
    /// general client refuses a message.
    pub fn ack_reason(&mut self) -> ReasonCode {
        if self.role == Role::General && self.extra.chance(50) {
            ReasonCode::UnspecifiedError
        } else {
            ReasonCode::Success
        }
    }

    /// Time until the next workload step.
    pub fn next_step_in(&mut self) -> Duration {
        Duration::from_micros(self.rng.range(10_000, 900_000))
    }

    /// Time before reconnecting after the connection ended unasked.
    pub fn reconnect_in(&mut self) -> Duration {
        Duration::from_micros(self.rng.range(50_000, 2_500_000))
    }

    /// What to do right after connecting.
    pub fn on_connected(&mut self) -> Option<Action> {
        self.lost_state = false;
        if self.fixed.is_empty() || self.subscribed {
            return None;
        }
        self.subscribed = true;
        Some(Action::Subscribe {
            filters: self.fixed.clone(),
            properties: SubscribeProperties {
                subscription_identifier: self.fixed_id,
                ..SubscribeProperties::default()
            },
        })
    }

    /// The next workload step; `connected` says whether a connection is up.
    pub fn step(&mut self, connected: bool, profile: &FaultProfile) -> Action {
        if self.role == Role::RetainedProbe {
            return Action::Nothing;
        }
        if self.rng.chance(profile.client_restart) {
            let with_session = self.is_durable() || self.rng.chance(500);
            return Action::Restart {
                with_session,
                down_for: Duration::from_micros(self.rng.range(10_000, 3_000_000)),
            };
        }
        if self.role != Role::General || !connected {
            return Action::Nothing;
        }
        match self.rng.weighted(&[55, 9, 4, 4, 2, 6]) {
            0 => self.publish(),
            1 => self.subscribe(),
            2 => self.unsubscribe(),
            3 => self.disconnect(),
            4 => Action::TakeOver,
            _ => Action::Nothing,
        }
    }

    fn publish(&mut self) -> Action {
        let v5 = self.v5();
        let rng = &mut self.rng;
        let topic = *rng.pick(&TOPICS);
        let q = qos(rng.weighted(&[30, 40, 30]) as u64);
        let retain = rng.chance(150);
        let empty = retain && rng.chance(200);
        let msg = MsgId::msg(self.index as u16, self.seq);
        self.seq += 1;
        let pad = if rng.chance(50) {
            rng.range(100, 400)
        } else {
            rng.range(0, 24)
        } as usize;
        let expiry = (v5 && rng.chance(150)).then(|| rng.range(1, 8) as u32);
        Action::Publish {
            msg,
            publish: Publish {
                topic: s(topic),
                qos: q,
                retain,
                payload: if empty {
                    bytes::Bytes::new()
                } else {
                    msg.payload(pad)
                },
                properties: PublishProperties {
                    message_expiry_interval: expiry,
                    ..PublishProperties::default()
                }
                .into(),
                ..Publish::default()
            },
        }
    }

    fn subscribe(&mut self) -> Action {
        let v5 = self.v5();
        let rng = &mut self.rng;
        let n = rng.range(1, 2);
        let mut filters = Vec::new();
        let mut chosen = BTreeSet::new();
        for _ in 0..n {
            let shared = v5 && rng.chance(250);
            let f = if shared {
                *rng.pick(&SHARED)
            } else {
                *rng.pick(&FILTERS)
            };
            if !chosen.insert(f) {
                continue;
            }
            let mut options = SubscriptionOptions::with_qos(qos(rng.below(3)));
            if v5 {
                options.no_local = !shared && rng.chance(100);
                options.retain_as_published = rng.chance(300);
                options.retain_handling = *rng.pick(&[
                    RetainHandling::SendAtSubscribe,
                    RetainHandling::SendAtSubscribeIfNew,
                    RetainHandling::DoNotSend,
                ]);
            }
            self.filters.insert(f.to_string());
            filters.push(SubscribeFilter {
                filter: s(f),
                options,
            });
        }
        let subscription_identifier = (v5 && rng.chance(300))
            .then(|| SubscriptionId::new(rng.range(1, 1000) as u32))
            .flatten();
        Action::Subscribe {
            filters,
            properties: SubscribeProperties {
                subscription_identifier,
                ..SubscribeProperties::default()
            },
        }
    }

    fn unsubscribe(&mut self) -> Action {
        let held: Vec<String> = self.filters.iter().cloned().collect();
        if held.is_empty() {
            return Action::Nothing;
        }
        let f = self.rng.pick(&held).clone();
        self.filters.remove(&f);
        Action::Unsubscribe {
            filters: vec![s(&f)],
        }
    }

    fn disconnect(&mut self) -> Action {
        let v5 = self.v5();
        let rng = &mut self.rng;
        let reason = if v5 {
            match rng.below(10) {
                0..=5 => ReasonCode::Success,
                6..=8 => ReasonCode::DisconnectWithWill,
                _ => ReasonCode::UnspecifiedError,
            }
        } else {
            ReasonCode::Success
        };
        let session_expiry = (v5 && rng.chance(150)).then(|| rng.range(0, 10) as u32);
        Action::Disconnect {
            reason,
            session_expiry,
            offline_for: Duration::from_micros(rng.range(100_000, 15_000_000)),
        }
    }

    /// Forgets what it knew of its subscriptions (a session was lost).
    pub fn forget_subscriptions(&mut self) {
        self.lost_state = true;
        self.filters.clear();
        if !self.is_durable() {
            self.subscribed = false;
        }
    }
}
