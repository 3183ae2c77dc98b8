//! The flags that say how a node checks bearer tokens (`serve`, `cluster up`), and where the local
//! signing key is (`token issue`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use gateways::auth::jwks::Jwks;
use gateways::auth::token::{DEFAULT_AUDIENCE, LOCAL_ISSUER};
use gateways::auth::{LocalKey, Verifier};

/// Whether the API checks tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Bearer tokens (JWT) on every route but the open ones.
    Jwt,
    /// Every route open: only for quick local experiments, refused unless the node listens on a
    /// loopback address.
    Off,
}

/// The environment variable that may hold the signing key itself (PKCS#8 PEM), as ECS injects a
/// Secrets Manager value: every task of a deployment verifies with the same key. It takes precedence
/// over --auth-key-file.
pub const AUTH_KEY_ENV: &str = "CLOUDCAFE_AUTH_KEY";

/// Where the local signing key is.
#[derive(Args, Clone, Debug)]
pub struct KeyArgs {
    /// The local signing key (Ed25519, PKCS#8 PEM), made at the node's first start. Default:
    /// `<data dir>/auth/signing-key.pem`.
    #[arg(long, env = "CLOUDCAFE_AUTH_KEY_FILE")]
    pub auth_key_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        self.auth_key_file.clone().unwrap_or_else(|| data_dir.join("auth").join("signing-key.pem"))
    }

    /// Whether the key is given in the environment ([`AUTH_KEY_ENV`] set and not blank).
    pub fn is_in_env() -> bool {
        Self::env_pem().is_some()
    }

    fn env_pem() -> Option<String> {
        std::env::var(AUTH_KEY_ENV).ok().filter(|pem| !pem.trim().is_empty())
    }

    /// The key given in the environment ([`AUTH_KEY_ENV`]), if any.
    pub fn given_in_env(&self) -> anyhow::Result<Option<LocalKey>> {
        Self::env_pem()
            .map(|pem| {
                LocalKey::from_pem(&pem)
                    .ok_or_else(|| anyhow::anyhow!("{AUTH_KEY_ENV} does not hold an Ed25519 key as PKCS#8 PEM"))
            })
            .transpose()
    }

    /// The key: the environment's, else the file's (made there first if absent).
    pub fn load_or_create(&self, data_dir: &Path) -> anyhow::Result<LocalKey> {
        match self.given_in_env()? {
            Some(key) => Ok(key),
            None => Ok(LocalKey::load_or_create(&self.path(data_dir))?),
        }
    }
}

/// How a node checks bearer tokens.
#[derive(Args, Clone, Debug)]
pub struct AuthArgs {
    /// `jwt`: every route but the menu listing, the health checks, `/metrics` and `/openapi.json`
    /// needs a bearer token; `off`: all open (loopback only).
    #[arg(long, value_enum, env = "CLOUDCAFE_AUTH", default_value_t = AuthMode::Jwt)]
    pub auth: AuthMode,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Verify tokens with the keys this JWKS URL publishes (Amazon Cognito:
    /// `https://cognito-idp.<region>.amazonaws.com/<user pool id>/.well-known/jwks.json`) instead of
    /// the local key. Needs --jwt-issuer.
    #[arg(long, env = "CLOUDCAFE_JWKS_URL", requires = "jwt_issuer")]
    pub jwks_url: Option<String>,
    /// A CA bundle (PEM) to trust for the JWKS URL besides the system's.
    #[arg(long, env = "CLOUDCAFE_JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,
    /// The `iss` a token must have with --jwks-url (Cognito: `https://cognito-idp.<region>.amazonaws.com/<pool>`).
    #[arg(long, env = "CLOUDCAFE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` a token must have (Cognito ID tokens: the app client's id).
    #[arg(long, env = "CLOUDCAFE_JWT_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
}

impl AuthArgs {
    /// The verifier these flags describe (`None`: `--auth off`), for a node listening on `listen`.
    pub fn verifier(&self, data_dir: &Path, listen: SocketAddr) -> anyhow::Result<Option<Arc<Verifier>>> {
        match self.auth {
            AuthMode::Off if !listen.ip().is_loopback() => anyhow::bail!(
                "--auth off leaves every route open: it is refused unless the node listens on a loopback address (not {listen})"
            ),
            AuthMode::Off => Ok(None),
            AuthMode::Jwt => match (&self.jwks_url, &self.jwt_issuer) {
                (Some(url), Some(issuer)) => {
                    let jwks = Jwks::new(url, self.jwks_ca_file.as_deref()).context("refusing --jwks-url")?;
                    Ok(Some(Arc::new(Verifier::published(jwks, issuer, &self.jwt_audience))))
                }
                (Some(_), None) => anyhow::bail!("--jwks-url needs --jwt-issuer"),
                (None, _) => {
                    let key = self.key.load_or_create(data_dir)?;
                    if self.jwt_issuer.as_deref().is_some_and(|i| i != LOCAL_ISSUER) {
                        anyhow::bail!("the local key issues tokens as `{LOCAL_ISSUER}`; --jwt-issuer is for --jwks-url");
                    }
                    Ok(Some(Arc::new(Verifier::local(&key, &self.jwt_audience))))
                }
            },
        }
    }
}

/// How often a caller may ask.
#[derive(Args, Clone, Debug)]
pub struct RateLimitArgs {
    /// A class's limit, `CLASS=RATE[:BURST]` (requests a second, and how many at once) or
    /// `CLASS=off`; the classes are `customer`, `staff`, `admin` (per token subject) and `anonymous`
    /// (per client address, for requests without a valid token). Repeatable. Defaults:
    /// customer=10:20, staff=50:100, admin=off, anonymous=100:200.
    #[arg(long = "rate-limit", env = "CLOUDCAFE_RATE_LIMITS", value_delimiter = ',')]
    pub rate_limits: Vec<String>,
    /// No rate limits at all.
    #[arg(long, conflicts_with = "rate_limits")]
    pub no_rate_limits: bool,
    /// The client's address is the last `X-Forwarded-For` entry, as the ALB appends it (only behind
    /// a balancer that does: otherwise a client could choose its own address).
    #[arg(long, env = "CLOUDCAFE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

impl RateLimitArgs {
    /// The limiter: its buckets in the node's Redis when it has one (`cache`), shared by every node,
    /// else in the process.
    pub fn limiter(
        &self,
        cache: Option<&(String, projections::read_models::cache::CacheSettings)>,
    ) -> anyhow::Result<Option<Arc<gateways::rate_limit::RateLimiter>>> {
        use gateways::rate_limit::{redis::RedisBuckets, RateLimiter, RateLimits};
        if self.no_rate_limits {
            return Ok(None);
        }
        let mut limits = RateLimits::default();
        for spec in &self.rate_limits {
            limits.set(spec).map_err(|e| anyhow::anyhow!("--rate-limit {e}"))?;
        }
        let limiter = match cache {
            Some((url, settings)) => {
                let client = projections::read_models::cache::open_redis(url, settings)?;
                let buckets = Arc::new(RedisBuckets::new(client, &settings.namespace));
                // A request waits at most this for Redis before the node's own buckets decide.
                RateLimiter::shared(limits, buckets, std::time::Duration::from_millis(50))
            }
            None => RateLimiter::local(limits),
        };
        Ok(Some(Arc::new(limiter)))
    }
}
