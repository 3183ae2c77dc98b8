//! An identity provider's published keys (a JWKS, as Amazon Cognito serves at
//! `https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json`), fetched over HTTPS
//! and cached.
//!
//! - A token whose `kid` is cached is verified with no I/O. The set is fetched again when it is older
//!   than [`Jwks::max_age`], and when a token names a `kid` it does not hold (the provider rotated
//!   its keys), but at most once per [`Jwks::min_refetch_gap`], so that tokens with made-up `kid`s
//!   cannot turn every request into a fetch.
//! - One fetch at a time: requests that need the set while it is being fetched wait for that fetch.
//!   A fetch has [`Jwks::timeout`] for all of it (connect, TLS, answer) and reads at most
//!   [`MAX_JWKS_BYTES`].
//! - A failed fetch (down, slow, garbage) keeps the keys already cached: tokens they verify still
//!   pass, an unknown `kid` is 401. With no keys at all the token cannot be checked, and the request
//!   is 503 "unavailable, retry" ([`JwksError`]). The node's health checks need no keys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::token::{verifying_key, VerifyingKey};

/// The largest key set read (Cognito's is under 2 KB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why the key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot reach {url}")]
    Connect {
        url: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("{url} did not answer within {} ms", .timeout.as_millis())]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered something that is not a JWK set with a usable key: {reason}")]
    Garbage { url: String, reason: String },
    #[error("the last fetch failed {} ms ago; not fetching again yet", .0.as_millis())]
    Backoff(Duration),
    #[error("the JWKS URL `{0}` must be https:// (or http:// to a loopback address)")]
    Scheme(String),
    #[error("TLS for the JWKS")]
    Tls(#[source] events::tls::TlsError),
}

struct Cached {
    keys: HashMap<String, VerifyingKey>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// The parts of a JWKS URL.
#[derive(Clone, Debug)]
struct Endpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
}

/// A cached, refreshed JWKS.
pub struct Jwks {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    cached: RwLock<Cached>,
    fetching: tokio::sync::Mutex<()>,
    timeout: Duration,
    max_age: Duration,
    min_refetch_gap: Duration,
}

