//! Gradients at hook points: what TransformerLens' backward hooks and `incl_bwd` caches give.
//!
//! A pass that wants gradients adds a zero leaf to the activation at every hook point asked
//! for (after the point's own hooks, so the gradient is with respect to what the rest of the
//! model reads). Adding zero leaves the values as they are, bit for bit, and the upstream graph
//! connected; the leaf's gradient is the total derivative of the scalar through everything
//! downstream, later hook points included. [`Graph`] holds the pass's logits with their graph
//! until Python has computed the scalar's gradient with respect to them (its `seed`), so the
//! forward pass runs once.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor, Var};
use glassbox_models::Hooks;
use pyo3::prelude::*;

use crate::arrays::{tensor_from_f32, Held};
use crate::errors::{call_error, invalid};
use crate::work;

/// The leaves a pass added: (hook name, leaf), in the order the pass reached them.
pub type Leaves = Arc<Mutex<Vec<Leaf>>>;

/// A hook point's name and the zero leaf added there.
type Leaf = (String, Var);

/// Adds a zero leaf at every point `filter` selects; `leaves` records them.
pub fn add_leaves(hooks: &mut Hooks<'_>, filter: glassbox_models::NameFilter, leaves: &Leaves) {
    let leaves = Arc::clone(leaves);
    hooks.add_fn(filter, move |name: &str, t: &Tensor| {
        if !t.dtype().is_float() {
            // routed experts' indices: no gradient
            return Ok(None);
        }
        let leaf = Var::zeros(t.shape(), DType::F32, t.device())?;
        let out = (t + leaf.as_tensor().to_dtype(t.dtype())?)?;
        leaves
            .lock()
            .expect("gradient leaves")
            .push((name.to_string(), leaf));
        Ok(Some(out))
    });
}

/// A forward pass kept for one backward pass: its logits (with their graph) and the leaves at
/// the hook points whose gradients were asked for.
#[pyclass(module = "glassbox._native", frozen)]
pub struct Graph {
    /// The logits and the leaves; taken (and so the graph freed) by the backward pass.
    pass: Mutex<Option<(Tensor, Vec<Leaf>)>>,
    /// The hook points whose activation a Python function replaced: constants to the
    /// gradient, which flows around them.
    #[pyo3(get)]
    replaced: Vec<String>,
}

impl Graph {
    pub fn new(logits: Tensor, leaves: &Leaves, replaced: Vec<String>) -> Graph {
        let leaves = std::mem::take(&mut *leaves.lock().expect("gradient leaves"));
        Graph {
            pass: Mutex::new(Some((logits, leaves))),
            replaced,
        }
    }
}

#[pymethods]
impl Graph {
    /// The gradients of `Σ logits · seed` (`seed`: float32, the logits' shape — the gradient
    /// of the caller's scalar with respect to the logits) at each hook point, as (name,
    /// float32 array) in the order the forward pass reached them; zero where the scalar does
    /// not depend on the point. Once per graph: the graph is freed.
    fn backward(&self, py: Python<'_>, seed: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Held)>> {
        let seed = tensor_from_f32(py, seed, DType::F32)?;
        let mut pass = self.pass.lock().expect("gradient graph");
        let Some((logits, _)) = pass.as_ref() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this pass's backward pass already ran (its graph is freed)",
            ));
        };
        if seed.dims() != logits.dims() {
            return Err(invalid(format!(
                "the gradient with respect to the logits has shape {:?}; the logits {:?}",
                seed.dims(),
                logits.dims()
            )));
        }
        let (logits, leaves) = pass.take().expect("checked above");
        drop(pass);
        work::run(
            py,
            move |_| -> anyhow::Result<Vec<(String, Held)>> {
                let scalar = (logits.to_dtype(DType::F32)? * seed)?.sum_all()?;
                let grads = scalar.backward()?;
                leaves
                    .into_iter()
                    .map(|(name, leaf)| {
                        let g = match grads.get(leaf.as_tensor()) {
                            Some(g) => g.to_dtype(DType::F32)?,
                            // no path from this point to the logits
                            None => leaf.as_tensor().zeros_like()?,
                        };
                        Ok((name, Held::new(&g)?))
                    })
                    .collect()
            },
            call_error,
        )
    }
}
