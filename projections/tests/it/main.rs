//! The storefront against a real PostgreSQL, and a projection runner over a real journal.

mod analytics;
#[cfg(all(feature = "kinesis", feature = "dynamodb"))]
mod analytics_stream;
mod cache;
mod cache_tls;
#[cfg(all(feature = "kinesis", feature = "sqs", feature = "dynamodb"))]
mod consumer;
#[cfg(feature = "documentdb")]
mod documents;
#[cfg(feature = "documentdb")]
mod documents_tls;
#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(all(feature = "kinesis", feature = "sqs"))]
mod publisher;
mod replay;

use std::sync::Arc;

use events::postgres::{connect_pool, PgJournal, PgOptions};
use events::{Causation, DomainEvent, ExpectedVersion, Journal, NewEvent};
use projections::read_models::runner::ProjectionRunner;
use projections::read_models::storefront::conformance::{run_all, Storefront};
use projections::read_models::storefront::postgres::PgStorefront;
use projections::read_models::storefront::StorefrontQueries;
use projections::Sink;
use testkit::servers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_storefront_passes_the_conformance_suite() {
    let Some(url) = servers::postgres_url() else { return };
    run_all(|| {
        let options = PgOptions::new(url.clone()).with_schema(servers::fresh_schema("storefront"));
        async move {
            let pool = connect_pool(&options).await.unwrap();
            Arc::new(PgStorefront::new(pool).await.unwrap()) as Arc<dyn Storefront>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_projects_the_journal_and_resumes_from_its_offset() {
    let Some(url) = servers::postgres_url() else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("runner"));
    let journal: Arc<dyn Journal> = Arc::new(PgJournal::connect(options.clone()).await.unwrap());
    let store = Arc::new(PgStorefront::new(connect_pool(&options).await.unwrap()).await.unwrap());
    let place = |i: u128| {
        let order_id = uuid::Uuid::from_u128(i);
        let e: DomainEvent = events::domain::OrderPlaced {
            order_id,
            customer_id: format!("c{}", i % 7),
            store_id: "s1".into(),
            lines: vec![events::domain::OrderLine { item_id: "latte".into(), quantity: 1, unit_price_cents: 450 }],
            total_cents: 450,
            placed_at_us: i as i64,
        }
        .into();
        events::AppendRequest {
            stream_id: events::domain::streams::order(order_id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::from_domain(&e, Causation::new_root()).unwrap()],
        }
    };
    for i in 1..=120 {
        journal.append(place(i)).await.unwrap();
    }
    let runner = ProjectionRunner::new(journal.clone(), store.clone()).with_page_size(50);
    assert_eq!(runner.catch_up().await.unwrap(), 120);
    for i in 121..=150 {
        journal.append(place(i)).await.unwrap();
    }
    // A new runner (a restarted process) continues from the stored offset.
    let runner = ProjectionRunner::new(journal.clone(), store.clone()).with_page_size(50);
    assert_eq!(runner.catch_up().await.unwrap(), 150);
    assert_eq!(store.position().await.unwrap(), 150);
    let orders: usize = futures::future::join_all((0..7).map(|c| {
        let store = store.clone();
        async move { store.customer_orders(&format!("c{c}"), 1000).await.unwrap().len() }
    }))
    .await
    .into_iter()
    .sum();
    assert_eq!(orders, 150, "every order projected exactly once");
}
