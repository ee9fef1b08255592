//! Keeping the pool's workers awake through a decoding loop.
//!
//! Decoding one token makes about a hundred small parallel calls (one per matrix, norm and
//! activation), each a few tens of microseconds of work. Between them rayon's idle workers go
//! to sleep, and every call then pays to wake one (measured: about a fifth of a GPT-2 small
//! decoding step). While an [`AwakeWorkers`] guard lives, the other workers of the pool spin
//! instead, running each call's tasks as soon as they appear — what ggml's thread pool does
//! while it decodes. The spinning costs the cores it runs on, so only loops of many small
//! calls take the guard. Results do not change: which thread runs a task never does.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Workers spinning now, for the tests.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This worker already spins for a guard (a second spinner here would only nest).
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

/// While alive, all but one of the pool's workers spin rather than sleep (see the module
/// docs). Dropping it lets them sleep again.
#[must_use = "the workers spin only while the guard lives"]
pub struct AwakeWorkers {
    stop: Arc<AtomicBool>,
}

/// Starts spinning workers for the current rayon pool: one fewer than its threads, so that
/// the thread taking the guard (inside the pool or outside it) keeps a core of its own.
pub fn keep_workers_awake() -> AwakeWorkers {
    let stop = Arc::new(AtomicBool::new(false));
    let owner = rayon::current_thread_index();
    for _ in 1..rayon::current_num_threads() {
        let stop = Arc::clone(&stop);
        rayon::spawn(move || {
            // Never on the guard's own thread, which would spin above its own work, nor twice
            // on one worker.
            if rayon::current_thread_index() == owner || SPINNING.with(Cell::get) {
                return;
            }
            SPINNING.with(|s| s.set(true));
            SPINNERS.fetch_add(1, Ordering::AcqRel);
            while !stop.load(Ordering::Acquire) {
                if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                    // Give the core up if anything else wants it (a busy machine): the thread
                    // that will make the next call may be waiting for it.
                    std::thread::yield_now();
                }
            }
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
            SPINNING.with(|s| s.set(false));
        });
    }
    AwakeWorkers { stop }
}

impl Drop for AwakeWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Parallel work runs, with the same results, while workers spin; the guard's drop ends
    /// every spinner.
    #[test]
    fn work_runs_while_workers_spin_and_they_stop() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let expected: u64 = (0..10_000u64).map(|i| i * i).sum();
        pool.install(|| {
            for _ in 0..3 {
                let awake = keep_workers_awake();
                let start = std::time::Instant::now();
                while SPINNERS.load(Ordering::Acquire) == 0 {
                    assert!(start.elapsed().as_secs() < 10, "no worker started spinning");
                    std::thread::yield_now();
                }
                for _ in 0..50 {
                    let sum: u64 = (0..10_000u64).into_par_iter().map(|i| i * i).sum();
                    assert_eq!(sum, expected);
                }
                drop(awake);
                let start = std::time::Instant::now();
                while SPINNERS.load(Ordering::Acquire) != 0 {
                    assert!(start.elapsed().as_secs() < 10, "a worker kept spinning");
                    std::thread::yield_now();
                }
            }
        });
    }
}
