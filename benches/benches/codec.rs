#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

//! tern-codec against its peers, in one run: decode and encode of the same
//! packets with tern-codec, mqttbytes 0.6 and mqttrs 0.4 (MQTT 3.1.1 only),
//! and a plain `memcpy` of the wire bytes as the floor.
//!
//! Decode is measured per packet over a buffer pre-filled with many copies of
//! the packet, refilled outside the timed region, so the `BytesMut` → `Bytes`
//! split that tern-codec and mqttbytes do (and the drop of what they return)
//! is inside their measurements. mqttrs borrows from a slice instead, and the
//! memcpy floor copies the packet's bytes out; both step over the packet with
//! `BytesMut::advance` (a pointer bump, no reference count), which only
//! favours them.
//!
//! Run: `cargo bench -p tern-benches --bench codec -- --warm-up-time 1 --measurement-time 3`

use bytes::{Buf, Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use tern_codec::{
    Connect, ConnectProperties, MqttString, Packet, PacketId, PayloadFormat, ProtocolVersion,
    Publish, PublishProperties, QoS, RetainHandling, Subscribe, SubscribeFilter,
    SubscribeProperties, SubscriptionOptions, UserProperty, Will,
};

/// Copies of a packet in one pre-filled decode buffer.
const COPIES: usize = 512;
/// A 31-byte topic.
const TOPIC: &str = "sensors/building-7/floor-3/temp";
const MAX: usize = 1 << 20;

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

/// One packet, as each implementation holds it.
struct Case {
    name: String,
    version: ProtocolVersion,
    tern: Packet,
    wire: Vec<u8>,
    mqttbytes: Peer,
    mqttrs: Option<mqttrs::Packet<'static>>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "built once per case and never moved inside a timed loop"
)]
enum Peer {
    V4(mqttbytes::v4::Packet),
    V5(mqttbytes::v5::Packet),
}

fn leak(bytes: &[u8]) -> &'static [u8] {
    Box::leak(bytes.to_vec().into_boxed_slice())
}

fn publish_case(payload_len: usize, version: ProtocolVersion) -> Case {
    let payload = Bytes::from(vec![0xA5; payload_len]);
    let v5 = version.is_v5();
    let properties = if v5 {
        PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            message_expiry_interval: Some(3600),
            content_type: Some(s("application/octet-stream")),
            user_properties: vec![UserProperty::new(s("site"), s("b7"))].into(),
            ..PublishProperties::default()
        }
    } else {
        PublishProperties::default()
    };
    let tern = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: s(TOPIC),
        packet_id: PacketId::new(42),
        properties: properties.into(),
        payload: payload.clone(),
        ..Publish::default()
    });
    let mqttbytes = if v5 {
        use mqttbytes::v5;
        let mut p = v5::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload.clone());
        p.pkid = 42;
        p.properties = Some(v5::PublishProperties {
            payload_format_indicator: Some(0),
            message_expiry_interval: Some(3600),
            topic_alias: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![("site".into(), "b7".into())],
            subscription_identifiers: Vec::new(),
            content_type: Some("application/octet-stream".into()),
        });
        Peer::V5(v5::Packet::Publish(p))
    } else {
        let mut p =
            mqttbytes::v4::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload.clone());
        p.pkid = 42;
        Peer::V4(mqttbytes::v4::Packet::Publish(p))
    };
    let mqttrs = (!v5).then(|| {
        mqttrs::Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: mqttrs::QosPid::AtLeastOnce(mqttrs::Pid::try_from(42).unwrap()),
            retain: false,
            topic_name: TOPIC,
            payload: leak(&payload),
        })
    });
    let size = if payload_len >= 1024 {
        format!("{}KiB", payload_len / 1024)
    } else {
        format!("{payload_len}B")
    };
    finish(
        format!("publish_qos1_{size}/{}", version_name(version)),
        version,
        tern,
        mqttbytes,
        mqttrs,
    )
}

