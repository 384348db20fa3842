//! mosquitto's topic mapping: a bridged topic is `local_prefix + pattern`
//! here and `remote_prefix + pattern` on the remote; a message crossing the
//! bridge loses one prefix and gains the other.

use tern_broker::server::BridgeTopic;
use tern_client::MqttString;
use tern_topic::{TopicFilter, TopicName};

/// One `topic` entry, with its filters checked once.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub(crate) topic: BridgeTopic,
    local: TopicFilter,
    remote: TopicFilter,
}

impl Mapping {
    /// The entry's mapping; the settings were checked when loaded.
    pub(crate) fn new(topic: &BridgeTopic) -> Option<Self> {
        Some(Self {
            local: TopicFilter::try_from(topic.local_filter().as_str()).ok()?,
            remote: TopicFilter::try_from(topic.remote_filter().as_str()).ok()?,
            topic: topic.clone(),
        })
    }

    /// Whether a topic on the remote is this entry's.
    pub(crate) fn matches_remote(&self, topic: &str) -> bool {
        TopicName::try_from(topic).is_ok_and(|t| tern_topic::matches(&self.remote, &t))
    }

    /// Whether a topic here is this entry's.
    pub(crate) fn matches_local(&self, topic: &str) -> bool {
        TopicName::try_from(topic).is_ok_and(|t| tern_topic::matches(&self.local, &t))
    }

    /// A local topic as it is named on the remote.
    pub(crate) fn to_remote(&self, topic: &MqttString) -> Option<MqttString> {
        swap(topic, &self.topic.local_prefix, &self.topic.remote_prefix)
    }

    /// A remote topic as it is named here.
    pub(crate) fn to_local(&self, topic: &MqttString) -> Option<MqttString> {
        swap(topic, &self.topic.remote_prefix, &self.topic.local_prefix)
    }
}

/// `topic` with prefix `from` replaced by `to`: the same string (shared,
/// not copied) when both are empty, as they mostly are.
fn swap(topic: &MqttString, from: &str, to: &str) -> Option<MqttString> {
    if from.is_empty() && to.is_empty() {
        return (!topic.is_empty()).then(|| topic.clone());
    }
    let rest = topic.as_str().strip_prefix(from)?;
    let out = [to, rest].concat();
    // A topic name is never empty.
    if out.is_empty() {
        return None;
    }
    MqttString::try_from(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_broker::server::Direction;
    use tern_client::QoS;

    fn t(topic: &str) -> MqttString {
        MqttString::try_from(topic).unwrap()
    }

    fn mapping(pattern: &str, local: &str, remote: &str) -> Mapping {
        Mapping::new(&BridgeTopic {
            pattern: pattern.into(),
            direction: Direction::Both,
            qos: QoS::AtMostOnce,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        })
        .unwrap()
    }

    #[test]
    fn prefixes_are_swapped_as_mosquitto_does() {
        let m = mapping("sensors/#", "", "edge7/");
        assert!(m.matches_local("sensors/a"));
        assert!(!m.matches_local("edge7/sensors/a"));
        assert_eq!(
            m.to_remote(&t("sensors/a"))
                .as_ref()
                .map(MqttString::as_str),
            Some("edge7/sensors/a")
        );
        assert!(m.matches_remote("edge7/sensors/a"));
        assert_eq!(
            m.to_local(&t("edge7/sensors/a"))
                .as_ref()
                .map(MqttString::as_str),
            Some("sensors/a")
        );
        // An empty pattern: the prefixes are the topics.
        let m = mapping("", "here/t", "there/t");
        assert!(m.matches_local("here/t") && !m.matches_local("here/t/x"));
        assert_eq!(
            m.to_remote(&t("here/t")).as_ref().map(MqttString::as_str),
            Some("there/t")
        );
        assert_eq!(
            m.to_local(&t("there/t")).as_ref().map(MqttString::as_str),
            Some("here/t")
        );
        // Both prefixes.
        let m = mapping("+/temp", "l/", "r/x/");
        assert_eq!(
            m.to_local(&t("r/x/k/temp"))
                .as_ref()
                .map(MqttString::as_str),
            Some("l/k/temp")
        );
        assert!(!m.matches_remote("l/k/temp"));
        // No prefixes: the topic as it is.
        let m = mapping("a/#", "", "");
        assert_eq!(
            m.to_remote(&t("a/b")).as_ref().map(MqttString::as_str),
            Some("a/b")
        );
        assert_eq!(
            m.to_local(&t("a/b")).as_ref().map(MqttString::as_str),
            Some("a/b")
        );
    }
}
