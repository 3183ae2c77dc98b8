//! The local cluster's processes: what `cloudcafe cluster up` started, written down in
//! `cluster.json` so that `down` stops exactly those processes (by PID) and the chaos actions can
//! kill, stop and restart them as ECS would (the same command line, the same environment).
//!
//! The cluster owns its journal's PostgreSQL server and its Redis server (started here on free ports,
//! data under the cluster's directory), so that an experiment can shut them down or kill them without
//! touching the servers anything else on the machine uses.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A failure to start, stop or find one of the cluster's processes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not answer on {addr} within {within:?} (its log: {log})")]
    NotReady { what: String, addr: SocketAddr, within: Duration, log: String },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("cannot read or write {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a cluster description")]
    Description {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no node named {0} in the cluster")]
    UnknownNode(String),
}

/// A process the cluster started: how to start it again, and where it writes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Managed {
    pub pid: u32,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub log: PathBuf,
}

impl Managed {
    /// Starts `argv` in a process group of its own (a Ctrl-C in the terminal that ran `up` does not
    /// reach it), output appended to `log`.
    pub fn spawn(argv: Vec<String>, env: BTreeMap<String, String>, log: PathBuf) -> Result<Managed, ClusterError> {
        let mut managed = Managed { pid: 0, argv, env, log };
        managed.start()?;
        Ok(managed)
    }

    /// Starts the process again with the same command line and environment.
    pub fn start(&mut self) -> Result<(), ClusterError> {
        let file = |source| ClusterError::File { path: self.log.display().to_string(), source };
        let out = OpenOptions::new().create(true).append(true).open(&self.log).map_err(file)?;
        let err = out.try_clone().map_err(file)?;
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| ClusterError::Spawn { program: self.argv[0].clone(), source })?;
        self.pid = child.id();
        // Not waited for: the process outlives the command that started it; once that command exits,
        // the process is re-parented and reaped by whoever reaps orphans.
        std::mem::forget(child);
        Ok(())
    }

    pub fn alive(&self) -> bool {
        alive(self.pid)
    }
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) != Some('Z'),
        Err(_) => false,
    }
}

/// Sends `signal` ("KILL", "TERM", "STOP", "CONT") to `pid`; a process already gone is not an error.
pub fn signal(pid: u32, signal: &str) -> Result<(), ClusterError> {
    if pid == 0 || !alive(pid) {
        return Ok(());
    }
    run(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string())).map(|_| ())
}

/// Waits until `pid` is gone; false if it still runs after `within`.
pub fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Stops `pid`: TERM, then KILL after `grace`.
pub fn stop(pid: u32, grace: Duration) -> Result<(), ClusterError> {
    signal(pid, "TERM")?;
    if !wait_gone(pid, grace) {
        signal(pid, "KILL")?;
        wait_gone(pid, Duration::from_secs(5));
    }
    Ok(())
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(what: &str, addr: SocketAddr, within: Duration, log: &Path) -> Result<(), ClusterError> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(ClusterError::NotReady { what: what.into(), addr, within, log: log.display().to_string() })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    crate::process::free_loopback_addr().port()
}

fn run(command: &mut Command) -> Result<String, ClusterError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| ClusterError::Spawn { program: shown.clone(), source })?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(ClusterError::Command { command: shown, output: text.trim().to_owned() })
    }
}

/// A PostgreSQL server of the cluster's own (the local Aurora): its data directory, port and tools.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Postgres {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

/// Whether this process runs as root (PostgreSQL's tools then run as `postgres`: the server refuses
/// root).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Postgres {
    /// The newest PostgreSQL server installed (`/usr/lib/postgresql/<version>/bin`).
    pub fn find_bin_dir() -> Option<PathBuf> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    }

    /// A PostgreSQL tool, run as `postgres` when this process is root (the server refuses root).
    pub fn tool(&self, name: &str) -> Command {
        let path = self.bin_dir.join(name);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Creates the data directory (trust authentication, like the machine's own server).
    pub fn init(&self) -> Result<(), ClusterError> {
        if self.data_dir.join("PG_VERSION").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|source| ClusterError::File { path: self.data_dir.display().to_string(), source })?;
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.data_dir))?;
            if let Some(parent) = self.log.parent() {
                // The server writes its log beside its data.
                run(Command::new("chown").args(["postgres:postgres"]).arg(parent))?;
            }
        }
        run(self.tool("initdb").arg("-D").arg(&self.data_dir).args(["-A", "trust", "-U", "postgres", "-E", "UTF8"]))
            .map(|_| ())
    }

    /// Starts the server and waits until it accepts connections. `fsync` is off (an experiment
    /// crashes the server process, never the machine, so what was written survives in the page
    /// cache); `synchronous_commit` stays on, so an acknowledged commit is in the WAL.
    pub fn start(&self) -> Result<(), ClusterError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300",
            self.port,
            self.data_dir.display()
        );
        run(self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log)
            .args(["-o", &options, "-w", "start"]))?;
        wait_listening("PostgreSQL", self.addr(), Duration::from_secs(20), &self.log)
    }

    /// Stops the server: `immediate` is a crash (no checkpoint, recovery at the next start), `fast`
    /// a clean shutdown.
    pub fn stop(&self, mode: &str) -> Result<(), ClusterError> {
        if !self.data_dir.join("postmaster.pid").exists() {
            return Ok(());
        }
        run(self.tool("pg_ctl").arg("-D").arg(&self.data_dir).args(["-m", mode, "-w", "stop"])).map(|_| ())
    }

    /// The postmaster's process id, if it runs.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok().filter(|pid| alive(*pid))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `psql -c sql` against the server (as the `postgres` role).
    pub fn psql(&self, sql: &str) -> Result<String, ClusterError> {
        run(Command::new(self.bin_dir.join("psql")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atqc",
            sql,
        ]))
    }
}

