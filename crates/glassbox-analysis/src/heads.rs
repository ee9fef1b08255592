//! Head roles from attention patterns on repeated random tokens.
//!
//! The probe input is a batch of sequences `r r`, where `r` is `n` random tokens: on the second
//! copy, an induction head attends from position `q` to `q − n + 1` (the token after the
//! earlier occurrence of the current token), a duplicate-token head to `q − n` (the earlier
//! occurrence itself), a previous-token head to `q − 1` everywhere, and many heads park on the
//! first token. Each score is the mean attention weight on that key, as in TransformerLens'
//! tutorials:
//!
//! - previous-token: mean of `pattern[q, q−1]` over `q ≥ 1`;
//! - duplicate-token: mean of `pattern[q, q−n]` over the second copy (`n ≤ q < 2n`);
//! - induction: mean of `pattern[q, q−n+1]` over the second copy;
//! - first-token: mean of `pattern[q, 0]` over `q ≥ 1`.

use candle_core::{DType, Tensor};
use glassbox_models::{ActivationCache, HookedModel, NameFilter};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{AnalysisError, Result};

/// The roles scored, in report order.
pub const ROLES: [&str; 4] = [
    "previous_token",
    "duplicate_token",
    "induction",
    "first_token",
];

/// Per-head scores, each `[row][head]`, one row per layer in `layers`.
#[derive(Clone, Debug, Serialize)]
pub struct HeadScores {
    pub n_layers: usize,
    /// The layers with attention patterns, in order: every layer, except in hybrids whose
    /// linear-attention or state-space layers attend to no distribution over positions.
    pub n_heads: usize,
    /// Length `n` of the random half of each sequence.
    pub seq_len: usize,
    pub batch: usize,
    pub layers: Vec<usize>,
    pub previous_token: Vec<Vec<f32>>,
    pub duplicate_token: Vec<Vec<f32>>,
    pub induction: Vec<Vec<f32>>,
    pub first_token: Vec<Vec<f32>>,
}

impl HeadScores {
    /// The grid of one role by its name in [`ROLES`].
    pub fn role(&self, name: &str) -> Option<&Vec<Vec<f32>>> {
        Some(match name {
            "previous_token" => &self.previous_token,
            "duplicate_token" => &self.duplicate_token,
            "induction" => &self.induction,
            "first_token" => &self.first_token,
            _ => return None,
        })
    }

    /// What a role's score would be by chance: a head attending uniformly to every position
    /// up to its own (weight 1/(q+1) at query q), averaged over the queries the role scores.
    pub fn chance(&self, name: &str) -> f32 {
        let n = self.seq_len;
        let queries = match name {
            "duplicate_token" | "induction" => n..2 * n,
            _ => 1..2 * n,
        };
        let count = queries.len().max(1) as f32;
        queries.map(|q| 1.0 / (q as f32 + 1.0)).sum::<f32>() / count
    }

    /// The `n` highest-scoring heads of a role, as (layer, head, score), best first.
    pub fn top(&self, role: &str, n: usize) -> Vec<(usize, usize, f32)> {
        let Some(grid) = self.role(role) else {
            return Vec::new();
        };
        let mut all: Vec<(usize, usize, f32)> = grid
            .iter()
            .enumerate()
            .flat_map(|(l, row)| row.iter().enumerate().map(move |(h, &s)| (l, h, s)))
            .collect();
        all.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        all.truncate(n);
        all
    }
}

