//! Logit lens: what the residual stream would predict if the model stopped early.
//!
//! The stream is read at the input of every block (`blocks.{i}.hook_resid_pre`) and after the
//! last one (`blocks.{L-1}.hook_resid_post`), exactly the stack TransformerLens'
//! `accumulated_resid(apply_ln=True)` builds, and each is passed through the model's own final
//! norm (statistics recomputed for that layer's vector) and unembedding (bias included). The
//! last row is therefore the model's logits.

use candle_core::{DType, Tensor, D};
use glassbox_models::{ActivationCache, HookedModel, Model, NameFilter};
use serde::Serialize;

use crate::error::{AnalysisError, Result};

/// Hook names whose activations the lens reads: each block's input and the stream the final
/// norm reads, the last block's output (its `hook_resid_post`, or in a post-LN encoder its
/// `hook_normalized_resid_post`: there `hook_resid_post` is the sum before the block's last
/// norm).
pub fn hook_names(n_layers: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..n_layers)
        .map(|i| format!("blocks.{i}.hook_resid_pre"))
        .collect();
    names.extend(final_stream(n_layers));
    names
}

/// The last block's output: a post-LN encoder's (`hook_normalized_resid_post`), else
/// `hook_resid_post`.
fn final_stream(n_layers: usize) -> [String; 2] {
    let last = n_layers.saturating_sub(1);
    [
        format!("blocks.{last}.hook_normalized_resid_post"),
        format!("blocks.{last}.hook_resid_post"),
    ]
}

/// Row labels as TransformerLens gives them: `0_pre`, …, `{L-1}_pre`, `final_post`.
pub fn labels(n_layers: usize) -> Vec<String> {
    let mut l: Vec<String> = (0..n_layers).map(|i| format!("{i}_pre")).collect();
    l.push("final_post".into());
    l
}

