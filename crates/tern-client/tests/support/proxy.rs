//! A TCP proxy between a client and a broker that a test can make lose
//! traffic in one direction and then cut: how a real network drops a
//! connection in the middle of a QoS flow, with both ends still running.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

/// What the proxy does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Forward,
    /// Discard what the broker sends to the client (acks are lost).
    LoseReplies,
    /// Discard what the client sends to the broker.
    LoseRequests,
}

/// A proxy on 127.0.0.1 port 0 in front of `upstream`.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// The current connections' tasks: aborting them cuts the sockets.
    links: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding new connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Forward);
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let accept = {
            let mode = mode.clone();
            let links = links.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(broker) = TcpStream::connect(upstream).await else {
                        continue; // the client sees its connection close
                    };
                    let mode = mode.subscribe();
                    links.lock().unwrap().spawn(link(client, broker, mode));
                }
            })
        };
        Proxy {
            addr,
            mode,
            links,
            accept,
        }
    }

    /// `mqtt://ADDR` of the proxy.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes what happens to the bytes from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Closes every current connection (both sockets) and forwards again.
    pub fn cut(&self) {
        self.links.lock().unwrap().abort_all();
        self.set(Mode::Forward);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.links.lock().unwrap().abort_all();
    }
}

async fn link(client: TcpStream, broker: TcpStream, mode: watch::Receiver<Mode>) {
    client.set_nodelay(true).ok();
    broker.set_nodelay(true).ok();
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    tokio::select! {
        () = pump(client_read, broker_write, mode.clone(), Mode::LoseRequests) => {}
        () = pump(broker_read, client_write, mode, Mode::LoseReplies) => {}
    }
}

/// Copies `from` to `to` until either ends, discarding while in `lose`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    lose: Mode,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *mode.borrow() == lose {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
