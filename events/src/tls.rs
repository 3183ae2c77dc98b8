//! TLS to the PostgreSQL wire protocol (Aurora, RDS, Redshift) over rustls, with libpq's `sslmode`
//! meanings, and the one rustls crypto provider every TLS client of the process uses.
//!
//! | mode | encrypted | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `prefer` | if the server offers it | no | no |
//! | `require` | yes | only when a CA file is given (then as `verify-ca`) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! Checked chains end at the CA file's certificates (PEM), or at the system's roots without one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// libpq's `sslmode`, from `disable` to `verify-full` (see the module's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode for a server when nobody chose one: `prefer` on this machine (a loopback address or
    /// a Unix socket: nothing travels over a network), `verify-full` anywhere else, since a password
    /// sent over an unverified channel is given to whoever answers.
    pub fn default_for(host: &str) -> SslMode {
        if is_local(host) {
            SslMode::Prefer
        } else {
            SslMode::VerifyFull
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::str::FromStr for SslMode {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plain first; over rustls we prefer TLS, which is never weaker.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::Mode(other.to_owned())),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loopback address, `localhost` or a Unix socket directory.
pub fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What went wrong setting TLS up (not a failed handshake: that is the driver's error).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("cannot read the CA file {path}")]
    CaFile {
        path: PathBuf,
        #[source]
        cause: io::Error,
    },
    #[error("the CA file {path} holds no PEM certificate")]
    EmptyCaFile { path: PathBuf },
    #[error("the CA file {path} is not PEM certificates")]
    BadCaFile {
        path: PathBuf,
        #[source]
        cause: rustls::pki_types::pem::Error,
    },
    #[error("no root certificate could be loaded from the system")]
    NoSystemRoots,
    #[error("cannot build the TLS configuration")]
    Rustls(#[source] rustls::Error),
    #[error("cannot build the certificate verifier")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
}

/// The crypto provider of every rustls client in the process (ring), installed as the process
/// default the first time it is asked for, so that libraries that build their own rustls
/// configuration (the Redis driver) find one even when several providers are compiled in.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    if let Some(provider) = CryptoProvider::get_default() {
        return provider.clone();
    }
    // Losing the race to another installer is fine: either provider is a complete one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The certificates of a PEM file (a CA bundle such as the RDS global bundle).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|cause| TlsError::CaFile { path: path.to_owned(), cause })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsError::BadCaFile { path: path.to_owned(), cause })?;
    if certs.is_empty() {
        return Err(TlsError::EmptyCaFile { path: path.to_owned() });
    }
    Ok(certs)
}

/// The roots a chain must end at: the CA file's, or the system's.
fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_ca_file(path)? {
                roots.add(cert).map_err(TlsError::Rustls)?;
            }
        }
        None => {
            let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    Ok(roots)
}

/// The rustls client configuration for `mode` (`None` for `disable`).
pub fn client_config(mode: SslMode, ca_file: Option<&Path>) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, ca_file) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Prefer, _) | (SslMode::Require, None) => Arc::new(EncryptOnly { provider }),
        (SslMode::Require, Some(_)) | (SslMode::VerifyCa, _) => Arc::new(ChainOnly(
            WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(ca_file)?), provider)
                .build()
                .map_err(TlsError::Verifier)?,
        )),
        (SslMode::VerifyFull, _) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(ca_file)?), provider)
                .build()
                .map_err(TlsError::Verifier)?
        }
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// `prefer` and `require` without a CA file: the channel is encrypted and the handshake's
/// signatures are checked, but anyone's certificate is taken (libpq does the same).
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must end at a trusted root, whatever name the certificate is for.
/// webpki checks the chain before the name, so a name mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres' TLS over rustls. With `sslmode=disable` the driver never asks it to connect.
#[derive(Clone, Debug)]
pub struct PgTlsConnector {
    config: Option<Arc<ClientConfig>>,
}

impl PgTlsConnector {
    pub fn new(mode: SslMode, ca_file: Option<&Path>) -> Result<Self, TlsError> {
        Ok(PgTlsConnector { config: client_config(mode, ca_file)? })
    }
}

/// The connector of one connection: the configuration and the host name its certificate is for.
pub struct PgTlsConnect {
    config: Option<Arc<ClientConfig>>,
    server_name: Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError>,
}

impl<S> MakeTlsConnect<S> for PgTlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        Ok(PgTlsConnect { config: self.config.clone(), server_name: ServerName::try_from(domain.to_owned()) })
    }
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<PgTlsStream<S>>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self.config.ok_or_else(|| io::Error::other("TLS is disabled (sslmode=disable)"))?;
            let name = self
                .server_name
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("not a TLS server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
            Ok(PgTlsStream(stream))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding needs the certificate's signature hash; without it the server
        // still authenticates over the encrypted, verified channel.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_libpq_spells_them() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode.as_str().parse::<SslMode>().unwrap(), mode);
        }
        assert!("verify_full".parse::<SslMode>().is_err());
    }

    #[test]
    fn only_this_machine_goes_without_verification_by_default() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "/var/run/postgresql", "127.0.0.2"] {
            assert_eq!(SslMode::default_for(host), SslMode::Prefer, "{host}");
        }
        for host in ["db.cluster-abc.eu-west-1.rds.amazonaws.com", "10.0.0.5", "postgres"] {
            assert_eq!(SslMode::default_for(host), SslMode::VerifyFull, "{host}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = client_config(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
