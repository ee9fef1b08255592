//! SAELens's evaluation metrics (`sae_lens.evals.run_evals` with every metric on), under
//! its names and with its definitions:
//!
//! - over the tokens kept (a position is left out when its own token is special, as
//!   `run_evals(exclude_special_tokens=True)` does): `l0` (features ≠ 0), `l1` (Σ|f|), `mse`
//!   (Σ over d_in of the squared error — a sum, not a mean), `cossim`, `l2_norm_in`,
//!   `l2_norm_out`, `l2_ratio` (‖x̂‖/‖x‖, ‖x‖ below 1e-4 taken as 1), each a mean over tokens;
//!   `explained_variance` pooled over all tokens (1 − mean ‖x − x̂‖² / total variance);
//!   `explained_variance_legacy` per token against its batch's mean, averaged;
//!   `relative_reconstruction_bias` per batch (mean ‖x̂‖² / mean x·x̂), averaged over batches;
//! - from three runs of each batch — clean, with the reconstruction in place of the
//!   activation at the kept positions, with the activation zeroed at every position:
//!   `ce_loss_*` (next-token cross-entropy, positions whose token is special left out) and
//!   `kl_div_*` (KL from the clean distribution), `ce_loss_score` = (ablation − SAE) /
//!   (ablation − clean), `kl_div_score` = (ablation − SAE) / ablation;
//! - per feature: `feature_density` (share of kept tokens where it fires), and the counts of
//!   dead (never firing) and dense (firing on more than [`DENSE_DENSITY`] of tokens)
//!   features.

use candle_core::{DType, Tensor};
use glassbox_models::{HookedModel, Hooks, Intervention, Layout, NameFilter, Selection};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{FeatureError, Result};
use crate::sae::Sae;

/// A feature firing on more than this share of tokens counts as dense.
pub const DENSE_DENSITY: f64 = 0.1;

/// How to evaluate.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Sequences per forward pass (relative_reconstruction_bias and the legacy explained
    /// variance are per batch, so this changes them, as in SAELens).
    pub batch_size: usize,
    /// Positions holding these tokens are left out.
    pub ignore_tokens: Vec<u32>,
}

/// The metrics, named as SAELens names them.
#[derive(Clone, Debug, Serialize)]
pub struct SaeMetrics {
    pub hook_name: String,
    pub l0: f64,
    pub l1: f64,
    pub mse: f64,
    pub explained_variance: f64,
    pub explained_variance_legacy: f64,
    pub cossim: f64,
    pub l2_norm_in: f64,
    pub l2_norm_out: f64,
    pub l2_ratio: f64,
    pub relative_reconstruction_bias: f64,
    pub ce_loss_without_sae: f64,
    pub ce_loss_with_sae: f64,
    pub ce_loss_with_ablation: f64,
    pub ce_loss_score: f64,
    pub kl_div_with_sae: f64,
    pub kl_div_with_ablation: f64,
    pub kl_div_score: f64,
    /// Tokens evaluated (kept) and sequences.
    pub tokens: usize,
    pub sequences: usize,
    pub dead_features: usize,
    pub dense_features: usize,
    pub dense_density: f64,
    /// Per feature, the share of kept tokens where it fires.
    pub feature_density: Vec<f64>,
    /// Scores that mean nothing on this run, and why (SAELens computes them all the same).
    pub warnings: Vec<String>,
}

/// An ablation that raises the loss by less than this (nats) leaves `ce_loss_score` dividing
/// by noise; a KL under this leaves `kl_div_score` so.
const MIN_ABLATION_EFFECT: f64 = 1e-2;

/// Why `ce_loss_score` or `kl_div_score` means nothing: each divides by what ablating the hook
/// costs, which must be clearly positive.
fn score_warnings(ce_clean: f64, ce_abl: f64, kl_abl: f64) -> Vec<String> {
    let mut out = Vec::new();
    let ce_gap = ce_abl - ce_clean;
    if !(ce_gap > MIN_ABLATION_EFFECT) {
        out.push(format!(
            "ce_loss_score means nothing here: zero-ablating the hook changes the loss by {ce_gap:+.4} nats (ce_loss_with_ablation {ce_abl:.4} − ce_loss_without_sae {ce_clean:.4}), and the score divides by that; compare ce_loss_with_sae with ce_loss_without_sae instead"
        ));
    }
    if !(kl_abl > MIN_ABLATION_EFFECT) {
        out.push(format!(
            "kl_div_score means nothing here: zero-ablating the hook moves the next-token distribution by a KL of only {kl_abl:.4}, and the score divides by it; read kl_div_with_sae itself"
        ));
    }
    out
}

