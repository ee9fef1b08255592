//! DeepSeek-V2 / V3 / R1 (`DeepseekV2ForCausalLM`, `DeepseekV3ForCausalLM`): multi-head latent
//! attention and a mixture of routed and shared experts, as Hugging Face transformers computes
//! them (`modeling_deepseek_v2.py`, `modeling_deepseek_v3.py`).
//!
//! **Multi-head latent attention** (DeepSeek-V2 paper, §2.1). Queries optionally pass through a
//! low-rank bottleneck, `q = W_qb · norm(W_qa · x)` (`q_lora_rank`); keys and values share one
//! compressed latent, `c_kv = norm(W_kva · x)[:kv_lora_rank]`, expanded per head by `W_kvb` into
//! a no-rope key part (`qk_nope_head_dim`) and the value (`v_head_dim`). A separate rope key
//! part (`qk_rope_head_dim`) comes straight from `W_kva · x` and is shared by every head. Each
//! query/key head is `[nope | rope]`; only the rope part rotates. Scores are scaled by
//! `qk_head_dim^-½`, times `mscale²` under YaRN in V3 (the attention-scale correction).
//!
//! Rotary layouts: V3 with `rope_interleave` (the default) takes the rope part's even then odd
//! dimensions and rotates halves — the output is in that de-interleaved order; V3 without it
//! rotates halves directly; V2 rotates adjacent pairs as complex numbers in place. YaRN
//! (`rope_type`/`type` = `yarn`) rescales frequencies and multiplies cos/sin by its attention
//! factor, exactly as transformers' `_compute_yarn_parameters`.
//!
//! Hooks beyond the usual: `attn.hook_q_latent` (the normalised query latent, when there is
//! a q LoRA) and `attn.hook_kv_latent` (the normalised key/value latent) [batch, pos, rank].
//! `attn.hook_q`/`hook_k` are [batch, pos, head, qk_head_dim] before rotary (the shared rope
//! key repeated per head), `hook_rot_q`/`hook_rot_k` after, `hook_v` and `hook_z` [batch, pos,
//! head, v_head_dim]. `ModelInfo::d_head` is `v_head_dim` (what `W_O` reads per head).
//!
//! **Feed-forward.** Layers before `first_k_dense_replace` are dense gated MLPs; later ones are
//! a [`MoeBlock`]: V3 scores experts with a sigmoid, picks the `topk_group` best of `n_group`
//! groups by the sum of each group's two best bias-corrected scores, then the top `k` experts
//! in them; weights are the (uncorrected) sigmoid scores, renormalised if `norm_topk_prob`,
//! times `routed_scaling_factor`. V2 scores with a softmax, `greedy` or `group_limited_greedy`
//! (groups by their best score), and multiplies by `routed_scaling_factor` (transformers does
//! not renormalise V2's weights). Shared experts are added to every token.
//!
//! The published V3 / R1 weights are block-scaled FP8; they are dequantized on load
//! ([`crate::fp8`]).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::config::{yarn_get_mscale, HfConfig, Yarn};
use crate::decoder::{
    DecoderBlock, DecoderModel, FeedForward, LayerContext, Residual, SelfAttention, Window,
};
use crate::error::{ModelError, Result as ModelResult};
use crate::fp8;
use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::layers::{Activation, Embedding, Linear, Norm, NormKind};
use crate::model::{Model, ModelInfo};
use crate::moe::{self, GroupLimit, GroupScore, MoeBlock, MoeSpec, RouterConfig, Scoring};
use crate::ops;

/// Which DeepSeek generation: they differ in routing and rotary layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    V2,
    V3,
}

/// How the rope part of each head is rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Rotate the two halves (`rotate_half`).
    Halves,
    /// Gather even then odd dimensions, then rotate halves (V3 `rope_interleave`).
    DeinterleavedHalves,
    /// Rotate adjacent pairs in place (V2's complex multiplication).
    AdjacentPairs,
}

/// Rotary settings of the rope part of each head.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaRope {
    pub theta: f64,
    pub dim: usize,
    pub layout: RopeLayout,
    pub yarn: Option<Yarn>,
}

