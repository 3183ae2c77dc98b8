//! Rate limits (#14): the Redis buckets pass the same conformance suite as the in-process ones,
//! against a real Redis; two real nodes sharing that Redis hold one customer to one limit between
//! them; without a token the limit is per client address and the health checks are never limited;
//! a Redis that does not answer leaves each node limiting on its own, counted, and never a 503.

use std::time::Duration;

use chaos::process::{free_loopback_addr, Node};
use gateways::auth::token::{DEFAULT_AUDIENCE, LOCAL_ISSUER};
use gateways::load::HttpConnection;
use gateways::rate_limit::redis::RedisBuckets;
use testkit::servers;

#[tokio::test]
async fn the_redis_buckets_conform() {
    let Some(url) = servers::redis_url() else { return };
    let buckets = RedisBuckets::new(redis::Client::open(url.as_str()).unwrap(), "cloudcafe-test");
    gateways::rate_limit::conformance::run(&buckets, "redis").await;
}

fn serve(dir: &tempfile::TempDir, redis: Option<&str>, limits: &[&str]) -> Node {
    let addr = free_loopback_addr();
    let mut args: Vec<String> =
        ["serve", "--listen", &addr.to_string(), "--workers", "1", "--data-dir"].map(String::from).to_vec();
    args.push(dir.path().display().to_string());
    args.extend(["--auth-key-file".to_owned(), crate::security::key_file().to_owned()]);
    if let Some(url) = redis {
        args.extend(["--redis-url".to_owned(), url.to_owned()]);
    }
    for limit in limits {
        args.extend(["--rate-limit".to_owned(), (*limit).to_owned()]);
    }
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr);
    node.start(Duration::from_secs(30)).expect("node starts");
    node
}

fn customer_token(subject: &str) -> String {
    let key = gateways::auth::LocalKey::load(std::path::Path::new(crate::security::key_file())).unwrap();
    key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, subject, gateways::auth::Role::Customer, None, Duration::from_secs(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_redis_hold_a_customer_to_one_limit() {
    let Some(url) = servers::redis_url() else { return };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(&a_dir, Some(&url), &["customer=5:5"]);
    let b = serve(&b_dir, Some(&url), &["customer=5:5"]);
    let subject = format!("rl-{}", uuid::Uuid::new_v4().simple());
    let token = customer_token(&subject);
    let path = format!("/api/loyalty/{subject}");
    let (mut to_a, mut to_b) =
        (HttpConnection::with_bearer(a.addr, &token), HttpConnection::with_bearer(b.addr, &token));
    let mut statuses = Vec::new();
    for i in 0..12 {
        let conn = if i % 2 == 0 { &mut to_a } else { &mut to_b };
        let r = conn.request("GET", &path, &[], b"").await.unwrap();
        if r.status == 429 {
            let wait: u64 = r.header("retry-after").expect("a 429 says when").parse().unwrap();
            assert!((1..=1).contains(&wait), "retry after {wait} s at 5/s");
            assert_eq!(r.json()["field"], serde_json::Value::Null, "{}", String::from_utf8_lossy(&r.body));
        }
        statuses.push(r.status);
    }
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=6).contains(&allowed), "one bucket of 5 across two nodes, not 5 each: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 12 - allowed, "{statuses:?}");
    // Another customer is not held back by the first one's bucket.
    let other = HttpConnection::with_bearer(a.addr, &customer_token("someone-else"))
        .request("GET", "/api/loyalty/someone-else", &[], b"")
        .await
        .unwrap();
    assert_eq!(other.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_limit_is_per_address_and_health_checks_are_never_limited() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir, None, &["anonymous=2:2"]);
    let mut conn = HttpConnection::new(node.addr);
    let mut menu = Vec::new();
    for _ in 0..4 {
        menu.push(conn.request("GET", "/api/menu/items", &[], b"").await.unwrap().status);
    }
    assert_eq!(menu, [200, 200, 429, 429]);
    // Bad tokens are counted against the address too: spraying them is slowed down.
    let sprayed =
        conn.request("GET", "/api/loyalty/alice", &[("Authorization", "Bearer nonsense")], b"").await.unwrap();
    assert_eq!(sprayed.status, 429);
    for _ in 0..20 {
        assert_eq!(conn.request("GET", "/health", &[], b"").await.unwrap().status, 200);
    }
    // A customer with a token has their own bucket.
    let token = customer_token("alice");
    let r = conn.request("GET", "/api/loyalty/alice", &[("Authorization", &format!("Bearer {token}"))], b"").await;
    assert_eq!(r.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_does_not_answer_leaves_each_node_limiting_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: every shared-bucket call fails, and the node's own buckets decide.
    let dead = format!("redis://{}", free_loopback_addr());
    // A slow refill: each request also waits for the dead Redis (the limiter's 50 ms, the cache's
    // 250 ms), which a faster rate would refill in between.
    let node = serve(&dir, Some(&dead), &["customer=0.1:3"]);
    let token = customer_token("carol");
    let mut conn = HttpConnection::with_bearer(node.addr, &token);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(conn.request("GET", "/api/loyalty/carol", &[], b"").await.unwrap().status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429], "limited per node, never a 503");
    let metrics = crate::security::admin_client(node.addr).request("GET", "/metrics", &[], b"").await.unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    let fallbacks: f64 = text
        .lines()
        .find(|l| l.starts_with("rate_limit_fallbacks_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("rate_limit_fallbacks_total in /metrics");
    assert!(fallbacks >= 5.0, "{fallbacks}");
}
