//! [`ToCompletion`]: a future that finishes even when whoever awaits it goes away.
//!
//! A command handler must not stop between its append and the fold of the appended
//! events into the write model, or memory would fall behind the log. Hyper drops the
//! handler's future when the client disconnects, so the handler runs inside
//! `ToCompletion`: it is polled in place (no task per request, which costs a thread
//! wake-up on this path) and only an abandoned handler is handed to the runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct ToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    /// `None` once it has finished.
    future: Option<Pin<Box<F>>>,
}

impl<F> ToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    pub fn new(future: F) -> Self {
        ToCompletion {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F> Future for ToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Polled again after it finished: stay pending, as a fused future would.
        let Some(future) = self.future.as_mut() else {
            return Poll::Pending;
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for ToCompletion<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(rest) = self.future.take() {
            // Outside a runtime the process is shutting down and nothing is left to run it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn an_abandoned_future_still_finishes() {
        let finished = Arc::new(AtomicBool::new(false));
        let (release, released) = oneshot::channel::<()>();
        let (done, is_done) = oneshot::channel::<()>();
        let work = ToCompletion::new({
            let finished = finished.clone();
            async move {
                let _ = released.await;
                finished.store(true, Ordering::SeqCst);
                let _ = done.send(());
            }
        });
        // The caller gives up while the work is waiting.
        let abandoned = tokio::time::timeout(Duration::from_millis(10), work).await;
        assert!(abandoned.is_err(), "the work cannot finish before release");
        assert!(!finished.load(Ordering::SeqCst));

        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), is_done)
            .await
            .expect("the abandoned work ran to its end")
            .unwrap();
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_finished_future_returns_its_output() {
        assert_eq!(ToCompletion::new(async { 7 }).await, 7);
    }
}
