//! A small keep-alive HTTP/1.1 client and a closed-loop load generator with HDR histograms, for the
//! benchmarks and the fault tests. It speaks just enough HTTP for this API (Content-Length bodies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct HttpConnection {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// The last request failed on a connection an earlier request had used, before any byte of
    /// its answer: the peer had closed the idle connection as the request went out (RFC 9112 §9.3.1).
    stale_on_last: bool,
    /// An `Authorization` value sent on every request that does not carry its own.
    authorization: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl HttpConnection {
    pub fn new(addr: SocketAddr) -> Self {
        HttpConnection { addr, stream: None, stale_on_last: false, authorization: None }
    }

    /// A connection that sends `Authorization: Bearer <token>` on every request without its own.
    pub fn with_bearer(addr: SocketAddr, token: &str) -> Self {
        HttpConnection { authorization: Some(format!("Bearer {token}")), ..Self::new(addr) }
    }

    /// Whether the last request failed because the kept-alive connection had been closed under it:
    /// the request did not reach the peer's application, or its answer was lost with the
    /// connection, so a client may send it again on a new connection if it is safe to repeat
    /// (a GET, or a command with an idempotency key).
    pub fn last_failed_on_stale_connection(&self) -> bool {
        self.stale_on_last
    }

    /// Sends one request, reconnecting first if the previous connection was closed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        self.stale_on_last = false;
        let reused = self.stream.is_some();
        if !reused {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let mut answered = false;
        let result = self.exchange(method, path, headers, body, &mut answered).await;
        if result.is_err() {
            self.stream = None;
            self.stale_on_last = reused && !answered;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        answered: &mut bool,
    ) -> std::io::Result<HttpResponse> {
        let stream = self.stream.as_mut().expect("connected");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(authorization) = &self.authorization {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
                head.push_str(&format!("Authorization: {authorization}\r\n"));
            }
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        stream.get_mut().write_all(&out).await?;

        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        *answered = true;
        let status: u16 =
            line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().map_err(|_| bad("bad content-length"))?;
            }
            if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
            if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not supported"));
            }
            headers.push((k, v));
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        if close {
            self.stream = None;
        }
        Ok(HttpResponse { status, headers, body })
    }
}

/// What one request of a load run is.
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The outcome of a load run.
pub struct LoadReport {
    pub requests: u64,
    pub by_status: std::collections::BTreeMap<u16, u64>,
    pub io_errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

/// Runs `connections` closed loops for `duration`, each sending the calls `make(i)` gives.
pub async fn run_load(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    make: Arc<dyn Fn(u64) -> Call + Send + Sync>,
) -> LoadReport {
    let started = Instant::now();
    let deadline = started + duration;
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let make = make.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut conn = HttpConnection::new(addr);
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                let mut by_status = std::collections::BTreeMap::new();
                let mut io_errors = 0;
                while Instant::now() < deadline {
                    let call = make(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                    let headers: Vec<(&str, &str)> =
                        call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let t = Instant::now();
                    match conn.request(call.method, &call.path, &headers, &call.body).await {
                        Ok(r) => {
                            hist.saturating_record(t.elapsed().as_micros() as u64);
                            *by_status.entry(r.status).or_insert(0u64) += 1;
                        }
                        Err(_) => {
                            io_errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (hist, by_status, io_errors)
            })
        })
        .collect();
    let mut report = LoadReport {
        requests: 0,
        by_status: Default::default(),
        io_errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    };
    for t in tasks {
        let (hist, by_status, io_errors) = t.await.expect("load task");
        report.latency_us.add(&hist).expect("same bounds");
        for (s, n) in by_status {
            *report.by_status.entry(s).or_insert(0) += n;
            report.requests += n;
        }
        report.io_errors += io_errors;
    }
    report.elapsed = started.elapsed();
    report
}
