//! Lease balancing, pure: from the lease table as listed, what this worker saw of each lease's
//! counter and what it holds, [`rebalance`] decides which leases to renew, drop, take and steal.
//! The worker ([`super::KinesisConsumer`]) lists the table, calls it, and makes the writes.
//!
//! The rules, as the Kinesis Client Library has them:
//! - a held lease is renewed while the table still says this worker owns it, and dropped (its
//!   shard task stopped) once it says otherwise;
//! - a lease is expired when nobody owns it or its counter has not moved for longer than the lease
//!   timeout, by this worker's own clock (no synchronized clocks needed);
//! - the live workers are the owners of unexpired leases, plus this one; each worker's share is the
//!   balanceable shards divided by the live workers, rounded up;
//! - a worker below its share takes expired leases up to its share, and if still short steals one
//!   lease from the busiest worker when that one holds more than its share (or its share, while this
//!   worker is two or more short: 4 shards and 3 workers end 2-1-1);
//! - a shard read to its end (`SHARD_END`) is not balanced, and neither is a child shard until every
//!   parent in the table is read to its end, so that a stream's records are processed in order
//!   across a split or a merge.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::bus::leases::{Checkpoint, Lease};

/// When this worker first saw a lease's current (owner, counter): expiry by the worker's own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Observed {
    pub owner: Option<String>,
    pub counter: u64,
    pub since: Instant,
}

/// Records, at `now`, each listed lease's (owner, counter), keeping the time of first sight while
/// they do not change; forgets leases no longer listed.
pub(super) fn observe(observed: &mut HashMap<String, Observed>, leases: &[Lease], now: Instant) {
    observed.retain(|shard, _| leases.iter().any(|l| &l.shard_id == shard));
    for lease in leases {
        let seen = Observed { owner: lease.owner.clone(), counter: lease.counter, since: now };
        let entry = observed.entry(lease.shard_id.clone()).or_insert_with(|| seen.clone());
        if entry.counter != lease.counter || entry.owner != lease.owner {
            *entry = seen;
        }
    }
}

/// This worker, as balancing sees it.
pub(super) struct Worker<'a> {
    /// Its name in the lease table.
    pub id: &'a str,
    /// The shards it runs a reader for.
    pub held: &'a BTreeSet<String>,
    /// A lease whose counter has not moved for this long is free to take.
    pub lease_timeout: Duration,
    /// The time of the observations' clock to judge expiry at.
    pub now: Instant,
}

/// What one balancing round does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct LeasePlan {
    /// Held shards whose leases are renewed.
    pub renew: Vec<String>,
    /// Held shards whose leases are someone else's now (or gone): their readers stop.
    pub drop: Vec<String>,
    /// Expired or unowned leases to take, as listed (the take is conditional on the listed counter).
    pub take: Vec<Lease>,
    /// A lease to steal from the busiest worker, as listed.
    pub steal: Option<Lease>,
}

impl LeasePlan {
    /// Only keep what is held: the plan when the table cannot be listed.
    pub fn renew_only(held: &BTreeSet<String>) -> Self {
        LeasePlan { renew: held.iter().cloned().collect(), ..LeasePlan::default() }
    }
}

