//! The settings file: listeners and limits, in TOML.
//!
//! [`BrokerSettings`] is what `tern broker --config FILE` reads, and what a
//! library user can load to get the same behaviour. Every key is optional
//! and unknown keys are errors, so a typo never silently falls back to a
//! default. `crates/tern-broker/broker.example.toml` documents each key; a
//! test parses it.

use super::{security::SecuritySettings, tls::TlsFiles};
use crate::BrokerConfig;
use serde::{Deserialize, Deserializer, de};
use std::{
    fmt,
    net::SocketAddr,
    num::NonZeroU16,
    path::{Path, PathBuf},
    time::Duration,
};
use tern_codec::QoS;
use tern_session::{OverflowPolicy, QueueLimits};

/// How long at most the server stops reading a publisher whose messages
/// half-fill an online subscriber's queue, by default
/// ([`BrokerConfig::publisher_backpressure`]).
const PUBLISHER_BACKPRESSURE: Duration = Duration::from_millis(500);

/// Everything the server needs: where to listen, and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Where to listen (`[listeners]`).
    pub listeners: Listeners,
    /// Limits and protocol options (`[limits]`).
    pub limits: Limits,
    /// Password file, ACL file, anonymous clients (`[security]`).
    pub security: SecuritySettings,
    /// Certificates for the `tls` and `wss` listeners (`[tls]`).
    pub tls: TlsSettings,
    /// Connections to other brokers (`[[bridge]]`); the tern-bridge crate
    /// runs them.
    pub bridge: Vec<super::bridge_settings::BridgeSettings>,
    /// The monitoring listener (`[metrics]`).
    pub metrics: MetricsSettings,
    /// The data directory and what acknowledgements promise (`[storage]`).
    pub storage: super::storage::StorageSettings,
    /// Joining a cluster of brokers (`[cluster]`); the tern-cluster crate
    /// runs the link.
    pub cluster: ClusterTable,
    /// The file these settings were read from ([`BrokerSettings::load`]),
    /// which SIGHUP reads again.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The `[cluster]` table: the NATS servers and this node's name. Off
