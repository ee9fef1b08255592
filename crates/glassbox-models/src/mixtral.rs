//! Mixtral (`MixtralForCausalLM`): Mistral's attention with a sparse mixture of experts in
//! place of each MLP, as transformers' `modeling_mixtral.py` computes it.
//!
//! Each layer's `block_sparse_moe` routes every token to the `num_experts_per_tok` best of
//! `num_local_experts` SwiGLU experts (`w1` gate, `w3` up, `w2` down) by a softmax over the
//! router logits (`gate`), renormalised over the chosen experts. Routing hooks are described
//! in [`crate::moe`].

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::decoder::FeedForward;
use crate::error::{ModelError, Result};
use crate::llama::{build_llama_style_with, LlamaDims, Quirks};
use crate::model::Model;
use crate::moe::{self, MoeBlock, MoeSpec, RouterConfig, Scoring};

pub fn build(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let dims = LlamaDims::from_config(config)?;
    let router = RouterConfig {
        n_experts: cfg.usize(&["num_local_experts"])?,
        top_k: cfg.usize(&["num_experts_per_tok"])?,
        scoring: Scoring::Softmax,
        group_limit: None,
        renormalize: true,
        renormalize_eps: 0.0,
        scale: 1.0,
    };
    router.validate().map_err(ModelError::config)?;
    let spec = MoeSpec {
        router,
        correction_bias: false,
        names: moe::LLAMA_MLP_NAMES,
        d_model: dims.d_model,
        d_ff: dims.d_mlp,
        n_shared: 0,
        act: dims.act,
        budget: moe::default_expert_budget(),
    };
    let layers = vb.pp("model").pp("layers");
    let feed_forward = |i: usize| -> Result<Option<Box<dyn FeedForward>>> {
        // The Hub's (and transformers' default save) `block_sparse_moe` with w1/w3/w2, or
        // transformers 5's own module names when it saves its fused experts.
        if layers.contains_tensor(&format!("{i}.mlp.gate.weight")) {
            Ok(Some(Box::new(MoeBlock::load(
                layers.pp(i).pp("mlp"),
                &spec,
            )?)))
        } else {
            let names = MoeSpec {
                names: moe::MIXTRAL_MLP_NAMES,
                ..spec.clone()
            };
            Ok(Some(Box::new(MoeBlock::load(
                layers.pp(i).pp("block_sparse_moe"),
                &names,
            )?)))
        }
    };
    let quirks = Quirks {
        qkv_bias: cfg.bool_or("attention_bias", false)?,
        o_bias: cfg.bool_or("attention_bias", false)?,
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
