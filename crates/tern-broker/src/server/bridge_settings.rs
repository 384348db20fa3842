//! The `[[bridge]]` tables: connections from this broker to other MQTT
//! brokers, with mosquitto's bridge options (`connection`, `address`,
//! `topic`, ...) under the names the issue and mosquitto share.
//!
//! This module only parses and checks the tables; the bridges themselves run
//! in the tern-bridge crate (a tern-client connection on each side), which
//! `tern broker` starts. Every check names the bridge and the key.

use serde::{Deserialize, Deserializer, de};
use std::{fmt, path::PathBuf, time::Duration};
use tern_codec::QoS;
use tern_topic::TopicFilter;

/// One `[[bridge]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSettings {
    /// The bridge's name (mosquitto's `connection`): in logs, the default
    /// client identifier and the notification topic.
    pub name: String,
    /// The remote broker, `host:port` (port 1883 by default, 8883 with
    /// TLS); several are tried in turn when one cannot be reached.
    #[serde(deserialize_with = "one_or_many")]
    pub address: Vec<String>,
    /// Go back to the first address after connecting to another
    /// (mosquitto's `round_robin false`, the default) or go on from where
    /// the last attempt was (`true`).
    #[serde(default)]
    pub round_robin: bool,
    /// The protocol spoken to the remote: `"3.1.1"` or `"5"` (mosquitto's
    /// `bridge_protocol_version` `mqttv311` / `mqttv50` are accepted too).
    #[serde(default, deserialize_with = "protocol")]
    pub protocol: BridgeProtocol,
    /// The client identifier on the remote (mosquitto's `remote_clientid`);
    /// default: the bridge's name.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The user name on the remote (`remote_username`).
    #[serde(default)]
    pub username: Option<String>,
    /// The password on the remote (`remote_password`).
    #[serde(default)]
    pub password: Option<String>,
    /// The user name the bridge has on this broker: ACL rules for it apply
    /// to what the bridge publishes and receives here (mosquitto's
    /// `local_username`); default `bridge-<name>`. No password is checked:
    /// the bridge runs inside the broker.
    #[serde(default)]
    pub local_username: Option<String>,
    /// Start a new session on the remote at each connection (mosquitto's
    /// `cleansession`, default false: the remote keeps the bridge's
    /// subscriptions and queues messages for it while it is away).
    #[serde(default)]
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval on the remote, in seconds; default
    /// 0 with `clean_start`, otherwise never (4294967295).
    #[serde(default)]
    pub session_expiry: Option<u32>,
    /// Keep alive with the remote, in seconds (mosquitto's
    /// `keepalive_interval`, default 60).
    #[serde(default = "keep_alive")]
    pub keep_alive: u16,
    /// Seconds before reconnecting: one number for a constant wait, or
    /// `[base, cap]` for exponential backoff from `base` to `cap` with
    /// jitter (mosquitto's `restart_timeout`, default `[5, 30]`).
    #[serde(default = "restart_timeout", deserialize_with = "restart")]
    pub restart_timeout: RestartTimeout,
    /// mosquitto's `try_private` (its default is true; here false): over
    /// MQTT 3.1.1, mark the connection as a bridge by setting bit 0x80 of
    /// the CONNECT protocol level (0x84), which a mosquitto or Tern remote
    /// takes to mean "do not send the bridge's own messages back, keep
    /// retain flags as published". A remote that refuses the level gets a
    /// plain 3.1.1 CONNECT at once. Ignored over MQTT 5, where No Local and
    /// the `tern-bridged` user property do that job (as mosquitto ignores it).
    #[serde(default)]
    pub try_private: bool,
    /// Publish the bridge's state, 1 (connected) or 0, retained, on the
    /// remote, with a will for the 0 (mosquitto's `notifications`, default
    /// true).
    #[serde(default = "yes")]
    pub notifications: bool,
    /// The notification topic; default `$SYS/broker/connection/<client_id>/state`.
    #[serde(default)]
    pub notification_topic: Option<String>,
    /// CA certificates, PEM, that sign the remote's certificate; setting
    /// it (or `certfile`) turns TLS on (mosquitto's `bridge_cafile`).
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// The bridge's client certificate, PEM (`bridge_certfile`).
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// The client certificate's key, PEM (`bridge_keyfile`).
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    /// Do not check that the remote's certificate names the host
    /// (`bridge_insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// TLS with the platform's root certificates, without a `cafile`
    /// (mosquitto's `bridge_capath` with the system store).
    #[serde(default)]
    pub tls: bool,
    /// Send out messages that entered this broker through a bridge (default
    /// false: a message crosses at most one Tern bridge, so two brokers
    /// bridged both ways do not pass messages back and forth). Turn it on
    /// for chains (edge → regional → cloud) without loops.
    #[serde(default)]
    pub forward_bridged: bool,
    /// The topics bridged (mosquitto's `topic` lines).
    #[serde(default)]
    pub topic: Vec<BridgeTopic>,
}

