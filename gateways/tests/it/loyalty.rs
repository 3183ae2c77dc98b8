//! The loyalty batch on an embedded node: imported points leave tiers behind, one recalculation
//! brings every tier in line with its points (writing only where it differs), a second writes
//! nothing, and an unknown customer is not found and leaves nothing behind.

use std::time::Duration;

use actors::cafe::CafeError;
use actors::domain::loyalty::tier_for;
use events::domain::{streams, Tier};
use events::Causation;
use gateways::loyalty::{import_accounts, recalculate_tiers, synthetic_accounts, RecalculationReport};
use gateways::node::{storefront_caught_up, Node, NodeSettings};

const CUSTOMERS: u64 = 500;

#[actix_web::test]
async fn a_recalculation_brings_every_imported_tier_in_line_with_its_points_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeSettings::embedded(dir.path())).await.unwrap();
    let accounts = synthetic_accounts(CUSTOMERS, 7);
    assert_eq!(import_accounts(node.journal.as_ref(), &accounts).await.unwrap(), CUSTOMERS);
    assert_eq!(import_accounts(node.journal.as_ref(), &accounts[..10]).await.unwrap(), 0, "imported once");
    assert!(storefront_caught_up(&node, Duration::from_secs(30)).await);
    let due = accounts.iter().filter(|(_, points)| tier_for(*points) != Tier::Green).count() as u64;
    assert!(due > CUSTOMERS / 5 && due < CUSTOMERS / 2, "the synthetic accounts cross Gold about a third: {due}");

    let mut pages = Vec::new();
    let report = recalculate_tiers(&node.cafe, node.storefront.as_ref(), 16, &mut |r: &RecalculationReport| {
        pages.push(r.customers)
    })
    .await
    .unwrap();
    assert_eq!((report.customers, report.changed, report.failed), (CUSTOMERS, due, 0));
    assert_eq!(pages.last(), Some(&CUSTOMERS), "progress after the last page");
    for (customer, points) in &accounts {
        let account = node.cafe.loyalty_account(customer).await.unwrap();
        assert_eq!((account.points, account.tier), (*points, tier_for(*points)), "{customer}");
    }
    assert!(storefront_caught_up(&node, Duration::from_secs(30)).await);
    for (customer, points) in accounts.iter().step_by(7) {
        let balance = node.storefront.loyalty(customer).await.unwrap().expect("listed");
        assert_eq!(balance.tier, tier_for(*points).as_str(), "{customer} in the storefront");
    }

    let again =
        recalculate_tiers(&node.cafe, node.storefront.as_ref(), 16, &mut |_: &RecalculationReport| {}).await.unwrap();
    assert_eq!((again.customers, again.changed, again.failed), (CUSTOMERS, 0, 0), "nothing left to change");
}

#[actix_web::test]
async fn recalculating_an_unknown_customer_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeSettings::embedded(dir.path())).await.unwrap();
    import_accounts(node.journal.as_ref(), &[("known".to_owned(), 400)]).await.unwrap();
    let head = node.journal.head_position().await.unwrap();
    let resident = node.cafe.loyalty.resident();

    let outcome = node.cafe.recalculate_tier("nobody", Causation::new_root()).await;
    assert!(matches!(outcome, Err(CafeError::NotFound { .. })), "{outcome:?}");
    let outcome = node.cafe.recalculate_tier("not an id", Causation::new_root()).await;
    assert!(matches!(outcome, Err(CafeError::NotFound { .. })), "{outcome:?}");
    assert_eq!(node.journal.head_position().await.unwrap(), head, "nothing appended");
    assert!(node.journal.read_stream(&streams::loyalty("nobody"), 1, 10).await.unwrap().is_empty());
    testkit::wait_until("the unknown customer's actor is gone", Duration::from_secs(10), || async {
        node.cafe.loyalty.resident() == resident
    })
    .await;

    let known = node.cafe.recalculate_tier("known", Causation::new_root()).await.unwrap();
    assert_eq!((known.from, known.to, known.changed), (Tier::Green, Tier::Gold, true));
    assert_eq!(node.journal.head_position().await.unwrap(), head + 1, "one TierChanged");
}
