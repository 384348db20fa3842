//! `tern broker --check-config`: the effective settings as TOML (every
//! default filled in), a check that the files they name can be used, and
//! the difference between two settings' limits (what a reload changed).

use super::BrokerSettings;
use std::{fmt::Write as _, net::SocketAddr, path::Path, time::Duration};

fn addrs(list: &[SocketAddr]) -> String {
    let items: Vec<String> = list.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// A duration as the settings file writes it: whole seconds as a TOML
/// integer, others as a float (in exponent form past TOML's largest
/// integer, which a plain `{}` would print as an integer too large to read).
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() != 0.0 {
        format!("{s}")
    } else if i64::try_from(d.as_secs()).is_ok() {
        format!("{}", d.as_secs())
    } else {
        format!("{s:e}")
    }
}

fn path(p: &Path) -> String {
    toml_string(&p.display().to_string())
}

/// `text` as a TOML basic string: `"` and `\` escaped, and every control
/// character (which a basic string may not hold as it is) as `\uXXXX`.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key = value`, or a commented line saying it is unset.
fn optional(out: &mut String, key: &str, value: Option<String>, absent: &str) {
    match value {
        Some(v) => {
            let _ = writeln!(out, "{key} = {v}");
        }
        None => {
            let _ = writeln!(out, "# {key}: {absent}");
        }
    }
}

/// A bridge's remote password as `--check-config` prints it: never the
/// password itself (the output goes to terminals and CI logs).
pub(crate) const HIDDEN_PASSWORD: &str = "(hidden)";

/// One `[[bridge]]` table with its defaults written out (the remote
/// password hidden).
fn bridge_toml(b: &super::bridge_settings::BridgeSettings) -> String {
    let mut out = String::from("\n[[bridge]]\n");
    let list = |items: &[String]| {
        let items: Vec<String> = items.iter().map(|a| toml_string(a)).collect();
        format!("[{}]", items.join(", "))
    };
    let _ = writeln!(out, "name = {}", toml_string(&b.name));
    let _ = writeln!(out, "address = {}", list(&b.address));
    let _ = writeln!(out, "round_robin = {}", b.round_robin);
    let _ = writeln!(out, "protocol = \"{}\"", b.protocol);
    let _ = writeln!(out, "client_id = {}", toml_string(b.client_id()));
    optional(
        &mut out,
        "username",
        b.username.as_deref().map(toml_string),
        "none",
    );
    optional(
        &mut out,
        "password",
        b.password.as_ref().map(|_| toml_string(HIDDEN_PASSWORD)),
        "none",
    );
    let _ = writeln!(out, "local_username = {}", toml_string(&b.local_username()));
    let _ = writeln!(out, "clean_start = {}", b.clean_start);
    let _ = writeln!(out, "session_expiry = {}", b.session_expiry());
    let _ = writeln!(out, "keep_alive = {}", b.keep_alive);
    let _ = writeln!(
        out,
        "restart_timeout = [{}, {}]",
        seconds(b.restart_timeout.base),
        seconds(b.restart_timeout.cap)
    );
    let _ = writeln!(out, "try_private = {}", b.try_private);
    let _ = writeln!(out, "notifications = {}", b.notifications);
    let _ = writeln!(
        out,
        "notification_topic = {}",
        toml_string(&b.notification_topic())
    );
    optional(&mut out, "cafile", b.cafile.as_deref().map(path), "none");
    optional(
        &mut out,
        "certfile",
        b.certfile.as_deref().map(path),
        "none",
    );
    optional(&mut out, "keyfile", b.keyfile.as_deref().map(path), "none");
    let _ = writeln!(out, "insecure = {}", b.insecure);
    let _ = writeln!(out, "tls = {}", b.tls);
    let _ = writeln!(out, "forward_bridged = {}", b.forward_bridged);
    let _ = writeln!(out, "topic = [");
    for t in &b.topic {
        let direction = match t.direction {
            super::bridge_settings::Direction::In => "in",
            super::bridge_settings::Direction::Out => "out",
            super::bridge_settings::Direction::Both => "both",
        };
        let _ = writeln!(
            out,
            "  {{ pattern = {}, direction = \"{direction}\", qos = {}, local_prefix = {}, \
             remote_prefix = {} }},",
            toml_string(&t.pattern),
            t.qos as u8,
            toml_string(&t.local_prefix),
            toml_string(&t.remote_prefix)
        );
    }
    let _ = writeln!(out, "]");
    out
}

