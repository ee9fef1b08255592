//! Mixture-of-experts feed-forward blocks, with the routing made visible.
//!
//! A [`MoeBlock`] replaces a decoder layer's MLP. Per token it
//! 1. scores every routed expert with a linear router ([`Router`]): the raw scores are the hook
//!    `blocks.{i}.mlp.hook_router_logits` [batch, pos, n_experts];
//! 2. turns them into probabilities (softmax for Mixtral / Qwen-MoE / DeepSeek-V2, sigmoid for
//!    DeepSeek-V3) and picks `k` experts, optionally limited to the best expert groups and biased
//!    by a score-correction term that only influences the choice: `hook_expert_indices`
//!    [batch, pos, k] (u32);
//! 3. gathers the chosen probabilities, optionally renormalises and scales them:
//!    `hook_expert_weights` [batch, pos, k];
//! 4. runs each used expert on its tokens. With hooks set, each expert's *unweighted* output is
//!    the hook `blocks.{i}.mlp.experts.{e}.hook_out` [batch, pos, d_model], zero at tokens not
//!    routed to it; the shared experts' output is `blocks.{i}.mlp.shared_experts.hook_out`.
//!    Inside an expert, as TransformerLens names its MoE experts' (`MoEGatedMLP`):
//!    `experts.{e}.hook_gate` (the gate projection, before its activation), `hook_pre` (the up
//!    projection) and `hook_post` (what enters the down projection), [batch, pos, d_ff], zero
//!    at tokens not routed to the expert — made only when a hook watches them.
//!
//! The block's output is Σₑ wₑ · outₑ + shared, where wₑ is the sum of the token's weights in the
//! slots that chose e. Every hook is writable: rewriting the logits or the indices forces a
//! routing (the weights are then gathered from the rewritten choice, exactly as the reference
//! gathers them), rewriting the weights reweights, zeroing an expert's output ablates it.
//! [`expert_contribution`] recombines a cached run into per-expert contributions, the
//! components of ablation and direct logit attribution.
//!
//! Selection (top-k, group limits) is not differentiable and runs on the host; everything the
//! output depends on continuously — router logits, probabilities, weights, expert outputs — is
//! built from differentiable ops (gather, index_select, index_add), so attribution patching
//! and training see gradients through the router and the experts.
//!
//! Experts load lazily ([`ExpertStore`]): an expert's weights are read from the checkpoint's
//! memory map the first time a token is routed to it, and kept only while they fit the memory
//! budget. A model whose experts exceed RAM therefore still runs, touching only used experts.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::decoder::FeedForward;
use crate::fp8;
use crate::hooks::{ActivationCache, Hooks};
use crate::layers::{Activation, Linear};
use crate::mlp::{Mlp, MlpProjection};
use crate::ops;

mod experts;
mod router;

pub use experts::*;
pub use router::*;

/// Weight names of the three projections of a gated MLP, as the checkpoint spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlpNames {
    pub gate: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

/// `gate_proj` / `up_proj` / `down_proj` (Llama, DeepSeek, Qwen-MoE).
pub const LLAMA_MLP_NAMES: MlpNames = MlpNames {
    gate: "gate_proj",
    up: "up_proj",
    down: "down_proj",
};

/// Mixtral's `w1` (gate) / `w3` (up) / `w2` (down).
pub const MIXTRAL_MLP_NAMES: MlpNames = MlpNames {
    gate: "w1",
    up: "w3",
    down: "w2",
};

/// How a gated MLP joins its gate and up projections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Glu {
    /// `act(gate) · up`.
    Plain,
    /// gpt-oss' experts: the gate clamped from above and the up projection on both sides at
    /// `limit`, then `(up + 1) · gate · σ(alpha · gate)`.
    ClampedSwiglu { alpha: f64, limit: f64 },
}

/// A gated feed-forward network, `down(act(gate(x)) · up(x))`: each expert, the shared
/// experts, and the dense layers of the DeepSeek family; without a gate, `down(act(up(x)))`
/// (Nemotron-H's experts).
#[derive(Clone, Debug)]
pub struct GatedMlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
    pub act: Activation,
    pub glu: Glu,
}

