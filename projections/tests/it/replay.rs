//! Replay into a shadow, compare, promote: on the embedded store and on PostgreSQL.

use std::sync::Arc;

use events::domain::streams;
use events::postgres::{connect_pool, PgJournal, PgOptions};
use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{AppendRequest, Causation, ExpectedVersion, Journal, NewEvent};
use projections::read_models::conformance::{a_day_of_orders, write_history};
use projections::read_models::replay::{rebuild, ReplayOptions, ReplayOutcome};
use projections::read_models::runner::ProjectionRunner;
use projections::read_models::storefront::postgres::PgStorefront;
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::read_models::storefront::StorefrontQueries;
use projections::{Rebuildable, Sink};
use testkit::servers;

async fn equal_rebuild_is_promoted_and_a_differing_one_is_not(journal: Arc<dyn Journal>, live: Arc<dyn Rebuildable>) {
    write_history(journal.as_ref(), &a_day_of_orders(300)).await;
    ProjectionRunner::new(journal.clone(), live.clone() as Arc<dyn Sink>).catch_up().await.unwrap();
    let before = live.fingerprint().await.unwrap();

    let outcome = rebuild(journal.as_ref(), live.as_ref(), &ReplayOptions::default(), &mut |_| {}).await.unwrap();
    assert!(matches!(&outcome, ReplayOutcome::Promoted { fingerprint, .. } if *fingerprint == before), "{outcome:?}");
    assert_eq!(live.fingerprint().await.unwrap(), before);

    // Dry run: compared, shadow dropped.
    let outcome = rebuild(
        journal.as_ref(),
        live.as_ref(),
        &ReplayOptions { dry_run: true, from: Some(0), ..Default::default() },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert!(matches!(outcome, ReplayOutcome::Equal { .. }), "{outcome:?}");

    // A rebuild that starts late misses history: it differs, and the live model stays as it was.
    let outcome =
        rebuild(journal.as_ref(), live.as_ref(), &ReplayOptions { from: Some(100), ..Default::default() }, &mut |_| {})
            .await
            .unwrap();
    match outcome {
        ReplayOutcome::Differs { differences, promoted: false, live: l, .. } => {
            assert!(!differences.is_empty());
            assert_eq!(l, before);
        }
        other => panic!("expected differences, got {other:?}"),
    }
    assert_eq!(live.fingerprint().await.unwrap(), before, "the live model was left alone");
    live.discard_shadow().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    let live = Arc::new(SqliteStorefront::open(dir.path()).unwrap());
    equal_rebuild_is_promoted_and_a_differing_one_is_not(journal, live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_postgres() {
    let Some(url) = servers::postgres_url() else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("replay"));
    let journal: Arc<dyn Journal> = Arc::new(PgJournal::connect(options.clone()).await.unwrap());
    let live = Arc::new(PgStorefront::new(connect_pool(&options).await.unwrap()).await.unwrap());
    equal_rebuild_is_promoted_and_a_differing_one_is_not(journal, live).await;
}

/// The storefront's shadow is loaded without its foreign key and its customer index; the promotion
/// adds them. After one promotion and after a second one, the model's catalogue (every index and
/// constraint, with its name and definition) is the one a fresh live model has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_postgres_storefront_has_the_live_indexes_and_constraints() {
    let Some(url) = servers::postgres_url() else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("shape"));
    let journal: Arc<dyn Journal> = Arc::new(PgJournal::connect(options.clone()).await.unwrap());
    let pool = connect_pool(&options).await.unwrap();
    let live = Arc::new(PgStorefront::new(pool.clone()).await.unwrap());
    let fresh = catalogue_of(&pool).await;
    assert!(fresh.iter().any(|d| d.contains("FOREIGN KEY")), "the live model has a foreign key: {fresh:#?}");
    assert!(fresh.iter().any(|d| d.contains("orders_customer_created")), "{fresh:#?}");

    write_history(journal.as_ref(), &a_day_of_orders(300)).await;
    ProjectionRunner::new(journal.clone(), live.clone() as Arc<dyn Sink>).catch_up().await.unwrap();
    let before = live.fingerprint().await.unwrap();
    for round in 1..=2 {
        let outcome = rebuild(journal.as_ref(), live.as_ref(), &ReplayOptions::default(), &mut |_| {}).await.unwrap();
        assert!(
            matches!(&outcome, ReplayOutcome::Promoted { fingerprint, .. } if *fingerprint == before),
            "{outcome:?}"
        );
        assert_eq!(catalogue_of(&pool).await, fresh, "after promotion {round}");
    }
}

