//! One CloudCafe node: the journal, the actors and their freshness follower, the saga and the
//! storefront projection, started from typed settings. `main` and the tests both start nodes this way.

use events::metric;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actors::cafe::{Cafe, PaymentPolicy};
use actors::domain::menu::MenuCommand;
use actors::freshness::FreshnessFollower;
use actors::host::{start_arbiters, HostOptions};
use actors::pickup::PickupTimer;
use actors::saga::OrderSaga;
use events::domain::Nutrition;
use events::follow::{follow, FollowOptions, Follower, Stall, Stalls};
use events::journal::sleep_or_stop;
use events::postgres::{connect_pool, PgJournal, PgOptions, PgSecurity};
use events::singleton::{LocalSingletons, PgSingletons, SingletonLocks};
use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{Causation, Journal};
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::cache::{CacheSettings, CachedSink, ReadCache};
use projections::read_models::runner::{follower_name, ProjectionRunner};
use projections::read_models::storefront::postgres::PgStorefront;
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::read_models::storefront::StorefrontQueries;
use projections::{Rebuildable, Sink};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where events and read models live.
#[derive(Clone)]
pub enum Storage {
    /// Files under a directory: `journal.db` and `readmodel.db` (SQLite, WAL).
    Embedded { data_dir: PathBuf },
    /// Aurora PostgreSQL: journal and read model in one database (optionally one schema), reached
    /// with `security` (TLS, a password kept out of the URL).
    Postgres { url: String, schema: Option<String>, security: PgSecurity },
}

impl Storage {
    /// The PostgreSQL options of this storage, if it is PostgreSQL.
    pub fn pg_options(&self) -> Option<PgOptions> {
        match self {
            Storage::Embedded { .. } => None,
            Storage::Postgres { url, schema, security } => Some(pg_options(url, schema, security)),
        }
    }
}

/// Shows a PostgreSQL URL without its password (the settings are logged when a node starts).
impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Embedded { data_dir } => f.debug_struct("Embedded").field("data_dir", data_dir).finish(),
            Storage::Postgres { url, schema, security } => f
                .debug_struct("Postgres")
                .field("url", &events::secret::redact(url))
                .field("schema", schema)
                .field("security", security)
                .finish(),
        }
    }
}

#[derive(Clone)]
pub struct NodeSettings {
    pub storage: Storage,
    pub host: HostOptions,
    pub payment: PaymentPolicy,
    /// How long a ready order waits for its customer before the pickup timer abandons it.
    pub pickup_window: Duration,
    /// Threads that actors live on.
    pub actor_threads: usize,
    /// Publish a demo menu and stock when the journal is empty.
    pub seed_demo: bool,
    /// The Redshift cluster (PostgreSQL wire protocol) for the analytics model; `None` runs without it.
    pub analytics: Option<PgOptions>,
    /// The analytics model follows the analytics Kinesis stream (its consumer is started with the
    /// messaging), not the journal.
    pub analytics_from_stream: bool,
    /// Redis in front of the read models: `(url, settings)`; `None` reads the models directly.
    pub cache: Option<(String, CacheSettings)>,
    /// More read models to keep (DynamoDB, DocumentDB), built by the caller around its own clients.
    pub extra_projections: Vec<Arc<dyn Rebuildable>>,
}

impl NodeSettings {
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        NodeSettings {
            storage: Storage::Embedded { data_dir: data_dir.into() },
            host: HostOptions::default(),
            payment: PaymentPolicy::default(),
            pickup_window: actors::cafe::DEFAULT_PICKUP_WINDOW,
            actor_threads: 2,
            seed_demo: false,
            analytics: None,
            analytics_from_stream: false,
            cache: None,
            extra_projections: Vec::new(),
        }
    }
}

/// The storefront as both a query side and a rebuildable sink.
pub trait StorefrontStore: Rebuildable + StorefrontQueries {}
impl<T: Rebuildable + StorefrontQueries> StorefrontStore for T {}

/// Opens (and migrates) the journal and the storefront, starting nothing else.
pub async fn open_stores(storage: &Storage) -> Result<(Arc<dyn Journal>, Arc<dyn StorefrontStore>), StartError> {
    Ok(match storage {
        Storage::Embedded { data_dir } => (
            Arc::new(SqliteJournal::open(data_dir, SqliteOptions::default())?),
            Arc::new(SqliteStorefront::open(data_dir)?),
        ),
        Storage::Postgres { url, schema, security } => {
            let options = pg_options(url, schema, security);
            let journal = Arc::new(PgJournal::connect(options.clone()).await?);
            (journal, Arc::new(PgStorefront::new(connect_pool(&options).await?).await?))
        }
    })
}

