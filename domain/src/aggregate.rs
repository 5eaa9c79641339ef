use schemas::events::Event;

/// State rebuilt by folding its own events; events of other aggregates are ignored.
pub trait Aggregate: Default {
    fn apply(&mut self, event: &Event);

    /// Replays a stream from the start (the state is the fold of its history).
    fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}
