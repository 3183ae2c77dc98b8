//! The flags `serve`, `demo` and `replay` share: where the journal and the read models live, and how
//! the actors behave.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actors::cafe::PaymentPolicy;
use actors::host::HostOptions;
use clap::Args;
use events::postgres::{PgOptions, PgSecurity, PgTls};
use events::secret::Password;
use events::tls::SslMode;
use gateways::node::{NodeSettings, Storage};
use projections::read_models::cache::CacheSettings;

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
    /// TLS to the journal's PostgreSQL, as libpq's sslmode: disable, prefer, require, verify-ca,
    /// verify-full (default: the URL's `sslmode`, else `prefer` on a loopback host and
    /// `verify-full` anywhere else).
    #[arg(long, env = "CLOUDCAFE_PG_SSLMODE")]
    pub pg_sslmode: Option<SslMode>,
    /// The CA bundle (PEM) the journal server's certificate must chain to, e.g. the RDS global
    /// bundle (default: the URL's `sslrootcert`, else the system's roots).
    #[arg(long, env = "CLOUDCAFE_PG_SSL_ROOT_CERT")]
    pub pg_ssl_root_cert: Option<PathBuf>,
    /// A file whose first line is the journal's database password (a mounted secret). Without it,
    /// the environment variable CLOUDCAFE_PG_PASSWORD (as ECS injects a Secrets Manager value),
    /// else the URL's password.
    #[arg(long, env = "CLOUDCAFE_PG_PASSWORD_FILE", value_parser = password_file)]
    pub pg_password_file: Option<Password>,
    /// The journal's password is an IAM database authentication token (Aurora, RDS), made at every
    /// new connection with the AWS credentials of the default chain (the ECS task role) for the
    /// URL's user (`GRANT rds_iam TO user`); TLS is required. Needs a build with `--features cloud`.
    #[arg(long, env = "CLOUDCAFE_PG_IAM_AUTH", conflicts_with = "pg_password_file")]
    pub pg_iam_auth: bool,
    /// Payments whose fraud score (uniform in [0,1)) is at or above this are declined.
    #[arg(long, default_value_t = 0.95)]
    pub decline_threshold: f64,
    /// SHA-256 rounds per fraud score.
    #[arg(long, default_value_t = 1000)]
    pub fraud_rounds: u32,
    /// Seconds a ready order waits at the counter before the pickup timer abandons it.
    #[arg(long, env = "CLOUDCAFE_PICKUP_WINDOW_SECS", default_value_t = actors::cafe::DEFAULT_PICKUP_WINDOW.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub pickup_window_secs: u64,
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
    /// TLS to the `--analytics-url` cluster, as `--pg-sslmode` (without `--analytics-url` the
    /// journal's settings apply).
    #[arg(long, env = "CLOUDCAFE_ANALYTICS_SSLMODE")]
    pub analytics_sslmode: Option<SslMode>,
    /// The CA bundle (PEM) of the `--analytics-url` cluster.
    #[arg(long, env = "CLOUDCAFE_ANALYTICS_SSL_ROOT_CERT")]
    pub analytics_ssl_root_cert: Option<PathBuf>,
    /// A file holding the `--analytics-url` cluster's password; else CLOUDCAFE_ANALYTICS_PASSWORD.
    #[arg(long, env = "CLOUDCAFE_ANALYTICS_PASSWORD_FILE", value_parser = password_file)]
    pub analytics_password_file: Option<Password>,
    /// Redis (ElastiCache) in front of the menu and loyalty read models, e.g. redis://127.0.0.1:6379,
    /// or rediss://host:6379 for TLS (ElastiCache in transit encryption, MemoryDB).
    #[arg(long, env = "CLOUDCAFE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The CA bundle (PEM) a rediss:// server's certificate must chain to (default: the system's roots).
    #[arg(long, env = "CLOUDCAFE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// A file holding the Redis AUTH token; else CLOUDCAFE_REDIS_PASSWORD, else the URL's.
    #[arg(long, env = "CLOUDCAFE_REDIS_PASSWORD_FILE", value_parser = password_file)]
    pub redis_password_file: Option<Password>,
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
    /// The CA bundle (PEM) of the DocumentDB cluster (the RDS global bundle); turns TLS on.
    #[arg(long, env = "CLOUDCAFE_DOCUMENTDB_CA_FILE")]
    pub documentdb_ca_file: Option<PathBuf>,
    /// A file whose first line is the DocumentDB user's password. Without it, the environment
    /// variable CLOUDCAFE_DOCUMENTDB_PASSWORD, else the URL's password.
    #[arg(long, env = "CLOUDCAFE_DOCUMENTDB_PASSWORD_FILE", value_parser = password_file)]
    pub documentdb_password_file: Option<Password>,
}

