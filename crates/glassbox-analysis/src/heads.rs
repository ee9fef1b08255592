//! Head roles from attention patterns on repeated random tokens.
//!
//! The probe input is a batch of sequences `p r r`: `p` what the tokenizer puts before any
//! text (a BOS, where it adds one — the model always sees it, and TransformerLens' tutorials
//! prepend it too), `r` is `n` random tokens (special tokens never drawn). On the second copy
//! an induction head attends from position `q` to `q − n + 1` (the token after the earlier
//! occurrence of the current token), a duplicate-token head to `q − n` (the earlier
//! occurrence itself), a previous-token head to `q − 1` everywhere, and many heads park on the
//! first token. Each score is the mean attention weight on that key, as in TransformerLens'
//! tutorials (`P` = the prefix's length):
//!
//! - previous-token: mean of `pattern[q, q−1]` over `q ≥ 1`;
//! - duplicate-token: mean of `pattern[q, q−n]` over the second copy (`P+n ≤ q < P+2n`);
//! - induction: mean of `pattern[q, q−n+1]` over the second copy;
//! - first-token: mean of `pattern[q, 0]` over `q ≥ 1` (attention to the BOS, where there is one).
//!
//! Each score is the mean over the sequences of the batch, with its standard error across them:
//! a head is said to hold a role only when its score exceeds twice chance (uniform attention)
//! by two standard errors — heads of random weights sit a little off uniform.

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
    /// Tokens before the random halves (the tokenizer's BOS, where it adds one).
    pub prefix: usize,
    pub batch: usize,
    pub layers: Vec<usize>,
    pub previous_token: Vec<Vec<f32>>,
    pub duplicate_token: Vec<Vec<f32>>,
    pub induction: Vec<Vec<f32>>,
    pub first_token: Vec<Vec<f32>>,
    /// Per role, each score's standard error across the batch's sequences (NaN for one).
    pub standard_error: std::collections::BTreeMap<String, Vec<Vec<f32>>>,
    /// What makes these scores weak evidence (short sequences, a small batch).
    pub warnings: Vec<String>,
}

/// One of the strongest heads of a role.
#[derive(Clone, Debug, Serialize)]
pub struct RankedHead {
    pub layer: usize,
    pub head: usize,
    pub score: f32,
    pub standard_error: f32,
    /// The score exceeds twice the chance level by more than two standard errors: a head
    /// that holds the role, not one a little off uniform (random weights give those).
    pub beats_chance: bool,
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
        let (n, p) = (self.seq_len, self.prefix);
        let queries = match name {
            "duplicate_token" | "induction" => p + n..p + 2 * n,
            _ => 1..p + 2 * n,
        };
        let count = queries.len().max(1) as f32;
        queries.map(|q| 1.0 / (q as f32 + 1.0)).sum::<f32>() / count
    }

    /// The `n` highest-scoring heads of a role, best first, each with its standard error and
    /// whether it beats chance.
    pub fn top(&self, role: &str, n: usize) -> Vec<RankedHead> {
        let (Some(grid), Some(errors)) = (self.role(role), self.standard_error.get(role)) else {
            return Vec::new();
        };
        let chance = self.chance(role);
        let mut all: Vec<RankedHead> = grid
            .iter()
            .zip(errors)
            .enumerate()
            .flat_map(|(row, (scores, ses))| {
                let layer = self.layers.get(row).copied().unwrap_or(row);
                scores
                    .iter()
                    .zip(ses)
                    .enumerate()
                    .map(move |(head, (&score, &se))| RankedHead {
                        layer,
                        head,
                        score,
                        standard_error: se,
                        beats_chance: score - 2.0 * se > 2.0 * chance,
                    })
            })
            .collect();
        all.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then((a.layer, a.head).cmp(&(b.layer, b.head)))
        });
        all.truncate(n);
        all
    }
}

/// `batch` sequences of `prefix`, then `seq_len` random token ids, then the same ids again
/// [batch, prefix + 2·seq_len], drawn uniformly from `0..vocab` minus `exclude`, from `seed`.
pub fn repeated_random_tokens(
    vocab: usize,
    seq_len: usize,
    batch: usize,
    seed: u64,
    prefix: &[u32],
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
            prefix.iter().chain(&half).chain(&half).copied().collect()
        })
        .collect())
}

/// Per head, the mean over queries `queries` of the attention weight on key `key(q)`, from
/// one sequence's patterns [head][q][k].
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

