//! Direct logit attribution: the final residual split into the parts that wrote it, each
//! projected on a token's unembedding direction.
//!
//! The residual after the last block is a sum: the embeddings (`blocks.0.hook_resid_pre`),
//! then per layer every attention head's output (its `hook_z` through its slice of `W_O`),
//! the attention output bias, and the MLP output. Each part `c` contributes
//! `P(c) / s ⊙ g · (W_U[:, target] − W_U[:, versus])`, with the final norm's centring `P`,
//! gain `g` and the run's own scale `s` (see [`crate::norm`]). Adding the norm's shift and the
//! unembedding bias, the parts sum exactly to the logit (difference) the model produced; only
//! the norm's centring, which is linear, is folded into each part.
//!
//! Where the attention output does not split into heads plus bias (an architecture with a
//! norm after attention), the layer's whole `hook_attn_out` is one part instead. New kinds of
//! parts (mixture-of-experts experts) are new [`Component`] variants.

use candle_core::{DType, Tensor};
use glassbox_models::{ActivationCache, HookedModel, Model, NameFilter};
use serde::Serialize;

use crate::error::{AnalysisError, Result};
use crate::norm::FinalNorm;

/// A part of the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Component {
    /// The token embedding (with anything else the model adds before block 0 other than
    /// learned positions).
    Embed,
    /// Learned position embeddings (GPT-2).
    PosEmbed,
    /// One attention head's output.
    Head { layer: usize, head: usize },
    /// The attention output bias `b_O` of a layer.
    AttnBias { layer: usize },
    /// A whole attention block's output, when it does not split into heads.
    Attn { layer: usize },
    /// What a layer's heads and bias leave of its attention output when the model's arithmetic
    /// rounds between them (llama.cpp's numerics quantize `z` before `W_O`; f16 / bf16
    /// activations): the output minus the heads' f32 terms and the bias.
    AttnRounding { layer: usize },
    /// An MLP (or mixture-of-experts) block's output.
    Mlp { layer: usize },
    /// One routed expert's weighted output in a mixture-of-experts layer.
    Expert { layer: usize, expert: usize },
    /// The shared experts' output in a mixture-of-experts layer (DeepSeek).
    SharedExperts { layer: usize },
    /// The final norm's shift, `b · direction`.
    NormBias,
    /// The unembedding bias.
    UnembedBias,
    /// What the model's own unembedding product leaves of the logit beyond the parts'
    /// f32 projections, when its arithmetic rounds (a quantized `lm_head` under llama.cpp's
    /// numerics); only present past float error.
    UnembedRounding,
    /// The final norm and the unembedding together, as a map from the residual stream to
    /// logits (what [`crate::drift`] compares of them).
    Unembed,
}

impl Component {
    /// A short label: `embed`, `pos_embed`, `L3H2`, `L3 attn bias`, `L3 attn`, `L3 mlp`…
    pub fn label(&self) -> String {
        match self {
            Component::Embed => "embed".into(),
            Component::PosEmbed => "pos_embed".into(),
            Component::Head { layer, head } => format!("L{layer}H{head}"),
            Component::AttnBias { layer } => format!("L{layer} attn bias"),
            Component::Attn { layer } => format!("L{layer} attn"),
            Component::AttnRounding { layer } => format!("L{layer} attn rounding"),
            Component::Mlp { layer } => format!("L{layer} mlp"),
            Component::Expert { layer, expert } => format!("L{layer}E{expert}"),
            Component::SharedExperts { layer } => format!("L{layer} shared experts"),
            Component::NormBias => "final norm bias".into(),
            Component::UnembedBias => "unembed bias".into(),
            Component::UnembedRounding => "unembed rounding".into(),
            Component::Unembed => "unembed".into(),
        }
    }
}

