//! Interop driver for `cargo xtask interop`: rumqttc (MQTT 3.1.1 and 5)
//! against a broker.
//!
//! Usage: `interop_rumqttc mqtt://HOST:PORT VERSION PREFIX` (VERSION: 3.1.1
//! or 5). Prints `PASS CHECK` or `FAIL CHECK: why` for each of qos0, qos1,
//! qos2, retained and will (every driver's), then session, large and
//! cross-version, and exits with status 1 if any failed.

use bytes::Bytes;
use std::{collections::VecDeque, process::ExitCode, time::Duration};
use tokio::{sync::mpsc, task::JoinHandle, time::timeout};

/// How long one expected event may take.
const WAIT: Duration = Duration::from_secs(10);

/// The largest packet either side may send (rumqttc's default is 10 kB).
const MAX_PACKET: u32 = 1 << 20;

/// What a connection's event loop reports, for both protocol versions.
#[derive(Debug)]
enum Event {
    /// Session present, or the refusal.
    ConnAck(Result<bool, String>),
    /// Granted QoS per filter (None: refused).
    SubAck(Vec<Option<u8>>),
    Message(Message),
    PubAck,
    PubComp,
    Closed(String),
}

/// A received PUBLISH.
#[derive(Debug, PartialEq)]
struct Message {
    topic: String,
    payload: Bytes,
    qos: u8,
    retain: bool,
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// One connected client: its commands, and its event loop on a task.
struct Peer {
    client: Client,
    events: mpsc::UnboundedReceiver<Event>,
    messages: VecDeque<Message>,
    task: JoinHandle<()>,
    /// What CONNACK said.
    session_present: bool,
}

fn qos4(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Peer {
    /// Connects (with a will of QoS 1 on `will.0` if given; with a session
    /// that outlives the connection if `persistent`) and waits for CONNACK.
    async fn connect(
        host: &str,
        port: u16,
        v5: bool,
        id: &str,
        will: Option<(&str, &str)>,
        persistent: bool,
    ) -> Result<Peer, String> {
        let (tx, events) = mpsc::unbounded_channel();
        let (client, task) = if v5 {
            use rumqttc::v5::{Event::Incoming, Incoming as P, mqttbytes::v5 as m};
            let mut options = rumqttc::v5::MqttOptions::new(id, host, port);
            options.set_clean_start(!persistent);
            let mut properties = m::ConnectProperties::new();
            properties.max_packet_size = Some(MAX_PACKET);
            properties.session_expiry_interval = persistent.then_some(60);
            options.set_connect_properties(properties);
            if let Some((topic, payload)) = will {
                options.set_last_will(m::LastWill::new(topic, payload, qos5(1), false, None));
            }
            let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 16);
            let task = tokio::spawn(async move {
                loop {
                    let event = match eventloop.poll().await {
                        Ok(Incoming(P::ConnAck(ack))) => Event::ConnAck(
                            (ack.code == m::ConnectReturnCode::Success)
                                .then_some(ack.session_present)
                                .ok_or(format!("{:?}", ack.code)),
                        ),
                        Ok(Incoming(P::SubAck(ack))) => Event::SubAck(
                            ack.return_codes
                                .iter()
                                .map(|c| match c {
                                    m::SubscribeReasonCode::Success(q) => Some(*q as u8),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        Ok(Incoming(P::Publish(p))) => Event::Message(Message {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                            qos: p.qos as u8,
                            retain: p.retain,
                        }),
                        Ok(Incoming(P::PubAck(_))) => Event::PubAck,
                        Ok(Incoming(P::PubComp(_))) => Event::PubComp,
                        Ok(_) => continue,
                        Err(e) => Event::Closed(e.to_string()),
                    };
                    let closed = matches!(event, Event::Closed(_));
                    if tx.send(event).is_err() || closed {
                        break;
                    }
                }
            });
            (Client::V5(client), task)
        } else {
            use rumqttc::{Event::Incoming, Packet as P};
            let mut options = rumqttc::MqttOptions::new(id, host, port);
            options.set_clean_session(!persistent);
            options.set_max_packet_size(MAX_PACKET as usize, MAX_PACKET as usize);
            if let Some((topic, payload)) = will {
                options.set_last_will(rumqttc::LastWill::new(topic, payload, qos4(1), false));
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
            let task = tokio::spawn(async move {
                loop {
                    let event = match eventloop.poll().await {
                        Ok(Incoming(P::ConnAck(ack))) => Event::ConnAck(
                            (ack.code == rumqttc::ConnectReturnCode::Success)
                                .then_some(ack.session_present)
                                .ok_or(format!("{:?}", ack.code)),
                        ),
                        Ok(Incoming(P::SubAck(ack))) => Event::SubAck(
                            ack.return_codes
                                .iter()
                                .map(|c| match c {
                                    rumqttc::SubscribeReasonCode::Success(q) => Some(*q as u8),
                                    rumqttc::SubscribeReasonCode::Failure => None,
                                })
                                .collect(),
                        ),
                        Ok(Incoming(P::Publish(p))) => Event::Message(Message {
                            topic: p.topic,
                            payload: p.payload,
                            qos: p.qos as u8,
                            retain: p.retain,
                        }),
                        Ok(Incoming(P::PubAck(_))) => Event::PubAck,
                        Ok(Incoming(P::PubComp(_))) => Event::PubComp,
                        Ok(_) => continue,
                        Err(e) => Event::Closed(e.to_string()),
                    };
                    let closed = matches!(event, Event::Closed(_));
                    if tx.send(event).is_err() || closed {
                        break;
                    }
                }
            });
            (Client::V4(client), task)
        };
        let mut peer = Peer {
            client,
            events,
            messages: VecDeque::new(),
            task,
            session_present: false,
        };
        match peer.next(&format!("CONNACK for {id}")).await? {
            Event::ConnAck(result) => {
                peer.session_present = result.map_err(|code| format!("{id} refused: {code}"))?;
            }
            other => return Err(format!("{id}: expected CONNACK, got {other:?}")),
        }
        Ok(peer)
    }

    /// The next event that is not a message (messages are kept for
    /// [`Peer::expect`]).
    async fn next(&mut self, what: &str) -> Result<Event, String> {
        loop {
            match timeout(WAIT, self.events.recv()).await {
                Ok(Some(Event::Message(m))) => self.messages.push_back(m),
                Ok(Some(Event::Closed(why))) => return Err(format!("connection closed: {why}")),
                Ok(Some(event)) => return Ok(event),
                Ok(None) => return Err("the event loop ended".into()),
                Err(_) => return Err(format!("no {what} within {}s", WAIT.as_secs())),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), String> {
        match &self.client {
            Client::V4(c) => c
                .subscribe(filter, qos4(qos))
                .await
                .map_err(|e| e.to_string())?,
            Client::V5(c) => c
                .subscribe(filter, qos5(qos))
                .await
                .map_err(|e| e.to_string())?,
        }
        match self.next("SUBACK").await? {
            Event::SubAck(granted) if granted == [Some(qos)] => Ok(()),
            other => Err(format!("subscribe {filter} at QoS {qos}: got {other:?}")),
        }
    }

    /// Publishes and, at QoS 1 and 2, waits for PUBACK or PUBCOMP.
    async fn publish(
        &mut self,
        topic: &str,
        payload: &str,
        qos: u8,
        retain: bool,
    ) -> Result<(), String> {
        let payload = payload.as_bytes().to_vec();
        match &self.client {
            Client::V4(c) => c
                .publish(topic, qos4(qos), retain, payload)
                .await
                .map_err(|e| e.to_string())?,
            Client::V5(c) => c
                .publish(topic, qos5(qos), retain, payload)
                .await
                .map_err(|e| e.to_string())?,
        }
        let ack = match qos {
            0 => return Ok(()),
            1 => "PUBACK",
            _ => "PUBCOMP",
        };
        match (qos, self.next(ack).await?) {
            (1, Event::PubAck) | (2, Event::PubComp) => Ok(()),
            (_, other) => Err(format!("expected {ack}, got {other:?}")),
        }
    }

    /// The next message on `topic`, which must be `want`.
    async fn expect(&mut self, want: Message) -> Result<(), String> {
        let got = loop {
            if let Some(i) = self.messages.iter().position(|m| m.topic == want.topic) {
                break self.messages.remove(i).expect("found");
            }
            match timeout(WAIT, self.events.recv()).await {
                Ok(Some(Event::Message(m))) => self.messages.push_back(m),
                Ok(Some(Event::Closed(why))) => return Err(format!("connection closed: {why}")),
                Ok(Some(_)) => {}
                Ok(None) => return Err("the event loop ended".into()),
                Err(_) => {
                    return Err(format!(
                        "no message on {} within {}s",
                        want.topic,
                        WAIT.as_secs()
                    ));
                }
            }
        };
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "expected {}, got {}",
                describe(&want),
                describe(&got)
            ))
        }
    }

    async fn disconnect(self) {
        let _ = match &self.client {
            Client::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
        let _ = timeout(WAIT, self.task).await;
    }
}

fn message(topic: &str, payload: impl Into<Bytes>, qos: u8, retain: bool) -> Message {
    Message {
        topic: topic.to_string(),
        payload: payload.into(),
        qos,
        retain,
    }
}

/// A message, short enough for a report line.
fn describe(m: &Message) -> String {
    let payload = if m.payload.len() <= 64 {
        format!("{:?}", String::from_utf8_lossy(&m.payload))
    } else {
        format!("{} bytes", m.payload.len())
    };
    format!("{} {payload} (QoS {}, retain {})", m.topic, m.qos, m.retain)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, version, prefix] = args.as_slice() else {
        eprintln!("usage: interop_rumqttc mqtt://HOST:PORT 3.1.1|5 PREFIX");
        return ExitCode::from(2);
    };
    let Some((host, port)) = url
        .strip_prefix("mqtt://")
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
    else {
        eprintln!("bad URL {url}");
        return ExitCode::from(2);
    };
    let v5 = version == "5";
    match run(&host, port, v5, prefix).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("set-up failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(check: &str, result: Result<(), String>) -> usize {
    match result {
        Ok(()) => {
            println!("PASS {check}");
            0
        }
        Err(why) => {
            println!("FAIL {check}: {why}");
            1
        }
    }
}

/// Runs the checks; returns how many failed.
async fn run(host: &str, port: u16, v5: bool, prefix: &str) -> Result<usize, String> {
    let tag = format!("rumqttc-{}-{}", if v5 { 5 } else { 4 }, std::process::id());
    let mut failed = 0;
    let mut sub = Peer::connect(host, port, v5, &format!("{tag}-sub"), None, false).await?;
    sub.subscribe(&format!("{prefix}/q/+"), 2).await?;
    sub.subscribe(&format!("{prefix}/will"), 1).await?;
    let mut publisher = Peer::connect(host, port, v5, &format!("{tag}-pub"), None, false).await?;

    for (qos, payload) in [(0, "qos0"), (1, "qos1"), (2, "qos2")] {
        let topic = format!("{prefix}/q/{qos}");
        let result = async {
            publisher.publish(&topic, payload, qos, false).await?;
            sub.expect(message(&topic, payload, qos, false)).await
        }
        .await;
        failed += report(payload, result);
    }

    let topic = format!("{prefix}/retained");
    let result = async {
        publisher.publish(&topic, "kept", 1, true).await?;
        let mut late = Peer::connect(host, port, v5, &format!("{tag}-late"), None, false).await?;
        let result = async {
            late.subscribe(&topic, 1).await?;
            late.expect(message(&topic, "kept", 1, true)).await
        }
        .await;
        late.disconnect().await;
        publisher.publish(&topic, "", 1, true).await?;
        result
    }
    .await;
    failed += report("retained", result);

    let topic = format!("{prefix}/will");
    let result = async {
        let will = Peer::connect(
            host,
            port,
            v5,
            &format!("{tag}-will"),
            Some((&topic, "gone")),
            false,
        )
        .await?;
        // Aborting the event loop's task drops its socket: the connection
        // closes without DISCONNECT.
        will.task.abort();
        let _ = will.task.await;
        sub.expect(message(&topic, "gone", 1, false)).await
    }
    .await;
    failed += report("will", result);

    // A persistent session keeps the subscription and the QoS 1 message
    // published while its client was away.
    let topic = format!("{prefix}/session");
    let id = format!("{tag}-persistent");
    let result = async {
        let mut first = Peer::connect(host, port, v5, &id, None, true).await?;
        first.subscribe(&topic, 1).await?;
        first.disconnect().await;
        publisher.publish(&topic, "while away", 1, false).await?;
        let mut back = Peer::connect(host, port, v5, &id, None, true).await?;
        let result = if back.session_present {
            back.expect(message(&topic, "while away", 1, false)).await
        } else {
            Err("CONNACK without session present".to_string())
        };
        back.disconnect().await;
        // Clean Start / Clean Session 1 discards the session.
        Peer::connect(host, port, v5, &id, None, false)
            .await?
            .disconnect()
            .await;
        result
    }
    .await;
    failed += report("session", result);

    let topic = format!("{prefix}/q/large");
    let payload = "tern".repeat(75_000); // 300 kB
    let result = async {
        publisher.publish(&topic, &payload, 1, false).await?;
        sub.expect(message(&topic, payload.clone(), 1, false)).await
    }
    .await;
    failed += report("large", result);

    // A publisher of the other protocol version.
    let topic = format!("{prefix}/q/cross");
    let result = async {
        let other = format!("{tag}-other");
        let mut across = Peer::connect(host, port, !v5, &other, None, false).await?;
        let sent = across.publish(&topic, "across", 1, false).await;
        across.disconnect().await;
        sent?;
        sub.expect(message(&topic, "across", 1, false)).await
    }
    .await;
    failed += report("cross-version", result);

    publisher.disconnect().await;
    sub.disconnect().await;
    Ok(failed)
}
