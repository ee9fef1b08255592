//! GLM-4 (`Glm4ForCausalLM`, GLM-4-0414 and later), as transformers' `modeling_glm4.py`
//! computes it.
//!
//! A Llama-like decoder with four norms per layer ("sandwich" norms):
//!
//! ```text
//! x = x + post_self_attn_layernorm(attn(input_layernorm(x)))
//! x = x + post_mlp_layernorm(mlp(post_attention_layernorm(x)))
//! ```
//!
//! (`post_attention_layernorm` is the norm *before* the MLP, as in Llama.) Attention has
//! optional q/k/v biases (`attention_bias`) and rotary on only the first
//! `partial_rotary_factor × head_dim` dimensions of each head, rotating adjacent pairs
//! (GPT-J style). The MLP keeps gate and up in one matrix, `gate_up_proj`, whose output is
//! `[gate | up]`. As in TransformerLens, `hook_attn_out` and `hook_mlp_out` are taken after
//! the post-norms (`ln1_post`, `ln2_post`, whose `hook_normalized` is before their weights):
//! what joins the residual stream.

use candle_nn::VarBuilder;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection};
use crate::config::HfConfig;
use crate::decoder::{DecoderBlock, DecoderModel, Residual, Window};
use crate::error::Result;
use crate::layers::{Embedding, Linear, Norm, NormKind};
use crate::llama::LlamaDims;
use crate::mlp::{Mlp, MlpProjection};
use crate::model::Model;

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let mut d = LlamaDims::from_config(config)?;
    d.rope.interleaved = true;
    let bias = cfg.bool_or("attention_bias", false)?;
    let norm_kind = NormKind::RmsNorm { eps: d.eps };
    let (q_size, kv_size) = (d.n_heads * d.d_head, d.n_kv_heads * d.d_head);
    let m = vb.pp("model");
    let mut blocks = Vec::with_capacity(d.n_layers);
    for i in 0..d.n_layers {
        let l = m.pp("layers").pp(i);
        let a = l.pp("self_attn");
        let attn = Attention::new(
            AttentionConfig {
                n_heads: d.n_heads,
                n_kv_heads: d.n_kv_heads,
                d_head: d.d_head,
                rope: Some(d.rope.clone()),
                scale: 1.0 / (d.d_head as f64).sqrt(),
                softcap: None,
                window: Window::Causal,
            },
            QkvProjection::Separate {
                q: Linear::load(a.pp("q_proj"), d.d_model, q_size, bias)?,
                k: Linear::load(a.pp("k_proj"), d.d_model, kv_size, bias)?,
                v: Linear::load(a.pp("v_proj"), d.d_model, kv_size, bias)?,
            },
            QkNorm::None,
            Linear::load(a.pp("o_proj"), q_size, d.d_model, false)?,
        );
        let mlp = Mlp {
            proj: MlpProjection::GatedFused {
                gate_up: Linear::load(
                    l.pp("mlp").pp("gate_up_proj"),
                    d.d_model,
                    2 * d.d_mlp,
                    false,
                )?,
            },
            act: d.act,
            fc_out: Linear::load(l.pp("mlp").pp("down_proj"), d.d_mlp, d.d_model, false)?,
        };
        let norm = |name: &str| Norm::load(l.pp(name), norm_kind, d.d_model);
        blocks.push(DecoderBlock {
            ln1: Some(norm("input_layernorm")?),
            attn: Some(Box::new(attn)),
            post_attn_norm: Some(norm("post_self_attn_layernorm")?),
            ln2: Some(norm("post_attention_layernorm")?),
            mlp: Some(Box::new(mlp)),
            post_mlp_norm: Some(norm("post_mlp_layernorm")?),
            residual: Residual::Sequential,
        });
    }
    let embed = Embedding::load(m.pp("embed_tokens"), d.vocab, d.d_model)?;
    let tied = cfg.bool_or("tie_word_embeddings", false)?;
    let lm_head = Linear::unembedding(&vb, &embed, tied, d.d_model, d.vocab)?;
    Ok(Box::new(DecoderModel {
        info: d.info(),
        embed,
        pos_embed: None,
        embed_scale: None,
        blocks,
        ln_final: Norm::load(m.pp("norm"), norm_kind, d.d_model)?,
        lm_head,
        final_softcap: None,
    }))
}
