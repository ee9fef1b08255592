//! Model computations run off the request threads, on the kernels' rayon pool (where their
//! parallel calls are cheapest), one at a time per model: the caller holds the model's turn,
//! which goes with the work, so a client that disconnects does not let a second computation
//! start beside one still running.

use std::panic::AssertUnwindSafe;

use tokio::sync::OwnedSemaphorePermit;

use crate::ApiError;

/// Runs `work` on the pool and waits for it without blocking the server; a panic in it is a
/// 500, never the end of the server.
pub async fn on_pool<T: Send + 'static>(
    turn: OwnedSemaphorePermit,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
            Err(ApiError::internal(
                "the computation failed unexpectedly (a bug: please report it)",
            ))
        });
        drop(turn);
        let _ = tx.send(result);
    });
    rx.await
        .unwrap_or_else(|_| Err(ApiError::internal("the computation was lost")))
}
