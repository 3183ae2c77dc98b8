//! The Redis cache over TLS (`rediss://`) against a TLS-only `redis-server` with a CA made at test
//! time (`testkit::tls`).

use std::time::Duration;

use events::error_chain;
use projections::read_models::cache::{open_redis, CacheKey, CacheSettings, ReadCache};
use testkit::tls::{TestCa, TlsRedis};

fn settings(ca: Option<&TestCa>) -> CacheSettings {
    CacheSettings {
        namespace: format!("test:{}", uuid::Uuid::new_v4().simple()),
        timeout: Duration::from_secs(2),
        ca_file: ca.map(|ca| ca.ca_file.clone()),
        ..CacheSettings::default()
    }
}

async fn load(value: &str) -> Result<String, std::convert::Infallible> {
    Ok(value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_speaks_tls_to_a_server_it_trusts_and_only_to_that() {
    let Some(ca) = TestCa::generate() else { return };
    let Some(server) = TlsRedis::start(&ca) else { return };

    let cache = ReadCache::connect(&server.url(), settings(Some(&ca))).await.unwrap();
    assert!(!cache.is_degraded(), "the epoch was bumped over TLS");
    let key = CacheKey::Loyalty("alice".into());
    assert_eq!(cache.get_or_load(&key, || load("v1")).await.unwrap(), "v1");
    assert_eq!(cache.get_or_load(&key, || load("v2")).await.unwrap(), "v1", "the second read is a hit");

    // Without the CA the server's certificate chains to nothing the client trusts.
    let settings = settings(None);
    let client = open_redis(&server.url(), &settings).unwrap();
    let refused = match client.get_multiplexed_async_connection().await {
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
        Err(e) => error_chain(&e),
    };
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let cache = ReadCache::connect(&server.url(), settings).await.unwrap();
    assert!(cache.is_degraded() && !cache.recover().await, "reads go around a cache it cannot trust");
    assert_eq!(cache.get_or_load(&key, || load("v3")).await.unwrap(), "v3");
}

#[tokio::test]
async fn a_ca_file_without_rediss_and_passwords_in_errors_are_refused() {
    let settings =
        CacheSettings { ca_file: Some("/etc/ssl/certs/ca-certificates.crt".into()), ..CacheSettings::default() };
    let e = open_redis("redis://:hunter2@127.0.0.1:6379", &settings).expect_err("refused");
    let text = error_chain(&e);
    assert!(text.contains("rediss://") && !text.contains("hunter2"), "{text}");
}