/// Hooks [`decompose_resid`] reads.
pub fn hook_names(n_layers: usize) -> Vec<String> {
    let mut names = vec![
        "hook_pos_embed".to_string(),
        "blocks.0.hook_resid_pre".to_string(),
    ];
    for l in 0..n_layers {
        names.push(format!("blocks.{l}.attn.hook_z"));
        names.push(format!("blocks.{l}.hook_attn_out"));
        names.push(format!("blocks.{l}.hook_mlp_out"));
        // post-norms (Gemma 2, OLMo 2, GLM-4): present when the block has them
        names.push(format!("blocks.{l}.ln1_post.hook_normalized"));
        names.push(format!("blocks.{l}.ln2_post.hook_normalized"));
        // mixture-of-experts layers: each expert is its own part
        names.push(format!("blocks.{l}.mlp.hook_expert_indices"));
        names.push(format!("blocks.{l}.mlp.hook_expert_weights"));
        names.push(format!("blocks.{l}.mlp.experts.*.hook_out"));
        names.push(format!("blocks.{l}.mlp.shared_experts.hook_out"));
    }
    names.push(format!(
        "blocks.{}.hook_resid_post",
        n_layers.saturating_sub(1)
    ));
    names
}

fn at_position(t: &Tensor, position: usize) -> Result<Tensor> {
    // [batch=1, pos, ...] -> [...]
    Ok(t.get(0)?.get(position)?.to_dtype(DType::F32)?)
}

/// The final residual at `position` (batch 0) as a list of parts [d_model] that sum to
/// `blocks.{L-1}.hook_resid_post`; an error if they do not (an architecture whose residual
/// stream is not additive).
pub fn decompose_resid(
    model: &dyn Model,
    cache: &ActivationCache,
    position: usize,
) -> Result<Vec<(Component, Tensor)>> {
    let info = model.info();
    let mut parts = Vec::new();
    let resid0 = at_position(cache.require("blocks.0.hook_resid_pre")?, position)?;
    match cache.get("hook_pos_embed") {
        Some(pos) => {
            let pos = at_position(pos, position)?;
            parts.push((Component::Embed, (&resid0 - &pos)?));
            parts.push((Component::PosEmbed, pos));
        }
        None => parts.push((Component::Embed, resid0)),
    }
    for layer in 0..info.n_layers {
        // Hybrids' blocks hold a token mixer or an MLP, not always both.
        let has = |hook: &str| cache.contains(&format!("blocks.{layer}.{hook}"));
        let (mixer, mlp) = (has("hook_attn_out"), has("hook_mlp_out"));
        if !mixer && !mlp {
            cache.require(&format!("blocks.{layer}.hook_attn_out"))?;
        }
        if mixer {
            // A norm after the attention block (Gemma 2, OLMo 2, GLM-4) is not linear: its
            // output, `hook_attn_out`, joins the residual as one part; so does a mixer without
            // heads (Mamba).
            if has("ln1_post.hook_normalized") || !has("attn.hook_z") {
                let out = cache.require(&format!("blocks.{layer}.hook_attn_out"))?;
                parts.push((Component::Attn { layer }, at_position(out, position)?));
            } else {
                attention_parts(model, cache, layer, position, &mut parts)?;
            }
        }
        if !mlp {
            continue;
        }
        // Experts are parts of their own unless a post-norm mixes them.
        if !has("ln2_post.hook_normalized") && has("mlp.hook_expert_indices") {
            expert_parts(cache, layer, position, &mut parts)?;
            continue;
        }
        let mlp = cache.require(&format!("blocks.{layer}.hook_mlp_out"))?;
        parts.push((Component::Mlp { layer }, at_position(mlp, position)?));
    }
    let last = format!("blocks.{}.hook_resid_post", info.n_layers - 1);
    let resid = at_position(cache.require(&last)?, position)?;
    let sum = parts
        .iter()
        .try_fold(resid.zeros_like()?, |acc, (_, t)| acc + t)?;
    let err = (&sum - &resid)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let size = resid.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
    if err > 1e-3 * size {
        return Err(AnalysisError::input(format!(
            "{}: the residual stream is not the sum of its embeddings, attention and MLP \
             outputs (off by {err:.2e}); direct attribution does not apply",
            info.architecture
        )));
    }
    Ok(parts)
}

/// A mixture-of-experts layer's output at `position` split into the experts the token was
/// routed to (weight × `experts.{e}.hook_out`) and the shared experts.
fn expert_parts(
    cache: &ActivationCache,
    layer: usize,
    position: usize,
    parts: &mut Vec<(Component, Tensor)>,
) -> Result<()> {
    let chosen = at_position(
        cache.require(&format!("blocks.{layer}.mlp.hook_expert_indices"))?,
        position,
    )?;
    let mut experts: Vec<usize> = chosen
        .to_vec1::<f32>()?
        .iter()
        .map(|&e| e as usize)
        .collect();
    experts.sort_unstable();
    experts.dedup();
    for expert in experts {
        let c = glassbox_models::moe::expert_contribution(cache, layer, expert)?;
        parts.push((
            Component::Expert { layer, expert },
            at_position(&c, position)?,
        ));
    }
    if let Some(shared) = cache.get(&format!("blocks.{layer}.mlp.shared_experts.hook_out")) {
        parts.push((
            Component::SharedExperts { layer },
            at_position(shared, position)?,
        ));
    }
    Ok(())
}

