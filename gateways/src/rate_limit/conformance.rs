//! What every [`Buckets`] adapter must do, run over each: the in-process buckets (`memory`'s tests)
//! and Redis (`gateways/tests/it/rate_limit.rs`, against a real server).

use std::time::Duration;

use super::{Buckets, Decision, Limit};

/// Runs every check on `buckets`; `name` is in every failure's message. Keys are made unique per run.
pub async fn run(buckets: &dyn Buckets, name: &str) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let key = |k: &str| format!("{run}:{k}");

    // A full bucket allows its burst at once, then refuses, saying when the next token comes.
    let limit = Limit { rate: 10.0, burst: 3 };
    for i in 0..3 {
        assert_eq!(buckets.take(&key("a"), limit).await.unwrap(), Decision::Allowed, "{name}: take {i} of the burst");
    }
    match buckets.take(&key("a"), limit).await.unwrap() {
        Decision::Limited(wait) => {
            assert!(wait > Duration::ZERO && wait <= Duration::from_millis(110), "{name}: retry after {wait:?}")
        }
        Decision::Allowed => panic!("{name}: a fourth token from a burst of three"),
    }

    // Another key is another bucket.
    assert_eq!(buckets.take(&key("b"), limit).await.unwrap(), Decision::Allowed, "{name}: keys share a bucket");

    // It refills at the rate: after 250 ms at 10/s, two tokens (not three: the burst caps it).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut allowed = 0;
    for _ in 0..5 {
        if buckets.take(&key("a"), limit).await.unwrap() == Decision::Allowed {
            allowed += 1;
        }
    }
    assert!((2..=3).contains(&allowed), "{name}: {allowed} tokens after 250 ms at 10/s");

    // A slow rate: a refused take says how long until the next token, to the second.
    let slow = Limit { rate: 0.5, burst: 1 };
    assert_eq!(buckets.take(&key("slow"), slow).await.unwrap(), Decision::Allowed, "{name}");
    match buckets.take(&key("slow"), slow).await.unwrap() {
        Decision::Limited(wait) => assert!(
            wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2),
            "{name}: at 0.5/s the next token is ~2 s away, not {wait:?}"
        ),
        Decision::Allowed => panic!("{name}: two tokens from a burst of one"),
    }

    // Many takes at once from one bucket never hand out more than it holds.
    let limit = Limit { rate: 0.1, burst: 20 };
    let race = key("race");
    let takes = (0..60).map(|_| buckets.take(&race, limit));
    let allowed = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter(|d| *d.as_ref().unwrap() == Decision::Allowed)
        .count();
    assert_eq!(allowed, 20, "{name}: concurrent takes from a bucket of 20");
}