impl StorageArgs {
    /// The DocumentDB password given apart from the URL, if any.
    #[cfg_attr(not(feature = "cloud"), allow(dead_code))] // only a build with DocumentDB reads it
    pub fn documentdb_password(&self) -> Option<Password> {
        self.documentdb_password_file.clone().or_else(|| password_from_env(DOCUMENTDB_PASSWORD_ENV))
    }
}

/// `--*-password-file`: the password itself, read once when the flags are parsed. The error names
/// the file, never what is in it.
fn password_file(path: &str) -> Result<Password, String> {
    Password::from_file(Path::new(path)).map_err(|e| format!("cannot read the password file {path}: {e}"))
}

/// The environment variables that carry a secret's value itself (as ECS injects Secrets Manager
/// values), not a flag's: the stores' passwords here and the token signing key (`cli/auth.rs`).
pub const PG_PASSWORD_ENV: &str = "CLOUDCAFE_PG_PASSWORD";
pub const ANALYTICS_PASSWORD_ENV: &str = "CLOUDCAFE_ANALYTICS_PASSWORD";
pub const REDIS_PASSWORD_ENV: &str = "CLOUDCAFE_REDIS_PASSWORD";
pub const DOCUMENTDB_PASSWORD_ENV: &str = "CLOUDCAFE_DOCUMENTDB_PASSWORD";
#[cfg_attr(not(all(test, feature = "cloud")), allow(dead_code))] // the deployment test reads it
pub const SECRET_ENV: &[&str] =
    &[PG_PASSWORD_ENV, ANALYTICS_PASSWORD_ENV, REDIS_PASSWORD_ENV, DOCUMENTDB_PASSWORD_ENV, super::auth::AUTH_KEY_ENV];

/// A password from the environment (`var`), as ECS injects Secrets Manager values; empty is none.
fn password_from_env(var: &str) -> Option<Password> {
    std::env::var(var).ok().filter(|v| !v.is_empty()).map(Password::new)
}

impl StorageArgs {
    /// The node these flags describe (without the DynamoDB and DocumentDB models: see
    /// [`super::cloud::CloudModels::open`]).
    pub fn settings(&self) -> NodeSettings {
        let storage = match &self.journal {
            Some(url) => {
                Storage::Postgres { url: url.clone(), schema: self.pg_schema.clone(), security: self.pg_security() }
            }
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
            pickup_window: Duration::from_secs(self.pickup_window_secs),
            actor_threads: 2,
            seed_demo: !self.no_seed,
            analytics: match (&self.analytics_url, &self.journal) {
                (Some(url), _) => Some(PgOptions::new(url.clone()).with_security(self.analytics_security())),
                // Beside the journal's schema, so that two journals in one database keep two models.
                (None, Some(journal)) => Some(
                    PgOptions::new(journal.clone())
                        .with_schema(match &self.pg_schema {
                            Some(schema) => format!("{schema}_analytics"),
                            None => "cloudcafe_analytics".to_owned(),
                        })
                        .with_security(self.pg_security()),
                ),
                (None, None) => None,
            },
            analytics_from_stream: false,
            cache: self.redis_url.clone().map(|url| {
                let settings = CacheSettings {
                    ca_file: self.redis_ca_file.clone(),
                    password: self.redis_password_file.clone().or_else(|| password_from_env(REDIS_PASSWORD_ENV)),
                    ..CacheSettings::default()
                };
                (url, settings)
            }),
            extra_projections: Vec::new(),
        }
    }