fn pg_options(url: &str, schema: &Option<String>, security: &PgSecurity) -> PgOptions {
    let mut options = PgOptions::new(url).with_security(security.clone());
    options.schema.clone_from(schema);
    options
}

/// How often a node that waits for a follower's lock tries again, and how often the holder checks
/// that it still holds it: the longest a cluster goes without the follower after its node died.
const SINGLETON_INTERVAL: Duration = Duration::from_secs(1);

/// Runs a journal follower ([`follow`] with `options`) on this node only while it holds the
/// follower's singleton lock `name`, so that one node of a cluster runs it; when the holder dies
/// another node's call takes over. The follower is stopped when the lock is lost and followed again,
/// from its own position, whenever the lock comes back. The returned task ends when `stop` turns true.
pub fn spawn_singleton<F: Follower + 'static>(
    locks: Arc<dyn SingletonLocks>,
    name: String,
    journal: Arc<dyn Journal>,
    follower: Arc<F>,
    options: FollowOptions,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // 0 until this node holds the lock: every node shows who runs what.
        metric::SINGLETON_HELD.gauge(&[("follower", name.clone())]).set(0.0);
        loop {
            let mut held = loop {
                if *stop.borrow() {
                    return;
                }
                match locks.try_acquire(&name).await {
                    Ok(Some(held)) => break held,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(follower = %name, error = %events::ErrorChain(&e), "cannot reach the singleton locks")
                    }
                }
                if sleep_or_stop(&mut stop, SINGLETON_INTERVAL).await {
                    return;
                }
            };
            tracing::info!(follower = %name, "this node runs the follower");
            metric::SINGLETON_HELD.gauge(&[("follower", name.clone())]).set(1.0);
            let (halt, halted) = watch::channel(false);
            let following = tokio::spawn({
                let (journal, follower) = (journal.clone(), follower.clone());
                async move { follow(journal, follower.as_ref(), options, halted).await }
            });
            let stopping = loop {
                if sleep_or_stop(&mut stop, SINGLETON_INTERVAL).await {
                    break true;
                }
                if !held.still_held().await {
                    tracing::warn!(follower = %name, "singleton lock lost; stopping the follower");
                    break false;
                }
            };
            let _ = halt.send(true);
            let _ = following.await;
            drop(held);
            metric::SINGLETON_HELD.gauge(&[("follower", name.clone())]).set(0.0);
            if stopping {
                return;
            }
        }
    })
}

/// A running node. Dropping it stops the saga and the projection.
pub struct Node {
    pub journal: Arc<dyn Journal>,
    pub cafe: Arc<Cafe>,
    pub storefront: Arc<dyn StorefrontQueries>,
    pub storefront_sink: Arc<dyn Sink>,
    pub analytics: Option<Arc<AnalyticsSink>>,
    pub cache: Option<Arc<ReadCache>>,
    /// Every projection this node runs, for lag reports.
    pub projections: Vec<Arc<dyn Sink>>,
    /// The same read models as rebuildable stores, for a comparison with a rebuild (`verify`).
    pub read_models: Vec<Arc<dyn Rebuildable>>,
    /// The projections' stalls, while this node runs them.
    pub stalls: Stalls,
    /// The locks that make one node of a cluster run each journal follower.
    pub singletons: Arc<dyn SingletonLocks>,
    stop: watch::Sender<bool>,
}