impl BrokerSettings {
    /// The settings as a TOML settings file, with every default written out
    /// (unset optional keys as comments): parsing it gives the same
    /// effective settings.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let l = &self.listeners;
        let _ = writeln!(out, "[listeners]");
        let _ = writeln!(out, "tcp = {}", addrs(&l.tcp));
        let _ = writeln!(out, "ws = {}", addrs(&l.ws));
        let _ = writeln!(out, "ws_path = {}", toml_string(&l.ws_path));
        let _ = writeln!(out, "tls = {}", addrs(&l.tls));
        let _ = writeln!(out, "wss = {}", addrs(&l.wss));
        out.push('\n');
        out.push_str(&self.limits_toml());
        let t = &self.tls;
        let _ = writeln!(out, "\n[tls]");
        optional(&mut out, "cert", t.cert.as_deref().map(path), "none");
        optional(&mut out, "key", t.key.as_deref().map(path), "none");
        optional(
            &mut out,
            "cafile",
            t.cafile.as_deref().map(path),
            "none (no client certificates asked for)",
        );
        let _ = writeln!(out, "require_certificate = {}", t.require_certificate);
        let _ = writeln!(
            out,
            "use_identity_as_username = {}",
            t.use_identity_as_username
        );
        let s = &self.security;
        let _ = writeln!(out, "\n[security]");
        optional(
            &mut out,
            "password_file",
            s.password_file.as_deref().map(path),
            "none (user names are not checked)",
        );
        optional(
            &mut out,
            "acl_file",
            s.acl_file.as_deref().map(path),
            "none (every client may publish and subscribe to anything)",
        );
        let _ = writeln!(out, "allow_anonymous = {}", s.allows_anonymous());
        optional(
            &mut out,
            "check_threads",
            s.check_threads.map(|n| n.to_string()),
            "all cores but one",
        );
        let _ = writeln!(
            out,
            "check_threads_nice = {}",
            s.check_threads_nice
                .unwrap_or(super::security::DEFAULT_CHECK_NICE)
        );
        optional(
            &mut out,
            "clientid_prefixes",
            s.clientid_prefixes.as_deref().map(toml_string),
            "none (any client identifier)",
        );
        let _ = writeln!(out, "\n[metrics]");
        optional(
            &mut out,
            "listen",
            self.metrics.listen.map(|a| format!("\"{a}\"")),
            "none (no monitoring listener)",
        );
        let st = &self.storage;
        let _ = writeln!(out, "\n[storage]");
        optional(
            &mut out,
            "dir",
            st.dir.as_deref().map(path),
            "none (memory only: nothing survives a restart)",
        );
        let sync = match st.sync {
            super::SyncMode::Always => "always",
            super::SyncMode::Interval => "interval",
        };
        let _ = writeln!(out, "sync = \"{sync}\"");
        let _ = writeln!(out, "sync_interval_ms = {}", st.sync_interval_ms);
        let c = &self.cluster;
        let _ = writeln!(out, "\n[cluster]");
        let servers: Vec<String> = c
            .servers
            .iter()
            .map(|s| format!("\"{}\"", s.replace('"', "\\\"")))
            .collect();
        let _ = writeln!(out, "servers = [{}]", servers.join(", "));
        optional(
            &mut out,
            "node_id",
            c.node_id.as_ref().map(|n| format!("\"{n}\"")),
            "none (required with servers)",
        );
        optional(
            &mut out,
            "prefix",
            c.prefix.as_ref().map(|n| format!("\"{n}\"")),
            "\"tern\"",
        );
        optional(
            &mut out,
            "retained_replicas",
            c.retained_replicas.map(|n| n.to_string()),
            "1",
        );
        for b in &self.bridge {
            out.push_str(&bridge_toml(b));
        }
        out
    }

    /// The `[limits]` table, one key per line.
    fn limits_toml(&self) -> String {
        let l = &self.limits;
        let mut out = String::from("[limits]\n");
        let _ = writeln!(out, "max_connections = {}", l.max_connections);
        let _ = writeln!(out, "max_packet_size = {}", l.max_packet_size);
        let _ = writeln!(out, "max_inflight = {}", l.max_inflight);
        let _ = writeln!(out, "max_inflight_messages = {}", l.max_inflight_messages);
        let _ = writeln!(out, "max_queued_messages = {}", l.max_queued_messages);
        let _ = writeln!(out, "max_queued_bytes = {}", l.max_queued_bytes);
        let _ = writeln!(out, "queue_qos0 = {}", l.queue_qos0);
        let _ = writeln!(out, "max_topic_levels = {}", l.max_topic_levels);
        let _ = writeln!(out, "max_topic_length = {}", l.max_topic_length);
        let _ = writeln!(out, "max_retained_messages = {}", l.max_retained_messages);
        let _ = writeln!(out, "max_retained_bytes = {}", l.max_retained_bytes);
        let _ = writeln!(
            out,
            "max_retained_messages_per_client = {}",
            l.max_retained_messages_per_client
        );
        let _ = writeln!(
            out,
            "max_retained_bytes_per_client = {}",
            l.max_retained_bytes_per_client
        );
        let _ = writeln!(out, "max_subscriptions = {}", l.max_subscriptions);
        let budget = l
            .max_memory
            .resolve(super::memory_budget::machine_memory())
            .map_or("none".to_string(), |b| format!("{b} bytes"));
        let _ = writeln!(out, "max_memory = {} # {budget}", l.max_memory);
        let share = l
            .max_memory_per_client
            .share_of(l.max_memory.resolve(super::memory_budget::machine_memory()))
            .map_or("none".to_string(), |b| format!("{b} bytes"));
        let _ = writeln!(
            out,
            "max_memory_per_client = {} # {share}",
            l.max_memory_per_client
        );
        let _ = writeln!(
            out,
            "publisher_backpressure = {}",
            seconds(l.publisher_backpressure)
        );
        let _ = writeln!(out, "connect_timeout = {}", seconds(l.connect_timeout));
        optional(
            &mut out,
            "max_keep_alive",
            l.max_keep_alive.map(|k| k.to_string()),
            "none (no limit)",
        );
        let _ = writeln!(out, "retain_available = {}", l.retain_available);
        let _ = writeln!(out, "maximum_qos = {}", l.maximum_qos as u8);
        let _ = writeln!(out, "wildcard_subscriptions = {}", l.wildcard_subscriptions);
        let _ = writeln!(out, "topic_alias_maximum = {}", l.topic_alias_maximum);
        let _ = writeln!(out, "sys_interval = {}", seconds(l.sys_interval));
        let _ = writeln!(
            out,
            "connections_per_second_per_address = {}",
            l.connections_per_second_per_address
        );
        let _ = writeln!(
            out,
            "connections_per_second_per_listener = {}",
            l.connections_per_second_per_listener
        );
        out
    }

    /// What differs between these settings' limits and `new`'s, one
    /// `key: old -> new` per changed key.
    pub fn limits_changes(&self, new: &BrokerSettings) -> Vec<String> {
        let old = self.limits_toml();
        let new = new.limits_toml();
        old.lines()
            .zip(new.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| {
                let value = |line: &str| {
                    line.split_once(" = ")
                        .map_or_else(|| "unset".to_string(), |(_, v)| v.to_string())
                };
                let key = a
                    .trim_start_matches("# ")
                    .split([' ', ':'])
                    .next()
                    .unwrap_or(a);
                format!("limits.{key}: {} -> {}", value(a), value(b))
            })
            .collect()
    }

    /// The keys outside `[limits]` and the `[[bridge]]` tables that differ
    /// between these settings and `new`, one `section.key: old -> new` each:
    /// a reload does not apply them (listeners, `[tls]` and `[security]`
    /// paths, `[metrics]`, `[storage]` and `[cluster]` take effect at the
    /// next start; the password, ACL and certificate files in force are
    /// read again).
    pub fn restart_changes(&self, new: &BrokerSettings) -> Vec<String> {
        let keyed = |s: &BrokerSettings| -> Vec<(String, String)> {
            let mut section = String::new();
            let mut keys = Vec::new();
            for line in s.to_toml().lines() {
                if line.starts_with("[[") {
                    break;
                }
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = name.to_string();
                    continue;
                }
                if section == "limits" || line.is_empty() {
                    continue;
                }
                let key = line
                    .trim_start_matches("# ")
                    .split([' ', ':'])
                    .next()
                    .unwrap_or(line);
                let value = line
                    .split_once(" = ")
                    .map_or_else(|| "unset".to_string(), |(_, v)| v.to_string());
                keys.push((format!("{section}.{key}"), value));
            }
            keys
        };
        keyed(self)
            .into_iter()
            .zip(keyed(new))
            .filter(|(a, b)| a != b)
            .map(|((key, old), (_, new))| format!("{key}: {old} -> {new}"))
            .collect()
    }

    /// Checks that the files these settings name can be used: the password
    /// and ACL files, and the TLS certificate and key when a TLS listener
    /// needs them. The error names the file (and line).
    pub fn check_files(&self) -> Result<(), String> {
        self.security.load().map_err(|e| e.to_string())?;
        if !self.listeners.tls.is_empty() || !self.listeners.wss.is_empty() {
            let files = self.tls.files()?;
            files.load().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings the file held escaped print escaped: a ws_path with `\\`
    /// and a path with a newline parse back as they were (they printed as
    /// invalid TOML, or another value, before).
    #[test]
    fn strings_print_as_toml_escapes() {
        let text = "[listeners]\nws_path = \"/a\\\\q\\\"\\tb\"\n[tls]\ncert = \"x\\ny\"\n";
        let settings = BrokerSettings::from_toml(text).unwrap();
        assert_eq!(settings.listeners.ws_path, "/a\\q\"\tb");
        let effective = settings.to_toml();
        let again =
            BrokerSettings::from_toml(&effective).unwrap_or_else(|e| panic!("{e}\n{effective}"));
        assert_eq!(again.listeners.ws_path, settings.listeners.ws_path);
        assert_eq!(again.tls.cert, settings.tls.cert);
        assert!(effective.contains("cert = \"x\\u000Ay\"\n"), "{effective}");
    }

    /// Seconds past TOML's largest integer print as a float it reads back.
    #[test]
    fn huge_durations_print_as_floats() {
        let text = "[limits]\nconnect_timeout = 1.8e19\nsys_interval = 9223372036854775807\n";
        let settings = BrokerSettings::from_toml(text).unwrap();
        let effective = settings.to_toml();
        assert!(
            effective.contains("connect_timeout = 1.8e19\n"),
            "{effective}"
        );
        assert!(
            effective.contains("sys_interval = 9223372036854775807\n"),
            "{effective}"
        );
        let again =
            BrokerSettings::from_toml(&effective).unwrap_or_else(|e| panic!("{e}\n{effective}"));
        assert_eq!(again.limits, settings.limits);
    }

    #[test]
    fn the_effective_settings_parse_back_to_the_same() {
        let text = "[listeners]\ntcp = [\"127.0.0.1:1\", \"[::1]:2\"]\nws = []\n\
                    [limits]\nconnect_timeout = 0.25\nmax_keep_alive = 30\nmaximum_qos = 1\n\
                    connections_per_second_per_address = 20\nconnections_per_second_per_listener = 7\n\
                    wildcard_subscriptions = false\n\
                    [security]\npassword_file = \"pw\"\ncheck_threads = 3\n[metrics]\nlisten = \"127.0.0.1:9\"\n";
        let settings = BrokerSettings::from_toml(text).unwrap();
        let effective = settings.to_toml();
        let again =
            BrokerSettings::from_toml(&effective).unwrap_or_else(|e| panic!("{e}\n{effective}"));
        assert_eq!(again.listeners, settings.listeners);
        assert_eq!(again.limits, settings.limits);
        assert_eq!(again.tls, settings.tls);
        assert_eq!(again.metrics, settings.metrics);
        assert_eq!(
            again.security.allows_anonymous(),
            settings.security.allows_anonymous()
        );
        assert_eq!(again.security.check_threads, Some(3));
        assert!(
            effective.contains("connect_timeout = 0.25\n"),
            "{effective}"
        );
        assert!(effective.contains("sys_interval = 10\n"), "{effective}");
        assert!(
            effective.contains("allow_anonymous = false\n"),
            "{effective}"
        );
        // The defaults too.
        let defaults = BrokerSettings::default();
        let back = BrokerSettings::from_toml(&defaults.to_toml()).unwrap();
        assert_eq!(back.limits, defaults.limits);
        assert_eq!(back.listeners, defaults.listeners);
    }

    #[test]
    fn limit_changes_are_named() {
        let old = BrokerSettings::default();
        let new =
            BrokerSettings::from_toml("[limits]\nmax_inflight = 5\nmax_keep_alive = 60\n").unwrap();
        assert_eq!(
            old.limits_changes(&new),
            vec![
                "limits.max_inflight: 1024 -> 5".to_string(),
                "limits.max_keep_alive: unset -> 60".to_string(),
            ]
        );
        assert!(new.limits_changes(&new).is_empty());
    }

    /// `[[bridge]]` tables print with their defaults filled in and parse
    /// back to the same bridges; the remote password is never printed.
    #[test]
    fn bridges_print_with_defaults_and_no_password() {
        let text = "[[bridge]]\nname = \"cloud\"\naddress = \"a.example:1884\"\n\
                    username = \"u\"\npassword = \"s3cret\"\nrestart_timeout = [0.5, 10]\n\
                    topic = [{ pattern = \"sensors/#\", qos = 1, remote_prefix = \"e/\" }]\n\
                    [[bridge]]\nname = \"b\\\"2\"\naddress = [\"x\", \"y:1\"]\nprotocol = \"3.1.1\"\n\
                    clean_start = true\ntopic = [{ pattern = \"c/#\", direction = \"both\" }]\n";
        let settings = BrokerSettings::from_toml(text).unwrap();
        let effective = settings.to_toml();
        assert!(!effective.contains("s3cret"), "{effective}");
        for line in [
            "[[bridge]]\nname = \"cloud\"\naddress = [\"a.example:1884\"]\n",
            "password = \"(hidden)\"\n",
            "client_id = \"cloud\"\n",
            "local_username = \"bridge-cloud\"\n",
            "session_expiry = 4294967295\n",
            "restart_timeout = [0.5, 10]\n",
            "notification_topic = \"$SYS/broker/connection/cloud/state\"\n",
            "  { pattern = \"sensors/#\", direction = \"out\", qos = 1, local_prefix = \"\", \
             remote_prefix = \"e/\" },\n",
            "name = \"b\\\"2\"\n",
            "protocol = \"3.1.1\"\n",
            "session_expiry = 0\n",
        ] {
            assert!(effective.contains(line), "{line:?} not in\n{effective}");
        }
        let again =
            BrokerSettings::from_toml(&effective).unwrap_or_else(|e| panic!("{e}\n{effective}"));
        assert_eq!(again.to_toml(), effective);
        let mut expected = settings.bridge.clone();
        expected[0].password = Some(HIDDEN_PASSWORD.into());
        for (a, e) in again.bridge.iter().zip(&expected) {
            assert_eq!(a.address, e.address);
            assert_eq!(a.protocol, e.protocol);
            assert_eq!(a.topic, e.topic);
            assert_eq!(a.restart_timeout, e.restart_timeout);
            assert_eq!(a.session_expiry(), e.session_expiry());
            assert_eq!(a.password, e.password);
            assert_eq!(a.notification_topic(), e.notification_topic());
        }
        assert_eq!(again.bridge.len(), 2);
    }

    #[test]
    fn changes_a_reload_cannot_apply_are_named() {
        let old = BrokerSettings::default();
        let new = BrokerSettings::from_toml(
            "[listeners]\ntcp = [\"127.0.0.1:1\"]\n[limits]\nmax_inflight = 5\n\
             [security]\npassword_file = \"pw\"\n[metrics]\nlisten = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        assert_eq!(
            old.restart_changes(&new),
            vec![
                "listeners.tcp: [\"127.0.0.1:1883\"] -> [\"127.0.0.1:1\"]".to_string(),
                "security.password_file: unset -> \"pw\"".to_string(),
                "security.allow_anonymous: true -> false".to_string(),
                "metrics.listen: unset -> \"127.0.0.1:9\"".to_string(),
            ]
        );
        assert!(new.restart_changes(&new).is_empty());
    }
}