/// The accumulated residual stream [L+1, batch, pos, d_model] from a cache holding
/// [`hook_names`].
pub fn accumulated_resid(cache: &ActivationCache, n_layers: usize) -> Result<Tensor> {
    let mut parts = (0..n_layers)
        .map(|i| {
            cache
                .require(&format!("blocks.{i}.hook_resid_pre"))
                .cloned()
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let [encoder, decoder] = final_stream(n_layers);
    parts.push(match cache.get(&encoder) {
        Some(t) => t.clone(),
        None => cache.require(&decoder)?.clone(),
    });
    Ok(Tensor::stack(&parts, 0)?)
}

/// Lens logits [L+1, batch, pos, d_vocab]: each accumulated residual through the final norm
/// and the unembedding.
pub fn logit_lens(model: &dyn Model, cache: &ActivationCache) -> Result<Tensor> {
    let stack = accumulated_resid(cache, model.info().n_layers)?;
    let normed = model.final_norm(&stack)?;
    Ok(model.unembed(&normed)?.to_dtype(DType::F32)?)
}

/// One token's standing at one (layer, position).
#[derive(Clone, Debug, Serialize)]
pub struct TokenScore {
    pub id: u32,
    pub token: String,
    pub prob: f32,
    pub logit: f32,
}

/// The target token's probability and rank (0 = top) at one (layer, position).
#[derive(Clone, Debug, Serialize)]
pub struct TargetScore {
    pub prob: f32,
    pub logit: f32,
    pub rank: usize,
}

/// A logit-lens run, ready to print: rows are layers, columns positions.
#[derive(Clone, Debug, Serialize)]
pub struct LensReport {
    pub prompt_tokens: Vec<String>,
    pub layers: Vec<String>,
    /// `top[layer][pos]`: the most likely tokens, best first.
    pub top: Vec<Vec<Vec<TokenScore>>>,
    pub target: Option<TargetTrack>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetTrack {
    pub id: u32,
    pub token: String,
    /// `scores[layer][pos]`.
    pub scores: Vec<Vec<TargetScore>>,
}

/// Runs the model on `ids` and reads the lens: the `top_k` tokens at every (layer, position)
/// and, with `target`, that token's probability and rank.
///
/// One layer's logits at a time: all of them at once are layers × positions × vocabulary
/// (33 × 512 × 152k floats is 10 GB, which a served request could ask for).
pub fn run(
    model: &HookedModel,
    ids: &[u32],
    top_k: usize,
    target: Option<u32>,
) -> Result<LensReport> {
    let info = model.info();
    if let Some(t) = target {
        if t as usize >= info.d_vocab {
            return Err(AnalysisError::input(format!(
                "target token id {t} is outside the vocabulary (size {})",
                info.d_vocab
            )));
        }
    }
    // a layer's logits, their exponentials and probabilities, and the rows read off them
    let per_layer = (ids.len() as u64)
        .saturating_mul(info.d_vocab as u64)
        .saturating_mul(4 * 4);
    let budget = glassbox_models::memory::budget();
    if per_layer > budget {
        return Err(AnalysisError::input(format!(
            "the lens over {} tokens of a {}-token vocabulary needs about {} a layer; {} is available (give a shorter prompt)",
            ids.len(),
            info.d_vocab,
            glassbox_models::memory::describe(per_layer),
            glassbox_models::memory::describe(budget)
        )));
    }
    let filter = NameFilter::new(&hook_names(info.n_layers))
        .map_err(|e| AnalysisError::input(e.to_string()))?;
    let (_, cache) = model.run_with_cache(&model.ids_tensor(ids)?, &filter)?;
    let stack = accumulated_resid(&cache, info.n_layers)?; // [L+1, 1, pos, d]
    drop(cache);
    let m = model.model.as_ref();
    report_from(model, ids, stack.dim(0)?, top_k, target, |r| {
        Ok(m.unembed(&m.final_norm(&stack.get(r)?)?)?
            .to_dtype(DType::F32)?
            .squeeze(0)?) // [pos, V]
    })
}

/// Builds a [`LensReport`] from lens logits [L+1, pos, d_vocab].
pub fn report(
    model: &HookedModel,
    ids: &[u32],
    logits: &Tensor,
    top_k: usize,
    target: Option<u32>,
) -> Result<LensReport> {
    report_from(model, ids, logits.dim(0)?, top_k, target, |r| {
        Ok(logits.get(r)?)
    })
}

/// The report over `rows` layers, each layer's logits [pos, V] made by `layer` when read.
fn report_from(
    model: &HookedModel,
    ids: &[u32],
    rows: usize,
    top_k: usize,
    target: Option<u32>,
    layer: impl Fn(usize) -> Result<Tensor>,
) -> Result<LensReport> {
    let name = |id: u32| -> String {
        model
            .ids_to_str_tokens(&[id])
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_else(|| format!("<{id}>"))
    };
    let mut top = Vec::with_capacity(rows);
    let mut target_scores = Vec::with_capacity(rows);
    for r in 0..rows {
        // a layer's unembedding is a large product of its own: a stopped computation ends here
        glassbox_models::stop::check()?;
        let (top_row, target_row) = layer_scores(&layer(r)?, top_k, target, &name)?;
        top.push(top_row);
        target_scores.push(target_row);
    }
    Ok(LensReport {
        prompt_tokens: model.ids_to_str_tokens(ids)?,
        layers: labels(rows - 1),
        top,
        target: target.map(|id| TargetTrack {
            id,
            token: name(id),
            scores: target_scores,
        }),
    })
}

/// One layer's top tokens and target score at every position, from its logits [pos, V].
fn layer_scores(
    logits: &Tensor,
    top_k: usize,
    target: Option<u32>,
    name: &dyn Fn(u32) -> String,
) -> Result<(Vec<Vec<TokenScore>>, Vec<TargetScore>)> {
    let (positions, vocab) = logits.dims2()?;
    let probs: Vec<Vec<f32>> = softmax_last_dim(logits)?.to_vec2()?;
    let logits_v: Vec<Vec<f32>> = logits.to_vec2()?;
    let k = top_k.min(vocab);
    let mut top_row = Vec::with_capacity(positions);
    let mut target_row = Vec::with_capacity(positions);
    for p in 0..positions {
        let pr = &probs[p];
        let lg = &logits_v[p];
        let mut order: Vec<usize> = (0..vocab).collect();
        // partial sort: the top k by logit (ties by id, for a stable order)
        if k > 0 && k < vocab {
            order.select_nth_unstable_by(k - 1, |&a, &b| lg[b].total_cmp(&lg[a]).then(a.cmp(&b)));
        }
        order.truncate(k);
        order.sort_by(|&a, &b| lg[b].total_cmp(&lg[a]).then(a.cmp(&b)));
        top_row.push(
            order
                .iter()
                .map(|&i| TokenScore {
                    id: i as u32,
                    token: name(i as u32),
                    prob: pr[i],
                    logit: lg[i],
                })
                .collect(),
        );
        if let Some(t) = target {
            let t = t as usize;
            let rank = lg
                .iter()
                .enumerate()
                .filter(|&(i, &v)| v > lg[t] || (v == lg[t] && i < t))
                .count();
            target_row.push(TargetScore {
                prob: pr[t],
                logit: lg[t],
                rank,
            });
        }
    }
    Ok((top_row, target_row))
}

/// Softmax over the last dimension in f32 (no autograd needed here).
fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// The document `glassbox lens --json` prints.
pub fn document(
    model_path: &str,
    prompt: &str,
    ids: &[u32],
    report: &LensReport,
) -> serde_json::Value {
    serde_json::json!({
        "model": model_path,
        "prompt": prompt,
        "input_ids": ids,
        "report": report,
    })
}