impl GatedMlp {
    pub fn load(
        vb: VarBuilder,
        names: MlpNames,
        d_model: usize,
        d_ff: usize,
        act: Activation,
    ) -> Result<Self> {
        // Block-scaled FP8 (DeepSeek-V3's published experts) is dequantized on load.
        Ok(GatedMlp {
            gate: Some(fp8::load_linear(vb.pp(names.gate), d_model, d_ff, false)?),
            up: fp8::load_linear(vb.pp(names.up), d_model, d_ff, false)?,
            down: fp8::load_linear(vb.pp(names.down), d_ff, d_model, false)?,
            act,
            glu: Glu::Plain,
        })
    }

    /// Bytes held by the three weight matrices.
    pub fn bytes(&self) -> usize {
        [self.gate.as_ref(), Some(&self.up), Some(&self.down)]
            .into_iter()
            .flatten()
            .map(|l| l.weight.bytes())
            .sum()
    }
}

impl Module for GatedMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, &mut |_, t| Ok(t))
    }
}

impl GatedMlp {
    /// The forward pass with each inner activation passed through `inner(hook, activation)`
    /// (`hook_gate`, `hook_pre`, `hook_post`: TransformerLens' names in its MoE experts), whose
    /// answer the rest of the expert reads.
    pub fn forward_with(
        &self,
        x: &Tensor,
        inner: &mut dyn FnMut(&'static str, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let up = self.up.forward(x)?;
        let Some(gate) = &self.gate else {
            let up = inner("hook_pre", up)?;
            let post = inner("hook_post", self.act.apply(&up)?)?;
            return self.down.forward(&post);
        };
        let gate = inner("hook_gate", gate.forward(x)?)?;
        let up = inner("hook_pre", up)?;
        let hidden = match self.glu {
            Glu::Plain => (self.act.apply(&gate)? * up)?,
            Glu::ClampedSwiglu { alpha, limit } => {
                // min/max rather than clamp: candle's clamp has no gradient.
                let gate = gate.minimum(limit)?;
                let up = up.maximum(-limit)?.minimum(limit)?;
                let glu = (&gate * ops::sigmoid(&(&gate * alpha)?)?)?;
                ((up + 1.0)? * glu)?
            }
        };
        self.down.forward(&inner("hook_post", hidden)?)
    }
}

/// A dense gated MLP (`{vb}.{gate|up|down}.weight`) as a decoder feed-forward, with the
/// usual `mlp.hook_pre` / `hook_pre_linear` / `hook_post` hooks.
pub fn dense_gated_mlp(
    vb: VarBuilder,
    names: MlpNames,
    d_model: usize,
    d_ff: usize,
    act: Activation,
) -> Result<Mlp> {
    let m = GatedMlp::load(vb, names, d_model, d_ff, act)?;
    let gate = m
        .gate
        .ok_or_else(|| candle_core::Error::Msg("a gated MLP without its gate".into()))?;
    Ok(Mlp {
        proj: MlpProjection::Gated { gate, up: m.up },
        act,
        fc_out: m.down,
    })
}

/// A mixture-of-experts block: router, routed experts, optional shared experts.
#[derive(Debug)]
pub struct MoeBlock {
    pub router: Router,
    pub experts: ExpertStore,
    /// Always-on experts added to every token (DeepSeek's `shared_experts`).
    pub shared: Option<GatedMlp>,
    /// Scales the shared experts' output by `σ(gate · x)` per token (Qwen3-Next's
    /// `shared_expert_gate`, [1, d_model]).
    pub shared_gate: Option<Linear>,
    /// Llama 4 multiplies each expert's *input* by the token's weight, not its output.
    /// `experts.{e}.hook_out` is then that output divided by the weight, so that the weight
    /// times `hook_out` is still what the expert added (see [`expert_contribution`]).
    pub weight_inputs: bool,
}

/// A sparse block as every family stores it under its MLP's prefix: the router `gate`,
/// experts `experts.{e}.{gate|up|down}` (fused forms are unfolded by the backend) and, where
/// there are any, always-on `shared_experts` as wide as `n_shared` experts together.
#[derive(Clone, Debug)]
pub struct MoeSpec {
    pub router: RouterConfig,
    /// Read the router's `e_score_correction_bias` when the file has it (DeepSeek-V3, GLM-4.5).
    pub correction_bias: bool,
    pub names: MlpNames,
    pub d_model: usize,
    /// Each routed expert's hidden width.
    pub d_ff: usize,
    pub n_shared: usize,
    pub act: Activation,
    /// Bytes of experts kept loaded ([`default_expert_budget`]).
    pub budget: usize,
}

impl MoeBlock {
    /// The block under `vb` (a layer's `mlp`, Mixtral's `block_sparse_moe`) as `spec` says.
    pub fn load(vb: VarBuilder<'static>, spec: &MoeSpec) -> Result<Self> {
        let shared = match spec.n_shared {
            0 => None,
            n => Some(GatedMlp::load(
                vb.pp("shared_experts"),
                spec.names,
                spec.d_model,
                spec.d_ff * n,
                spec.act,
            )?),
        };
        Ok(MoeBlock {
            router: Router::load(
                vb.pp("gate"),
                spec.router.clone(),
                spec.d_model,
                spec.correction_bias,
            )?,
            experts: ExpertStore::load(
                vb.pp("experts"),
                spec.names,
                spec.router.n_experts,
                spec.d_model,
                spec.d_ff,
                spec.act,
                spec.budget,
            )?,
            shared,
            shared_gate: None,
            weight_inputs: false,
        })
    }
}

impl FeedForward for MoeBlock {
    /// `x` [batch, pos, d_model] -> [batch, pos, d_model], calling the routing and expert hooks.
    fn forward(&self, x: &Tensor, layer: usize, hooks: &mut Hooks) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let n = b * t;
        let i = layer;
        let k = self.router.cfg.top_k;
        let n_experts = self.router.cfg.n_experts;
        let flat = x.reshape((n, d))?.contiguous()?;

