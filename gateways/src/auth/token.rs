//! Bearer tokens: JWTs signed by the node's local Ed25519 key ([`LocalKey`], for the embedded node,
//! the cluster and tests) or by an identity provider that publishes a JWKS (Amazon Cognito:
//! [`super::jwks::Jwks`]), verified by one [`Verifier`] into a [`Principal`].
//!
//! What a token must be to pass: at most [`MAX_TOKEN_BYTES`]; a header naming a `kid` the key set
//! holds and exactly that key's algorithm (so an RSA public key is never taken as an HMAC secret,
//! and `alg: none` does not parse at all); a valid signature; `iss` and `aud` as configured; `exp`
//! in the future and `nbf`, when present, in the past (each with [`LEEWAY_SECS`]); a `sub`; and a
//! role, from a `role` claim or, as Cognito writes it, from `cognito:groups` (the highest of
//! `customer`, `staff`, `admin`; a token with neither is a customer's). Staff name their store in
//! `store` (or Cognito's `custom:store`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::access::{Principal, Role};
use super::jwks::{Jwks, JwksError};

/// The issuer of the tokens the local key signs.
pub const LOCAL_ISSUER: &str = "cloudcafe-local";
/// The audience a token must name unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "cloudcafe";
/// The longest token looked at: a Cognito ID token is 1-2 KB; anything past this is refused before
/// it is decoded (a token with ten thousand claims costs the node nothing).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The claims the local key signs.
#[derive(Debug, Serialize, Deserialize)]
pub struct IssuedClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// The claims a verified token is read into (unknown claims are ignored; the registered ones are
/// checked by [`Validation`] before these are read).
#[derive(Deserialize)]
struct TokenClaims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default, rename = "custom:store")]
    custom_store: Option<String>,
}

/// Why a key cannot be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}")]
    Read {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("cannot write the signing key {path}")]
    Write {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)")]
    Format { path: PathBuf },
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Too long, not three base64url parts, a header that does not parse (`alg: none` included),
    /// or no `kid`.
    #[error("malformed token")]
    Malformed,
    /// The key set has no key with the token's `kid`.
    #[error("the token's key is not known")]
    UnknownKey,
    /// The header's `alg` is not the algorithm of the key its `kid` names.
    #[error("the token's algorithm is not its key's")]
    WrongAlgorithm,
    /// A bad signature, a wrong issuer or audience, expired, not yet valid, a missing claim.
    #[error("invalid token")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The `role` claim names no role.
    #[error("the token's role is not one of customer, staff, admin")]
    UnknownRole,
    /// The key set could not be fetched and none is cached: the token cannot be checked now (503).
    #[error("the token's keys cannot be fetched")]
    KeysUnavailable(#[source] JwksError),
}

impl TokenError {
    /// Whether the refusal says nothing about the token (the keys are unavailable): 503, not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::KeysUnavailable(_))
    }
}

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// Why a JWK is not taken into a key set.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    #[error("the key has no `kid`")]
    NoKid,
    #[error("symmetric (`oct`) keys are never taken from a key set")]
    Symmetric,
    #[error("the key's algorithm is not one this node verifies")]
    Algorithm,
    #[error("the key does not parse")]
    Parse(#[source] jsonwebtoken::errors::Error),
}

/// The verifying key of a JWK: its algorithm from `alg`, or from its type when `alg` is absent (RSA
/// → RS256, P-256 → ES256, Ed25519 → EdDSA). Symmetric keys are refused: a key set is public.
pub fn verifying_key(jwk: &Jwk) -> Result<(String, VerifyingKey), JwkError> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty()).ok_or(JwkError::NoKid)?;
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => return Err(JwkError::Symmetric),
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err(JwkError::Algorithm),
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => by_type,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::RS384) => Algorithm::RS384,
        Some(KeyAlgorithm::RS512) => Algorithm::RS512,
        Some(KeyAlgorithm::PS256) => Algorithm::PS256,
        Some(KeyAlgorithm::PS384) => Algorithm::PS384,
        Some(KeyAlgorithm::PS512) => Algorithm::PS512,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::ES384) => Algorithm::ES384,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(_) => return Err(JwkError::Algorithm),
    };
    // An `alg` that contradicts the key's type (an RSA key marked ES256) is refused too.
    let same_family = |a: Algorithm, b: Algorithm| {
        use jsonwebtoken::Algorithm::*;
        let family = |x| match x {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => 0,
            ES256 | ES384 => 1,
            EdDSA => 2,
            _ => 3,
        };
        family(a) == family(b)
    };
    if !same_family(algorithm, by_type) {
        return Err(JwkError::Algorithm);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(JwkError::Parse)?;
    Ok((kid, VerifyingKey { algorithm, key }))
}

