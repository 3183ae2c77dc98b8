//! A TCP fault proxy with a control API, modelled on Toxiproxy.
//!
//! One process hosts several named proxies ([`Proxies`]), each a listener that forwards every client
//! connection to its upstream store (PostgreSQL, Redis, an AWS emulator) and applies that proxy's
//! [`Faults`] on the way: latency and jitter, a bandwidth cap, refusing new connections, a black
//! hole (`timeout`), resetting open connections, and, for HTTP upstreams, answering a share of the
//! requests with an error such as DynamoDB's throttling. [`control`] serves the faults over a small
//! HTTP/1.1 JSON API so that `cloudcafe chaos inject/revert` can change them while the system runs;
//! the rollback of an experiment is [`Proxies::clear_all`].
//!
//! How bytes move. A [`Mode::Tcp`] connection runs in one task, one future per direction: it reads
//! a chunk (up to 16 KiB), stamps it with its arrival time, and writes it (`outbound::Outbound`)
//! at `arrival + latency ± jitter`, paced to the bandwidth cap, or holds it while `timeout` is on.
//! Without faults a chunk is written as soon as it is read; with them the direction keeps reading
//! while up to four chunks wait, so latency is a delay, not a throughput cap: chunks that arrive
//! back to back leave back to back, 200 ms later. The faults are read per chunk from a
//! `tokio::sync::watch` snapshot (no lock held across an await), so a change reaches open
//! connections at their next chunk, and a direction that waits (latency, pacing, hold) wakes when
//! the faults change: clearing them releases held bytes at once.
//!
//! A [`Mode::Http`] connection parses HTTP/1.1 requests and responses (Content-Length and chunked
//! bodies, forwarded verbatim) so that the error injection works per request; latency there applies
//! once per message.
//!
//! Closing. When one side ends its stream (FIN) the proxy ends the other direction the same way and
//! keeps the opposite one going until it ends too (TCP half-close, as a direct connection would
//! behave); an I/O error on either side, a failed upstream connect, or [`Proxies::reset_connections`]
//! closes both sockets with `SO_LINGER 0`, so both peers see a reset.
//!
//! Architecture Invariant: the proxy never changes the bytes it forwards; it only delays, holds,
//! or cuts them, or (Http mode) answers a whole request itself instead of forwarding it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

pub mod control;
mod http;
mod outbound;
mod tcp;
#[cfg(test)]
mod tests;
mod wire;

/// The most a reader takes from a socket at once; also the unit latency and holding apply to.
const CHUNK: usize = 16 * 1024;
/// How long a new client connection waits for its upstream before the proxy resets it.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Latency plus jitter above this is refused as a mistake (and keeps `Instant` arithmetic finite).
const MAX_DELAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What a proxy understands of the bytes it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Opaque bytes (PostgreSQL, Redis).
    Tcp,
    /// HTTP/1.1 requests and responses, so that errors can be injected per request (the AWS emulators).
    Http,
}

/// One named proxy: where it listens, where it forwards to, and how it reads the traffic.
///
/// Written `name=LISTEN->UPSTREAM` or `name=LISTEN->UPSTREAM/http`, for example
/// `pg=127.0.0.1:15432->127.0.0.1:5432` or `ddb=127.0.0.1:18000->localhost:8000/http`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySpec {
    pub name: String,
    pub listen: SocketAddr,
    /// `host:port`, resolved at each new connection.
    pub upstream: String,
    pub mode: Mode,
}

impl FromStr for ProxySpec {
    type Err = ProxyError;

