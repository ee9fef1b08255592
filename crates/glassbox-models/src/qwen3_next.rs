//! Qwen3-Next (`Qwen3NextForCausalLM`), as transformers' `modeling_qwen3_next.py`.
//!
//! A hybrid: most layers mix tokens with gated DeltaNet linear attention
//! ([`crate::linear_attention`]), every `full_attention_interval`-th (or as `layer_types`
//! says) with gated full attention — Qwen 3's attention (per-head QK norm, here on part of
//! each head's rotary dimensions, `partial_rotary_factor`) whose query projection also
//! yields a per-head output gate, `o_proj(z · σ(gate))`. Every norm scales by `1 + w` (the
//! weights are stored zero-centred). Feed-forwards are sparse blocks as Qwen3-MoE's (softmax
//! router, top-k, renormalised with `norm_topk_prob`) plus a shared SwiGLU expert scaled per
//! token by `σ(shared_expert_gate · x)`; layers in `mlp_only_layers` (or off the
//! `decoder_sparse_step`) have a dense SwiGLU.
//!
//! Linear-attention layers carry a recurrent state: decoding keeps it in the KV cache, and
//! analyses that resume a pass midway (patching reruns) run whole passes instead.

use candle_nn::VarBuilder;
use serde_json::Value;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection};
use crate::config::HfConfig;
use crate::decoder::{DecoderBlock, DecoderModel, FeedForward, Residual, SelfAttention, Window};
use crate::error::{ModelError, Result};
use crate::layers::{Embedding, Linear, Norm, NormKind};
use crate::linear_attention::{DeltaNetConfig, GatedDeltaNet};
use crate::llama::LlamaDims;
use crate::model::Model;
use crate::moe::{self, GatedMlp, MoeBlock, MoeSpec, RouterConfig, Scoring, LLAMA_MLP_NAMES};
use crate::qwen3_moe::{is_sparse, mlp_only_layers};

/// Whether each layer is a linear-attention layer (else full attention).
fn linear_layers(cfg: HfConfig, n_layers: usize) -> Result<Vec<bool>> {
    match cfg.get("layer_types").and_then(Value::as_array) {
        Some(types) => {
            if types.len() != n_layers {
                return Err(ModelError::config(format!(
                    "`layer_types` lists {} layers, `num_hidden_layers` is {n_layers}",
                    types.len()
                )));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    Some("linear_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    other => Err(ModelError::config(format!(
                        "layer type {other:?} is not linear_attention or full_attention"
                    ))),
                })
                .collect()
        }
        None => {
            let interval = cfg
                .usize_opt(&["full_attention_interval"])?
                .unwrap_or(4)
                .max(1);
            Ok((0..n_layers).map(|i| (i + 1) % interval != 0).collect())
        }
    }
}

