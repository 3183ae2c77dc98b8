//! The flags `serve`, `demo` and `replay` share: where the journal and the read models live, and how
//! the actors behave.

use std::path::PathBuf;
use std::time::Duration;

use actors::cafe::PaymentPolicy;
use actors::host::HostOptions;
use clap::Args;
use events::postgres::PgOptions;
use gateways::node::{NodeSettings, Storage};

/// Where the journal and the read models of a node live, and how its actors behave.
#[derive(Args, Clone)]
pub struct StorageArgs {
    /// Directory of the embedded journal and read model.
    #[arg(long, env = "CLOUDCAFE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (postgres://user@host:port/db) to use instead of the embedded files.
    #[arg(long, env = "CLOUDCAFE_JOURNAL")]
    pub journal: Option<String>,
    /// Schema for the PostgreSQL tables (default: the connection's search_path).
    #[arg(long, env = "CLOUDCAFE_PG_SCHEMA")]
    pub pg_schema: Option<String>,
    /// Payments whose fraud score (uniform in [0,1)) is at or above this are declined.
    #[arg(long, default_value_t = 0.95)]
    pub decline_threshold: f64,
    /// SHA-256 rounds per fraud score.
    #[arg(long, default_value_t = 1000)]
    pub fraud_rounds: u32,
    /// Snapshot a stream every N events (0: never).
    #[arg(long, default_value_t = 100)]
    pub snapshot_every: u64,
    /// Seconds an idle actor stays in memory.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Commands queued per actor before 503.
    #[arg(long, default_value_t = 256)]
    pub mailbox: usize,
    /// Do not publish the demo menu and stock into an empty journal.
    #[arg(long)]
    pub no_seed: bool,
    /// The Redshift cluster for the analytics model (PostgreSQL wire protocol URL). With a PostgreSQL
    /// journal and no URL, the journal's database is used, schema `{pg-schema}_analytics` (or
    /// `cloudcafe_analytics`).
    #[arg(long, env = "CLOUDCAFE_ANALYTICS_URL")]
    pub analytics_url: Option<String>,
    /// Redis (ElastiCache) in front of the menu and loyalty read models, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "CLOUDCAFE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Keep the DynamoDB read models (active orders, store inventory) in tables `cloudcafe-*-ENV`.
    /// Needs a build with `--features cloud`.
    #[arg(long, env = "CLOUDCAFE_DYNAMODB_ENV")]
    pub dynamodb_env: Option<String>,
    /// A DynamoDB endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,
    /// Keep the DocumentDB read models (menu, order documents) at this MongoDB-wire URI, database
    /// `cloudcafe`. Needs a build with `--features cloud`.
    #[arg(long, env = "CLOUDCAFE_DOCUMENTDB_URL")]
    pub documentdb_url: Option<String>,
}

impl StorageArgs {
    /// The node these flags describe (without the DynamoDB and DocumentDB models: see
    /// [`super::cloud::CloudModels::open`]).
    pub fn settings(&self) -> NodeSettings {
        let storage = match &self.journal {
            Some(url) => Storage::Postgres { url: url.clone(), schema: self.pg_schema.clone() },
            None => Storage::Embedded { data_dir: self.data_dir.clone() },
        };
        NodeSettings {
            storage,
            host: HostOptions {
                snapshot_every: self.snapshot_every,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
                mailbox_capacity: self.mailbox.max(1),
                ..HostOptions::default()
            },
            payment: PaymentPolicy {
                decline_threshold: self.decline_threshold,
                fraud_rounds: self.fraud_rounds,
                ..PaymentPolicy::default()
            },
            actor_threads: 2,
            seed_demo: !self.no_seed,
            analytics: match (&self.analytics_url, &self.journal) {
                (Some(url), _) => Some(PgOptions::new(url.clone())),
                // Beside the journal's schema, so that two journals in one database keep two models.
                (None, Some(journal)) => Some(PgOptions::new(journal.clone()).with_schema(match &self.pg_schema {
                    Some(schema) => format!("{schema}_analytics"),
                    None => "cloudcafe_analytics".to_owned(),
                })),
                (None, None) => None,
            },
            cache: self.redis_url.clone().map(|url| (url, projections::read_models::cache::CacheSettings::default())),
            extra_projections: Vec::new(),
        }
    }
}