/// while `servers` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterTable {
    /// NATS server URLs (`"nats://127.0.0.1:4222"`); empty: no cluster.
    pub servers: Vec<String>,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`).
    pub node_id: Option<String>,
    /// The NATS subject prefix (default `tern`).
    pub prefix: Option<String>,
    /// Replicas of the JetStream stream of retained messages (default 1).
    pub retained_replicas: Option<usize>,
}

/// The `[metrics]` table: the HTTP listener for `/metrics`, `/health` and
/// the dashboard. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Where to listen for HTTP (for example `"127.0.0.1:9883"`).
    pub listen: Option<SocketAddr>,
}

/// The `[tls]` table, with mosquitto's meanings: the server's certificate
/// and key, and how client certificates are checked. TLS 1.2 and 1.3 only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM, leaf first (mosquitto's `certfile`).
    pub cert: Option<PathBuf>,
    /// The server's private key, PEM (mosquitto's `keyfile`).
    pub key: Option<PathBuf>,
    /// CA certificates, PEM, that sign client certificates; without it no
    /// client certificate is asked for.
    pub cafile: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `cafile`.
    pub require_certificate: bool,
    /// A client certificate's Common Name is the client's user name (no
    /// password asked); a client without one is refused.
    pub use_identity_as_username: bool,
}

impl TlsSettings {
    /// The files to load, or what is missing.
    pub fn files(&self) -> Result<TlsFiles, String> {
        if self.use_identity_as_username && self.cafile.is_none() {
            // No client certificate would ever be asked for: everyone refused.
            return Err(
                "use_identity_as_username needs [tls] cafile (--cafile) to verify client \
                 certificates with"
                    .into(),
            );
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                cafile: self.cafile.clone(),
                require_certificate: self.require_certificate,
            }),
            _ => Err("tls and wss listeners need [tls] cert and key (--cert, --key)".into()),
        }
    }
}

/// The `[listeners]` table. Each list replaces its default; an empty list
/// turns that kind of listener off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over TCP (default `["127.0.0.1:1883"]`).
    pub tcp: Vec<SocketAddr>,
    /// MQTT over WebSocket (default `["127.0.0.1:8083"]`).
    pub ws: Vec<SocketAddr>,
    /// The HTTP path of the WebSocket endpoint (default `/mqtt`).
    #[serde(deserialize_with = "http_path")]
    pub ws_path: String,
    /// MQTT over TLS (default none; needs `[tls]`).
    pub tls: Vec<SocketAddr>,
    /// MQTT over WebSocket over TLS (default none; needs `[tls]`).
    pub wss: Vec<SocketAddr>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            ws: vec![SocketAddr::from(([127, 0, 0, 1], 8083))],
            ws_path: "/mqtt".to_string(),
            tls: Vec::new(),
            wss: Vec::new(),
        }
    }
}

/// The `[limits]` table: resource limits and what the broker announces to
/// clients in CONNACK.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    #[serde(deserialize_with = "at_least_one")]
    pub max_connections: usize,
    /// The largest packet accepted, in bytes (announced as Maximum Packet Size).
    #[serde(deserialize_with = "packet_size")]
    pub max_packet_size: u32,
    /// QoS 1 and 2 messages a client may have unacknowledged with the broker
    /// (announced as Receive Maximum; more is a protocol error, 0x93).
    pub max_inflight: NonZeroU16,
    /// QoS 1 and 2 messages the broker has unacknowledged with a client
    /// that announced no Receive Maximum (every MQTT 3.1.1 client);
    /// mosquitto's `max_inflight_messages`, 20.
    pub max_inflight_messages: NonZeroU16,
    /// Messages held per session: waiting (offline, or behind the in-flight
    /// window) and in flight.
    pub max_queued_messages: usize,
    /// Bytes held per session, waiting and in flight: topic, payload and
    /// properties (user properties as their wire encoding, which is how they are held).
    pub max_queued_bytes: usize,
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0: bool,
    /// The most levels a PUBLISH topic or SUBSCRIBE filter may have (200,
    /// like mosquitto). Deeper: MQTT 5 PUBACK/PUBREC 0x90 or SUBACK 0x8F;
    /// MQTT 3.1.1 SUBACK 0x80, or the connection closed for a PUBLISH.
    #[serde(deserialize_with = "at_least_one")]
    pub max_topic_levels: usize,
    /// The most bytes a PUBLISH topic, will topic or SUBSCRIBE filter may
    /// have (4,096). Longer: as for `max_topic_levels`; a will topic: MQTT 5
    /// CONNACK 0x90, MQTT 3.1.1 the connection closed.
    #[serde(deserialize_with = "at_least_one")]
    pub max_topic_length: usize,
    /// The most retained messages the broker keeps, from all clients
    /// (1,000,000). A retained PUBLISH on a new topic past it is delivered
    /// but not retained: MQTT 5 PUBACK/PUBREC 0x97 Quota exceeded (MQTT
    /// 3.1.1 is acknowledged).
    pub max_retained_messages: usize,
    /// The most bytes of retained messages the broker keeps (256 MiB):
    /// topic, payload, properties and per-message overhead. Past it, as
    /// for `max_retained_messages`.
    pub max_retained_bytes: usize,
    /// The most retained messages one client (by client identifier) may
    /// own: those whose latest retained PUBLISH on their topic was its
    /// (100,000). Past it, or past `max_retained_bytes_per_client`, as for
    /// `max_retained_messages`.
    pub max_retained_messages_per_client: usize,
    /// The most bytes of retained messages one client may own (64 MiB).
    pub max_retained_bytes_per_client: usize,
    /// The most subscriptions one client's session may hold; more: SUBACK
    /// 0x97 Quota exceeded (0x80 for MQTT 3.1.1).
    #[serde(deserialize_with = "at_least_one")]
    pub max_subscriptions: usize,
    /// Seconds at most to stop reading a publisher whose messages half-fill
    /// an online subscriber's queue, until it drains (fractions allowed); 0
    /// turns it off: a full queue drops.
    #[serde(deserialize_with = "seconds")]
    pub publisher_backpressure: Duration,
    /// Seconds a new connection has to send CONNECT (fractions allowed).
    #[serde(deserialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// The longest keep alive allowed, in seconds; MQTT 5 clients asking for
    /// more (or none) are told this value. Absent: no limit.
    pub max_keep_alive: Option<u16>,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// The highest QoS accepted and granted (0, 1 or 2).
    #[serde(deserialize_with = "qos")]
    pub maximum_qos: QoS,
    /// Whether SUBSCRIBE filters may hold `+` and `#`; when false, such a
    /// filter is refused in the SUBACK (MQTT 5: 0xA2 Wildcard Subscriptions
    /// not supported, announced in CONNACK; MQTT 3.1.1: 0x80).
    pub wildcard_subscriptions: bool,
    /// The highest topic alias a client may use, and the most the broker
    /// assigns towards a client (bounded by what it allows); 0: none.
    pub topic_alias_maximum: u16,
    /// Seconds between `$SYS` updates (fractions allowed); 0 turns them off.
    #[serde(deserialize_with = "seconds")]
    pub sys_interval: Duration,
    /// Connections one source (IP) address may open in any one second;
    /// more are refused at their CONNECT with CONNACK 0x9F Connection rate
    /// exceeded (MQTT 3.1.1: return code 3), counted in `limits/refused`.
    /// 0 (the default): no limit.
    pub connections_per_second_per_address: u32,
    /// Connections one listener (each `tcp`, `ws`, `tls`, `wss` address)
    /// may take in any one second, from all addresses together; more are
    /// refused as for `connections_per_second_per_address`. 0 (the
    /// default): no limit.
    pub connections_per_second_per_listener: u32,
    /// The broker-wide memory budget: bytes, or `"N%"` of the machine's
    /// memory (read at start and on reload); 0: none. Default `"50%"`. At
    /// it, PUBLISH is refused (QoS 0 dropped; MQTT 5 QoS 1/2 PUBACK/PUBREC
    /// 0x97; MQTT 3.1.1 closed), new subscriptions get SUBACK 0x97 (3.1.1:
    /// 0x80) and CONNECT gets CONNACK 0x89 (3.1.1: return code 3).
    #[serde(deserialize_with = "super::memory_budget::max_memory")]
    pub max_memory: super::memory_budget::MaxMemory,
    /// What one client (by client identifier) may make the broker hold
    /// (its queued and in-flight messages, subscriptions, connection
    /// buffers, and the retained messages it owns): bytes, or `"N%"` of
    /// `max_memory`; 0: no share. Default `"10%"`. Past it, that client's
    /// PUBLISH is refused as at `max_memory` and its new subscriptions get
    /// SUBACK 0x97, and messages for it are not queued; other clients go
    /// on.
    #[serde(deserialize_with = "super::memory_budget::max_memory_per_client")]
    pub max_memory_per_client: super::memory_budget::MaxMemory,
}