/// The largest share of an attention output its heads may leave to rounding and still be
/// shown split: activation quantization (Q8_0 / Q8_K, ≈ 1/254 of a block's largest value) and
/// f16 rounding stay well under it; an attention that is not `z·W_O` (another arrangement of
/// its heads) leaves the whole output.
const ROUNDING_SHARE: f32 = 0.05;

/// A layer's attention output split into heads (`hook_z` through each head's slice of `W_O`)
/// and the bias — with what rounding leaves (`AttnRounding`) when they account for the output
/// only to within `ROUNDING_SHARE` of its size — or whole when it does not split that way.
fn attention_parts(
    model: &dyn Model,
    cache: &ActivationCache,
    layer: usize,
    position: usize,
    parts: &mut Vec<(Component, Tensor)>,
) -> Result<()> {
    let attn_out = at_position(
        cache.require(&format!("blocks.{layer}.hook_attn_out"))?,
        position,
    )?;
    let z = at_position(
        cache.require(&format!("blocks.{layer}.attn.hook_z"))?,
        position,
    )?; // [h, d_head]
    let w_o = model.w_o(layer)?.to_dtype(DType::F32)?; // [h, d_head, d_model]
    let b_o = model.b_o(layer)?.to_dtype(DType::F32)?;
    // per head: z[h] @ W_O[h]  -> [h, d_model]
    let heads = z.unsqueeze(1)?.matmul(&w_o)?.squeeze(1)?;
    let rebuilt = (heads.sum(0)? + &b_o)?;
    let err = (&rebuilt - &attn_out)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    let size = attn_out.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
    if err <= ROUNDING_SHARE * size {
        for head in 0..heads.dim(0)? {
            parts.push((Component::Head { layer, head }, heads.get(head)?));
        }
        parts.push((Component::AttnBias { layer }, b_o));
        if err > 1e-4 * size {
            parts.push((Component::AttnRounding { layer }, (&attn_out - &rebuilt)?));
        }
    } else {
        parts.push((Component::Attn { layer }, attn_out));
    }
    Ok(())
}

/// Direct logit attribution at one position.
#[derive(Clone, Debug, Serialize)]
pub struct Attribution {
    pub position: usize,
    pub target: u32,
    pub versus: Option<u32>,
    /// Each part's contribution to the logit (difference), in model order.
    pub parts: Vec<(Component, f32)>,
    /// The logit (difference) the model computed, before the final soft-cap where the model
    /// has one ([`Attribution::softcap`]).
    pub total: f32,
    /// The model's final soft-cap, if any: the attributed logits are those before it.
    pub softcap: Option<f64>,
    /// The run's final-norm scale at this position.
    pub norm_scale: f32,
    /// Whether the final norm centres its input (LayerNorm) — then so are the parts — or
    /// only rescales it (RMSNorm).
    pub norm_centres: bool,
}

impl Attribution {
    /// The sum of the parts (equals `total` up to float error).
    pub fn sum(&self) -> f32 {
        self.parts.iter().map(|(_, v)| v).sum()
    }

    /// Per-head contributions as a grid [layer][head] (NaN where a layer has no head split).
    pub fn head_grid(&self, n_layers: usize, n_heads: usize) -> Vec<Vec<f32>> {
        let mut g = vec![vec![f32::NAN; n_heads]; n_layers];
        for (c, v) in &self.parts {
            if let Component::Head { layer, head } = *c {
                if layer < n_layers && head < n_heads {
                    g[layer][head] = *v;
                }
            }
        }
        g
    }
}

