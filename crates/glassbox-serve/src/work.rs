//! Model computations run off the request threads, on the kernels' rayon pool (where their
//! parallel calls are cheapest), one at a time per model: the caller holds the model's turn,
//! which goes with the work, so a client that disconnects does not let a second computation
//! start beside one still running.
//!
//! Each computation is watched by a [`StopFlag`]: it stops at its next hook point when the
//! request is dropped (the client went away) or when it runs past the server's time limit
//! (`glassbox serve --time-limit`), which the client learns as a 503.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::http::StatusCode;
use glassbox_models::stop::StopFlag;
use tokio::sync::OwnedSemaphorePermit;

use crate::ApiError;

/// The default of `glassbox serve --time-limit`: the longest one request's computation runs.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Sets the flag when dropped armed: the request's future was dropped before its answer came.
struct StopOnDrop(Option<StopFlag>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.stop();
        }
    }
}

/// Runs `work` on the pool and waits for it without blocking the server; a panic in it is a
/// 500, never the end of the server. `limit`: how long it may run (`None`: as long as it
/// takes).
pub async fn on_pool<T: Send + 'static>(
    turn: OwnedSemaphorePermit,
    limit: Option<Duration>,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let flag = StopFlag::new();
    let mut armed = StopOnDrop(Some(flag.clone()));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let watched = flag.clone();
    rayon::spawn(move || {
        // A client that left while this waited for its turn costs nothing.
        let result = if watched.is_set() {
            Err(ApiError::internal("cancelled before it started"))
        } else {
            std::panic::catch_unwind(AssertUnwindSafe(|| watched.watch(work))).unwrap_or_else(
                |_| {
                    Err(ApiError::internal(
                        "the computation failed unexpectedly (a bug: please report it)",
                    ))
                },
            )
        };
        drop(turn);
        let _ = tx.send(result);
    });
    let answer = match limit {
        None => (&mut rx).await,
        Some(limit) => match tokio::time::timeout(limit, &mut rx).await {
            Ok(answer) => answer,
            // Stopped at its next hook point; its turn is given back when it has stopped.
            Err(_) => {
                flag.stop();
                return Err(past_limit(limit));
            }
        },
    };
    armed.0 = None;
    answer.unwrap_or_else(|_| Err(ApiError::internal("the computation was lost")))
}

/// The answer to a request whose computation ran past the time limit.
pub fn past_limit(limit: Duration) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "the computation ran past this server's limit of {} s and was stopped (give less work, or start the server with a larger --time-limit)",
            limit.as_secs_f64()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    fn a_turn() -> OwnedSemaphorePermit {
        Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap()
    }

    /// Work that looks for the stop at each of its steps, as a forward pass does at each hook
    /// point; it counts its steps and says whether it was stopped.
    fn stoppable(steps: Arc<AtomicUsize>) -> impl FnOnce() -> Result<bool, ApiError> {
        move || {
            for _ in 0..2_000 {
                if glassbox_models::stop::requested() {
                    return Ok(true);
                }
                steps.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(false)
        }
    }

    /// The work stopped soon after it was asked to (it would take 10 s otherwise): its step
    /// count no longer moves.
    fn assert_stopped(steps: &AtomicUsize) {
        std::thread::sleep(Duration::from_millis(200));
        let seen = steps.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(steps.load(Ordering::Relaxed), seen, "the work went on");
        assert!(seen < 200, "{seen} steps");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn work_past_the_time_limit_is_stopped_and_answered_with_503() {
        let steps = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let answer = runtime().block_on(on_pool(
            a_turn(),
            Some(Duration::from_millis(100)),
            stoppable(Arc::clone(&steps)),
        ));
        let err = answer.err().expect("past the limit");
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.message.contains("limit of 0.1 s"), "{}", err.message);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_stopped(&steps);
    }

    #[test]
    fn a_dropped_request_stops_its_work() {
        let steps = Arc::new(AtomicUsize::new(0));
        let rt = runtime();
        rt.block_on(async {
            let request = on_pool(a_turn(), None, stoppable(Arc::clone(&steps)));
            // the client goes away after 100 ms: the request's future is dropped
            let gone = tokio::time::timeout(Duration::from_millis(100), request).await;
            assert!(gone.is_err());
        });
        assert_stopped(&steps);
    }

    #[test]
    fn work_within_the_limit_answers_as_it_did() {
        let answer = runtime().block_on(on_pool(a_turn(), Some(Duration::from_secs(60)), || {
            Ok(glassbox_models::stop::requested())
        }));
        assert_eq!(answer.ok(), Some(false));
    }
}
