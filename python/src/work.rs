//! Running a computation on the kernels' thread pool with the GIL released, and stopping it on
//! Ctrl-C.
//!
//! Python handles signals on its main thread only, between bytecodes. So the caller's thread
//! hands the work to the pool (where the kernels split it among the workers directly, as the
//! CLI's commands run) and waits for it, taking the GIL back every 50 ms to let Python run its
//! signal handlers. A `KeyboardInterrupt` sets the computation's [`Cancel`] flag: every forward
//! pass sees it at its next hook point (`glassbox_models::stop`), a backward pass at its next
//! product's gradient, and long computations
//! (patching, ablation, generation) at each step; the call then raises it.

use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

use glassbox_models::stop::StopFlag;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Set when the caller pressed Ctrl-C: stop at the next hook point or step.
#[derive(Clone, Default)]
pub struct Cancel(StopFlag);

impl Cancel {
    pub fn is_set(&self) -> bool {
        self.0.is_set()
    }

    /// A progress callback for the analyses: breaks once cancelled.
    pub fn progress(&self) -> impl FnMut() -> std::ops::ControlFlow<()> + '_ {
        move || {
            if self.is_set() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        }
    }
}

/// How often the waiting thread looks for a signal.
const POLL: Duration = Duration::from_millis(50);

/// Runs `job` on the kernels' pool without the GIL; errors become Python exceptions through
/// `to_py`, but for a `PyErr` in the error (a hook's exception), raised as it is. A Ctrl-C
/// while it runs cancels it and raises `KeyboardInterrupt` once it stopped.
pub fn run<T, F>(py: Python<'_>, job: F, to_py: fn(anyhow::Error) -> PyErr) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Cancel) -> anyhow::Result<T> + Send + 'static,
{
    let cancel = Cancel::default();
    // Called from a Python hook, which runs on a pool thread: run here, inline. Handing the job
    // to the pool and waiting would block a worker the job may need (all of them, on one core).
    if rayon::current_thread_index().is_some() {
        return py.detach(|| job(&cancel)).map_err(|e| exception(e, to_py));
    }
    let (tx, rx) = channel();
    let flag = cancel.clone();
    rayon::spawn(move || {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| flag.0.watch(|| job(&flag))));
        let _ = tx.send(outcome);
    });
    let mut interrupted: Option<PyErr> = None;
    let mut rx = rx;
    loop {
        let (received, back) = py.detach(move || (rx.recv_timeout(POLL), rx));
        rx = back;
        match received {
            Ok(outcome) => {
                if let Some(err) = interrupted {
                    return Err(err);
                }
                return match outcome {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(exception(e, to_py)),
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("a panic");
                        Err(PyRuntimeError::new_err(format!("internal error: {what}")))
                    }
                };
            }
            Err(RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        cancel.0.stop();
                        interrupted = Some(e);
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "the computation ended without a result",
                ))
            }
        }
    }
}

/// A job's error as a Python exception: one a Python hook raised is re-raised as it was.
fn exception(e: anyhow::Error, to_py: fn(anyhow::Error) -> PyErr) -> PyErr {
    match e.downcast::<PyErr>() {
        Ok(raised) => raised,
        Err(e) => to_py(e),
    }
}