        let logits = self.router.logits(&flat)?.reshape((b, t, n_experts))?;
        let logits = hooks.point(|| format!("blocks.{i}.mlp.hook_router_logits"), logits)?;
        let scores = self.router.scores(&logits.reshape((n, n_experts))?)?;

        let chosen = self.router.select(
            &scores
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        let indices = Tensor::from_vec(chosen, (b, t, k), x.device())?;
        let indices = hooks.point(|| format!("blocks.{i}.mlp.hook_expert_indices"), indices)?;
        let indices = checked_indices(&indices, n_experts)?;

        let weights = self.router.weights(&scores, &indices.reshape((n, k))?)?;
        let weights = hooks.point(
            || format!("blocks.{i}.mlp.hook_expert_weights"),
            weights.reshape((b, t, k))?,
        )?;
        // Each expert's total weight on each token: [n_experts, n] (a repeated slot sums).
        // Built as weights × one-hot rather than with scatter_add, whose backward pass in
        // candle 0.11 fails (it masks `init` with a source of the wrong shape).
        let one_hot = indices
            .reshape((n, k, 1))?
            .broadcast_eq(
                &Tensor::arange(0u32, n_experts as u32, x.device())?.reshape((1, 1, n_experts))?,
            )?
            .to_dtype(DType::F32)?;
        let per_expert = weights
            .reshape((n, k, 1))?
            .to_dtype(DType::F32)?
            .broadcast_mul(&one_hot)?
            .sum(1)?
            .t()?
            .contiguous()?;

        let routed_tokens =
            tokens_per_expert(&indices.flatten_all()?.to_vec1::<u32>()?, k, n_experts);
        let mut out = Tensor::zeros((n, d), x.dtype(), x.device())?;
        let hooked = !hooks.is_empty();
        for (e, tokens) in routed_tokens.iter().enumerate() {
            // Experts no token chose are neither run nor hooked: on a 256-expert model a dense
            // zero activation per idle expert would dwarf the rest of the cache.
            if tokens.is_empty() {
                continue;
            }
            let rows = Tensor::from_vec(tokens.clone(), tokens.len(), x.device())?;
            let w = per_expert
                .get(e)?
                .index_select(&rows, 0)?
                .unsqueeze(1)?
                .to_dtype(x.dtype())?;
            let input = flat.index_select(&rows, 0)?;
            let watched = hooked
                && ["hook_gate", "hook_pre", "hook_post"]
                    .iter()
                    .any(|h| hooks.watches(|| format!("blocks.{i}.mlp.experts.{e}.{h}")));
            // An inner activation as a hook sees it: dense [batch, pos, d_ff], like hook_out
            // (each only where watched).
            let mut dense_hook = |hook: &'static str, rows_of: Tensor| -> Result<Tensor> {
                let name = || format!("blocks.{i}.mlp.experts.{e}.{hook}");
                if !hooks.watches(name) {
                    return Ok(rows_of);
                }
                let width = rows_of.dim(1)?;
                let dense = Tensor::zeros((n, width), rows_of.dtype(), x.device())?
                    .index_add(&rows, &rows_of, 0)?
                    .reshape((b, t, width))?;
                let dense = hooks.point(name, dense)?;
                dense
                    .reshape((n, width))?
                    .contiguous()?
                    .index_select(&rows, 0)
            };
            let mut inner: Option<InnerHook> = match watched {
                true => Some(&mut dense_hook),
                false => None,
            };
            let mut expert_out = if self.weight_inputs {
                let y = run_rows(
                    &*self.experts.get(e)?,
                    &input.broadcast_mul(&w)?,
                    inner.as_deref_mut(),
                )?;
                // Per unit of weight; a zero weight (a rewritten one) gave a zero input, and
                // an expert without biases a zero output: divide by 1 there.
                let safe = (&w + w.eq(0.0)?.to_dtype(w.dtype())?)?;
                y.broadcast_div(&safe)?
            } else {
                run_rows(&*self.experts.get(e)?, &input, inner)?
            };
            if hooked {
                // Dense [batch, pos, d] so positions can be selected and written like any hook.
                let dense = Tensor::zeros((n, d), x.dtype(), x.device())?
                    .index_add(&rows, &expert_out, 0)?
                    .reshape((b, t, d))?;
                let dense =
                    hooks.point(|| format!("blocks.{i}.mlp.experts.{e}.hook_out"), dense)?;
                expert_out = dense
                    .reshape((n, d))?
                    .contiguous()?
                    .index_select(&rows, 0)?;
            }
            out = out.index_add(&rows, &expert_out.broadcast_mul(&w)?, 0)?;
        }
        let mut out = out.reshape((b, t, d))?;
        if let Some(shared) = &self.shared {
            let mut s = shared.forward(x)?;
            if let Some(gate) = &self.shared_gate {
                s = s.broadcast_mul(&ops::sigmoid(&gate.forward(x)?)?)?;
            }
            let s = hooks.point(|| format!("blocks.{i}.mlp.shared_experts.hook_out"), s)?;
            out = (out + s)?;
        }
        Ok(out)
    }
}