/// Per head, the mean over sequences of their scores [sequence][head] and its standard error.
fn mean_and_error(per_sequence: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let b = per_sequence.len();
    let heads = per_sequence.first().map_or(0, Vec::len);
    (0..heads)
        .map(|h| {
            let values = per_sequence.iter().map(|s| f64::from(s[h]));
            let mean = values.clone().sum::<f64>() / b as f64;
            let se = if b > 1 {
                let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / (b - 1) as f64;
                (var / b as f64).sqrt()
            } else {
                f64::NAN
            };
            (mean as f32, se as f32)
        })
        .unzip()
}

/// Scores every head from a cache holding `blocks.*.attn.hook_pattern` of a run on repeated
/// sequences whose random half has length `seq_len`, after `prefix` tokens.
pub fn scores_from_cache(
    cache: &ActivationCache,
    n_layers: usize,
    seq_len: usize,
    prefix: usize,
) -> Result<HeadScores> {
    let mut scorer = Scorer::new(seq_len, prefix);
    for layer in 0..n_layers {
        if let Some(pattern) = cache.get(&format!("blocks.{layer}.attn.hook_pattern")) {
            scorer.layer(layer, pattern)?;
        }
    }
    if scorer.layers.is_empty() {
        // Not one attention layer: nothing to score (or the cache lacks the patterns).
        cache.require("blocks.0.attn.hook_pattern")?;
    }
    Ok(scorer.finish(n_layers))
}

/// The scores of each layer's pattern as the pass makes it, so that no pattern outlives its
/// layer (kept for every layer, they were `batch × heads × tokens²` floats each).
struct Scorer {
    seq_len: usize,
    prefix: usize,
    grids: [Vec<Vec<f32>>; 4],
    errors: [Vec<Vec<f32>>; 4],
    dims: (usize, usize),
    layers: Vec<usize>,
}

impl Scorer {
    fn new(seq_len: usize, prefix: usize) -> Self {
        Scorer {
            seq_len,
            prefix,
            grids: Default::default(),
            errors: Default::default(),
            dims: (0, 0),
            layers: Vec::new(),
        }
    }

    /// Scores `layer`'s pattern [batch, head, q, k], one sequence at a time.
    fn layer(&mut self, layer: usize, pattern: &Tensor) -> Result<()> {
        let (n, p) = (self.seq_len, self.prefix);
        let (batch, heads, q_len, k_len) = pattern.dims4()?;
        let len = p + 2 * n;
        if q_len != len || k_len != len {
            return Err(AnalysisError::input(format!(
                "attention pattern is {q_len}×{k_len}, expected {len}×{len} for repeated sequences of {n} after {p}"
            )));
        }
        self.layers.push(layer);
        self.dims = (batch, heads);
        let second = p + n..len;
        // each role's score per sequence and head
        let mut per_role: [Vec<Vec<f32>>; 4] = Default::default();
        for b in 0..batch {
            // [head][q][k] of one sequence
            let sequence: Vec<Vec<Vec<f32>>> = pattern.get(b)?.to_dtype(DType::F32)?.to_vec3()?;
            per_role[0].push(mean_attention(&sequence, 1..len, |q| q - 1));
            per_role[1].push(mean_attention(&sequence, second.clone(), |q| q - n));
            per_role[2].push(mean_attention(&sequence, second.clone(), |q| q - n + 1));
            per_role[3].push(mean_attention(&sequence, 1..len, |_| 0));
        }
        for (i, per_sequence) in per_role.iter().enumerate() {
            let (mean, se) = mean_and_error(per_sequence);
            self.grids[i].push(mean);
            self.errors[i].push(se);
        }
        Ok(())
    }

    fn finish(self, n_layers: usize) -> HeadScores {
        let (n, dims) = (self.seq_len, self.dims);
        let standard_error = ROLES
            .iter()
            .map(|r| r.to_string())
            .zip(self.errors)
            .collect();
        let [previous_token, duplicate_token, induction, first_token] = self.grids;
        let mut warnings = Vec::new();
        if dims.0 < 2 {
            warnings.push("one sequence: the scores have no spread to judge them by".to_string());
        }
        if n < SHORT_SEQUENCE {
            warnings.push(format!(
                "sequences of {n} random tokens: a head that attends {} tokens back scores as an induction head (use --seq-len {SHORT_SEQUENCE} or more)",
                n - 1
            ));
        }
        HeadScores {
            n_layers,
            n_heads: dims.1,
            seq_len: n,
            prefix: self.prefix,
            batch: dims.0,
            layers: self.layers,
            previous_token,
            duplicate_token,
            induction,
            first_token,
            standard_error,
            warnings,
        }
    }
}

/// Random halves shorter than this are said to blur induction with attention a fixed few
/// tokens back.
const SHORT_SEQUENCE: usize = 8;

