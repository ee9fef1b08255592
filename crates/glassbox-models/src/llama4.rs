//! Llama 4's text model (`Llama4ForCausalLM`, and the text half of Llama 4 checkpoints), as
//! transformers' `modeling_llama4.py`.
//!
//! Llama's pre-norm block with three per-layer departures, and experts:
//! - **No-rope layers.** Every `no_rope_layer_interval`-th layer (or as `no_rope_layers` lists,
//!   1 = rotary) has no positional rotation; rotary layers rotate adjacent pairs (the
//!   reference's complex multiplication).
//! - **Chunked attention.** Rotary layers attend only within their block of
//!   `attention_chunk_size` positions (`layer_types`: `chunked_attention`); no-rope layers see
//!   the whole causal context.
//! - **QK norm and temperature.** Rotary layers RMS-normalise each head's queries and keys
//!   without a weight (`use_qk_norm`; applied before rotary here — the same numbers, since a
//!   rotation keeps the norm); no-rope layers scale queries up with their position
//!   (`attn_temperature_tuning`, [`QueryTemperature`]).
//! - **Experts.** Layers in `moe_layers` (every `interleave_moe_layer_step`-th) hold a sparse
//!   block: a linear router keeps the best `num_experts_per_tok` logits and takes their
//!   sigmoid; each chosen expert runs on the token *multiplied by its weight*; a shared
//!   SwiGLU expert always runs. Experts are stacks `gate_up_proj` [experts, d, 2·ff] (gate
//!   half first) and `down_proj` [experts, ff, d]. Other layers have a dense SwiGLU of
//!   `intermediate_size_mlp`.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection, QueryTemperature};
use crate::config::HfConfig;
use crate::decoder::{DecoderBlock, DecoderModel, FeedForward, Residual, Window};
use crate::error::{ModelError, Result};
use crate::layers::{Embedding, Linear, Norm, NormKind};
use crate::llama::LlamaDims;
use crate::model::Model;
use crate::moe::{
    self, GateUpColumns, GatedMlp, Glu, MoeBlock, Router, RouterConfig, Scoring, StackedExperts,
    LLAMA_MLP_NAMES,
};

/// What differs between Llama 4's layers.
struct LayerPlan {
    rope: bool,
    window: Window,
    moe: bool,
}

fn layer_plans(cfg: HfConfig, n_layers: usize) -> Result<Vec<LayerPlan>> {
    let ints = |key: &str| -> Result<Option<Vec<u64>>> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
                .map(Some)
                .ok_or_else(|| ModelError::config(format!("`{key}` must be a list of integers"))),
        }
    };
    let rope: Vec<bool> = match ints("no_rope_layers")? {
        // An empty list means "not given" in the reference.
        Some(flags) if !flags.is_empty() => {
            if flags.len() != n_layers {
                return Err(ModelError::config(format!(
                    "`no_rope_layers` lists {} layers, `num_hidden_layers` is {n_layers}",
                    flags.len()
                )));
            }
            flags.iter().map(|&f| f != 0).collect()
        }
        _ => {
            let interval = cfg
                .usize_opt(&["no_rope_layer_interval"])?
                .unwrap_or(4)
                .max(1);
            (0..n_layers).map(|i| (i + 1) % interval != 0).collect()
        }
    };
    let chunk = cfg.usize_opt(&["attention_chunk_size"])?;
    let chunked: Vec<bool> = match cfg.get("layer_types").and_then(Value::as_array) {
        Some(types) => {
            if types.len() != n_layers {
                return Err(ModelError::config(format!(
                    "`layer_types` lists {} layers, `num_hidden_layers` is {n_layers}",
                    types.len()
                )));
            }
            types
                .iter()
                .map(|t| t.as_str() == Some("chunked_attention"))
                .collect()
        }
        None => rope.iter().map(|&r| r && chunk.is_some()).collect(),
    };
    let moe: Vec<usize> = match ints("moe_layers")? {
        Some(layers) => layers.iter().map(|&l| l as usize).collect(),
        None => {
            let step = cfg
                .usize_opt(&["interleave_moe_layer_step"])?
                .unwrap_or(1)
                .max(1);
            (step - 1..n_layers).step_by(step).collect()
        }
    };
    (0..n_layers)
        .map(|i| {
            let window = match (chunked[i], chunk) {
                (true, Some(c)) if c > 0 => Window::Chunked(c),
                (true, _) => {
                    return Err(ModelError::config(
                        "chunked attention layers need a positive `attention_chunk_size`",
                    ))
                }
                (false, _) => Window::Causal,
            };
            Ok(LayerPlan {
                rope: rope[i],
                window,
                moe: moe.contains(&i),
            })
        })
        .collect()
}

