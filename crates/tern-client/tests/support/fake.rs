//! A scripted, adversarial broker on a raw `TcpListener`, speaking through
//! tern-codec: each test plays the broker's side packet by packet, including
//! what a real broker would never do.

#![allow(dead_code, unreachable_pub)]

use super::within;
use bytes::BytesMut;
use tern_codec::{ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, ReasonCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The listening fake broker.
pub struct FakeBroker {
    listener: TcpListener,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl FakeBroker {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        Self { listener, port }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The next client connection.
    pub async fn accept(&self) -> Peer {
        let (stream, _) = within("a client connection", self.listener.accept())
            .await
            .expect("accept");
        Peer {
            stream,
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    /// Accepts, reads CONNECT and answers CONNACK with `session_present`.
    pub async fn accept_connected(&self, session_present: bool) -> (Peer, Connect) {
        let mut peer = self.accept().await;
        let connect = peer.recv_connect().await;
        peer.connack(
            session_present,
            ReasonCode::Success,
            ConnAckProperties::default(),
        )
        .await;
        (peer, connect)
    }
}

/// One client connection, from the broker's side.
pub struct Peer {
    pub stream: TcpStream,
    buf: BytesMut,
    /// The version of the client's CONNECT.
    pub version: ProtocolVersion,
}

impl Peer {
    /// The next packet from the client; panics on a timeout or a closed connection.
    pub async fn recv(&mut self) -> Packet {
        match within("a packet from the client", self.try_recv()).await {
            Some(p) => p,
            None => panic!("the client closed the connection"),
        }
    }

    /// The next packet, or `None` if the client closed the connection.
    pub async fn try_recv(&mut self) -> Option<Packet> {
        loop {
            match Packet::decode(&mut self.buf, self.version, tern_codec::MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("the client sent a bad packet: {e}"),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads CONNECT and adopts its version.
    pub async fn recv_connect(&mut self) -> Connect {
        match self.recv().await {
            Packet::Connect(c) => {
                self.version = c.protocol;
                *c
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// The next packet that is not a PINGREQ (answered with PINGRESP).
    pub async fn recv_skipping_pings(&mut self) -> Packet {
        loop {
            match self.recv().await {
                Packet::PingReq => self.send(Packet::PingResp).await,
                p => return p,
            }
        }
    }

    /// Sends a packet in the connection's version.
    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encodable");
        self.stream.write_all(&out).await.expect("write");
    }

    /// Sends CONNACK.
    pub async fn connack(
        &mut self,
        session_present: bool,
        reason_code: ReasonCode,
        properties: ConnAckProperties,
    ) {
        self.send(Packet::ConnAck(Box::new(ConnAck {
            session_present,
            reason_code,
            properties,
        })))
        .await;
    }

    /// Waits until the client closes the connection, returning what it sent
    /// before.
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        within("the client to close", async {
            let mut got = Vec::new();
            while let Some(p) = self.try_recv().await {
                got.push(p);
            }
            got
        })
        .await
    }
}
