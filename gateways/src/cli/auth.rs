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
                    let path = self.key.path(data_dir);
                    let key = LocalKey::load_or_create(&path)?;
                    if self.jwt_issuer.as_deref().is_some_and(|i| i != LOCAL_ISSUER) {
                        anyhow::bail!("the local key issues tokens as `{LOCAL_ISSUER}`; --jwt-issuer is for --jwks-url");
                    }
                    Ok(Some(Arc::new(Verifier::local(&key, &self.jwt_audience))))
                }
            },
        }
    }
}
