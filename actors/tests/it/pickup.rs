//! The pickup timer over a real embedded journal: a ready order nobody picks up is abandoned once
//! its deadline passes, also when the timer that saw it get ready is gone and another one starts
//! from the journal; a picked-up order is left alone.

use std::sync::Arc;
use std::time::Duration;

use actors::cafe::Cafe;
use actors::domain::order::{OrderStatus, Progress};
use actors::pickup::{PickupTimer, CHECKPOINT};
use events::envelope::now_us;
use events::{Causation, Journal};
use uuid::Uuid;

use super::{cafe_on, journal, order, seed, settled, start_saga};

fn start_timer(cafe: &Arc<Cafe>) -> tokio::sync::watch::Sender<bool> {
    let (stop, rx) = tokio::sync::watch::channel(false);
    actix_rt::spawn(PickupTimer::new(cafe.clone()).with_tick(Duration::from_millis(20)).run(rx));
    stop
}

async fn ready(cafe: &Cafe, order_id: Uuid) {
    for step in [Progress::Preparing, Progress::Ready] {
        cafe.advance_order(order_id, step, now_us(), Causation::new_root()).await.unwrap();
    }
}

async fn status_within(cafe: &Cafe, order_id: Uuid, wanted: OrderStatus, within: Duration) -> OrderStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        let status = cafe.order(order_id).await.unwrap().unwrap().status;
        if status == wanted || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_ready_order_not_picked_up_is_abandoned_by_a_timer_that_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = journal(&dir);
    let mut cafe = Arc::try_unwrap(cafe_on(journal.clone(), Default::default(), 1.0)).ok().unwrap();
    cafe.pickup_window = Duration::from_millis(600);
    let cafe = Arc::new(cafe);
    let _saga = start_saga(&cafe);
    seed(&cafe, "latte", 450, "s1", 10).await;
    let (forgotten, collected) = (order("s1", &[("latte", 1)]), order("s1", &[("latte", 2)]));
    for o in [&forgotten, &collected] {
        cafe.place_order(o.clone(), Causation::new_root()).await.unwrap();
        assert_eq!(settled(&cafe, o.order_id).await.status, OrderStatus::Paid);
    }

    // The first timer sees both get ready, then dies before either deadline.
    let timer = start_timer(&cafe);
    ready(&cafe, forgotten.order_id).await;
    ready(&cafe, collected.order_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    timer.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kept = journal.load_checkpoint(CHECKPOINT).await.unwrap();
    let head = journal.head_position().await.unwrap();
    assert!(kept < head, "the checkpoint stops before the orders still waiting: {kept} of {head}");
    cafe.advance_order(collected.order_id, Progress::Completed, now_us(), Causation::new_root()).await.unwrap();

    // Nothing runs while the deadline passes; a new timer learns it from the journal.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(cafe.order(forgotten.order_id).await.unwrap().unwrap().status, OrderStatus::Ready);
    let _timer = start_timer(&cafe);
    let status = status_within(&cafe, forgotten.order_id, OrderStatus::Abandoned, Duration::from_secs(5)).await;
    assert_eq!(status, OrderStatus::Abandoned);
    assert_eq!(cafe.order(collected.order_id).await.unwrap().unwrap().status, OrderStatus::Completed);

    // Abandoned once: the order's stream has one OrderAbandoned, and once nothing waits the
    // checkpoint moves on to the journal's head.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = journal.read_stream(&events::domain::streams::order(forgotten.order_id), 1, 100).await.unwrap();
    let abandoned = history.iter().filter(|e| e.event_type == "OrderAbandoned").count();
    assert_eq!(abandoned, 1);
    let head = journal.head_position().await.unwrap();
    for _ in 0..100 {
        if journal.load_checkpoint(CHECKPOINT).await.unwrap() == head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(journal.load_checkpoint(CHECKPOINT).await.unwrap(), head);
}
