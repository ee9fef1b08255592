//! `glassbox._native`, the extension module under the Python package `glassbox`: the same
//! library calls as the CLI and the workbench, with the GIL released while they run. The
//! Python side (`python/glassbox/`) shapes it as TransformerLens' API.

mod analyses;
mod arrays;
mod errors;
mod gradients;
mod model;
mod work;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // As the CLI starts: candle's own thread pool stays out of the kernels' way, a forced
    // instruction-set path the CPU cannot run is refused up front, and the kernels' pool runs
    // on threads with the main thread's stack size.
    glassbox_models::kernel_ops::claim_cpu_threads();
    // As the CLI: freed activation buffers stay in the heap for the next pass (up to 1 GiB) instead
    // of going back to the kernel and being faulted in again (10–15 % of an 8×128 forward).
    glassbox_models::memory::keep_freed_memory();
    glassbox_kernels::isa_from_env()
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::Model>()?;
    m.add_class::<arrays::Held>()?;
    m.add_class::<gradients::Graph>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::predictions, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::lens, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::attribute, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::heads, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::patch, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::ablate, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::steer, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::experts, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::audit, m)?)?;
    m.add_function(wrap_pyfunction!(analyses::audit_registry, m)?)?;
    Ok(())
}