impl Default for Limits {
    fn default() -> Self {
        let config = BrokerConfig::default();
        let server = config.server;
        Self {
            max_connections: 10_000,
            max_packet_size: server.maximum_packet_size,
            max_inflight: server.receive_maximum,
            max_inflight_messages: server.outgoing_inflight,
            max_queued_messages: server.queue.max_messages,
            max_queued_bytes: server.queue.max_bytes,
            queue_qos0: config.queue_qos0_offline,
            max_topic_levels: config.max_topic_levels,
            max_topic_length: config.max_topic_length,
            max_retained_messages: config.retained.max_messages,
            max_retained_bytes: config.retained.max_bytes,
            max_retained_messages_per_client: config.retained.max_messages_per_client,
            max_retained_bytes_per_client: config.retained.max_bytes_per_client,
            max_subscriptions: config.max_subscriptions,
            publisher_backpressure: PUBLISHER_BACKPRESSURE,
            connect_timeout: server.connect_timeout,
            max_keep_alive: server.max_keep_alive,
            retain_available: server.retain_available,
            maximum_qos: server.maximum_qos,
            wildcard_subscriptions: server.wildcard_subscriptions,
            topic_alias_maximum: server.topic_alias_maximum,
            sys_interval: config.sys_interval.unwrap_or(Duration::ZERO),
            connections_per_second_per_address: 0,
            connections_per_second_per_listener: 0,
            max_memory: super::memory_budget::MaxMemory::default(),
            max_memory_per_client: super::memory_budget::DEFAULT_MAX_MEMORY_PER_CLIENT,
        }
    }
}

