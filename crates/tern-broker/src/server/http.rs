//! The monitoring listener (`--metrics IP:PORT`): a small HTTP/1.1 server
//! that answers GET (and HEAD) only:
//!
//! - `/metrics`: the counters in the OpenMetrics text format, for Prometheus;
//! - `/health`: 200 while the listeners are up and the core answers, with
//!   the storage state (`memory` or `ok`); 503 once it is shutting down or
//!   the store has failed;
//! - `/api/stats`: the same snapshot as JSON, which the dashboard polls;
//! - `/`: the dashboard, one self-contained page.
//!
//! It is written by hand rather than with an HTTP framework because it
//! needs so little, and every limit is ours to see: at most
//! [`MAX_CONNECTIONS`] connections at once, a request head of at most
//! [`MAX_HEAD`] bytes read into a fixed buffer, and [`TIMEOUT`] for the
//! whole exchange; one request per connection (`Connection: close`). When
//! every slot is taken, a new connection pushes out the one that has waited
//! longest for its request head (one that has sent its request is answered
//! at once and never waits), so clients that connect and say nothing cannot
//! hold off a scrape; with no such connection the new one is closed. A slow
//! or malicious client holds one small buffer for a few seconds and never
//! the core: the core task only copies a [`Snapshot`] when asked, between
//! two inputs.

use super::{
    bridge_stats::BridgeRegistry,
    cluster::ClusterReader,
    driver::Control,
    metrics::{self, Snapshot},
};
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, broadcast, mpsc, oneshot},
};

/// Monitoring connections open at once.
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// The longest request head (request line and headers).
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// The time a client has to send its request and read the answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new connection waits for the slot of the one it pushed out.
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// The connections still waiting for their request head, oldest first,
/// each with the sender that pushes it out.
#[derive(Debug, Default)]
struct Waiting {
    next_id: u64,
    queue: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Waiting {
    fn add(&mut self, evict: oneshot::Sender<()>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, evict));
        id
    }

    fn remove(&mut self, id: u64) {
        self.queue.retain(|(i, _)| *i != id);
    }
}

/// Locks `waiting` (its state stays consistent even if a holder panicked).
fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The dashboard page (no build step, nothing fetched from elsewhere).
const DASHBOARD: &str = include_str!("dashboard.html");

/// What a snapshot gets beside the core's counters: read from atomics the
/// bridges and the cluster link keep, never from the core task.
#[derive(Debug, Clone)]
pub(crate) struct Beside {
    pub(crate) bridges: BridgeRegistry,
    pub(crate) cluster: Option<ClusterReader>,
}

/// Accepts monitoring connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    snapshots: mpsc::Sender<Control>,
    beside: Beside,
    mut shutdown: broadcast::Receiver<()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.recv() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let oldest = lock(&waiting).queue.pop_front();
                let Some((_, evict)) = oldest else {
                    tracing::debug!(%peer, "metrics listener: too many connections, closed");
                    continue;
                };
                // Its task ends and gives its slot back.
                let _ = evict.send(());
                match tokio::time::timeout(EVICT_WAIT, limit.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => continue,
                }
            }
        };
        let (evict_tx, evict) = oneshot::channel();
        let id = lock(&waiting).add(evict_tx);
        let (snapshots, beside, waiting) = (snapshots.clone(), beside.clone(), waiting.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let served = || lock(&waiting).remove(id);
            let exchange = exchange(socket, &snapshots, &beside, evict, &served);
            if tokio::time::timeout(TIMEOUT, exchange).await.is_err() {
                tracing::debug!(%peer, "metrics listener: request timed out");
            }
            served();
        });
    }
}