impl MlaRope {
    /// Reads `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (older).
    pub fn from_config(cfg: HfConfig, dim: usize, layout: RopeLayout) -> ModelResult<Self> {
        let params = cfg.get("rope_parameters").filter(|v| v.is_object());
        let spec = cfg.get("rope_scaling").filter(|v| v.is_object()).or(params);
        let num = |v: Option<&Value>, key: &str| v.and_then(|s| s.get(key)).and_then(Value::as_f64);
        let theta = num(params, "rope_theta")
            .or(cfg.f64_opt(&["rope_theta"])?)
            .unwrap_or(10_000.0);
        let kind = spec
            .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let yarn = match (kind, spec) {
            ("default", _) => None,
            ("yarn", Some(spec)) => Some(Yarn::from_spec(cfg, spec)?),
            (other, _) => {
                return Err(ModelError::config(format!(
                    "rope scaling type `{other}` is not supported for DeepSeek (supported: default, yarn)"
                )))
            }
        };
        Ok(MlaRope {
            theta,
            dim,
            layout,
            yarn,
        })
    }

    /// Inverse frequency of each rotating pair.
    pub fn inv_freq(&self) -> Vec<f64> {
        match &self.yarn {
            Some(y) => y.inv_freq(self.theta, self.dim),
            None => (0..self.dim / 2)
                .map(|i| 1.0 / self.theta.powf(2.0 * i as f64 / self.dim as f64))
                .collect(),
        }
    }

    /// Multiplier of cos and sin (YaRN's attention factor, else 1).
    pub fn cos_sin_scale(&self) -> f64 {
        self.yarn.as_ref().map_or(1.0, |y| y.attention_factor)
    }
}

/// Shapes of one latent attention layer.
#[derive(Clone, Debug)]
pub struct MlaConfig {
    pub n_heads: usize,
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    /// Multiplier of q·k.
    pub scale: f64,
    pub rope: MlaRope,
}

impl MlaConfig {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }
}

/// How queries are projected: directly, or through the low-rank latent.
#[derive(Clone, Debug)]
pub enum QueryProjection {
    Direct(Linear),
    LowRank { a: Linear, norm: Norm, b: Linear },
}

/// Multi-head latent attention.
#[derive(Clone, Debug)]
pub struct MlaAttention {
    pub cfg: MlaConfig,
    pub q: QueryProjection,
    /// `kv_a_proj_with_mqa`: x → [kv latent | shared rope key].
    pub kv_a: Linear,
    pub kv_norm: Norm,
    /// `kv_b_proj`: latent → per head [no-rope key | value].
    pub kv_b: Linear,
    pub o: Linear,
    inv_freq: Vec<f32>,
}

impl MlaAttention {
    pub fn load(
        vb: VarBuilder,
        cfg: MlaConfig,
        d_model: usize,
        bias: bool,
        eps: f64,
    ) -> Result<Self> {
        let h = cfg.n_heads;
        let q = match cfg.q_lora_rank {
            None => QueryProjection::Direct(fp8::load_linear(
                vb.pp("q_proj"),
                d_model,
                h * cfg.qk_head_dim(),
                false,
            )?),
            Some(rank) => QueryProjection::LowRank {
                a: fp8::load_linear(vb.pp("q_a_proj"), d_model, rank, bias)?,
                norm: Norm::load(vb.pp("q_a_layernorm"), NormKind::RmsNorm { eps }, rank)?,
                b: fp8::load_linear(vb.pp("q_b_proj"), rank, h * cfg.qk_head_dim(), false)?,
            },
        };
        let kv_a = fp8::load_linear(
            vb.pp("kv_a_proj_with_mqa"),
            d_model,
            cfg.kv_lora_rank + cfg.qk_rope_head_dim,
            bias,
        )?;
        let kv_norm = Norm::load(
            vb.pp("kv_a_layernorm"),
            NormKind::RmsNorm { eps },
            cfg.kv_lora_rank,
        )?;
        let kv_b = fp8::load_linear(
            vb.pp("kv_b_proj"),
            cfg.kv_lora_rank,
            h * (cfg.qk_nope_head_dim + cfg.v_head_dim),
            false,
        )?;
        let o = fp8::load_linear(vb.pp("o_proj"), h * cfg.v_head_dim, d_model, bias)?;
        let inv_freq = cfg.rope.inv_freq().into_iter().map(|f| f as f32).collect();
        Ok(MlaAttention {
            cfg,
            q,
            kv_a,
            kv_norm,
            kv_b,
            o,
            inv_freq,
        })
    }

