//! The node's own dashboard page (`/admin/dashboard`, #12): the overview's widgets drawn from the
//! node's samples. In process: the page's shell is open and holds no data, its data needs the admin
//! token, and the data has every widget of the overview with AWS's lines marked. In headless
//! Chromium against the real `cloudcafe serve` binary after a short flood (a stress run inside the
//! node and orders and reads over HTTP): every widget with a line of the node's own metrics drew
//! points, and the page logged no error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::test as web_test;
use chaos::process::{free_loopback_addr, Node};
use events::metric::{self, Emitter};
use gateways::cloudwatch::dashboard::{LineSeries, Widget};
use gateways::cloudwatch::history::History;
use gateways::cloudwatch::sample::{Sample, Series, Value};
use gateways::http::dashboard::overview;
use gateways::http::{ApiSettings, ApiState};
use gateways::load::HttpConnection;
use gateways::telemetry::metrics_handle;
use serde_json::{json, Value as Json};

use crate::security::{admin_bearer, admin_client, admin_token, key_file};

/// Whether a line plots only metrics that a node on the embedded journal records (so a flood on
/// such a node must give it points); AWS lines and those of parts it does not run (Kinesis, SQS,
/// Redis, PostgreSQL, the export) are not expected to.
/// Every node records these; the test's flood runs a stress scenario inside the node.
fn drawn(emitter: Emitter) -> bool {
    matches!(emitter, Emitter::Node | Emitter::Stress)
}

fn drawn_by_an_embedded_node(series: &LineSeries) -> bool {
    match series {
        LineSeries::External(_) => false,
        LineSeries::Metric(q) | LineSeries::PerSecond(q) => drawn(q.metric.emitter),
        LineSeries::Percent { part, whole } => part.iter().chain(whole).all(|q| drawn(q.metric.emitter)),
    }
}

fn expects_points(widget: &Widget) -> bool {
    widget.lines.iter().any(|l| drawn_by_an_embedded_node(&l.series))
}

#[actix_web::test]
async fn the_page_is_open_and_holds_no_data_while_its_data_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = gateways::node::NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    let node = gateways::node::Node::start(settings).await.unwrap();
    // A synthetic sample, not one drained from the process-wide sampler other tests may read.
    let history = Arc::new(History::new(4));
    history.push(Arc::new(Sample {
        at: SystemTime::now(),
        interval: Duration::from_secs(5),
        series: vec![Series {
            metric: &metric::COMMANDS,
            dimensions: vec![("Aggregate", "order".into()), ("Outcome", "ok".into())],
            value: Value::Count(10.0),
        }],
    }));
    let api = ApiSettings { history, ..crate::security::guarded() };
    let app = web_test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &api))).await;

    let res = web_test::call_service(&app, web_test::TestRequest::get().uri("/admin/dashboard").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK, "the shell is served without the token");
    let csp = res.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    let page = String::from_utf8(web_test::read_body(res).await.to_vec()).unwrap();
    let nonce = csp.split("'nonce-").nth(1).and_then(|s| s.split('\'').next()).unwrap();
    assert!(page.contains(&format!("<script nonce=\"{nonce}\">")), "the script runs under the answer's CSP nonce");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    for widget in &overview().widgets {
        assert!(!page.contains(&widget.title), "the shell shows data: {}", widget.title);
    }

    let token = admin_token();
    for refused in [None, Some("Bearer not-a-token-at-all"), Some(token.as_str())] {
        let mut req = web_test::TestRequest::get().uri("/admin/dashboard/data");
        if let Some(value) = refused {
            req = req.insert_header(("Authorization", value));
        }
        let res = web_test::call_service(&app, req.to_request()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
        assert!(res.headers().contains_key("www-authenticate"));
    }

    let req =
        web_test::TestRequest::get().uri("/admin/dashboard/data").insert_header(("Authorization", admin_bearer()));
    let res = web_test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let data: Json = serde_json::from_slice(&web_test::read_body(res).await).unwrap();
    assert_eq!((data["samples"].as_u64(), data["capacity"].as_u64()), (Some(1), Some(4)), "{data}");
    assert_eq!(data["sample_seconds"], 5.0);
    let widgets = data["widgets"].as_array().unwrap();
    let expected = &overview().widgets;
    assert_eq!(widgets.len(), expected.len());
    for (json, widget) in widgets.iter().zip(expected) {
        assert_eq!(json["title"], widget.title.as_str());
        let lines = json["lines"].as_array().unwrap();
        assert_eq!(lines.len(), widget.lines.len(), "{}", widget.title);
        for (json, line) in lines.iter().zip(&widget.lines) {
            assert_eq!(json["label"], line.label.as_str());
            let external = matches!(line.series, LineSeries::External(_));
            assert_eq!(json["aws_only"], external, "{} / {}", widget.title, line.label);
            if external {
                assert_eq!(json["points"], json!([]));
            }
        }
    }
}

/// The value of `name="..."` in one tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    tag[start..].split('"').next()
}

/// Every opening tag of `element` in `dom` that has `marker` among its attributes.
fn tags<'a>(dom: &'a str, element: &str, marker: &str) -> Vec<&'a str> {
    dom.match_indices(&format!("<{element} "))
        .map(|(at, _)| &dom[at..at + dom[at..].find('>').unwrap_or(0)])
        .filter(|tag| tag.contains(marker))
        .collect()
}

