//! HAProxy as the local cluster's load balancer, configured the way the ALB in front of CloudCafe is:
//! path rules to one target group, health checks on `/health`, connection draining, a fixed 404 for a
//! path no rule matches; and its runtime API, through which the experiments remove a route, drain a
//! server or read which servers are up.
//!
//! The ALB's defaults, scaled down so that an experiment fits in a minute: health checks every 30 s
//! with a 5 s timeout, 5 successes to come in and 2 failures to go out become every 1 s with a 500 ms
//! timeout, 3 in and 2 out; the 300 s deregistration delay becomes [`Balancer::drain_secs`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The path prefixes the ALB's listener rules forward to the nodes' target group (the API's
/// resources), and the ones this local balancer adds for the admin plane and the operators' reads.
pub const ALB_ROUTES: &[&str] = &[
    "/api/orders",
    "/api/customers",
    "/api/menu",
    "/api/inventory",
    "/api/loyalty",
    "/api/payments",
    "/api/analytics",
    "/api/stores",
    "/admin/",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
];

/// The name of the one backend (the ALB's target group) every route forwards to.
pub const TARGET_GROUP: &str = "nodes";

/// How HAProxy checks a server, as an ALB target group does.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Successes in a row before a server takes traffic.
    pub rise: u32,
    /// Failures in a row before it stops taking traffic.
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 3,
            fall: 2,
        }
    }
}

/// One server of the target group.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
}

/// Everything the configuration file says.
#[derive(Clone, Debug)]
pub struct Balancer {
    pub listen: SocketAddr,
    pub servers: Vec<Server>,
    pub health: HealthCheck,
    /// Seconds a draining server keeps its open connections before it is stopped.
    pub drain_secs: u64,
    /// The runtime API's Unix socket.
    pub socket: PathBuf,
    /// The routes' map file (prefix → target group), which the runtime API edits in memory.
    pub routes_map: PathBuf,
}

/// The map file's text: one line per route.
pub fn routes_map(routes: &[&str]) -> String {
    routes.iter().map(|r| format!("{r} {TARGET_GROUP}\n")).collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis().max(1)
}

impl Balancer {
    /// The `haproxy.cfg` text.
    pub fn config(&self) -> String {
        let h = &self.health;
        let mut c = String::new();
        let _ = writeln!(c, "# Written by `cloudcafe cluster up`: the local stand-in for the ALB.");
        let _ = writeln!(c, "global");
        let _ = writeln!(c, "    stats socket {} mode 600 level admin", self.socket.display());
        let _ = writeln!(c, "    maxconn 4000");
        // Requests that ended abnormally (an error, a retry, a cut connection), one line each on
        // HAProxy's stdout (the cluster's haproxy.log): what the balancer saw during a fault.
        let _ = writeln!(c, "    log stdout format raw local0");
        let _ = writeln!(c);
        let _ = writeln!(c, "defaults");
        let _ = writeln!(c, "    mode http");
        let _ = writeln!(c, "    log global");
        let _ = writeln!(c, "    option httplog");
        let _ = writeln!(c, "    option dontlog-normal");
        let _ = writeln!(c, "    timeout connect 1s");
        let _ = writeln!(c, "    timeout client 60s");
        let _ = writeln!(c, "    timeout server 60s");
        let _ = writeln!(c, "    timeout http-request 5s");
        // The ALB's idle timeout (60 s): a client's idle keep-alive connection stays open that long
        // (HAProxy's default would be the 5 s request timeout).
        let _ = writeln!(c, "    timeout http-keep-alive 60s");
        let _ = writeln!(c, "    timeout check {}ms", ms(h.timeout));
        // As an ALB: a request whose connection to a target failed goes to another target; a request
        // that reached one is never sent twice (a POST is not idempotent to a balancer).
        let _ = writeln!(c, "    retries 2");
        let _ = writeln!(c, "    option redispatch");
        let _ = writeln!(c, "    retry-on conn-failure");
        let _ = writeln!(c);
        let _ = writeln!(c, "frontend api");
        let _ = writeln!(c, "    bind {}", self.listen);
        let _ = writeln!(c, "    http-request set-var(txn.route) path,map_beg({})", self.routes_map.display());
        let _ = writeln!(
            c,
            "    http-request return status 404 content-type application/json string \
             \"{{\\\"error\\\":\\\"no listener rule matches this path\\\",\\\"field\\\":\\\"path\\\"}}\" \
             if !{{ var(txn.route) -m found }}"
        );
        let _ = writeln!(c, "    use_backend %[var(txn.route)]");
        let _ = writeln!(c);
        let _ = writeln!(c, "backend {TARGET_GROUP}");
        let _ = writeln!(c, "    balance roundrobin");
        let _ = writeln!(c, "    option httpchk");
        let _ = writeln!(c, "    http-check send meth GET uri {}", h.path);
        let _ = writeln!(c, "    http-check expect status 200");
        // With no server up, the answer is the ALB's: 503.
        let _ = writeln!(
            c,
            "    default-server check inter {}ms fastinter {}ms downinter {}ms rise {} fall {}",
            ms(h.interval),
            ms(h.interval),
            ms(h.interval),
            h.rise,
            h.fall
        );
        for s in &self.servers {
            let _ = writeln!(c, "    server {} {}", s.name, s.addr);
        }
        c
    }
}

