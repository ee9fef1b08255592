//! Llama 2/3/3.1/3.2, Mistral and Qwen 2/2.5 — and the shared builder of the Llama lineage.
//!
//! Llama: token embedding, blocks of `x + attn(rmsnorm(x))`, `x + mlp(rmsnorm(x))` with
//! rotary attention (grouped-query when `num_key_value_heads < num_attention_heads`) and a
//! SwiGLU MLP `down(silu(gate x) ⊙ up x)`, final RMSNorm, unembedding (tied in Llama 3.2 and
//! Qwen 2 small models). Mistral is the same with an optional sliding window; Qwen 2 adds
//! biases to q, k and v. Descendants that change a detail (Qwen 3, OLMo 2, Gemma, Phi-3)
//! describe it with [`Quirks`] and reuse [`build_llama_style`]; weight names are the Hub's
//! (`model.layers.{i}.self_attn.q_proj`, …).

use candle_nn::VarBuilder;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection};
use crate::config::{HfConfig, RopeConfig};
use crate::decoder::{DecoderBlock, DecoderModel, FeedForward, Residual, Window};
use crate::error::{ModelError, Result};
use crate::layers::{Activation, Embedding, Linear, Norm, NormKind};
use crate::mlp::{Mlp, MlpProjection};
use crate::model::{Model, ModelInfo};

/// The dimensions every Llama-lineage config states (under the Hub's field names).
#[derive(Clone, Debug)]
pub struct LlamaDims {
    pub architecture: String,
    pub vocab: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub n_ctx: usize,
    pub eps: f64,
    pub act: Activation,
    pub rope: RopeConfig,
    pub sliding_window: Option<usize>,
    /// Per layer, from `layer_types` ("sliding_attention" / "full_attention") if present.
    pub layer_sliding: Option<Vec<bool>>,
    /// Rotary settings of sliding-window layers where they differ by layer type (Gemma 3's
    /// local base frequency, OLMo 3); `rope` is then the full-attention layers'.
    pub sliding_rope: Option<RopeConfig>,
}

impl LlamaDims {
    pub fn from_config(config: &serde_json::Value) -> Result<LlamaDims> {
        let cfg = HfConfig(config);
        let d_model = cfg.usize(&["hidden_size"])?;
        let n_heads = cfg.usize(&["num_attention_heads"])?;
        if n_heads == 0 || d_model == 0 {
            return Err(ModelError::config(
                "`hidden_size` and `num_attention_heads` must be positive",
            ));
        }
        let n_kv_heads = cfg.usize_opt(&["num_key_value_heads"])?.unwrap_or(n_heads);
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(ModelError::config(format!(
                "{n_heads} attention heads cannot be shared among {n_kv_heads} key/value heads"
            )));
        }
        let d_head = cfg.usize_opt(&["head_dim"])?.unwrap_or(d_model / n_heads);
        let act_name = cfg
            .str_opt("hidden_activation")?
            .or(cfg.str_opt("hidden_act")?)
            .unwrap_or("silu");
        let act = Activation::from_hf(act_name)
            .ok_or_else(|| ModelError::config(format!("unsupported activation `{act_name}`")))?;
        let n_layers = cfg.usize(&["num_hidden_layers"])?;
        let layer_sliding = match cfg.get("layer_types").and_then(|v| v.as_array()) {
            None => None,
            Some(types) => {
                if types.len() != n_layers {
                    return Err(ModelError::config(format!(
                        "`layer_types` lists {} layers, `num_hidden_layers` is {n_layers}",
                        types.len()
                    )));
                }
                Some(
                    types
                        .iter()
                        .map(|t| t.as_str() == Some("sliding_attention"))
                        .collect(),
                )
            }
        };
        let sliding_window = if cfg.bool_or("use_sliding_window", true)? {
            cfg.usize_opt(&["sliding_window"])?
        } else {
            None
        };
        // A window of no tokens leaves a position nothing to attend to (null means none).
        if sliding_window == Some(0) {
            return Err(ModelError::config(
                "sliding_window 0: a window holds at least one token (null for none)",
            ));
        }
        let d_head_rope = d_head;
        let rope = match RopeConfig::for_layer_type(config, d_head_rope, "full_attention")? {
            Some(full) => full,
            None => RopeConfig::from_config(cfg, d_head_rope)?,
        };
        let sliding_rope = RopeConfig::for_layer_type(config, d_head_rope, "sliding_attention")?;
        Ok(LlamaDims {
            architecture: cfg.architecture()?,
            vocab: cfg.usize(&["vocab_size"])?,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads,
            d_head,
            d_mlp: cfg.usize(&["intermediate_size"])?,
            n_ctx: cfg.usize_opt(&["max_position_embeddings"])?.unwrap_or(4096),
            eps: cfg.f64_or(&["rms_norm_eps"], 1e-6)?,
            act,
            rope,
            sliding_window,
            layer_sliding,
            sliding_rope,
        })
    }

    /// The sliding window of `layer`: from `layer_types` if given, else every layer's.
    pub fn window(&self, layer: usize) -> Option<usize> {
        match &self.layer_sliding {
            Some(s) if !s[layer] => None,
            _ => self.sliding_window,
        }
    }

    /// The rotary settings of `layer`: its layer type's where they differ by type.
    pub fn rope_for(&self, layer: usize) -> &RopeConfig {
        match (&self.sliding_rope, &self.layer_sliding) {
            (Some(sliding), Some(types)) if types[layer] => sliding,
            _ => &self.rope,
        }
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            architecture: self.architecture.clone(),
            n_layers: self.n_layers,
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            d_head: self.d_head,
            d_mlp: self.d_mlp,
            d_vocab: self.vocab,
            n_ctx: self.n_ctx,
            causal: true,
            learned_positions: false,
        }
    }
}

