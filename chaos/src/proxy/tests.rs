//! End-to-end tests of the proxies over real loopback sockets, with hand-written upstreams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::control::{self, Client};
use super::*;

/// An upstream that echoes what it reads and closes its side after the client closes its own;
/// counts the connections it accepted.
async fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

fn spec(name: &str, upstream: SocketAddr, mode: Mode) -> ProxySpec {
    ProxySpec { name: name.into(), listen: "127.0.0.1:0".parse().expect("addr"), upstream: upstream.to_string(), mode }
}

async fn start_one(upstream: SocketAddr, mode: Mode) -> (Proxies, SocketAddr) {
    let proxies = Proxies::start(vec![spec("p", upstream, mode)]).await.expect("start");
    let addr = proxies.local_addr("p").expect("listening");
    (proxies, addr)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `message` and waits for it to come back; how long that took.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(message).await.expect("write");
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).await.expect("read the echo");
    assert_eq!(back, message);
    started.elapsed()
}

/// Waits (up to 2 s) for `condition` to hold.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A connection the proxy should have cut: reading ends (error or EOF) at once.
async fn assert_cut(stream: &mut TcpStream, within: Duration) {
    let mut byte = [0u8; 1];
    match timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("the connection still delivered bytes"),
        Err(_) => panic!("the connection was not cut within {within:?}"),
    }
}

#[tokio::test]
async fn bytes_pass_unchanged_both_ways_and_are_counted() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    let mut payload = vec![0u8; 1024 * 1024];
    fastrand::fill(&mut payload);
    let stream = connect(addr).await;
    let (mut reader, mut writer) = stream.into_split();
    let sent = payload.clone();
    let writing = tokio::spawn(async move {
        writer.write_all(&sent).await.expect("write");
        writer.shutdown().await.expect("half-close");
        writer
    });
    let mut back = Vec::new();
    timeout(Duration::from_secs(5), reader.read_to_end(&mut back)).await.expect("in time").expect("read to EOF");
    let _writer = writing.await.expect("writer");
    assert!(back == payload, "the echo differs from what was sent ({} bytes back)", back.len());

    let stats = proxies.stats("p").expect("stats");
    assert_eq!(stats.bytes_to_upstream, payload.len() as u64);
    assert_eq!(stats.bytes_to_client, payload.len() as u64);
    assert_eq!(stats.connections_total, 1);
    eventually("the connection to close", || proxies.stats("p").is_some_and(|s| s.connections_open == 0)).await;
}

#[tokio::test]
async fn latency_delays_each_direction_and_clearing_it_applies_to_the_next_round_trip() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    let mut stream = connect(addr).await;
    assert!(round_trip(&mut stream, b"warm").await < Duration::from_millis(150));

    proxies.set("p", Faults { latency_ms: 200, ..Faults::default() }).expect("set");
    let slow = round_trip(&mut stream, b"slow").await;
    assert!(slow >= Duration::from_millis(400), "200 ms each way, took {slow:?}");

    proxies.clear_all();
    let fast = round_trip(&mut stream, b"fast").await;
    assert!(fast < Duration::from_millis(150), "cleared, yet took {fast:?}");
}

#[tokio::test]
async fn latency_is_a_delay_not_a_cap_on_how_many_chunks_are_in_flight() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    proxies.set("p", Faults { latency_ms: 300, ..Faults::default() }).expect("set");
    let (mut reader, mut writer) = connect(addr).await.into_split();
    let writing = tokio::spawn(async move {
        let mut sent_at = Vec::new();
        for i in 0..4u8 {
            writer.write_all(&[i]).await.expect("write");
            sent_at.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (sent_at, writer)
    });
    let mut back_at = Vec::new();
    for i in 0..4u8 {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).await.expect("echo");
        assert_eq!(byte[0], i);
        back_at.push(Instant::now());
    }
    let (sent_at, _writer) = writing.await.expect("writer");
    // Each byte comes back 2 × 300 ms after it was sent. Were one chunk delayed only after the one
    // before it had left, the bytes that arrive while one waits would leave 300 ms later each.
    for (i, (sent, back)) in sent_at.iter().zip(&back_at).enumerate() {
        let delay = back.duration_since(*sent);
        assert!(delay >= Duration::from_millis(600) && delay < Duration::from_millis(760), "byte {i}: {delay:?}");
    }
}

