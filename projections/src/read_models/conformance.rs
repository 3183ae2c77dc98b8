//! One conformance suite for every sink (enable the `conformance` feature): whatever the store, a
//! page applied twice changes nothing, any split into overlapping pages gives the same model, the
//! position follows the last event, and a rebuild through a shadow (in the store, and in memory
//! where the model has one) gives back the same model.

use std::future::Future;
use std::sync::Arc;

pub use crate::workload::{a_day_of_orders, journal, write_history};
use crate::{Rebuildable, Sink};

/// Runs every case against sinks made by `make` (each call: a fresh, empty model).
pub async fn run_sink_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Sink>>,
{
    let day = a_day_of_orders(60);
    eprintln!("sink conformance: a page applied twice changes nothing");
    let once = make().await;
    once.apply(&day).await.unwrap();
    let fingerprint = once.fingerprint().await.unwrap();
    assert!(fingerprint.rows > 0, "the model holds rows");
    once.apply(&day).await.unwrap();
    once.apply(&day[..day.len() / 2]).await.unwrap();
    assert_eq!(once.fingerprint().await.unwrap(), fingerprint);
    assert_eq!(once.position().await.unwrap(), day.len() as u64, "the position is the last event's");

    eprintln!("sink conformance: overlapping pages of any size give the same model");
    let paged = make().await;
    let mut start = 0;
    while start < day.len() {
        let end = (start + 17).min(day.len());
        paged.apply(&day[start.saturating_sub(5)..end]).await.unwrap();
        start = end;
    }
    assert_eq!(paged.fingerprint().await.unwrap(), fingerprint);

    eprintln!("sink conformance: an empty page changes nothing");
    paged.apply(&[]).await.unwrap();
    assert_eq!(paged.position().await.unwrap(), day.len() as u64);
}

/// A rebuild through the shadow gives the same model, which promotion then makes live.
pub async fn run_rebuild_suite(live: Arc<dyn Rebuildable>) {
    let day = a_day_of_orders(40);
    live.apply(&day).await.unwrap();
    let before = live.fingerprint().await.unwrap();
    if let Some(memory) = live.memory_shadow() {
        // The shadow `verify` keeps in memory folds the same pages (overlapping, as a resumed run
        // reads them) into the rows the store holds.
        assert_eq!(memory.fingerprint().await.unwrap().rows, 0, "a shadow in memory starts empty");
        let mut start = 0;
        while start < day.len() {
            let end = (start + 13).min(day.len());
            memory.apply(&day[start.saturating_sub(4)..end]).await.unwrap();
            start = end;
        }
        assert_eq!(memory.position().await.unwrap(), day.len() as u64);
        assert_eq!(memory.fingerprint().await.unwrap(), before, "the shadow in memory holds what the store holds");
    }
    live.reset_shadow(0).await.unwrap();
    let shadow = live.shadow().await.unwrap();
    assert_eq!(shadow.position().await.unwrap(), 0);
    assert_eq!(shadow.fingerprint().await.unwrap().rows, 0, "a reset shadow is empty");
    shadow.apply(&day[..50]).await.unwrap();
    // An interrupted rebuild resumes from the shadow's own position.
    let resumed = live.shadow().await.unwrap();
    assert_eq!(resumed.position().await.unwrap(), 50);
    resumed.apply(&day[50..]).await.unwrap();
    assert_eq!(resumed.fingerprint().await.unwrap(), before);
    assert_eq!(live.fingerprint().await.unwrap(), before, "building the shadow left the live model alone");
    live.promote_shadow().await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), before);
    assert_eq!(live.position().await.unwrap(), day.len() as u64);
    // The live model keeps working after a promotion, and a new shadow can be built again.
    live.apply(&day).await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), before);
    live.reset_shadow(0).await.unwrap();
    live.discard_shadow().await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), before);
}