/// Where a descendant departs from Llama.
#[derive(Clone, Debug)]
pub struct Quirks {
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Gemma's `1 + w` RMSNorm.
    pub norm_plus_one: bool,
    pub qk_norm: QkNormKind,
    /// `input_layernorm` / `post_attention_layernorm` before attention and MLP (all but OLMo 2).
    pub pre_norms: bool,
    /// Norms on the attention and MLP outputs. OLMo 2 names them `post_attention_layernorm`
    /// and `post_feedforward_layernorm`; Gemma 2 the same, with `pre_feedforward_layernorm`
    /// as its pre-MLP norm.
    pub post_norms: bool,
    /// Phi-3's `qkv_proj` and `gate_up_proj`.
    pub fused: bool,
    pub embed_scale: Option<f64>,
    /// Overrides 1/sqrt(d_head).
    pub attn_scale: Option<f64>,
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    /// `tie_word_embeddings` when the config does not say.
    pub tie_default: bool,
    /// Every norm's kind, when not RMSNorm (Nemotron's LayerNorm1P).
    pub norm_kind: Option<NormKind>,
    /// A learned sink logit per head (`self_attn.sinks`, gpt-oss).
    pub attn_sinks: bool,
}

/// Query/key normalisation variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNormKind {
    None,
    PerHead,
    Full,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            norm_plus_one: false,
            qk_norm: QkNormKind::None,
            pre_norms: true,
            post_norms: false,
            fused: false,
            embed_scale: None,
            attn_scale: None,
            attn_softcap: None,
            final_softcap: None,
            tie_default: false,
            norm_kind: None,
            attn_sinks: false,
        }
    }
}

/// Builds a Llama-lineage model from its config, weights and quirks.
pub fn build_llama_style(
    config: &serde_json::Value,
    vb: VarBuilder,
    dims: &LlamaDims,
    quirks: &Quirks,
) -> Result<DecoderModel> {
    build_llama_style_with(config, vb, dims, quirks, &|_| Ok(None))
}

/// Builds the feed-forward of layer `i` in place of the dense MLP when it returns `Some`
/// (mixtures of experts).
pub type FeedForwardOverride<'f> = &'f dyn Fn(usize) -> Result<Option<Box<dyn FeedForward>>>;

