//! The router: scores, probabilities, the choice of experts and their weights.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::ops;

/// How router logits become per-expert probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    /// Softmax over all routed experts (Mixtral, Qwen-MoE, DeepSeek-V2).
    Softmax,
    /// An independent sigmoid per expert (DeepSeek-V3).
    Sigmoid,
}

/// How an expert group is scored when routing is limited to the best groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupScore {
    /// The sum of the group's two best (bias-corrected) scores (DeepSeek-V3 `noaux_tc`).
    SumOfTopTwo,
    /// The group's best score (DeepSeek-V2 `group_limited_greedy`).
    Max,
}

/// Group-limited routing: experts are split into `n_group` equal groups and only the
/// `topk_group` best groups may be chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupLimit {
    pub n_group: usize,
    pub topk_group: usize,
    pub score: GroupScore,
    /// What the experts of a dropped group score in the final choice: 0 in DeepSeek-V3 and
    /// GLM-4.5 (so a kept expert whose corrected score is negative can lose to them), −∞ in
    /// Nemotron-H.
    pub dropped: f32,
}

/// Everything that defines a router's arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    pub n_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    pub scoring: Scoring,
    pub group_limit: Option<GroupLimit>,
    /// Divide the chosen probabilities by their sum (`norm_topk_prob`; always for Mixtral).
    pub renormalize: bool,
    /// Added to the sum before dividing (DeepSeek-V3 adds 1e-20; the others add nothing).
    pub renormalize_eps: f64,
    /// Multiplies the final weights (`routed_scaling_factor`).
    pub scale: f64,
}

impl RouterConfig {
    /// Checks the counts fit together (a malformed config must not index out of range).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.n_experts == 0 || self.top_k == 0 || self.top_k > self.n_experts {
            return Err(format!(
                "experts per token ({}) must be between 1 and the number of experts ({})",
                self.top_k, self.n_experts
            ));
        }
        if let Some(g) = self.group_limit {
            if g.n_group == 0 || !self.n_experts.is_multiple_of(g.n_group) {
                return Err(format!(
                    "{} experts cannot be split into {} equal groups",
                    self.n_experts, g.n_group
                ));
            }
            if g.topk_group == 0 || g.topk_group > g.n_group {
                return Err(format!(
                    "topk_group {} must be between 1 and n_group {}",
                    g.topk_group, g.n_group
                ));
            }
            if g.topk_group * (self.n_experts / g.n_group) < self.top_k {
                return Err(format!(
                    "{} groups of {} experts cannot supply {} experts per token",
                    g.topk_group,
                    self.n_experts / g.n_group,
                    self.top_k
                ));
            }
            if g.score == GroupScore::SumOfTopTwo && self.n_experts / g.n_group < 2 {
                return Err(
                    "group scoring by the two best experts needs groups of at least 2".into(),
                );
            }
        }
        Ok(())
    }
}

/// The router (`gate`): a linear map to one logit per routed expert, plus DeepSeek-V3's
/// score-correction bias, which shifts the choice but not the weights.
#[derive(Clone, Debug)]
pub struct Router {
    pub cfg: RouterConfig,
    /// [n_experts, d_model].
    pub weight: Tensor,
    /// [n_experts], added to the logits (gpt-oss' router is a linear layer with a bias).
    pub bias: Option<Tensor>,
    /// [n_experts], DeepSeek-V3's `e_score_correction_bias`.
    pub correction_bias: Option<Vec<f32>>,
}

impl Router {
    /// Loads `{vb}.weight` and, when `with_bias` and the file has it, `{vb}.e_score_correction_bias`.
    pub fn load(
        vb: VarBuilder,
        cfg: RouterConfig,
        d_model: usize,
        with_bias: bool,
    ) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let weight = vb.get_with_hints(
            (cfg.n_experts, d_model),
            "weight",
            crate::layers::WEIGHT_INIT,
        )?;
        // A file without the bias (a DeepSeek-V2 GGUF run through this router) selects by the
        // scores alone, as llama.cpp does without `exp_probs_b`.
        let correction_bias = if with_bias && vb.contains_tensor("e_score_correction_bias") {
            let b = vb.get_with_hints(
                cfg.n_experts,
                "e_score_correction_bias",
                candle_nn::Init::Const(0.0),
            )?;
            Some(b.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        } else {
            None
        };
        Ok(Router {
            cfg,
            weight,
            bias: None,
            correction_bias,
        })
    }

    /// Router logits [n, n_experts] in f32 (the references route in f32 whatever the dtype).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        let logits = ops::matmul(&x, &self.weight.to_dtype(DType::F32)?.t()?)?;
        match &self.bias {
            Some(b) => logits.broadcast_add(&b.to_dtype(DType::F32)?),
            None => Ok(logits),
        }
    }

    /// Probabilities [n, n_experts] from logits.
    pub fn scores(&self, logits: &Tensor) -> Result<Tensor> {
        match self.cfg.scoring {
            Scoring::Softmax => ops::softmax_last_dim(logits),
            Scoring::Sigmoid => ops::sigmoid(logits),
        }
    }

    /// The `top_k` experts of each row of `scores` (row-major [n, n_experts]), best first
    /// (ties to the lower index).
    pub fn select(&self, scores: &[f32]) -> Vec<u32> {
        let e = self.cfg.n_experts;
        let k = self.cfg.top_k;
        let rows = scores.len() / e;
        let mut out = Vec::with_capacity(rows * k);
        let mut choice = vec![0f32; e];
        for row in scores.chunks_exact(e) {
            for (j, c) in choice.iter_mut().enumerate() {
                *c = row[j] + self.correction_bias.as_ref().map_or(0.0, |b| b[j]);
            }
            if let Some(g) = self.cfg.group_limit {
                let size = e / g.n_group;
                let group_scores: Vec<f32> = choice
                    .chunks_exact(size)
                    .map(|grp| match g.score {
                        GroupScore::Max => grp.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                        GroupScore::SumOfTopTwo => {
                            let best = top_indices(grp, 2);
                            best.iter().map(|&i| grp[i]).sum()
                        }
                    })
                    .collect();
                let kept = top_indices(&group_scores, g.topk_group);
                for (gi, grp) in choice.chunks_exact_mut(size).enumerate() {
                    if !kept.contains(&gi) {
                        grp.iter_mut().for_each(|c| *c = g.dropped);
                    }
                }
            }
            out.extend(top_indices(&choice, k).into_iter().map(|i| i as u32));
        }
        out
    }

    /// Weights [n, k] for `indices` [n, k] (u32): the chosen probabilities, renormalised and
    /// scaled as configured. Differentiable in `scores`.
    pub fn weights(&self, scores: &Tensor, indices: &Tensor) -> Result<Tensor> {
        let mut w = scores.contiguous()?.gather(&indices.contiguous()?, 1)?;
        if self.cfg.renormalize {
            let denom = (w.sum_keepdim(D::Minus1)? + self.cfg.renormalize_eps)?;
            w = w.broadcast_div(&denom)?;
        }
        if self.cfg.scale != 1.0 {
            w = (w * self.cfg.scale)?;
        }
        Ok(w)
    }
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        values[b]
            .partial_cmp(&values[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}