fn connect_case(version: ProtocolVersion) -> Case {
    let v5 = version.is_v5();
    let tern = Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        properties: if v5 {
            ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(100.try_into().unwrap()),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        },
        client_id: s("tern-bench-client-0001"),
        will: Some(Will {
            topic: s("status/tern-bench-client-0001"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some(s("bench-user")),
        password: Some(Bytes::from_static(b"bench-password")),
        bridge: false,
    }));
    let mqttbytes = if v5 {
        use mqttbytes::v5;
        let mut c = v5::Connect::new("tern-bench-client-0001");
        c.keep_alive = 30;
        c.clean_session = true;
        c.last_will = Some(v5::LastWill::new(
            "status/tern-bench-client-0001",
            "offline",
            mqttbytes::QoS::AtLeastOnce,
            true,
        ));
        c.set_login("bench-user", "bench-password");
        c.properties = Some(v5::ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(100),
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: Vec::new(),
            authentication_method: None,
            authentication_data: None,
        });
        Peer::V5(v5::Packet::Connect(c))
    } else {
        use mqttbytes::v4;
        let mut c = v4::Connect::new("tern-bench-client-0001");
        c.keep_alive = 30;
        c.clean_session = true;
        c.last_will = Some(v4::LastWill::new(
            "status/tern-bench-client-0001",
            "offline",
            mqttbytes::QoS::AtLeastOnce,
            true,
        ));
        c.set_login("bench-user", "bench-password");
        Peer::V4(v4::Packet::Connect(c))
    };
    let mqttrs = (!v5).then_some(mqttrs::Packet::Connect(mqttrs::Connect {
        protocol: mqttrs::Protocol::MQTT311,
        keep_alive: 30,
        client_id: "tern-bench-client-0001",
        clean_session: true,
        last_will: Some(mqttrs::LastWill {
            topic: "status/tern-bench-client-0001",
            message: b"offline",
            qos: mqttrs::QoS::AtLeastOnce,
            retain: true,
        }),
        username: Some("bench-user"),
        password: Some(b"bench-password"),
    }));
    finish(
        format!("connect/{}", version_name(version)),
        version,
        tern,
        mqttbytes,
        mqttrs,
    )
}

const FILTERS: [(&str, QoS); 3] = [
    ("sensors/+/floor-3/#", QoS::AtLeastOnce),
    ("alerts/building-7", QoS::ExactlyOnce),
    ("$SYS/broker/load/#", QoS::AtMostOnce),
];

fn peer_qos(q: QoS) -> mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
    }
}

fn subscribe_case(version: ProtocolVersion) -> Case {
    let v5 = version.is_v5();
    let tern = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(7).unwrap(),
        properties: SubscribeProperties::default(),
        filters: FILTERS
            .iter()
            .map(|&(f, qos)| SubscribeFilter {
                filter: MqttString::from_static(f),
                options: SubscriptionOptions {
                    qos,
                    retain_handling: RetainHandling::SendAtSubscribe,
                    ..SubscriptionOptions::default()
                },
            })
            .collect(),
    });
    let mqttbytes = if v5 {
        use mqttbytes::v5;
        Peer::V5(v5::Packet::Subscribe(v5::Subscribe {
            pkid: 7,
            filters: FILTERS
                .iter()
                .map(|&(f, q)| v5::SubscribeFilter::new(f.into(), peer_qos(q)))
                .collect(),
            properties: None,
        }))
    } else {
        use mqttbytes::v4;
        Peer::V4(v4::Packet::Subscribe(v4::Subscribe {
            pkid: 7,
            filters: FILTERS
                .iter()
                .map(|&(f, q)| v4::SubscribeFilter::new(f.into(), peer_qos(q)))
                .collect(),
        }))
    };
    let mqttrs = (!v5).then(|| {
        let qos = |q| match q {
            QoS::AtMostOnce => mqttrs::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqttrs::QoS::AtLeastOnce,
            QoS::ExactlyOnce => mqttrs::QoS::ExactlyOnce,
        };
        mqttrs::Packet::Subscribe(mqttrs::Subscribe::new(
            mqttrs::Pid::try_from(7).unwrap(),
            FILTERS
                .iter()
                .map(|&(f, q)| mqttrs::SubscribeTopic {
                    topic_path: f.into(),
                    qos: qos(q),
                })
                .collect(),
        ))
    });
    finish(
        format!("subscribe/{}", version_name(version)),
        version,
        tern,
        mqttbytes,
        mqttrs,
    )
}

fn version_name(version: ProtocolVersion) -> &'static str {
    if version.is_v5() { "v5" } else { "v311" }
}

/// Encodes with tern-codec and checks every peer reads those bytes and writes
/// a packet of the same size, so all implementations do the same work.
fn finish(
    name: String,
    version: ProtocolVersion,
    tern: Packet,
    mqttbytes: Peer,
    mqttrs: Option<mqttrs::Packet<'static>>,
) -> Case {
    let mut wire = Vec::new();
    tern.encode(version, &mut wire).unwrap();
    let mut peer = BytesMut::new();
    match &mqttbytes {
        Peer::V4(p) => {
            peer_write_v4(p, &mut peer);
            mqttbytes::v4::read(&mut BytesMut::from(&wire[..]), MAX).expect("mqttbytes reads it");
        }
        Peer::V5(p) => {
            peer_write_v5(p, &mut peer);
            mqttbytes::v5::read(&mut BytesMut::from(&wire[..]), MAX).expect("mqttbytes reads it");
        }
    }
    // Same size; property order may differ (mqttbytes writes User Properties
    // before Content Type), which the specification allows.
    assert_eq!(
        peer.len(),
        wire.len(),
        "{name}: mqttbytes writes another size"
    );
    if let Some(p) = &mqttrs {
        let mut out = vec![0; wire.len() + 16];
        let n = mqttrs::encode_slice(p, &mut out).unwrap();
        assert_eq!(&out[..n], &wire[..], "{name}: mqttrs writes other bytes");
        assert!(mqttrs::decode_slice(&wire).unwrap().is_some());
    }
    Case {
        name,
        version,
        tern,
        wire,
        mqttbytes,
        mqttrs,
    }
}