impl Jwks {
    /// The key set at `url` (`https://…`, or `http://` to a loopback address for tests), its TLS
    /// verified against the system's roots plus `ca_file`.
    pub fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, JwksError> {
        let scheme = || JwksError::Scheme(url.to_owned());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(scheme());
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| scheme())?),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() || (!tls && !events::tls::is_local(&host)) {
            return Err(scheme());
        }
        let config = if tls {
            events::tls::client_config(events::tls::SslMode::VerifyFull, ca_file).map_err(JwksError::Tls)?
        } else {
            None
        };
        Ok(Jwks {
            endpoint: Endpoint {
                url: url.to_owned(),
                host,
                port,
                path: if path.is_empty() { "/".into() } else { path.to_owned() },
            },
            tls: config,
            cached: RwLock::new(Cached { keys: HashMap::new(), fetched: None, last_attempt: None }),
            fetching: tokio::sync::Mutex::new(()),
            timeout: Duration::from_secs(2),
            max_age: Duration::from_secs(3600),
            min_refetch_gap: Duration::from_secs(5),
        })
    }

    /// Sets how long a fetch may take, how long a fetched set is used, and the least time between
    /// two fetches.
    pub fn with_timings(mut self, timeout: Duration, max_age: Duration, min_refetch_gap: Duration) -> Self {
        self.timeout = timeout;
        self.max_age = max_age;
        self.min_refetch_gap = min_refetch_gap;
        self
    }

    pub fn url(&self) -> &str {
        &self.endpoint.url
    }

    fn lookup(&self, kid: &str) -> (Option<VerifyingKey>, bool) {
        let cached = self.cached.read().expect("jwks cache");
        let fresh = cached.fetched.is_some_and(|t| t.elapsed() < self.max_age);
        (cached.keys.get(kid).cloned(), fresh)
    }

    /// The key with this `kid`: from the cache, or after a fetch (see the module's rules). `Ok(None)`:
    /// the provider has no such key. `Err`: no key could be had at all.
    pub async fn key(&self, kid: &str) -> Result<Option<VerifyingKey>, JwksError> {
        if let (Some(key), true) = self.lookup(kid) {
            return Ok(Some(key));
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let (found, fresh) = self.lookup(kid);
        if found.is_some() && fresh {
            return Ok(found);
        }
        let (have_keys, since_attempt) = {
            let c = self.cached.read().expect("jwks cache");
            (!c.keys.is_empty(), c.last_attempt.map(|t| t.elapsed()))
        };
        if let Some(since) = since_attempt.filter(|s| *s < self.min_refetch_gap) {
            return if have_keys { Ok(found) } else { Err(JwksError::Backoff(since)) };
        }
        match self.fetch_and_store().await {
            Ok(()) => Ok(self.lookup(kid).0),
            Err(e) if have_keys => {
                tracing::warn!(url = %self.endpoint.url, detail = %events::ErrorChain(&e), "JWKS fetch failed; using the cached keys");
                Ok(found)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the set now (one fetch at a time).
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let _one_fetch = self.fetching.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<(), JwksError> {
        self.cached.write().expect("jwks cache").last_attempt = Some(Instant::now());
        let outcome = self.fetch().await;
        events::metric::JWKS_FETCHES
            .counter(&[("outcome", if outcome.is_ok() { "ok" } else { "failed" })])
            .increment(1);
        let keys = outcome?;
        let mut cached = self.cached.write().expect("jwks cache");
        cached.keys = keys;
        cached.fetched = Some(Instant::now());
        Ok(())
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyingKey>, JwksError> {
        let url = self.endpoint.url.clone();
        let body = tokio::time::timeout(self.timeout, self.get())
            .await
            .map_err(|_| JwksError::Timeout { url: url.clone(), timeout: self.timeout })??;
        let garbage = |reason: String| JwksError::Garbage { url: url.clone(), reason };
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| garbage(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            match verifying_key(jwk) {
                Ok((kid, key)) => {
                    keys.insert(kid, key);
                }
                Err(e) => tracing::warn!(url = %url, reason = %e, "a JWKS key is skipped"),
            }
        }
        if keys.is_empty() {
            return Err(garbage("no usable key".into()));
        }
        Ok(keys)
    }

    async fn get(&self) -> Result<Vec<u8>, JwksError> {
        let e = &self.endpoint;
        let connect = |cause| JwksError::Connect { url: e.url.clone(), cause };
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port)).await.map_err(connect)?;
        let raw = match &self.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(e.host.clone())
                    .map_err(|err| connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, err)))?;
                let stream =
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(connect)?;
                exchange(stream, &e.host, &e.path).await.map_err(connect)?
            }
            None => exchange(tcp, &e.host, &e.path).await.map_err(connect)?,
        };
        parse_response(&raw).map_err(|(status, reason)| match status {
            Some(status) => JwksError::Status { url: e.url.clone(), status },
            None => JwksError::Garbage { url: e.url.clone(), reason },
        })
    }
}

/// One `GET` with `Connection: close`, read to the end (at most [`MAX_JWKS_BYTES`] and the head).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nUser-Agent: cloudcafe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let limit = (MAX_JWKS_BYTES + 16 * 1024) as u64;
    (&mut stream).take(limit).read_to_end(&mut raw).await?;
    Ok(raw)
}

/// The body of a 200 answer (plain, `Content-Length` or chunked); else the status, or why it does
/// not parse.
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, (Option<u16>, String)> {
    let bad = |m: &str| (None, m.to_owned());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of the HTTP head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("the HTTP head is not text"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;
    if status != 200 {
        return Err((Some(status), String::new()));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    let body = &raw[end + 4..];
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(body).ok_or_else(|| bad("a broken chunked body"))?
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| bad("a bad Content-Length"))?;
        body.get(..length).ok_or_else(|| bad("the body is shorter than its Content-Length"))?.to_vec()
    } else {
        body.to_vec()
    };
    if body.len() > MAX_JWKS_BYTES {
        return Err(bad("the key set is too large"));
    }
    Ok(body)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_plain_sized_or_chunked() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}  extra";
        assert_eq!(parse_response(sized).unwrap(), b"{}  ");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x=y\r\nk\":\r\n2\r\n1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), b"{\"k\":1}");
        assert_eq!(parse_response(b"HTTP/1.1 503 Busy\r\n\r\n").unwrap_err().0, Some(503));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn a_plain_http_key_set_is_only_taken_from_this_machine() {
        assert!(Jwks::new("http://127.0.0.1:9/jwks.json", None).is_ok());
        assert!(matches!(Jwks::new("http://idp.example.com/jwks.json", None), Err(JwksError::Scheme(_))));
        assert!(matches!(Jwks::new("ftp://idp.example.com/jwks.json", None), Err(JwksError::Scheme(_))));
    }
}
