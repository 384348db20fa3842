//! The `tern broker` binary as a child process on port 0, for tests that
//! drive it as a user or another program would.

#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

use bytes::BytesMut;
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::mpsc,
    time::Duration,
};
use tern_codec::{MAX_PACKET_SIZE, Packet, ProtocolVersion};

/// How long any expected line, packet or exit may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// `tern broker` running as a child process (tern-testkit's launcher: ready
/// once its `--ready-file` names the bound ports; SIGTERM, then SIGKILL,
/// when dropped).
pub struct BrokerProcess {
    pub broker: tern_testkit::Broker,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
}

impl BrokerProcess {
    /// Starts `tern broker --tcp 127.0.0.1:0 --ws 127.0.0.1:0`.
    pub fn start() -> BrokerProcess {
        let (broker, _, _) =
            BrokerProcess::start_with(&["--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"], 1, 1);
        broker
    }

    /// Starts `tern broker ARGS --log info`, expecting `tcp` TCP and `ws`
    /// WebSocket listeners; returns every bound address (the struct holds
    /// the first of each, or the other kind's when there is none).
    pub fn start_with(
        args: &[&str],
        tcp: usize,
        ws: usize,
    ) -> (BrokerProcess, Vec<SocketAddr>, Vec<SocketAddr>) {
        let mut broker = tern_testkit::Broker::tern(env!("CARGO_BIN_EXE_tern"))
            .args(args)
            .args(["--log", "info"])
            .capture_stderr()
            .ready_within(WAIT)
            .start()
            .unwrap_or_else(|e| panic!("tern broker starts: {e}"));
        let tcps = broker.tcp_addrs().to_vec();
        let wss = broker.ws_addrs().to_vec();
        assert_eq!((tcps.len(), wss.len()), (tcp, ws), "listeners bound");
        let any = *tcps.first().or(wss.first()).expect("a listener");
        let stderr = broker.take_stderr().expect("captured");
        let process = BrokerProcess {
            tcp: tcps.first().copied().unwrap_or(any),
            ws: wss.first().copied().unwrap_or(any),
            broker,
            stderr,
        };
        (process, tcps, wss)
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends a signal (`-TERM`, `-INT`) to the process, by its PID.
    pub fn signal(&self, signal: &str) {
        let name = signal.trim_start_matches('-');
        self.broker.signal(name).expect("kill runs");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.broker
            .wait_exit(WAIT)
            .unwrap_or_else(|e| panic!("tern broker did not exit: {e}"))
    }

    /// What the broker printed on standard output (its `listening` lines).
    pub fn stdout(&self) -> String {
        self.broker.log()
    }
}

/// Lines of a child's output, through a channel (so reads can time out).
pub fn lines(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    tern_testkit::lines(out)
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