    /// Rotates the rope part (the last `qk_rope_head_dim` dims) of q or k [b, t, h, qk_head_dim].
    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, t, h, _) = x.dims4()?;
        let pass = x.narrow(3, 0, c.qk_nope_head_dim)?;
        let rot = x.narrow(3, c.qk_nope_head_dim, c.qk_rope_head_dim)?;
        let rot = match c.rope.layout {
            RopeLayout::Halves => ops::rope_rotate_half(&rot, cos, sin)?,
            RopeLayout::AdjacentPairs => ops::rope_interleaved(&rot, cos, sin)?,
            RopeLayout::DeinterleavedHalves => {
                let r = c.qk_rope_head_dim;
                let evens_then_odds = rot
                    .reshape((b, t, h, r / 2, 2))?
                    .transpose(3, 4)?
                    .reshape((b, t, h, r))?;
                ops::rope_rotate_half(&evens_then_odds, cos, sin)?
            }
        };
        Tensor::cat(&[pass, rot], 3)
    }
}

impl SelfAttention for MlaAttention {
    fn forward(
        &self,
        x: &Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let i = ctx.layer;
        let (b, t, _) = x.dims3()?;
        let (h, qk) = (c.n_heads, c.qk_head_dim());

        let q = match &self.q {
            QueryProjection::Direct(proj) => proj.forward(x)?,
            QueryProjection::LowRank { a, norm, b } => {
                let latent = norm.forward(&a.forward(x)?)?;
                let latent = hooks.point(|| format!("blocks.{i}.attn.hook_q_latent"), latent)?;
                b.forward(&latent)?
            }
        };
        let q = q.reshape((b, t, h, qk))?;

        let compressed = self.kv_a.forward(x)?;
        let latent = self
            .kv_norm
            .forward(&compressed.narrow(2, 0, c.kv_lora_rank)?)?;
        let latent = hooks.point(|| format!("blocks.{i}.attn.hook_kv_latent"), latent)?;
        let k_rope = compressed
            .narrow(2, c.kv_lora_rank, c.qk_rope_head_dim)?
            .reshape((b, t, 1, c.qk_rope_head_dim))?
            .broadcast_as((b, t, h, c.qk_rope_head_dim))?;
        let expanded =
            self.kv_b
                .forward(&latent)?
                .reshape((b, t, h, c.qk_nope_head_dim + c.v_head_dim))?;
        let k_nope = expanded.narrow(3, 0, c.qk_nope_head_dim)?;
        let v = expanded
            .narrow(3, c.qk_nope_head_dim, c.v_head_dim)?
            .contiguous()?;
        let k = Tensor::cat(&[k_nope, k_rope.contiguous()?], 3)?;

        let q = hooks.point(|| format!("blocks.{i}.attn.hook_q"), q)?;
        let k = hooks.point(|| format!("blocks.{i}.attn.hook_k"), k)?;
        let v = hooks.point(|| format!("blocks.{i}.attn.hook_v"), v)?;
        let (mut cos, mut sin) = ops::rope_tables(&self.inv_freq, ctx.offset, t, x.device())?;
        let scale = c.rope.cos_sin_scale();
        if scale != 1.0 {
            cos = (cos * scale)?;
            sin = (sin * scale)?;
        }
        let q = self.rotate(&q, &cos, &sin)?;
        let k = self.rotate(&k, &cos, &sin)?;
        let q = hooks.point(|| format!("blocks.{i}.attn.hook_rot_q"), q)?;
        let k = hooks.point(|| format!("blocks.{i}.attn.hook_rot_k"), k)?;

        let tq = ctx.query_rows();
        let q = if tq < t { q.narrow(1, t - tq, tq)? } else { q };
        // [b, head, pos, d] for the batched matmuls.
        let q = q.transpose(1, 2)?.contiguous()?;
        let mut k = k.transpose(1, 2)?.contiguous()?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(cache) = kv {
            (k, v) = cache.append(i, &k, &v, 2)?;
        }
        let dtype = q.dtype();
        let mut scores =
            (ops::matmul(&q.to_dtype(DType::F32)?, &k.to_dtype(DType::F32)?.t()?)? * c.scale)?;
        if let Some(mask) = ctx.mask(Window::Causal, k.dim(2)?)? {
            scores = scores.broadcast_add(&mask)?;
        }
        let scores = hooks.point(|| format!("blocks.{i}.attn.hook_attn_scores"), scores)?;
        let pattern = ops::softmax_last_dim(&scores)?;
        let pattern = hooks.point(|| format!("blocks.{i}.attn.hook_pattern"), pattern)?;
        let z = ops::matmul(&pattern.to_dtype(dtype)?, &v)?.transpose(1, 2)?;
        let z = hooks.point(|| format!("blocks.{i}.attn.hook_z"), z)?;
        self.o.forward(&z.reshape((b, tq, h * c.v_head_dim))?)
    }

