//! The control API: a minimal HTTP/1.1 JSON server over [`Proxies`], and its client.
//!
//! ```text
//! GET    /proxies                 {"<name>": {"listen", "upstream", "mode", "faults", "stats"}, ...}
//! GET    /proxies/<name>          that proxy's entry
//! PUT    /proxies/<name>/faults   body: Faults  -> the proxy's entry (POST works too)
//! DELETE /proxies/<name>/faults   -> the proxy's entry, faults cleared
//! POST   /proxies/<name>/reset    -> {"reset": n}
//! DELETE /faults                  every proxy cleared: the rollback -> {"cleared": [names]}
//! GET    /health                  -> {"status": "ok"}
//! ```
//! Errors are `{"error": "..."}` with 400 (bad JSON, unknown field, faults that do not fit the
//! proxy), 404 (unknown proxy or route) or 405.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::wire::{parse_request, parse_response, request_line, Body, Framing, Inbound};
use super::{Faults, Proxies, ProxyError};

/// The largest request or response body the control API handles.
const MAX_BODY: u64 = 1024 * 1024;
/// A control connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// How long the client waits for a whole exchange.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the control API on `listen` until the returned task is aborted.
pub async fn serve(proxies: Proxies, listen: SocketAddr) -> Result<(SocketAddr, JoinHandle<()>), ProxyError> {
    let bind_error = |source| ProxyError::Bind { what: "the control API".into(), addr: listen, source };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let handle = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(session(proxies.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    Ok((local, handle))
}

/// One control connection: requests answered in turn while the client keeps it open.
async fn session(proxies: Proxies, mut stream: TcpStream) {
    let (reader, mut writer) = stream.split();
    let mut inbound = Inbound::new(reader, Vec::new());
    loop {
        let head_len = match tokio::time::timeout(IDLE, inbound.head()).await {
            Ok(Ok(Some(len))) => len,
            _ => return,
        };
        let head = &inbound.buffered()[..head_len];
        let parsed = request_line(head).and_then(|(method, target, _)| {
            let request = parse_request(head)?;
            Ok((method.to_string(), target.to_string(), request))
        });
        inbound.consume(head_len);
        let (status, answer, close) = match parsed {
            Err(e) => (400, json!({ "error": e.to_string() }), true),
            Ok((method, target, request)) => match read_body(&mut inbound, request.framing).await {
                Ok(body) => {
                    let (status, answer) = route(&proxies, &method, &target, &body);
                    (status, answer, request.close)
                }
                Err(e) => (400, json!({ "error": e.to_string() }), true),
            },
        };
        if write_response(&mut writer, status, &answer, close).await.is_err() || close {
            return;
        }
    }
}

async fn read_body<R: tokio::io::AsyncRead + Unpin>(inbound: &mut Inbound<R>, framing: Framing) -> io::Result<Vec<u8>> {
    let length = match framing {
        Framing::Empty => return Ok(Vec::new()),
        Framing::Length(length) if length <= MAX_BODY => length,
        Framing::Length(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "body larger than 1 MiB")),
        Framing::Chunked | Framing::UntilClose => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "send the body with a Content-Length"))
        }
    };
    let mut body = Vec::with_capacity(length as usize);
    let mut framing = Body::new(Framing::Length(length));
    while !framing.is_done() {
        if inbound.buffered().is_empty() && inbound.fill().await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early"));
        }
        let n = framing.advance(inbound.buffered())?;
        body.extend_from_slice(&inbound.buffered()[..n]);
        inbound.consume(n);
    }
    Ok(body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    answer: &Value,
    close: bool,
) -> io::Result<()> {
    let body = serde_json::to_vec(answer).map_err(io::Error::other)?;
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        reason(status),
        body.len()
    );
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await
}

fn to_json<T: Serialize>(value: &T) -> (u16, Value) {
    match serde_json::to_value(value) {
        Ok(value) => (200, value),
        Err(e) => (500, json!({ "error": e.to_string() })),
    }
}

fn error(status: u16, message: impl std::fmt::Display) -> (u16, Value) {
    (status, json!({ "error": message.to_string() }))
}

fn entry_of(proxies: &Proxies, name: &str) -> (u16, Value) {
    match proxies.entry(name) {
        Some(entry) => to_json(&entry),
        None => error(404, ProxyError::UnknownProxy(name.to_string())),
    }
}

/// Answers one request: status and JSON body.
fn route(proxies: &Proxies, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
    let path = target.split('?').next().unwrap_or_default().trim_matches('/');
    let segments: Vec<&str> = path.split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["health"]) => (200, json!({ "status": "ok" })),
        ("GET", ["proxies"]) => to_json(&proxies.entries()),
        ("GET", ["proxies", name]) => entry_of(proxies, name),
        ("PUT" | "POST", ["proxies", name, "faults"]) => {
            if proxies.entry(name).is_none() {
                return error(404, ProxyError::UnknownProxy(name.to_string()));
            }
            let faults: Faults = match serde_json::from_slice(body) {
                Ok(faults) => faults,
                Err(e) => return error(400, format!("the body is not a Faults object: {e}")),
            };
            match proxies.set(name, faults) {
                Ok(()) => entry_of(proxies, name),
                Err(e @ ProxyError::UnknownProxy(_)) => error(404, e),
                Err(e) => error(400, e),
            }
        }
        ("DELETE", ["proxies", name, "faults"]) => match proxies.set(name, Faults::default()) {
            Ok(()) => entry_of(proxies, name),
            Err(e) => error(404, e),
        },
        ("POST", ["proxies", name, "reset"]) => match proxies.reset_connections(name) {
            Ok(n) => (200, json!({ "reset": n })),
            Err(e) => error(404, e),
        },
        ("DELETE", ["faults"]) => {
            proxies.clear_all();
            (200, json!({ "cleared": proxies.names() }))
        }
        (_, ["health"] | ["proxies"] | ["proxies", _] | ["proxies", _, "faults" | "reset"] | ["faults"]) => {
            error(405, format!("{method} is not allowed on {target}"))
        }
        _ => error(404, format!("no route {method} {target}")),
    }
}