    fn from_str(text: &str) -> Result<Self, ProxyError> {
        let bad = |reason: &str| ProxyError::BadSpec { spec: text.to_string(), reason: reason.to_string() };
        let (name, route) = text.split_once('=').ok_or_else(|| bad("expected name=LISTEN->UPSTREAM[/http]"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(bad("the name must be non-empty ASCII letters, digits, '-', '_' or '.'"));
        }
        let (listen, upstream) = route.split_once("->").ok_or_else(|| bad("expected LISTEN->UPSTREAM"))?;
        let listen: SocketAddr =
            listen.trim().parse().map_err(|_| bad("LISTEN must be an IP address and port, e.g. 127.0.0.1:15432"))?;
        let upstream = upstream.trim();
        let (upstream, mode) = match upstream.rsplit_once('/') {
            Some((address, "http")) => (address, Mode::Http),
            Some((address, "tcp")) => (address, Mode::Tcp),
            Some(_) => return Err(bad("the only suffixes are /http and /tcp")),
            None => (upstream, Mode::Tcp),
        };
        let port_ok = match upstream.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
            None => false,
        };
        if !port_ok {
            return Err(bad("UPSTREAM must be host:port, e.g. 127.0.0.1:5432"));
        }
        Ok(ProxySpec { name: name.to_string(), listen, upstream: upstream.to_string(), mode })
    }
}

impl fmt::Display for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}->{}", self.name, self.listen, self.upstream)?;
        match self.mode {
            Mode::Tcp => Ok(()),
            Mode::Http => f.write_str("/http"),
        }
    }
}

/// The faults one proxy applies now. `Faults::default()` is a clean pass-through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every chunk (Http mode: every message) in both directions, counted from its arrival.
    pub latency_ms: u64,
    /// Uniform ± around `latency_ms`, drawn per chunk; never below zero.
    pub jitter_ms: u64,
    /// KiB/s per connection per direction.
    pub bandwidth_kbps: Option<u64>,
    /// New connections are reset as soon as they are accepted; open ones go on.
    pub refuse: bool,
    /// A black hole: new connections are accepted but not connected upstream, open ones stop
    /// forwarding (bytes are held, not dropped); nothing is answered until it is cleared.
    pub timeout: bool,
    /// Http mode only: answer a share of the requests here instead of forwarding them.
    pub http_errors: Option<HttpErrors>,
}

/// An error answer injected for a share of HTTP requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpErrors {
    /// Between 0 and 1: the probability that a request is answered with this error.
    pub share: f64,
    /// 200..=599.
    pub status: u16,
    #[serde(default)]
    pub body: String,
    /// Sent as given; `Content-Length` is computed by the proxy.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

impl HttpErrors {
    /// DynamoDB's throttling answer as the AWS SDKs see it on the wire (awsJson1_0): HTTP 400, the
    /// error code in `x-amzn-ErrorType` and in the body's `__type`, which the SDKs retry with backoff.
    pub fn dynamodb_throttling(share: f64) -> Self {
        HttpErrors {
            share,
            status: 400,
            body: concat!(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","#,
                r#""message":"The level of configured provisioned throughput for the table was exceeded. "#,
                r#"Consider increasing your provisioning level with the UpdateTable API."}"#
            )
            .to_string(),
            headers: vec![
                ("Content-Type".to_string(), "application/x-amz-json-1.0".to_string()),
                ("x-amzn-ErrorType".to_string(), "ProvisionedThroughputExceededException".to_string()),
            ],
        }
    }

    /// The whole HTTP/1.1 response, rendered once when the faults are set.
    fn render(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason_phrase(self.status));
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("Content-Length: ");
        head.push_str(&self.body.len().to_string());
        head.push_str("\r\n\r\n");
        let mut response = head.into_bytes();
        response.extend_from_slice(self.body.as_bytes());
        response
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.share) {
            return Err(format!("http_errors.share must be between 0 and 1, not {}", self.share));
        }
        if !(200..=599).contains(&self.status) {
            return Err(format!("http_errors.status must be between 200 and 599, not {}", self.status));
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !token || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("http_errors.headers: {name:?} is not a valid header"));
            }
        }
        Ok(())
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// Counters of one proxy since it started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Connections accepted and served (refused ones are not counted here).
    pub connections_total: u64,
    pub connections_open: u64,
    /// Connections reset at accept because `refuse` was on.
    pub refused_total: u64,
    /// Open connections reset through [`Proxies::reset_connections`].
    pub resets_total: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
    pub http_requests_total: u64,
    pub http_errors_injected: u64,
}