/// The protocol a bridge speaks to its remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BridgeProtocol {
    /// MQTT 3.1.1.
    V3_1_1,
    /// MQTT 5.0 (the default).
    #[default]
    V5,
}

/// How long a bridge waits before reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartTimeout {
    /// The first wait (and every wait, when equal to `cap`).
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

/// Which way a bridged topic's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the remote to this broker.
    In,
    /// From this broker to the remote (the default, as in mosquitto).
    #[default]
    Out,
    /// Both ways.
    Both,
}

impl Direction {
    /// Messages go from the remote to this broker.
    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    /// Messages go from this broker to the remote.
    pub fn outbound(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
}

/// One bridged topic, with mosquitto's `topic pattern direction qos
/// local_prefix remote_prefix` meaning: the topic is `local_prefix +
/// pattern` here and `remote_prefix + pattern` on the remote. An empty
/// pattern bridges the one topic the prefixes name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTopic {
    /// The topic filter, without the prefixes (may be empty if a prefix is set).
    pub pattern: String,
    /// `"in"`, `"out"` (default) or `"both"`.
    #[serde(default)]
    pub direction: Direction,
    /// The QoS of the bridge's subscription (0, 1 or 2; default 0): the
    /// highest QoS its messages are bridged with.
    #[serde(default, deserialize_with = "qos")]
    pub qos: QoS,
    /// Prepended to the pattern on this broker.
    #[serde(default)]
    pub local_prefix: String,
    /// Prepended to the pattern on the remote.
    #[serde(default)]
    pub remote_prefix: String,
}

impl BridgeTopic {
    /// The filter on this broker.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The filter on the remote.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }
}

impl BridgeSettings {
    /// The client identifier on the remote.
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.name)
    }

    /// The user name on this broker.
    pub fn local_username(&self) -> String {
        self.local_username
            .clone()
            .unwrap_or_else(|| format!("bridge-{}", self.name))
    }

    /// The notification topic.
    pub fn notification_topic(&self) -> String {
        self.notification_topic
            .clone()
            .unwrap_or_else(|| format!("$SYS/broker/connection/{}/state", self.client_id()))
    }

    /// The Session Expiry Interval asked of the remote (MQTT 5).
    pub fn session_expiry(&self) -> u32 {
        self.session_expiry
            .unwrap_or(if self.clean_start { 0 } else { u32::MAX })
    }

    /// Whether the remote connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls || self.cafile.is_some() || self.certfile.is_some()
    }

    /// Checks what serde cannot: the message names the key.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(['/', '+', '#']) {
            return Err("name: must be non-empty, without `/`, `+` or `#`".into());
        }
        if self.address.is_empty() {
            return Err("address: at least one host:port is needed".into());
        }
        for a in &self.address {
            split_address(a, 1883).map_err(|e| format!("address: {e}"))?;
        }
        if self.client_id().is_empty() {
            return Err("client_id: must not be empty".into());
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("password: needs username".into());
        }
        if self.certfile.is_some() != self.keyfile.is_some() {
            return Err("certfile and keyfile: give both or neither".into());
        }
        if self.topic.is_empty() {
            return Err("topic: at least one topic is needed".into());
        }
        for (i, t) in self.topic.iter().enumerate() {
            let at = format!("topic[{i}]");
            for (key, prefix) in [
                ("local_prefix", &t.local_prefix),
                ("remote_prefix", &t.remote_prefix),
            ] {
                if prefix.contains(['+', '#']) {
                    return Err(format!("{at}.{key}: a prefix cannot hold `+` or `#`"));
                }
            }
            if t.pattern.is_empty() && t.local_prefix.is_empty() && t.remote_prefix.is_empty() {
                return Err(format!(
                    "{at}.pattern: empty, so local_prefix and remote_prefix must name the topic"
                ));
            }
            for (side, filter) in [("local", t.local_filter()), ("remote", t.remote_filter())] {
                TopicFilter::try_from(filter.as_str())
                    .map_err(|e| format!("{at}.pattern: {filter:?} on the {side} side: {e}"))?;
            }
        }
        if self.restart_timeout.base.is_zero()
            || self.restart_timeout.cap < self.restart_timeout.base
        {
            return Err("restart_timeout: needs 0 < base <= cap".into());
        }
        Ok(())
    }
}