    fn w_o(&self) -> Result<Tensor> {
        let d_model = self.o.out_dim()?;
        self.o.weight_in_out()?.to_dtype(DType::F32)?.reshape((
            self.cfg.n_heads,
            self.cfg.v_head_dim,
            d_model,
        ))
    }

    fn b_o(&self) -> Result<Tensor> {
        match &self.o.bias {
            Some(b) => b.to_dtype(DType::F32),
            None => Tensor::zeros(self.o.out_dim()?, DType::F32, &self.o.weight.device()),
        }
    }
}

/// Builds a DeepSeek model from its Hub `config.json` and weights under Hub names.
pub fn build(
    config: &Value,
    vb: VarBuilder<'static>,
    generation: Generation,
) -> ModelResult<Box<dyn Model>> {
    let cfg = HfConfig(config);
    if let Some(q) = cfg.get("quantization_config") {
        let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("?");
        let block = q.get("weight_block_size");
        let block_ok = block.is_none_or(|b| *b == serde_json::json!([fp8::BLOCK, fp8::BLOCK]));
        if method != "fp8" || !block_ok {
            return Err(ModelError::config(format!(
                "quantization `{method}` with blocks {block:?} is not supported (supported: fp8 with {0}×{0} blocks)",
                fp8::BLOCK
            )));
        }
    }
    let d_model = cfg.usize(&["hidden_size"])?;
    let n_layers = cfg.usize(&["num_hidden_layers"])?;
    let n_heads = cfg.usize(&["num_attention_heads"])?;
    let d_vocab = cfg.usize(&["vocab_size"])?;
    let d_mlp = cfg.usize(&["intermediate_size"])?;
    let eps = cfg.f64_or(&["rms_norm_eps"], 1e-6)?;
    let act_name = cfg.str_opt("hidden_act")?.unwrap_or("silu");
    let act = Activation::from_hf(act_name)
        .ok_or_else(|| ModelError::config(format!("unsupported `hidden_act` `{act_name}`")))?;
    let bias = cfg.bool_or("attention_bias", false)?;
    let qk_rope = cfg.usize(&["qk_rope_head_dim"])?;
    if qk_rope % 2 != 0 {
        return Err(ModelError::config(format!(
            "`qk_rope_head_dim` {qk_rope} must be even"
        )));
    }
    let layout = match generation {
        Generation::V2 => RopeLayout::AdjacentPairs,
        Generation::V3 if cfg.bool_or("rope_interleave", true)? => RopeLayout::DeinterleavedHalves,
        Generation::V3 => RopeLayout::Halves,
    };
    let rope = MlaRope::from_config(cfg, qk_rope, layout)?;
    let mut mla = MlaConfig {
        n_heads,
        q_lora_rank: cfg.usize_opt(&["q_lora_rank"])?,
        kv_lora_rank: cfg.usize(&["kv_lora_rank"])?,
        qk_nope_head_dim: cfg.usize(&["qk_nope_head_dim"])?,
        qk_rope_head_dim: qk_rope,
        v_head_dim: cfg.usize(&["v_head_dim"])?,
        scale: 0.0,
        rope,
    };
    mla.scale = (mla.qk_head_dim() as f64).powf(-0.5);
    // transformers folds YaRN's mscale² into V3's softmax scale only (V2 leaves it out).
    if let (Generation::V3, Some(y)) = (generation, &mla.rope.yarn) {
        if y.mscale_all_dim != 0.0 {
            let m = yarn_get_mscale(y.factor, y.mscale_all_dim);
            mla.scale *= m * m;
        }
    }

    let first_dense = cfg.usize_opt(&["first_k_dense_replace"])?.unwrap_or(0);
    let n_routed = cfg.usize_opt(&["n_routed_experts"])?;
    let top_k = cfg.usize_opt(&["num_experts_per_tok"])?;
    let moe = match (n_routed, top_k) {
        (Some(n), Some(k)) if n > 0 && k > 0 => Some((n, k)),
        _ => None,
    };
    let spec = match moe {
        None => None,
        Some((n_experts, top_k)) => Some(MoeSpec {
            router: router_config(cfg, generation, n_experts, top_k)?,
            correction_bias: generation == Generation::V3,
            names: moe::LLAMA_MLP_NAMES,
            d_model,
            d_ff: cfg.usize_opt(&["moe_intermediate_size"])?.unwrap_or(d_mlp),
            n_shared: cfg.usize_opt(&["n_shared_experts"])?.unwrap_or(0),
            act,
            budget: moe::default_expert_budget(),
        }),
    };

    let m = vb.pp("model");
    let mut blocks = Vec::with_capacity(n_layers);
    for i in 0..n_layers {
        let l = m.pp("layers").pp(i);
        let attn = MlaAttention::load(l.pp("self_attn"), mla.clone(), d_model, bias, eps)?;
        let mlp: Box<dyn FeedForward> = match &spec {
            Some(spec) if i >= first_dense => Box::new(MoeBlock::load(l.pp("mlp"), spec)?),
            _ => Box::new(moe::dense_gated_mlp(
                l.pp("mlp"),
                moe::LLAMA_MLP_NAMES,
                d_model,
                d_mlp,
                act,
            )?),
        };
        blocks.push(DecoderBlock {
            ln1: Some(Norm::load(
                l.pp("input_layernorm"),
                NormKind::RmsNorm { eps },
                d_model,
            )?),
            attn: Some(Box::new(attn)),
            post_attn_norm: None,
            ln2: Some(Norm::load(
                l.pp("post_attention_layernorm"),
                NormKind::RmsNorm { eps },
                d_model,
            )?),
            mlp: Some(mlp),
            post_mlp_norm: None,
            residual: Residual::Sequential,
        });
    }
    let embed = Embedding::load(m.pp("embed_tokens"), d_vocab, d_model)?;
    let lm_head = if cfg.bool_or("tie_word_embeddings", false)? {
        Linear::tied(&embed)
    } else {
        fp8::load_linear(vb.pp("lm_head"), d_model, d_vocab, false)?
    };
    let info = ModelInfo {
        architecture: cfg.architecture()?,
        n_layers,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head: mla.v_head_dim,
        d_mlp,
        d_vocab,
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
        ln_final: Norm::load(m.pp("norm"), NormKind::RmsNorm { eps }, d_model)?,
        lm_head,
        final_softcap: None,
    }))
}