fn peer_write_v4(p: &mqttbytes::v4::Packet, out: &mut BytesMut) {
    use mqttbytes::v4::Packet as P;
    match p {
        P::Publish(p) => p.write(out),
        P::Connect(p) => p.write(out),
        P::Subscribe(p) => p.write(out),
        _ => unreachable!("not benchmarked"),
    }
    .unwrap();
}

fn peer_write_v5(p: &mqttbytes::v5::Packet, out: &mut BytesMut) {
    use mqttbytes::v5::Packet as P;
    match p {
        P::Publish(p) => p.write(out),
        P::Connect(p) => p.write(out),
        P::Subscribe(p) => p.write(out),
        _ => unreachable!("not benchmarked"),
    }
    .unwrap();
}

/// Times `decode_one` per packet over a buffer of [`COPIES`] copies of
/// `wire`, refilled (untimed) whenever it runs out.
fn per_packet(iters: u64, wire: &[u8], mut decode_one: impl FnMut(&mut BytesMut)) -> Duration {
    let template = BytesMut::from(&wire.repeat(COPIES)[..]);
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let n = remaining.min(COPIES as u64);
        let mut buf = template.clone();
        let start = Instant::now();
        for _ in 0..n {
            decode_one(&mut buf);
        }
        total += start.elapsed();
        drop(buf);
        remaining -= n;
    }
    total
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        cases.push(publish_case(64, version));
        cases.push(publish_case(1024, version));
        cases.push(connect_case(version));
        cases.push(subscribe_case(version));
    }
    cases
}

fn decode(c: &mut Criterion) {
    for case in cases() {
        let mut group = c.benchmark_group(format!("decode/{}", case.name));
        let wire = &case.wire[..];
        let version = case.version;
        group.bench_function(BenchmarkId::from_parameter("tern"), |b| {
            b.iter_custom(|iters| {
                per_packet(iters, wire, |buf| {
                    match Packet::decode(buf, version, MAX as u32) {
                        Ok(Some(p)) => black_box(&p),
                        _ => unreachable!("valid packet"),
                    };
                })
            })
        });
        group.bench_function(BenchmarkId::from_parameter("mqttbytes"), |b| {
            match &case.mqttbytes {
                Peer::V4(_) => b.iter_custom(|iters| {
                    per_packet(iters, wire, |buf| {
                        black_box(mqttbytes::v4::read(buf, MAX).unwrap());
                    })
                }),
                Peer::V5(_) => b.iter_custom(|iters| {
                    per_packet(iters, wire, |buf| {
                        black_box(mqttbytes::v5::read(buf, MAX).unwrap());
                    })
                }),
            }
        });
        if case.mqttrs.is_some() {
            group.bench_function(BenchmarkId::from_parameter("mqttrs"), |b| {
                b.iter_custom(|iters| {
                    per_packet(iters, wire, |buf| {
                        match mqttrs::decode_slice(buf) {
                            Ok(Some(p)) => black_box(&p),
                            _ => unreachable!("valid packet"),
                        };
                        // mqttrs borrows; step over the packet it read.
                        buf.advance(wire.len());
                    })
                })
            });
        }
        group.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
            let mut dst = vec![0u8; wire.len()];
            b.iter_custom(|iters| {
                per_packet(iters, wire, |buf| {
                    dst.copy_from_slice(&buf[..wire.len()]);
                    black_box(&mut dst);
                    buf.advance(wire.len());
                })
            })
        });
        group.finish();
    }
}

fn encode(c: &mut Criterion) {
    for case in cases() {
        let mut group = c.benchmark_group(format!("encode/{}", case.name));
        let mut out = BytesMut::with_capacity(case.wire.len() * 2);
        group.bench_function(BenchmarkId::from_parameter("tern"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&case.tern)
                    .encode(case.version, &mut out)
                    .unwrap();
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::from_parameter("mqttbytes"), |b| {
            b.iter(|| {
                out.clear();
                match black_box(&case.mqttbytes) {
                    Peer::V4(p) => peer_write_v4(p, &mut out),
                    Peer::V5(p) => peer_write_v5(p, &mut out),
                }
                black_box(&out);
            })
        });
        if let Some(p) = &case.mqttrs {
            let mut slice = vec![0u8; case.wire.len() * 2];
            group.bench_function(BenchmarkId::from_parameter("mqttrs"), |b| {
                b.iter(|| {
                    let n = mqttrs::encode_slice(black_box(p), &mut slice).unwrap();
                    black_box(&slice[..n]);
                })
            });
        }
        group.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&case.wire));
                black_box(&out);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
