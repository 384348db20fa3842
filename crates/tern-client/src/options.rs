//! How to reach the broker and how the client behaves: [`Options`], the
//! [`Address`] parsed from a URL, and the [`Backoff`] for reconnecting.

use crate::Error;
use bytes::Bytes;
use std::time::Duration;
use tern_codec::{ConnectProperties, MqttString, ProtocolVersion, Will};
use tern_session::{ConnectOptions, QueueLimits};

/// Where the broker is and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The transport.
    pub transport: Transport,
    /// The host name or IP address (without brackets for IPv6); with TLS,
    /// the name the broker's certificate must carry.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Whether the transport runs over TLS (`mqtts://`, `wss://`); see
    /// [`Options::tls`] for whom it trusts.
    pub tls: bool,
}

/// The transport under MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (`mqtt://`).
    Tcp,
    /// WebSocket (`ws://`) to this request path, with the `mqtt` subprotocol.
    WebSocket {
        /// The HTTP request path, for example `/mqtt`.
        path: String,
    },
}

impl Address {
    /// TCP to `host:port`.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self {
            transport: Transport::Tcp,
            host: host.into(),
            port,
            tls: false,
        }
    }

    /// WebSocket to `ws://host:port/path`.
    pub fn websocket(host: impl Into<String>, port: u16, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Self {
            transport: Transport::WebSocket { path },
            host: host.into(),
            port,
            tls: false,
        }
    }

    /// The same address over TLS (`mqtts://`, `wss://`).
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.transport, self.tls) {
            (Transport::Tcp, false) => write!(f, "{}", self.authority()),
            (Transport::Tcp, true) => write!(f, "mqtts://{}", self.authority()),
            (Transport::WebSocket { path }, false) => {
                write!(f, "ws://{}{}", self.authority(), path)
            }
            (Transport::WebSocket { path }, true) => {
                write!(f, "wss://{}{}", self.authority(), path)
            }
        }
    }
}

/// A URL taken apart: the address, credentials from the user-info part, and
/// the path of an `mqtt://` URL (which `mosquitto_pub -L` reads as the topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Where to connect.
    pub address: Address,
    /// The user name, percent-decoded.
    pub username: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
    /// The path after the authority of an `mqtt://` URL, without the leading
    /// `/` and percent-decoded; empty when there is none. A `ws://` URL's path
    /// is the WebSocket request path instead.
    pub path: String,
}

impl ParsedUrl {
    /// Parses `mqtt://[user[:password]@]host[:port][/path]` (default port
    /// 1883) or `ws://[user[:password]@]host[:port][/path]` (default port 80,
    /// default path `/`), and their TLS forms `mqtts://` (8883) and `wss://`
    /// (443). `tcp://` and `ssl://` are accepted for `mqtt://` and `mqtts://`.
    ///
    /// ```
    /// use tern_client::{ParsedUrl, Transport};
    ///
    /// let url = ParsedUrl::parse("ws://alice:s3cret@[::1]:8080/mqtt")?;
    /// assert_eq!(url.address.host, "::1");
    /// assert_eq!(url.address.port, 8080);
    /// assert_eq!(url.address.transport, Transport::WebSocket { path: "/mqtt".into() });
    /// assert_eq!(url.username.as_deref(), Some("alice"));
    /// # Ok::<(), tern_client::Error>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidUrl(format!("{why} in {url:?}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("no scheme (mqtt://, mqtts://, ws:// or wss://)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let (default_port, websocket, tls) = match scheme.as_str() {
            "mqtt" | "tcp" => (1883, false, false),
            "ws" => (80, true, false),
            "mqtts" | "ssl" => (8883, false, true),
            "wss" => (443, true, true),
            _ => {
                return Err(bad(&format!(
                    "unknown scheme {scheme:?} (expected mqtt://, mqtts://, ws:// or wss://)"
                )));
            }
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(percent_decode(user)?), Some(percent_decode(pass)?)),
                None => (Some(percent_decode(u)?), None),
            },
        };
        let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
            let (host, tail) = after
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            match tail {
                "" => (host, None),
                t => (
                    host,
                    Some(t.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("bad port {p:?}")))?,
        };
        let mut address = if websocket {
            Address::websocket(host, port, if path.is_empty() { "/" } else { path })
        } else {
            Address::tcp(host, port)
        };
        address.tls = tls;
        let path = if websocket {
            String::new()
        } else {
            percent_decode(path.strip_prefix('/').unwrap_or(path))?
        };
        Ok(Self {
            address,
            username,
            password,
            path,
        })
    }
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::InvalidUrl(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidUrl(format!("{s:?} is not UTF-8")))
}