/// `batch` sequences of `seq_len` random token ids followed by the same ids again
/// [batch, 2·seq_len], drawn uniformly from `0..vocab` minus `exclude`, from `seed`.
pub fn repeated_random_tokens(
    vocab: usize,
    seq_len: usize,
    batch: usize,
    seed: u64,
    exclude: &[u32],
) -> Result<Vec<Vec<u32>>> {
    let allowed: Vec<u32> = (0..vocab as u32).filter(|t| !exclude.contains(t)).collect();
    if allowed.len() < 2 {
        return Err(AnalysisError::input(
            "the vocabulary is too small to draw random tokens",
        ));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok((0..batch)
        .map(|_| {
            let half: Vec<u32> = (0..seq_len)
                .map(|_| allowed[rng.gen_range(0..allowed.len())])
                .collect();
            half.iter().chain(half.iter()).copied().collect()
        })
        .collect())
}

/// Per head, the mean over queries `queries` of the attention weight on key `key(q)`, from
/// patterns [head][q][k].
fn mean_attention(
    patterns: &[Vec<Vec<f32>>],
    queries: std::ops::Range<usize>,
    key: impl Fn(usize) -> usize,
) -> Vec<f32> {
    patterns
        .iter()
        .map(|p| {
            let n = queries.len();
            let total: f32 = queries.clone().map(|q| p[q][key(q)]).sum();
            if n == 0 {
                f32::NAN
            } else {
                total / n as f32
            }
        })
        .collect()
}

/// Scores every head from a cache holding `blocks.*.attn.hook_pattern` of a run on repeated
/// sequences whose random half has length `seq_len`.
pub fn scores_from_cache(
    cache: &ActivationCache,
    n_layers: usize,
    seq_len: usize,
) -> Result<HeadScores> {
    let n = seq_len;
    let mut grids: [Vec<Vec<f32>>; 4] = Default::default();
    let mut dims = (0, 0);
    let mut layers = Vec::new();
    for layer in 0..n_layers {
        let Some(pattern) = cache.get(&format!("blocks.{layer}.attn.hook_pattern")) else {
            continue;
        };
        layers.push(layer);
        let pattern = pattern.to_dtype(DType::F32)?;
        let (batch, heads, q_len, k_len) = pattern.dims4()?;
        if q_len != 2 * n || k_len != 2 * n {
            return Err(AnalysisError::input(format!(
                "attention pattern is {q_len}×{k_len}, expected {}×{} for repeated sequences of {n}",
                2 * n,
                2 * n
            )));
        }
        dims = (batch, heads);
        // mean over the batch: [heads, q, k]
        let mean: Vec<Vec<Vec<f32>>> = pattern.mean(0)?.to_vec3()?;
        grids[0].push(mean_attention(&mean, 1..2 * n, |q| q - 1));
        grids[1].push(mean_attention(&mean, n..2 * n, |q| q - n));
        grids[2].push(mean_attention(&mean, n..2 * n, |q| q - n + 1));
        grids[3].push(mean_attention(&mean, 1..2 * n, |_| 0));
    }
    if layers.is_empty() {
        // Not one attention layer: nothing to score (or the cache lacks the patterns).
        cache.require("blocks.0.attn.hook_pattern")?;
    }
    let [previous_token, duplicate_token, induction, first_token] = grids;
    Ok(HeadScores {
        n_layers,
        n_heads: dims.1,
        seq_len,
        batch: dims.0,
        layers,
        previous_token,
        duplicate_token,
        induction,
        first_token,
    })
}

/// Runs `model` on `batch` repeated random sequences of `seq_len` tokens (from `seed`) and
/// scores every head. Token ids the tokenizer treats as special are not drawn.
pub fn run(model: &HookedModel, seq_len: usize, batch: usize, seed: u64) -> Result<HeadScores> {
    let info = model.info();
    if seq_len < 2 || batch == 0 {
        return Err(AnalysisError::input(
            "need a sequence length of at least 2 and a batch of at least 1",
        ));
    }
    let tokens = seq_len
        .checked_mul(2)
        .filter(|&t| t <= info.n_ctx)
        .ok_or_else(|| {
            AnalysisError::input(format!(
                "2 × {seq_len} tokens exceed the model's context of {}",
                info.n_ctx
            ))
        })?;
    // Before the inputs are drawn: a batch of 2⁶⁴ − 1 would otherwise size their allocation.
    model.check_size(batch, tokens)?;
    let seqs = repeated_random_tokens(info.d_vocab, seq_len, batch, seed, &model.eos_token_ids)?;
    let flat: Vec<u32> = seqs.concat();
    let ids = Tensor::from_vec(flat, (batch, 2 * seq_len), model.device())?;
    let filter = NameFilter::new(&["blocks.*.attn.hook_pattern"])
        .map_err(|e| AnalysisError::input(e.to_string()))?;
    let (_, cache) = model.run_with_cache(&ids, &filter)?;
    scores_from_cache(&cache, info.n_layers, seq_len)
}

/// The document `glassbox heads --json` prints: the scores and, per role, the `top_n`
/// strongest heads.
pub fn document(model: &str, scores: &HeadScores, top_n: usize) -> serde_json::Value {
    let top: serde_json::Map<String, serde_json::Value> = ROLES
        .iter()
        .map(|r| {
            let list: Vec<_> = scores
                .top(r, top_n)
                .into_iter()
                .map(|(l, h, s)| serde_json::json!({"layer": l, "head": h, "score": s}))
                .collect();
            (r.to_string(), serde_json::json!(list))
        })
        .collect();
    serde_json::json!({
        "model": model,
        "scores": scores,
        "top": top,
    })
}
