//! GPT-NeoX (Pythia): rotary attention on the first `rotary_pct` of each head's dimensions
//! (`rotate_half` layout), q, k, v fused in `attention.query_key_value` with its output laid
//! out per head as `[head, (q, k, v), d_head]`, LayerNorms with bias, a GELU MLP, and a
//! parallel residual `x + attn(ln1(x)) + mlp(ln2(x))` unless `use_parallel_residual` is false.
//! The unembedding `embed_out` is separate from `gpt_neox.embed_in`.

use candle_nn::VarBuilder;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection};
use crate::config::{HfConfig, RopeConfig};
use crate::decoder::{DecoderBlock, DecoderModel, Residual, Window};
use crate::error::{ModelError, Result};
use crate::layers::{Activation, Embedding, Linear, Norm, NormKind};
use crate::mlp::{Mlp, MlpProjection};
use crate::model::{Model, ModelInfo};

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let d_model = cfg.usize(&["hidden_size"])?;
    let n_heads = cfg.usize(&["num_attention_heads"])?;
    if n_heads == 0 || d_model % n_heads != 0 {
        return Err(ModelError::config(format!(
            "{d_model} is not divisible into {n_heads} heads"
        )));
    }
    let d_head = d_model / n_heads;
    let n_layers = cfg.usize(&["num_hidden_layers"])?;
    let d_mlp = cfg.usize(&["intermediate_size"])?;
    let vocab = cfg.usize(&["vocab_size"])?;
    let n_ctx = cfg.usize_opt(&["max_position_embeddings"])?.unwrap_or(2048);
    let eps = cfg.f64_or(&["layer_norm_eps"], 1e-5)?;
    let act_name = cfg.str_opt("hidden_act")?.unwrap_or("gelu");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| ModelError::config(format!("unsupported activation `{act_name}`")))?;
    let bias = cfg.bool_or("attention_bias", true)?;
    let residual = if cfg.bool_or("use_parallel_residual", true)? {
        Residual::Parallel
    } else {
        Residual::Sequential
    };
    let rope = RopeConfig::from_config(cfg, d_head)?;
    let norm = NormKind::LayerNorm { eps };
    let vb_m = vb.pp("gpt_neox");
    let embed = Embedding::load(vb_m.pp("embed_in"), vocab, d_model)?;
    let mut blocks = Vec::with_capacity(n_layers);
    for i in 0..n_layers {
        let vb_l = vb_m.pp(format!("layers.{i}"));
        let attn = Attention::new(
            AttentionConfig {
                n_heads,
                n_kv_heads: n_heads,
                d_head,
                rope: Some(rope.clone()),
                scale: 1.0 / (d_head as f64).sqrt(),
                softcap: None,
                window: Window::Causal,
            },
            QkvProjection::InterleavedPerHead(Linear::load(
                vb_l.pp("attention.query_key_value"),
                d_model,
                3 * d_model,
                bias,
            )?),
            QkNorm::None,
            Linear::load(vb_l.pp("attention.dense"), d_model, d_model, bias)?,
        );
        let mlp = Mlp {
            proj: MlpProjection::Plain {
                fc_in: Linear::load(vb_l.pp("mlp.dense_h_to_4h"), d_model, d_mlp, true)?,
            },
            act,
            fc_out: Linear::load(vb_l.pp("mlp.dense_4h_to_h"), d_mlp, d_model, true)?,
        };
        blocks.push(DecoderBlock {
            ln1: Some(Norm::load(vb_l.pp("input_layernorm"), norm, d_model)?),
            attn: Some(Box::new(attn)),
            post_attn_norm: None,
            ln2: Some(Norm::load(
                vb_l.pp("post_attention_layernorm"),
                norm,
                d_model,
            )?),
            mlp: Some(Box::new(mlp)),
            post_mlp_norm: None,
            residual,
        });
    }
    let ln_final = Norm::load(vb_m.pp("final_layer_norm"), norm, d_model)?;
    let lm_head = if cfg.bool_or("tie_word_embeddings", false)? {
        Linear::tied(&embed)
    } else {
        Linear::load(vb.pp("embed_out"), d_model, vocab, false)?
    };
    Ok(Box::new(DecoderModel {
        info: ModelInfo {
            architecture: cfg.architecture()?,
            n_layers,
            d_model,
            n_heads,
            n_kv_heads: n_heads,
            d_head,
            d_mlp,
            d_vocab: vocab,
            n_ctx,
            causal: true,
            learned_positions: false,
        },
        embed,
        pos_embed: None,
        embed_scale: None,
        blocks,
        ln_final,
        lm_head,
        final_softcap: None,
    }))
}