/// Reconnecting with exponential backoff and jitter.
///
/// The n-th attempt after a lost connection waits `initial × factorⁿ`,
/// capped at `max`, then spread by up to ±`jitter` (a fraction) so that many
/// clients cut off together do not come back together. The count starts
/// again after a connection that stayed up for at least `max`; one that the
/// broker accepts and then drops sooner counts as a failed attempt. The jitter comes from
/// a small PRNG seeded per client (see [`Backoff::seed`]), never from an
/// ambient random source, so a run can be replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The growth per attempt.
    pub factor: f64,
    /// The longest delay.
    pub max: Duration,
    /// The spread, as a fraction of the delay (0.2 is ±20%).
    pub jitter: f64,
    /// The PRNG seed; `None` derives one from the process id and a
    /// per-process counter, so clients of one process differ.
    pub seed: Option<u64>,
}

impl Default for Backoff {
    /// 100 ms, doubling, at most 30 s, ±20%.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.2,
            seed: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0 for the first reconnect), with
    /// `unit` in `[0, 1)` choosing where in the jitter band it falls.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let base = base.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(base * spread).unwrap_or(self.max)
    }
}

/// A small PRNG (SplitMix64) for backoff jitter: deterministic given its seed.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self(seed.unwrap_or_else(|| {
            u64::from(std::process::id()) << 32 | NEXT.fetch_add(1, Ordering::Relaxed)
        }))
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits as a fraction.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How to connect, and how the client behaves once connected.
///
/// Built from a URL ([`Options::from_url`]) or an [`Address`]
/// ([`Options::new`]), then adjusted with the builder methods. The protocol
/// options proper (client identifier, keep alive, will, MQTT 5 properties,
/// ...) are tern-session's [`ConnectOptions`], reachable whole through
/// [`Options::session`].
///
/// ```
/// use std::time::Duration;
/// use tern_client::Options;
/// use tern_codec::ProtocolVersion;
///
/// let options = Options::from_url("mqtt://broker.example:1883")?
///     .client_id("sensor-17")?
///     .version(ProtocolVersion::V3_1_1)
///     .keep_alive(Duration::from_secs(30))
///     .clean_start(false);
/// assert_eq!(options.session.keep_alive, 30);
/// # Ok::<(), tern_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Options {
    /// Where the broker is.
    pub address: Address,
    /// The protocol options tern-session connects with. For reconnects the
    /// client sets `clean_start` itself (see [`Client`](crate::Client)).
    pub session: ConnectOptions,
    /// Reconnect automatically after a lost connection, or not (`None`).
    pub reconnect: Option<Backoff>,
    /// How many incoming messages may wait for the application; when they
    /// do, the client stops reading the network connection.
    pub message_capacity: usize,
    /// How many `publish`, `subscribe` and `unsubscribe` requests may wait
    /// for the connection task; when they do, the next one waits to be
    /// accepted.
    pub command_capacity: usize,
    /// Whom TLS connections (`mqtts://`, `wss://`) trust and how the client
    /// identifies itself; unused without TLS.
    #[cfg(feature = "tls")]
    pub tls: crate::TlsOptions,
    /// Opens each network connection in place of TCP, if set.
    pub connector: Option<crate::Connector>,
    /// MQTT 5 enhanced authentication, if set (see [`Options::enhanced_auth`]).
    pub(crate) auth: Option<crate::auth::SharedAuth>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Options");
        d.field("address", &self.address)
            .field("session", &self.session)
            .field("reconnect", &self.reconnect)
            .field("message_capacity", &self.message_capacity)
            .field("command_capacity", &self.command_capacity);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        d.field("connector", &self.connector.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

impl Options {
    /// MQTT 5.0 to `address`, clean start, 60-second keep alive, an empty
    /// client identifier (the broker assigns one; MQTT 3.1.1 allows that only
    /// with a clean start),
    /// reconnecting with the default [`Backoff`], 64 messages and 64
    /// requests of buffering.
    pub fn new(address: Address) -> Self {
        Self {
            address,
            session: ConnectOptions::new(MqttString::new()),
            reconnect: Some(Backoff::default()),
            message_capacity: 64,
            command_capacity: 64,
            #[cfg(feature = "tls")]
            tls: crate::TlsOptions::default(),
            connector: None,
            auth: None,
        }
    }

    /// Options from a URL (see [`ParsedUrl::parse`]); credentials in the URL
    /// become the user name and password. An `mqtt://` URL may not have a path.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let parsed = ParsedUrl::parse(url)?;
        if !parsed.path.is_empty() {
            return Err(Error::InvalidUrl(format!(
                "an mqtt:// URL has no path, but {url:?} has {:?}",
                parsed.path
            )));
        }
        let mut options = Self::new(parsed.address);
        if let Some(user) = parsed.username {
            options.session.username = Some(MqttString::try_from(user)?);
        }
        if let Some(pass) = parsed.password {
            options.session.password = Some(Bytes::from(pass));
        }
        Ok(options)
    }

    /// Whom TLS connections trust and how the client identifies itself
    /// (used by `mqtts://` and `wss://` addresses).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Opens each network connection with `connect` instead of TCP: a Unix
    /// socket, a proxy, an in-memory pipe, a transport of your own. TLS and
    /// WebSocket are still layered on top as the address asks; the address
    /// is handed to `connect` for each attempt, reconnects included.
    ///
    /// ```
    /// use tern_client::{Address, BoxStream, Options};
    ///
    /// let options = Options::new(Address::tcp("broker", 1883)).connector(|address| {
    ///     let authority = address.authority();
    ///     async move {
    ///         let stream = tokio::net::TcpStream::connect(authority).await?;
    ///         Ok(Box::new(stream) as BoxStream)
    ///     }
    /// });
    /// ```
    pub fn connector<F, Fut>(mut self, connect: F) -> Self
    where
        F: Fn(&Address) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<crate::BoxStream>> + Send + 'static,
    {
        self.connector = Some(std::sync::Arc::new(move |address: &Address| {
            Box::pin(connect(address))
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        }));
        self
    }

    /// The client identifier.
    pub fn client_id(mut self, id: &str) -> Result<Self, Error> {
        self.session.client_id = MqttString::try_from(id)?;
        Ok(self)
    }

    /// The protocol version (MQTT 5.0 by default).
    pub fn version(mut self, version: ProtocolVersion) -> Self {
        self.session.version = version;
        self
    }

    /// The keep alive, in whole seconds (at most 65,535); zero turns it off.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.session.keep_alive = u16::try_from(keep_alive.as_secs()).unwrap_or(u16::MAX);
        self
    }

    /// Whether the first connection starts a new session. Reconnects resume
    /// the session whenever it is persistent (see [`Client`](crate::Client)).
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.session.clean_start = clean_start;
        self
    }

    /// MQTT 5 Session Expiry Interval in seconds: how long the broker keeps
    /// the session after the connection ends (0, the default, ends it with
    /// the connection; `u32::MAX` never).
    pub fn session_expiry(mut self, seconds: u32) -> Self {
        self.session.properties.session_expiry_interval = Some(seconds);
        self
    }

    /// The user name and optional password.
    pub fn credentials(mut self, username: &str, password: Option<&[u8]>) -> Result<Self, Error> {
        self.session.username = Some(MqttString::try_from(username)?);
        self.session.password = password.map(Bytes::copy_from_slice);
        Ok(self)
    }

    /// MQTT 5 enhanced authentication with `method`: its name becomes the
    /// CONNECT's Authentication Method, and the connection task runs its
    /// steps (see [`AuthMethod`](crate::AuthMethod)) on every connection
    /// and on [`Client::reauthenticate`](crate::Client::reauthenticate).
    pub fn enhanced_auth(mut self, method: impl crate::AuthMethod) -> Result<Self, Error> {
        self.session.properties.authentication_method =
            Some(MqttString::try_from(method.method())?);
        self.auth = Some(crate::auth::SharedAuth::new(Box::new(method)));
        Ok(self)
    }

    /// Enhanced authentication with SCRAM-SHA-256 as `username` (the
    /// password never leaves the client; the broker's proof is checked).
    pub fn scram_sha256(self, username: &str, password: &[u8]) -> Result<Self, Error> {
        self.enhanced_auth(crate::ScramSha256::new(username, password))
    }

    /// Enhanced authentication with SCRAM-SHA-512 as `username`.
    pub fn scram_sha512(self, username: &str, password: &[u8]) -> Result<Self, Error> {
        self.enhanced_auth(crate::ScramSha256::sha512(username, password))
    }

    /// The Last Will and Testament.
    pub fn will(mut self, will: Will) -> Self {
        self.session.will = Some(will);
        self
    }

    /// MQTT 5 CONNECT properties (replacing any set before, including the
    /// session expiry).
    pub fn properties(mut self, properties: ConnectProperties) -> Self {
        self.session.properties = properties;
        self
    }

    /// Acknowledge QoS 1 and 2 messages only when the application says so
    /// (see [`Message::ack`](crate::Message::ack)).
    ///
    /// A message dropped without an acknowledgement (the [`Message`](crate::Message)
    /// or its [`Acker`](crate::Acker)) is acknowledged with `Success` when it
    /// is dropped, so that it cannot hold up the acknowledgements behind it,
    /// which leave in arrival order. To refuse a message (MQTT 5), call
    /// `ack` with an error reason code.
    pub fn manual_acks(mut self, manual: bool) -> Self {
        self.session.manual_acks = manual;
        self
    }

    /// Bounds of the session's queue of messages waiting to be sent.
    pub fn queue(mut self, limits: QueueLimits) -> Self {
        self.session.queue = limits;
        self
    }

    /// How long to wait for the network connection and CONNACK.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.session.connect_timeout = Some(timeout);
        self
    }

    /// Reconnect with this backoff, or not at all (`None`).
    pub fn reconnect(mut self, backoff: Option<Backoff>) -> Self {
        self.reconnect = backoff;
        self
    }

    /// How many incoming messages may wait for the application (at least 1).
    pub fn message_capacity(mut self, capacity: usize) -> Self {
        self.message_capacity = capacity.max(1);
        self
    }

    /// How many requests may wait for the connection task (at least 1).
    pub fn command_capacity(mut self, capacity: usize) -> Self {
        self.command_capacity = capacity.max(1);
        self
    }

    /// Whether the broker keeps the session after a connection ends, so a
    /// reconnect should resume it: MQTT 5 with a non-zero Session Expiry
    /// Interval, or MQTT 3.x without Clean Session.
    pub fn is_persistent(&self) -> bool {
        if self.session.version.is_v5() {
            self.session.properties.session_expiry_interval.unwrap_or(0) > 0
        } else {
            !self.session.clean_start
        }
    }
}

