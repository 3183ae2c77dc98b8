//! Token buckets in Redis (ElastiCache, MemoryDB), shared by every node: one Lua script per request
//! refills and takes atomically, on the Redis server's clock (`TIME`), so that nodes whose clocks
//! differ still agree. A bucket is a hash `<namespace>:rl:<key>` of `tokens` and `ms`, expiring once
//! it would be full again.

use std::sync::RwLock;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::Script;

use super::{BucketError, Buckets, Decision, Limit};

const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return wait
";

/// Buckets in one Redis server (or cluster endpoint), over one multiplexed connection that is made
/// again after a failure.
pub struct RedisBuckets {
    client: redis::Client,
    namespace: String,
    connection: RwLock<Option<MultiplexedConnection>>,
    script: Script,
}

impl RedisBuckets {
    /// Buckets under `namespace` in the Redis `client` opens (connected on first use).
    pub fn new(client: redis::Client, namespace: &str) -> Self {
        RedisBuckets {
            client,
            namespace: namespace.to_owned(),
            connection: RwLock::new(None),
            script: Script::new(TAKE),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        if let Some(c) = self.connection.read().expect("connection").clone() {
            return Ok(c);
        }
        let c = self.client.get_multiplexed_async_connection().await?;
        *self.connection.write().expect("connection") = Some(c.clone());
        Ok(c)
    }
}

#[async_trait]
impl Buckets for RedisBuckets {
    async fn take(&self, key: &str, limit: Limit) -> Result<Decision, BucketError> {
        let store = |e: redis::RedisError| BucketError::Store(Box::new(e));
        let mut connection = self.connection().await.map_err(store)?;
        let answer: Result<u64, _> = self
            .script
            .key(format!("{}:rl:{key}", self.namespace))
            .arg(limit.rate)
            .arg(limit.burst)
            .invoke_async(&mut connection)
            .await;
        match answer {
            Ok(0) => Ok(Decision::Allowed),
            Ok(ms) => Ok(Decision::Limited(std::time::Duration::from_millis(ms))),
            Err(e) => {
                // Made again on the next request: the connection may be what broke.
                *self.connection.write().expect("connection") = None;
                Err(store(e))
            }
        }
    }
}
