//! Gemma and Gemma 2.
//!
//! Gemma: Llama with RMSNorm weights stored as `w − 1` (scale by `1 + w`, in f32), token
//! embeddings multiplied by `sqrt(d_model)` rounded to the model dtype, a GELU-tanh gated MLP,
//! an explicit `head_dim` and a tied unembedding.
//! Gemma 2 adds norms on the attention and MLP outputs (`post_attention_layernorm`,
//! `post_feedforward_layernorm`, with `pre_feedforward_layernorm` before the MLP), scales
//! queries by `query_pre_attn_scalar^-½`, soft-caps attention scores and final logits, and
//! uses a sliding window on alternate layers (`layer_types`, else even layers).
//! Gemma 3 (`Gemma3ForCausalLM`, the text model) is Gemma 2 with each head's queries and keys
//! RMS-normalised (`q_norm`, `k_norm`, also `1 + w`), sliding windows on five layers of six
//! (`layer_types`, else `sliding_window_pattern`), its own rotary base on the sliding layers
//! (`rope_parameters.sliding_attention`, or `rope_local_base_freq` in older configs), and
//! final soft-capping where configured — attention soft-capping, though configurable, is not
//! applied by the reference.

use candle_nn::VarBuilder;

use crate::config::{HfConfig, RopeConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::layers::Activation;
use crate::llama::{build_llama_style, LlamaDims, QkNormKind, Quirks};
use crate::model::Model;

fn gemma_dims(config: &serde_json::Value) -> Result<LlamaDims> {
    let mut dims = LlamaDims::from_config(config)?;
    // Gemma 1 checkpoints say `hidden_act: gelu` but the reference runs the tanh approximation
    // unless `hidden_activation` says otherwise.
    if HfConfig(config).str_opt("hidden_activation")?.is_none() && dims.act == Activation::Gelu {
        dims.act = Activation::GeluTanh;
    }
    Ok(dims)
}

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let dims = gemma_dims(config)?;
    let bias = HfConfig(config).bool_or("attention_bias", false)?;
    let quirks = Quirks {
        qkv_bias: bias,
        o_bias: bias,
        norm_plus_one: true,
        embed_scale: Some((dims.d_model as f64).sqrt()),
        tie_default: true,
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}

/// Gemma 2's departures from Llama, which Gemma 3 keeps but for two.
fn gemma2_quirks(cfg: HfConfig, dims: &LlamaDims) -> Result<Quirks> {
    let scalar = cfg.f64_or(&["query_pre_attn_scalar"], dims.d_head as f64)?;
    let bias = cfg.bool_or("attention_bias", false)?;
    Ok(Quirks {
        qkv_bias: bias,
        o_bias: bias,
        norm_plus_one: true,
        post_norms: true,
        embed_scale: Some((dims.d_model as f64).sqrt()),
        attn_scale: Some(1.0 / scalar.sqrt()),
        attn_softcap: cfg.f64_opt(&["attn_logit_softcapping"])?,
        final_softcap: cfg.f64_opt(&["final_logit_softcapping"])?,
        tie_default: true,
        ..Quirks::default()
    })
}

pub fn build2(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let mut dims = gemma_dims(config)?;
    if dims.layer_sliding.is_none() {
        // Gemma 2 alternates: sliding window on even layers, global attention on odd ones.
        dims.layer_sliding = Some((0..dims.n_layers).map(|i| i % 2 == 0).collect());
    }
    let quirks = gemma2_quirks(cfg, &dims)?;
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}

pub fn build3(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    if cfg.bool_or("use_bidirectional_attention", false)? {
        return Err(ModelError::config(
            "`use_bidirectional_attention` (Gemma 3 as an embedding model) is not supported",
        ));
    }
    let mut dims = gemma_dims(config)?;
    if dims.layer_sliding.is_none() {
        let pattern = cfg
            .usize_opt(&["sliding_window_pattern"])?
            .unwrap_or(6)
            .max(1);
        dims.layer_sliding = Some((0..dims.n_layers).map(|i| (i + 1) % pattern != 0).collect());
    }
    if dims.sliding_rope.is_none() {
        // Configs from before per-type rope parameters: the local layers rotate with their
        // own base and no scaling.
        if let Some(local) = cfg.f64_opt(&["rope_local_base_freq"])? {
            dims.sliding_rope = Some(RopeConfig {
                theta: local,
                scaling: RopeScaling::None,
                ..dims.rope.clone()
            });
        }
    }
    let quirks = Quirks {
        qk_norm: QkNormKind::PerHead,
        // The reference keeps `attn_logit_softcapping` in the config but never applies it.
        attn_softcap: None,
        ..gemma2_quirks(cfg, &dims)?
    };
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}
