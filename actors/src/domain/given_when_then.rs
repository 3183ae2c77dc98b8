//! Given/When/Then for deciders: given past events, when a command, then new events or a rejection.

use events::DomainEvent;

use super::Decider;

pub struct Given<D: Decider> {
    state: D::State,
}

pub fn given<D: Decider>(history: impl IntoIterator<Item = DomainEvent>) -> Given<D> {
    Given { state: history.into_iter().fold(D::State::default(), |s, e| D::evolve(s, &e)) }
}

pub fn given_no_history<D: Decider>() -> Given<D> {
    given::<D>([])
}

pub struct When<D: Decider> {
    outcome: Result<Vec<DomainEvent>, D::Error>,
    state: D::State,
}

impl<D: Decider> Given<D> {
    pub fn when(self, command: D::Command) -> When<D> {
        When { outcome: D::decide(&self.state, &command), state: self.state }
    }
}

impl<D: Decider> When<D>
where
    D::Error: std::fmt::Debug,
{
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = DomainEvent>) -> D::State {
        let expected: Vec<DomainEvent> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(events, expected);
                events.iter().fold(self.state, |s, e| D::evolve(s, e))
            }
            Err(e) => panic!("expected {expected:?}, the command was rejected: {e:?}"),
        }
    }

    /// The command was accepted: its events, for checks that do not spell every event out.
    #[track_caller]
    pub fn then_events(self) -> Vec<DomainEvent> {
        match self.outcome {
            Ok(events) => events,
            Err(e) => panic!("expected events, the command was rejected: {e:?}"),
        }
    }

    #[track_caller]
    pub fn then_nothing_happens(self) {
        self.then([]);
    }

    #[track_caller]
    pub fn then_rejected(self, check: impl FnOnce(&D::Error) -> bool) {
        match self.outcome {
            Ok(events) => panic!("expected a rejection, got {events:?}"),
            Err(e) => assert!(check(&e), "unexpected rejection: {e:?}"),
        }
    }
}