/// `expert` on the rows [m, d_model] of its tokens, padded past the kernels' few-row products
/// (by repeating the last row) when there are at most [`FEW_ROWS`] of them: a token's result
/// then does not depend on how many others the batch routed to the same expert, so a batch
/// computes what each of its prompts computes alone. `inner` sees the inner activations of
/// the m rows (never the padding), as [`GatedMlp::forward_with`] passes them.
///
/// [`FEW_ROWS`]: glassbox_kernels::FEW_ROWS
fn run_rows(expert: &GatedMlp, x: &Tensor, inner: Option<InnerHook>) -> Result<Tensor> {
    let m = x.dim(0)?;
    if m > glassbox_kernels::FEW_ROWS {
        return match inner {
            Some(inner) => expert.forward_with(x, inner),
            None => expert.forward(x),
        };
    }
    let pad = x
        .narrow(0, m - 1, 1)?
        .repeat((glassbox_kernels::FEW_ROWS + 1 - m, 1))?;
    let padded = Tensor::cat(&[x, &pad], 0)?;
    let y = match inner {
        Some(inner) => {
            let mut unpadded = |hook: &'static str, t: Tensor| -> Result<Tensor> {
                let rows = inner(hook, t.narrow(0, 0, m)?)?;
                let padding = t.narrow(0, m, t.dim(0)? - m)?;
                Tensor::cat(&[&rows, &padding], 0)
            };
            expert.forward_with(&padded, &mut unpadded)?
        }
        None => expert.forward(&padded)?,
    };
    y.narrow(0, 0, m)
}

