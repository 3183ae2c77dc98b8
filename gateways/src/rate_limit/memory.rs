//! Token buckets in this process: the embedded node's, and every node's when Redis does not answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{BucketError, Buckets, Decision, Limit};

struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the bucket is full again if nobody takes from it: past this it can be forgotten.
    full_at: Instant,
}

/// Buckets in a map, forgetting those that have refilled (a client gone quiet) once the map grows,
/// so that a flood of client addresses cannot grow it without bound.
pub struct MemoryBuckets {
    buckets: Mutex<(HashMap<String, Bucket>, usize)>,
}

impl Default for MemoryBuckets {
    fn default() -> Self {
        MemoryBuckets { buckets: Mutex::new((HashMap::new(), 10_000)) }
    }
}

impl MemoryBuckets {
    /// How many buckets are held.
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("buckets").0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The decision for `key` at `now` (the clock is a parameter for the tests).
    pub fn take_at(&self, key: &str, limit: Limit, now: Instant) -> Decision {
        let mut guard = self.buckets.lock().expect("buckets");
        let (buckets, sweep_at) = &mut *guard;
        if buckets.len() >= *sweep_at {
            buckets.retain(|_, b| b.full_at > now);
            *sweep_at = (buckets.len() * 2).max(10_000);
        }
        let burst = f64::from(limit.burst);
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, at: now, full_at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.rate).min(burst);
        bucket.at = now;
        let decision = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed
        } else {
            Decision::Limited(Duration::from_secs_f64((1.0 - bucket.tokens) / limit.rate))
        };
        bucket.full_at = now + Duration::from_secs_f64((burst - bucket.tokens) / limit.rate);
        decision
    }
}

#[async_trait]
impl Buckets for MemoryBuckets {
    async fn take(&self, key: &str, limit: Limit) -> Result<Decision, BucketError> {
        Ok(self.take_at(key, limit, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_process_buckets_conform() {
        super::super::conformance::run(&MemoryBuckets::default(), "memory").await;
    }

    #[test]
    fn buckets_of_quiet_clients_are_forgotten_once_the_map_grows() {
        let buckets = MemoryBuckets::default();
        let limit = Limit { rate: 1000.0, burst: 1 };
        let start = Instant::now();
        for i in 0..10_000 {
            buckets.take_at(&format!("ip:{i}"), limit, start);
        }
        assert_eq!(buckets.len(), 10_000);
        // A second later every one of them is full again: the next new client sweeps them out.
        buckets.take_at("ip:new", limit, start + Duration::from_secs(1));
        assert_eq!(buckets.len(), 1);
    }
}
