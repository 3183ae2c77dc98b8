//! The gateway over real nodes: HTTP behaviour in-process, the OpenAPI contract fuzzed on the real
//! binary, a SIGKILL of the real binary, three real nodes on one PostgreSQL journal that must agree
//! within the staleness bound, the payment processor and three nodes on one log (the last two need
//! the `cloud` feature and the emulators).

mod api;
#[cfg(feature = "cloud")]
mod chaos_experiments;
mod contract;
mod dashboard_page;
mod dashboards;
mod flood;
mod flood_report;
mod kill_restart;
mod limits;
mod logs;
mod loyalty;
mod metrics_export;
#[cfg(feature = "cloud")]
mod notifications;
#[cfg(feature = "cloud")]
mod payments;
mod rate_limit;
mod raw_http;
mod replay;
mod security;
mod stale_state;
mod stalls;
#[cfg(feature = "cloud")]
mod three_nodes;
mod tls_stores;
mod verify;

/// The journal's head once nothing has been appended to it for 150 ms: the node's followers (the
/// saga reacting to what the test just did) are done, so what the test does next is alone to move it.
async fn quiet_head(journal: &dyn events::Journal) -> u64 {
    let mut head = journal.head_position().await.unwrap();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let now = journal.head_position().await.unwrap();
        if now == head {
            return head;
        }
        head = now;
    }
}
