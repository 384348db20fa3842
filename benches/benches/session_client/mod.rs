//! The client's half of a round trip, tern-session against rumqttc 0.24's
//! client state machine (`rumqttc::MqttState`, `rumqttc::v5::MqttState`),
//! shared by `benches/session.rs` and `examples/session_ir.rs`.
//!
//! rumqttc has no server state machine, so this compares like with like:
//! each system publishes a batch of messages, hands out the PUBLISH packets
//! encoded to bytes, then decodes the acknowledgements from bytes and
//! completes the flows — PUBACK at QoS 1; PUBREC, then the PUBREL it sends
//! encoded, then PUBCOMP at QoS 2. The acknowledgements are the same wire
//! bytes for both (the short form, identical in 3.1.1 and 5.0), written into
//! the input buffer per batch from the packet identifiers each system
//! assigned.
//!
//! The two APIs differ in shape and the drivers follow each one's intended
//! use: tern queues the message on `publish` and writes it into the
//! caller's buffer on `write_transmit`; rumqttc encodes into `MqttState::write`
//! inside `handle_outgoing_packet` and reports the identifier as an event.

use bytes::{BufMut, Bytes, BytesMut};
use std::hint::black_box;
use tern_benches::session_pair::Pair;
use tern_codec::{MqttString, ProtocolVersion, Publish, QoS};
use tern_session::{ClientConnection, ClientEvent, Instant};

/// Messages per batch.
pub(crate) const BATCH: usize = 64;
/// The topic every message goes to (31 bytes).
pub(crate) const TOPIC: &str = "sensors/building-7/floor-3/temp";
/// The payload size.
pub(crate) const PAYLOAD: usize = 64;

const PUBACK: u8 = 0x40;
const PUBREC: u8 = 0x50;
const PUBCOMP: u8 = 0x70;
/// rumqttc's default in-flight limit (`MqttOptions::inflight`).
const RUMQTTC_INFLIGHT: u16 = 100;
const MAX_PACKET: usize = 1024 * 1024;

/// Appends one short-form acknowledgement of `packet_type` per identifier.
fn put_acks(buf: &mut BytesMut, packet_type: u8, ids: &[u16]) {
    for &id in ids {
        buf.put_slice(&[packet_type, 2]);
        buf.put_u16(id);
    }
}

/// One system's client side.
pub(crate) trait ClientSide {
    /// Publishes [`BATCH`] messages and completes their flows; returns how
    /// many flows completed (0 at QoS 0).
    fn batch(&mut self) -> usize;
}

/// tern-session's `ClientConnection`, connected (through a real handshake
/// with a `ServerConnection`, which then takes no further part).
pub(crate) struct Tern {
    client: ClientConnection,
    qos: QoS,
    topic: MqttString,
    payload: Bytes,
    out: BytesMut,
    inbound: BytesMut,
    ids: Vec<u16>,
}

impl Tern {
    /// A connected client for `version` publishing at `qos`.
    pub(crate) fn new(version: ProtocolVersion, qos: QoS) -> Self {
        Self {
            client: Pair::new(version).client,
            qos,
            topic: MqttString::from_static(TOPIC),
            payload: Bytes::from(vec![0x5a; PAYLOAD]),
            out: BytesMut::with_capacity(64 * 1024),
            inbound: BytesMut::with_capacity(64 * 1024),
            ids: Vec::with_capacity(BATCH),
        }
    }

    fn transmit(&mut self) {
        while self
            .client
            .write_transmit(Instant::ZERO, &mut self.out, usize::MAX)
            .is_some()
        {}
        black_box(&self.out);
        self.out.clear();
    }

    fn receive(&mut self, packet_type: u8) {
        put_acks(&mut self.inbound, packet_type, &self.ids);
        self.client.handle_bytes(Instant::ZERO, &mut self.inbound);
        assert!(self.inbound.is_empty());
    }
}

impl ClientSide for Tern {
    fn batch(&mut self) -> usize {
        self.ids.clear();
        for _ in 0..BATCH {
            let id = self
                .client
                .publish(
                    Instant::ZERO,
                    Publish {
                        topic: self.topic.clone(),
                        qos: self.qos,
                        payload: self.payload.clone(),
                        ..Publish::default()
                    },
                )
                .unwrap();
            if let Some(id) = id {
                self.ids.push(id.get());
            }
        }
        self.transmit();
        match self.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.receive(PUBACK),
            QoS::ExactlyOnce => {
                self.receive(PUBREC);
                self.transmit();
                self.receive(PUBCOMP);
            }
        }
        let mut done = 0;
        while let Some(e) = self.client.poll_event() {
            if matches!(e, ClientEvent::Published { .. }) {
                done += 1;
            }
        }
        done
    }
}

/// rumqttc 0.24's MQTT 3.1.1 `MqttState` and its codec.
pub(crate) struct RumqttcV4 {
    state: rumqttc::MqttState,
    qos: rumqttc::QoS,
    topic: String,
    payload: Bytes,
    inbound: BytesMut,
    ids: Vec<u16>,
}

