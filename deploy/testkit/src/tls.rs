//! Servers that speak only TLS, for the tests of TLS to the stores: a certificate authority made at
//! test time with the `openssl` CLI ([`TestCa`]), a private PostgreSQL with `ssl=on` or
//! without TLS ([`PrivatePostgres`]) and a TLS-only `redis-server` ([`TlsRedis`]), each on a free loopback port and
//! stopped when dropped (also when the test panics).
//!
//! Each `start` returns `None`, saying the test is skipped, only when a binary it needs is not
//! installed; under `CI=true` that is a failure, as with the switches in [`crate::servers`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaos::cluster::{free_port, is_root, Postgres};

use crate::under_ci;

/// The name on the servers' certificates (with the address 127.0.0.1); any other name is refused
/// by a client that checks host names.
pub const CERT_HOST: &str = "localhost";

fn skipped<T>(what: &str) -> Option<T> {
    if under_ci() {
        panic!("CI=true but {what} is not installed");
    }
    eprintln!("SKIPPED: {what} is not installed");
    None
}

fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(command: &mut Command) {
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh directory under the system's temporary directory, removed by its owner's `Drop`.
fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

fn wait_listening(what: &str, port: u16, within: Duration, log: &Path) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = chaos::cluster::wait_listening(what, addr, within, log) {
        panic!("{e}: {}", std::fs::read_to_string(log).unwrap_or_default());
    }
}

/// A certificate authority and one server certificate it signed, for [`CERT_HOST`] and 127.0.0.1,
/// as PEM files (P-256 keys, valid for two days).
pub struct TestCa {
    dir: PathBuf,
    /// The CA's certificate: what a client trusts.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// `None` (skipped) without the `openssl` CLI.
    pub fn generate() -> Option<TestCa> {
        if !found("openssl") {
            return skipped("the openssl CLI");
        }
        let dir = scratch_dir("cc-test-ca");
        let ca = TestCa {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            dir,
        };
        let file = |name: &str| ca.dir.join(name);
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=CloudCafe test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(file("ca.key"))
            .arg("-out")
            .arg(&ca.ca_file));
        run(Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-subj", &format!("/CN={CERT_HOST}")])
            .arg("-keyout")
            .arg(&ca.key_file)
            .arg("-out")
            .arg(file("server.csr")));
        std::fs::write(
            file("server.ext"),
            format!(
                "subjectAltName=DNS:{CERT_HOST},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write the extensions file");
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(file("server.csr"))
            .arg("-CA")
            .arg(&ca.ca_file)
            .arg("-CAkey")
            .arg(file("ca.key"))
            .arg("-extfile")
            .arg(file("server.ext"))
            .arg("-out")
            .arg(&ca.cert_file));
        Some(ca)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private PostgreSQL (trust authentication unless a password is given, `fsync=off`) listening
/// on 127.0.0.1 only: with
/// `ssl=on` and the [`TestCa`]'s server certificate ([`PrivatePostgres::start_tls`], which takes
/// plain connections too: the client's sslmode decides), or without TLS at all
/// ([`PrivatePostgres::start_plain`]; the machine's own server has Debian's `ssl=on`).
pub struct PrivatePostgres {
    dir: PathBuf,
    /// The server as the chaos cluster runs its own (binaries, data directory, port, log).
    server: Postgres,
    pub port: u16,
}

impl PrivatePostgres {
    /// `None` (skipped) without a PostgreSQL server under `/usr/lib/postgresql/*/bin`.
    pub fn start_tls(ca: &TestCa) -> Option<PrivatePostgres> {
        Self::start(Some(ca), None)
    }

    /// With TLS, and role `postgres` authenticated over TCP by `password` (SCRAM-SHA-256).
    pub fn start_tls_with_password(ca: &TestCa, password: &str) -> Option<PrivatePostgres> {
        Self::start(Some(ca), Some(password))
    }

    /// `None` (skipped) without a PostgreSQL server under `/usr/lib/postgresql/*/bin`.
    pub fn start_plain() -> Option<PrivatePostgres> {
        Self::start(None, None)
    }

    fn start(ca: Option<&TestCa>, password: Option<&str>) -> Option<PrivatePostgres> {
        let Some(bin_dir) = Postgres::find_bin_dir() else {
            return skipped("a PostgreSQL server (/usr/lib/postgresql/*/bin/initdb)");
        };
        let dir = scratch_dir("cc-tls-pg");
        let port = free_port();
        let (data, log) = (dir.join("data"), dir.join("server.log"));
        let server =
            PrivatePostgres { server: Postgres { bin_dir, data_dir: data.clone(), port, log: log.clone() }, dir, port };
        let ssl = match ca {
            Some(ca) => {
                std::fs::copy(&ca.cert_file, server.dir.join("server.pem")).expect("copy the certificate");
                std::fs::copy(&ca.key_file, server.dir.join("server.key")).expect("copy the key");
                set_mode(&server.dir.join("server.key"), 0o600);
                format!(
                    "-c ssl=on -c ssl_cert_file={dir}/server.pem -c ssl_key_file={dir}/server.key",
                    dir = server.dir.display()
                )
            }
            None => "-c ssl=off".to_owned(),
        };
        let auth = match password {
            Some(password) => {
                std::fs::write(server.dir.join("pwfile"), password).expect("write the password file");
                vec![
                    "--auth-local=trust".to_owned(),
                    "--auth-host=scram-sha-256".to_owned(),
                    format!("--pwfile={}/pwfile", server.dir.display()),
                ]
            }
            None => vec!["-A".to_owned(), "trust".to_owned()],
        };
        if is_root() {
            // The server refuses to run as root, and reads its key only if it owns it.
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&server.dir));
        }
        run(server.server.tool("initdb").arg("-D").arg(&data).args(auth).args(["-U", "postgres", "-E", "UTF8"]));
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off {ssl}",
            server.port,
            server.dir.display()
        );
        run(server
            .server
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "start"]));
        wait_listening("the private PostgreSQL", server.port, Duration::from_secs(20), &log);
        Some(server)
    }

    /// `postgres://postgres@HOST:PORT/postgres?hostaddr=127.0.0.1`: the connection goes to this
    /// server whatever `host` is, and `host` is the name a certificate is checked against.
    pub fn url_as(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.server.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A `redis-server` that listens only for TLS (`--port 0 --tls-port N`), with the [`TestCa`]'s
/// server certificate and no client certificates asked for.
pub struct TlsRedis {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl TlsRedis {
    /// `None` (skipped) without `redis-server`.
    pub fn start(ca: &TestCa) -> Option<TlsRedis> {
        if !found("redis-server") {
            return skipped("redis-server");
        }
        let dir = scratch_dir("cc-tls-redis");
        let port = free_port();
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&ca.cert_file)
            .arg("--tls-key-file")
            .arg(&ca.key_file)
            .arg("--tls-ca-cert-file")
            .arg(&ca.ca_file)
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = TlsRedis { child, dir, port };
        wait_listening("redis-server with TLS", port, Duration::from_secs(10), &log);
        Some(server)
    }

    /// `rediss://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
