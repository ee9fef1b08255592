//! Choosing the next token: greedy, or sampling with temperature, top-k and top-p.

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;

/// How [`crate::HookedModel::generate`] picks tokens.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f64,
    pub seed: u64,
    /// Stop after an end-of-sequence token.
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            stop_at_eos: true,
        }
    }
}

/// Index of the largest value (the first one on ties, as torch's argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The next token from the last position's logits.
pub fn sample_next(logits: &[f32], opts: &GenerateOptions, rng: &mut StdRng) -> u32 {
    if opts.temperature <= 0.0 || logits.is_empty() {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if order.is_empty() {
        return argmax(logits);
    }
    if opts.top_k > 0 {
        order.truncate(opts.top_k);
    }
    let max = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / opts.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    if opts.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (n, p) in probs.iter().enumerate() {
            acc += p / total;
            if acc >= opts.top_p {
                keep = n + 1;
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
    }
    match WeightedIndex::new(&probs) {
        Ok(dist) => order[dist.sample(rng)] as u32,
        Err(_) => order[0] as u32,
    }
}
