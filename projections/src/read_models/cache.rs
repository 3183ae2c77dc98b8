//! Redis (ElastiCache) in front of the read models: menu items for 5 minutes, loyalty balances for a
//! minute, invalidated by the events that change them. A flush or an outage of Redis slows reads and
//! never makes them wrong:
//!
//! - every Redis call has a timeout, and any failure falls through to the read model;
//! - invalidation happens after the read model applied a page ([`CachedSink`]), and writes a
//!   short-lived tombstone, so a reader that loaded the old row just before cannot cache it again;
//! - every key carries a global epoch; an invalidation that fails leaves this node *degraded* (it
//!   reads around the cache) until it can bump the epoch, which retires every entry at once. A node
//!   also bumps the epoch when it starts, since it cannot know what it missed while down.

use events::metric;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use events::secret::{redact, Password};
use events::{DomainEvent, RecordedEvent};
use redis::{IntoConnectionInfo, Script};
use serde::{de::DeserializeOwned, Serialize};

use crate::{CanonicalRow, Sink, SinkError};

/// What a cache entry holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CacheKey {
    MenuItems,
    Loyalty(String),
}

impl CacheKey {
    fn suffix(&self) -> String {
        match self {
            CacheKey::MenuItems => "menu:items".into(),
            CacheKey::Loyalty(customer) => format!("loyalty:{customer}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Prefix of every key, e.g. `cloudcafe:prod`.
    pub namespace: String,
    pub menu_ttl: Duration,
    pub loyalty_ttl: Duration,
    /// How long a tombstone blocks re-caching after an invalidation.
    pub tombstone: Duration,
    /// The longest any Redis call may take before the read falls through.
    pub timeout: Duration,
    /// The CA bundle (PEM) a `rediss://` server's certificate must chain to; `None` trusts the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The AUTH password (an ElastiCache token), given apart from the URL; wins over one in it.
    pub password: Option<Password>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            namespace: "cloudcafe".into(),
            menu_ttl: Duration::from_secs(300),
            loyalty_ttl: Duration::from_secs(60),
            tombstone: Duration::from_secs(2),
            timeout: Duration::from_millis(250),
            ca_file: None,
            password: None,
        }
    }
}

const TOMBSTONE: &str = "~";

pub struct ReadCache {
    pool: bb8::Pool<RedisConnections>,
    settings: CacheSettings,
    degraded: AtomicBool,
    read: Script,
    write: Script,
    invalidate: Script,
}

/// A failed call to the cache: what was being done, and Redis' or the pool's error when there is one.
#[derive(Debug, thiserror::Error)]
#[error("cache: {reason}")]
pub struct CacheError {
    reason: String,
    #[source]
    cause: Option<events::Cause>,
}

impl CacheError {
    fn because(reason: &str, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        CacheError { reason: reason.to_owned(), cause: Some(std::sync::Arc::new(cause)) }
    }
}

/// The one way this crate opens Redis: `url` is `redis://` or `rediss://` (TLS, over rustls;
/// ElastiCache in transit encryption, MemoryDB), whose server certificate must chain to
/// `settings.ca_file` or, without one, to the system's roots and be for the URL's host. The
/// password of `settings` goes into the parsed connection info, never into text; errors show the
/// URL without its password.
pub fn open_redis(url: &str, settings: &CacheSettings) -> Result<redis::Client, CacheError> {
    let bad = |reason: &str, e: redis::RedisError| CacheError::because(&format!("{reason} ({})", redact(url)), e);
    let mut info = url.into_connection_info().map_err(|e| bad("bad Redis URL", e))?;
    if let Some(password) = &settings.password {
        let redis_settings = info.redis_settings().clone().set_password(password.expose());
        info = info.set_redis_settings(redis_settings);
    }
    let tls = url.starts_with("rediss://");
    if tls {
        // The driver builds its rustls configuration from the process' default provider.
        events::tls::crypto_provider();
    }
    match (&settings.ca_file, tls) {
        (None, _) => redis::Client::open(info).map_err(|e| bad("cannot open Redis", e)),
        (Some(path), true) => {
            let root_cert = std::fs::read(path)
                .map_err(|e| CacheError::because(&format!("cannot read the Redis CA file {}", path.display()), e))?;
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) })
                .map_err(|e| bad("cannot set TLS up for Redis", e))
        }
        (Some(path), false) => Err(CacheError {
            reason: format!("a Redis CA file ({}) needs a rediss:// URL, not {}", path.display(), redact(url)),
            cause: None,
        }),
    }
}

