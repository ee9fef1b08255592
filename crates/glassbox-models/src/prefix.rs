//! Reruns that share their start with a recorded run: a patched run differs from the run it
//! patches only from the patched layer on, and — in a causal model — only at the patched
//! position and after it. [`RecordedRun`] keeps what a later run needs to start there: every
//! layer's `hook_resid_pre` and the keys and values of every position. Activation patching
//! uses it to rerun only what a patch can change.
//!
//! The reruns give the bits a full pass gives, because each kernel fixes every output's
//! summation order whatever the batch or row count (see `glassbox_kernels`) — except that
//! products of at most [`FEW_ROWS`] rows sum in another order. A rerun therefore covers more
//! than `FEW_ROWS` positions (when the prompt has that many), and [`HookedModel::unembed_rows`]
//! pads short products.

use candle_core::Tensor;
pub use glassbox_kernels::FEW_ROWS;

use crate::error::{ModelError, Result};
use crate::hooks::{ActivationCache, Hooks, NameFilter};
use crate::kv_cache::KvCache;
use crate::model::HookedModel;

/// One prompt's run with its keys, values and residual streams kept.
pub struct RecordedRun {
    /// The prompt's length.
    pub len: usize,
    /// Logits [1, len, d_vocab].
    pub logits: Tensor,
    /// `blocks.{l}.hook_resid_pre` [1, len, d_model], per layer.
    resid_pre: Vec<Tensor>,
    /// The activations at the hooks the caller asked to keep.
    pub cache: ActivationCache,
    kv: KvCache,
}

impl RecordedRun {
    /// The earliest position a rerun of positions `from..` may start at and still give a full
    /// pass's bits: early enough that it covers more than [`FEW_ROWS`] positions.
    pub fn rerun_start(&self, from: usize) -> usize {
        if self.len > FEW_ROWS {
            from.min(self.len - FEW_ROWS - 1)
        } else {
            0
        }
    }
}

impl HookedModel {
    /// Runs one prompt, keeping what [`rerun`](Self::rerun) starts from, and the activations
    /// at the hooks `keep` names. None when the architecture cannot start a pass midway (an
    /// encoder, for instance).
    pub fn record_run(&self, ids: &[u32], keep: &NameFilter) -> Result<Option<RecordedRun>> {
        if !self.model.starts_midway() || !self.info().causal {
            return Ok(None);
        }
        let ids = self.ids_tensor(ids)?;
        let ids = self.check_ids(&ids)?;
        let n_layers = self.info().n_layers;
        let mut patterns = keep.patterns().to_vec();
        patterns.push("blocks.*.hook_resid_pre".into());
        let filter = NameFilter::new(&patterns).map_err(|e| ModelError::Input(e.to_string()))?;
        let mut hooks = Hooks::caching(filter);
        let mut kv = KvCache::new(n_layers);
        let logits = self.model.forward(&ids, None, &mut hooks, Some(&mut kv))?;
        let mut cache = hooks.take_cache();
        let resid_pre = (0..n_layers)
            .map(|l| {
                let name = format!("blocks.{l}.hook_resid_pre");
                let t = match keep.matches(&name) {
                    true => cache.get(&name).cloned(),
                    false => cache.remove(&name),
                };
                t.ok_or_else(|| ModelError::Input(format!("no {name}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordedRun {
            len: ids.dim(1)?,
            logits,
            resid_pre,
            cache,
            kv,
        }))
    }

    /// Reruns `run` from block `layer` on, over positions `start..` (see
    /// [`RecordedRun::rerun_start`]), as `batch` copies side by side: hooks from
    /// `blocks.{layer}.hook_resid_pre` on see [batch, positions, ..] for a suffix of the
    /// positions `start..len` and may change each copy differently. Returns the residual
    /// stream after the last block, [batch, len − start, d_model] — or, with `last_rows`, the
    /// last that many positions only, which the last block then computes alone (from its
    /// attention scores on, its hooks see only them). Without hooks the rows are the recorded
    /// run's, bit for bit, when they number more than [`FEW_ROWS`].
    pub fn rerun(
        &self,
        run: &RecordedRun,
        layer: usize,
        start: usize,
        batch: usize,
        hooks: &mut Hooks,
        last_rows: Option<usize>,
    ) -> Result<Tensor> {
        if layer >= run.resid_pre.len() || start >= run.len || batch == 0 {
            return Err(ModelError::Input(format!(
                "a rerun from layer {layer}, position {start}, of a {}-layer run over {} positions",
                run.resid_pre.len(),
                run.len
            )));
        }
        let resid = run.resid_pre[layer].narrow(1, start, run.len - start)?;
        let mut dims = resid.dims().to_vec();
        dims[0] = batch;
        let resid = resid.broadcast_as(dims)?.contiguous()?;
        let mut kv = run.kv.prefix(start, batch, layer)?;
        Ok(self
            .model
            .forward_from_layer(&resid, layer, hooks, Some(&mut kv), last_rows)?)
    }

    /// Logits [n, d_vocab] of final residual-stream rows [n, d_model] (after the last block,
    /// before the final norm), bit-identical to those rows' logits in a full pass: fewer than
    /// [`FEW_ROWS`] + 1 rows are padded so that the product sums in the full pass's order.
    pub fn unembed_rows(&self, resid: &Tensor) -> Result<Tensor> {
        let n = resid.dim(0)?;
        let padded = if n <= FEW_ROWS {
            let pad = resid.narrow(0, n - 1, 1)?.repeat((FEW_ROWS + 1 - n, 1))?;
            Tensor::cat(&[resid, &pad], 0)?
        } else {
            resid.clone()
        };
        // `unembed` returns f32 logits (f64 for an f64 model), as a full pass does.
        let logits = self.model.unembed(&self.model.final_norm(&padded)?)?;
        Ok(logits.narrow(0, 0, n)?)
    }
}
