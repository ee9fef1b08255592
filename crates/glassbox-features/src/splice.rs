//! Splicing SAEs into a model's forward pass, as SAELens's `HookedSAETransformer` does: at
//! the SAE's hook the rest of the model sees the SAE's output — its reconstruction, or with
//! the error term the reconstruction plus `x − reconstruction` (so the output is the
//! activation itself, and an edit of a feature moves it by exactly that feature's effect).
//!
//! The SAE's own points fire under the hook's name (`blocks.0.hook_resid_post.hook_sae_acts_post`)
//! through the pass's [`Hooks`], so they cache and take interventions like the model's. One
//! difference from SAELens, which replaces the hook point: the point itself still fires first,
//! with the activation the model computed (the SAE's input).

use std::sync::Arc;

use candle_core::Tensor;
use glassbox_models::hooks::{Layout, Splice};
use glassbox_models::kv_cache::KvCache;
use glassbox_models::{HookedModel, Hooks, Model, ModelInfo, NameFilter};

use crate::error::{FeatureError, Result};
use crate::sae::Sae;

/// How spliced SAEs feed the model.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpliceOptions {
    /// Add the reconstruction error back (SAELens's `use_error_term`; default off, as there:
    /// the model runs on the reconstruction).
    pub error_term: bool,
}

/// One SAE at its hook point.
pub struct SaeSplice {
    pub sae: Sae,
    pub error_term: bool,
}

impl SaeSplice {
    fn run(&self, point: &str, x: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let sae = &self.sae;
        let enc = sae.encode_hooked(x, hooks, point)?;
        let mut y = sae.decode_hooked(&enc, hooks, point)?;
        if self.error_term {
            // The error is measured with no hooks and no gradient, so edits inside the SAE
            // reach the output and gradients flow through the reconstruction only (SAELens).
            let clean = sae.reconstruct(x)?;
            let err = (x.to_dtype(clean.dtype())? - clean)?.detach();
            let err = hooks.point(|| format!("{point}.hook_sae_error"), err)?;
            y = (y.to_dtype(err.dtype())? + err)?;
        }
        Ok(hooks.point(|| format!("{point}.hook_sae_output"), y)?)
    }
}

impl Splice for SaeSplice {
    fn splice(&self, point: &str, x: Tensor, hooks: &mut Hooks) -> candle_core::Result<Tensor> {
        let wrap = |e: FeatureError| candle_core::Error::Msg(e.to_string());
        match self.sae.cfg.hook_head_index {
            None => Ok(self
                .run(point, &x, hooks)
                .map_err(wrap)?
                .to_dtype(x.dtype())?),
            Some(head) => {
                // One head of a [batch, pos, head, d_head] point: the others pass unchanged.
                let dim = Layout::of(point).head_dim.unwrap_or(2);
                let one = x.narrow(dim, head, 1)?.squeeze(dim)?;
                let y = self
                    .run(point, &one, hooks)
                    .map_err(wrap)?
                    .to_dtype(x.dtype())?;
                with_head(&x, dim, head, &y)
            }
        }
    }
}

/// `a` with head `head` (along `dim`) replaced by `y` (`a` without that dimension).
pub(crate) fn with_head(
    a: &Tensor,
    dim: usize,
    head: usize,
    y: &Tensor,
) -> candle_core::Result<Tensor> {
    let n = a.dim(dim)?;
    let mut parts = Vec::with_capacity(3);
    if head > 0 {
        parts.push(a.narrow(dim, 0, head)?);
    }
    parts.push(y.unsqueeze(dim)?);
    if head + 1 < n {
        parts.push(a.narrow(dim, head + 1, n - head - 1)?);
    }
    Tensor::cat(&parts, dim)
}

/// A model with SAEs spliced in: every pass — whole, from a layer, or decoding — carries them.
pub struct SplicedModel {
    inner: Box<dyn Model>,
    splices: Vec<(String, Arc<SaeSplice>)>,
}

impl SplicedModel {
    fn with<T>(
        &self,
        hooks: &mut Hooks,
        f: impl FnOnce(&mut Hooks) -> candle_core::Result<T>,
    ) -> candle_core::Result<T> {
        for (point, s) in &self.splices {
            hooks.push_splice(point.clone(), Arc::clone(s) as Arc<dyn Splice>);
        }
        let out = f(hooks);
        hooks.pop_splices(self.splices.len());
        out
    }

