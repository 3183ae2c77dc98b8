//! Rate limits: a token bucket per caller — per token subject for signed-in callers (with their
//! role's limit), per client address for everyone else — so that one client cannot take a node's
//! (or the fleet's) capacity from the others.
//!
//! - [`Buckets`] is the port: take one token from the bucket `key`, refilled at `rate` per second up
//!   to `burst`. [`memory::MemoryBuckets`] keeps them in the process (the embedded node, and every
//!   node's fallback); [`redis::RedisBuckets`] keeps them in Redis (ElastiCache, MemoryDB), one
//!   atomic script per request on the server's clock, shared by every node. One conformance suite
//!   ([`conformance`]) runs over both.
//! - [`RateLimiter`] picks the bucket and the limit, and asks the shared buckets with a deadline. When
//!   Redis does not answer in time, the node's own buckets decide instead (each node then allows the
//!   limit on its own: with N nodes a client gets up to N times its limit until Redis is back) and
//!   `rate_limit_fallbacks_total` counts it. Refusing every request because the limiter's store is
//!   down would turn a cache outage into a full outage; allowing every request would leave the
//!   nodes unprotected exactly when a store is failing.
//!
//! Over the limit the API answers 429 with `Retry-After`.

pub mod conformance;
pub mod memory;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::auth::{Principal, Role};

/// A token bucket's shape: `rate` tokens a second, holding at most `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: u32,
}

impl Limit {
    /// `RATE[:BURST]` (a burst of twice the rate unless given).
    pub fn parse(text: &str) -> Result<Limit, String> {
        let (rate, burst) = match text.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (text, None),
        };
        let rate: f64 = rate.trim().parse().map_err(|_| format!("`{text}`: the rate is not a number"))?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("`{text}`: the rate must be above 0"));
        }
        let burst = match burst {
            Some(b) => b.trim().parse().map_err(|_| format!("`{text}`: the burst is not a whole number"))?,
            None => (rate * 2.0).ceil().max(1.0) as u32,
        };
        if burst == 0 {
            return Err(format!("`{text}`: the burst must be at least 1"));
        }
        Ok(Limit { rate, burst })
    }
}

/// What a bucket said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: the next token is there after this long.
    Limited(Duration),
}

/// Why the shared buckets did not decide.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("the rate limit store did not answer")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Token buckets, by key.
#[async_trait]
pub trait Buckets: Send + Sync {
    /// Takes one token from bucket `key` of shape `limit`.
    async fn take(&self, key: &str, limit: Limit) -> Result<Decision, BucketError>;
}

/// Each class of caller's limit; `None`: unlimited.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    pub customer: Option<Limit>,
    pub staff: Option<Limit>,
    pub admin: Option<Limit>,
    /// Per client address, for requests without a verified token.
    pub anonymous: Option<Limit>,
}

impl Default for RateLimits {
    /// A person at a till or on an app sends a few requests a second; staff tools more. Admins (the
    /// operators, the floods and experiments driving the fleet) are not limited.
    fn default() -> Self {
        RateLimits {
            customer: Some(Limit { rate: 10.0, burst: 20 }),
            staff: Some(Limit { rate: 50.0, burst: 100 }),
            admin: None,
            anonymous: Some(Limit { rate: 100.0, burst: 200 }),
        }
    }
}

impl RateLimits {
    /// Sets one class from `CLASS=RATE[:BURST]` or `CLASS=off`.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (class, value) = spec.split_once('=').ok_or_else(|| format!("`{spec}` is not CLASS=RATE[:BURST]"))?;
        let limit = if value.trim() == "off" { None } else { Some(Limit::parse(value)?) };
        match class.trim() {
            "customer" => self.customer = limit,
            "staff" => self.staff = limit,
            "admin" => self.admin = limit,
            "anonymous" => self.anonymous = limit,
            other => return Err(format!("`{other}`: the classes are customer, staff, admin, anonymous")),
        }
        Ok(())
    }
}

/// Who a request is, for the limiter.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    Signed(&'a Principal),
    Anonymous(IpAddr),
}

impl Caller<'_> {
    fn class(&self) -> &'static str {
        match self {
            Caller::Signed(p) => p.role.as_str(),
            Caller::Anonymous(_) => "anonymous",
        }
    }
}

/// The limiter a node asks once per request.
pub struct RateLimiter {
    limits: RateLimits,
    shared: Option<Arc<dyn Buckets>>,
    local: memory::MemoryBuckets,
    /// How long the shared buckets may take before the node's own decide.
    deadline: Duration,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("limits", &self.limits).field("shared", &self.shared.is_some()).finish()
    }
}