pub fn build(config: &Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let mut d = LlamaDims::from_config(config)?;
    d.rope.interleaved = true;
    let plans = layer_plans(cfg, d.n_layers)?;
    let qk_norm = cfg.bool_or("use_qk_norm", true)?;
    let temperature = if cfg.bool_or("attn_temperature_tuning", true)? {
        Some(QueryTemperature {
            floor_scale: cfg.f64_or(&["floor_scale"], 8192.0)?,
            attn_scale: cfg.f64_or(&["attn_scale"], 0.1)?,
        })
    } else {
        None
    };
    if temperature.is_some_and(|t| t.floor_scale.is_nan() || t.floor_scale <= 0.0) {
        return Err(ModelError::config("`floor_scale` must be positive"));
    }
    let bias = cfg.bool_or("attention_bias", false)?;
    let d_mlp_dense = cfg
        .usize_opt(&["intermediate_size_mlp"])?
        .unwrap_or(d.d_mlp);
    let router = RouterConfig {
        n_experts: cfg.usize(&["num_local_experts"])?,
        top_k: cfg.usize_opt(&["num_experts_per_tok"])?.unwrap_or(1),
        // Sigmoid of the chosen logits: the top-k of the logits are the top-k of the sigmoids.
        scoring: Scoring::Sigmoid,
        group_limit: None,
        renormalize: false,
        renormalize_eps: 0.0,
        scale: 1.0,
    };
    let experts = StackedExperts {
        n_experts: router.n_experts,
        d_model: d.d_model,
        d_ff: d.d_mlp,
        columns: GateUpColumns::Halves,
        biases: false,
        act: d.act,
        glu: Glu::Plain,
    };
    let budget = moe::default_expert_budget();
    let norm_kind = NormKind::RmsNorm { eps: d.eps };
    let (q_size, kv_size) = (d.n_heads * d.d_head, d.n_kv_heads * d.d_head);
    let vb_m = vb.pp("model");
    let embed = Embedding::load(vb_m.pp("embed_tokens"), d.vocab, d.d_model)?;
    // The reference's weightless RMSNorm over each head.
    let weightless = Norm {
        kind: norm_kind,
        weight: Tensor::ones(d.d_head, vb.dtype(), vb.device())?,
        bias: None,
    };
    let mut blocks = Vec::with_capacity(d.n_layers);
    for (i, plan) in plans.iter().enumerate() {
        let vb_l = vb_m.pp(format!("layers.{i}"));
        let vb_a = vb_l.pp("self_attn");
        let attn_cfg = AttentionConfig {
            n_heads: d.n_heads,
            n_kv_heads: d.n_kv_heads,
            d_head: d.d_head,
            rope: plan.rope.then(|| d.rope.clone()),
            scale: 1.0 / (d.d_head as f64).sqrt(),
            softcap: None,
            window: plan.window,
        };
        let qkv = QkvProjection::Separate {
            q: Linear::load(vb_a.pp("q_proj"), d.d_model, q_size, bias)?,
            k: Linear::load(vb_a.pp("k_proj"), d.d_model, kv_size, bias)?,
            v: Linear::load(vb_a.pp("v_proj"), d.d_model, kv_size, bias)?,
        };
        let norm = if qk_norm && plan.rope {
            QkNorm::PerHead {
                q: weightless.clone(),
                k: weightless.clone(),
            }
        } else {
            QkNorm::None
        };
        let o = Linear::load(vb_a.pp("o_proj"), q_size, d.d_model, bias)?;
        let mut attn = Attention::new(attn_cfg, qkv, norm, o);
        if let (false, Some(t)) = (plan.rope, temperature) {
            attn = attn.with_query_temperature(t);
        }
        let vb_ff = vb_l.pp("feed_forward");
        let mlp: Box<dyn FeedForward> = if plan.moe {
            Box::new(MoeBlock {
                router: Router::load(vb_ff.pp("router"), router.clone(), d.d_model, false)?,
                // Stacks (a checkpoint's, or fresh ones), or a GGUF file's experts one by one
                experts: experts.load(vb_ff.pp("experts"), budget)?,
                shared: Some(GatedMlp::load(
                    vb_ff.pp("shared_expert"),
                    LLAMA_MLP_NAMES,
                    d.d_model,
                    d.d_mlp,
                    d.act,
                )?),
                shared_gate: None,
                weight_inputs: true,
            })
        } else {
            Box::new(moe::dense_gated_mlp(
                vb_ff,
                LLAMA_MLP_NAMES,
                d.d_model,
                d_mlp_dense,
                d.act,
            )?)
        };
        blocks.push(DecoderBlock {
            ln1: Some(Norm::load(
                vb_l.pp("input_layernorm"),
                norm_kind,
                d.d_model,
            )?),
            attn: Some(Box::new(attn)),
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
