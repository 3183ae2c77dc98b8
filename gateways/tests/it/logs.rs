//! `cloudcafe serve --log-format json` on the real binary: every line it writes is a JSON object
//! with the fields CloudWatch Logs Insights is queried by, and an order's line carries the
//! `X-Correlation-Id` of its answer as `trace_id` and its customer; `--log-format text` stays text.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::process::free_loopback_addr;
use gateways::load::HttpConnection;
use serde_json::{json, Value};

/// A `cloudcafe serve` whose stdout is read line by line into `lines`; killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _data: tempfile::TempDir,
}

impl Served {
    /// Starts a node writing logs in `format` at `rust_log`, and waits until `/health` answers.
    async fn start(format: &str, rust_log: &str) -> Served {
        let data = tempfile::tempdir().unwrap();
        let addr = free_loopback_addr();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloudcafe"))
            .args(["serve", "--listen", &addr.to_string(), "--workers", "2", "--log-format", format])
            .arg("--data-dir")
            .arg(data.path())
            .env("RUST_LOG", rust_log)
            .env("CLOUDCAFE_AUTH_KEY_FILE", crate::security::key_file())
            .env_remove("CLOUDCAFE_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cloudcafe starts");
        // Drained all along: a full pipe would block the node's logging.
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let served = Served { child, addr, lines, _data: data };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = HttpConnection::new(addr).request("GET", "/health", &[], b"").await;
            if health.is_ok_and(|r| r.status == 200) {
                return served;
            }
            assert!(Instant::now() < deadline, "the node did not answer /health within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> gateways::load::HttpResponse {
        let body = serde_json::to_vec(&body).unwrap();
        let mut conn = crate::security::admin_client(self.addr);
        let response = conn.request("POST", path, &[("Content-Type", "application/json")], &body).await.expect(path);
        assert_eq!(response.status, 201, "{path}: {}", String::from_utf8_lossy(&response.body));
        response
    }

    /// The lines written so far.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until a line satisfies `found`, and returns every line written so far.
    async fn until(&self, found: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.lines();
            if lines.iter().any(|l| found(l)) || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_commands_trace_id_and_customer() {
    let node = Served::start("json", "debug").await;
    node.post(
        "/api/menu/items",
        json!({"item_id": "log-tea", "name": "Log Tea", "category": "tea", "price_cents": 250}),
    )
    .await;
    let customer = format!("log-{}", uuid::Uuid::new_v4().simple());
    let placed = node
        .post(
            "/api/orders",
            json!({"customer_id": customer, "store_id": "store-1", "items": [{"item_id": "log-tea", "quantity": 2}]}),
        )
        .await;
    let trace_id = placed.header("X-Correlation-Id").expect("a command's answer names its correlation id").to_owned();
    let order_id = placed.json()["order_id"].as_str().unwrap().to_owned();

    node.until(|l| l.contains("serving the CloudCafe API")).await;
    let lines = node.until(|l| l.contains(&trace_id) && l.contains("order placed")).await;
    assert!(lines.len() > 3, "the node logged at start and per request: {lines:#?}");
    let parsed: Vec<serde_json::Map<String, Value>> = lines
        .iter()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(o)) => o,
            other => panic!("a line that is not a JSON object: {l:?} ({other:?})"),
        })
        .collect();
    for line in &parsed {
        for key in ["timestamp", "level", "service", "message"] {
            assert!(line.get(key).is_some_and(Value::is_string), "{key} missing or not a string: {line:?}");
        }
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'), "{timestamp}");
        let level = line["level"].as_str().unwrap();
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level), "{level}");
    }
    assert!(parsed.iter().any(|l| l["message"] == "serving the CloudCafe API" && l["service"] == "cloudcafe"));

    let order_line = parsed
        .iter()
        .find(|l| l["message"] == "order placed" && l.get("trace_id").is_some_and(|t| *t == trace_id.as_str()))
        .unwrap_or_else(|| panic!("no `order placed` line with trace_id {trace_id}: {lines:#?}"));
    assert_eq!(order_line["customer_id"], customer.as_str());
    assert_eq!(order_line["order_id"], order_id.as_str());
    assert_eq!(order_line["service"], "orders");
    assert_eq!(order_line["level"], "DEBUG");
    // Lines of other requests do not inherit this command's trace id.
    let with_trace: Vec<_> =
        parsed.iter().filter(|l| l.get("trace_id").is_some_and(|t| *t == trace_id.as_str())).collect();
    assert!(with_trace.iter().all(|l| l["service"] == "orders"), "{with_trace:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_are_for_a_terminal() {
    let node = Served::start("text", "info").await;
    let lines = node.until(|l| l.contains("serving the CloudCafe API")).await;
    assert!(lines.iter().any(|l| l.contains("serving the CloudCafe API")), "{lines:#?}");
    for line in &lines {
        assert!(serde_json::from_str::<Value>(line).is_err(), "a JSON line in text mode: {line}");
    }
}