/// One request and its answer. Until the request head is in, `evict`
/// ends it (a newer connection needs the slot); then `served` takes it out
/// of the connections that may be pushed out.
async fn exchange(
    mut socket: TcpStream,
    snapshots: &mpsc::Sender<Control>,
    beside: &Beside,
    evict: oneshot::Receiver<()>,
    served: &impl Fn(),
) {
    let mut buf = [0u8; MAX_HEAD];
    let head_end = tokio::select! {
        head = read_head(&mut socket, &mut buf) => head,
        _ = evict => {
            tracing::debug!("metrics listener: pushed out by a newer connection");
            return;
        }
    };
    served();
    let head_end = match head_end {
        Head::End(end) => end,
        Head::TooLarge => {
            let _ = respond(&mut socket, false, 431, "text/plain", "request too large\n").await;
            return;
        }
        Head::Gone => return,
    };
    let (status, content_type, body, head_only) = match parse_request_line(&buf[..head_end]) {
        Err(status) => (
            status,
            "text/plain",
            status_text(status).to_string() + "\n",
            false,
        ),
        Ok((method, path)) => {
            let head_only = method == "HEAD";
            let (status, content_type, body) = route(path, snapshots, beside).await;
            (status, content_type, body, head_only)
        }
    };
    let _ = respond(&mut socket, head_only, status, content_type, &body).await;
}

/// How reading a request head ended.
enum Head {
    /// It ends (after its blank line) at this offset.
    End(usize),
    /// It does not fit the buffer.
    TooLarge,
    /// The client went away first.
    Gone,
}

/// Reads until the blank line that ends the request head.
async fn read_head(socket: &mut TcpStream, buf: &mut [u8]) -> Head {
    let mut len = 0;
    loop {
        if let Some(end) = find_head_end(&buf[..len]) {
            return Head::End(end);
        }
        if len == buf.len() {
            return Head::TooLarge;
        }
        match socket.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(n) => len += n,
        }
    }
}

/// Where the head (request line and headers) ends, after its blank line.
pub(super) fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The method and path of a GET or HEAD request; the status to answer with
/// otherwise.
pub(super) fn parse_request_line(head: &[u8]) -> Result<(&str, &str), u16> {
    let line_end = head.iter().position(|&b| b == b'\r').ok_or(400u16)?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| 400u16)?;
    // No control character (a bare LF, NUL, tab) anywhere in the line:
    // RFC 9112 separates its three parts by single spaces, and a target
    // holds visible characters only.
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(400);
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(400);
    }
    if method != "GET" && method != "HEAD" {
        return Err(405);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok((method, path))
}

async fn route(
    path: &str,
    snapshots: &mpsc::Sender<Control>,
    beside: &Beside,
) -> (u16, &'static str, String) {
    match path {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", DASHBOARD.to_string()),
        "/metrics" | "/health" | "/api/stats" => {
            let Some(mut snapshot) = snapshot(snapshots).await else {
                return (503, "text/plain", "shutting down\n".into());
            };
            snapshot.bridges = beside.bridges.read();
            snapshot.cluster = beside.cluster.as_ref().map(ClusterReader::read);
            match path {
                "/metrics" => (
                    200,
                    metrics::CONTENT_TYPE,
                    metrics::render_metrics(&snapshot),
                ),
                "/api/stats" => (200, "application/json", metrics::render_json(&snapshot)),
                _ => {
                    let (status, body) = metrics::render_health(&snapshot);
                    (status, "text/plain", body)
                }
            }
        }
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// A snapshot from the core task; `None` once it has stopped.
async fn snapshot(snapshots: &mpsc::Sender<Control>) -> Option<Snapshot> {
    let (tx, rx) = oneshot::channel();
    snapshots.send(Control::Snapshot(tx)).await.ok()?;
    rx.await.ok()
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

async fn respond(
    socket: &mut TcpStream,
    head_only: bool,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        status_text(status),
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    if !head_only {
        socket.write_all(body.as_bytes()).await?;
    }
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"HEAD / HTTP/1.0\r\n\r\n"),
            Ok(("HEAD", "/"))
        );
        assert_eq!(parse_request_line(b"POST / HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(parse_request_line(b"GET / HTTP/2\r\n\r\n"), Err(400));
        assert_eq!(
            parse_request_line(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(400)
        );
        assert_eq!(parse_request_line(b"GET  / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse_request_line(b"\xff / HTTP/1.1\r\n\r\n"), Err(400));
        // Found by the http_request fuzz target: a bare LF (or NUL) in the
        // target reached the router.
        assert_eq!(
            parse_request_line(b"GET /metr\0\nics HTTP/1.1\r\n\r\n"),
            Err(400)
        );
        assert_eq!(parse_request_line(b"GET\t/ HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_head_parses_or_is_refused(head in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_request_line(&head);
            let _ = find_head_end(&head);
        }
    }
}