/// Decides a balancing round. See the module docs for the rules.
pub(super) fn rebalance(leases: &[Lease], observed: &HashMap<String, Observed>, me: &Worker<'_>) -> LeasePlan {
    let listed: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let mut plan = LeasePlan::default();
    for shard in me.held {
        match listed.get(shard.as_str()) {
            Some(lease) if lease.owner.as_deref() == Some(me.id) => plan.renew.push(shard.clone()),
            _ => plan.drop.push(shard.clone()),
        }
    }
    let expired = |l: &Lease| {
        l.owner.is_none()
            || observed.get(&l.shard_id).is_some_and(|o| me.now.saturating_duration_since(o.since) > me.lease_timeout)
    };
    let ended = |l: &Lease| l.checkpoint == Checkpoint::ShardEnd;
    let parents_ended = |l: &Lease| l.parents.iter().all(|p| listed.get(p.as_str()).is_none_or(|p| ended(p)));
    let open: Vec<&Lease> = leases.iter().filter(|l| !ended(l) && parents_ended(l)).collect();
    let mut per_worker: HashMap<&str, usize> = HashMap::new();
    for lease in &open {
        if let Some(owner) = lease.owner.as_deref() {
            if owner != me.id && !expired(lease) {
                *per_worker.entry(owner).or_default() += 1;
            }
        }
    }
    let share = open.len().div_ceil(per_worker.len() + 1);
    let held = plan.renew.len();
    for lease in open.iter().filter(|l| expired(l) && !plan.renew.contains(&l.shard_id)) {
        if held + plan.take.len() >= share {
            break;
        }
        plan.take.push((*lease).clone());
    }
    let short = share.saturating_sub(held + plan.take.len());
    if short > 0 {
        if let Some((victim, count)) = per_worker.iter().max_by_key(|(w, c)| (**c, **w)) {
            if *count > share || (*count == share && short > 1) {
                plan.steal =
                    open.iter().find(|l| l.owner.as_deref() == Some(*victim) && !expired(l)).map(|l| (*l).clone());
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn lease(shard: &str, owner: Option<&str>) -> Lease {
        Lease {
            shard_id: shard.into(),
            owner: owner.map(str::to_owned),
            counter: 1,
            checkpoint: Checkpoint::TrimHorizon,
            parents: vec![],
        }
    }

    /// Observations of `leases` made `age` before `now`.
    fn seen(leases: &[Lease], now: Instant, age: Duration) -> HashMap<String, Observed> {
        let mut observed = HashMap::new();
        observe(&mut observed, leases, now - age);
        observed
    }

    fn plan_for(me: &str, held: &[&str], leases: &[Lease], age: Duration) -> LeasePlan {
        let now = Instant::now() + Duration::from_secs(3600);
        let held: BTreeSet<String> = held.iter().map(|s| s.to_string()).collect();
        let observed = seen(leases, now, age);
        rebalance(leases, &observed, &Worker { id: me, held: &held, lease_timeout: TIMEOUT, now })
    }

    fn shards(leases: &[Lease]) -> Vec<&str> {
        leases.iter().map(|l| l.shard_id.as_str()).collect()
    }

    #[test]
    fn a_lone_worker_takes_every_free_shard() {
        let leases = [lease("s0", None), lease("s1", None), lease("s2", None)];
        let plan = plan_for("a", &[], &leases, Duration::ZERO);
        assert_eq!(shards(&plan.take), ["s0", "s1", "s2"]);
        assert_eq!(plan.steal, None);
    }

    #[test]
    fn own_leases_are_renewed_and_lost_ones_dropped() {
        let leases = [lease("s0", Some("a")), lease("s1", Some("b")), lease("s2", Some("a"))];
        let plan = plan_for("a", &["s0", "s1", "s2", "gone"], &leases, Duration::ZERO);
        assert_eq!(plan.renew, ["s0", "s2"]);
        assert_eq!(plan.drop, ["gone", "s1"]);
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
        let leases = [lease("s0", Some("a")), lease("s1", Some("dead"))];
        let fresh = plan_for("a", &["s0"], &leases, Duration::ZERO);
        assert!(fresh.take.is_empty(), "b's lease is live: a holds its share of one");
        let stale = plan_for("a", &["s0"], &leases, TIMEOUT * 2);
        assert_eq!(shards(&stale.take), ["s1"], "a counter unmoved past the timeout means its holder died");
    }

    #[test]
    fn a_fair_share_is_not_exceeded() {
        // Two live workers, four free shards: each takes two.
        let leases = [lease("s0", Some("b")), lease("s1", None), lease("s2", None), lease("s3", None)];
        let plan = plan_for("a", &[], &leases, Duration::ZERO);
        assert_eq!(shards(&plan.take), ["s1", "s2"]);
        assert_eq!(plan.steal, None);
    }

    #[test]
    fn a_worker_short_of_its_share_steals_from_the_busiest() {
        let leases = [lease("s0", Some("b")), lease("s1", Some("b")), lease("s2", Some("b")), lease("s3", Some("c"))];
        let plan = plan_for("a", &[], &leases, Duration::ZERO);
        assert!(plan.take.is_empty());
        assert_eq!(plan.steal.map(|l| l.shard_id), Some("s0".to_owned()), "b holds 3 of a share of 2");
        // 4 shards, 3 workers: b holds its share (2), a is one short: nothing to steal (2-1-1).
        let leases = [lease("s0", Some("b")), lease("s1", Some("b")), lease("s2", Some("c")), lease("s3", Some("a"))];
        assert_eq!(plan_for("a", &["s3"], &leases, Duration::ZERO).steal, None);
    }

    #[test]
    fn a_child_shard_waits_for_its_parents() {
        let parent = Lease { checkpoint: Checkpoint::After("5".into()), ..lease("p", Some("b")) };
        let child = Lease { parents: vec!["p".into()], ..lease("c", None) };
        let plan = plan_for("a", &[], &[parent.clone(), child.clone()], Duration::ZERO);
        assert!(plan.take.is_empty(), "the parent is still being read");
        let ended = Lease { checkpoint: Checkpoint::ShardEnd, ..parent };
        let plan = plan_for("a", &[], &[ended, child], Duration::ZERO);
        assert_eq!(shards(&plan.take), ["c"], "the parent is read to its end");
    }

    #[test]
    fn observation_keeps_the_first_sight_until_the_counter_moves() {
        let t0 = Instant::now();
        let mut observed = HashMap::new();
        let mut leases = vec![lease("s0", Some("b")), lease("s1", Some("b"))];
        observe(&mut observed, &leases, t0);
        observe(&mut observed, &leases, t0 + Duration::from_secs(1));
        assert_eq!(observed["s0"].since, t0);
        leases[0].counter += 1;
        leases.pop();
        observe(&mut observed, &leases, t0 + Duration::from_secs(2));
        assert_eq!(observed["s0"].since, t0 + Duration::from_secs(2));
        assert!(!observed.contains_key("s1"));
    }
}
