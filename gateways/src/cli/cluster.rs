//! `cloudcafe cluster up|down|status`: a local cluster the way the product runs on AWS. N `serve`
//! nodes on one PostgreSQL journal (the cluster's own server, the local Aurora) with a Redis cache
//! (its own server, the local ElastiCache), behind HAProxy configured as the ALB is, and with the
//! fault proxy between the nodes and their stores so that the chaos experiments can break the
//! network. `deploy/local/cluster.sh` installs what this needs and calls it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chaos::cluster::{free_port, wait_listening, AwsParts, Cluster, Managed, NodeProcess, Postgres};
use chaos::haproxy::{self, Balancer, RuntimeApi, Server};
use clap::{Args, Subcommand};

/// The subcommands of `cloudcafe cluster`.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start the cluster and write `cluster.json` (what was started, by PID, and how to start it again).
    Up(UpArgs),
    /// Stop exactly what `up` started, by the PIDs in `cluster.json`.
    Down(DirArgs),
    /// Show each process and what the load balancer thinks of each node.
    Status(DirArgs),
}

/// Where the cluster keeps its description, logs and data.
#[derive(Args, Clone)]
pub struct DirArgs {
    #[arg(long, env = "CLOUDCAFE_CLUSTER", default_value = ".cc-local/cluster")]
    pub dir: PathBuf,
}

/// The flags of `cloudcafe cluster up`.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// How many `serve` nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The load balancer's port (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seconds a draining node keeps its open connections (the ALB's deregistration delay, 300 s,
    /// scaled down).
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// Run the AWS parts too, on these emulators (each reached through the fault proxy): the DynamoDB
    /// read models, the payment ledger and the Kinesis consumers' leases on DynamoDB here...
    #[arg(long, requires_all = ["kinesis_endpoint", "sqs_endpoint"])]
    pub dynamodb_endpoint: Option<String>,
    /// ...the outbox and the Kinesis-fed read models on Kinesis here...
    #[arg(long, requires = "dynamodb_endpoint")]
    pub kinesis_endpoint: Option<String>,
    /// ...and the payment queue and its processor on SQS here. Needs a build with `--features cloud`.
    #[arg(long, requires = "dynamodb_endpoint")]
    pub sqs_endpoint: Option<String>,
    /// More flags for every `serve` node (after `--`).
    #[arg(last = true)]
    pub serve_args: Vec<String>,
}

/// The nodes' Kinesis shard lease timeout (`serve --lease-timeout-ms`).
const CLUSTER_LEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a `cloudcafe cluster` subcommand.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Up(args) => {
            let cluster = tokio::task::spawn_blocking(move || up(&args)).await??;
            wait_all_up(&cluster, Duration::from_secs(30)).await?;
            if cluster.aws.is_some() {
                wait_leases_settled(&cluster, Duration::from_secs(90)).await?;
            }
            println!("cluster up: {} nodes behind {}", cluster.nodes.len(), cluster.balancer_url);
            println!("export CLOUDCAFE_CLUSTER={}", cluster.dir.display());
            println!("export LB={}", cluster.balancer_url);
            println!(
                "# an admin bearer token is in {}/cluster.json (admin_token); more: cloudcafe token issue --auth-key-file {}/auth/signing-key.pem …",
                cluster.dir.display(),
                cluster.dir.display()
            );
            Ok(())
        }
        ClusterCommand::Down(args) => {
            let cluster = Cluster::load(&args.dir)?;
            tokio::task::spawn_blocking(move || cluster.down()).await??;
            std::fs::remove_file(args.dir.join(Cluster::FILE)).context("cannot remove cluster.json")?;
            println!("cluster down");
            Ok(())
        }
        ClusterCommand::Status(args) => status(&Cluster::load(&args.dir)?).await,
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What `up` has started so far, stopped again if it cannot finish: a cluster is up whole or not at all.
#[derive(Default)]
struct Started {
    pids: Vec<u32>,
    postgres: Option<Postgres>,
}

