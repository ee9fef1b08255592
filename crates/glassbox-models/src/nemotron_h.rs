//! Nemotron-H (`NemotronHForCausalLM`: Nemotron-H, Nemotron Nano 2, Nemotron 3), NVIDIA's
//! hybrids of Mamba-2 and attention, as transformers' `modeling_nemotron_h.py`.
//!
//! Each layer is one pre-norm residual sublayer of the kind `layers_block_type` names (or the
//! older `hybrid_override_pattern`: `M` Mamba, `*` attention, `-` MLP, `E` MoE):
//! - **Mamba** (`linear_attention`, `mamba`): a Mamba-2 mixer ([`crate::ssm`]);
//! - **attention** (`full_attention`, `attention`): grouped-query attention without positional
//!   rotation (the Mamba layers carry position);
//! - **MLP**: `down(relu²(up(x)))`, no gate;
//! - **MoE**: DeepSeek-V3's router (sigmoid, score-correction bias, renormalised and scaled)
//!   over ungated squared-ReLU experts, plus an ungated shared expert.
//!
//! In blocks terms a Mamba or attention layer has a token mixer and no MLP, an MLP or MoE layer
//! the reverse: their output is `hook_attn_out` or `hook_mlp_out`, after `ln1` or `ln2`
//! (the layer's one `norm`). Every norm is a plain RMSNorm. Weights live under `model.` (what
//! transformers 5 writes) or `backbone.` (NVIDIA's published checkpoints).

use candle_nn::VarBuilder;
use serde_json::Value;

use crate::attention::{Attention, AttentionConfig, QkNorm, QkvProjection};
use crate::config::HfConfig;
use crate::decoder::{DecoderBlock, DecoderModel, FeedForward, Residual, SelfAttention, Window};
use crate::deepseek::{self, Generation};
use crate::error::{ModelError, Result};
use crate::layers::{Activation, Embedding, Linear, Norm, NormKind};
use crate::mlp::{Mlp, MlpProjection};
use crate::model::{Model, ModelInfo};
use crate::moe::{self, ExpertLoader, ExpertStore, GatedMlp, Glu, MoeBlock, Router};
use crate::ssm::{Mamba2, Mamba2Config};

/// A block's token mixer and MLP, one of them absent.
type Sublayers = (Option<Box<dyn SelfAttention>>, Option<Box<dyn FeedForward>>);

/// What one layer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockType {
    Mamba,
    Attention,
    Mlp,
    Moe,
}