/// [`build_llama_style`] with some layers' feed-forward built by `feed_forward` instead.
pub fn build_llama_style_with(
    config: &serde_json::Value,
    vb: VarBuilder,
    dims: &LlamaDims,
    quirks: &Quirks,
    feed_forward: FeedForwardOverride,
) -> Result<DecoderModel> {
    let cfg = HfConfig(config);
    let d = dims;
    let norm_kind = match quirks.norm_kind {
        Some(kind) => kind,
        None if quirks.norm_plus_one => NormKind::RmsNormPlusOne { eps: d.eps },
        None => NormKind::RmsNorm { eps: d.eps },
    };
    let (q_size, kv_size) = (d.n_heads * d.d_head, d.n_kv_heads * d.d_head);
    let vb_m = vb.pp("model");
    let embed = Embedding::load(vb_m.pp("embed_tokens"), d.vocab, d.d_model)?;
    let mut blocks = Vec::with_capacity(d.n_layers);
    for i in 0..d.n_layers {
        let vb_l = vb_m.pp(format!("layers.{i}"));
        let vb_a = vb_l.pp("self_attn");
        let qkv = if quirks.fused {
            QkvProjection::Concatenated(Linear::load(
                vb_a.pp("qkv_proj"),
                d.d_model,
                q_size + 2 * kv_size,
                quirks.qkv_bias,
            )?)
        } else {
            QkvProjection::Separate {
                q: Linear::load(vb_a.pp("q_proj"), d.d_model, q_size, quirks.qkv_bias)?,
                k: Linear::load(vb_a.pp("k_proj"), d.d_model, kv_size, quirks.qkv_bias)?,
                v: Linear::load(vb_a.pp("v_proj"), d.d_model, kv_size, quirks.qkv_bias)?,
            }
        };
        let qk_norm = match quirks.qk_norm {
            QkNormKind::None => QkNorm::None,
            QkNormKind::PerHead => QkNorm::PerHead {
                q: Norm::load(vb_a.pp("q_norm"), norm_kind, d.d_head)?,
                k: Norm::load(vb_a.pp("k_norm"), norm_kind, d.d_head)?,
            },
            QkNormKind::Full => QkNorm::Full {
                q: Norm::load(vb_a.pp("q_norm"), norm_kind, q_size)?,
                k: Norm::load(vb_a.pp("k_norm"), norm_kind, kv_size)?,
            },
        };
        let attn_cfg = AttentionConfig {
            n_heads: d.n_heads,
            n_kv_heads: d.n_kv_heads,
            d_head: d.d_head,
            rope: Some(d.rope_for(i).clone()),
            scale: quirks.attn_scale.unwrap_or(1.0 / (d.d_head as f64).sqrt()),
            softcap: quirks.attn_softcap,
            window: Window::sliding(d.window(i)),
        };
        let o = Linear::load(vb_a.pp("o_proj"), q_size, d.d_model, quirks.o_bias)?;
        let mut attn = Attention::new(attn_cfg, qkv, qk_norm, o);
        if quirks.attn_sinks {
            attn = attn.with_sinks(vb_a.get_with_hints(
                d.n_heads,
                "sinks",
                candle_nn::Init::Const(0.0),
            )?);
        }
        let mlp: Box<dyn FeedForward> = match feed_forward(i)? {
            Some(custom) => custom,
            None => Box::new(dense_mlp(vb_l.pp("mlp"), d, quirks)?),
        };
        let norm = |name: &str| Norm::load(vb_l.pp(name), norm_kind, d.d_model);
        // Which checkpoint name holds which norm depends on the family's arrangement.
        let (ln1, ln2, post_attn_norm, post_mlp_norm) = match (quirks.pre_norms, quirks.post_norms)
        {
            (true, false) => (
                Some(norm("input_layernorm")?),
                Some(norm("post_attention_layernorm")?),
                None,
                None,
            ),
            (false, true) => (
                None,
                None,
                Some(norm("post_attention_layernorm")?),
                Some(norm("post_feedforward_layernorm")?),
            ),
            (true, true) => (
                Some(norm("input_layernorm")?),
                Some(norm("pre_feedforward_layernorm")?),
                Some(norm("post_attention_layernorm")?),
                Some(norm("post_feedforward_layernorm")?),
            ),
            (false, false) => return Err(ModelError::config("a block needs pre- or post-norms")),
        };
        blocks.push(DecoderBlock {
            ln1,
            attn: Some(Box::new(attn)),
            post_attn_norm,
            ln2,
            mlp: Some(mlp),
            post_mlp_norm,
            residual: Residual::Sequential,
        });
    }
    let ln_final = Norm::load(vb_m.pp("norm"), norm_kind, d.d_model)?;
    let tied = cfg.bool_or("tie_word_embeddings", quirks.tie_default)?;
    let lm_head = Linear::unembedding(&vb, &embed, tied, d.d_model, d.vocab)?;
    Ok(DecoderModel {
        info: d.info(),
        embed,
        pos_embed: None,
        embed_scale: quirks.embed_scale,
        blocks,
        ln_final,
        lm_head,
        final_softcap: quirks.final_softcap,
    })
}

/// The dense gated MLP of a layer (`{vb}.gate_proj`, `up_proj`, `down_proj`, or Phi-3's
/// `gate_up_proj`).
fn dense_mlp(vb_mlp: VarBuilder, d: &LlamaDims, quirks: &Quirks) -> Result<Mlp> {
    let proj = if quirks.fused {
        MlpProjection::GatedFused {
            gate_up: Linear::load(
                vb_mlp.pp("gate_up_proj"),
                d.d_model,
                2 * d.d_mlp,
                quirks.mlp_bias,
            )?,
        }
    } else {
        MlpProjection::Gated {
            gate: Linear::load(vb_mlp.pp("gate_proj"), d.d_model, d.d_mlp, quirks.mlp_bias)?,
            up: Linear::load(vb_mlp.pp("up_proj"), d.d_model, d.d_mlp, quirks.mlp_bias)?,
        }
    };
    Ok(Mlp {
        proj,
        act: d.act,
        fc_out: Linear::load(vb_mlp.pp("down_proj"), d.d_mlp, d.d_model, quirks.mlp_bias)?,
    })
}

/// Llama, Mistral, Qwen 2.
pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let dims = LlamaDims::from_config(config)?;
    let cfg = HfConfig(config);
    let qwen2 = dims.architecture.starts_with("Qwen2");
    let quirks = Quirks {
        qkv_bias: qwen2 || cfg.bool_or("attention_bias", false)?,
        o_bias: cfg.bool_or("attention_bias", false)?,
        mlp_bias: cfg.bool_or("mlp_bias", false)?,
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}
