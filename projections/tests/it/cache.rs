//! The Redis cache against real Redis servers: the shared one for behaviour, one of our own for faults.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::domain::{streams, MenuItemPriceChanged, MenuItemPublished, Nutrition};
use projections::read_models::cache::{CacheKey, CacheSettings, CachedSink, ReadCache};
use projections::read_models::conformance::journal;
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::read_models::storefront::StorefrontQueries;
use projections::Sink;
use testkit::servers;

fn settings() -> CacheSettings {
    CacheSettings { namespace: format!("test:{}", uuid::Uuid::new_v4().simple()), ..CacheSettings::default() }
}

async fn load(counter: &AtomicUsize, value: &str) -> Result<String, std::convert::Infallible> {
    counter.fetch_add(1, Ordering::SeqCst);
    Ok(value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_through_once_then_hit() {
    let Some(url) = servers::redis_url() else { return };
    let cache = ReadCache::connect(&url, settings()).await.unwrap();
    assert!(!cache.is_degraded());
    let loads = AtomicUsize::new(0);
    let key = CacheKey::Loyalty("alice".into());
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v1")).await.unwrap(), "v1");
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v2")).await.unwrap(), "v1");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // Another customer is another entry.
    assert_eq!(cache.get_or_load(&CacheKey::Loyalty("bob".into()), || load(&loads, "b")).await.unwrap(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_menu_change_applied_to_the_model_invalidates_the_menu() {
    let Some(url) = servers::redis_url() else { return };
    let cache = Arc::new(ReadCache::connect(&url, settings()).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(SqliteStorefront::open(dir.path()).unwrap());
    let sink = CachedSink::new(model.clone(), cache.clone());
    let events = journal(vec![
        (
            streams::menu_item("latte"),
            MenuItemPublished {
                item_id: "latte".into(),
                name: "Latte".into(),
                category: "coffee".into(),
                price_cents: 450,
                nutrition: Nutrition::default(),
                image_sha256: String::new(),
            }
            .into(),
        ),
        (streams::menu_item("latte"), MenuItemPriceChanged { item_id: "latte".into(), price_cents: 500 }.into()),
    ]);
    sink.apply(&events[..1]).await.unwrap();
    let menu = |m: Arc<SqliteStorefront>| async move { m.menu().await };
    let first = cache.get_or_load(&CacheKey::MenuItems, || menu(model.clone())).await.unwrap();
    assert_eq!(first[0].price_cents, 450);
    sink.apply(&events).await.unwrap();
    let after = cache.get_or_load(&CacheKey::MenuItems, || menu(model.clone())).await.unwrap();
    assert_eq!(after[0].price_cents, 500, "the new price, not the cached one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_loaded_before_an_invalidation_cannot_cache_the_old_value() {
    let Some(url) = servers::redis_url() else { return };
    let cache = ReadCache::connect(&url, settings()).await.unwrap();
    let loads = AtomicUsize::new(0);
    let key = CacheKey::Loyalty("carol".into());
    cache.invalidate(std::slice::from_ref(&key)).await;
    // This reader read the model before the change was applied: its value must not stick.
    assert_eq!(cache.get_or_load(&key, || load(&loads, "old")).await.unwrap(), "old");
    assert_eq!(cache.get_or_load(&key, || load(&loads, "new")).await.unwrap(), "new");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

/// A redis-server of this test's own, so that it can be killed and paused without touching others.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed by deploy/local/services.sh");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child, port }
    }
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
    fn command(&self, args: &[&str]) {
        let status =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).stdout(Stdio::null()).status();
        assert!(status.unwrap().success());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_or_a_flush_slows_reads_and_never_makes_them_wrong() {
    if servers::redis_url().is_none() {
        return;
    }
    let port = chaos::process::free_loopback_addr().port();
    let mut redis = OwnRedis::start(port);
    let cache = ReadCache::connect(&redis.url(), settings()).await.unwrap();
    let loads = AtomicUsize::new(0);
    let key = CacheKey::Loyalty("dave".into());
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v1")).await.unwrap(), "v1");

    // A flush loses the entry: the next read goes to the model.
    redis.command(&["FLUSHALL"]);
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v2")).await.unwrap(), "v2");

    // Writes paused (as in a failover): the invalidation of v2 times out, so the node stops trusting
    // the cache until it can retire every entry; it must never serve v2 again once the model moved on.
    redis.command(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    cache.invalidate(std::slice::from_ref(&key)).await;
    assert!(cache.is_degraded());
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v3")).await.unwrap(), "v3");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v4")).await.unwrap(), "v4", "stale v2 is never served");
    assert!(!cache.is_degraded(), "recovered by retiring the epoch");

    // Killed: reads fall through within the timeout.
    drop(redis);
    let started = Instant::now();
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v5")).await.unwrap(), "v5");
    assert!(started.elapsed() < Duration::from_secs(2), "no hang: {:?}", started.elapsed());
    cache.invalidate(std::slice::from_ref(&key)).await;
    assert!(cache.is_degraded());
    redis = OwnRedis::start(port);
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v6")).await.unwrap(), "v6");
    assert_eq!(cache.get_or_load(&key, || load(&loads, "v7")).await.unwrap(), "v6", "caching again");
    drop(redis);
}
