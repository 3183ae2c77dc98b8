//! IAM database authentication for Aurora / RDS PostgreSQL (`serve --pg-iam-auth`): instead of a
//! stored password, each new connection presents a token signed with the task's AWS credentials
//! (SigV4, service `rds-db`, presigned `GET https://HOST:PORT/?Action=connect&DBUser=USER`, valid
//! 15 minutes), as `aws rds generate-db-auth-token` makes it. The pool asks for one at every
//! connection ([`events::postgres::PasswordSource`]), so a token never outlives its use; the
//! credentials come from the SDK's default chain (the ECS task role), which refreshes them itself.
//! The database user needs `GRANT rds_iam TO user`, and the connection must use TLS (Aurora refuses
//! IAM tokens over plain connections).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use events::postgres::PasswordSource;
use events::secret::Password;
use projections::aws::AwsSettings;
use tokio::sync::OnceCell;

/// How long a token is valid (the most RDS allows).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum IamAuthError {
    #[error("IAM authentication needs the journal URL's host and user (postgres://USER@HOST:PORT/DB)")]
    Incomplete,
    #[error("no AWS region for IAM authentication (set AWS_REGION)")]
    NoRegion,
    #[error("no AWS credentials for IAM authentication")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("cannot sign the IAM authentication token")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where a token is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Endpoint {
    /// The host, port and user of a PostgreSQL URL (`postgres://USER@HOST:PORT/DB` or `key=value`).
    pub fn of_url(url: &str) -> Result<Endpoint, IamAuthError> {
        let config: tokio_postgres::Config = url.parse().map_err(|_| IamAuthError::Incomplete)?;
        let host = config
            .get_hosts()
            .iter()
            .find_map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => Some(name.clone()),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(_) => None,
            })
            .ok_or(IamAuthError::Incomplete)?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().ok_or(IamAuthError::Incomplete)?.to_owned();
        Ok(Endpoint { host, port, user })
    }
}

/// The token for `endpoint` in `region`, signed with `credentials` at `time`.
pub fn token(
    endpoint: &Endpoint,
    region: &str,
    credentials: Credentials,
    time: SystemTime,
) -> Result<String, IamAuthError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
    use aws_sigv4::sign::v4;
    let sign_error = |e: Box<dyn std::error::Error + Send + Sync>| IamAuthError::Sign(e);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| sign_error(Box::new(e)))?
        .into();
    let user: String = url_encode(&endpoint.user);
    let url = format!("https://{}:{}/?Action=connect&DBUser={user}", endpoint.host, endpoint.port);
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| sign_error(Box::new(e)))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| sign_error(Box::new(e)))?.into_parts();
    let mut request = http::Request::builder().uri(&url).body(()).map_err(|e| sign_error(Box::new(e)))?;
    instructions.apply_to_request_http1x(&mut request);
    let uri = request.uri().to_string();
    Ok(uri.strip_prefix("https://").unwrap_or(&uri).to_owned())
}

/// RFC 3986 unreserved characters as they are; every other byte as `%XX`.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tokens for one database user, with the SDK's default credentials (loaded on first use).
pub struct RdsIamAuth {
    endpoint: Result<Endpoint, String>,
    aws: AwsSettings,
    sdk: OnceCell<aws_types::SdkConfig>,
}

impl RdsIamAuth {
    /// Tokens for the journal at `url`. A URL without a host or user fails at the first connection,
    /// with the reason in the log.
    pub fn for_url(url: &str, aws: AwsSettings) -> Self {
        RdsIamAuth { endpoint: Endpoint::of_url(url).map_err(|e| e.to_string()), aws, sdk: OnceCell::new() }
    }

    async fn current(&self) -> Result<String, IamAuthError> {
        let endpoint = self.endpoint.as_ref().map_err(|_| IamAuthError::Incomplete)?;
        let sdk = self.sdk.get_or_init(|| self.aws.sdk_config()).await;
        let region = sdk.region().ok_or(IamAuthError::NoRegion)?.to_string();
        let provider = sdk.credentials_provider().ok_or(IamAuthError::Credentials(
            aws_credential_types::provider::error::CredentialsError::not_loaded("no credentials provider"),
        ))?;
        let credentials = provider.provide_credentials().await.map_err(IamAuthError::Credentials)?;
        token(endpoint, &region, credentials, SystemTime::now())
    }
}

#[async_trait]
impl PasswordSource for RdsIamAuth {
    async fn password(&self) -> Result<Password, events::Cause> {
        self.current().await.map(Password::new).map_err(|e| std::sync::Arc::new(e) as events::Cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::hmac;

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
    }

    /// SigV4 query signing written out from AWS's specification, to check the token against.
    fn expected_signature(
        query_without_signature: &str,
        host_port: &str,
        secret: &str,
        date: &str,
        stamp: &str,
    ) -> String {
        let canonical =
            format!("GET\n/\n{query_without_signature}\nhost:{host_port}\n\nhost\n{}", hex::encode(sha2_256(b"")));
        let scope = format!("{date}/us-east-1/rds-db/aws4_request");
        let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex::encode(sha2_256(canonical.as_bytes())));
        let k = hmac(format!("AWS4{secret}").as_bytes(), date);
        let k = hmac(&k, "us-east-1");
        let k = hmac(&k, "rds-db");
        let k = hmac(&k, "aws4_request");
        hex::encode(hmac(&k, &to_sign))
    }

    fn sha2_256(data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(data).to_vec()
    }

    #[test]
    fn a_token_is_the_presigned_connect_request_aws_specifies() {
        let endpoint =
            Endpoint::of_url("postgres://cafe@cafe.cluster-xyz.us-east-1.rds.amazonaws.com:5432/cafe").unwrap();
        assert_eq!(endpoint.user, "cafe");
        let credentials =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600); // 2027-01-01T00:00:00Z
        let token = token(&endpoint, "us-east-1", credentials, time).unwrap();
        let (host_port, query) = token.split_once("/?").unwrap();
        assert_eq!(host_port, "cafe.cluster-xyz.us-east-1.rds.amazonaws.com:5432");
        let (unsigned, signature) = query.rsplit_once("&X-Amz-Signature=").unwrap();
        assert_eq!(
            unsigned,
            "Action=connect&DBUser=cafe&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20270101%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20270101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
        );
        let expected = expected_signature(
            unsigned,
            host_port,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20270101",
            "20270101T000000Z",
        );
        assert_eq!(signature, expected);
    }

    #[test]
    fn a_url_without_a_user_or_a_tcp_host_cannot_have_a_token() {
        assert!(Endpoint::of_url("postgres://db.example.com/cafe").is_err());
        assert!(Endpoint::of_url("host=/var/run/postgresql user=cafe").is_err());
    }
}
