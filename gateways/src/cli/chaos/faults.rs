//! The faults an experiment injects into the local cluster, and how each is undone. Each is a real
//! fault on a real process or connection: a signal to a node, an immediate shutdown of the journal's
//! PostgreSQL server, `FLUSHALL` or SIGKILL on Redis, a listener rule deleted from HAProxy, or the
//! fault proxy between the nodes and their stores slowing, refusing or resetting connections.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chaos::cluster::{self, Cluster};
use chaos::haproxy::{self, RuntimeApi};
use chaos::proxy::{control::Client, Faults, HttpErrors};
use clap::Subcommand;
use gateways::flood::arrivals::parse_duration;

use super::ClusterArgs;

/// A fault to inject.
#[derive(Subcommand)]
pub enum Fault {
    /// SIGKILL (or another signal) to a share of the nodes, or to one by name: an ECS task killed.
    KillNodes {
        /// The share of the nodes (rounded up), the first ones by name.
        #[arg(long, default_value_t = 0.5)]
        share: f64,
        #[arg(long, conflicts_with = "share")]
        node: Option<String>,
        #[arg(long, default_value = "KILL")]
        signal: String,
    },
    /// Stop one node gracefully, as ECS stops a task behind an ALB: the balancer drains it (no new
    /// connections), then SIGTERM; the node finishes what it is doing and exits.
    DrainNode {
        #[arg(long, default_value = "node1")]
        node: String,
        /// How long the balancer drains the node before the SIGTERM (default: the cluster's
        /// deregistration delay).
        #[arg(long, value_parser = parse_duration)]
        drain: Option<Duration>,
    },
    /// Crash the journal's PostgreSQL server (`pg_ctl stop -m immediate`: no checkpoint, every
    /// connection cut) and start it again after --down-for, as an Aurora failover does.
    PostgresCrash {
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        down_for: Duration,
    },
    /// Terminate every client backend of the journal's PostgreSQL server (every pooled connection
    /// of every node dies at once).
    PostgresTerminateBackends,
    /// `FLUSHALL` on the cache's Redis server.
    RedisFlush,
    /// SIGKILL the cache's Redis server and start it again after --down-for (empty, as MemoryDB
    /// after a node replacement without a snapshot).
    RedisKill {
        #[arg(long, value_parser = parse_duration, default_value = "3s")]
        down_for: Duration,
    },
    /// Remove a listener rule from the load balancer: the path then matches nothing (404).
    RemoveRoute {
        #[arg(long, default_value = "/api/orders")]
        path: String,
    },
    /// Add latency (with jitter) to every chunk between the nodes and a store.
    Latency {
        #[arg(long, default_value = "postgres")]
        to: String,
        #[arg(long, default_value_t = 200)]
        ms: u64,
        #[arg(long, default_value_t = 50)]
        jitter_ms: u64,
    },
    /// Cap the bandwidth between the nodes and a store (KiB/s per connection and direction); keeps
    /// any latency already injected.
    Bandwidth {
        #[arg(long, default_value = "postgres")]
        to: String,
        #[arg(long)]
        kbps: u64,
    },
    /// Refuse new connections to a store (a security group that no longer allows them); with
    /// --reset, also cut the open ones.
    Refuse {
        #[arg(long, default_value = "postgres")]
        to: String,
        #[arg(long)]
        reset: bool,
    },
    /// A black hole between the nodes and a store: nothing answers, nothing is refused.
    Blackhole {
        #[arg(long, default_value = "postgres")]
        to: String,
    },
    /// Answer a share of a store's HTTP requests with an error (default: DynamoDB's
    /// ProvisionedThroughputExceededException).
    HttpErrors {
        #[arg(long, default_value = "dynamodb")]
        to: String,
        #[arg(long, default_value_t = 0.3)]
        share: f64,
    },
}

/// What to undo.
#[derive(Subcommand)]
pub enum Revert {
    /// Start every node that is not running (as ECS replaces a stopped task) and put every node back
    /// into the load balancer; waits until the balancer sees them up.
    Nodes,
    /// Put a removed listener rule back (every rule, without --path).
    Route {
        #[arg(long)]
        path: Option<String>,
    },
    /// Clear the faults of one proxied store (every one, without --to).
    Network {
        #[arg(long)]
        to: Option<String>,
    },
    /// Start the journal's PostgreSQL and the cache's Redis if they are down.
    Stores,
    /// Everything above: the rollback every experiment ends with.
    All,
}

