//! A real `cloudcafe serve` process spoken to over raw TCP: what no HTTP client library would send
//! (malformed heads, a head or a body sent a byte at a time, made-up methods) still gets a JSON
//! error answer, cannot starve well-behaved clients and cannot grow the metrics without bound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaos::process::{free_loopback_addr, Node};
use gateways::load::HttpConnection;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node on a fresh embedded journal, with `extra` flags.
fn serve(dir: &tempfile::TempDir, extra: &[&str]) -> Node {
    let addr = free_loopback_addr();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        addr.to_string(),
        "--workers".into(),
        "2".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--auth-key-file".into(),
        crate::security::key_file().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr);
    node.start(Duration::from_secs(30)).expect("node starts");
    node
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A 4xx whose body is the API's JSON error: `{"error": "<text>", "field": <field>}`.
    fn assert_json_error(&self, status: u16, field: Option<&str>, case: &str) {
        let body = self.json();
        assert_eq!(self.status, status, "{case}: {self:?}");
        assert!(self.head.to_ascii_lowercase().contains("content-type: application/json"), "{case}: {}", self.head);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{case}: {body}");
        assert_eq!(body["field"].as_str(), field, "{case}: {body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{case}: only error and field: {body}");
    }
}

/// Reads one answer (its head and its `Content-Length` body) from `stream`, within `within`.
async fn read_answer(stream: &mut TcpStream, within: Duration) -> Option<Raw> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                return Some(Raw { status, body: buf[end + 4..end + 4 + length].to_vec(), head });
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `request` on a new connection and reads the answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server that answers early may stop reading: a failed write is not the test's concern.
    let _ = stream.write_all(request).await;
    read_answer(&mut stream, Duration::from_secs(10)).await.expect("an answer")
}

/// Whether the server closed `stream` within `within` (EOF or reset, after any pending answer).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_http_parser_refuses_get_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir, &["--head-timeout-ms", "1000"]);
    let addr = node.addr;
    let head_of = |lines: &str| format!("POST /api/orders HTTP/1.1\r\nHost: cafe\r\n{lines}\r\n").into_bytes();

    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        (
            "conflicting Content-Length",
            head_of("Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
            400,
            Some("Content-Length"),
        ),
        (
            "invalid Content-Length",
            head_of("Content-Type: application/json\r\nContent-Length: two\r\n"),
            400,
            Some("Content-Length"),
        ),
        ("header line without a colon", head_of("X-No-Colon-Here\r\nContent-Length: 0\r\n"), 400, Some("headers")),
        (
            "raw non-UTF-8 bytes in the path",
            [&b"GET /api/loyalty/caf\xe9\xff HTTP/1.1\r\nHost: cafe\r\n\r\n"[..]].concat(),
            400,
            Some("path"),
        ),
        (
            "a 64 KB path",
            format!("GET /api/loyalty/{} HTTP/1.1\r\nHost: cafe\r\n\r\n", "a".repeat(64 * 1024)).into_bytes(),
            400,
            Some("path"),
        ),
        (
            "too many headers",
            format!("GET /health HTTP/1.1\r\nHost: cafe\r\n{}\r\n", "X-Many: 1\r\n".repeat(120)).into_bytes(),
            431,
            Some("headers"),
        ),
    ];
    for (case, request, status, field) in cases {
        exchange(addr, &request).await.assert_json_error(status, field, case);
    }

    // A head sent too slowly: 408 with the JSON body once the head deadline passes, then closed.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let answer = read_answer(&mut slow, Duration::from_secs(10)).await.expect("a 408");
    answer.assert_json_error(408, None, "slow request head");
    assert!(started.elapsed() < Duration::from_secs(5), "the head deadline is 1 s: {:?}", started.elapsed());
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await, "the slow connection is closed");

    // The node still answers normally.
    let r = HttpConnection::new(addr).request("GET", "/health", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
}

/// Every series of the HTTP metrics in a `/metrics` page.
async fn http_series(addr: SocketAddr) -> Vec<String> {
    let r = HttpConnection::new(addr).request("GET", "/metrics", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap().lines().filter(|l| l.starts_with("http_")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir, &[]);
    let addr = node.addr;
    // An admin's token: the made-up methods reach the routing (405/404), not the 401 before it.
    let mut conn = crate::security::admin_client(addr);
    let hostile = |round: usize| {
        let mut requests = Vec::new();
        for i in 0..2_000 {
            let n = round * 10_000 + i;
            let method = format!("M{n:X}");
            let path = match i % 4 {
                0 => format!("/x{n}/{}", fastrand::u64(..)),
                1 => format!("/api/orders/{n}"),
                2 => format!("/api/customers/c{n}/orders"),
                _ => format!("/api/menu/items?n={n}"),
            };
            requests.push((method, path));
        }
        requests
    };
    let _ = http_series(addr).await;
    for (method, path) in hostile(0) {
        let r = conn.request(&method, &path, &[], b"").await.expect("an answer");
        assert!(r.status == 404 || r.status == 405, "{method} {path}: {}", r.status);
    }
    let first = http_series(addr).await;
    for (method, path) in hostile(1) {
        conn.request(&method, &path, &[], b"").await.expect("an answer");
    }
    let second = http_series(addr).await;
    let other = first.iter().filter(|l| l.contains("method=\"other\"")).count();
    assert!(other > 0, "made-up methods are counted, as `other`");
    assert!(first.len() < 300, "4,000 made-up requests, a bounded number of series: {}", first.len());
    assert_eq!(second.len(), first.len(), "2,000 more made-up methods and paths add no series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_sent_a_byte_at_a_time_are_cut_off_and_do_not_starve_orders() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir, &["--max-in-flight", "16", "--body-timeout-ms", "2000"]);
    let addr = node.addr;
    let body = br#"{"customer_id":"slow","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]}"#;
    let authorization = crate::security::admin_bearer();

    // 20 clients send an order's head, then its body a byte every 100 ms (it would take 9 s).
    let mut tricklers = Vec::new();
    for _ in 0..20 {
        let authorization = authorization.clone();
        tricklers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /api/orders HTTP/1.1\r\nHost: cafe\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let (mut reader, mut writer) = stream.into_split();
            let trickle = tokio::spawn(async move {
                for byte in body {
                    if writer.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let mut stream_buf = Vec::new();
            let mut chunk = [0u8; 1024];
            // Read until the server closes the connection (or 10 s pass).
            let closed = loop {
                match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break true,
                    Ok(Ok(n)) => stream_buf.extend_from_slice(&chunk[..n]),
                    Err(_) => break false,
                }
            };
            trickle.abort();
            (closed, started.elapsed(), String::from_utf8_lossy(&stream_buf).into_owned())
        }));
    }

    // Meanwhile, normal orders are placed: none is refused for lack of room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = crate::security::admin_client(addr);
    for i in 0..20 {
        let order = format!(
            r#"{{"customer_id":"fast-{i}","store_id":"store-1","items":[{{"item_id":"latte","quantity":1}}]}}"#
        );
        let r = conn.request("POST", "/api/orders", &[], order.as_bytes()).await.unwrap();
        assert_eq!(r.status, 201, "order {i} while 20 bodies trickle: {}", String::from_utf8_lossy(&r.body));
    }

    for t in tricklers {
        let (closed, after, answer) = t.await.unwrap();
        assert!(closed, "a trickling client is cut off: {answer}");
        assert!(after < Duration::from_secs(6), "cut off soon after the 2 s deadline: {after:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
        assert!(json["error"].as_str().unwrap().contains("did not arrive"), "{json}");
    }
}