#[tokio::test]
async fn clearing_releases_a_chunk_that_waits_out_a_long_latency() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    let mut stream = connect(addr).await;
    proxies.set("p", Faults { latency_ms: 10_000, ..Faults::default() }).expect("set");
    let clearing = proxies.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clearing.clear_all();
    });
    let took = round_trip(&mut stream, b"waiting").await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn bandwidth_caps_each_direction() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    proxies.set("p", Faults { bandwidth_kbps: Some(64), ..Faults::default() }).expect("set");
    let stream = connect(addr).await;
    let (mut reader, mut writer) = stream.into_split();
    let payload = vec![7u8; 96 * 1024];
    let started = Instant::now();
    let sent = payload.clone();
    let writing = tokio::spawn(async move { writer.write_all(&sent).await.map(|()| writer) });
    let mut back = vec![0u8; payload.len()];
    reader.read_exact(&mut back).await.expect("read the echo");
    let took = started.elapsed();
    let _writer = writing.await.expect("writer").expect("write");
    assert!(back == payload);
    // 96 KiB at 64 KiB/s is 1.5 s, less the first slice that goes at once.
    assert!(took >= Duration::from_millis(1350) && took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn refuse_resets_new_connections_while_open_ones_go_on_until_reset() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    let mut open = connect(addr).await;
    round_trip(&mut open, b"before").await;

    proxies.set("p", Faults { refuse: true, ..Faults::default() }).expect("set");
    let mut refused = connect(addr).await;
    assert_cut(&mut refused, Duration::from_millis(100)).await;
    round_trip(&mut open, b"still here").await;
    assert_eq!(proxies.stats("p").expect("stats").refused_total, 1);

    assert_eq!(proxies.reset_connections("p").expect("known proxy"), 1);
    let mut byte = [0u8; 1];
    let read = timeout(Duration::from_secs(1), open.read(&mut byte)).await.expect("cut at once");
    assert_eq!(read.expect_err("a reset, not an EOF").kind(), std::io::ErrorKind::ConnectionReset);
    eventually("the reset connection to close", || proxies.stats("p").is_some_and(|s| s.connections_open == 0)).await;
    assert_eq!(proxies.stats("p").expect("stats").resets_total, 1);

    proxies.clear_all();
    let mut again = connect(addr).await;
    round_trip(&mut again, b"after").await;
}

#[tokio::test]
async fn timeout_holds_bytes_and_new_connections_until_cleared() {
    let (upstream, accepted) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    let mut open = connect(addr).await;
    round_trip(&mut open, b"before").await;

    proxies.set("p", Faults { timeout: true, ..Faults::default() }).expect("set");
    let mut fresh = connect(addr).await;
    open.write_all(b"held").await.expect("write");
    fresh.write_all(b"new").await.expect("write");
    let (mut buf, mut fresh_buf) = ([0u8; 8], [0u8; 8]);
    let (a, b) = tokio::join!(
        timeout(Duration::from_millis(300), open.read(&mut buf)),
        timeout(Duration::from_millis(300), fresh.peek(&mut fresh_buf))
    );
    assert!(a.is_err() && b.is_err(), "a black hole answered: {a:?} {b:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the new connection reached the upstream");
    assert_eq!(proxies.stats("p").expect("stats").connections_open, 2);

    proxies.clear_all();
    let mut held = [0u8; 4];
    timeout(Duration::from_secs(1), open.read_exact(&mut held)).await.expect("released").expect("read");
    assert_eq!(&held, b"held");
    let mut new = [0u8; 3];
    timeout(Duration::from_secs(1), fresh.read_exact(&mut new)).await.expect("released").expect("read");
    assert_eq!(&new, b"new");
}

#[tokio::test]
async fn nothing_leaks_when_clients_close_or_the_upstream_refuses() {
    let (upstream, _) = echo_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Tcp).await;
    let mut streams = Vec::new();
    for i in 0..10u8 {
        let mut stream = connect(addr).await;
        round_trip(&mut stream, &[i; 10]).await;
        streams.push(stream);
    }
    assert_eq!(proxies.stats("p").expect("stats").connections_open, 10);
    drop(streams);
    eventually("every connection to close", || proxies.stats("p").is_some_and(|s| s.connections_open == 0)).await;

    // Nobody listens there once this listener is dropped.
    let gone = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let (dead, dead_addr) = start_one(gone, Mode::Tcp).await;
    let mut stream = connect(dead_addr).await;
    assert_cut(&mut stream, Duration::from_secs(1)).await;
    eventually("the failed connection to close", || dead.stats("p").is_some_and(|s| s.connections_open == 0)).await;
}

