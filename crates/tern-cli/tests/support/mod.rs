//! The `tern broker` binary as a child process on port 0, for tests that
//! drive it as a user or another program would.

#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

use bytes::BytesMut;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};
use tern_codec::{MAX_PACKET_SIZE, Packet, ProtocolVersion};

/// How long any expected line, packet or exit may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// `tern broker` running as a child process; killed (by PID) when dropped.
pub struct BrokerProcess {
    pub child: Child,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
}

impl BrokerProcess {
    /// Starts `tern broker --tcp 127.0.0.1:0 --ws 127.0.0.1:0` and reads the
    /// bound addresses from its `listening` lines.
    pub fn start() -> BrokerProcess {
        let (broker, _, _) =
            BrokerProcess::start_with(&["--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"], 1, 1);
        broker
    }

    /// Starts `tern broker ARGS --log info`, expecting `tcp` TCP and `ws`
    /// WebSocket listeners; returns every bound address from the
    /// `listening` lines (the struct holds the first of each, or the other
    /// kind's when there is none).
    pub fn start_with(
        args: &[&str],
        tcp: usize,
        ws: usize,
    ) -> (BrokerProcess, Vec<SocketAddr>, Vec<SocketAddr>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("broker")
            .args(args)
            .args(["--log", "info"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tern broker starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let mut tcps = Vec::new();
        let mut wss = Vec::new();
        while tcps.len() < tcp || wss.len() < ws {
            let line = stdout
                .recv_timeout(WAIT)
                .expect("tern broker prints its listeners");
            if let Some(a) = line.strip_prefix("listening tcp ") {
                tcps.push(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("listening ws ") {
                wss.push(a.parse().unwrap());
            }
        }
        let any = *tcps.first().or(wss.first()).expect("a listener");
        let broker = BrokerProcess {
            child,
            tcp: tcps.first().copied().unwrap_or(any),
            ws: wss.first().copied().unwrap_or(any),
            stderr,
        };
        (broker, tcps, wss)
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends a signal (`-TERM`, `-INT`) to the process, by its PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tern broker did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a child's output, through a channel (so reads can time out).
pub fn lines(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A blocking raw MQTT client through tern-codec.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    pub fn send(&mut self, packet: impl Into<Packet>) {
        let mut out = BytesMut::new();
        packet.into().encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet, or `None` once the broker closes the connection.
    pub fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = Packet::decode(&mut self.buf, self.version, MAX_PACKET_SIZE).unwrap() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("nothing from the broker within {WAIT:?}")
                }
                Err(_) => return None,
            }
        }
    }
}
