//! Qwen3-MoE (`Qwen3MoeForCausalLM`): Qwen 3's attention (an RMSNorm over each head's queries
//! and keys before rotary) with a sparse mixture of experts, as transformers'
//! `modeling_qwen3_moe.py` computes it.
//!
//! A layer is a mixture of experts unless it is listed in `mlp_only_layers` or
//! `(layer + 1) % decoder_sparse_step != 0`; then it is a dense SwiGLU of `intermediate_size`.
//! The router (`mlp.gate`) takes a softmax over `num_experts` logits and keeps the best
//! `num_experts_per_tok`, renormalised when `norm_topk_prob`. Experts (`mlp.experts.{e}`) are
//! SwiGLUs of `moe_intermediate_size`; there are no shared experts.

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::decoder::FeedForward;
use crate::error::{ModelError, Result};
use crate::llama::{build_llama_style_with, LlamaDims, QkNormKind, Quirks};
use crate::model::Model;
use crate::moe::{self, MoeBlock, MoeSpec, RouterConfig, Scoring};

/// Whether layer `i` is a mixture of experts.
pub fn is_sparse(i: usize, n_experts: usize, sparse_step: usize, mlp_only: &[usize]) -> bool {
    !mlp_only.contains(&i)
        && n_experts > 0
        && sparse_step > 0
        && (i + 1).is_multiple_of(sparse_step)
}

/// `mlp_only_layers`: the layers kept dense whatever the sparse step.
pub(crate) fn mlp_only_layers(cfg: HfConfig) -> Result<Vec<usize>> {
    match cfg.get("mlp_only_layers") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|n| n as usize)).collect())
            .ok_or_else(|| ModelError::config("`mlp_only_layers` must be a list of layer indices")),
    }
}

pub fn build(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    build_with(config, vb, QkNormKind::PerHead)
}

/// A Qwen3-MoE-style model whose queries and keys are normalised as `qk_norm` says (OLMoE
/// normalises the whole projections).
pub fn build_with(
    config: &serde_json::Value,
    vb: VarBuilder<'static>,
    qk_norm: QkNormKind,
) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let dims = LlamaDims::from_config(config)?;
    let n_experts = cfg.usize_opt(&["num_experts"])?.unwrap_or(0);
    let sparse_step = cfg.usize_opt(&["decoder_sparse_step"])?.unwrap_or(1);
    let mlp_only = mlp_only_layers(cfg)?;
    let router = RouterConfig {
        n_experts,
        top_k: cfg.usize_opt(&["num_experts_per_tok"])?.unwrap_or(0),
        scoring: Scoring::Softmax,
        group_limit: None,
        renormalize: cfg.bool_or("norm_topk_prob", false)?,
        renormalize_eps: 0.0,
        scale: 1.0,
    };
    if n_experts > 0 {
        router.validate().map_err(ModelError::config)?;
    }
    let spec = MoeSpec {
        router,
        correction_bias: false,
        names: moe::LLAMA_MLP_NAMES,
        d_model: dims.d_model,
        d_ff: cfg
            .usize_opt(&["moe_intermediate_size"])?
            .unwrap_or(dims.d_mlp),
        n_shared: 0,
        act: dims.act,
        budget: moe::default_expert_budget(),
    };
    let layers = vb.pp("model").pp("layers");
    let feed_forward = |i: usize| -> Result<Option<Box<dyn FeedForward>>> {
        if !is_sparse(i, n_experts, sparse_step, &mlp_only) {
            return Ok(None);
        }
        Ok(Some(Box::new(MoeBlock::load(
            layers.pp(i).pp("mlp"),
            &spec,
        )?)))
    };
    let bias = cfg.bool_or("attention_bias", false)?;
    let quirks = Quirks {
        qkv_bias: bias,
        o_bias: bias,
        qk_norm,
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style_with(
        config,
        vb.clone(),
        &dims,
        &quirks,
        &feed_forward,
    )?))
}

#[cfg(test)]
mod tests {
    use super::is_sparse;

    #[test]
    fn sparse_layers_follow_step_and_exclusions() {
        let sparse: Vec<bool> = (0..4).map(|i| is_sparse(i, 8, 2, &[3])).collect();
        assert_eq!(sparse, [false, true, false, false]);
        assert!(!is_sparse(0, 0, 1, &[]));
        assert!(is_sparse(0, 8, 1, &[]));
    }
}