/// One proxy as the control API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxyEntry {
    pub listen: SocketAddr,
    pub upstream: String,
    pub mode: Mode,
    pub faults: Faults,
    pub stats: Stats,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad proxy spec {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("two proxies are named {0:?}")]
    DuplicateName(String),
    #[error("cannot listen on {addr} for {what}")]
    Bind {
        what: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no proxy named {0:?}")]
    UnknownProxy(String),
    #[error("bad faults: {0}")]
    BadFaults(String),
    #[error("bad control API address {0:?}: expected http://HOST:PORT or HOST:PORT")]
    BadControlAddress(String),
    /// The control API answered with an error status.
    #[error("control API at {addr} answered {status}: {message}")]
    Control { addr: String, status: u16, message: String },
    /// The control API could not be reached, or its answer was not HTTP/JSON.
    #[error("control API at {addr} did not answer properly")]
    ControlUnreachable {
        addr: String,
        #[source]
        source: io::Error,
    },
}

/// The faults a proxy applies, with what is derived from them once at `set` time.
#[derive(Debug, Default)]
struct Armed {
    faults: Faults,
    /// `faults.http_errors` rendered as a full HTTP response.
    error_response: Option<Vec<u8>>,
}

impl Armed {
    /// Draws whether this request is answered here; if so, with which bytes.
    fn injected_response(&self) -> Option<&[u8]> {
        let share = self.faults.http_errors.as_ref()?.share;
        if share >= 1.0 || (share > 0.0 && fastrand::f64() < share) {
            self.error_response.as_deref()
        } else {
            None
        }
    }
}

type FaultsWatch = watch::Receiver<Arc<Armed>>;

#[derive(Default)]
struct Counters {
    connections_total: AtomicU64,
    connections_open: AtomicU64,
    refused_total: AtomicU64,
    resets_total: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    http_requests_total: AtomicU64,
    http_errors_injected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections_total: get(&self.connections_total),
            connections_open: get(&self.connections_open),
            refused_total: get(&self.refused_total),
            resets_total: get(&self.resets_total),
            bytes_to_upstream: get(&self.bytes_to_upstream),
            bytes_to_client: get(&self.bytes_to_client),
            http_requests_total: get(&self.http_requests_total),
            http_errors_injected: get(&self.http_errors_injected),
        }
    }
}

/// The shared state of one proxy: its spec, its faults, its counters and its open connections.
struct Proxy {
    spec: ProxySpec,
    local_addr: SocketAddr,
    faults: watch::Sender<Arc<Armed>>,
    counters: Counters,
    /// Open connections by id, each with the signal that resets it.
    open: Mutex<HashMap<u64, Arc<Notify>>>,
    next_id: AtomicU64,
}

impl Proxy {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Notify>>> {
        // The map stays consistent even if a holder panicked: every operation on it is a single call.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn armed(&self) -> Arc<Armed> {
        self.faults.borrow().clone()
    }

    fn entry(&self) -> ProxyEntry {
        ProxyEntry {
            listen: self.local_addr,
            upstream: self.spec.upstream.clone(),
            mode: self.spec.mode,
            faults: self.armed().faults.clone(),
            stats: self.counters.snapshot(),
        }
    }

