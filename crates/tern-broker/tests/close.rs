//! The broker closes gracefully: a client that is still sending when the
//! broker closes its connection reads the DISCONNECT and its reason code,
//! then the end of the stream, never a reset.

mod common;

use bytes::BytesMut;
use common::*;
use tern_codec::{MAX_PACKET_SIZE, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Rounds: whether a reset overtakes the DISCONNECT depends on timing.
const ROUNDS: u16 = 20;

/// A client floods QoS 2 PUBLISHes past Receive Maximum; the broker
/// answers DISCONNECT 0x93 [MQTT-3.3.4-7] and closes, and the client reads
/// it [MQTT-4.13.2-1] before an orderly end of stream, its writes of what
/// it had already sent succeeding rather than meeting a reset (which on a
/// real network also destroys the DISCONNECT in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_reads_the_disconnect_not_a_reset() {
    let broker = start_with(|s| {
        s.limits.max_inflight = std::num::NonZeroU16::new(2).unwrap();
    })
    .await;
    let v = ProtocolVersion::V5;
    for round in 1..=ROUNDS {
        let mut flood = BytesMut::new();
        Packet::from(connect(v, &format!("flood-{round}")))
            .encode(v, &mut flood)
            .unwrap();
        // 2 are allowed in flight, the third is one too many; the rest
        // (64 KiB) are what a client still has on the wire.
        for id in 1..=64u16 {
            let payload: &'static [u8] = &[b'x'; 1000];
            Packet::Publish(publish("close/t", payload, QoS::ExactlyOnce, id))
                .encode(v, &mut flood)
                .unwrap();
        }
        let stream = tokio::net::TcpStream::connect(broker.tcp).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // A client that writes everything it has, as clients do, while the
        // broker closes: the broker must not answer its bytes with a reset.
        let writer = tokio::spawn(async move {
            let result = write.write_all(&flood).await;
            (write, result)
        });
        let mut buf = BytesMut::new();
        let mut packets = Vec::new();
        let end = loop {
            match Packet::decode(&mut buf, v, MAX_PACKET_SIZE) {
                Ok(Some(p)) => {
                    packets.push(p);
                    continue;
                }
                Ok(None) => {}
                Err(e) => panic!("round {round}: the broker sent a malformed packet: {e}"),
            }
            buf.reserve(4096);
            match tokio::time::timeout(WAIT, read.read_buf(&mut buf)).await {
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Err(e),
                Err(_) => panic!("round {round}: the broker neither closed nor answered"),
            }
        };
        let disconnect = packets.iter().find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason_code),
            _ => None,
        });
        assert!(
            end.is_ok() && disconnect == Some(ReasonCode::ReceiveMaximumExceeded),
            "round {round}: expected DISCONNECT 0x93 then the end of the stream; \
             read {} packets, DISCONNECT {disconnect:?}, ended with {end:?}",
            packets.len()
        );
        // The client, not having read the DISCONNECT yet when it wrote them,
        // still sends a few packets: they must not meet a reset either.
        let (mut write, mut written) = writer.await.unwrap();
        for id in 1..=2 {
            if written.is_ok() {
                let mut more = BytesMut::new();
                Packet::Publish(publish("close/t", b"late", QoS::ExactlyOnce, id))
                    .encode(v, &mut more)
                    .unwrap();
                written = write.write_all(&more).await;
                tokio::task::yield_now().await;
            }
        }
        assert!(
            written.is_ok(),
            "round {round}: the client's writes met {written:?} while the broker closed"
        );
    }
    broker.shutdown().await;
}
