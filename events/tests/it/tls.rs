//! TLS to PostgreSQL against a real server with `ssl=on` and a CA made at test time
//! (`testkit::tls`), and against one without TLS.

use std::path::Path;

use events::error_chain;
use events::postgres::{connect_pool, PasswordSource, PgOptions, PgSecurity, PgTls, SharedPasswordSource};
use events::tls::SslMode;
use testkit::servers;
use testkit::tls::{PrivatePostgres, TestCa, CERT_HOST};

fn options(url: &str, mode: SslMode, ca_file: Option<&Path>) -> PgOptions {
    let tls = PgTls { mode: Some(mode), ca_file: ca_file.map(Path::to_owned) };
    // A schema makes `connect_pool` connect at once (to create it), so refusals show here.
    PgOptions::new(url)
        .with_schema(servers::fresh_schema("tls"))
        .with_security(PgSecurity { tls, ..PgSecurity::default() })
}

/// Whether the pool's connection is encrypted, as the server sees it.
async fn encrypted(options: &PgOptions) -> bool {
    let pool = connect_pool(options).await.unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let client = pool.get().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

async fn refusal(options: &PgOptions) -> String {
    match connect_pool(options).await {
        Ok(_) => panic!("{} with {:?} was not refused", options.redacted_url(), options.security.tls),
        Err(e) => {
            let text = error_chain(&e);
            eprintln!("refused as expected: {text}");
            text
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_follows_libpq_sslmode() {
    let Some(ca) = TestCa::generate() else { return };
    let Some(server) = PrivatePostgres::start_tls(&ca) else { return };
    let ca_file = Some(ca.ca_file.as_path());
    let right_name = server.url_as(CERT_HOST);
    let other_name = server.url_as("db.elsewhere.test");

    // verify-full: the chain ends at the CA and the certificate is for the host asked for.
    assert!(encrypted(&options(&right_name, SslMode::VerifyFull, ca_file)).await);

    // The same certificate for another host name: verify-full refuses it, naming the certificate.
    let refused = refusal(&options(&other_name, SslMode::VerifyFull, ca_file)).await;
    assert!(refused.contains("certificate") && refused.contains("TLS"), "{refused}");
    // verify-ca checks the chain only, so it takes it.
    assert!(encrypted(&options(&other_name, SslMode::VerifyCa, ca_file)).await);
    // require with a CA file checks the chain too (libpq's rule); without one it only encrypts.
    assert!(encrypted(&options(&other_name, SslMode::Require, ca_file)).await);
    assert!(encrypted(&options(&other_name, SslMode::Require, None)).await);

    // A chain that ends at no trusted root (the system's, without the CA file) is refused.
    let refused = refusal(&options(&right_name, SslMode::VerifyFull, None)).await;
    assert!(refused.contains("certificate"), "{refused}");
    let refused = refusal(&options(&other_name, SslMode::VerifyCa, None)).await;
    assert!(refused.contains("certificate"), "{refused}");

    // disable stays plain; the loopback default (prefer) takes TLS when the server offers it.
    assert!(!encrypted(&options(&right_name, SslMode::Disable, None)).await);
    let by_default = PgOptions::new(server.url_as("127.0.0.1")).with_schema(servers::fresh_schema("tls"));
    assert!(encrypted(&by_default).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_and_sslrootcert_in_the_url_are_honoured() {
    let Some(ca) = TestCa::generate() else { return };
    let Some(server) = PrivatePostgres::start_tls(&ca) else { return };
    let query = format!("&sslmode=verify-full&sslrootcert={}", ca.ca_file.display());
    let url = format!("{}{query}", server.url_as(CERT_HOST));
    assert!(encrypted(&PgOptions::new(url).with_schema(servers::fresh_schema("tls"))).await);
    let url = format!("{}{query}", server.url_as("db.elsewhere.test"));
    let refused = refusal(&PgOptions::new(url).with_schema(servers::fresh_schema("tls"))).await;
    assert!(refused.contains("certificate"), "{refused}");
}

/// Against a server without TLS, `require` must not fall back to plain text, while the loopback
/// default keeps working without any TLS setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_a_server_without_tls() {
    let Some(server) = PrivatePostgres::start_plain() else { return };
    let url = server.url_as("127.0.0.1");
    let refused = refusal(&options(&url, SslMode::Require, None)).await;
    assert!(refused.contains("TLS"), "{refused}");
    assert!(!encrypted(&PgOptions::new(url).with_schema(servers::fresh_schema("tls"))).await);
}

/// A password that the test rotates, as IAM authentication tokens rotate; counts how often it is asked.
struct Rotating {
    current: std::sync::Mutex<String>,
    asked: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl PasswordSource for Rotating {
    async fn password(&self) -> Result<events::secret::Password, events::Cause> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(events::secret::Password::new(self.current.lock().unwrap().clone()))
    }
}

/// `--pg-iam-auth`'s plumbing against a real server that checks passwords (SCRAM): the pool asks
/// its password source at every new connection, so a rotated password (an IAM token that expired)
/// is used by the next connection while the open ones go on; a source with a wrong one is refused.
#[tokio::test]
async fn a_password_source_is_asked_at_every_new_connection() {
    let Some(ca) = TestCa::generate() else { return };
    let Some(server) = PrivatePostgres::start_tls_with_password(&ca, "first-password") else { return };
    let source = std::sync::Arc::new(Rotating { current: "first-password".to_owned().into(), asked: 0.into() });
    let security = PgSecurity {
        tls: PgTls { mode: Some(SslMode::VerifyFull), ca_file: Some(ca.ca_file.clone()) },
        password: None,
        password_source: Some(SharedPasswordSource(source.clone())),
    };
    let options = PgOptions::new(server.url_as(CERT_HOST)).with_schema("rotating").with_security(security);
    let pool = connect_pool(&options).await.unwrap();
    let first = pool.get().await.unwrap();
    first.batch_execute("ALTER ROLE postgres PASSWORD 'second-password'").await.unwrap();
    *source.current.lock().unwrap() = "second-password".to_owned();
    let asked = source.asked.load(std::sync::atomic::Ordering::SeqCst);

    // A second connection while the first is held: made with the new password.
    let second = pool.get().await.expect("a new connection with the rotated password");
    second.query_one("SELECT 1", &[]).await.unwrap();
    first.query_one("SELECT 1", &[]).await.expect("the open connection goes on");
    assert_eq!(source.asked.load(std::sync::atomic::Ordering::SeqCst), asked + 1);

    // A source that gives a wrong password: the next connection is refused, and says why.
    *source.current.lock().unwrap() = "not-the-password".to_owned();
    let Err(e) = pool.get().await else { panic!("a wrong password was taken") };
    let text = error_chain(&e);
    assert!(text.contains("password authentication failed") && !text.contains("not-the-password"), "{text}");
}