/// What sees an expert's inner activations ([`GatedMlp::forward_with`]).
type InnerHook<'a> = &'a mut dyn FnMut(&'static str, Tensor) -> Result<Tensor>;

/// Indices as u32, each checked to name an expert (a hook may have rewritten them).
fn checked_indices(indices: &Tensor, n_experts: usize) -> Result<Tensor> {
    let idx = indices.to_dtype(DType::U32)?;
    let values = idx.flatten_all()?.to_vec1::<u32>()?;
    if let Some(bad) = values.iter().find(|&&v| v as usize >= n_experts) {
        candle_core::bail!("expert index {bad} out of range ({n_experts} experts)");
    }
    Ok(idx)
}

/// For each expert, the distinct token rows routed to it, in token order.
fn tokens_per_expert(indices: &[u32], k: usize, n_experts: usize) -> Vec<Vec<u32>> {
    let mut lists = vec![Vec::new(); n_experts];
    for (row, slots) in indices.chunks_exact(k).enumerate() {
        for (j, &e) in slots.iter().enumerate() {
            // A token listing the same expert twice is run once; its weights are summed.
            if !slots[..j].contains(&e) {
                lists[e as usize].push(row as u32);
            }
        }
    }
    lists
}

/// The weight each token puts on `expert` in layer `layer` of a cached run, [batch, pos]:
/// the sum of `hook_expert_weights` over the slots whose `hook_expert_indices` equal `expert`.
pub fn expert_weight(cache: &ActivationCache, layer: usize, expert: usize) -> Result<Tensor> {
    let idx = cache.require(&format!("blocks.{layer}.mlp.hook_expert_indices"))?;
    let w = cache.require(&format!("blocks.{layer}.mlp.hook_expert_weights"))?;
    let hit = idx
        .to_dtype(DType::F32)?
        .eq(expert as f64)?
        .to_dtype(DType::F32)?;
    (w.to_dtype(DType::F32)? * hit)?.sum(D::Minus1)
}

/// What routed expert `expert` of layer `layer` added to the residual stream in a cached run,
/// [batch, pos, d_model]: its weight times its `hook_out`. Needs the layer's
/// `hook_expert_indices`, `hook_expert_weights` and `experts.{expert}.hook_out` in the cache.
/// An expert no token was routed to has no `hook_out` and contributes zeros.
pub fn expert_contribution(cache: &ActivationCache, layer: usize, expert: usize) -> Result<Tensor> {
    let w = expert_weight(cache, layer, expert)?;
    match cache.get(&format!("blocks.{layer}.mlp.experts.{expert}.hook_out")) {
        Some(out) => out
            .to_dtype(DType::F32)?
            .broadcast_mul(&w.unsqueeze(D::Minus1)?),
        None => {
            let routed = cache.require(&format!("blocks.{layer}.mlp.hook_expert_indices"))?;
            let idle = !routed
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .contains(&(expert as f32));
            if !idle {
                candle_core::bail!(
                    "activation `blocks.{layer}.mlp.experts.{expert}.hook_out` is not in the cache"
                );
            }
            // Any routed expert of the layer gives the shape (some expert always runs).
            let prefix = format!("blocks.{layer}.mlp.experts.");
            let like = cache
                .iter()
                .find(|(name, _)| name.starts_with(&prefix) && name.ends_with(".hook_out"))
                .map(|(_, t)| t)
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!("no expert output of layer {layer} is cached"))
                })?;
            Tensor::zeros(like.dims(), DType::F32, w.device())
        }
    }
}

/// The hook names a cache needs for [`expert_contribution`] on every layer and expert.
pub const EXPERT_HOOKS: [&str; 4] = [
    "blocks.*.mlp.hook_expert_indices",
    "blocks.*.mlp.hook_expert_weights",
    "blocks.*.mlp.experts.*.hook_out",
    "blocks.*.mlp.shared_experts.hook_out",
];

/// The number of routed experts per MoE layer a Hub config declares (`n_routed_experts`,
/// `num_local_experts` or `num_experts`), or None for a dense model.
pub fn n_routed_experts(config: &serde_json::Value) -> Option<usize> {
    ["n_routed_experts", "num_local_experts", "num_experts"]
        .iter()
        .find_map(|k| config.get(*k).and_then(serde_json::Value::as_u64))
        .map(|n| n as usize)
        .filter(|&n| n > 0)
}

/// Whether a config declares shared experts (DeepSeek's `n_shared_experts`).
pub fn has_shared_experts(config: &serde_json::Value) -> bool {
    config
        .get("n_shared_experts")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
        > 0
}

/// The hooks [`routing_from_cache`] reads.
pub const ROUTING_HOOKS: [&str; 3] = [
    "blocks.*.mlp.hook_router_logits",
    "blocks.*.mlp.hook_expert_indices",
    "blocks.*.mlp.hook_expert_weights",
];

/// Where one mixture-of-experts layer sent each token of a batch row.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRouting {
    pub layer: usize,
    pub n_experts: usize,
    /// Per position, the chosen experts, best first.
    pub experts: Vec<Vec<u32>>,
    /// Per position, their weights.
    pub weights: Vec<Vec<f32>>,
}

