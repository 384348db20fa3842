//! The `$SYS` topics, named as mosquitto names them so dashboards carry over.

use super::Broker;
use tern_codec::{MqttString, Publish, QoS};
use tern_session::Instant;

impl Broker {
    /// Publishes the broker's counters as retained messages under `$SYS/broker/`.
    pub(super) fn publish_sys(&mut self, now: Instant) {
        let s = self.stats;
        let uptime = (now - self.started).as_secs();
        let values: [(&str, String); 15] = [
            ("version", format!("tern {}", env!("CARGO_PKG_VERSION"))),
            ("uptime", format!("{uptime} seconds")),
            ("clients/connected", s.clients_connected.to_string()),
            ("clients/total", self.sessions.len().to_string()),
            (
                "clients/disconnected",
                (self.sessions.len() as u64)
                    .saturating_sub(s.clients_connected)
                    .to_string(),
            ),
            ("clients/maximum", s.clients_maximum.to_string()),
            ("messages/received", s.messages_received.to_string()),
            ("messages/sent", s.messages_sent.to_string()),
            ("publish/messages/dropped", s.messages_dropped.to_string()),
            ("subscriptions/count", self.subscriptions.len().to_string()),
            ("retained messages/count", self.retained.len().to_string()),
            // Totals; mosquitto's `load/...` topics are 1/5/15-minute averages.
            ("bytes/received", s.bytes_received.to_string()),
            ("bytes/sent", s.bytes_sent.to_string()),
            ("store/messages/count", self.queued_messages().to_string()),
            // Tern's own: requests refused by a resource limit (issue 13).
            ("limits/refused", s.limit_refusals.to_string()),
        ];
        for (name, value) in values {
            let Ok(topic) = MqttString::try_from(format!("$SYS/broker/{name}")) else {
                continue;
            };
            let publish = Publish {
                qos: QoS::AtMostOnce,
                retain: true,
                topic,
                payload: value.into(),
                ..Publish::default()
            };
            self.publish_message(now, None, publish);
        }
    }

    /// Messages waiting in offline sessions.
    fn queued_messages(&self) -> usize {
        self.sessions
            .iter()
            .filter_map(|(_, s)| s.offline.as_ref())
            .map(|s| s.queue_len())
            .sum()
    }
}