#[test]
fn specs_parse_from_the_command_line_form() {
    let pg: ProxySpec = "pg=127.0.0.1:15432->127.0.0.1:5432".parse().expect("valid");
    assert_eq!(pg.name, "pg");
    assert_eq!(pg.listen, "127.0.0.1:15432".parse().expect("addr"));
    assert_eq!(pg.upstream, "127.0.0.1:5432");
    assert_eq!(pg.mode, Mode::Tcp);
    assert_eq!(pg.to_string().parse::<ProxySpec>().expect("round trip"), pg);
    let ddb: ProxySpec = "ddb = 0.0.0.0:18000 -> localhost:8000/http".parse().expect("valid");
    assert_eq!((ddb.upstream.as_str(), ddb.mode), ("localhost:8000", Mode::Http));
    for bad in [
        "pg",
        "=1.2.3.4:1->a:1",
        "pg=localhost:1->a:1",
        "pg=1.2.3.4:1->a",
        "pg=1.2.3.4:1->a:1/udp",
        "p g=1.2.3.4:1->a:1",
    ] {
        assert!(matches!(bad.parse::<ProxySpec>(), Err(ProxyError::BadSpec { .. })), "{bad}");
    }
}

#[tokio::test]
async fn faults_that_do_not_fit_are_refused_at_set_time() {
    let (upstream, _) = echo_upstream().await;
    let proxies =
        Proxies::start(vec![spec("pg", upstream, Mode::Tcp), spec("ddb", upstream, Mode::Http)]).await.expect("start");
    let throttle = Faults { http_errors: Some(HttpErrors::dynamodb_throttling(0.5)), ..Faults::default() };
    assert!(matches!(proxies.set("pg", throttle.clone()), Err(ProxyError::BadFaults(_))));
    proxies.set("ddb", throttle.clone()).expect("http proxy");
    assert_eq!(proxies.faults("ddb"), Some(throttle));
    let bad_share = Faults { http_errors: Some(HttpErrors::dynamodb_throttling(1.5)), ..Faults::default() };
    assert!(matches!(proxies.set("ddb", bad_share), Err(ProxyError::BadFaults(_))));
    assert!(matches!(proxies.set("nope", Faults::default()), Err(ProxyError::UnknownProxy(_))));
    assert!(matches!(
        Proxies::start(vec![spec("a", upstream, Mode::Tcp), spec("a", upstream, Mode::Tcp)]).await,
        Err(ProxyError::DuplicateName(_))
    ));
    let taken = proxies.local_addr("pg").expect("addr");
    let clash = ProxySpec { listen: taken, ..spec("x", upstream, Mode::Tcp) };
    let err = Proxies::start(vec![clash]).await.err().expect("address in use");
    assert!(matches!(&err, ProxyError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse), "{err}");
}

// ---- Http mode ----