/// The pool's connections: multiplexed connections of one [`redis::Client`] from [`open_redis`].
#[derive(Clone)]
pub struct RedisConnections {
    client: redis::Client,
}

impl bb8::ManageConnection for RedisConnections {
    type Connection = redis::aio::MultiplexedConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        self.client.get_multiplexed_async_connection().await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

impl ReadCache {
    /// Connects lazily: an unreachable Redis at start leaves the cache degraded, not the node down.
    pub async fn connect(url: &str, settings: CacheSettings) -> Result<Self, CacheError> {
        let manager = RedisConnections { client: open_redis(url, &settings)? };
        for m in [&metric::CACHE_HITS, &metric::CACHE_MISSES, &metric::CACHE_ERRORS, &metric::CACHE_BYPASSED] {
            m.register(metric::NO_LABELS);
        }
        let pool = bb8::Pool::builder()
            .max_size(16)
            .connection_timeout(settings.timeout.max(Duration::from_millis(100)))
            .build_unchecked(manager);
        let cache = ReadCache {
            pool,
            settings,
            degraded: AtomicBool::new(true),
            read: Script::new(
                "local e = redis.call('GET', KEYS[1]) or '0'
                 return {e, redis.call('GET', ARGV[1] .. e .. ':' .. ARGV[2])}",
            ),
            write: Script::new(
                "if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
                   return redis.call('SET', ARGV[2], ARGV[3], 'PX', ARGV[4], 'NX')
                 end
                 return false",
            ),
            invalidate: Script::new(
                "local e = redis.call('GET', KEYS[1]) or '0'
                 for i = 3, #ARGV do redis.call('SET', ARGV[1] .. e .. ':' .. ARGV[i], '~', 'PX', ARGV[2]) end
                 return #ARGV - 2",
            ),
        };
        cache.recover().await;
        Ok(cache)
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.settings.namespace)
    }