    /// TLS and the password of the journal's PostgreSQL.
    pub fn pg_security(&self) -> PgSecurity {
        PgSecurity {
            tls: PgTls { mode: self.pg_sslmode, ca_file: self.pg_ssl_root_cert.clone() },
            password: self.pg_password_file.clone().or_else(|| password_from_env(PG_PASSWORD_ENV)),
            password_source: super::cloud::pg_password_source(self),
        }
    }

    /// TLS and the password of the `--analytics-url` cluster.
    fn analytics_security(&self) -> PgSecurity {
        PgSecurity {
            tls: PgTls { mode: self.analytics_sslmode, ca_file: self.analytics_ssl_root_cert.clone() },
            password: self.analytics_password_file.clone().or_else(|| password_from_env(ANALYTICS_PASSWORD_ENV)),
            password_source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        storage: StorageArgs,
    }

    fn parse(args: &[&str]) -> Result<StorageArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("cloudcafe").chain(args.iter().copied())).map(|cli| cli.storage)
    }

    #[test]
    fn tls_flags_and_a_password_file_fill_the_typed_settings() {
        let file = std::env::temp_dir().join(format!("cc-pg-password-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, "s3cret\n").unwrap();
        let args = parse(&[
            "--journal",
            "postgres://app@db.example.com/cafe",
            "--pg-sslmode",
            "verify-full",
            "--pg-ssl-root-cert",
            "/certs/global-bundle.pem",
            "--pg-password-file",
            file.to_str().unwrap(),
            "--redis-url",
            "rediss://cache.example.com:6379",
            "--redis-ca-file",
            "/certs/redis-ca.pem",
        ])
        .unwrap();
        std::fs::remove_file(&file).unwrap();
        let settings = args.settings();
        let journal = settings.storage.pg_options().unwrap();
        let tls = PgTls { mode: Some(SslMode::VerifyFull), ca_file: Some("/certs/global-bundle.pem".into()) };
        assert_eq!(journal.security.tls, tls);
        assert_eq!(journal.security.password.as_ref().map(Password::expose), Some("s3cret"));
        // The analytics model in the journal's database is reached the same way.
        assert_eq!(settings.analytics.unwrap().security, journal.security);
        let (_, cache) = settings.cache.unwrap();
        assert_eq!(cache.ca_file.as_deref(), Some(Path::new("/certs/redis-ca.pem")));
        assert!(!format!("{:?} {journal:?}", settings.storage).contains("s3cret"));
    }

    #[test]
    fn a_password_in_the_url_is_not_logged() {
        let args = parse(&["--journal", "postgres://app:hunter2@db.example.com/cafe"]).unwrap();
        let shown = format!("{:?}", args.settings().storage);
        assert!(shown.contains("app:***@db.example.com") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_bad_sslmode_or_an_unreadable_password_file_is_refused() {
        let e = parse(&["--pg-sslmode", "verify"]).err().unwrap().to_string();
        assert!(e.contains("verify-full"), "{e}");
        let e = parse(&["--pg-password-file", "/nonexistent/password"]).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/password"), "{e}");
    }

    #[test]
    fn a_password_can_come_from_the_environment() {
        let var = format!("CLOUDCAFE_TEST_PASSWORD_{}", uuid::Uuid::new_v4().simple());
        assert_eq!(password_from_env(&var), None);
        std::env::set_var(&var, "from-secrets-manager");
        assert_eq!(password_from_env(&var).as_ref().map(Password::expose), Some("from-secrets-manager"));
        std::env::remove_var(&var);
    }
}