/// A keep-alive HTTP/1.1 upstream: answers `GET /chunked` with [`CHUNKED_BODY`], anything else with
/// `seen <n> <body bytes>` (Content-Length); counts the requests it saw.
async fn http_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = read_until(&mut stream, &mut pending, b"\r\n\r\n").await {
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let body_len = if head.contains("transfer-encoding: chunked") {
                        read_until(&mut stream, &mut pending, b"0\r\n\r\n").await.map_or(0, |b| b.len())
                    } else {
                        let length = content_length(&head);
                        read_exactly(&mut stream, &mut pending, length).await.len()
                    };
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let answer = if head.starts_with("get /chunked ") {
                        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{CHUNKED_BODY}")
                    } else {
                        let body = format!("seen {n} {body_len}");
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    };
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

const CHUNKED_BODY: &str =
    "5\r\nhello\r\n7;note=x\r\n, world\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";

/// Reads until `marker` and returns everything up to and including it (`None` at EOF).
async fn read_until(stream: &mut TcpStream, pending: &mut Vec<u8>, marker: &[u8]) -> Option<Vec<u8>> {
    loop {
        if let Some(at) = pending.windows(marker.len()).position(|w| w == marker) {
            return Some(pending.drain(..at + marker.len()).collect());
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

async fn read_exactly(stream: &mut TcpStream, pending: &mut Vec<u8>, len: usize) -> Vec<u8> {
    while pending.len() < len {
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
    let len = len.min(pending.len());
    pending.drain(..len).collect()
}

fn content_length(lowercase_head: &str) -> usize {
    lowercase_head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A keep-alive client connection that sends raw requests and reads Content-Length responses.
struct HttpClient {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl HttpClient {
    async fn connect(addr: SocketAddr) -> HttpClient {
        HttpClient { stream: connect(addr).await, pending: Vec::new() }
    }

    /// Sends `request` and returns the answer's status, head (lower-cased) and body.
    async fn send(&mut self, request: &[u8]) -> (u16, String, Vec<u8>) {
        self.stream.write_all(request).await.expect("send request");
        let head = timeout(Duration::from_secs(2), read_until(&mut self.stream, &mut self.pending, b"\r\n\r\n"))
            .await
            .expect("an answer in time")
            .expect("an answer head");
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
        let body = read_exactly(&mut self.stream, &mut self.pending, content_length(&head)).await;
        (status, head, body)
    }
}

fn post(body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: ddb\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn post_chunked() -> Vec<u8> {
    b"POST / HTTP/1.1\r\nHost: ddb\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n".to_vec()
}

#[tokio::test]
async fn share_one_answers_every_request_with_the_throttling_error_and_the_upstream_sees_none() {
    let (upstream, seen) = http_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Http).await;
    let throttling = HttpErrors::dynamodb_throttling(1.0);
    proxies.set("p", Faults { http_errors: Some(throttling.clone()), ..Faults::default() }).expect("set");
    let mut client = HttpClient::connect(addr).await;
    for i in 0..20 {
        let request = if i % 2 == 0 { post(r#"{"TableName":"orders"}"#) } else { post_chunked() };
        let (status, head, body) = client.send(&request).await;
        assert_eq!(status, 400);
        assert!(head.contains("x-amzn-errortype: provisionedthroughputexceededexception\r\n"), "{head}");
        assert!(head.contains("content-type: application/x-amz-json-1.0\r\n"), "{head}");
        assert_eq!(body, throttling.body.as_bytes());
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(json["__type"], "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    let stats = proxies.stats("p").expect("stats");
    assert_eq!((stats.http_requests_total, stats.http_errors_injected), (20, 20));
}

#[tokio::test]
async fn share_zero_forwards_everything_and_a_half_share_injects_about_half() {
    let (upstream, seen) = http_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Http).await;
    proxies
        .set("p", Faults { http_errors: Some(HttpErrors::dynamodb_throttling(0.0)), ..Faults::default() })
        .expect("set");
    let mut client = HttpClient::connect(addr).await;
    for i in 1..=20 {
        let (status, _, body) = client.send(&post("0123456789")).await;
        assert_eq!((status, String::from_utf8_lossy(&body).into_owned()), (200, format!("seen {i} 10")));
    }
    let (status, _, body) = client.send(&post_chunked()).await;
    assert_eq!((status, body), (200, b"seen 21 22".to_vec()), "the chunked body reached the upstream whole");

    proxies
        .set("p", Faults { http_errors: Some(HttpErrors::dynamodb_throttling(0.5)), ..Faults::default() })
        .expect("set");
    let mut injected = 0;
    for _ in 0..200 {
        let (status, _, _) = client.send(&post("{}")).await;
        if status == 400 {
            injected += 1;
        } else {
            assert_eq!(status, 200);
        }
    }
    assert!((60..=140).contains(&injected), "{injected} of 200 injected");
    assert_eq!(seen.load(Ordering::SeqCst), 21 + 200 - injected);
    assert_eq!(proxies.stats("p").expect("stats").http_errors_injected, injected as u64);
}

#[tokio::test]
async fn a_chunked_response_is_relayed_intact_and_the_connection_stays_usable() {
    let (upstream, _) = http_upstream().await;
    let (proxies, addr) = start_one(upstream, Mode::Http).await;
    let mut client = HttpClient::connect(addr).await;
    client.stream.write_all(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let head = read_until(&mut client.stream, &mut client.pending, b"\r\n\r\n").await.expect("head");
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"));
    let body =
        timeout(Duration::from_secs(2), read_until(&mut client.stream, &mut client.pending, b"X-Sum: 1\r\n\r\n"))
            .await
            .expect("in time")
            .expect("body");
    assert_eq!(String::from_utf8_lossy(&body), CHUNKED_BODY);

    proxies.set("p", Faults { latency_ms: 150, ..Faults::default() }).expect("set");
    let started = Instant::now();
    let (status, _, body) = client.send(&post("x")).await;
    assert_eq!((status, body), (200, b"seen 2 1".to_vec()));
    assert!(started.elapsed() >= Duration::from_millis(300), "latency applies to request and response");
}

// ---- the control API ----

#[tokio::test]
async fn the_control_api_sets_lists_resets_and_clears_faults() {
    let (upstream, _) = echo_upstream().await;
    let (http_upstream, _) = http_upstream().await;
    let proxies = Proxies::start(vec![spec("pg", upstream, Mode::Tcp), spec("ddb", http_upstream, Mode::Http)])
        .await
        .expect("start");
    let (control_addr, server) =
        control::serve(proxies.clone(), "127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let client = Client::new(&format!("http://{control_addr}/")).expect("client");
    client.health().await.expect("healthy");

    let mut open = connect(proxies.local_addr("pg").expect("pg")).await;
    round_trip(&mut open, b"hello").await;

    let slow = Faults { latency_ms: 50, jitter_ms: 10, ..Faults::default() };
    client.set("pg", &slow).await.expect("set");
    assert_eq!(proxies.faults("pg"), Some(slow.clone()));
    let throttle = Faults { http_errors: Some(HttpErrors::dynamodb_throttling(0.25)), ..Faults::default() };
    client.set("ddb", &throttle).await.expect("set");

    let listed = client.list().await.expect("list");
    assert_eq!(listed["pg"]["faults"]["latency_ms"], 50);
    assert_eq!(listed["pg"]["mode"], "tcp");
    assert_eq!(listed["pg"]["upstream"], upstream.to_string());
    assert_eq!(listed["pg"]["stats"]["bytes_to_upstream"], 5);
    assert_eq!(listed["pg"]["stats"]["connections_open"], 1);
    assert_eq!(listed["ddb"]["mode"], "http");
    assert_eq!(listed["ddb"]["faults"]["http_errors"]["share"], 0.25);
    let entries: std::collections::BTreeMap<String, ProxyEntry> = serde_json::from_value(listed).expect("typed");
    assert_eq!(entries["ddb"].faults, throttle);

    assert_eq!(client.reset("pg").await.expect("reset"), 1);
    assert_cut(&mut open, Duration::from_secs(1)).await;

    client.clear("ddb").await.expect("clear one");
    assert_eq!(proxies.faults("ddb"), Some(Faults::default()));
    client.clear_all().await.expect("clear all");
    assert_eq!(proxies.faults("pg"), Some(Faults::default()));

    assert!(matches!(client.set("nope", &slow).await, Err(ProxyError::UnknownProxy(name)) if name == "nope"));
    assert!(matches!(client.reset("nope").await, Err(ProxyError::UnknownProxy(_))));
    assert!(matches!(client.set("pg", &throttle).await, Err(ProxyError::BadFaults(_))));
    for bad in [&br#"{"latency_ms": "x"}"#[..], br#"{"latncy_ms": 5}"#, b"not json"] {
        let (status, body) = client.exchange("PUT", "/proxies/pg/faults", Some(bad)).await.expect("answered");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(client.exchange("GET", "/nowhere", None).await.expect("answered").0, 404);
    assert_eq!(client.exchange("PATCH", "/faults", None).await.expect("answered").0, 405);
    assert_eq!(proxies.faults("pg"), Some(Faults::default()), "bad requests changed nothing");
    server.abort();
}

#[test]
fn control_addresses_are_checked() {
    for good in ["http://127.0.0.1:8474", "127.0.0.1:8474", "localhost:8474/", "[::1]:8474"] {
        assert!(Client::new(good).is_ok(), "{good}");
    }
    for bad in ["https://127.0.0.1:8474", "127.0.0.1", "http://h:1/x", ":8474", "h:0"] {
        assert!(matches!(Client::new(bad), Err(ProxyError::BadControlAddress(_))), "{bad}");
    }
}

/// Round trips per second of 64-byte ping-pongs, direct and through a fault-free proxy, all on one
/// thread so that the figure is the proxy's own work (not thread wake-ups, which vary with the load).
/// `cargo test -p chaos --release -- --ignored --nocapture round_trips_per_second`
#[tokio::test(flavor = "current_thread")]
#[ignore = "a measurement, not a check"]
async fn round_trips_per_second_direct_and_proxied() {
    let (upstream, _) = echo_upstream().await;
    let (_proxies, addr) = start_one(upstream, Mode::Tcp).await;
    async fn rate(addr: SocketAddr) -> f64 {
        let mut stream = connect(addr).await;
        let message = [42u8; 64];
        for _ in 0..1000 {
            round_trip(&mut stream, &message).await;
        }
        let n = 20_000;
        let started = Instant::now();
        for _ in 0..n {
            round_trip(&mut stream, &message).await;
        }
        f64::from(n) / started.elapsed().as_secs_f64()
    }
    let direct = rate(upstream).await;
    let proxied = rate(addr).await;
    println!("direct {direct:.0} rt/s, proxied {proxied:.0} rt/s, ratio {:.2}", proxied / direct);
}
