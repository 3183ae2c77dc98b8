//! A store: opened (once, or again after it closed) and closed. Orders and restocks are taken only
//! for an open store.

use events::domain::{StoreClosed, StoreOpened};
use events::DomainEvent;
use serde::{Deserialize, Serialize};

use super::limits::{check_id, check_text, Invalid, MAX_NAME_CHARS, MAX_REASON_CHARS};
use super::{Decider, Rejection};

/// Whether a store takes orders and restocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreStatus {
    /// Never opened: the store does not exist.
    #[default]
    Unknown,
    Open,
    Closed,
}

impl StoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreStatus::Unknown => "unknown",
            StoreStatus::Open => "open",
            StoreStatus::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    pub status: StoreStatus,
    pub store_id: String,
    pub name: String,
    /// When it was last opened, microseconds since the Unix epoch.
    pub opened_at_us: i64,
    /// Why it was last closed, while it is closed.
    pub close_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreCommand {
    /// Opens the store, or reopens a closed one; opening an open store under the same name again
    /// changes nothing.
    Open {
        store_id: String,
        name: String,
        opened_at_us: i64,
    },
    Close {
        reason: String,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("store is already open under the name `{0}`")]
    AlreadyOpenAs(String),
    #[error("store does not exist")]
    Unknown,
}

impl Rejection for StoreError {
    fn field(&self) -> Option<String> {
        match self {
            StoreError::Invalid(i) => Some(i.field.clone()),
            StoreError::AlreadyOpenAs(_) => Some("name".into()),
            StoreError::Unknown => Some("store_id".into()),
        }
    }
    fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Unknown)
    }
}

pub struct StoreDecider;

impl Decider for StoreDecider {
    type State = Store;
    type Command = StoreCommand;
    type Error = StoreError;

    fn decide(store: &Store, command: &StoreCommand) -> Result<Vec<DomainEvent>, StoreError> {
        match command {
            StoreCommand::Open { store_id, name, opened_at_us } => {
                check_id("store_id", store_id)?;
                check_text("name", name, MAX_NAME_CHARS)?;
                match store.status {
                    StoreStatus::Open if store.name == *name => Ok(vec![]),
                    StoreStatus::Open => Err(StoreError::AlreadyOpenAs(store.name.clone())),
                    StoreStatus::Unknown | StoreStatus::Closed => Ok(vec![StoreOpened {
                        store_id: store_id.clone(),
                        name: name.clone(),
                        opened_at_us: *opened_at_us,
                    }
                    .into()]),
                }
            }
            StoreCommand::Close { reason } => {
                check_text("reason", reason, MAX_REASON_CHARS)?;
                match store.status {
                    StoreStatus::Unknown => Err(StoreError::Unknown),
                    StoreStatus::Closed => Ok(vec![]),
                    StoreStatus::Open => {
                        Ok(vec![StoreClosed { store_id: store.store_id.clone(), reason: reason.clone() }.into()])
                    }
                }
            }
        }
    }

    fn evolve(mut store: Store, event: &DomainEvent) -> Store {
        match event {
            DomainEvent::StoreOpened(e) => {
                store.status = StoreStatus::Open;
                store.store_id.clone_from(&e.store_id);
                store.name.clone_from(&e.name);
                store.opened_at_us = e.opened_at_us;
                store.close_reason = None;
            }
            DomainEvent::StoreClosed(e) => {
                store.status = StoreStatus::Closed;
                store.close_reason = Some(e.reason.clone());
            }
            _ => {}
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};
    use crate::domain::limits::Problem;

    fn open(name: &str) -> StoreCommand {
        StoreCommand::Open { store_id: "store-1".into(), name: name.into(), opened_at_us: 7 }
    }
    fn opened(name: &str) -> DomainEvent {
        StoreOpened { store_id: "store-1".into(), name: name.into(), opened_at_us: 7 }.into()
    }
    fn closed() -> DomainEvent {
        StoreClosed { store_id: "store-1".into(), reason: "renovation".into() }.into()
    }

    #[test]
    fn a_store_opens_once_under_one_name() {
        let store = given_no_history::<StoreDecider>().when(open("Downtown")).then([opened("Downtown")]);
        assert_eq!(store.status, StoreStatus::Open);
        given::<StoreDecider>([opened("Downtown")]).when(open("Downtown")).then_nothing_happens();
        given::<StoreDecider>([opened("Downtown")]).when(open("Uptown")).then_rejected(|e| {
            matches!(e, StoreError::AlreadyOpenAs(n) if n == "Downtown") && e.field().unwrap() == "name"
        });
    }

    #[test]
    fn a_store_closes_once_and_can_reopen() {
        let close = || StoreCommand::Close { reason: "renovation".into() };
        let store = given::<StoreDecider>([opened("Downtown")]).when(close()).then([closed()]);
        assert_eq!((store.status, store.close_reason.as_deref()), (StoreStatus::Closed, Some("renovation")));
        given::<StoreDecider>([opened("Downtown"), closed()]).when(close()).then_nothing_happens();
        let store =
            given::<StoreDecider>([opened("Downtown"), closed()]).when(open("Downtown")).then([opened("Downtown")]);
        assert_eq!((store.status, store.close_reason), (StoreStatus::Open, None));
    }

    #[test]
    fn an_unknown_store_cannot_be_closed() {
        given_no_history::<StoreDecider>()
            .when(StoreCommand::Close { reason: "r".into() })
            .then_rejected(|e| e.is_not_found() && e.field().unwrap() == "store_id");
    }

    #[test]
    fn a_store_needs_a_valid_id_and_a_printable_name() {
        given_no_history::<StoreDecider>()
            .when(StoreCommand::Open { store_id: "a b".into(), name: "X".into(), opened_at_us: 0 })
            .then_rejected(|e| e.field().unwrap() == "store_id");
        given_no_history::<StoreDecider>()
            .when(open("Down\0town"))
            .then_rejected(|e| matches!(e, StoreError::Invalid(i) if i.problem == Problem::ControlCharacter(0)));
        given_no_history::<StoreDecider>()
            .when(open(&"x".repeat(10 * 1024)))
            .then_rejected(|e| matches!(e, StoreError::Invalid(i) if i.field == "name"));
        given::<StoreDecider>([opened("Downtown")])
            .when(StoreCommand::Close { reason: "bell\u{7}".into() })
            .then_rejected(|e| e.field().unwrap() == "reason");
    }
}