/// A settings file that could not be read or parsed. The message names the
/// file, and for a bad value the key and line.
#[derive(Debug)]
pub struct SettingsError {
    path: Option<PathBuf>,
    message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SettingsError {}

impl BrokerSettings {
    /// Reads and parses a settings file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SettingsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError {
            path: Some(path.to_path_buf()),
            message: format!("cannot read: {e}"),
        })?;
        let mut settings = Self::from_toml(&text).map_err(|mut e| {
            e.path = Some(path.to_path_buf());
            e
        })?;
        settings.file = Some(path.to_path_buf());
        Ok(settings)
    }

    /// Parses settings from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let settings: Self = toml::from_str(text).map_err(|e: toml::de::Error| SettingsError {
            path: None,
            message: describe(text, &e),
        })?;
        settings.check_bridges().map_err(|message| SettingsError {
            path: None,
            message,
        })?;
        Ok(settings)
    }

    /// Checks the `[[bridge]]` tables: the message names the bridge and key.
    fn check_bridges(&self) -> Result<(), String> {
        for (i, b) in self.bridge.iter().enumerate() {
            b.check().map_err(|e| format!("bridge `{}`: {e}", b.name))?;
            if self.bridge[..i].iter().any(|o| o.name == b.name) {
                return Err(format!("bridge `{}`: name: used twice", b.name));
            }
        }
        Ok(())
    }

    /// The broker core's configuration these settings give.
    pub fn broker_config(&self) -> BrokerConfig {
        let l = &self.limits;
        let mut config = BrokerConfig::default();
        let server = &mut config.server;
        server.connect_timeout = l.connect_timeout;
        server.receive_maximum = l.max_inflight;
        server.outgoing_inflight = l.max_inflight_messages;
        server.maximum_packet_size = l.max_packet_size;
        server.topic_alias_maximum = l.topic_alias_maximum;
        server.outgoing_topic_aliases = l.topic_alias_maximum;
        server.maximum_qos = l.maximum_qos;
        server.retain_available = l.retain_available;
        server.wildcard_subscriptions = l.wildcard_subscriptions;
        server.max_keep_alive = l.max_keep_alive;
        server.queue = QueueLimits {
            max_messages: l.max_queued_messages,
            max_bytes: l.max_queued_bytes,
            overflow: OverflowPolicy::DropNewest,
        };
        config.queue_qos0_offline = l.queue_qos0;
        config.max_topic_levels = l.max_topic_levels;
        config.max_topic_length = l.max_topic_length;
        config.retained = crate::RetainedLimits {
            max_messages: l.max_retained_messages,
            max_bytes: l.max_retained_bytes,
            max_messages_per_client: l.max_retained_messages_per_client,
            max_bytes_per_client: l.max_retained_bytes_per_client,
        };
        config.max_subscriptions = l.max_subscriptions;
        // A publisher outrunning an online subscriber is slowed down rather
        // than having its messages dropped.
        config.publisher_backpressure =
            (!l.publisher_backpressure.is_zero()).then_some(l.publisher_backpressure);
        config.sys_interval = (!l.sys_interval.is_zero()).then_some(l.sys_interval);
        config.connections_per_second_per_address =
            core::num::NonZeroU32::new(l.connections_per_second_per_address);
        config.connections_per_second_per_listener =
            core::num::NonZeroU32::new(l.connections_per_second_per_listener);
        config.durable = self.storage.dir.is_some();
        config.max_memory = l.max_memory.resolve(super::memory_budget::machine_memory());
        config.max_memory_per_client = l.max_memory_per_client.share_of(config.max_memory);
        config.client_id_prefix = self
            .security
            .clientid_prefixes
            .clone()
            .filter(|p| !p.is_empty());
        config
    }
}

/// The toml crate's message (line, column, the offending line, what was
/// expected), led by the dotted key the error is about when it can be found.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.to_string();
    let message = message.trim_end();
    match e.span().and_then(|span| key_at(text, span.start)) {
        Some(key) => format!("key `{key}`: {message}"),
        None => message.to_string(),
    }
}

/// The dotted key (`limits.max_packet_size`) whose line holds byte `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table = String::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[') {
            table = name
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        }
        if (pos..pos + line.len()).contains(&offset) {
            let (key, _) = trimmed.split_once('=')?;
            let key = key.trim();
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        pos += line.len();
    }
    None
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Seconds;
    impl de::Visitor<'_> for Seconds {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of seconds (for example 10 or 0.5)")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("seconds cannot be negative"))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| E::custom("seconds must be a finite, non-negative number"))
        }
    }
    d.deserialize_any(Seconds)
}

fn qos<'de, D: Deserializer<'de>>(d: D) -> Result<QoS, D::Error> {
    let v = u8::deserialize(d)?;
    QoS::from_u8(v).ok_or_else(|| de::Error::custom("maximum_qos must be 0, 1 or 2"))
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(de::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

fn packet_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    // A CONNECT with a one-byte client id is 15 bytes; MQTT caps packets at
    // 268,435,460 bytes.
    if (16..=tern_codec::MAX_PACKET_SIZE).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "max_packet_size must be between 16 and {}",
            tern_codec::MAX_PACKET_SIZE
        )))
    }
}