/// The routing of batch row `row` in every MoE layer of a run cached with [`ROUTING_HOOKS`],
/// in layer order (empty for a model without experts).
pub fn routing_from_cache(
    cache: &ActivationCache,
    n_layers: usize,
    row: usize,
) -> Result<Vec<LayerRouting>> {
    let mut out = Vec::new();
    for layer in 0..n_layers {
        let Some(logits) = cache.get(&format!("blocks.{layer}.mlp.hook_router_logits")) else {
            continue;
        };
        let idx = cache.require(&format!("blocks.{layer}.mlp.hook_expert_indices"))?;
        let w = cache.require(&format!("blocks.{layer}.mlp.hook_expert_weights"))?;
        out.push(LayerRouting {
            layer,
            n_experts: logits.dim(D::Minus1)?,
            experts: idx.get(row)?.to_dtype(DType::U32)?.to_vec2::<u32>()?,
            weights: w.get(row)?.to_dtype(DType::F32)?.to_vec2::<f32>()?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(cfg: RouterConfig, bias: Option<Vec<f32>>) -> Router {
        let weight =
            Tensor::zeros((cfg.n_experts, 1), DType::F32, &candle_core::Device::Cpu).unwrap();
        Router {
            cfg,
            weight,
            bias: None,
            correction_bias: bias,
        }
    }

    fn cfg(n: usize, k: usize, group_limit: Option<GroupLimit>) -> RouterConfig {
        RouterConfig {
            n_experts: n,
            top_k: k,
            scoring: Scoring::Sigmoid,
            group_limit,
            renormalize: true,
            renormalize_eps: 0.0,
            scale: 1.0,
        }
    }

    fn check_select(r: &Router, scores: &[f32], expected: &[u32]) {
        assert_eq!(r.select(scores), expected);
    }

    #[test]
    fn plain_top_k_is_best_first() {
        let r = router(cfg(4, 2, None), None);
        check_select(&r, &[0.1, 0.7, 0.3, 0.9], &[3, 1]);
        check_select(&r, &[0.5, 0.5, 0.1, 0.1], &[0, 1]);
    }

    #[test]
    fn correction_bias_changes_choice_only() {
        let r = router(cfg(4, 1, None), Some(vec![0.0, 0.0, 0.5, 0.0]));
        check_select(&r, &[0.1, 0.7, 0.3, 0.2], &[2]);
    }

    #[test]
    fn group_limit_keeps_best_groups() {
        // Groups {0,1} and {2,3}; by the sum of the top two, group 0 wins (0.6+0.6 > 0.9+0.1)
        // though expert 2 alone is best.
        let limit = GroupLimit {
            n_group: 2,
            topk_group: 1,
            score: GroupScore::SumOfTopTwo,
            dropped: 0.0,
        };
        let r = router(cfg(4, 2, Some(limit)), None);
        check_select(&r, &[0.6, 0.6, 0.9, 0.1], &[0, 1]);
        let by_max = GroupLimit {
            score: GroupScore::Max,
            ..limit
        };
        let r = router(cfg(4, 1, Some(by_max)), None);
        check_select(&r, &[0.6, 0.6, 0.9, 0.1], &[2]);
        // A kept group with a negative corrected score: DeepSeek-V3's 0 lets a dropped expert
        // in, Nemotron-H's −∞ does not.
        // Corrected scores [0.95, −0.2, 0.3, 0.3]: group 0 (0.75) beats group 1 (0.6).
        let bias = Some(vec![0.0, -0.5, 0.0, 0.0]);
        let zero = router(cfg(4, 2, Some(limit)), bias.clone());
        check_select(&zero, &[0.95, 0.3, 0.3, 0.3], &[0, 2]);
        let neg_inf = GroupLimit {
            dropped: f32::NEG_INFINITY,
            ..limit
        };
        let r = router(cfg(4, 2, Some(neg_inf)), bias);
        check_select(&r, &[0.95, 0.3, 0.3, 0.3], &[0, 1]);
    }

    #[test]
    fn invalid_router_configs_are_rejected() {
        assert!(cfg(4, 5, None).validate().is_err());
        let bad_groups = GroupLimit {
            n_group: 3,
            topk_group: 1,
            score: GroupScore::Max,
            dropped: 0.0,
        };
        assert!(cfg(4, 1, Some(bad_groups)).validate().is_err());
        let too_few = GroupLimit {
            n_group: 4,
            topk_group: 1,
            score: GroupScore::Max,
            dropped: 0.0,
        };
        assert!(cfg(8, 3, Some(too_few)).validate().is_err());
    }

    #[test]
    fn repeated_slots_run_an_expert_once() {
        assert_eq!(
            tokens_per_expert(&[1, 1, 0, 1], 2, 3),
            vec![vec![1], vec![0, 1], vec![]]
        );
    }
}
