//! Interop smoke test: mosquitto's own clients (`mosquitto_pub`,
//! `mosquitto_sub`, Debian package `mosquitto-clients`) publish and
//! subscribe through `tern broker` over TCP, in MQTT 3.1.1 and 5.
//!
//! `cargo xtask ci` installs the clients when they are missing. Without
//! them these tests fail, loudly: they never skip.

mod support;

use std::{
    process::{Child, Command, Stdio},
    sync::mpsc,
};
use support::*;
use tern_codec::{
    Connect, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};

fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "`{tool}` is not installed: run `cargo xtask ci` (which installs it) or \
         `apt-get install mosquitto-clients`"
    );
}

/// mosquitto's `-V` names.
const VERSIONS: [(&str, ProtocolVersion); 2] = [
    ("mqttv311", ProtocolVersion::V3_1_1),
    ("mqttv5", ProtocolVersion::V5),
];

/// A running `mosquitto_sub -d`, subscribed once its SUBACK line appeared.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    fn start(broker: &BrokerProcess, version: &str, topic: &str, count: usize) -> Sub {
        require("mosquitto_sub");
        // stdbuf: line-buffered output, so lines arrive as they happen.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &broker.tcp.port().to_string(),
            ])
            .args(["-V", version, "-t", topic, "-q", "2", "-v", "-d"])
            .args(["-C", &count.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs");
        let lines = lines(child.stdout.take().unwrap());
        let sub = Sub { child, lines };
        sub.until(|l| l.contains("SUBACK"));
        sub
    }

    fn until(&self, mut pick: impl FnMut(&str) -> bool) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .expect("mosquitto_sub printed what was expected");
            if pick(&line) {
                return line;
            }
        }
    }

    /// The next message line (`topic payload`), skipping `-d` debug lines.
    fn message(&self) -> String {
        self.until(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed") && !l.is_empty())
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_pub(broker: &BrokerProcess, version: &str, args: &[&str]) {
    require("mosquitto_pub");
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.tcp.port().to_string(),
            "-V",
            version,
        ])
        .args(args)
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub {args:?}: {status}");
}

#[test]
fn mosquitto_pub_to_mosquitto_sub_through_tern() {
    let broker = BrokerProcess::start();
    for (version, _) in VERSIONS {
        let sub = Sub::start(&broker, version, &format!("interop/{version}/#"), 3);
        for qos in ["0", "1", "2"] {
            let topic = format!("interop/{version}/q{qos}");
            mosquitto_pub(
                &broker,
                version,
                &["-t", &topic, "-q", qos, "-m", &format!("hello {qos}")],
            );
            assert_eq!(sub.message(), format!("{topic} hello {qos}"));
        }
    }
}

#[test]
fn mosquitto_clients_and_a_tern_codec_client_exchange_messages() {
    let broker = BrokerProcess::start();
    for (n, (version, ours)) in VERSIONS.into_iter().enumerate() {
        // Ours subscribes, mosquitto_pub publishes.
        let mut raw = Raw::open(broker.tcp, ours);
        raw.send(Connect {
            protocol: ours,
            clean_start: true,
            client_id: MqttString::try_from(format!("raw-{version}")).unwrap(),
            keep_alive: 60,
            ..Connect::default()
        });
        assert!(
            matches!(raw.next(), Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::Success)
        );
        raw.send(Subscribe {
            packet_id: std::num::NonZeroU16::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("to-raw/#"),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        });
        assert!(matches!(raw.next(), Some(Packet::SubAck(_))));
        mosquitto_pub(
            &broker,
            version,
            &["-t", "to-raw/x", "-m", "from mosquitto"],
        );
        match raw.next() {
            Some(Packet::Publish(p)) => assert_eq!(p.payload, "from mosquitto"),
            other => panic!("expected PUBLISH, got {other:?}"),
        }

        // mosquitto_sub subscribes, ours publishes (retained, so the
        // subscriber started afterwards gets it too).
        raw.send(Publish {
            retain: true,
            topic: MqttString::try_from(format!("to-mosquitto/{n}")).unwrap(),
            payload: "from tern-codec".into(),
            ..Publish::default()
        });
        let sub = Sub::start(&broker, version, &format!("to-mosquitto/{n}"), 1);
        assert_eq!(sub.message(), format!("to-mosquitto/{n} from tern-codec"));
    }
}