/// The node's own signing key: Ed25519, kept as PKCS#8 PEM in a file only its owner reads.
pub struct LocalKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

impl LocalKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Generate(e.to_string()))?;
        Self::from_pkcs8(pkcs8.as_ref()).ok_or_else(|| KeyError::Generate("ring made a key it cannot read".into()))
    }

    fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?;
        let public = pair.public_key().as_ref().to_vec();
        // The key's id: the start of its public key's SHA-256, so a new key has a new `kid`.
        let kid = hex::encode(&Sha256::digest(&public)[..8]);
        Some(LocalKey { kid, pkcs8: der.to_vec(), public })
    }

    /// The key in `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|cause| KeyError::Read { path: path.to_owned(), cause })?;
        Self::from_pem(&text).ok_or_else(|| KeyError::Format { path: path.to_owned() })
    }

    /// The key in `text`, an Ed25519 key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as this
    /// module, OpenSSL or Terraform's `tls_private_key` write it; `None` if it is not one.
    pub fn from_pem(text: &str) -> Option<Self> {
        let body = text.trim().strip_prefix(PEM_BEGIN).and_then(|t| t.strip_suffix(PEM_END))?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        Self::from_pkcs8(&der)
    }

    /// The key in `path`, made there first (readable by its owner only) if the file is absent.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match std::fs::metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.save(path)?;
                Ok(key)
            }
            Err(cause) => Err(KeyError::Read { path: path.to_owned(), cause }),
        }
    }

    /// Writes the key as PKCS#8 PEM, mode 0600, through a temporary file renamed into place (two
    /// nodes starting at once on one data directory end with one key).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let write = |cause| KeyError::Write { path: path.to_owned(), cause };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let mut pem = format!("{PEM_BEGIN}\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(write)?;
            f.write_all(pem.as_bytes()).map_err(write)?;
            f.sync_all().map_err(write)?;
        }
        // Another process may have made the key meanwhile: keep the first one.
        if std::fs::hard_link(&tmp, path).is_err() && !path.exists() {
            std::fs::rename(&tmp, path).map_err(write)?;
        }
        let _ = std::fs::remove_file(&tmp);
        Ok(())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK (`kty: OKP`, `crv: Ed25519`), as `/.well-known/jwks.json` serves it.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public),
            }),
        }
    }

    /// A token for `subject` in `role` (and `store`, for staff), valid from now for `ttl`.
    pub fn issue(
        &self,
        issuer: &str,
        audience: &str,
        subject: &str,
        role: Role,
        store: Option<&str>,
        ttl: Duration,
    ) -> String {
        let now = now_secs();
        let claims = IssuedClaims {
            sub: subject.to_owned(),
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs().max(1),
            role,
            store: store.map(str::to_owned),
        };
        self.sign(&claims)
    }

    /// Signs any claims (tests sign expired, foreign and malformed ones with it).
    pub fn sign<C: Serialize>(&self, claims: &C) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8))
            .expect("an Ed25519 key signs any serializable claims")
    }
}

/// Where the verifying keys come from.
enum Keys {
    /// A fixed set: the local key's public half.
    Fixed(Vec<(String, VerifyingKey)>),
    /// An identity provider's JWKS, fetched and cached.
    Published(Box<Jwks>),
}

/// Checks bearer tokens: the one place a token becomes a [`Principal`].
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: Keys,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Fixed(k) => format!("{} fixed", k.len()),
            Keys::Published(j) => format!("JWKS {}", j.url()),
        };
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &keys)
            .finish()
    }
}

impl Verifier {
    /// Tokens the local key signed, for `audience`.
    pub fn local(key: &LocalKey, audience: &str) -> Self {
        let verifying = verifying_key(&key.jwk()).expect("the local key's own JWK is valid");
        Verifier { issuer: LOCAL_ISSUER.to_owned(), audience: audience.to_owned(), keys: Keys::Fixed(vec![verifying]) }
    }