impl TryFrom<&str> for Options {
    type Error = Error;
    fn try_from(url: &str) -> Result<Self, Error> {
        Options::from_url(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ParsedUrl::parse("mqtt://localhost").unwrap();
        assert_eq!(u.address, Address::tcp("localhost", 1883));
        assert_eq!(u.path, "");
        let u = ParsedUrl::parse("mqtt://u%40x:p%3Aw@10.0.0.1:1884/a/b%20c").unwrap();
        assert_eq!(u.address, Address::tcp("10.0.0.1", 1884));
        assert_eq!(u.username.as_deref(), Some("u@x"));
        assert_eq!(u.password.as_deref(), Some("p:w"));
        assert_eq!(u.path, "a/b c");
        let u = ParsedUrl::parse("ws://h:9001").unwrap();
        assert_eq!(u.address, Address::websocket("h", 9001, "/"));
        assert_eq!(u.address.to_string(), "ws://h:9001/");
        let u = ParsedUrl::parse("ws://[::1]/mqtt").unwrap();
        assert_eq!(u.address, Address::websocket("::1", 80, "/mqtt"));
        assert_eq!(u.address.authority(), "[::1]:80");
        let u = ParsedUrl::parse("mqtts://h").unwrap();
        assert_eq!(u.address, Address::tcp("h", 8883).with_tls());
        assert_eq!(u.address.to_string(), "mqtts://h:8883");
        let u = ParsedUrl::parse("ssl://h:1").unwrap();
        assert_eq!(u.address, Address::tcp("h", 1).with_tls());
        let u = ParsedUrl::parse("wss://h/x").unwrap();
        assert_eq!(u.address, Address::websocket("h", 443, "/x").with_tls());
        assert_eq!(u.address.to_string(), "wss://h:443/x");
        for bad in [
            "h:1883",
            "http://h",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://[::1",
        ] {
            assert!(
                matches!(ParsedUrl::parse(bad), Err(Error::InvalidUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Options::from_url("mqtt://h/topic"),
            Err(Error::InvalidUrl(_))
        ));
    }

    #[test]
    fn backoff_doubles_to_the_cap_within_the_jitter_band() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(30));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(80));
        let top = b.delay(0, 0.999_999);
        assert!(top > Duration::from_millis(119) && top < Duration::from_millis(120));
        let mut rng = Jitter::new(Some(7));
        let mut replay = Jitter::new(Some(7));
        for attempt in 0..50 {
            let unit = rng.next_unit();
            assert!((0.0..1.0).contains(&unit));
            assert_eq!(unit, replay.next_unit(), "the same seed replays");
            let d = b.delay(attempt, unit);
            let base = b.delay(attempt, 0.5).as_secs_f64();
            assert!(d.as_secs_f64() >= base * 0.8 - 1e-9 && d.as_secs_f64() <= base * 1.2);
        }
        assert_ne!(Jitter::new(None).next_unit(), Jitter::new(None).next_unit());
    }

    #[test]
    fn persistence() {
        let o = Options::new(Address::tcp("h", 1));
        assert!(!o.is_persistent());
        assert!(o.clone().session_expiry(10).is_persistent());
        assert!(
            o.clone()
                .version(ProtocolVersion::V3_1_1)
                .clean_start(false)
                .is_persistent()
        );
        assert!(!o.clone().clean_start(false).is_persistent(), "v5 expiry 0");
    }
}