/// One `cloudcafe serve` node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeProcess {
    pub name: String,
    pub listen: SocketAddr,
    pub process: Managed,
}

/// What `cloudcafe cluster up` started, as `cluster.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cluster {
    pub dir: PathBuf,
    /// The load balancer's URL: where clients and floods send requests.
    pub balancer_url: String,
    pub haproxy: Managed,
    pub haproxy_socket: PathBuf,
    pub routes_map: PathBuf,
    /// The fault proxy process and its control API's URL.
    pub proxy: Managed,
    pub proxy_control: String,
    pub postgres: Postgres,
    pub redis: Managed,
    pub redis_port: u16,
    /// The journal as the nodes reach it (through the fault proxy), and its schema.
    pub journal: String,
    pub pg_schema: String,
    /// The journal reached directly, for checks that must not go through an injected fault.
    pub journal_direct: String,
    pub redis_url: String,
    /// An admin bearer token from the cluster's signing key (`auth/signing-key.pem` in its directory).
    pub admin_token: String,
    pub nodes: Vec<NodeProcess>,
    /// Seconds a draining node keeps its connections (the ALB's deregistration delay, scaled down).
    pub drain_secs: u64,
    /// The stores the nodes reach through the fault proxy, by the proxy's name (`postgres`,
    /// `redis`, and with the AWS parts `dynamodb`, `kinesis`, `sqs`), each with its direct address.
    pub stores: BTreeMap<String, String>,
    /// The AWS parts, when the cluster runs them (on emulators).
    pub aws: Option<AwsParts>,
}

/// What the nodes of a cluster with the AWS parts use: the DynamoDB read models, the Kinesis outbox
/// with the Kinesis-fed read models (leases in DynamoDB), the payment queue on SQS with its
/// processor and ledger. The endpoints here are the direct ones (for checks); the nodes go through
/// the fault proxy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AwsParts {
    pub dynamodb_endpoint: String,
    pub kinesis_endpoint: String,
    pub sqs_endpoint: String,
    /// The `--dynamodb-env` of the read models' tables.
    pub dynamodb_env: String,
    pub kinesis_stream: String,
    pub payment_queue: String,
    pub payment_dlq: String,
    pub payments_table: String,
    pub lease_table_prefix: String,
}

impl Cluster {
    pub const FILE: &'static str = "cluster.json";

    pub fn load(dir: &Path) -> Result<Cluster, ClusterError> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ClusterError::File { path: path.display().to_string(), source })?;
        serde_json::from_str(&text)
            .map_err(|source| ClusterError::Description { path: path.display().to_string(), source })
    }

    /// Writes `cluster.json` (readable by its owner only: it holds the admin token).
    pub fn save(&self) -> Result<(), ClusterError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.dir.join(Self::FILE);
        let file = |source| ClusterError::File { path: path.display().to_string(), source };
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let tmp = self.dir.join("cluster.json.tmp");
        let mut out =
            OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).map_err(file)?;
        out.write_all(text.as_bytes()).map_err(file)?;
        std::fs::rename(&tmp, &path).map_err(file)
    }

    pub fn node(&self, name: &str) -> Result<&NodeProcess, ClusterError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| ClusterError::UnknownNode(name.into()))
    }

    pub fn node_mut(&mut self, name: &str) -> Result<&mut NodeProcess, ClusterError> {
        self.nodes.iter_mut().find(|n| n.name == name).ok_or_else(|| ClusterError::UnknownNode(name.into()))
    }

    /// Starts a node that is not running (after a kill or a stop) and waits until it listens.
    pub fn restart_node(&mut self, name: &str) -> Result<(), ClusterError> {
        let node = self.node_mut(name)?;
        if !node.process.alive() {
            node.process.start()?;
        }
        let (listen, log) = (node.listen, node.process.log.clone());
        wait_listening(name, listen, Duration::from_secs(30), &log)?;
        self.save()
    }

    /// Stops everything the cluster started, nodes first, by the PIDs it recorded.
    pub fn down(&self) -> Result<(), ClusterError> {
        for node in &self.nodes {
            stop(node.process.pid, Duration::from_secs(6))?;
        }
        stop(self.haproxy.pid, Duration::from_secs(2))?;
        stop(self.proxy.pid, Duration::from_secs(2))?;
        stop(self.redis.pid, Duration::from_secs(2))?;
        self.postgres.stop("fast")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_managed_process_is_started_again_with_its_command_line_and_stopped_by_pid() {
        let dir = std::env::temp_dir().join(format!("cc-managed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sleep.log");
        let mut p = Managed::spawn(
            vec!["sh".into(), "-c".into(), "echo started $WHO; exec sleep 30".into()],
            BTreeMap::from([("WHO".to_owned(), "me".to_owned())]),
            log.clone(),
        )
        .unwrap();
        assert!(p.alive());
        let first = p.pid;
        signal(p.pid, "KILL").unwrap();
        assert!(wait_gone(first, Duration::from_secs(5)) || !alive(first));
        p.start().unwrap();
        assert_ne!(p.pid, first);
        // Stopped only once the new shell has written its line: a stop that came first would
        // leave one line (a CI run did), which says nothing about the restart.
        let started = || std::fs::read_to_string(&log).unwrap_or_default().matches("started me").count();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while started() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(started(), 2, "the restarted process runs its command line with its environment");
        stop(p.pid, Duration::from_secs(2)).unwrap();
        assert!(!p.alive());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pid_nobody_has_is_not_alive() {
        assert!(!alive(u32::MAX - 1));
        assert!(alive(std::process::id()));
    }
}