    /// Tokens of `issuer` for `audience`, verified with the keys `jwks` publishes.
    pub fn published(jwks: Jwks, issuer: &str, audience: &str) -> Self {
        Verifier { issuer: issuer.to_owned(), audience: audience.to_owned(), keys: Keys::Published(Box::new(jwks)) }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The key set, fetched once, so that the first requests do not wait for it (a failure is only
    /// logged: the node serves its open routes without it, and fetches again on demand).
    pub async fn prefetch(&self) {
        if let Keys::Published(jwks) = &self.keys {
            if let Err(e) = jwks.refresh().await {
                tracing::warn!(url = %jwks.url(), detail = %events::ErrorChain(&e), "the JWKS could not be fetched at start");
            }
        }
    }

    /// The caller a bearer token names, once everything in the module's list is checked.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.as_deref().ok_or(TokenError::Malformed)?;
        let key = match &self.keys {
            Keys::Fixed(keys) => keys.iter().find(|(k, _)| k == kid).map(|(_, v)| v.clone()),
            Keys::Published(jwks) => jwks.key(kid).await.map_err(TokenError::KeysUnavailable)?,
        };
        let key = key.ok_or(TokenError::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(TokenError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key.key, &validation).map_err(TokenError::Invalid)?;
        principal(data.claims)
    }
}

fn principal(claims: TokenClaims) -> Result<Principal, TokenError> {
    let role = match claims.role.as_deref() {
        Some(name) => Role::parse(name).ok_or(TokenError::UnknownRole)?,
        None => claims.groups.iter().filter_map(|g| Role::parse(g)).max().unwrap_or(Role::Customer),
    };
    Ok(Principal { subject: claims.sub, role, store: claims.store.or(claims.custom_store) })
}

/// A duration as `90s`, `15m`, `1h` or `7d` (a bare number is seconds).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{text}`: the unit is one of s, m, h, d")),
    };
    if seconds == 0 {
        return Err("a token must live at least a second".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// A JWK set of one key, as `/.well-known/jwks.json` serves the local key.
pub fn key_set(key: &LocalKey) -> JwkSet {
    JwkSet { keys: vec![key.jwk()] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    fn b64(json: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    }

    #[test]
    fn a_key_written_by_openssl_or_terraform_is_read_from_its_pem_text() {
        // `openssl genpkey -algorithm ed25519`: PKCS#8 v1 without the public key, as Terraform's
        // tls_private_key (private_key_pem_pkcs8) writes it, the form a deployment keeps in Secrets
        // Manager and gives the nodes as CLOUDCAFE_AUTH_KEY.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEv88+OH17YEONrF8JIRqxMAKCLhHA20k7DFSRI88+ZJ\n-----END PRIVATE KEY-----\n";
        let key = LocalKey::from_pem(pem).expect("an Ed25519 PKCS#8 key");
        let again = LocalKey::from_pem(&pem.replace('\n', "\r\n")).expect("the same key with CRLF line ends");
        assert_eq!(key.kid(), again.kid());
        let token = key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, "ops", Role::Admin, None, Duration::from_secs(60));
        assert_eq!(block(Verifier::local(&again, DEFAULT_AUDIENCE).verify(&token)).unwrap(), Principal::admin("ops"));
        assert!(LocalKey::from_pem("not a key").is_none());
        assert!(LocalKey::from_pem(&pem.replace("MC4C", "MC5C")).is_none());
    }

    #[test]
    fn a_token_the_local_key_issued_verifies_into_its_caller() {
        let key = LocalKey::generate().unwrap();
        let verifier = Verifier::local(&key, DEFAULT_AUDIENCE);
        let token =
            key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, "sam", Role::Staff, Some("store-1"), Duration::from_secs(60));
        assert_eq!(block(verifier.verify(&token)).unwrap(), Principal::staff("sam", "store-1"));
    }

    #[test]
    fn expired_not_yet_valid_foreign_and_tampered_tokens_are_refused() {
        let key = LocalKey::generate().unwrap();
        let verifier = Verifier::local(&key, DEFAULT_AUDIENCE);
        let now = now_secs();
        let claims = |iss: &str, aud: &str, nbf: u64, exp: u64| IssuedClaims {
            sub: "alice".into(),
            iss: iss.into(),
            aud: aud.into(),
            iat: now,
            nbf,
            exp,
            role: Role::Customer,
            store: None,
        };
        let refused = |token: &str| block(verifier.verify(token)).unwrap_err();
        let expired = key.sign(&claims(LOCAL_ISSUER, DEFAULT_AUDIENCE, now - 3600, now - 120));
        assert!(matches!(refused(&expired), TokenError::Invalid(_)));
        let early = key.sign(&claims(LOCAL_ISSUER, DEFAULT_AUDIENCE, now + 600, now + 1200));
        assert!(matches!(refused(&early), TokenError::Invalid(_)));
        let wrong_aud = key.sign(&claims(LOCAL_ISSUER, "other-app", now, now + 60));
        assert!(matches!(refused(&wrong_aud), TokenError::Invalid(_)));
        let wrong_iss = key.sign(&claims("https://evil.example", DEFAULT_AUDIENCE, now, now + 60));
        assert!(matches!(refused(&wrong_iss), TokenError::Invalid(_)));
        // Another key with the same kid: the signature does not verify.
        let good = key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, "alice", Role::Customer, None, Duration::from_secs(60));
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin_claims = b64(&serde_json::json!({"sub": "alice", "iss": LOCAL_ISSUER, "aud": DEFAULT_AUDIENCE,
            "exp": now + 60, "role": "admin"}));
        parts[1] = &admin_claims;
        assert!(matches!(refused(&parts.join(".")), TokenError::Invalid(_)), "a changed payload breaks the signature");
        let other = LocalKey::generate().unwrap();
        let unknown =
            other.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, "alice", Role::Customer, None, Duration::from_secs(60));
        assert!(matches!(refused(&unknown), TokenError::UnknownKey));
    }