pub(crate) fn router_config(
    cfg: HfConfig,
    generation: Generation,
    n_experts: usize,
    top_k: usize,
) -> ModelResult<RouterConfig> {
    let scale = cfg.f64_or(&["routed_scaling_factor"], 1.0)?;
    let n_group = cfg.usize_opt(&["n_group"])?;
    let topk_group = cfg.usize_opt(&["topk_group"])?;
    let groups = |score| -> ModelResult<Option<GroupLimit>> {
        match (n_group, topk_group) {
            (Some(n_group), Some(topk_group)) => Ok(Some(GroupLimit {
                n_group,
                topk_group,
                score,
                dropped: 0.0,
            })),
            _ => Err(ModelError::config(
                "group-limited routing needs `n_group` and `topk_group`",
            )),
        }
    };
    let rc = match generation {
        Generation::V3 => RouterConfig {
            n_experts,
            top_k,
            // DeepSeek's own config key; V3 checkpoints say `sigmoid` (or nothing), and a
            // softmax-gated file from llama.cpp runs through the same router (as llama.cpp does).
            scoring: match cfg.str_opt("scoring_func")?.unwrap_or("sigmoid") {
                "sigmoid" => Scoring::Sigmoid,
                "softmax" => Scoring::Softmax,
                other => {
                    return Err(ModelError::config(format!(
                        "`scoring_func` `{other}` is not supported (supported: sigmoid, softmax)"
                    )))
                }
            },
            group_limit: groups(GroupScore::SumOfTopTwo)?,
            renormalize: cfg.bool_or("norm_topk_prob", true)?,
            renormalize_eps: 1e-20,
            scale,
        },
        Generation::V2 => {
            let method = cfg.str_opt("topk_method")?.unwrap_or("greedy");
            let group_limit = match method {
                "greedy" => None,
                "group_limited_greedy" => groups(GroupScore::Max)?,
                other => {
                    return Err(ModelError::config(format!(
                        "`topk_method` `{other}` is not supported for DeepSeek-V2 (supported: greedy, group_limited_greedy)"
                    )))
                }
            };
            RouterConfig {
                n_experts,
                top_k,
                scoring: Scoring::Softmax,
                group_limit,
                renormalize: false,
                renormalize_eps: 0.0,
                scale,
            }
        }
    };
    rc.validate().map_err(ModelError::config)?;
    Ok(rc)
}