/// The unembedding direction `W_U[:, target] − W_U[:, versus]` [d_model].
pub fn logit_direction(model: &dyn Model, target: u32, versus: Option<u32>) -> Result<Tensor> {
    let w_u = model.w_u()?.to_dtype(DType::F32)?; // [d_model, vocab]
    let vocab = w_u.dim(1)?;
    for id in std::iter::once(target).chain(versus) {
        if id as usize >= vocab {
            return Err(AnalysisError::input(format!(
                "token id {id} is outside the vocabulary (size {vocab})"
            )));
        }
    }
    let col = |id: u32| -> Result<Tensor> { Ok(w_u.narrow(1, id as usize, 1)?.squeeze(1)?) };
    match versus {
        Some(v) => Ok((col(target)? - col(v)?)?),
        None => col(target),
    }
}

/// Attribution of the logit of `target` (minus that of `versus`) at `position`, from a cache
/// holding [`hook_names`] and the run's `logits` [1, pos, vocab].
pub fn direct_logit_attribution(
    model: &dyn Model,
    cache: &ActivationCache,
    logits: &Tensor,
    position: usize,
    target: u32,
    versus: Option<u32>,
) -> Result<Attribution> {
    let norm = FinalNorm::probe(model)?;
    let last = format!("blocks.{}.hook_resid_post", model.info().n_layers - 1);
    let resid = at_position(cache.require(&last)?, position)?;
    norm.check(model, &resid)?;
    let scale = norm.scale(model, &resid.unsqueeze(0)?)?.squeeze(0)?; // [1]
    let direction = logit_direction(model, target, versus)?;
    let project = |c: &Tensor| -> Result<f32> {
        let x = norm
            .apply_frozen(&c.unsqueeze(0)?, &scale.unsqueeze(0)?)?
            .squeeze(0)?;
        Ok((x * &direction)?.sum_all()?.to_scalar::<f32>()?)
    };
    let mut parts = Vec::new();
    for (c, t) in decompose_resid(model, cache, position)? {
        parts.push((c, project(&t)?));
    }
    parts.push((
        Component::NormBias,
        (&norm.shift * &direction)?.sum_all()?.to_scalar::<f32>()?,
    ));
    // the unembedding's bias is what it adds to a zero vector
    let d_model = model.info().d_model;
    let zero = Tensor::zeros((1, d_model), DType::F32, direction.device())?;
    let b_u = model.unembed(&zero)?.to_dtype(DType::F32)?.squeeze(0)?;
    let bias_of = |id: u32| -> Result<f32> { Ok(b_u.get(id as usize)?.to_scalar::<f32>()?) };
    let bias = bias_of(target)? - versus.map(bias_of).transpose()?.unwrap_or(0.0);
    parts.push((Component::UnembedBias, bias));
    let row = logits.get(0)?.get(position)?.to_dtype(DType::F32)?;
    // A final soft-cap (Gemma 2 and 3: cap · tanh(logit / cap)) is not linear: the parts add
    // up to the logit before it, which is what is attributed; it is recovered exactly enough
    // from the capped one as cap · atanh(logit / cap).
    let cap = model.final_softcap();
    let logit_of = |id: u32| -> Result<f32> {
        let capped = row.get(id as usize)?.to_scalar::<f32>()?;
        Ok(match cap {
            Some(c) => (c * (capped as f64 / c).atanh()) as f32,
            None => capped,
        })
    };
    let total = logit_of(target)? - versus.map(logit_of).transpose()?.unwrap_or(0.0);
    // The parts project in f32; a model whose unembedding rounds (a quantized lm_head) made a
    // logit that differs by more than float error: that difference is a part of its own, named,
    // so the parts still sum to the model's logit.
    let sum: f32 = parts.iter().map(|(_, v)| v).sum();
    if (total - sum).abs() > 1e-4 * total.abs().max(1.0) {
        parts.push((Component::UnembedRounding, total - sum));
    }
    Ok(Attribution {
        position,
        target,
        versus,
        parts,
        total,
        softcap: cap,
        norm_scale: scale.flatten_all()?.get(0)?.to_scalar::<f32>()?,
        norm_centres: norm.centers,
    })
}