/// A failure of the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach HAProxy's runtime API at {path}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HAProxy's runtime API refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
}

/// A server's state as `show stat` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerStatus {
    pub name: String,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, `UP 1/3` (going up), `DOWN 1/2` (going down), `no check`.
    pub status: String,
    /// Requests this server answered since HAProxy started.
    pub requests: u64,
    /// Connections open to it now.
    pub current_sessions: u64,
}

impl ServerStatus {
    /// Whether the server takes new requests.
    pub fn takes_traffic(&self) -> bool {
        self.status == "UP" || self.status.starts_with("DOWN ")
    }
}

/// HAProxy's runtime API on its Unix socket.
#[derive(Clone, Debug)]
pub struct RuntimeApi {
    socket: PathBuf,
    routes_map: PathBuf,
}

impl RuntimeApi {
    pub fn new(socket: impl Into<PathBuf>, routes_map: impl Into<PathBuf>) -> Self {
        RuntimeApi { socket: socket.into(), routes_map: routes_map.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one command and returns HAProxy's whole answer.
    pub async fn command(&self, command: &str) -> Result<String, RuntimeError> {
        let connect = |source| RuntimeError::Connect { path: self.socket.display().to_string(), source };
        let mut stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(connect)?;
        stream.write_all(format!("{command}\n").as_bytes()).await.map_err(connect)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.map_err(connect)?;
        Ok(answer)
    }

    async fn expect_empty(&self, command: &str) -> Result<(), RuntimeError> {
        let answer = self.command(command).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Refused { command: command.into(), answer: answer.trim().into() })
        }
    }

    /// The routes HAProxy holds now (the map in memory, not the file).
    pub async fn routes(&self) -> Result<Vec<String>, RuntimeError> {
        let answer = self.command(&format!("show map {}", self.routes_map.display())).await?;
        // Lines: "0x55d0c8a1b2c0 /api/orders nodes".
        Ok(answer.lines().filter_map(|l| l.split_whitespace().nth(1)).map(str::to_owned).collect())
    }

    /// Removes a listener rule: its path then matches nothing (404), as when an ALB rule is deleted.
    pub async fn remove_route(&self, prefix: &str) -> Result<(), RuntimeError> {
        self.expect_empty(&format!("del map {} {prefix}", self.routes_map.display())).await
    }

    /// Puts a listener rule back (no-op if it is there).
    pub async fn add_route(&self, prefix: &str) -> Result<(), RuntimeError> {
        if self.routes().await?.iter().any(|r| r == prefix) {
            return Ok(());
        }
        self.expect_empty(&format!("add map {} {prefix} {TARGET_GROUP}", self.routes_map.display())).await
    }

