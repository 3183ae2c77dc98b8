//! What the system acknowledged, and the check that it all survived.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Thread-safe record of acknowledged and unanswered requests, by the id the client chose.
#[derive(Default)]
pub struct AckLedger {
    acknowledged: Mutex<BTreeSet<String>>,
    unanswered: Mutex<BTreeSet<String>>,
}

/// How a post-fault check came out.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub acknowledged: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
}

impl Verdict {
    pub fn holds(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty()
    }
}

impl AckLedger {
    /// The system answered with success.
    pub fn acknowledged(&self, id: impl Into<String>) {
        let id = id.into();
        self.unanswered.lock().expect("ledger").remove(&id);
        self.acknowledged.lock().expect("ledger").insert(id);
    }

    /// The request got no answer (the connection died): it may or may not have been applied.
    pub fn unanswered(&self, id: impl Into<String>) {
        self.unanswered.lock().expect("ledger").insert(id.into());
    }

    pub fn acknowledged_ids(&self) -> Vec<String> {
        self.acknowledged.lock().expect("ledger").iter().cloned().collect()
    }

    pub fn unanswered_ids(&self) -> Vec<String> {
        self.unanswered.lock().expect("ledger").iter().cloned().collect()
    }

    /// Compares with what the system holds after the fault: every acknowledged id must be there, and
    /// no id (acknowledged or not) may be there more than once.
    pub fn verify(&self, found: &[String]) -> Verdict {
        let mut seen = BTreeSet::new();
        let mut duplicated = Vec::new();
        for id in found {
            if !seen.insert(id.clone()) {
                duplicated.push(id.clone());
            }
        }
        let acknowledged = self.acknowledged.lock().expect("ledger");
        let lost = acknowledged.iter().filter(|id| !seen.contains(*id)).cloned().collect();
        Verdict { acknowledged: acknowledged.len(), lost, duplicated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_finds_losses_and_duplicates() {
        let ledger = AckLedger::default();
        ledger.acknowledged("a");
        ledger.acknowledged("b");
        ledger.unanswered("c");
        assert!(ledger.verify(&["a".into(), "b".into()]).holds());
        let v = ledger.verify(&["a".into(), "c".into(), "c".into()]);
        assert_eq!(v.lost, vec!["b".to_string()]);
        assert_eq!(v.duplicated, vec!["c".to_string()]);
        assert!(!v.holds());
    }
}
