//! MQTT over WebSocket end to end, with tokio-tungstenite as the client:
//! the upgrade (path, subprotocol), binary frames carrying split and batched
//! packets, and a WebSocket client talking to a TCP client.

mod common;

use bytes::BytesMut;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tern_codec::{MAX_PACKET_SIZE, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

type Ws = WebSocketStream<TcpStream>;

async fn open(
    broker: &TestBroker,
    path: &str,
    protocols: Option<&str>,
) -> Result<(Ws, Option<String>), String> {
    let mut request = format!("ws://{}{path}", broker.ws)
        .into_client_request()
        .unwrap();
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let socket = TcpStream::connect(broker.ws).await.unwrap();
    match tokio_tungstenite::client_async(request, socket).await {
        Ok((ws, response)) => {
            let chosen = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_string());
            Ok((ws, chosen))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn encode(packets: &[Packet], version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        p.encode(version, &mut out).unwrap();
    }
    out.to_vec()
}

/// Reads binary frames until `n` packets have arrived (a frame may hold
/// several, a packet may span frames).
async fn packets(ws: &mut Ws, version: ProtocolVersion, n: usize) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let read = async {
        while out.len() < n {
            while let Some(p) = Packet::decode(&mut buf, version, MAX_PACKET_SIZE).unwrap() {
                out.push(p);
            }
            if out.len() >= n {
                break;
            }
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => buf.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
        out
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("packets over WebSocket")
}

#[tokio::test]
async fn the_mqtt_subprotocol_is_chosen_mqtt_6_0_0_3() {
    let broker = start().await;
    let (_ws, chosen) = open(&broker, "/mqtt", Some("mqtt")).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    let (_ws, chosen) = open(&broker, "/mqtt", Some("mqttv3.1")).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("mqttv3.1"));
    let (_ws, chosen) = open(&broker, "/mqtt", Some("wamp, mqtt")).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    // None offered: accepted without one.
    let (_ws, chosen) = open(&broker, "/mqtt", None).await.unwrap();
    assert_eq!(chosen, None);
}

#[tokio::test]
async fn a_wrong_path_or_subprotocol_is_refused() {
    let broker = start().await;
    let e = open(&broker, "/other", Some("mqtt")).await.unwrap_err();
    assert!(e.contains("404"), "{e}");
    let e = open(&broker, "/mqtt", Some("wamp")).await.unwrap_err();
    assert!(e.contains("400"), "{e}");
}

#[tokio::test]
async fn the_path_is_configurable() {
    let broker = start_with(|s| s.listeners.ws_path = "/ws/mqtt".into()).await;
    open(&broker, "/ws/mqtt", Some("mqtt")).await.unwrap();
    assert!(open(&broker, "/mqtt", Some("mqtt")).await.is_err());
}

#[tokio::test]
async fn packets_split_across_frames_and_batched_in_one_frame_mqtt_6_0_0_2() {
    let broker = start().await;
    let mut tcp = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "ws-peer").await;
    tcp.subscribe("ws/#", QoS::AtLeastOnce).await;

    let (mut ws, _) = open(&broker, "/mqtt", Some("mqtt")).await.unwrap();
    let version = ProtocolVersion::V5;
    // CONNECT in three frames, split inside the fixed header and the body.
    let bytes = encode(&[connect(version, "ws-client").into()], version);
    for part in [&bytes[..1], &bytes[1..7], &bytes[7..]] {
        ws.send(Message::Binary(part.to_vec().into()))
            .await
            .unwrap();
    }
    match &packets(&mut ws, version, 1).await[..] {
        [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // SUBSCRIBE, two PUBLISHes and a PINGREQ in one frame.
    let subscribe = tern_codec::Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![tern_codec::SubscribeFilter {
            filter: s("to-ws/#"),
            options: tern_codec::SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    };
    let batch = encode(
        &[
            subscribe.into(),
            publish("ws/a", b"one", QoS::AtLeastOnce, 2).into(),
            publish("ws/b", b"two", QoS::AtMostOnce, 0).into(),
            Packet::PingReq,
        ],
        version,
    );
    ws.send(Message::Binary(batch.into())).await.unwrap();
    let replies = packets(&mut ws, version, 3).await;
    // One answer to each request (the order of different packet types is
    // not prescribed: the core answers PINGREQ at once, the others after routing).
    let mut kinds: Vec<_> = replies.iter().map(Packet::packet_type).collect();
    kinds.sort_by_key(|k| *k as u8);
    assert_eq!(
        kinds,
        [
            tern_codec::PacketType::PubAck,
            tern_codec::PacketType::SubAck,
            tern_codec::PacketType::PingResp
        ],
        "{replies:?}"
    );
    assert_eq!(tcp.recv_publish().await.payload, "one");
    assert_eq!(tcp.recv_publish().await.payload, "two");

    // And back: from TCP to the WebSocket client.
    tcp.publish(publish("to-ws/x", b"back", QoS::AtLeastOnce, 5))
        .await;
    match &packets(&mut ws, version, 1).await[..] {
        [Packet::Publish(p)] => assert_eq!(p.payload, "back"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn a_text_frame_closes_the_connection_mqtt_6_0_0_1() {
    let broker = start().await;
    let (mut ws, _) = open(&broker, "/mqtt", Some("mqtt")).await.unwrap();
    let version = ProtocolVersion::V3_1_1;
    ws.send(Message::Binary(
        encode(&[connect(version, "texter").into()], version).into(),
    ))
    .await
    .unwrap();
    packets(&mut ws, version, 1).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    let end = tokio::time::timeout(WAIT, ws.next());
    match end.await.expect("closed") {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        Some(Ok(other)) => panic!("expected the close, got {other:?}"),
    }
}

/// Many WebSocket upgrade requests that trickle header lines and never
/// end their head, then all close at once, while a bystander publishes
/// QoS 1 and receives over TCP: every bystander message arrives (issue 13,
/// ws-half-open). Before, each closed socket's unfinished head was peeked
/// again and again without the task ever yielding, so the broker's worker
/// threads served nobody from then on: the bystander's next PUBACK did not
/// come. The broker runs on a runtime of its own so that the bystander's
/// waits (bounded by [`WAIT`]) still run, and fail, when it is stuck.
#[test]
fn half_open_upgrades_closing_together_do_not_stall_the_broker() {
    use tokio::io::AsyncWriteExt;
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = server.block_on(start_with(|s| {
        s.limits.connect_timeout = std::time::Duration::from_secs(60)
    }));
    let (tcp, ws) = (broker.tcp, broker.ws);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bystander = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.block_on(async {
            let mut sub = Raw::connected(tcp, ProtocolVersion::V3_1_1, "bystander-sub").await;
            sub.subscribe("bystander", QoS::AtLeastOnce).await;
            let mut publisher = Raw::connected(tcp, ProtocolVersion::V3_1_1, "bystander-pub").await;
            let mut seq = 0u16;
            // One bystander message, published and received.
            let mut exchange = async |publisher: &mut Raw, sub: &mut Raw| {
                seq += 1;
                let mut p = publish("bystander", b"", QoS::AtLeastOnce, seq);
                p.payload = bytes::Bytes::from(seq.to_be_bytes().to_vec());
                assert_eq!(publisher.publish(p).await, ReasonCode::Success);
                let got = sub.recv_publish().await;
                assert_eq!(&got.payload[..], &seq.to_be_bytes(), "message {seq}");
                sub.ack(&got).await;
            };
            let mut attackers = Vec::new();
            for _ in 0..200 {
                let mut s = TcpStream::connect(ws).await.unwrap();
                s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n")
                    .await
                    .unwrap();
                attackers.push(s);
            }
            for _ in 0..3 {
                for s in &mut attackers {
                    s.write_all(b"X-Pad: a\r\n").await.unwrap();
                }
                exchange(&mut publisher, &mut sub).await;
            }
            drop(attackers);
            for _ in 0..50 {
                exchange(&mut publisher, &mut sub).await;
            }
        })
    }));
    match bystander {
        Ok(()) => server.block_on(broker.shutdown()),
        Err(panic) => {
            // A stuck broker's threads are left behind, not waited for.
            server.shutdown_background();
            std::panic::resume_unwind(panic);
        }
    }
}