fn http_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if v.starts_with('/') {
        Ok(v)
    } else {
        Err(de::Error::custom("ws_path must start with `/`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(
            BrokerSettings::from_toml("").unwrap(),
            BrokerSettings::default()
        );
    }

    #[test]
    fn the_example_file_parses_and_sets_every_key() {
        let text = include_str!("../../broker.example.toml");
        let parsed = BrokerSettings::from_toml(text).unwrap();
        // The example shows the defaults, so a changed default shows up here.
        assert_eq!(parsed, BrokerSettings::default());
        // Every key of both tables appears uncommented in the example.
        for key in [
            "tcp",
            "ws",
            "ws_path",
            "tls",
            "wss",
            "require_certificate",
            "use_identity_as_username",
            "max_connections",
            "max_packet_size",
            "max_inflight",
            "max_inflight_messages",
            "max_queued_messages",
            "max_queued_bytes",
            "max_topic_levels",
            "max_topic_length",
            "max_retained_messages",
            "max_retained_bytes",
            "max_retained_messages_per_client",
            "max_retained_bytes_per_client",
            "max_subscriptions",
            "queue_qos0",
            "publisher_backpressure",
            "connect_timeout",
            "retain_available",
            "maximum_qos",
            "wildcard_subscriptions",
            "topic_alias_maximum",
            "sys_interval",
            "connections_per_second_per_address",
            "connections_per_second_per_listener",
            "max_memory",
            "max_memory_per_client",
            "sync",
            "sync_interval_ms",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))),
                "{key} is not in broker.example.toml"
            );
        }
        for key in [
            "max_keep_alive",
            "password_file",
            "acl_file",
            "allow_anonymous",
            "check_threads",
            "check_threads_nice",
            "clientid_prefixes",
            "listen",
            "dir",
        ] {
            assert!(
                text.contains(&format!("\n# {key} =")),
                "{key} is not in broker.example.toml"
            );
        }
    }

    #[test]
    fn values_map_to_the_core_config() {
        let s = BrokerSettings::from_toml(
            "[limits]\nmax_inflight = 5\nmaximum_qos = 1\nconnect_timeout = 0.25\n\
             sys_interval = 0\nmax_keep_alive = 30\nqueue_qos0 = true\nmax_queued_messages = 7\n",
        )
        .unwrap();
        let c = s.broker_config();
        assert_eq!(c.server.receive_maximum.get(), 5);
        assert_eq!(c.server.maximum_qos, QoS::AtLeastOnce);
        assert_eq!(c.server.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.sys_interval, None);
        assert_eq!(c.server.max_keep_alive, Some(30));
        assert!(c.queue_qos0_offline);
        assert_eq!(c.server.queue.max_messages, 7);
    }

    #[test]
    fn the_security_table() {
        let s =
            BrokerSettings::from_toml("[security]\npassword_file = \"pw\"\nacl_file = \"acl\"\n")
                .unwrap();
        assert_eq!(s.security.password_file, Some(PathBuf::from("pw")));
        assert_eq!(s.security.acl_file, Some(PathBuf::from("acl")));
        // A password file means clients authenticate, unless told otherwise.
        assert!(!s.security.allows_anonymous());
        assert!(BrokerSettings::default().security.allows_anonymous());
        let s = BrokerSettings::from_toml(
            "[security]\npassword_file = \"pw\"\nallow_anonymous = true\n",
        )
        .unwrap();
        assert!(s.security.allows_anonymous());
        let e = error("[security]\nallow_anonymus = true\n");
        assert!(
            e.contains("security.allow_anonymus") && e.contains("line 2"),
            "{e}"
        );
    }

    #[track_caller]
    fn error(text: &str) -> String {
        BrokerSettings::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let e = error("[limits]\nmax_connections = 3\nmax_conections = 4\n");
        assert!(e.contains("limits.max_conections"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_line() {
        let e = error("[listeners]\ntcp = [\"127.0.0.1:1883\"]\n\n[limits]\nmaximum_qos = 3\n");
        assert!(e.contains("limits.maximum_qos"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("0, 1 or 2"), "{e}");

        let e = error("[limits]\nmax_inflight = 0\n");
        assert!(
            e.contains("limits.max_inflight") && e.contains("line 2"),
            "{e}"
        );

        let e = error("[listeners]\ntcp = [\"localhost\"]\n");
        assert!(e.contains("listeners.tcp") && e.contains("line 2"), "{e}");

        let e = error("[limits]\nconnect_timeout = \"soon\"\n");
        assert!(
            e.contains("limits.connect_timeout") && e.contains("seconds"),
            "{e}"
        );
    }

    #[test]
    fn a_file_error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("tern-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[limits]\nmax_packet_size = 1\n").unwrap();
        let e = BrokerSettings::load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(
            e.contains("limits.max_packet_size") && e.contains("line 2"),
            "{e}"
        );

        let missing = BrokerSettings::load("/nonexistent/tern.toml")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/tern.toml") && missing.contains("cannot read"));
    }
}