/// `DeepseekV2ForCausalLM`.
pub fn build_v2(config: &Value, vb: VarBuilder<'static>) -> ModelResult<Box<dyn Model>> {
    build(config, vb, Generation::V2)
}

/// `DeepseekV3ForCausalLM` (also DeepSeek-R1 and other V3-architecture checkpoints).
pub fn build_v3(config: &Value, vb: VarBuilder<'static>) -> ModelResult<Box<dyn Model>> {
    build(config, vb, Generation::V3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(spec: Value) -> MlaRope {
        let cfg = serde_json::json!({"max_position_embeddings": 163840, "rope_theta": 10000.0, "rope_scaling": spec});
        MlaRope::from_config(HfConfig(&cfg), 64, RopeLayout::DeinterleavedHalves).unwrap()
    }

    #[test]
    fn yarn_keeps_fast_dimensions_and_stretches_slow_ones() {
        // DeepSeek-V3's published rope_scaling.
        let r = rope(
            serde_json::json!({"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
        );
        let plain = MlaRope {
            yarn: None,
            ..r.clone()
        }
        .inv_freq();
        let scaled = r.inv_freq();
        assert_eq!(scaled[0], plain[0], "highest frequency untouched");
        assert!(
            (scaled[31] - plain[31] / 40.0).abs() < 1e-15,
            "lowest frequency interpolated"
        );
        assert!(scaled.windows(2).all(|w| w[1] < w[0]));
        // equal mscale and mscale_all_dim: cos/sin unscaled
        assert_eq!(r.cos_sin_scale(), 1.0);
        let no_mscale = rope(serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
        assert!((no_mscale.cos_sin_scale() - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    }

    #[test]
    fn unknown_rope_scaling_is_a_config_error() {
        let cfg = serde_json::json!({"rope_scaling": {"type": "dynamic", "factor": 2.0}});
        let err = MlaRope::from_config(HfConfig(&cfg), 64, RopeLayout::Halves).unwrap_err();
        assert!(err.to_string().contains("dynamic"));
    }

    /// Every rotary layout rotates pairs by the same angles, so q·k — and the pattern — is the
    /// same whichever order the pairs are laid out in.
    #[test]
    fn rope_layouts_agree_on_scores() {
        let dev = candle_core::Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 3, 2, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 3, 2, 8), &dev).unwrap();
        let scores = |layout: RopeLayout| {
            let cfg = MlaConfig {
                n_heads: 2,
                q_lora_rank: None,
                kv_lora_rank: 4,
                qk_nope_head_dim: 4,
                qk_rope_head_dim: 4,
                v_head_dim: 4,
                scale: 1.0,
                rope: MlaRope {
                    theta: 10000.0,
                    dim: 4,
                    layout,
                    yarn: None,
                },
            };
            let vb = VarBuilder::zeros(DType::F32, &dev);
            let attn = MlaAttention::load(vb, cfg, 8, false, 1e-6).unwrap();
            let (cos, sin) = ops::rope_tables(&attn.inv_freq, 5, 3, &dev).unwrap();
            let (q, k) = (
                attn.rotate(&q, &cos, &sin).unwrap(),
                attn.rotate(&k, &cos, &sin).unwrap(),
            );
            // every query position against every key position: [1, head, 3, 3]
            let q = q.transpose(1, 2).unwrap().contiguous().unwrap();
            let k = k.transpose(1, 2).unwrap().contiguous().unwrap();
            let s = q.matmul(&k.t().unwrap()).unwrap();
            s.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        // Adjacent pairs vs the de-interleaved layout of the same pairs.
        let a = scores(RopeLayout::AdjacentPairs);
        let b = scores(RopeLayout::DeinterleavedHalves);
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
            "{a:?} vs {b:?}"
        );
        // Rotating halves pairs other dimensions: a different function of the same weights.
        let c = scores(RopeLayout::Halves);
        assert!(a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 1e-3));
    }
}