    /// `ready`, `drain` (no new connections, open ones go on) or `maint`.
    pub async fn set_server_state(&self, server: &str, state: &str) -> Result<(), RuntimeError> {
        self.expect_empty(&format!("set server {TARGET_GROUP}/{server} state {state}")).await
    }

    /// Every server of the target group.
    pub async fn servers(&self) -> Result<Vec<ServerStatus>, RuntimeError> {
        let csv = self.command("show stat").await?;
        Ok(parse_stat(&csv))
    }
}

/// Reads `show stat`'s CSV: the target group's servers.
pub fn parse_stat(csv: &str) -> Vec<ServerStatus> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status), Some(req), Some(scur)) =
        (col("pxname"), col("svname"), col("status"), col("stot"), col("scur"))
    else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > status && f[px] == TARGET_GROUP && f[sv] != "BACKEND" && f[sv] != "FRONTEND")
        .map(|f| ServerStatus {
            name: f[sv].to_owned(),
            status: f[status].to_owned(),
            requests: f.get(req).and_then(|v| v.parse().ok()).unwrap_or(0),
            current_sessions: f.get(scur).and_then(|v| v.parse().ok()).unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer() -> Balancer {
        Balancer {
            listen: "127.0.0.1:9000".parse().unwrap(),
            servers: vec![
                Server { name: "node1".into(), addr: "127.0.0.1:9001".parse().unwrap() },
                Server { name: "node2".into(), addr: "127.0.0.1:9002".parse().unwrap() },
            ],
            health: HealthCheck::default(),
            drain_secs: 10,
            socket: "/tmp/x/haproxy.sock".into(),
            routes_map: "/tmp/x/routes.map".into(),
        }
    }

    #[test]
    fn the_configuration_routes_by_path_checks_health_and_names_every_server() {
        let cfg = balancer().config();
        assert!(cfg.contains("map_beg(/tmp/x/routes.map)"), "{cfg}");
        assert!(cfg.contains("http-check send meth GET uri /health"));
        assert!(cfg.contains("inter 1000ms") && cfg.contains("rise 3 fall 2"));
        assert!(cfg.contains("server node1 127.0.0.1:9001") && cfg.contains("server node2 127.0.0.1:9002"));
        assert!(cfg.contains("retry-on conn-failure"), "only what never reached a node is retried");
        assert!(!cfg.contains("retry-on all"), "a POST that reached a node is never resent");
    }

    #[test]
    fn the_map_routes_every_api_resource_to_the_target_group() {
        let map = routes_map(ALB_ROUTES);
        for prefix in ["/api/orders", "/api/menu", "/api/inventory", "/api/loyalty", "/api/payments", "/api/analytics"]
        {
            assert!(map.contains(&format!("{prefix} {TARGET_GROUP}\n")), "{prefix}");
        }
    }

    #[test]
    fn show_stat_is_read_by_column_name() {
        let csv =
            "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                   api,FRONTEND,,,1,2,20000,30,0,0,0,0,0,,,,,OPEN\n\
                   nodes,node1,0,0,3,4,,120,0,0,,0,,0,0,0,0,UP\n\
                   nodes,node2,0,0,0,4,,80,0,0,,0,,0,0,0,0,DOWN 1/2\n\
                   nodes,node3,0,0,0,4,,80,0,0,,0,,0,0,0,0,DRAIN\n\
                   nodes,BACKEND,0,0,3,4,,200,0,0,,0,,0,0,0,0,UP\n";
        let servers = parse_stat(csv);
        assert_eq!(servers.len(), 3);
        assert_eq!(
            servers[0],
            ServerStatus { name: "node1".into(), status: "UP".into(), requests: 120, current_sessions: 3 }
        );
        assert!(servers[0].takes_traffic() && servers[1].takes_traffic() && !servers[2].takes_traffic());
    }
}