impl RateLimiter {
    /// Buckets in this process only.
    pub fn local(limits: RateLimits) -> Self {
        Self::register();
        RateLimiter { limits, shared: None, local: memory::MemoryBuckets::default(), deadline: Duration::ZERO }
    }

    /// Buckets in `shared` (Redis), with the node's own as the fallback when it does not answer
    /// within `deadline`.
    pub fn shared(limits: RateLimits, shared: Arc<dyn Buckets>, deadline: Duration) -> Self {
        Self::register();
        RateLimiter { limits, shared: Some(shared), local: memory::MemoryBuckets::default(), deadline }
    }

    fn register() {
        for class in ["customer", "staff", "admin", "anonymous"] {
            events::metric::RATE_LIMITED.register(&[("class", class)]);
        }
        events::metric::RATE_LIMIT_FALLBACKS.register(events::metric::NO_LABELS);
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Takes a token for `caller`.
    pub async fn admit(&self, caller: Caller<'_>) -> Decision {
        let (limit, key) = match caller {
            Caller::Signed(p) => {
                let limit = match p.role {
                    Role::Customer => self.limits.customer,
                    Role::Staff => self.limits.staff,
                    Role::Admin => self.limits.admin,
                };
                (limit, format!("sub:{}:{}", p.role.as_str(), p.subject))
            }
            Caller::Anonymous(ip) => (self.limits.anonymous, format!("ip:{ip}")),
        };
        let Some(limit) = limit else { return Decision::Allowed };
        let decision = match &self.shared {
            None => self.local.take(&key, limit).await,
            Some(shared) => match tokio::time::timeout(self.deadline, shared.take(&key, limit)).await {
                Ok(Ok(decision)) => Ok(decision),
                failed => {
                    events::metric::RATE_LIMIT_FALLBACKS.counter(events::metric::NO_LABELS).increment(1);
                    if let Ok(Err(e)) = failed {
                        tracing::debug!(detail = %events::ErrorChain(&e), "rate limit: Redis failed, the node's own buckets decide");
                    }
                    self.local.take(&key, limit).await
                }
            },
        };
        // The in-process buckets never fail.
        let decision = decision.unwrap_or(Decision::Allowed);
        if let Decision::Limited(_) = decision {
            events::metric::RATE_LIMITED.counter(&[("class", caller.class())]).increment(1);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_operators_write_them() {
        assert_eq!(Limit::parse("10").unwrap(), Limit { rate: 10.0, burst: 20 });
        assert_eq!(Limit::parse("0.5:3").unwrap(), Limit { rate: 0.5, burst: 3 });
        assert!(Limit::parse("0").is_err());
        assert!(Limit::parse("ten").is_err());
        assert!(Limit::parse("5:0").is_err());
        let mut limits = RateLimits::default();
        limits.set("customer=5:5").unwrap();
        limits.set("anonymous=off").unwrap();
        assert_eq!((limits.customer, limits.anonymous), (Some(Limit { rate: 5.0, burst: 5 }), None));
        assert!(limits.set("root=1").is_err());
        assert!(limits.set("customer").is_err());
    }

    #[tokio::test]
    async fn each_subject_has_its_own_bucket_and_admins_none_by_default() {
        let mut limits = RateLimits::default();
        limits.set("customer=1:2").unwrap();
        let limiter = RateLimiter::local(limits);
        let (alice, bob, ops) = (Principal::customer("alice"), Principal::customer("bob"), Principal::admin("ops"));
        assert_eq!(limiter.admit(Caller::Signed(&alice)).await, Decision::Allowed);
        assert_eq!(limiter.admit(Caller::Signed(&alice)).await, Decision::Allowed);
        assert!(matches!(limiter.admit(Caller::Signed(&alice)).await, Decision::Limited(_)));
        assert_eq!(limiter.admit(Caller::Signed(&bob)).await, Decision::Allowed, "bob is not alice");
        for _ in 0..1000 {
            assert_eq!(limiter.admit(Caller::Signed(&ops)).await, Decision::Allowed);
        }
    }

    /// Buckets that never answer: the node's own decide, and the fallback is counted.
    struct Hung;

    #[async_trait]
    impl Buckets for Hung {
        async fn take(&self, _: &str, _: Limit) -> Result<Decision, BucketError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_store_that_does_not_answer_leaves_the_decision_to_the_node() {
        let mut limits = RateLimits::default();
        limits.set("anonymous=1:1").unwrap();
        let limiter = RateLimiter::shared(limits, Arc::new(Hung), Duration::from_millis(20));
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(limiter.admit(Caller::Anonymous(ip)).await, Decision::Allowed);
        assert!(matches!(limiter.admit(Caller::Anonymous(ip)).await, Decision::Limited(_)), "still limited, per node");
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
