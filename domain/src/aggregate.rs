use chrono::{DateTime, Utc};
use schemas::events::Event;

/// State rebuilt by folding its own events; events of other aggregates are ignored.
pub trait Aggregate: Default {
    /// Folds one event, which happened `at` (its `occurredAt`).
    fn apply(&mut self, event: &Event, at: DateTime<Utc>);

    /// Replays a stream from the start (the state is the fold of its history), every
    /// event taken as happening `at`.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Event>, at: DateTime<Utc>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.apply(event, at);
        }
        state
    }
}