/// What the random sequences are made of: the tokens put before them, and the ids never drawn.
#[derive(Clone, Debug, Default)]
pub struct Sequences {
    pub prefix: Vec<u32>,
    pub exclude: Vec<u32>,
}

impl Sequences {
    /// As `model` sees a text: after what its tokenizer puts before one (a BOS), drawn from
    /// every id but the special ones (the tokenizer's, end of sequence, unknown).
    pub fn for_model(model: &HookedModel) -> Result<Self> {
        let mut exclude = model.eos_token_ids.clone();
        if let Some(t) = &model.tokenizer {
            exclude.extend(t.special_ids());
            exclude.extend(t.unknown_id());
        }
        Ok(Sequences {
            prefix: model.text_prefix()?,
            exclude,
        })
    }
}

/// Runs `model` on `batch` repeated random sequences of `seq_len` tokens (from `seed`), made
/// as [`Sequences::for_model`] says, and scores every head.
pub fn run(model: &HookedModel, seq_len: usize, batch: usize, seed: u64) -> Result<HeadScores> {
    run_on(model, seq_len, batch, seed, &Sequences::for_model(model)?)
}

/// [`run`] with the sequences' prefix and excluded ids given (a model built in memory has no
/// tokenizer to read them from).
pub fn run_on(
    model: &HookedModel,
    seq_len: usize,
    batch: usize,
    seed: u64,
    sequences: &Sequences,
) -> Result<HeadScores> {
    let info = model.info();
    // With n = 2 the induction key q − n + 1 is the previous token's.
    if seq_len < 3 || batch == 0 {
        return Err(AnalysisError::input(
            "need a sequence length of at least 3 (at 2 induction is the previous token) and a batch of at least 1",
        ));
    }
    let prefix = &sequences.prefix;
    let tokens = seq_len
        .checked_mul(2)
        .and_then(|t| t.checked_add(prefix.len()))
        .filter(|&t| t <= info.n_ctx)
        .ok_or_else(|| {
            AnalysisError::input(format!(
                "2 × {seq_len} tokens (after {}) exceed the model's context of {}",
                prefix.len(),
                info.n_ctx
            ))
        })?;
    // Before the inputs are drawn: a batch of 2⁶⁴ − 1 would otherwise size their allocation.
    // (Each layer's pattern is scored as it is made and not kept.)
    model.check_size(batch, tokens)?;
    let seqs = repeated_random_tokens(
        info.d_vocab,
        seq_len,
        batch,
        seed,
        prefix,
        &sequences.exclude,
    )?;
    let flat: Vec<u32> = seqs.concat();
    let ids = Tensor::from_vec(flat, (batch, tokens), model.device())?;
    let filter = NameFilter::new(&["blocks.*.attn.hook_pattern"])
        .map_err(|e| AnalysisError::input(e.to_string()))?;
    let mut scorer = Scorer::new(seq_len, prefix.len());
    let mut failed = None;
    {
        let mut hooks = glassbox_models::Hooks::none();
        hooks.add_fn(filter, |name, pattern| {
            let layer = name
                .strip_prefix("blocks.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|l| l.parse().ok());
            if let Some(layer) = layer {
                if let Err(e) = scorer.layer(layer, pattern) {
                    failed = Some(e);
                    candle_core::bail!("scoring {name} failed");
                }
            }
            Ok(None)
        });
        let ran = model.run_with_hooks(&ids, &mut hooks);
        drop(hooks);
        if let Err(e) = ran {
            // the scorer's own error where it was the cause
            return Err(failed.unwrap_or_else(|| e.into()));
        }
    }
    if scorer.layers.is_empty() {
        return Err(AnalysisError::input(format!(
            "{} has no layer with an attention pattern to score",
            info.architecture
        )));
    }
    Ok(scorer.finish(info.n_layers))
}

/// The document `glassbox heads --json` prints: the scores and, per role, the `top_n`
/// strongest heads (each with its standard error and whether it beats chance) and the chance
/// level.
pub fn document(model: &str, scores: &HeadScores, top_n: usize) -> serde_json::Value {
    let top: serde_json::Map<String, serde_json::Value> = ROLES
        .iter()
        .map(|r| (r.to_string(), serde_json::json!(scores.top(r, top_n))))
        .collect();
    let chance: serde_json::Map<String, serde_json::Value> = ROLES
        .iter()
        .map(|r| (r.to_string(), serde_json::json!(scores.chance(r))))
        .collect();
    serde_json::json!({
        "model": model,
        "scores": scores,
        "top": top,
        "chance": chance,
        "warnings": scores.warnings,
    })
}
