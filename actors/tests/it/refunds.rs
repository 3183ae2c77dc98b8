//! A customer's cancellation over a real embedded journal, with the saga running: a placed order
//! gives back its stock and its authorization; a paid one its stock, its money (refunded once) and
//! its points; one being made cannot be cancelled, and its stock is sold when the barista starts.

use std::sync::Arc;
use std::time::Duration;

use actors::cafe::{Authorizer, Cafe, CafeError, PaymentPolicy};
use actors::domain::order::{OrderStatus, Progress};
use actors::domain::payment::PaymentStatus;
use actors::host::{start_arbiters, HostOptions};
use events::domain::streams;
use events::envelope::now_us;
use events::Causation;

use super::{cafe_on, journal, order, payment_status, seed, settled, start_saga};

async fn points(cafe: &Cafe, want: u64) -> u64 {
    let reached = || async { cafe.loyalty_account("alice").await.unwrap().points == want };
    testkit::wait_until(&format!("alice has {want} points"), Duration::from_secs(5), reached).await;
    cafe.loyalty_account("alice").await.unwrap().points
}

async fn stock(cafe: &Cafe, sku: &str, available: u64, reserved: usize) {
    let reached = || async {
        let s = cafe.stock("s1", sku).await.unwrap();
        s.available == available && s.reservations.len() == reserved
    };
    let what = format!("{sku}: {available} available, {reserved} reservations");
    testkit::wait_until(&what, Duration::from_secs(5), reached).await;
}

fn types(history: &[events::RecordedEvent]) -> Vec<&str> {
    history.iter().map(|e| e.event_type.as_str()).collect()
}

#[actix_rt::test]
async fn a_paid_order_cancelled_by_its_customer_gives_back_its_stock_its_money_and_its_points() {
    let dir = tempfile::tempdir().unwrap();
    let cafe = cafe_on(journal(&dir), HostOptions::default(), 1.0);
    let _saga = start_saga(&cafe);
    seed(&cafe, "latte", 450, "s1", 10).await;
    let kept = order("s1", &[("latte", 1)]);
    cafe.place_order(kept.clone(), Causation::new_root()).await.unwrap();
    let request = order("s1", &[("latte", 3)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    assert_eq!(settled(&cafe, request.order_id).await.status, OrderStatus::Paid);
    assert_eq!(settled(&cafe, kept.order_id).await.status, OrderStatus::Paid);
    assert_eq!(points(&cafe, 4 + 13).await, 17);
    // Paid, not yet made: the units are still reserved, not sold.
    stock(&cafe, "latte", 6, 2).await;

    let cancelled = cafe.cancel_order(request.order_id, "changed my mind".into(), Causation::new_root()).await.unwrap();
    assert_eq!(cancelled.state.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.events.len(), 1);
    assert_eq!(payment_status(&cafe, request.order_id, PaymentStatus::Refunded).await, PaymentStatus::Refunded);
    stock(&cafe, "latte", 9, 1).await;
    assert_eq!(points(&cafe, 4).await, 4, "the cancelled order's 13 points were taken back");

    // Again: nothing new, nothing given back twice.
    let again = cafe.cancel_order(request.order_id, "again".into(), Causation::new_root()).await.unwrap();
    assert!(again.events.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let payment = cafe.journal.read_stream(&streams::payment(request.order_id), 0, 100).await.unwrap();
    let refund = ["PaymentAuthorized", "PaymentCaptured", "PaymentRefundRequested", "PaymentRefunded"];
    assert_eq!(types(&payment), refund, "asked once, refunded once");
    let refunded = cafe.payment(request.order_id).await.unwrap().unwrap();
    assert_eq!(refunded.amount_cents, 1350, "the whole captured amount, no more");
    let account = cafe.journal.read_stream(&streams::loyalty("alice"), 0, 100).await.unwrap();
    assert_eq!(types(&account), ["PointsAccrued", "PointsAccrued", "PointsRevoked"]);
    assert_eq!(points(&cafe, 4).await, 4);
    stock(&cafe, "latte", 9, 1).await;
}

#[actix_rt::test]
async fn an_order_being_made_cannot_be_cancelled_and_its_stock_is_sold_when_the_barista_starts() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let cafe = cafe_on(j.clone(), HostOptions::default(), 1.0);
    let _saga = start_saga(&cafe);
    seed(&cafe, "mocha", 500, "s1", 5).await;
    let request = order("s1", &[("mocha", 2)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    assert_eq!(settled(&cafe, request.order_id).await.status, OrderStatus::Paid);
    stock(&cafe, "mocha", 3, 1).await;
    cafe.advance_order(request.order_id, Progress::Preparing, now_us(), Causation::new_root()).await.unwrap();
    // Sold: no reservation left, the units do not come back.
    stock(&cafe, "mocha", 3, 0).await;

    let head = j.head_position().await.unwrap();
    let err = cafe.cancel_order(request.order_id, "too late".into(), Causation::new_root()).await.unwrap_err();
    assert!(matches!(&err, CafeError::Conflict { .. }), "{err:?}");
    assert_eq!(j.head_position().await.unwrap(), head, "a refused cancellation writes nothing");
    assert_eq!(payment_status(&cafe, request.order_id, PaymentStatus::Captured).await, PaymentStatus::Captured);
    assert_eq!(points(&cafe, 10).await, 10);
}

#[actix_rt::test]
async fn with_a_payment_processor_the_saga_asks_for_the_refund_and_the_processor_gives_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let policy = PaymentPolicy { fraud_rounds: 10, decline_threshold: 1.0, authorizer: Authorizer::PaymentProcessor };
    let cafe = Arc::new(Cafe::new(journal(&dir), HostOptions::default(), policy, start_arbiters(2)));
    let _saga = start_saga(&cafe);
    seed(&cafe, "latte", 450, "s1", 5).await;
    let request = order("s1", &[("latte", 2)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    // The processor authorizes; the saga captures and marks the order paid.
    let authorize = super::authorization(&request, 900);
    cafe.authorize_payment(&authorize, Causation::new_root()).await.unwrap();
    assert_eq!(settled(&cafe, request.order_id).await.status, OrderStatus::Paid);

    cafe.cancel_order(request.order_id, "changed my mind".into(), Causation::new_root()).await.unwrap();
    let asked = payment_status(&cafe, request.order_id, PaymentStatus::RefundRequested).await;
    assert_eq!(asked, PaymentStatus::RefundRequested);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = payment_status(&cafe, request.order_id, PaymentStatus::RefundRequested).await;
    assert_eq!(still, PaymentStatus::RefundRequested, "the saga leaves the refund to the processor");
    for _ in 0..2 {
        let refunded = cafe.refund_payment(request.order_id, Causation::new_root()).await.unwrap();
        assert_eq!((refunded.status, refunded.amount_cents), (PaymentStatus::Refunded, 900));
    }
    let history = cafe.journal.read_stream(&streams::payment(request.order_id), 0, 100).await.unwrap();
    assert_eq!(types(&history), ["PaymentAuthorized", "PaymentCaptured", "PaymentRefundRequested", "PaymentRefunded"]);
    stock(&cafe, "latte", 5, 0).await;
}
