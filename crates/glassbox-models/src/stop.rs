//! Stopping a computation from outside it: a [`StopFlag`] that whoever gave up on the result
//! sets (a server whose client left or whose deadline passed, Python's Ctrl-C), and that every
//! forward pass run under [`StopFlag::watch`] on that thread sees at its next hook point, and
//! every backward pass at its next matrix product's gradient.
//!
//! Models need nothing of their own for it: each architecture passes through
//! [`Hooks::point`](crate::Hooks::point) several times a layer anyway. Long loops outside a
//! forward pass (a lens's unembedding of each layer, drift's prompts) call [`check`] between
//! their steps.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

thread_local! {
    /// The flag of the computation running on this thread, if any watches one.
    static WATCHED: RefCell<Option<StopFlag>> = const { RefCell::new(None) };
}

/// What a stopped computation fails with (a `candle_core::Error::Msg`, so that it passes
/// through every layer's error type unchanged).
pub const STOPPED: &str = "the computation was stopped";

/// A request to stop, shared between the computation and whoever may give up on it.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks the computation to stop at its next hook point or step.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs `f` with this flag watched by everything it runs on this thread; the flag watched
    /// before (an outer computation's, when a pool thread runs a second job while it waits)
    /// is watched again afterwards, also when `f` panics.
    pub fn watch<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<StopFlag>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let outer = self.0.take();
                WATCHED.with(|w| *w.borrow_mut() = outer);
            }
        }
        let outer = WATCHED.with(|w| w.borrow_mut().replace(self.clone()));
        let _restore = Restore(outer);
        f()
    }
}

/// Whether the computation running on this thread was asked to stop.
#[inline]
pub fn requested() -> bool {
    WATCHED.with(|w| w.borrow().as_ref().is_some_and(StopFlag::is_set))
}

/// Fails with [`STOPPED`] when the computation running on this thread was asked to stop: for
/// the steps of a long loop.
pub fn check() -> candle_core::Result<()> {
    if requested() {
        candle_core::bail!("{STOPPED}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_is_seen_only_inside_its_watch_and_the_outer_one_comes_back() {
        let outer = StopFlag::new();
        let inner = StopFlag::new();
        assert!(!requested());
        outer.watch(|| {
            inner.stop();
            assert!(!requested(), "the outer flag is not set");
            inner.watch(|| assert!(requested() && check().is_err()));
            assert!(!requested(), "the outer flag is watched again");
            outer.stop();
            assert!(requested());
        });
        assert!(!requested(), "nothing is watched outside");
        let panicked = std::panic::catch_unwind(|| inner.watch(|| panic!("in the job")));
        assert!(panicked.is_err());
        assert!(!requested(), "a panic does not leave the flag watched");
    }

    #[test]
    fn another_thread_does_not_see_this_threads_flag() {
        let flag = StopFlag::new();
        flag.stop();
        flag.watch(|| {
            assert!(requested());
            assert!(!std::thread::spawn(requested).join().unwrap());
        });
    }
}