impl Node {
    /// Turns true when the node stops: tasks started beside it (publishers, consumers) watch it.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("journal: {0}")]
    Journal(#[from] events::StoreError),
    #[error("read model: {0}")]
    ReadModel(#[from] projections::SinkError),
    #[error("cannot connect the read cache")]
    Cache(#[from] projections::read_models::cache::CacheError),
    #[error("seeding the demo menu: {0}")]
    Seed(#[from] actors::cafe::CafeError),
}

impl Node {
    /// Opens the stores, starts the actors' threads, the saga and the storefront projection.
    /// Must run inside an actix system (actors need arbiters).
    pub async fn start(settings: NodeSettings) -> Result<Node, StartError> {
        let (journal, store) = open_stores(&settings.storage).await?;
        let mut read_models: Vec<Arc<dyn Rebuildable>> = vec![store.clone()];
        let (storefront, sink): (Arc<dyn StorefrontQueries>, Arc<dyn Sink>) = (store.clone(), store);
        let mut cafe =
            Cafe::new(journal.clone(), settings.host.clone(), settings.payment, start_arbiters(settings.actor_threads));
        cafe.pickup_window = settings.pickup_window;
        let cafe = Arc::new(cafe);
        let (stop, stopped) = watch::channel(false);
        // On every node, not one per cluster: each node's own actors must learn what the others wrote.
        let freshness = FreshnessFollower::new(journal.clone(), cafe.freshness.clone(), settings.host.freshness_poll);
        tokio::spawn(freshness.run(stopped.clone()));
        if settings.seed_demo && journal.head_position().await? == 0 {
            seed_demo(&cafe).await?;
        }
        let analytics = match &settings.analytics {
            Some(options) => Some(Arc::new(AnalyticsSink::new(connect_pool(options).await?).await?)),
            None => None,
        };
        let cache = match &settings.cache {
            Some((url, cache_settings)) => Some(Arc::new(ReadCache::connect(url, cache_settings.clone()).await?)),
            None => None,
        };
        // With a cache, the storefront's pages also invalidate what they changed, once applied.
        let storefront_runner: Arc<dyn Sink> = match &cache {
            Some(c) => Arc::new(CachedSink::new(sink.clone(), c.clone())),
            None => sink.clone(),
        };
        let mut projections: Vec<Arc<dyn Sink>> = vec![storefront_runner];
        if let Some(a) = &analytics {
            if !settings.analytics_from_stream {
                projections.push(a.clone());
            }
            read_models.push(a.clone());
        }
        projections.extend(settings.extra_projections.iter().map(|p| p.clone() as Arc<dyn Sink>));
        read_models.extend(settings.extra_projections.iter().cloned());
        let singletons: Arc<dyn SingletonLocks> = match &settings.storage {
            Storage::Embedded { .. } => Arc::new(LocalSingletons::default()),
            Storage::Postgres { url, schema, security } => {
                Arc::new(PgSingletons::new(&pg_options(url, schema, security))?)
            }
        };
        let saga = Arc::new(OrderSaga::new(cafe.clone()));
        let lock = actors::saga::CHECKPOINT.to_owned();
        spawn_singleton(singletons.clone(), lock, journal.clone(), saga, FollowOptions::default(), stopped.clone());
        let timer = Arc::new(PickupTimer::new(cafe.clone()));
        let lock = actors::pickup::CHECKPOINT.to_owned();
        spawn_singleton(singletons.clone(), lock, journal.clone(), timer, FollowOptions::default(), stopped.clone());
        let stalls = Stalls::default();
        for p in &projections {
            let runner = ProjectionRunner::new(journal.clone(), p.clone()).with_stalls(stalls.clone());
            let (lock, options) = (format!("projection:{}", p.name()), runner.options());
            spawn_singleton(singletons.clone(), lock, journal.clone(), Arc::new(runner), options, stopped.clone());
        }
        Ok(Node {
            journal,
            cafe,
            storefront,
            storefront_sink: sink,
            analytics,
            cache,
            projections,
            read_models,
            stalls,
            singletons,
            stop,
        })
    }
}

/// The demo catalogue: what `serve` publishes into an empty journal so that orders can be placed at once.
pub const DEMO_MENU: &[(&str, &str, &str, i64, Nutrition)] = &[
    ("latte", "Caffè Latte", "coffee", 450, Nutrition { calories: 190, caffeine_mg: 150, sugar_g: 17 }),
    ("cappuccino", "Cappuccino", "coffee", 425, Nutrition { calories: 140, caffeine_mg: 150, sugar_g: 12 }),
    ("americano", "Americano", "coffee", 350, Nutrition { calories: 15, caffeine_mg: 225, sugar_g: 0 }),
    ("mocha", "Caffè Mocha", "coffee", 495, Nutrition { calories: 370, caffeine_mg: 175, sugar_g: 35 }),
    ("cold-brew", "Cold Brew", "coffee", 475, Nutrition { calories: 5, caffeine_mg: 205, sugar_g: 0 }),
    ("chai-latte", "Chai Latte", "tea", 445, Nutrition { calories: 240, caffeine_mg: 95, sugar_g: 42 }),
    ("croissant", "Butter Croissant", "bakery", 325, Nutrition { calories: 260, caffeine_mg: 0, sugar_g: 6 }),
    ("blueberry-muffin", "Blueberry Muffin", "bakery", 295, Nutrition { calories: 360, caffeine_mg: 0, sugar_g: 33 }),
];

/// The demo has no images: a stand-in hash derived from the item id, as a real pipeline would derive
/// it from the image bytes.
fn image_hash(item_id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("image:{item_id}").as_bytes()))
}
pub const DEMO_STORES: &[&str] = &["store-1", "store-2", "store-3"];
pub const DEMO_STOCK: i64 = 1000;

/// Opens the demo stores, publishes the demo menu and stocks every store with every item.
pub async fn seed_demo(cafe: &Cafe) -> Result<(), actors::cafe::CafeError> {
    let causation = Causation::new_root();
    for (i, store) in DEMO_STORES.iter().enumerate() {
        cafe.open_store(store, &format!("CloudCafe #{}", i + 1), causation).await?;
    }
    for (item_id, name, category, price_cents, nutrition) in DEMO_MENU {
        let command = MenuCommand::Publish {
            item_id: (*item_id).into(),
            name: (*name).into(),
            category: (*category).into(),
            price_cents: *price_cents,
            nutrition: *nutrition,
            image_sha256: image_hash(item_id),
        };
        cafe.publish_menu_item(command, causation).await?;
        for store in DEMO_STORES {
            cafe.restock(store, item_id, DEMO_STOCK, causation).await?;
        }
    }
    tracing::info!(items = DEMO_MENU.len(), stores = DEMO_STORES.len(), "published the demo menu and stock");
    Ok(())
}

/// Waits until the storefront has applied everything committed so far (tests and demos).
pub async fn storefront_caught_up(node: &Node, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let head = node.journal.head_position().await.unwrap_or(u64::MAX);
        if node.storefront_sink.position().await.is_ok_and(|p| p >= head) {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How far one projection trails the journal.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProjectionLag {
    pub name: String,
    /// `journal`, or `kinesis` for a model fed from the stream by this node's consumer.
    #[schema(value_type = String, pattern = "^(journal|kinesis)$")]
    pub source: &'static str,
    /// For `kinesis`: the highest journal position applied by this node.
    pub position: u64,
    pub head: u64,
    /// For `kinesis`: head − position, an estimate (other shards and nodes apply the rest).
    pub events_behind: u64,
    /// Age of the oldest event not yet applied (0 when caught up); for `kinesis`, the most any shard
    /// read here is behind the stream's tip.
    pub seconds_behind: f64,
    /// For `kinesis`: the shards this node reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<String>>,
    /// The event this projection is stalled on (it cannot apply it), when this node runs it and it
    /// is stalled; `null` otherwise.
    #[schema(required = true)]
    pub stalled: Option<ProjectionStall>,
}

/// The event a projection is stalled on: see `cloudcafe projections park`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ProjectionStall {
    /// The event's global position (what `cloudcafe projections park --position` takes).
    pub position: u64,
    pub stream_id: String,
    pub event_type: String,
    /// Why the read model refused it, with its causes.
    pub error: String,
    /// Since when, in RFC 3339 (UTC).
    #[schema(format = DateTime)]
    pub since: String,
}

impl From<Stall> for ProjectionStall {
    fn from(s: Stall) -> Self {
        let since = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(s.since_us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default();
        ProjectionStall {
            position: s.position,
            stream_id: s.stream_id,
            event_type: s.event_type,
            error: s.error,
            since,
        }
    }
}

impl ProjectionLag {
    pub fn fed_from_kinesis(name: &str, head: u64, lag: &dyn projections::StreamFedLag) -> Self {
        let position = lag.newest_position();
        ProjectionLag {
            name: name.to_owned(),
            source: "kinesis",
            position,
            head,
            events_behind: head.saturating_sub(position),
            seconds_behind: lag.millis_behind().max(0) as f64 / 1000.0,
            shards: Some(lag.shards()),
            stalled: None,
        }
    }
}

/// How far `sink`'s projection trails `journal`, and the event it is stalled on if `stalls` (this
/// node's) says so.
pub async fn projection_lag(
    journal: &dyn Journal,
    sink: &dyn Sink,
    stalls: &Stalls,
) -> Result<ProjectionLag, StartError> {
    let (position, head) = (sink.position().await?, journal.head_position().await?);
    let seconds_behind = match journal.read_all(position, 1).await?.first() {
        Some(next) if position < head => (events::envelope::now_us() - next.recorded_at_us).max(0) as f64 / 1e6,
        _ => 0.0,
    };
    Ok(ProjectionLag {
        name: sink.name().to_owned(),
        source: "journal",
        shards: None,
        position,
        head,
        events_behind: head.saturating_sub(position),
        seconds_behind,
        stalled: stalls.get(&follower_name(sink.name())).map(ProjectionStall::from),
    })
}