    fn prefix(&self) -> String {
        format!("{}:", self.settings.namespace)
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::SeqCst)
    }

    /// Bumps the epoch (retiring every entry); leaves degraded mode if that worked.
    pub async fn recover(&self) -> bool {
        let epoch = self.epoch_key();
        let bumped = self
            .call(|mut c| async move { redis::cmd("INCR").arg(epoch).query_async::<i64>(&mut c).await.map(|_| ()) })
            .await
            .is_ok();
        if bumped {
            self.degraded.store(false, Ordering::SeqCst);
        }
        bumped
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            // A multiplexed connection is a cheap handle: take our own and give the pooled one back.
            let conn = self.pool.get().await.map_err(|e| CacheError::because("no Redis connection", e))?.clone();
            f(conn).await.map_err(|e| CacheError::because("a Redis command failed", e))
        };
        match tokio::time::timeout(self.settings.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(CacheError { reason: "timed out".into(), cause: None }),
        }
    }

    fn ttl(&self, key: &CacheKey) -> Duration {
        match key {
            CacheKey::MenuItems => self.settings.menu_ttl,
            CacheKey::Loyalty(_) => self.settings.loyalty_ttl,
        }
    }

    /// The cached value, or `load()`'s (cached for next time). Redis trouble only costs the load.
    pub async fn get_or_load<T, E, Fut>(&self, key: &CacheKey, load: impl FnOnce() -> Fut) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.is_degraded() && !self.recover().await {
            metric::CACHE_BYPASSED.counter(metric::NO_LABELS).increment(1);
            return load().await;
        }
        let (epoch_key, prefix, suffix) = (self.epoch_key(), self.prefix(), key.suffix());
        let script = &self.read;
        let read = self
            .call(|mut c| async move {
                script.key(epoch_key).arg(prefix).arg(suffix).invoke_async::<(String, Option<String>)>(&mut c).await
            })
            .await;
        let epoch = match read {
            Ok((_, Some(hit))) if hit != TOMBSTONE => {
                if let Ok(value) = serde_json::from_str(&hit) {
                    metric::CACHE_HITS.counter(metric::NO_LABELS).increment(1);
                    return Ok(value);
                }
                None
            }
            Ok((epoch, _)) => Some(epoch),
            Err(e) => {
                metric::CACHE_ERRORS.counter(metric::NO_LABELS).increment(1);
                tracing::debug!(error = %e, "cache read failed; reading the model");
                None
            }
        };
        metric::CACHE_MISSES.counter(metric::NO_LABELS).increment(1);
        let value = load().await?;
        if let (Some(epoch), Ok(json)) = (epoch, serde_json::to_string(&value)) {
            let (epoch_key, full) = (self.epoch_key(), format!("{}{}:{}", self.prefix(), epoch, key.suffix()));
            let ttl = self.ttl(key).as_millis() as u64;
            let script = &self.write;
            let _ = self
                .call(|mut c| async move {
                    script
                        .key(epoch_key)
                        .arg(epoch)
                        .arg(full)
                        .arg(json)
                        .arg(ttl)
                        .invoke_async::<Option<String>>(&mut c)
                        .await
                })
                .await;
        }
        Ok(value)
    }

    /// What `events` change in the cache.
    pub fn keys_changed_by(events: &[RecordedEvent]) -> Vec<CacheKey> {
        let mut keys = Vec::new();
        for e in events {
            let key = match events::domain::streams::category(&e.stream_id) {
                "menu" => CacheKey::MenuItems,
                "loyalty" => match e.decode() {
                    Ok(DomainEvent::PointsAccrued(p)) => CacheKey::Loyalty(p.customer_id),
                    Ok(DomainEvent::TierChanged(t)) => CacheKey::Loyalty(t.customer_id),
                    _ => continue,
                },
                _ => continue,
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Drops (tombstones) `keys`; on failure the node turns degraded until it can bump the epoch.
    pub async fn invalidate(&self, keys: &[CacheKey]) {
        if keys.is_empty() {
            return;
        }
        let (epoch_key, prefix) = (self.epoch_key(), self.prefix());
        let tombstone = self.settings.tombstone.as_millis() as u64;
        let suffixes: Vec<String> = keys.iter().map(CacheKey::suffix).collect();
        let script = &self.invalidate;
        let done = self
            .call(|mut c| async move {
                let mut invocation = script.key(epoch_key);
                invocation.arg(prefix).arg(tombstone);
                for s in &suffixes {
                    invocation.arg(s);
                }
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %events::ErrorChain(&e), "cache invalidation failed; reading around the cache until it recovers");
            metric::CACHE_ERRORS.counter(metric::NO_LABELS).increment(1);
            self.degraded.store(true, Ordering::SeqCst);
        }
    }
}

/// A sink whose successful pages also invalidate what they changed in the cache.
pub struct CachedSink {
    inner: Arc<dyn Sink>,
    cache: Arc<ReadCache>,
}

impl CachedSink {
    pub fn new(inner: Arc<dyn Sink>, cache: Arc<ReadCache>) -> Self {
        CachedSink { inner, cache }
    }
}

#[async_trait]
impl Sink for CachedSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn position(&self) -> Result<u64, SinkError> {
        self.inner.position().await
    }
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        self.inner.apply(events).await?;
        self.cache.invalidate(&ReadCache::keys_changed_by(events)).await;
        Ok(())
    }
    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        self.inner.canonical_rows().await
    }
}
