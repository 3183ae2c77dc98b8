//! Cluster singletons: a follower of the journal that one node of a cluster runs at a time.
//!
//! Several `serve` processes share one journal. Each could run every follower (the order saga, the
//! journal-fed projections, the outbox publishers): their effects are idempotent, but the work is
//! repeated once per node, and every publisher would send each event to Kinesis once per node. A
//! follower that holds its singleton lock runs; the others wait and take over when the holder dies.
//!
//! Two adapters, one conformance suite ([`conformance`]):
//! - [`LocalSingletons`], for one process (the embedded default: a SQLite journal has one node);
//! - [`PgSingletons`], a PostgreSQL session-level advisory lock held on a connection of its own, as
//!   Marten's async daemon elects its leader. A holder that dies, even by SIGKILL, closes its socket,
//!   and the server frees the lock at once; a holder whose connection fails learns it from
//!   [`HeldSingleton::still_held`] and must stop.
//!
//! Architecture Invariant: a lock only saves repeated work. Followers stay idempotent, because two
//! holders can overlap for the moment between a connection's loss and its holder's next check.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::postgres::{pg_config, PgOptions};
use crate::tls::PgTlsConnector;
use crate::StoreError;

/// The locks a cluster's nodes share.
#[async_trait]
pub trait SingletonLocks: Send + Sync {
    /// Takes the lock `name` if nobody holds it: `None` while another holder has it. Dropping the
    /// returned guard releases it.
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn HeldSingleton>>, StoreError>;
}

/// A lock this node holds.
#[async_trait]
pub trait HeldSingleton: Send {
    /// False once the lock may have been lost (its connection failed): the holder must stop.
    async fn still_held(&mut self) -> bool;
}

/// Locks within one process; clones share them.
#[derive(Clone, Default)]
pub struct LocalSingletons {
    held: Arc<Mutex<HashSet<String>>>,
}

struct LocalHeld {
    name: String,
    held: Arc<Mutex<HashSet<String>>>,
}

#[async_trait]
impl SingletonLocks for LocalSingletons {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn HeldSingleton>>, StoreError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        Ok(held
            .insert(name.to_owned())
            .then(|| Box::new(LocalHeld { name: name.to_owned(), held: self.held.clone() }) as Box<dyn HeldSingleton>))
    }
}

#[async_trait]
impl HeldSingleton for LocalHeld {
    async fn still_held(&mut self) -> bool {
        true
    }
}

impl Drop for LocalHeld {
    fn drop(&mut self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.name);
    }
}

/// PostgreSQL advisory locks, keyed by the journal's schema and the follower's name, so clusters
/// on different schemas of one server do not contend.
#[derive(Clone)]
pub struct PgSingletons {
    config: tokio_postgres::Config,
    tls: PgTlsConnector,
    password_source: Option<crate::postgres::SharedPasswordSource>,
    scope: String,
    timeout: Duration,
}

impl PgSingletons {
    pub fn new(options: &PgOptions) -> Result<Self, StoreError> {
        let (config, tls) = pg_config(options)?;
        let scope = format!("{}:{}", config.get_dbname().unwrap_or(""), options.schema.as_deref().unwrap_or("public"));
        let password_source = options.security.password_source.clone();
        Ok(PgSingletons { config, tls, password_source, scope, timeout: options.connect_timeout })
    }
}

struct PgHeld {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

/// The two 32-bit keys of `pg_try_advisory_lock(int, int)`: a space of this module's own (the
/// one-key form, which the migrations lock uses, does not overlap it).
const LOCK_SQL: &str = "SELECT pg_try_advisory_lock(hashtext('cloudcafe-singleton'), hashtext($1))";

#[async_trait]
impl SingletonLocks for PgSingletons {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn HeldSingleton>>, StoreError> {
        let unavailable =
            |e: tokio_postgres::Error| StoreError::unavailable_because(format!("singleton lock `{name}`"), e);
        let mut config = self.config.clone();
        if let Some(source) = &self.password_source {
            if let Ok(password) = source.0.password().await {
                config.password(password.expose());
            }
        }
        let (client, connection) = config.connect(self.tls.clone()).await.map_err(unavailable)?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let key = format!("{}:{name}", self.scope);
        let taken: bool = match tokio::time::timeout(self.timeout, client.query_one(LOCK_SQL, &[&key])).await {
            Ok(row) => row.map_err(unavailable)?.get(0),
            Err(_) => return Err(StoreError::unavailable(format!("singleton lock `{name}`: timed out"))),
        };
        if !taken {
            connection.abort();
            return Ok(None);
        }
        Ok(Some(Box::new(PgHeld { client, connection, timeout: self.timeout })))
    }
}

#[async_trait]
impl HeldSingleton for PgHeld {
    async fn still_held(&mut self) -> bool {
        // The lock lives as long as this session: a round trip proves the session is alive.
        matches!(tokio::time::timeout(self.timeout, self.client.simple_query("SELECT 1")).await, Ok(Ok(_)))
    }
}

impl Drop for PgHeld {
    fn drop(&mut self) {
        // Closing the session releases its advisory locks.
        self.connection.abort();
    }
}

/// The suite every adapter passes. `node_a` and `node_b` are two nodes of one cluster.
#[cfg(feature = "conformance")]
pub mod conformance {
    use std::time::{Duration, Instant};

    use super::SingletonLocks;

    pub async fn run_all(node_a: &dyn SingletonLocks, node_b: &dyn SingletonLocks) {
        one_holder_at_a_time(node_a, node_b).await;
        names_are_independent(node_a, node_b).await;
    }

    /// While A holds a lock, B cannot take it; when A lets go, B can.
    pub async fn one_holder_at_a_time(node_a: &dyn SingletonLocks, node_b: &dyn SingletonLocks) {
        let mut held = node_a.try_acquire("order-saga").await.unwrap().expect("a free lock is taken");
        assert!(held.still_held().await);
        assert!(node_b.try_acquire("order-saga").await.unwrap().is_none(), "a second holder");
        assert!(node_a.try_acquire("order-saga").await.unwrap().is_none(), "a second holder on the same node");
        drop(held);
        // A server may free a closed session's locks a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut taken = node_b.try_acquire("order-saga").await.unwrap();
        while taken.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            taken = node_b.try_acquire("order-saga").await.unwrap();
        }
        let mut taken = taken.expect("a released lock is taken by another node");
        assert!(taken.still_held().await);
    }

    /// Locks of different followers do not exclude each other.
    pub async fn names_are_independent(node_a: &dyn SingletonLocks, node_b: &dyn SingletonLocks) {
        let _saga = node_a.try_acquire("saga:independent").await.unwrap().expect("taken");
        let _publisher = node_b.try_acquire("publisher:independent").await.unwrap().expect("another name is free");
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_singletons_pass_the_conformance_suite() {
        let cluster = LocalSingletons::default();
        conformance::run_all(&cluster, &cluster.clone()).await;
    }
}