impl RumqttcV4 {
    /// A state machine publishing at `qos`.
    pub(crate) fn new(qos: QoS) -> Self {
        Self {
            state: rumqttc::MqttState::new(RUMQTTC_INFLIGHT, false, MAX_PACKET),
            qos: rumqttc::qos(qos.as_u8()).unwrap(),
            topic: TOPIC.to_owned(),
            payload: Bytes::from(vec![0x5a; PAYLOAD]),
            inbound: BytesMut::with_capacity(64 * 1024),
            ids: Vec::with_capacity(BATCH),
        }
    }

    fn receive(&mut self, packet_type: u8) {
        put_acks(&mut self.inbound, packet_type, &self.ids);
        while !self.inbound.is_empty() {
            let packet = rumqttc::mqttbytes::v4::read(&mut self.inbound, MAX_PACKET).unwrap();
            self.state.handle_incoming_packet(packet).unwrap();
        }
    }

    fn transmit(&mut self) {
        black_box(&self.state.write);
        self.state.write.clear();
    }
}

impl ClientSide for RumqttcV4 {
    fn batch(&mut self) -> usize {
        use rumqttc::{Event, Incoming, Outgoing};
        for _ in 0..BATCH {
            let publish = rumqttc::Publish {
                dup: false,
                qos: self.qos,
                retain: false,
                topic: self.topic.clone(),
                pkid: 0,
                payload: self.payload.clone(),
            };
            self.state
                .handle_outgoing_packet(rumqttc::Request::Publish(publish))
                .unwrap();
        }
        self.ids.clear();
        while let Some(e) = self.state.events.pop_front() {
            if let Event::Outgoing(Outgoing::Publish(pkid)) = e {
                self.ids.push(pkid);
            }
        }
        self.transmit();
        match self.qos {
            rumqttc::QoS::AtMostOnce => {}
            rumqttc::QoS::AtLeastOnce => self.receive(PUBACK),
            rumqttc::QoS::ExactlyOnce => {
                self.receive(PUBREC);
                self.transmit();
                self.receive(PUBCOMP);
            }
        }
        let mut done = 0;
        while let Some(e) = self.state.events.pop_front() {
            if matches!(
                e,
                Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))
            ) {
                done += 1;
            }
        }
        done
    }
}

/// rumqttc 0.24's MQTT 5 `v5::MqttState` and its codec.
pub(crate) struct RumqttcV5 {
    state: rumqttc::v5::MqttState,
    qos: rumqttc::v5::mqttbytes::QoS,
    topic: Bytes,
    payload: Bytes,
    inbound: BytesMut,
    ids: Vec<u16>,
}

impl RumqttcV5 {
    /// A state machine publishing at `qos`.
    pub(crate) fn new(qos: QoS) -> Self {
        Self {
            state: rumqttc::v5::MqttState::new(RUMQTTC_INFLIGHT, false),
            qos: rumqttc::v5::mqttbytes::qos(qos.as_u8()).unwrap(),
            topic: Bytes::from_static(TOPIC.as_bytes()),
            payload: Bytes::from(vec![0x5a; PAYLOAD]),
            inbound: BytesMut::with_capacity(64 * 1024),
            ids: Vec::with_capacity(BATCH),
        }
    }

    fn receive(&mut self, packet_type: u8) {
        use rumqttc::v5::mqttbytes::v5::Packet;
        put_acks(&mut self.inbound, packet_type, &self.ids);
        while !self.inbound.is_empty() {
            let packet = Packet::read(&mut self.inbound, Some(MAX_PACKET)).unwrap();
            self.state.handle_incoming_packet(packet).unwrap();
        }
    }

    fn transmit(&mut self) {
        black_box(&self.state.write);
        self.state.write.clear();
    }
}

impl ClientSide for RumqttcV5 {
    fn batch(&mut self) -> usize {
        use rumqttc::Outgoing;
        use rumqttc::v5::{Event, Incoming, mqttbytes::QoS as RQoS};
        for _ in 0..BATCH {
            let publish = rumqttc::v5::mqttbytes::v5::Publish {
                dup: false,
                qos: self.qos,
                retain: false,
                topic: self.topic.clone(),
                pkid: 0,
                payload: self.payload.clone(),
                properties: None,
            };
            self.state
                .handle_outgoing_packet(rumqttc::v5::Request::Publish(publish))
                .unwrap();
        }
        self.ids.clear();
        while let Some(e) = self.state.events.pop_front() {
            if let Event::Outgoing(Outgoing::Publish(pkid)) = e {
                self.ids.push(pkid);
            }
        }
        self.transmit();
        match self.qos {
            RQoS::AtMostOnce => {}
            RQoS::AtLeastOnce => self.receive(PUBACK),
            RQoS::ExactlyOnce => {
                self.receive(PUBREC);
                self.transmit();
                self.receive(PUBCOMP);
            }
        }
        let mut done = 0;
        while let Some(e) = self.state.events.pop_front() {
            if matches!(
                e,
                Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))
            ) {
                done += 1;
            }
        }
        done
    }
}

/// The client side of `system` ("tern" or "rumqttc") for `version` and `qos`.
pub(crate) fn client_side(system: &str, version: ProtocolVersion, qos: QoS) -> Box<dyn ClientSide> {
    match (system, version) {
        ("tern", _) => Box::new(Tern::new(version, qos)),
        ("rumqttc", ProtocolVersion::V5) => Box::new(RumqttcV5::new(qos)),
        ("rumqttc", _) => Box::new(RumqttcV4::new(qos)),
        _ => panic!("unknown system {system}"),
    }
}