/// Sums over tokens, divided at the end.
#[derive(Default)]
struct Sums {
    n: usize,
    l0: f64,
    l1: f64,
    mse: f64,
    cossim: f64,
    l2_in: f64,
    l2_out: f64,
    l2_ratio: f64,
    ev_legacy: f64,
    sum_sq: f64,
    residual: f64,
    rrb: Vec<f64>,
    ce: [(f64, usize); 3],
    kl: [(f64, usize); 2],
}

/// The activation at the SAE's hook as the SAE reads it in an evaluation: [batch, pos, d_in]
/// (one head, or every head flattened, of a per-head point).
fn sae_view(sae: &Sae, a: &Tensor) -> Result<Tensor> {
    let hook = sae.hook_name();
    Ok(match (sae.cfg.hook_head_index, Layout::of(hook).head_dim) {
        (Some(h), Some(dim)) => a.narrow(dim, h, 1)?.squeeze(dim)?,
        (None, Some(_)) if a.rank() == 4 => a.flatten_from(2)?,
        _ => a.clone(),
    })
}

/// The inverse of [`sae_view`]: `y` [batch, pos, d_in] put back where it was read from `a`.
fn from_view(sae: &Sae, a: &Tensor, y: &Tensor) -> Result<Tensor> {
    let hook = sae.hook_name();
    Ok(match (sae.cfg.hook_head_index, Layout::of(hook).head_dim) {
        (Some(h), Some(dim)) => crate::splice::with_head(a, dim, h, y)?,
        (None, Some(_)) if a.rank() == 4 => y.reshape(a.dims())?,
        _ => y.clone(),
    })
}

/// Next-token cross-entropy [pos − 1] of one sequence from its log-probabilities [pos, vocab].
fn row_ce(logp: &[f32], vocab: usize, ids: &[u32]) -> Vec<f64> {
    (0..ids.len() - 1)
        .map(|t| -(logp[t * vocab + ids[t + 1] as usize] as f64))
        .collect()
}

fn log_softmax_rows(logits: &[f32], vocab: usize) -> Vec<f32> {
    let mut out = vec![0f32; logits.len()];
    out.par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .for_each(|(o, row)| {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
            let lse = max as f64 + sum.ln();
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v as f64 - lse) as f32;
            }
        });
    out
}

fn kl_rows(clean: &[f32], other: &[f32], vocab: usize) -> Vec<f64> {
    clean
        .par_chunks(vocab)
        .zip(other.par_chunks(vocab))
        .map(|(p, q)| {
            p.iter()
                .zip(q)
                .map(|(&lp, &lq)| {
                    let pr = (lp as f64).exp();
                    if pr == 0.0 {
                        0.0
                    } else {
                        pr * (lp as f64 - lq as f64)
                    }
                })
                .sum()
        })
        .collect()
}