/// Injects `fault`.
pub async fn inject(args: &ClusterArgs, fault: Fault) -> anyhow::Result<()> {
    let mut cluster = args.load()?;
    let balancer = RuntimeApi::new(&cluster.haproxy_socket, &cluster.routes_map);
    let proxy = Client::new(&cluster.proxy_control)?;
    match fault {
        Fault::KillNodes { share, node, signal } => {
            let names: Vec<String> = match node {
                Some(name) => vec![cluster.node(&name)?.name.clone()],
                None => {
                    let n = ((cluster.nodes.len() as f64) * share.clamp(0.0, 1.0)).ceil() as usize;
                    cluster.nodes.iter().take(n).map(|node| node.name.clone()).collect()
                }
            };
            for name in &names {
                let pid = cluster.node(name)?.process.pid;
                cluster::signal(pid, &signal)?;
                println!("{name} (pid {pid}): SIG{signal}");
            }
        }
        Fault::DrainNode { node, drain } => {
            let pid = cluster.node(&node)?.process.pid;
            balancer.set_server_state(&node, "drain").await?;
            let drain = drain.unwrap_or(Duration::from_secs(cluster.drain_secs));
            // Drained: no connection of the balancer's is open to it, or the delay is over.
            let deadline = Instant::now() + drain;
            while Instant::now() < deadline {
                let servers = balancer.servers().await?;
                if servers.iter().any(|s| s.name == node && s.current_sessions == 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cluster::signal(pid, "TERM")?;
            let gone = tokio::task::spawn_blocking(move || cluster::wait_gone(pid, Duration::from_secs(15))).await?;
            if !gone {
                bail!("{node} (pid {pid}) did not stop within 15 s of SIGTERM");
            }
            println!("{node} drained and stopped (pid {pid})");
        }
        Fault::PostgresCrash { down_for } => {
            let pg = cluster.postgres.clone();
            tokio::task::spawn_blocking(move || pg.stop("immediate")).await??;
            println!("PostgreSQL crashed (immediate shutdown); down for {down_for:?}");
            tokio::time::sleep(down_for).await;
            let pg = cluster.postgres.clone();
            tokio::task::spawn_blocking(move || pg.start()).await??;
            println!("PostgreSQL started again (crash recovery done)");
        }
        Fault::PostgresTerminateBackends => {
            let pg = cluster.postgres.clone();
            let n = tokio::task::spawn_blocking(move || {
                pg.psql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
            })
            .await??;
            println!("terminated {} backends", n.trim());
        }
        Fault::RedisFlush => {
            let answer = redis_command(cluster.redis_port, "FLUSHALL")?;
            println!("FLUSHALL: {answer}");
        }
        Fault::RedisKill { down_for } => {
            cluster::signal(cluster.redis.pid, "KILL")?;
            println!("Redis (pid {}) killed; down for {down_for:?}", cluster.redis.pid);
            tokio::time::sleep(down_for).await;
            start_redis(&mut cluster)?;
            println!("Redis started again, empty (pid {})", cluster.redis.pid);
        }
        Fault::RemoveRoute { path } => {
            balancer.remove_route(&path).await?;
            println!("listener rule {path} removed");
        }
        Fault::Latency { to, ms, jitter_ms } => {
            let mut faults = current(&proxy, &to).await?;
            faults.latency_ms = ms;
            faults.jitter_ms = jitter_ms;
            proxy.set(&to, &faults).await?;
            println!("{to}: {ms} ms ± {jitter_ms} ms");
        }
        Fault::Bandwidth { to, kbps } => {
            let mut faults = current(&proxy, &to).await?;
            faults.bandwidth_kbps = Some(kbps);
            proxy.set(&to, &faults).await?;
            println!("{to}: {kbps} KiB/s");
        }
        Fault::Refuse { to, reset } => {
            proxy.set(&to, &Faults { refuse: true, ..Faults::default() }).await?;
            if reset {
                let n = proxy.reset(&to).await?;
                println!("{to}: new connections refused, {n} open ones reset");
            } else {
                println!("{to}: new connections refused");
            }
        }
        Fault::Blackhole { to } => {
            proxy.set(&to, &Faults { timeout: true, ..Faults::default() }).await?;
            println!("{to}: black hole");
        }
        Fault::HttpErrors { to, share } => {
            let faults = Faults { http_errors: Some(HttpErrors::dynamodb_throttling(share)), ..Faults::default() };
            proxy.set(&to, &faults).await?;
            println!("{to}: {:.0} % of requests throttled", share * 100.0);
        }
    }
    Ok(())
}

/// The faults a proxied store has now.
async fn current(proxy: &Client, name: &str) -> anyhow::Result<Faults> {
    let list = proxy.list().await?;
    let faults = list.get(name).and_then(|p| p.get("faults")).with_context(|| format!("no proxy named {name}"))?;
    Ok(serde_json::from_value(faults.clone())?)
}

/// Undoes `what`.
pub async fn revert(args: &ClusterArgs, what: Revert) -> anyhow::Result<()> {
    let mut cluster = args.load()?;
    match what {
        Revert::Nodes => restart_nodes(&mut cluster).await,
        Revert::Route { path } => restore_routes(&cluster, path.as_deref()).await,
        Revert::Network { to } => {
            let proxy = Client::new(&cluster.proxy_control)?;
            match to {
                Some(name) => proxy.clear(&name).await?,
                None => proxy.clear_all().await?,
            }
            println!("network faults cleared");
            Ok(())
        }
        Revert::Stores => restart_stores(&mut cluster).await,
        Revert::All => {
            // Each step is tried even when one before failed: a rollback undoes all it can.
            let mut failures = Vec::new();
            if let Err(e) = Client::new(&cluster.proxy_control)?.clear_all().await {
                failures.push(format!("network: {e:#}"));
            }
            if let Err(e) = restart_stores(&mut cluster).await {
                failures.push(format!("stores: {e:#}"));
            }
            if let Err(e) = restore_routes(&cluster, None).await {
                failures.push(format!("routes: {e:#}"));
            }
            if let Err(e) = restart_nodes(&mut cluster).await {
                failures.push(format!("nodes: {e:#}"));
            }
            if failures.is_empty() {
                println!("every fault undone");
                Ok(())
            } else {
                bail!("the rollback could not undo everything: {}", failures.join("; "))
            }
        }
    }
}

async fn restart_nodes(cluster: &mut Cluster) -> anyhow::Result<()> {
    let names: Vec<String> = cluster.nodes.iter().filter(|n| !n.process.alive()).map(|n| n.name.clone()).collect();
    for name in &names {
        cluster.restart_node(name)?;
        println!("{name} started again (pid {})", cluster.node(name)?.process.pid);
    }
    let balancer = RuntimeApi::new(&cluster.haproxy_socket, &cluster.routes_map);
    for node in &cluster.nodes {
        balancer.set_server_state(&node.name, "ready").await?;
    }
    crate::cli::cluster::wait_all_up(cluster, Duration::from_secs(30)).await
}

async fn restore_routes(cluster: &Cluster, path: Option<&str>) -> anyhow::Result<()> {
    let balancer = RuntimeApi::new(&cluster.haproxy_socket, &cluster.routes_map);
    match path {
        Some(path) => balancer.add_route(path).await?,
        None => {
            for path in haproxy::ALB_ROUTES {
                balancer.add_route(path).await?;
            }
        }
    }
    println!("listener rules restored");
    Ok(())
}

async fn restart_stores(cluster: &mut Cluster) -> anyhow::Result<()> {
    if cluster.postgres.pid().is_none() {
        let pg = cluster.postgres.clone();
        tokio::task::spawn_blocking(move || pg.start()).await??;
        println!("PostgreSQL started again");
    }
    if !cluster.redis.alive() {
        start_redis(cluster)?;
        println!("Redis started again");
    }
    Ok(())
}

fn start_redis(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.redis.start()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], cluster.redis_port));
    cluster::wait_listening("Redis", addr, Duration::from_secs(10), &cluster.redis.log)?;
    cluster.save()?;
    Ok(())
}

/// One Redis command without arguments, straight to the server (not through the fault proxy).
fn redis_command(port: u16, command: &str) -> anyhow::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).context("cannot reach Redis")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("*1\r\n${}\r\n{command}\r\n", command.len()).as_bytes())?;
    let mut answer = [0u8; 256];
    let n = stream.read(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer[..n]).trim().to_owned())
}