/// Every index and constraint in the pool's schema, as `table: definition`, sorted.
async fn catalogue_of(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT tablename || ': ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
             UNION ALL
             SELECT conrelid::regclass::text || ': ' || conname || ' ' || pg_get_constraintdef(oid)
             FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Events written at schema 1 are read through the upcaster when the model is rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_upcasts_old_events() {
    #[derive(serde::Serialize)]
    struct MenuItemPublishedV1 {
        item_id: String,
        name: String,
        category: String,
        price_cents: i64,
    }
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    for item in ["latte", "mocha"] {
        let payload = rmp_serde::to_vec_named(&MenuItemPublishedV1 {
            item_id: item.into(),
            name: item.to_uppercase(),
            category: "coffee".into(),
            price_cents: 450,
        })
        .unwrap();
        let causation = Causation::new_root();
        let v1 = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "MenuItemPublished".into(),
            schema_version: 1,
            recorded_at_us: 1,
            correlation_id: causation.correlation_id,
            causation_id: None,
            payload,
        };
        journal
            .append(AppendRequest {
                stream_id: streams::menu_item(item),
                expected: ExpectedVersion::NoStream,
                events: vec![v1],
            })
            .await
            .unwrap();
    }
    let live = Arc::new(SqliteStorefront::open(dir.path()).unwrap());
    let outcome = rebuild(journal.as_ref(), live.as_ref(), &ReplayOptions::default(), &mut |_| {}).await.unwrap();
    assert!(matches!(outcome, ReplayOutcome::Promoted { applied: 2, .. }), "{outcome:?}");
    let menu = live.menu().await.unwrap();
    assert_eq!(menu.len(), 2);
    assert!(menu.iter().all(|m| m.nutrition == events::domain::Nutrition::default() && m.image_sha256.is_empty()));
    assert_eq!(menu[0].name, "LATTE");
}

/// A flood of 100K events, projected live and then replayed, gives equal models in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_100k_events_rebuilds_equal_in_postgres_and_redshift_sql() {
    let Some(url) = servers::postgres_url() else { return };
    let Some(redshift) = servers::redshift_url().await else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("flood"));
    let journal: Arc<dyn Journal> = Arc::new(PgJournal::connect(options.clone()).await.unwrap());
    let flood = projections::workload::flood_of_orders(11_700, 500, 100_000);
    assert!(flood.len() >= 100_000, "{} events", flood.len());
    write_history(journal.as_ref(), &flood).await;
    let storefront: Arc<dyn Rebuildable> =
        Arc::new(PgStorefront::new(connect_pool(&options).await.unwrap()).await.unwrap());
    let redshift = PgOptions::new(redshift).with_schema(servers::fresh_schema("flood_rs"));
    let analytics: Arc<dyn Rebuildable> = Arc::new(
        projections::read_models::analytics::AnalyticsSink::new(connect_pool(&redshift).await.unwrap()).await.unwrap(),
    );
    for live in [storefront, analytics] {
        project_then_rebuild_equal(journal.clone(), live).await;
    }
}

/// Projects the whole journal live, rebuilds it into a shadow, and checks the shadow was equal and
/// swapped in.
async fn project_then_rebuild_equal(journal: Arc<dyn Journal>, live: Arc<dyn Rebuildable>) {
    ProjectionRunner::new(journal.clone(), live.clone() as Arc<dyn Sink>)
        .with_page_size(5000)
        .catch_up()
        .await
        .unwrap();
    let before = live.fingerprint().await.unwrap();
    assert!(before.rows > 10_000, "{} rows in {}", before.rows, live.name());
    let outcome =
        rebuild(journal.as_ref(), live.as_ref(), &ReplayOptions { page_size: 5000, ..Default::default() }, &mut |_| {})
            .await
            .unwrap();
    assert!(
        matches!(&outcome, ReplayOutcome::Promoted { fingerprint, .. } if *fingerprint == before),
        "{}: {outcome:?}",
        live.name()
    );
}

/// The same flood, projected live into DynamoDB (moto) and DocumentDB (SecantusDB) and replayed,
/// gives equal models there too.
#[cfg(all(feature = "dynamodb", feature = "documentdb"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_100k_events_rebuilds_equal_in_dynamodb_and_documentdb() {
    let Some(dynamodb) = servers::dynamodb_endpoint() else { return };
    let Some(mongo) = servers::mongodb_uri() else { return };
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    let flood = projections::workload::flood_of_orders(11_700, 500, 100_000);
    assert!(flood.len() >= 100_000, "{} events", flood.len());
    write_history(journal.as_ref(), &flood).await;
    let dynamo: Arc<dyn Rebuildable> = Arc::new(
        projections::read_models::dynamo::DynamoSink::open(
            testkit::aws::dynamodb_client(&dynamodb).await,
            testkit::aws::fresh_table_names(),
        )
        .await
        .unwrap(),
    );
    let mongo_client = crate::documents::client(&mongo).await;
    let documents: Arc<dyn Rebuildable> = Arc::new(
        projections::read_models::documents::DocumentSink::open(crate::documents::fresh_db(&mongo_client))
            .await
            .unwrap(),
    );
    // Two emulators, two processes: both models are built at once.
    let rebuilt = [dynamo, documents].map(|live| {
        let journal = journal.clone();
        async move {
            let started = std::time::Instant::now();
            let name = live.name().to_owned();
            project_then_rebuild_equal(journal, live).await;
            eprintln!("{name}: projected and rebuilt 100K events equal in {:?}", started.elapsed());
        }
    });
    futures::future::join_all(rebuilt).await;
}
