//! `given(history).when(command).then_expect(events)`: an aggregate is rebuilt from its
//! history, a decision runs against it, and the outcome is compared with what the rule
//! says. Tests read like the rule they check.

use std::fmt::Debug;

use chrono::{DateTime, TimeZone, Utc};
use domain::{Aggregate, DomainError, ErrorKind};
use schemas::events::Event;

/// When the events of a `given` history happened (the timestamps they leave in state).
#[allow(non_snake_case)]
pub fn HISTORY_AT() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0)
        .single()
        .expect("a valid time")
}

pub struct Given {
    history: Vec<Event>,
}

/// The aggregate's history (its own stream, oldest first).
pub fn given(history: impl IntoIterator<Item = Event>) -> Given {
    Given {
        history: history.into_iter().collect(),
    }
}

/// An aggregate that does not exist yet.
pub fn given_nothing() -> Given {
    given([])
}

impl Given {
    /// Runs a decision on the aggregate rebuilt from the history; the closure's argument
    /// type says which aggregate.
    pub fn when<A: Aggregate, R>(
        self,
        decide: impl FnOnce(&A) -> Result<R, DomainError>,
    ) -> Then<R> {
        let state = A::replay(&self.history, HISTORY_AT());
        Then {
            outcome: decide(&state),
        }
    }
}

/// A state that no event leads to by itself (e.g. a charging drone).
pub fn given_state<A>(state: A) -> GivenState<A> {
    GivenState { state }
}

pub struct GivenState<A> {
    state: A,
}

impl<A> GivenState<A> {
    pub fn when<R>(self, decide: impl FnOnce(&A) -> Result<R, DomainError>) -> Then<R> {
        Then {
            outcome: decide(&self.state),
        }
    }
}

pub struct Then<R> {
    outcome: Result<R, DomainError>,
}

impl<R: Debug + PartialEq> Then<R> {
    /// The command is accepted and produces exactly `expected`.
    #[track_caller]
    pub fn then_expect(self, expected: R) {
        match self.outcome {
            Ok(actual) => assert_eq!(actual, expected),
            Err(error) => panic!("expected {expected:?}, got error: {error} ({error:?})"),
        }
    }

    /// The command is accepted; returns what it produced for further checks.
    #[track_caller]
    pub fn then_accepted(self) -> R {
        match self.outcome {
            Ok(actual) => actual,
            Err(error) => panic!("expected the command to be accepted, got: {error} ({error:?})"),
        }
    }

    /// The command is refused with exactly `expected`.
    #[track_caller]
    pub fn then_error(self, expected: DomainError) {
        let kind = expected.kind();
        let actual = self.then_error_kind(kind);
        assert_eq!(actual, expected);
    }

    /// The command is refused with an error of `kind`; returns it for further checks.
    #[track_caller]
    pub fn then_error_kind(self, kind: ErrorKind) -> DomainError {
        match self.outcome {
            Ok(actual) => panic!("expected a {kind:?} error, got {actual:?}"),
            Err(error) => {
                assert_eq!(error.kind(), kind, "wrong kind for: {error}");
                assert!(!error.to_string().is_empty());
                error
            }
        }
    }
}

/// The state an aggregate's history folds to.
pub fn state<A: Aggregate>(history: &[Event]) -> A {
    A::replay(history, HISTORY_AT())
}