/// Splits `host:port` (`[v6]:port`; the port defaults to `default_port`).
pub fn split_address(address: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("{address:?} is not host:port");
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        match tail {
            "" => (host, None),
            t => (host, Some(t.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match address.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

fn keep_alive() -> u16 {
    60
}

fn yes() -> bool {
    true
}

fn restart_timeout() -> RestartTimeout {
    RestartTimeout {
        base: Duration::from_secs(5),
        cap: Duration::from_secs(30),
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn protocol<'de, D: Deserializer<'de>>(d: D) -> Result<BridgeProtocol, D::Error> {
    match String::deserialize(d)?.as_str() {
        "3.1.1" | "mqttv311" => Ok(BridgeProtocol::V3_1_1),
        "5" | "5.0" | "mqttv50" => Ok(BridgeProtocol::V5),
        other => Err(de::Error::custom(format!(
            "protocol {other:?}: expected \"3.1.1\" or \"5\""
        ))),
    }
}

fn qos<'de, D: Deserializer<'de>>(d: D) -> Result<QoS, D::Error> {
    let v = u8::deserialize(d)?;
    QoS::from_u8(v).ok_or_else(|| de::Error::custom("qos must be 0, 1 or 2"))
}

fn restart<'de, D: Deserializer<'de>>(d: D) -> Result<RestartTimeout, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Restart {
        One(f64),
        Two([f64; 2]),
    }
    let secs = |v: f64| {
        Duration::try_from_secs_f64(v).map_err(|_| {
            de::Error::custom("restart_timeout: seconds must be finite and not negative")
        })
    };
    match Restart::deserialize(d)? {
        Restart::One(v) => {
            let v = secs(v)?;
            Ok(RestartTimeout { base: v, cap: v })
        }
        Restart::Two([base, cap]) => Ok(RestartTimeout {
            base: secs(base)?,
            cap: secs(cap)?,
        }),
    }
}

impl fmt::Display for BridgeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BridgeProtocol::V3_1_1 => "3.1.1",
            BridgeProtocol::V5 => "5",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::BrokerSettings;
    use super::*;

    fn parse(text: &str) -> Result<BrokerSettings, String> {
        BrokerSettings::from_toml(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_bridge_table_parses() {
        let s = parse(
            r#"
[[bridge]]
name = "cloud"
address = ["a.example:1884", "b.example"]
protocol = "3.1.1"
client_id = "edge-7"
username = "u"
password = "p"
keep_alive = 30
restart_timeout = [1, 10]
topic = [
  { pattern = "sensors/#", direction = "out", qos = 1, remote_prefix = "edge7/" },
  { pattern = "cmd/#", direction = "in", qos = 2, local_prefix = "from-cloud/" },
]
"#,
        )
        .unwrap();
        let b = &s.bridge[0];
        assert_eq!(b.address, ["a.example:1884", "b.example"]);
        assert_eq!(b.protocol, BridgeProtocol::V3_1_1);
        assert_eq!(b.session_expiry(), u32::MAX, "persistent by default");
        assert_eq!(
            b.notification_topic(),
            "$SYS/broker/connection/edge-7/state"
        );
        assert_eq!(b.topic[0].remote_filter(), "edge7/sensors/#");
        assert_eq!(b.topic[1].local_filter(), "from-cloud/cmd/#");
        assert_eq!(b.topic[1].qos, QoS::ExactlyOnce);
        assert_eq!(b.restart_timeout.cap, Duration::from_secs(10));
        assert_eq!(split_address("b.example", 1883).unwrap().1, 1883);
    }

    #[test]
    fn errors_name_the_bridge_and_the_key() {
        let base = "[[bridge]]\nname = \"up\"\naddress = \"h:1\"\n";
        for (extra, want) in [
            ("", "bridge `up`: topic: at least one"),
            (
                "topic = [{ pattern = \"a/#/b\" }]",
                "bridge `up`: topic[0].pattern",
            ),
            (
                "topic = [{ pattern = \"a\", local_prefix = \"x/+/\" }]",
                "bridge `up`: topic[0].local_prefix",
            ),
            (
                "topic = [{ pattern = \"\" }]",
                "bridge `up`: topic[0].pattern: empty",
            ),
            (
                "password = \"p\"\ntopic = [{ pattern = \"a\" }]",
                "bridge `up`: password",
            ),
            (
                "protocol = \"4\"\ntopic = [{ pattern = \"a\" }]",
                "protocol \"4\"",
            ),
            (
                "topic = [{ pattern = \"a\", direction = \"sideways\" }]",
                "sideways",
            ),
        ] {
            let err = parse(&format!("{base}{extra}\n")).unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let err =
            parse("[[bridge]]\nname = \"x\"\naddress = \"h:0\"\ntopic = [{ pattern = \"a\" }]")
                .unwrap_err();
        assert!(err.contains("bridge `x`: address"), "{err}");
        let two = "[[bridge]]\nname = \"x\"\naddress = \"h\"\ntopic = [{ pattern = \"a\" }]\n";
        let err = parse(&format!("{two}{two}")).unwrap_err();
        assert!(err.contains("bridge `x`: name: used twice"), "{err}");
        let off = parse(&format!("{two}try_private = false\n")).unwrap();
        assert!(!off.bridge[0].try_private);
        let on = parse(&format!("{two}try_private = true\n")).unwrap();
        assert!(on.bridge[0].try_private);
    }
}
