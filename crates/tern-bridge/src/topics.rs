//! mosquitto's topic mapping: a bridged topic is `local_prefix + pattern`
//! here and `remote_prefix + pattern` on the remote; a message crossing the
//! bridge loses one prefix and gains the other.

use tern_broker::server::BridgeTopic;
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
    pub(crate) fn to_remote(&self, topic: &str) -> Option<String> {
        swap(topic, &self.topic.local_prefix, &self.topic.remote_prefix)
    }

    /// A remote topic as it is named here.
    pub(crate) fn to_local(&self, topic: &str) -> Option<String> {
        swap(topic, &self.topic.remote_prefix, &self.topic.local_prefix)
    }
}

fn swap(topic: &str, from: &str, to: &str) -> Option<String> {
    let rest = topic.strip_prefix(from)?;
    let out = format!("{to}{rest}");
    // A topic name is never empty.
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_broker::server::Direction;
    use tern_client::QoS;

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
        assert_eq!(m.to_remote("sensors/a").as_deref(), Some("edge7/sensors/a"));
        assert!(m.matches_remote("edge7/sensors/a"));
        assert_eq!(m.to_local("edge7/sensors/a").as_deref(), Some("sensors/a"));
        // An empty pattern: the prefixes are the topics.
        let m = mapping("", "here/t", "there/t");
        assert!(m.matches_local("here/t") && !m.matches_local("here/t/x"));
        assert_eq!(m.to_remote("here/t").as_deref(), Some("there/t"));
        assert_eq!(m.to_local("there/t").as_deref(), Some("here/t"));
        // Both prefixes.
        let m = mapping("+/temp", "l/", "r/x/");
        assert_eq!(m.to_local("r/x/k/temp").as_deref(), Some("l/k/temp"));
        assert!(!m.matches_remote("l/k/temp"));
    }
}