pub fn build(config: &Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let d = LlamaDims::from_config(config)?;
    let linear = linear_layers(cfg, d.n_layers)?;
    let delta = DeltaNetConfig {
        d_model: d.d_model,
        n_k_heads: cfg.usize(&["linear_num_key_heads"])?,
        n_v_heads: cfg.usize(&["linear_num_value_heads"])?,
        d_k: cfg.usize(&["linear_key_head_dim"])?,
        d_v: cfg.usize(&["linear_value_head_dim"])?,
        conv_kernel: cfg.usize_opt(&["linear_conv_kernel_dim"])?.unwrap_or(4),
        eps: d.eps,
    };
    if delta.n_k_heads == 0 || !delta.n_v_heads.is_multiple_of(delta.n_k_heads) {
        return Err(ModelError::config(format!(
            "{} linear-attention value heads cannot share {} key heads",
            delta.n_v_heads, delta.n_k_heads
        )));
    }
    let n_experts = cfg.usize_opt(&["num_experts"])?.unwrap_or(0);
    let sparse_step = cfg.usize_opt(&["decoder_sparse_step"])?.unwrap_or(1);
    let mlp_only = mlp_only_layers(cfg)?;
    let router = RouterConfig {
        n_experts,
        top_k: cfg.usize_opt(&["num_experts_per_tok"])?.unwrap_or(0),
        scoring: Scoring::Softmax,
        group_limit: None,
        renormalize: cfg.bool_or("norm_topk_prob", true)?,
        renormalize_eps: 0.0,
        scale: 1.0,
    };
    if n_experts > 0 {
        router.validate().map_err(ModelError::config)?;
    }
    let spec = MoeSpec {
        router,
        correction_bias: false,
        names: LLAMA_MLP_NAMES,
        d_model: d.d_model,
        d_ff: cfg
            .usize_opt(&["moe_intermediate_size"])?
            .unwrap_or(d.d_mlp),
        n_shared: 0,
        act: d.act,
        budget: moe::default_expert_budget(),
    };
    let d_shared = cfg
        .usize_opt(&["shared_expert_intermediate_size"])?
        .unwrap_or(0);
    let bias = cfg.bool_or("attention_bias", false)?;
    let norm_kind = NormKind::RmsNormPlusOne { eps: d.eps };
    let (q_size, kv_size) = (d.n_heads * d.d_head, d.n_kv_heads * d.d_head);
    let vb_m = vb.pp("model");
    let embed = Embedding::load(vb_m.pp("embed_tokens"), d.vocab, d.d_model)?;
    let mut blocks = Vec::with_capacity(d.n_layers);
    for (i, &is_linear) in linear.iter().enumerate() {
        let vb_l = vb_m.pp(format!("layers.{i}"));
        let mixer: Box<dyn SelfAttention> = if is_linear {
            Box::new(GatedDeltaNet::load(vb_l.pp("linear_attn"), delta)?)
        } else {
            let vb_a = vb_l.pp("self_attn");
            let attn_cfg = AttentionConfig {
                n_heads: d.n_heads,
                n_kv_heads: d.n_kv_heads,
                d_head: d.d_head,
                rope: Some(d.rope.clone()),
                scale: 1.0 / (d.d_head as f64).sqrt(),
                softcap: None,
                window: Window::Causal,
            };
            let qkv = QkvProjection::Separate {
                // queries and, per head, their output gate
                q: Linear::load(vb_a.pp("q_proj"), d.d_model, 2 * q_size, bias)?,
                k: Linear::load(vb_a.pp("k_proj"), d.d_model, kv_size, bias)?,
                v: Linear::load(vb_a.pp("v_proj"), d.d_model, kv_size, bias)?,
            };
            let qk_norm = QkNorm::PerHead {
                q: Norm::load(vb_a.pp("q_norm"), norm_kind, d.d_head)?,
                k: Norm::load(vb_a.pp("k_norm"), norm_kind, d.d_head)?,
            };
            let o = Linear::load(vb_a.pp("o_proj"), q_size, d.d_model, bias)?;
            Box::new(Attention::new(attn_cfg, qkv, qk_norm, o).with_output_gate())
        };
        let vb_mlp = vb_l.pp("mlp");
        let mlp: Box<dyn FeedForward> = if is_sparse(i, n_experts, sparse_step, &mlp_only) {
            let mut block = MoeBlock::load(vb_mlp.clone(), &spec)?;
            if d_shared > 0 {
                block.shared = Some(GatedMlp::load(
                    vb_mlp.pp("shared_expert"),
                    LLAMA_MLP_NAMES,
                    d.d_model,
                    d_shared,
                    d.act,
                )?);
                block.shared_gate = Some(Linear::load(
                    vb_mlp.pp("shared_expert_gate"),
                    d.d_model,
                    1,
                    false,
                )?);
            }
            Box::new(block)
        } else {
            Box::new(moe::dense_gated_mlp(
                vb_mlp,
                LLAMA_MLP_NAMES,
                d.d_model,
                d.d_mlp,
                d.act,
            )?)
        };
        blocks.push(DecoderBlock {
            ln1: Some(Norm::load(
                vb_l.pp("input_layernorm"),
                norm_kind,
                d.d_model,
            )?),
            attn: Some(mixer),
            post_attn_norm: None,
            ln2: Some(Norm::load(
                vb_l.pp("post_attention_layernorm"),
                norm_kind,
                d.d_model,
            )?),
            mlp: Some(mlp),
            post_mlp_norm: None,
            residual: Residual::Sequential,
        });
    }
    let ln_final = Norm::load(vb_m.pp("norm"), norm_kind, d.d_model)?;
    let tied = cfg.bool_or("tie_word_embeddings", false)?;
    let lm_head = Linear::unembedding(&vb, &embed, tied, d.d_model, d.vocab)?;
    Ok(Box::new(DecoderModel {
        info: d.info(),
        embed,
        pos_embed: None,
        embed_scale: None,
        blocks,
        ln_final,
        lm_head,
        final_softcap: None,
    }))
}
