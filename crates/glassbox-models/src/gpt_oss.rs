//! gpt-oss (`GptOssForCausalLM`), OpenAI's open-weights mixture of experts, as transformers'
//! `modeling_gpt_oss.py`.
//!
//! Llama's pre-norm block with grouped-query attention whose projections all carry biases and
//! whose softmax has one more, learned logit per head (`sinks`: the head may attend to
//! nothing); sliding-window and full layers alternate (`layer_types`); rotary in the two-halves
//! form with YaRN scaling. Every feed-forward is a sparse block: a linear router with a bias
//! keeps the `num_experts_per_tok` best logits and softmaxes them (the same weights as a
//! softmax over all experts renormalised over the chosen ones); each expert is a clamped
//! SwiGLU, `(clamp(up) + 1) · g · σ(α g)` with `g = min(gate, limit)`, whose gate and up
//! columns interleave in one `gate_up_proj` [experts, d, 2·ff] with biases, and `down_proj`
//! [experts, ff, d] with a bias. The published checkpoints hold the experts in MXFP4, read
//! per expert by the checkpoint backend (see [`crate::backend`]).

use candle_nn::{Init, VarBuilder};

use crate::config::HfConfig;
use crate::decoder::FeedForward;
use crate::error::{ModelError, Result};
use crate::layers::Activation;
use crate::llama::{build_llama_style_with, LlamaDims, Quirks};
use crate::model::Model;
use crate::moe::{
    self, GateUpColumns, Glu, MoeBlock, Router, RouterConfig, Scoring, StackedExperts,
};

pub fn build(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let dims = LlamaDims::from_config(config)?;
    let router = RouterConfig {
        n_experts: cfg.usize(&["num_local_experts", "num_experts"])?,
        top_k: cfg.usize(&["num_experts_per_tok", "experts_per_token"])?,
        scoring: Scoring::Softmax,
        group_limit: None,
        renormalize: true,
        renormalize_eps: 0.0,
        scale: 1.0,
    };
    router.validate().map_err(ModelError::config)?;
    let experts = StackedExperts {
        n_experts: router.n_experts,
        d_model: dims.d_model,
        d_ff: dims.d_mlp,
        columns: GateUpColumns::Interleaved,
        biases: true,
        act: Activation::Silu,
        glu: Glu::ClampedSwiglu {
            alpha: cfg.f64_or(&["swiglu_alpha"], 1.702)?,
            limit: cfg.f64_or(&["swiglu_limit"], 7.0)?,
        },
    };
    let layers = vb.pp("model").pp("layers");
    let budget = moe::default_expert_budget();
    let feed_forward = |i: usize| -> Result<Option<Box<dyn FeedForward>>> {
        let vb_mlp = layers.pp(i).pp("mlp");
        let vb_router = vb_mlp.pp("router");
        let mut gate = Router::load(vb_router.clone(), router.clone(), dims.d_model, false)?;
        gate.bias = Some(vb_router.get_with_hints(router.n_experts, "bias", Init::Const(0.0))?);
        Ok(Some(Box::new(MoeBlock {
            router: gate,
            experts: experts.load(vb_mlp.pp("experts"), budget)?,
            shared: None,
            shared_gate: None,
            weight_inputs: false,
        })))
    };
    let bias = cfg.bool_or("attention_bias", true)?;
    let quirks = Quirks {
        qkv_bias: bias,
        o_bias: bias,
        attn_sinks: true,
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