    /// A connection the listener just accepted: refused, or served in its own task.
    fn admit(self: &Arc<Self>, client: TcpStream) {
        if self.faults.borrow().faults.refuse {
            abort(&client);
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Small queries must not wait for Nagle; the proxy forwards whole chunks anyway.
        let _ = client.set_nodelay(true);
        self.counters.connections_total.fetch_add(1, Ordering::Relaxed);
        let ticket = Ticket::issue(self.clone());
        tokio::spawn(run_connection(client, ticket));
    }
}

/// An open connection's registration: counts it as open and carries its reset signal; dropping it
/// (when the connection's task ends, however it ends) unregisters it.
struct Ticket {
    proxy: Arc<Proxy>,
    id: u64,
    reset: Arc<Notify>,
}

impl Ticket {
    fn issue(proxy: Arc<Proxy>) -> Ticket {
        let id = proxy.next_id.fetch_add(1, Ordering::Relaxed);
        let reset = Arc::new(Notify::new());
        proxy.open().insert(id, reset.clone());
        proxy.counters.connections_open.fetch_add(1, Ordering::Relaxed);
        Ticket { proxy, id, reset }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.proxy.open().remove(&self.id);
        self.proxy.counters.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a connection ended: cleanly (both sides closed normally) or not (both sides get a reset).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Closed,
    Broken,
    Reset,
}

/// Closes abortively: with `SO_LINGER 0` the close sends RST, and the peer reads ECONNRESET.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn run_connection(mut client: TcpStream, ticket: Ticket) {
    let proxy = ticket.proxy.clone();
    let mut upstream: Option<TcpStream> = None;
    let outcome = tokio::select! {
        outcome = serve(&proxy, &mut client, &mut upstream) => outcome,
        () = ticket.reset.notified() => Outcome::Reset,
    };
    if outcome != Outcome::Closed {
        abort(&client);
        if let Some(upstream) = &upstream {
            abort(upstream);
        }
    }
    drop(client);
    drop(upstream);
    drop(ticket);
}

/// Serves one client connection to its end. `upstream` is filled once connected, so that the
/// caller can reset it too.
async fn serve(proxy: &Proxy, client: &mut TcpStream, upstream: &mut Option<TcpStream>) -> Outcome {
    let mut faults = proxy.faults.subscribe();
    let held = match hold_while_black_hole(client, &mut faults).await {
        Ok(Some(held)) => held,
        Ok(None) => return Outcome::Closed,
        Err(_) => return Outcome::Broken,
    };
    let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(proxy.spec.upstream.as_str()));
    let stream = match connect.await {
        Ok(Ok(stream)) => stream,
        // Refused, unresolvable or silent upstream: the client sees its connection reset.
        Ok(Err(_)) | Err(_) => return Outcome::Broken,
    };
    let _ = stream.set_nodelay(true);
    let upstream = upstream.insert(stream);
    let relayed = match proxy.spec.mode {
        Mode::Tcp => tcp::relay(proxy, client, upstream, held, faults).await,
        Mode::Http => http::relay(proxy, client, upstream, held, faults).await,
    };
    match relayed {
        Ok(()) => Outcome::Closed,
        Err(_) => Outcome::Broken,
    }
}

/// While `timeout` is on, a new connection is not connected upstream: what the client sends is
/// held (up to one chunk) until the black hole is cleared. `None` when the client gave up first.
async fn hold_while_black_hole(client: &mut TcpStream, faults: &mut FaultsWatch) -> io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let mut held = Vec::new();
    loop {
        if !faults.borrow_and_update().faults.timeout {
            return Ok(Some(held));
        }
        if held.capacity() == 0 {
            held.reserve_exact(CHUNK);
        }
        let room = held.len() < CHUNK;
        tokio::select! {
            changed = faults.changed() => {
                if changed.is_err() {
                    // The proxy is gone (its sender lives as long as any connection): nothing to wait for.
                    return Ok(None);
                }
            }
            read = client.read_buf(&mut held), if room => {
                if read? == 0 {
                    return Ok(None);
                }
            }
        }
    }
}

/// The listeners close when the last handle is dropped; `closing` never carries a value.
struct Registry {
    proxies: Vec<Arc<Proxy>>,
    _closing: watch::Sender<()>,
}

/// The running proxies. Cheap to clone; the listeners close when the last clone is dropped (open
/// connections go on until they end).
#[derive(Clone)]
pub struct Proxies {
    registry: Arc<Registry>,
}