impl Started {
    fn process(&mut self, managed: Managed) -> Managed {
        self.pids.push(managed.pid);
        managed
    }

    fn stop(self) {
        for pid in self.pids.into_iter().rev() {
            let _ = chaos::cluster::stop(pid, Duration::from_secs(5));
        }
        if let Some(pg) = self.postgres {
            let _ = pg.stop("fast");
        }
    }
}

fn up(args: &UpArgs) -> anyhow::Result<Cluster> {
    let mut started = Started::default();
    let cluster = start(args, &mut started);
    if cluster.is_err() {
        started.stop();
    }
    cluster
}

fn start(args: &UpArgs, started: &mut Started) -> anyhow::Result<Cluster> {
    if args.nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    let dir = std::path::absolute(&args.dir.dir).context("cannot resolve the cluster directory")?;
    if let Ok(old) = Cluster::load(&dir) {
        if old.nodes.iter().any(|n| n.process.alive()) || old.haproxy.alive() {
            bail!("a cluster is already up in {} (cloudcafe cluster down first)", dir.display());
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let program = std::env::current_exe().context("cannot find this program")?.display().to_string();
    // One signing key for every node (as one Cognito user pool serves every task), and an admin
    // token from it for the floods, probes and experiments that drive the cluster.
    let key_file = dir.join("auth").join("signing-key.pem");
    let key = gateways::auth::LocalKey::load_or_create(&key_file)?;
    let token = key.issue(
        gateways::auth::token::LOCAL_ISSUER,
        gateways::auth::token::DEFAULT_AUDIENCE,
        "cluster-operator",
        gateways::auth::Role::Admin,
        None,
        Duration::from_secs(7 * 86_400),
    );

    // The journal's server, fresh: an experiment's verify must judge this cluster's history only.
    let pg_dir = dir.join("postgres");
    let _ = std::fs::remove_dir_all(&pg_dir);
    let postgres = Postgres {
        bin_dir: Postgres::find_bin_dir().context("no PostgreSQL server installed (deploy/local/services.sh)")?,
        data_dir: pg_dir.join("data"),
        port: free_port(),
        log: pg_dir.join("postgres.log"),
    };
    postgres.init().context("cannot create the cluster's PostgreSQL data directory")?;
    postgres.start().context("cannot start the cluster's PostgreSQL")?;
    started.postgres = Some(postgres.clone());

    let redis_port = free_port();
    let redis = started.process(Managed::spawn(
        ["redis-server", "--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(str::to_owned)
            .to_vec(),
        BTreeMap::new(),
        dir.join("redis.log"),
    )?);
    wait_listening("Redis", loopback(redis_port), Duration::from_secs(10), &redis.log)?;

    // The fault proxy between the nodes and their stores: (name, direct address, HTTP or not).
    let mut stores =
        vec![("postgres", postgres.addr().to_string(), false), ("redis", loopback(redis_port).to_string(), false)];
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let aws = args.dynamodb_endpoint.as_ref().map(|dynamodb| AwsParts {
        dynamodb_endpoint: dynamodb.clone(),
        kinesis_endpoint: args.kinesis_endpoint.clone().unwrap_or_default(),
        sqs_endpoint: args.sqs_endpoint.clone().unwrap_or_default(),
        dynamodb_env: format!("cluster{id}"),
        kinesis_stream: format!("order-events-{id}"),
        payment_queue: format!("payment-requests-{id}.fifo"),
        payment_dlq: format!("payment-requests-dlq-{id}.fifo"),
        payments_table: format!("payments-{id}"),
        lease_table_prefix: format!("leases-{id}"),
    });
    if let Some(aws) = &aws {
        for (name, endpoint) in
            [("dynamodb", &aws.dynamodb_endpoint), ("kinesis", &aws.kinesis_endpoint), ("sqs", &aws.sqs_endpoint)]
        {
            stores.push((name, host_port(endpoint)?, true));
        }
    }
    let control = free_port();
    let mut via = BTreeMap::new();
    let mut proxy_argv =
        vec![program.clone(), "chaos".into(), "proxy".into(), "--control".into(), loopback(control).to_string()];
    for (name, direct, http) in &stores {
        let port = free_port();
        via.insert(*name, loopback(port));
        proxy_argv.push("--proxy".into());
        proxy_argv.push(format!("{name}={}->{direct}{}", loopback(port), if *http { "/http" } else { "" }));
    }
    let proxy = started.process(Managed::spawn(proxy_argv, BTreeMap::new(), dir.join("proxy.log"))?);
    wait_listening("the fault proxy", loopback(control), Duration::from_secs(10), &proxy.log)?;
    let (pg_via, redis_via) = (via["postgres"].port(), via["redis"].port());

    let journal = format!("postgres://postgres@127.0.0.1:{pg_via}/postgres");
    let redis_url = format!("redis://127.0.0.1:{redis_via}");
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        let name = format!("node{i}");
        let listen = loopback(free_port());
        let mut argv = vec![
            program.clone(),
            "serve".into(),
            "--listen".into(),
            listen.to_string(),
            "--journal".into(),
            journal.clone(),
            "--pg-schema".into(),
            "cloudcafe".into(),
            "--redis-url".into(),
            redis_url.clone(),
        ];
        if let Some(aws) = &aws {
            argv.extend(
                [
                    "--dynamodb-env",
                    &aws.dynamodb_env,
                    "--dynamodb-endpoint",
                    &format!("http://{}", via["dynamodb"]),
                    "--kinesis-stream",
                    &aws.kinesis_stream,
                    "--kinesis-endpoint",
                    &format!("http://{}", via["kinesis"]),
                    "--sqs-endpoint",
                    &format!("http://{}", via["sqs"]),
                    "--payment-queue",
                    &aws.payment_queue,
                    "--payment-dlq",
                    &aws.payment_dlq,
                    "--payments-table",
                    &aws.payments_table,
                    "--payment-wait-secs",
                    "1",
                    "--projections-from",
                    "kinesis",
                    "--lease-table-prefix",
                    &aws.lease_table_prefix,
                    "--lease-timeout-ms",
                    &CLUSTER_LEASE_TIMEOUT.as_millis().to_string(),
                    "--worker-id",
                    &name,
                ]
                .map(str::to_owned),
            );
        }
        argv.extend(args.serve_args.iter().cloned());
        let env = BTreeMap::from([("CLOUDCAFE_AUTH_KEY_FILE".to_owned(), key_file.display().to_string())]);
        let process = started.process(Managed::spawn(argv, env, dir.join(format!("{name}.log")))?);
        // The first node creates the tables and seeds the demo menu alone.
        if i == 1 {
            wait_listening(&name, listen, Duration::from_secs(60), &process.log)?;
        }
        nodes.push(NodeProcess { name, listen, process });
    }
    for node in &nodes {
        wait_listening(&node.name, node.listen, Duration::from_secs(60), &node.process.log)?;
    }

    let lb = loopback(if args.port == 0 { free_port() } else { args.port });
    let balancer = Balancer {
        listen: lb,
        servers: nodes.iter().map(|n| Server { name: n.name.clone(), addr: n.listen }).collect(),
        health: haproxy::HealthCheck::default(),
        drain_secs: args.drain_secs,
        socket: dir.join("haproxy.sock"),
        routes_map: dir.join("routes.map"),
    };
    write(&balancer.routes_map, &haproxy::routes_map(haproxy::ALB_ROUTES))?;
    let config = dir.join("haproxy.cfg");
    write(&config, &balancer.config())?;
    let _ = std::fs::remove_file(&balancer.socket);
    let haproxy = started.process(
        Managed::spawn(
            vec!["haproxy".into(), "-db".into(), "-f".into(), config.display().to_string()],
            BTreeMap::new(),
            dir.join("haproxy.log"),
        )
        .context("cannot start HAProxy (deploy/local/cluster.sh installs it)")?,
    );
    wait_listening("HAProxy", lb, Duration::from_secs(10), &haproxy.log)?;

    let cluster = Cluster {
        dir: dir.clone(),
        balancer_url: format!("http://{lb}"),
        haproxy,
        haproxy_socket: balancer.socket,
        routes_map: balancer.routes_map,
        proxy,
        proxy_control: format!("http://{}", loopback(control)),
        journal_direct: format!("postgres://postgres@127.0.0.1:{}/postgres", postgres.port),
        postgres,
        redis,
        redis_port,
        journal,
        pg_schema: "cloudcafe".into(),
        redis_url,
        admin_token: token,
        nodes,
        drain_secs: args.drain_secs,
        stores: stores.into_iter().map(|(name, direct, _)| (name.to_owned(), direct)).collect(),
        aws,
    };
    cluster.save()?;
    Ok(cluster)
}

/// `host:port` of an endpoint URL (`http://127.0.0.1:5056` → `127.0.0.1:5056`).
fn host_port(endpoint: &str) -> anyhow::Result<String> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or_default();
    if !host_port.contains(':') {
        bail!("{endpoint}: give the port (an emulator's endpoint, http://host:port)");
    }
    Ok(host_port.to_owned())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The load balancer's view: waits until every node takes traffic.
pub async fn wait_all_up(cluster: &Cluster, within: Duration) -> anyhow::Result<()> {
    let api = RuntimeApi::new(&cluster.haproxy_socket, &cluster.routes_map);
    let deadline = Instant::now() + within;
    loop {
        let servers = api.servers().await.unwrap_or_default();
        if !servers.is_empty() && servers.iter().all(|s| s.status == "UP") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the load balancer does not see every node up: {servers:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the nodes' Kinesis consumers have shared out the shard leases: the first node up
/// takes every lease and the others steal their share, and a node learns it lost one only at its
/// next renewal. Until that settles a lease changes hands with no fault at all, which an
/// experiment's "no lease lost or stolen" would count against its fault. Settled: some lease was
/// taken, and no lease changed hands for a whole lease timeout.
async fn wait_leases_settled(cluster: &Cluster, within: Duration) -> anyhow::Result<()> {
    let name = events::metric::CONSUMER_LEASE_CHANGES.name;
    let deadline = Instant::now() + within;
    let (mut last, mut since) = (f64::NAN, Instant::now());
    loop {
        let changes = crate::cli::chaos::probe::metric_sum(cluster, name, &[]).await;
        if changes != last {
            (last, since) = (changes, Instant::now());
        } else if changes > 0.0 && since.elapsed() >= CLUSTER_LEASE_TIMEOUT {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the nodes' shard leases still change hands after {} s ({changes} changes)", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn status(cluster: &Cluster) -> anyhow::Result<()> {
    let alive = |m: &Managed| if m.alive() { format!("pid {}", m.pid) } else { "not running".to_owned() };
    println!("load balancer  {}  {}", cluster.balancer_url, alive(&cluster.haproxy));
    println!("fault proxy    {}  {}", cluster.proxy_control, alive(&cluster.proxy));
    let pg = cluster.postgres.pid().map(|p| format!("pid {p}")).unwrap_or_else(|| "not running".into());
    println!("postgresql     127.0.0.1:{}  {pg}", cluster.postgres.port);
    println!("redis          127.0.0.1:{}  {}", cluster.redis_port, alive(&cluster.redis));
    let servers = RuntimeApi::new(&cluster.haproxy_socket, &cluster.routes_map).servers().await.unwrap_or_default();
    for node in &cluster.nodes {
        let seen = servers.iter().find(|s| s.name == node.name).map(|s| s.status.as_str()).unwrap_or("?");
        println!("{:<14} {}  {}  balancer: {seen}", node.name, node.listen, alive(&node.process));
    }
    Ok(())
}