/// Evaluates `sae` on `model` (without SAEs spliced) over `tokens` [sequences, pos].
pub fn evaluate(
    model: &HookedModel,
    sae: &Sae,
    tokens: &Tensor,
    opts: &EvalOptions,
) -> Result<SaeMetrics> {
    let (n_seq, n_pos) = tokens.dims2()?;
    if n_seq == 0 || n_pos < 2 {
        return Err(FeatureError::input(
            "evaluation needs at least one sequence of at least two tokens",
        ));
    }
    if opts.batch_size == 0 {
        return Err(FeatureError::input("the batch size must be at least 1"));
    }
    crate::splice::check_fits(model, std::slice::from_ref(sae))?;
    model.check_size(opts.batch_size.min(n_seq), n_pos)?;
    // Evaluations read each head or the heads flattened themselves (SAELens turns the SAE's
    // own hook_z reshaping off during evals).
    let mut flat = sae.clone();
    flat.cfg.reshape_hook_z = false;
    let hook = sae.hook_name().to_string();
    let filter = NameFilter::new(&[hook.as_str()])
        .map_err(|e| FeatureError::input(format!("hook `{hook}`: {e}")))?;
    let tokens = tokens.to_dtype(DType::U32)?;
    let d_sae = sae.cfg.d_sae;
    let mut fired = vec![0usize; d_sae];
    let mut s = Sums::default();
    let mut sum_x = vec![0f64; sae.cfg.d_in];
    let mut start = 0;
    while start < n_seq {
        let b = opts.batch_size.min(n_seq - start);
        let ids = tokens.narrow(0, start, b)?;
        start += b;
        let ids_v: Vec<Vec<u32>> = ids.to_vec2()?;
        let keep: Vec<bool> = ids_v
            .iter()
            .flatten()
            .map(|t| !opts.ignore_tokens.contains(t))
            .collect();

        // Clean run, with the activation.
        let mut hooks = Hooks::caching(filter.clone());
        let logits_clean = model.run_with_hooks(&ids, &mut hooks)?;
        let a = hooks.cache.require(&hook)?.clone();
        let x = sae_view(sae, &a)?.to_dtype(DType::F32)?;
        let enc = flat.encode(&x)?.to_dtype(DType::F32)?;
        let x_hat = flat.reconstruct(&x)?.to_dtype(DType::F32)?;
        let d = x.dim(2)?;

        // Reconstruction where kept, the clean activation elsewhere.
        let keep_t = Tensor::from_vec(
            keep.iter().map(|&k| k as u8).collect::<Vec<u8>>(),
            (b, n_pos, 1),
            x.device(),
        )?;
        let spliced = keep_t.broadcast_as(x.dims())?.where_cond(&x_hat, &x)?;
        let replacement = from_view(sae, &a, &spliced)?.to_dtype(a.dtype())?;
        let mut hooks = Hooks::none();
        hooks.intervene(
            filter.clone(),
            Intervention::Replace(replacement),
            Selection::All,
        );
        let logits_sae = model.run_with_hooks(&ids, &mut hooks)?;
        let mut hooks = Hooks::none();
        let ablation = match sae.cfg.hook_head_index {
            Some(h) => Selection::Heads(vec![h]),
            None => Selection::All,
        };
        hooks.intervene(filter.clone(), Intervention::Zero, ablation);
        let logits_abl = model.run_with_hooks(&ids, &mut hooks)?;

        // Per-token losses.
        let vocab = logits_clean.dim(2)?;
        let lp = |l: &Tensor| -> Result<Vec<f32>> {
            let v = l.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Ok(log_softmax_rows(&v, vocab))
        };
        let (lp_clean, lp_sae, lp_abl) = (lp(&logits_clean)?, lp(&logits_sae)?, lp(&logits_abl)?);
        let kl_sae = kl_rows(&lp_clean, &lp_sae, vocab);
        let kl_abl = kl_rows(&lp_clean, &lp_abl, vocab);
        let row = n_pos * vocab;
        for (bi, seq) in ids_v.iter().enumerate() {
            for (which, lp) in [&lp_clean, &lp_sae, &lp_abl].into_iter().enumerate() {
                let ce = row_ce(&lp[bi * row..(bi + 1) * row], vocab, seq);
                for (t, v) in ce.into_iter().enumerate() {
                    if keep[bi * n_pos + t] {
                        s.ce[which].0 += v;
                        s.ce[which].1 += 1;
                    }
                }
            }
            for t in 0..n_pos {
                let i = bi * n_pos + t;
                if keep[i] {
                    s.kl[0].0 += kl_sae[i];
                    s.kl[0].1 += 1;
                    s.kl[1].0 += kl_abl[i];
                    s.kl[1].1 += 1;
                }
            }
        }

        // Reconstruction and sparsity over kept tokens.
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let hv = x_hat.flatten_all()?.to_vec1::<f32>()?;
        let fv = enc.flatten_all()?.to_vec1::<f32>()?;
        let kept: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
        if kept.is_empty() {
            continue;
        }
        let mut mean = vec![0f64; d];
        for &i in &kept {
            for (m, &v) in mean.iter_mut().zip(&xv[i * d..(i + 1) * d]) {
                *m += v as f64;
            }
        }
        for (sx, m) in sum_x.iter_mut().zip(&mut mean) {
            *sx += *m;
            *m /= kept.len() as f64;
        }
        let (mut rrb_num, mut rrb_den) = (0f64, 0f64);
        for &i in &kept {
            let xr = &xv[i * d..(i + 1) * d];
            let hr = &hv[i * d..(i + 1) * d];
            let fr = &fv[i * d_sae..(i + 1) * d_sae];
            let (mut nx, mut nh, mut dot, mut res, mut var) = (0f64, 0f64, 0f64, 0f64, 0f64);
            for j in 0..d {
                let (a, h) = (xr[j] as f64, hr[j] as f64);
                nx += a * a;
                nh += h * h;
                dot += a * h;
                res += (a - h) * (a - h);
                var += (a - mean[j]) * (a - mean[j]);
            }
            let (nin, nout) = (nx.sqrt(), nh.sqrt());
            s.l2_in += nin;
            s.l2_out += nout;
            s.l2_ratio += nout / if nin.abs() < 1e-4 { 1.0 } else { nin };
            s.cossim += dot / (nin * nout);
            s.mse += res;
            s.ev_legacy += 1.0 - res / var;
            s.sum_sq += nx;
            s.residual += res;
            rrb_num += nh;
            rrb_den += dot;
            for (j, &f) in fr.iter().enumerate() {
                if f != 0.0 {
                    s.l0 += 1.0;
                    s.l1 += (f as f64).abs();
                    fired[j] += 1;
                } else if f.is_nan() {
                    s.l0 += 1.0;
                }
            }
            s.n += 1;
        }
        s.rrb.push(rrb_num / rrb_den);
    }
    if s.n == 0 {
        return Err(FeatureError::input(
            "every token is special (left out): nothing to evaluate",
        ));
    }
    let n = s.n as f64;
    let total_variance = s.sum_sq / n - sum_x.iter().map(|v| (v / n) * (v / n)).sum::<f64>();
    let mse_pooled = s.residual / n;
    let explained_variance = if total_variance < 1e-10 {
        if mse_pooled < 1e-10 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - mse_pooled / total_variance
    };
    let mean = |(sum, count): (f64, usize)| sum / count.max(1) as f64;
    let (ce_clean, ce_sae, ce_abl) = (mean(s.ce[0]), mean(s.ce[1]), mean(s.ce[2]));
    let (kl_sae, kl_abl) = (mean(s.kl[0]), mean(s.kl[1]));
    let feature_density: Vec<f64> = fired.iter().map(|&c| c as f64 / n).collect();
    Ok(SaeMetrics {
        hook_name: hook,
        l0: s.l0 / n,
        l1: s.l1 / n,
        mse: s.mse / n,
        explained_variance,
        explained_variance_legacy: s.ev_legacy / n,
        cossim: s.cossim / n,
        l2_norm_in: s.l2_in / n,
        l2_norm_out: s.l2_out / n,
        l2_ratio: s.l2_ratio / n,
        relative_reconstruction_bias: s.rrb.iter().sum::<f64>() / s.rrb.len() as f64,
        ce_loss_without_sae: ce_clean,
        ce_loss_with_sae: ce_sae,
        ce_loss_with_ablation: ce_abl,
        ce_loss_score: (ce_abl - ce_sae) / (ce_abl - ce_clean),
        kl_div_with_sae: kl_sae,
        kl_div_with_ablation: kl_abl,
        kl_div_score: (kl_abl - kl_sae) / kl_abl,
        tokens: s.n,
        sequences: n_seq,
        dead_features: fired.iter().filter(|&&c| c == 0).count(),
        dense_features: feature_density
            .iter()
            .filter(|&&d| d > DENSE_DENSITY)
            .count(),
        dense_density: DENSE_DENSITY,
        feature_density,
        warnings: score_warnings(ce_clean, ce_abl, kl_abl),
    })
}

/// Token ids the model's tokenizer marks special, and its configured BOS/EOS/PAD ids, within
/// the vocabulary: what SAELens leaves out of evaluations by default.
pub fn special_tokens(model: &HookedModel) -> Vec<u32> {
    let vocab = model.info().d_vocab as u32;
    let mut ids: Vec<u32> = model
        .tokenizer
        .as_ref()
        .map(|t| t.special_ids())
        .unwrap_or_default();
    let cfg = glassbox_formats::hf_config::HfConfig(&model.config);
    for key in [
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "sep_token_id",
        "decoder_start_token_id",
    ] {
        ids.extend(cfg.token_ids(key));
    }
    ids.retain(|&i| i < vocab);
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_that_divide_by_no_ablation_effect_are_flagged() {
        // the parity fixture's case: ablation and SAE both below the clean loss
        let w = score_warnings(7.265, 7.102, 0.5);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("ce_loss_score means nothing") && w[0].contains("-0.1630"),
            "{w:?}"
        );
        assert_eq!(score_warnings(3.0, 3.005, 0.001).len(), 2);
        assert!(score_warnings(3.0, 4.0, 0.8).is_empty());
        assert_eq!(score_warnings(3.0, f64::NAN, f64::NAN).len(), 2);
    }
}
