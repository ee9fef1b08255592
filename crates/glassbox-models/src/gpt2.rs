//! GPT-2: learned absolute positions added to token embeddings; blocks of
//! `x + attn(layernorm(x))`, `x + mlp(layernorm(x))` with full multi-head attention and a
//! `gelu_new` MLP; final LayerNorm; unembedding tied to the token embedding.
//!
//! Weights are `Conv1D`s stored [in, out]; q, k, v share one `c_attn` whose output is
//! `[q | k | v]`. Hub checkpoints name tensors `transformer.h.{i}.…` (or, in the original
//! upload, without the `transformer.` prefix; both are read).

use candle_nn::VarBuilder;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection};
use crate::config::HfConfig;
use crate::decoder::{DecoderBlock, DecoderModel, Residual, Window};
use crate::error::{ModelError, Result};
use crate::layers::{Activation, Embedding, Linear, Norm, NormKind};
use crate::mlp::{Mlp, MlpProjection};
use crate::model::{Model, ModelInfo};

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let d_model = cfg.usize(&["n_embd", "hidden_size"])?;
    let n_heads = cfg.usize(&["n_head", "num_attention_heads"])?;
    if n_heads == 0 || d_model % n_heads != 0 {
        return Err(ModelError::config(format!(
            "{d_model} is not divisible into {n_heads} heads"
        )));
    }
    let d_head = d_model / n_heads;
    let n_layers = cfg.usize(&["n_layer", "num_hidden_layers"])?;
    let d_mlp = cfg.usize_opt(&["n_inner"])?.unwrap_or(4 * d_model);
    let vocab = cfg.usize(&["vocab_size"])?;
    let n_ctx = cfg.usize(&["n_positions", "n_ctx", "max_position_embeddings"])?;
    let eps = cfg.f64_or(&["layer_norm_epsilon"], 1e-5)?;
    let act_name = cfg.str_opt("activation_function")?.unwrap_or("gelu_new");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| ModelError::config(format!("unsupported activation `{act_name}`")))?;
    let scale_by_layer = cfg.bool_or("scale_attn_by_inverse_layer_idx", false)?;
    let base_scale = if cfg.bool_or("scale_attn_weights", true)? {
        1.0 / (d_head as f64).sqrt()
    } else {
        1.0
    };
    let norm = NormKind::LayerNorm { eps };
    // The original GPT-2 upload has no `transformer.` prefix.
    let vb_t = if !vb.contains_tensor("transformer.wte.weight") && vb.contains_tensor("wte.weight")
    {
        vb.clone()
    } else {
        vb.pp("transformer")
    };
    let embed = Embedding::load(vb_t.pp("wte"), vocab, d_model)?;
    let pos_embed = Embedding::load(vb_t.pp("wpe"), n_ctx, d_model)?;
    let mut blocks = Vec::with_capacity(n_layers);
    for i in 0..n_layers {
        let vb_l = vb_t.pp(format!("h.{i}"));
        let scale = if scale_by_layer {
            base_scale / (i + 1) as f64
        } else {
            base_scale
        };
        let attn = Attention::new(
            AttentionConfig {
                n_heads,
                n_kv_heads: n_heads,
                d_head,
                rope: None,
                scale,
                softcap: None,
                window: Window::Causal,
            },
            QkvProjection::Concatenated(Linear::load_conv1d(
                vb_l.pp("attn.c_attn"),
                d_model,
                3 * d_model,
            )?),
            QkNorm::None,
            Linear::load_conv1d(vb_l.pp("attn.c_proj"), d_model, d_model)?,
        );
        let mlp = Mlp {
            proj: MlpProjection::Plain {
                fc_in: Linear::load_conv1d(vb_l.pp("mlp.c_fc"), d_model, d_mlp)?,
            },
            act,
            fc_out: Linear::load_conv1d(vb_l.pp("mlp.c_proj"), d_mlp, d_model)?,
        };
        blocks.push(DecoderBlock {
            ln1: Some(Norm::load(vb_l.pp("ln_1"), norm, d_model)?),
            attn: Some(Box::new(attn)),
            post_attn_norm: None,
            ln2: Some(Norm::load(vb_l.pp("ln_2"), norm, d_model)?),
            mlp: Some(Box::new(mlp)),
            post_mlp_norm: None,
            residual: Residual::Sequential,
        });
    }
    let ln_final = Norm::load(vb_t.pp("ln_f"), norm, d_model)?;
    let lm_head = Linear::tied(&embed);
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
            learned_positions: true,
        },
        embed,
        pos_embed: Some(pos_embed),
        embed_scale: None,
        blocks,
        ln_final,
        lm_head,
        final_softcap: None,
    }))
}