    #[test]
    fn alg_none_and_algorithm_confusion_are_refused() {
        let key = LocalKey::generate().unwrap();
        let verifier = Verifier::local(&key, DEFAULT_AUDIENCE);
        let now = now_secs();
        let payload = b64(&serde_json::json!({"sub": "ops", "iss": LOCAL_ISSUER, "aud": DEFAULT_AUDIENCE,
            "exp": now + 60, "role": "admin"}));
        let none = format!("{}.{payload}.", b64(&serde_json::json!({"alg": "none", "kid": key.kid()})));
        assert!(matches!(block(verifier.verify(&none)).unwrap_err(), TokenError::Malformed));
        // HS256 "signed" with the public key's bytes, naming the Ed25519 key's kid.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let claims: serde_json::Value = serde_json::json!({"sub": "ops", "iss": LOCAL_ISSUER,
            "aud": DEFAULT_AUDIENCE, "exp": now + 60, "role": "admin"});
        let confused = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.public)).unwrap();
        assert!(matches!(block(verifier.verify(&confused)).unwrap_err(), TokenError::WrongAlgorithm));
    }

    #[test]
    fn an_oversized_token_is_refused_before_it_is_decoded() {
        let key = LocalKey::generate().unwrap();
        let verifier = Verifier::local(&key, DEFAULT_AUDIENCE);
        let mut claims = serde_json::Map::new();
        for i in 0..10_000 {
            claims.insert(format!("c{i}"), serde_json::json!(i));
        }
        claims.insert("sub".into(), "alice".into());
        let token = key.sign(&claims);
        assert!(token.len() > MAX_TOKEN_BYTES);
        assert!(matches!(block(verifier.verify(&token)).unwrap_err(), TokenError::Malformed));
    }

    #[test]
    fn cognito_groups_give_the_highest_role_and_no_group_a_customer() {
        let read = |json: serde_json::Value| principal(serde_json::from_value(json).unwrap());
        let p = read(serde_json::json!({"sub": "u1", "cognito:groups": ["customer", "staff"], "custom:store": "s-2"}))
            .unwrap();
        assert_eq!(p, Principal::staff("u1", "s-2"));
        assert_eq!(read(serde_json::json!({"sub": "u2"})).unwrap(), Principal::customer("u2"));
        assert!(matches!(read(serde_json::json!({"sub": "u3", "role": "root"})), Err(TokenError::UnknownRole)));
    }

    #[test]
    fn the_key_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth").join("signing-key.pem");
        let made = LocalKey::load_or_create(&path).unwrap();
        let again = LocalKey::load_or_create(&path).unwrap();
        assert_eq!(made.kid(), again.kid());
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(LocalKey::load(&path), Err(KeyError::Format { .. })));
    }

    #[test]
    fn symmetric_keys_are_never_taken_from_a_key_set() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({"kty": "oct", "kid": "k", "k": "c2VjcmV0"})).unwrap();
        assert!(matches!(verifying_key(&jwk), Err(JwkError::Symmetric)));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