impl Proxies {
    /// Binds every listener, then spawns the accept loops on the current tokio runtime.
    pub async fn start(specs: Vec<ProxySpec>) -> Result<Proxies, ProxyError> {
        let mut bound = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|other| other.name == spec.name) {
                return Err(ProxyError::DuplicateName(spec.name.clone()));
            }
        }
        for spec in specs {
            let what = format!("proxy {}", spec.name);
            let listener = TcpListener::bind(spec.listen).await.map_err(|source| ProxyError::Bind {
                what: what.clone(),
                addr: spec.listen,
                source,
            })?;
            let local_addr =
                listener.local_addr().map_err(|source| ProxyError::Bind { what, addr: spec.listen, source })?;
            bound.push((spec, listener, local_addr));
        }
        let (closing, _) = watch::channel(());
        let proxies = bound
            .into_iter()
            .map(|(spec, listener, local_addr)| {
                let proxy = Arc::new(Proxy {
                    spec,
                    local_addr,
                    faults: watch::channel(Arc::new(Armed::default())).0,
                    counters: Counters::default(),
                    open: Mutex::new(HashMap::new()),
                    next_id: AtomicU64::new(0),
                });
                tokio::spawn(accept_loop(listener, proxy.clone(), closing.subscribe()));
                proxy
            })
            .collect();
        Ok(Proxies { registry: Arc::new(Registry { proxies, _closing: closing }) })
    }

    fn proxy(&self, name: &str) -> Result<&Arc<Proxy>, ProxyError> {
        self.registry
            .proxies
            .iter()
            .find(|p| p.spec.name == name)
            .ok_or_else(|| ProxyError::UnknownProxy(name.to_string()))
    }

    /// The proxies' names in the order they were given.
    pub fn names(&self) -> Vec<String> {
        self.registry.proxies.iter().map(|p| p.spec.name.clone()).collect()
    }

    /// Where the proxy really listens (the port chosen when the spec said port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.proxy(name).ok().map(|p| p.local_addr)
    }

    pub fn spec(&self, name: &str) -> Option<ProxySpec> {
        self.proxy(name).ok().map(|p| p.spec.clone())
    }

    /// Replaces that proxy's faults; open connections apply them from their next chunk or request.
    pub fn set(&self, name: &str, faults: Faults) -> Result<(), ProxyError> {
        let proxy = self.proxy(name)?;
        let total_delay = faults.latency_ms.saturating_add(faults.jitter_ms);
        if total_delay > MAX_DELAY_MS {
            return Err(ProxyError::BadFaults(format!("latency_ms + jitter_ms must be at most {MAX_DELAY_MS}")));
        }
        if faults.bandwidth_kbps == Some(0) {
            return Err(ProxyError::BadFaults("bandwidth_kbps must be at least 1 (use timeout to stall)".into()));
        }
        let error_response = match (&faults.http_errors, proxy.spec.mode) {
            (None, _) => None,
            (Some(_), Mode::Tcp) => {
                return Err(ProxyError::BadFaults(format!(
                    "http_errors needs an http-mode proxy; {name} forwards plain TCP"
                )))
            }
            (Some(errors), Mode::Http) => {
                errors.validate().map_err(ProxyError::BadFaults)?;
                Some(errors.render())
            }
        };
        proxy.faults.send_replace(Arc::new(Armed { faults, error_response }));
        Ok(())
    }

    pub fn faults(&self, name: &str) -> Option<Faults> {
        self.proxy(name).ok().map(|p| p.armed().faults.clone())
    }

    /// Resets every open connection of that proxy (both sides see RST); returns how many.
    pub fn reset_connections(&self, name: &str) -> Result<usize, ProxyError> {
        let proxy = self.proxy(name)?;
        let signals: Vec<Arc<Notify>> = proxy.open().drain().map(|(_, signal)| signal).collect();
        for signal in &signals {
            signal.notify_one();
        }
        proxy.counters.resets_total.fetch_add(signals.len() as u64, Ordering::Relaxed);
        Ok(signals.len())
    }

    /// Every proxy back to `Faults::default()`: the rollback of an experiment. Held bytes flow again.
    pub fn clear_all(&self) {
        for proxy in &self.registry.proxies {
            proxy.faults.send_replace(Arc::new(Armed::default()));
        }
    }

    pub fn stats(&self, name: &str) -> Option<Stats> {
        self.proxy(name).ok().map(|p| p.counters.snapshot())
    }

    /// One proxy as the control API shows it.
    pub fn entry(&self, name: &str) -> Option<ProxyEntry> {
        self.proxy(name).ok().map(|p| p.entry())
    }

    /// Every proxy by name, as `GET /proxies` shows them.
    pub fn entries(&self) -> BTreeMap<String, ProxyEntry> {
        self.registry.proxies.iter().map(|p| (p.spec.name.clone(), p.entry())).collect()
    }
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, mut closing: watch::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Resolves only when the last `Proxies` handle is dropped.
            _ = closing.changed() => return,
        };
        match accepted {
            Ok((client, _)) => proxy.admit(client),
            // Out of descriptors or an aborted handshake: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