fn block_types(cfg: HfConfig) -> Result<Vec<BlockType>> {
    let named = |name: &str| match name {
        "linear_attention" | "mamba" => Ok(BlockType::Mamba),
        "full_attention" | "attention" => Ok(BlockType::Attention),
        "mlp" => Ok(BlockType::Mlp),
        "moe" => Ok(BlockType::Moe),
        other => Err(ModelError::config(format!(
            "block type `{other}` is not one of mamba, attention, mlp, moe"
        ))),
    };
    let list = cfg
        .get("layers_block_type")
        .or_else(|| cfg.get("layer_types"))
        .and_then(Value::as_array);
    let types = match (list, cfg.str_opt("hybrid_override_pattern")?) {
        (Some(list), _) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ModelError::config("`layers_block_type` must list strings"))
                    .and_then(named)
            })
            .collect::<Result<Vec<_>>>()?,
        (None, Some(pattern)) => pattern
            .chars()
            .map(|c| match c {
                'M' => Ok(BlockType::Mamba),
                '*' => Ok(BlockType::Attention),
                '-' => Ok(BlockType::Mlp),
                'E' => Ok(BlockType::Moe),
                other => Err(ModelError::config(format!(
                    "`hybrid_override_pattern` has `{other}` (expected M, *, - or E)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?,
        (None, None) => {
            return Err(ModelError::config(
                "Nemotron-H needs `layers_block_type` or `hybrid_override_pattern`",
            ))
        }
    };
    if types.is_empty() {
        return Err(ModelError::config("Nemotron-H with no layers"));
    }
    Ok(types)
}

pub fn build(config: &Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let types = block_types(cfg)?;
    let d_model = cfg.usize(&["hidden_size"])?;
    let vocab = cfg.usize(&["vocab_size"])?;
    let eps = cfg.f64_or(&["layer_norm_epsilon", "rms_norm_eps"], 1e-5)?;
    let n_heads = cfg.usize(&["num_attention_heads"])?;
    let n_kv_heads = cfg.usize_opt(&["num_key_value_heads"])?.unwrap_or(n_heads);
    if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(ModelError::config(format!(
            "{n_heads} attention heads cannot share {n_kv_heads} key/value heads"
        )));
    }
    let d_head = cfg.usize_opt(&["head_dim"])?.unwrap_or(d_model / n_heads);
    let act_name = cfg.str_opt("mlp_hidden_act")?.unwrap_or("relu2");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| ModelError::config(format!("unsupported activation `{act_name}`")))?;
    let mamba_act = cfg.str_opt("mamba_hidden_act")?.unwrap_or("silu");
    if mamba_act != "silu" {
        return Err(ModelError::config(format!(
            "Mamba activation `{mamba_act}` is not supported (supported: silu)"
        )));
    }
    let dt_limit = match cfg.get("time_step_limit").and_then(Value::as_array) {
        Some(l) if l.len() == 2 => (
            l[0].as_f64().unwrap_or(0.0),
            l[1].as_f64().unwrap_or(f64::INFINITY),
        ),
        _ => (0.0, f64::INFINITY),
    };
    let mamba = Mamba2Config {
        d_model,
        n_heads: cfg.usize(&["mamba_num_heads"])?,
        head_dim: cfg.usize(&["mamba_head_dim"])?,
        state: cfg.usize(&["ssm_state_size"])?,
        n_groups: cfg.usize_opt(&["n_groups"])?.unwrap_or(1),
        conv_kernel: cfg.usize_opt(&["conv_kernel"])?.unwrap_or(4),
        chunk: cfg.usize_opt(&["chunk_size"])?.unwrap_or(128),
        eps,
        dt_limit,
        conv_bias: cfg.bool_or("use_conv_bias", true)?,
        proj_bias: cfg.bool_or("use_bias", false)?,
    };
    let mlp_bias = cfg.bool_or("mlp_bias", false)?;
    let attn_bias = cfg.bool_or("attention_bias", false)?;
    let d_mlp = cfg
        .usize_opt(&["intermediate_size"])?
        .unwrap_or(4 * d_model);
    let norm_kind = NormKind::RmsNorm { eps };
    let root = if vb.contains_tensor("backbone.embeddings.weight") {
        vb.pp("backbone")
    } else {
        vb.pp("model")
    };
    let embed = Embedding::load(root.pp("embeddings"), vocab, d_model)?;
    let moe_parts = types
        .contains(&BlockType::Moe)
        .then(|| moe_settings(cfg, d_model, act))
        .transpose()?;
    let mut blocks = Vec::with_capacity(types.len());
    for (i, kind) in types.iter().enumerate() {
        let vb_l = root.pp(format!("layers.{i}"));
        let vb_mix = vb_l.pp("mixer");
        let norm = Norm::load(vb_l.pp("norm"), norm_kind, d_model)?;
        let (mixer, mlp): Sublayers = match kind {
            BlockType::Mamba => (Some(Box::new(Mamba2::load(vb_mix, mamba)?)), None),
            BlockType::Attention => {
                let attn_cfg = AttentionConfig {
                    n_heads,
                    n_kv_heads,
                    d_head,
                    rope: None,
                    scale: 1.0 / (d_head as f64).sqrt(),
                    softcap: None,
                    window: Window::sliding(cfg.usize_opt(&["sliding_window"])?),
                };
                let (q_size, kv_size) = (n_heads * d_head, n_kv_heads * d_head);
                let qkv = QkvProjection::Separate {
                    q: Linear::load(vb_mix.pp("q_proj"), d_model, q_size, attn_bias)?,
                    k: Linear::load(vb_mix.pp("k_proj"), d_model, kv_size, attn_bias)?,
                    v: Linear::load(vb_mix.pp("v_proj"), d_model, kv_size, attn_bias)?,
                };
                let o = Linear::load(vb_mix.pp("o_proj"), q_size, d_model, attn_bias)?;
                let attn = Attention::new(attn_cfg, qkv, QkNorm::None, o);
                (Some(Box::new(attn)), None)
            }
            BlockType::Mlp => {
                let mlp = Mlp {
                    proj: MlpProjection::Plain {
                        fc_in: Linear::load(vb_mix.pp("up_proj"), d_model, d_mlp, mlp_bias)?,
                    },
                    act,
                    fc_out: Linear::load(vb_mix.pp("down_proj"), d_mlp, d_model, mlp_bias)?,
                };
                (None, Some(Box::new(mlp)))
            }
            BlockType::Moe => {
                let settings = moe_parts
                    .as_ref()
                    .ok_or_else(|| ModelError::config("an MoE layer without MoE settings"))?;
                (None, Some(Box::new(settings.load(vb_mix)?)))
            }
        };
        let (ln1, ln2) = match mixer {
            Some(_) => (Some(norm), None),
            None => (None, Some(norm)),
        };
        blocks.push(DecoderBlock {
            ln1,
            attn: mixer,
            post_attn_norm: None,
            ln2,
            mlp,
            post_mlp_norm: None,
            residual: Residual::Sequential,
        });
    }
    let ln_final = Norm::load(root.pp("norm_f"), norm_kind, d_model)?;
    let tied = cfg.bool_or("tie_word_embeddings", false)?;
    let lm_head = Linear::unembedding(&vb, &embed, tied, d_model, vocab)?;
    let info = ModelInfo {
        architecture: cfg.architecture()?,
        n_layers: types.len(),
        d_model,
        n_heads,
        n_kv_heads,
        d_head,
        d_mlp,
        d_vocab: vocab,
        n_ctx: cfg.usize_opt(&["max_position_embeddings"])?.unwrap_or(4096),
        causal: true,
        learned_positions: false,
    };
    Ok(Box::new(DecoderModel {
        info,
        embed,
        pos_embed: None,
        embed_scale: None,
        blocks,
        ln_final,
        lm_head,
        final_softcap: None,
    }))
}

/// How the MoE layers are built.
struct MoeSettings {
    router: moe::RouterConfig,
    d_model: usize,
    d_ff: usize,
    d_shared: usize,
    act: Activation,
    budget: usize,
}

fn moe_settings(cfg: HfConfig, d_model: usize, act: Activation) -> Result<MoeSettings> {
    if cfg.get("moe_latent_size").is_some_and(|v| !v.is_null()) {
        return Err(ModelError::config(
            "`moe_latent_size` (experts in a latent space) is not supported yet",
        ));
    }
    let n_experts = cfg.usize(&["n_routed_experts", "num_local_experts"])?;
    let top_k = cfg.usize(&["num_experts_per_tok"])?;
    let mut router = deepseek::router_config(cfg, Generation::V3, n_experts, top_k)?;
    // DeepSeek-V3's routing, except that dropped groups' experts are out of the running (−∞,
    // where DeepSeek-V3 scores them 0).
    router.group_limit = router
        .group_limit
        .filter(|g| g.n_group > 1)
        .map(|g| moe::GroupLimit {
            dropped: f32::NEG_INFINITY,
            ..g
        });
    router.validate().map_err(ModelError::config)?;
    Ok(MoeSettings {
        router,
        d_model,
        d_ff: cfg.usize(&["moe_intermediate_size"])?,
        d_shared: cfg
            .usize_opt(&["moe_shared_expert_intermediate_size"])?
            .unwrap_or(0),
        act,
        budget: moe::default_expert_budget(),
    })
}

impl MoeSettings {
    /// The sparse block under `vb` (a layer's `mixer`).
    fn load(&self, vb: VarBuilder<'static>) -> Result<MoeBlock> {
        let (d, ff, act) = (self.d_model, self.d_ff, self.act);
        let ungated = move |vb: &VarBuilder, width: usize| -> candle_core::Result<GatedMlp> {
            Ok(GatedMlp {
                gate: None,
                up: Linear::load(vb.pp("up_proj"), d, width, false)?,
                down: Linear::load(vb.pp("down_proj"), width, d, false)?,
                act,
                glu: Glu::Plain,
            })
        };
        let vb_experts = vb.pp("experts");
        let n = self.router.n_experts;
        let experts = if vb_experts.contains_tensor("0.up_proj.weight") {
            for e in 0..n {
                for part in ["up_proj", "down_proj"] {
                    if !vb_experts.contains_tensor(&format!("{e}.{part}.weight")) {
                        return Err(ModelError::config(format!(
                            "missing expert weight `{}.{e}.{part}.weight`",
                            vb_experts.prefix()
                        )));
                    }
                }
            }
            let vb_e = vb_experts.clone();
            let load: ExpertLoader = Box::new(move |e| ungated(&vb_e.pp(e), ff));
            ExpertStore::lazy(load, n, d, ff, self.budget)
        } else {
            let experts = (0..n)
                .map(|e| ungated(&vb_experts.pp(e), ff))
                .collect::<candle_core::Result<Vec<_>>>()?;
            ExpertStore::loaded(experts, d, ff)
        };
        let shared = match self.d_shared {
            0 => None,
            width => Some(ungated(&vb.pp("shared_experts"), width)?),
        };
        Ok(MoeBlock {
            router: Router::load(vb.pp("gate"), self.router.clone(), d, true)?,
            experts,
            shared,
            shared_gate: None,
            weight_inputs: false,
        })
    }
}