/// A client of the control API (what `cloudcafe chaos inject/revert` use).
#[derive(Clone, Debug)]
pub struct Client {
    /// `host:port`
    authority: String,
}

impl Client {
    /// `base`: `http://127.0.0.1:8474` or `127.0.0.1:8474` (a trailing `/` is fine).
    pub fn new(base: &str) -> Result<Client, ProxyError> {
        let bad = || ProxyError::BadControlAddress(base.to_string());
        let rest = match base.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(bad()),
            None => base,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
        if !port_ok || authority.contains('/') {
            return Err(bad());
        }
        Ok(Client { authority: authority.to_string() })
    }

    /// Every proxy with its faults and stats, as `GET /proxies` answers.
    pub async fn list(&self) -> Result<Value, ProxyError> {
        self.call("GET", "/proxies", None, None).await
    }

    pub async fn set(&self, name: &str, faults: &Faults) -> Result<(), ProxyError> {
        let body = serde_json::to_vec(faults).map_err(|e| ProxyError::BadFaults(e.to_string()))?;
        self.call("PUT", &format!("/proxies/{name}/faults"), Some(&body), Some(name)).await.map(drop)
    }

    pub async fn clear(&self, name: &str) -> Result<(), ProxyError> {
        self.call("DELETE", &format!("/proxies/{name}/faults"), None, Some(name)).await.map(drop)
    }

    /// The rollback: every proxy's faults cleared.
    pub async fn clear_all(&self) -> Result<(), ProxyError> {
        self.call("DELETE", "/faults", None, None).await.map(drop)
    }

    /// Resets that proxy's open connections; returns how many.
    pub async fn reset(&self, name: &str) -> Result<usize, ProxyError> {
        let answer = self.call("POST", &format!("/proxies/{name}/reset"), None, Some(name)).await?;
        answer.get("reset").and_then(Value::as_u64).map(|n| n as usize).ok_or_else(|| ProxyError::Control {
            addr: self.authority.clone(),
            status: 200,
            message: format!("no count in {answer}"),
        })
    }

    pub async fn health(&self) -> Result<(), ProxyError> {
        self.call("GET", "/health", None, None).await.map(drop)
    }

    /// One raw exchange: the status and body of the answer, whatever the status.
    pub async fn exchange(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), ProxyError> {
        let unreachable = |source| ProxyError::ControlUnreachable { addr: self.authority.clone(), source };
        match tokio::time::timeout(CLIENT_TIMEOUT, self.exchange_io(method, path, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(unreachable(e)),
            Err(_) => Err(unreachable(io::Error::new(io::ErrorKind::TimedOut, "no answer within 10 s"))),
        }
    }

    async fn exchange_io(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(self.authority.as_str()).await?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let (reader, _writer) = stream.split();
        let mut inbound = Inbound::new(reader, Vec::new());
        let head_len = inbound
            .head()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without an answer"))?;
        let response = parse_response(&inbound.buffered()[..head_len], method == "HEAD")?;
        inbound.consume(head_len);
        let mut framing = Body::new(response.framing);
        let mut answer = Vec::new();
        while !framing.is_done() {
            if inbound.buffered().is_empty() && inbound.fill().await? == 0 {
                if framing.ends_at_close() {
                    break;
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the answer ended early"));
            }
            let n = framing.advance(inbound.buffered())?;
            answer.extend_from_slice(&inbound.buffered()[..n]);
            inbound.consume(n);
            if answer.len() as u64 > MAX_BODY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "answer larger than 1 MiB"));
            }
        }
        Ok((response.status, answer))
    }

    /// An exchange whose answer must be a 200 with JSON; `proxy` names the proxy the path is about,
    /// so that a 404 becomes [`ProxyError::UnknownProxy`].
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        proxy: Option<&str>,
    ) -> Result<Value, ProxyError> {
        let (status, answer) = self.exchange(method, path, body).await?;
        let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
        let message = || {
            parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned())
        };
        match (status, proxy) {
            (200, _) => parsed.ok_or_else(|| ProxyError::ControlUnreachable {
                addr: self.authority.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, "the answer is not JSON"),
            }),
            (404, Some(name)) => Err(ProxyError::UnknownProxy(name.to_string())),
            (400, _) => Err(ProxyError::BadFaults(message())),
            _ => Err(ProxyError::Control { addr: self.authority.clone(), status, message: message() }),
        }
    }
}