/// TransformerLens' `stack_head_results(apply_ln=True)` at `position` projected on
/// `direction`: each head's result, centred if the norm centres, divided by the run's final
/// scale — *without* the norm's gain (TransformerLens folds the gain into `W_U` only when
/// `fold_ln` is on). Returned as [layer][head]; used to cross-check against TransformerLens.
pub fn head_results_on_direction(
    model: &dyn Model,
    cache: &ActivationCache,
    position: usize,
    direction: &Tensor,
) -> Result<Vec<Vec<f32>>> {
    let norm = FinalNorm::probe(model)?;
    let last = format!("blocks.{}.hook_resid_post", model.info().n_layers - 1);
    let resid = at_position(cache.require(&last)?, position)?.unsqueeze(0)?;
    let scale = norm.scale(model, &resid)?.squeeze(0)?;
    let mut grid = Vec::new();
    for layer in 0..model.info().n_layers {
        // Layers without heads (Mamba, MLP-only blocks) have an empty row.
        let Some(z) = cache.get(&format!("blocks.{layer}.attn.hook_z")) else {
            grid.push(Vec::new());
            continue;
        };
        let z = at_position(z, position)?;
        let heads = z
            .unsqueeze(1)?
            .matmul(&model.w_o(layer)?.to_dtype(DType::F32)?)?
            .squeeze(1)?; // [h, d_model]
        let scaled = norm.center(&heads)?.broadcast_div(&scale)?;
        let values = scaled.broadcast_mul(&direction.unsqueeze(0)?)?.sum(1)?;
        grid.push(values.to_vec1::<f32>()?);
    }
    Ok(grid)
}

/// Runs the model on `ids` and attributes the logit of `target` (minus `versus`) at
/// `position` (the last position when `None`).
///
/// ```
/// use glassbox_analysis::attribution;
/// use glassbox_models::{HookedModel, LoadOptions};
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity/gpt2");
/// let model = HookedModel::load(dir.as_ref(), &LoadOptions::default())?;
/// let ids = model.to_tokens("When Mary and John went to the store, John gave a drink to")?;
/// let (mary, john) = (model.to_tokens(" Mary")?[0], model.to_tokens(" John")?[0]);
/// let a = attribution::run(&model, &ids, None, mary, Some(john))?;
/// // embeddings, 2 × (4 heads + bias + MLP), the final norm's shift, the unembedding bias
/// assert_eq!(a.parts.len(), 2 + 2 * 6 + 2);
/// assert!((a.sum() - a.total).abs() < 1e-4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run(
    model: &HookedModel,
    ids: &[u32],
    position: Option<usize>,
    target: u32,
    versus: Option<u32>,
) -> Result<Attribution> {
    let info = model.info();
    if !info.causal {
        return Err(AnalysisError::input(format!(
            "{} is an encoder without an unembedding: direct logit attribution needs a language model",
            info.architecture
        )));
    }
    let position = position.unwrap_or(ids.len().saturating_sub(1));
    if position >= ids.len() {
        return Err(AnalysisError::input(format!(
            "position {position} is past the prompt's {} tokens",
            ids.len()
        )));
    }
    let filter = NameFilter::new(&hook_names(info.n_layers))
        .map_err(|e| AnalysisError::input(e.to_string()))?;
    let (logits, cache) = model.run_with_cache(&model.ids_tensor(ids)?, &filter)?;
    direct_logit_attribution(
        model.model.as_ref(),
        &cache,
        &logits,
        position,
        target,
        versus,
    )
}

/// The document `glassbox attribute --json` prints for `result` (`ids` the prompt's tokens).
#[allow(clippy::too_many_arguments)]
pub fn document(
    model: &HookedModel,
    model_path: &str,
    prompt: &str,
    ids: &[u32],
    result: &Attribution,
    target: u32,
    versus: Option<u32>,
) -> serde_json::Value {
    use crate::predictions::describe_token;
    let info = model.info();
    let metric = match versus {
        Some(v) => format!(
            "logit[{}] − logit[{}]",
            describe_token(model, target),
            describe_token(model, v)
        ),
        None => format!("logit[{}]", describe_token(model, target)),
    };
    let parts: Vec<_> = result
        .parts
        .iter()
        .map(|(c, v)| serde_json::json!({"component": c, "label": c.label(), "value": v}))
        .collect();
    serde_json::json!({
        "model": model_path,
        "prompt": prompt,
        "input_ids": ids,
        "position": result.position,
        "target": target,
        "versus": versus,
        "metric": metric,
        "total": result.total,
        "sum_of_parts": result.sum(),
        "final_norm_scale": result.norm_scale,
        "final_softcap": result.softcap,
        "heads": result.head_grid(info.n_layers, info.n_heads),
        "parts": parts,
    })
}
