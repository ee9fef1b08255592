//! What the commands that train share (`train`, `reproduce`).

use glassbox_train::trainer;

/// Sets the training thread count — `requested`, capped at the machine's CPUs with a note
/// (more threads only oversubscribe them; the weights do not depend on the count) — and
/// returns it.
pub fn set_threads(requested: usize) -> usize {
    let threads = trainer::set_threads(requested);
    if threads < requested {
        eprintln!("note: {requested} threads capped at this machine's {threads} CPUs");
    }
    threads
}