    /// The spliced SAEs, in splice order.
    pub fn saes(&self) -> impl Iterator<Item = &Sae> {
        self.splices.iter().map(|(_, s)| &s.sae)
    }
}

impl Model for SplicedModel {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor> {
        self.with(hooks, |h| {
            self.inner.forward(input_ids, attention_mask, h, kv)
        })
    }

    fn forward_last(
        &self,
        input_ids: &Tensor,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor> {
        self.with(hooks, |h| self.inner.forward_last(input_ids, h, kv))
    }

    fn forward_from_layer(
        &self,
        resid: &Tensor,
        first_layer: usize,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
        last_rows: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        self.with(hooks, |h| {
            self.inner
                .forward_from_layer(resid, first_layer, h, kv, last_rows)
        })
    }

    fn starts_midway(&self) -> bool {
        self.inner.starts_midway()
    }

    fn finish(&self, resid: &Tensor, hooks: &mut Hooks) -> candle_core::Result<Tensor> {
        self.with(hooks, |h| self.inner.finish(resid, h))
    }

    fn final_norm(&self, resid: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.final_norm(resid)
    }

    fn normalization_type(&self) -> Option<&'static str> {
        self.inner.normalization_type()
    }

    fn unembed(&self, normed: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.unembed(normed)
    }

    fn final_softcap(&self) -> Option<f64> {
        self.inner.final_softcap()
    }

    fn w_u(&self) -> candle_core::Result<Tensor> {
        self.inner.w_u()
    }

    fn has_unembedding(&self) -> bool {
        self.inner.has_unembedding()
    }

    fn w_o(&self, layer: usize) -> candle_core::Result<Tensor> {
        self.inner.w_o(layer)
    }

    fn b_o(&self, layer: usize) -> candle_core::Result<Tensor> {
        self.inner.b_o(layer)
    }
}

/// Checks that each SAE reads a point of `model` with the activations it expects: the hook
/// exists, its width (or one head's, or all heads' for hook_z SAEs) is the SAE's `d_in`.
/// Runs the model on one token to see the points.
pub fn check_fits(model: &HookedModel, saes: &[Sae]) -> Result<()> {
    if saes.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = saes.iter().map(|s| s.hook_name()).collect();
    let filter = NameFilter::new(&names)
        .map_err(|e| FeatureError::input(format!("SAE hook names are not valid: {e}")))?;
    let ids = model.ids_tensor(&[0])?;
    let (_, cache) = model.run_with_cache(&ids, &filter)?;
    for sae in saes {
        let hook = sae.hook_name();
        let Some(t) = cache.get(hook) else {
            return Err(FeatureError::input(format!(
                "{}: the SAE reads `{hook}`, which is not a hook point of this model ({})",
                sae.source.display(),
                model.info().architecture
            )));
        };
        let dims = t.dims();
        let width = match (sae.cfg.hook_head_index, sae.cfg.reshape_hook_z) {
            (Some(head), _) => {
                let Some(dim) = Layout::of(hook).head_dim else {
                    return Err(FeatureError::input(format!(
                        "{}: `hook_head_index` {head} on `{hook}`, which has no heads",
                        sae.source.display()
                    )));
                };
                if head >= dims[dim] {
                    return Err(FeatureError::input(format!(
                        "{}: `hook_head_index` {head} on `{hook}`, which has {} heads",
                        sae.source.display(),
                        dims[dim]
                    )));
                }
                dims[dims.len() - 1]
            }
            (None, true) => dims[dims.len() - 2..].iter().product(),
            (None, false) => dims[dims.len() - 1],
        };
        if width != sae.cfg.d_in {
            return Err(FeatureError::input(format!(
                "{}: the SAE reads {} values per token at `{hook}`, this model has {width} there",
                sae.source.display(),
                sae.cfg.d_in
            )));
        }
    }
    Ok(())
}

/// `model` with `saes` spliced in at their hooks (checked to fit first).
pub fn splice(model: HookedModel, saes: Vec<Sae>, opts: SpliceOptions) -> Result<HookedModel> {
    check_fits(&model, &saes)?;
    let splices: Vec<(String, Arc<SaeSplice>)> = saes
        .into_iter()
        .map(|sae| {
            (
                sae.hook_name().to_string(),
                Arc::new(SaeSplice {
                    sae,
                    error_term: opts.error_term,
                }),
            )
        })
        .collect();
    Ok(model.map_model(|inner| Box::new(SplicedModel { inner, splices })))
}