/// Runs headless Chromium on `url` and returns (the DOM after the page's scripts ran, stderr).
fn dump_dom(chromium: &str, url: &str, profile: &Path) -> (String, String) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            // Time the page's timers see: its first fetch and some refreshes (network waits pause it).
            "--virtual-time-budget=6000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within two minutes");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    (out.join().expect("stdout reader").expect("read stdout"), err.join().expect("stderr reader").expect("read stderr"))
}

/// A short flood on `addr`: a stress run inside the node, and orders and reads over HTTP from a few
/// clients for about `seconds`.
async fn flood(addr: std::net::SocketAddr, seconds: u64) {
    let bearer = admin_bearer();
    let admin = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let stress = json!({"duration_seconds": seconds, "rate": 50, "scale": 0.002}).to_string();
    let started = admin_client(addr).request("POST", "/admin/stress/morning-rush", &admin, stress.as_bytes()).await;
    let started = started.expect("the node answers");
    assert_eq!(started.status, 202, "{}", String::from_utf8_lossy(&started.body));

    let until = Instant::now() + Duration::from_secs(seconds);
    let clients = (0..4).map(|client| {
        tokio::spawn(async move {
            let mut http = admin_client(addr);
            let json = [("Content-Type", "application/json")];
            let mut placed = 0;
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                let customer = format!("dash-{client}-{}", i % 7);
                let order = json!({"customer_id": customer, "store_id": "store-1",
                    "items": [{"item_id": "latte", "quantity": 1}]});
                let res = http.request("POST", "/api/orders", &json, order.to_string().as_bytes()).await.unwrap();
                if res.status == 201 {
                    placed += 1;
                    let id = res.json()["order_id"].as_str().unwrap_or_default().to_owned();
                    http.request("GET", &format!("/api/orders/{id}"), &[], b"").await.unwrap();
                }
                http.request("GET", &format!("/api/loyalty/{customer}"), &[], b"").await.unwrap();
                http.request("GET", "/api/menu/items", &[], b"").await.unwrap();
                http.request("GET", "/api/inventory/stores/store-1/items/latte", &[], b"").await.unwrap();
                // Not an order id: a 4xx, so the error lines have a class to draw.
                http.request("GET", "/api/orders/not-an-order", &[], b"").await.unwrap();
            }
            placed
        })
    });
    let mut placed = 0;
    for client in clients.collect::<Vec<_>>() {
        placed += client.await.unwrap();
    }
    assert!(placed >= 20, "only {placed} orders placed");
}

#[test]
fn every_widget_of_the_nodes_own_metrics_draws_in_a_browser() {
    let Some(chromium) = testkit::servers::chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let addr = free_loopback_addr();
    let data_dir = dir.path().join("data").display().to_string();
    let args = [
        "serve",
        "--listen",
        &addr.to_string(),
        "--workers",
        "2",
        "--data-dir",
        &data_dir,
        "--auth-key-file",
        key_file(),
        "--metrics-sample-ms",
        "200",
    ]
    .map(String::from)
    .to_vec();
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr);
    node.start(Duration::from_secs(60)).expect("the node starts");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        flood(addr, 3).await;
        // A few samples more after the flood, so the last of it is in the history.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let res = HttpConnection::new(addr).request("GET", "/admin/dashboard/data", &[], b"").await.unwrap();
        assert_eq!(res.status, 401, "the data needs the token over the wire too");
    });

    let url = format!("http://{addr}/admin/dashboard#token={}", admin_token());
    let (dom, log) = dump_dom(&chromium, &url, &dir.path().join("profile"));
    node.kill().expect("stop the node");

    // Chromium logs the page's console as `INFO:CONSOLE:LINE] "message", source: ...` (older builds:
    // `CONSOLE(LINE)`); the page logs nothing unless something failed.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "the page logged:\n{}", console.join("\n"));
    let body = tags(&dom, "body", "data-errors").into_iter().next().unwrap_or_else(|| panic!("no body in:\n{dom}"));
    assert_eq!(attribute(body, "data-errors"), Some("0"), "the page caught errors:\n{dom}");
    let refreshes: u32 = attribute(body, "data-refreshes").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(refreshes >= 1, "the page never drew its data:\n{dom}");

    let sections = tags(&dom, "section", "data-widget=");
    let expected = &overview().widgets;
    assert_eq!(sections.len(), expected.len(), "a section per widget of the overview");
    let mut required = 0;
    for (tag, widget) in sections.iter().zip(expected) {
        let number = |name: &str| -> u64 {
            attribute(tag, name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name} in {tag}"))
        };
        let node_lines = widget.lines.iter().filter(|l| !matches!(l.series, LineSeries::External(_))).count();
        assert_eq!(number("data-node-lines"), node_lines as u64, "{}", widget.title);
        if expects_points(widget) {
            required += 1;
            assert!(number("data-points") > 0, "{} drew no points: {tag}", widget.title);
            assert!(number("data-shapes") > 0, "{} has points yet drew nothing: {tag}", widget.title);
        }
    }
    assert!(required > 0, "no widget of the overview plots a metric every node records");
    if expected.iter().flat_map(|w| &w.lines).any(|l| matches!(l.series, LineSeries::External(_))) {
        assert!(dom.contains("AWS metric: in CloudWatch only"), "AWS lines are named as such");
    }
}
