//! GGUF checkpoints (llama.cpp) through the same architecture code as Hub safetensors.
//!
//! Design: nothing here knows how a transformer computes. A GGUF is turned into what the Hub
//! loader already reads — a Hub `config.json` synthesized from the `{arch}.*` metadata
//! ([`hub_config`]) and a [`GgufBackend`] serving every tensor under its Hub name — and handed
//! to [`HookedModel::from_backend`], so the registry builds the very same model (hooks
//! included) as for the safetensors release. The tokenizer comes from the GGUF's embedded
//! vocabulary ([`crate::gguf_tokenizer`]).
//!
//! What the backend undoes, per llama.cpp's `convert_hf_to_gguf.py` (the names and which
//! fix-up each tensor needs come from [`glassbox_formats::gguf_names`], shared with the
//! checkpoint diff):
//!
//! - names: `blk.{i}.attn_q.weight` → `model.layers.{i}.self_attn.q_proj.weight`, … per
//!   architecture ([`gguf_names::hub_name`]);
//! - the Q/K row permutation of `llama`-architecture files (llama.cpp's "normal" rope rotates
//!   adjacent pairs, Hugging Face's rotates halves, so the converter permutes the rows of
//!   `q_proj` / `k_proj`). Only `llama` is permuted: qwen2, qwen3, gemma and phi3 use llama.cpp's
//!   NeoX rope, which is Hugging Face's layout already;
//! - Gemma's norms, the final `output_norm` included: the converter stores `w + 1` for every
//!   Hub tensor whose name ends in `norm.weight` (llama.cpp scales by the weight, Hugging Face
//!   by `1 + w`), so 1 is subtracted back;
//! - GPT-2's `Conv1D` weights, stored `[in, out]` on the Hub and transposed by the converter;
//! - mixtures of experts: llama.cpp stacks a layer's experts into one `ffn_{gate,up,down}_exps`
//!   tensor; each expert is served under its own Hub name and read from its own bytes;
//! - quantized tensors are dequantized to f32 on load (by the checkpoint reader);
//! - a missing `output.weight` means the unembedding is tied to `token_embd`;
//! - rope scaling: `{arch}.rope.scaling.type = linear` becomes `rope_scaling.linear`; Llama 3.1's
//!   per-frequency factors (`rope_freqs.weight`) are checked against the `llama3` rule and
//!   become `rope_scaling.llama3`; other schemes (YaRN, Phi-3's long/short factors) are refused.
//!
//! Fused tensors need no splitting: Phi-3's `attn_qkv` / fused `ffn_up` and GPT-2's `attn_qkv`
//! are the same fused `qkv_proj` / `gate_up_proj` / `c_attn` that the Hub architectures read.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use glassbox_formats::gguf_names::{self, Fixup, HubName};
use glassbox_formats::{Checkpoint, CheckpointKind, GgufFile};
use serde_json::{json, Value};

use crate::error::{ModelError, Result};
use crate::gguf_tokenizer;
use crate::model::{HookedModel, LoadOptions};
use crate::tokenizer::Tokenizer;

/// The `general.architecture` values glassbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufArch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma,
    Phi3,
    Gpt2,
    /// Qwen3-MoE (`qwen3moe`).
    Qwen3Moe,
}

impl GgufArch {
    pub const ALL: [GgufArch; 7] = [
        GgufArch::Llama,
        GgufArch::Qwen2,
        GgufArch::Qwen3,
        GgufArch::Gemma,
        GgufArch::Phi3,
        GgufArch::Gpt2,
        GgufArch::Qwen3Moe,
    ];

    /// llama.cpp's name for the architecture (the metadata key prefix).
    pub fn name(self) -> &'static str {
        match self {
            GgufArch::Llama => "llama",
            GgufArch::Qwen2 => "qwen2",
            GgufArch::Qwen3 => "qwen3",
            GgufArch::Gemma => "gemma",
            GgufArch::Phi3 => "phi3",
            GgufArch::Gpt2 => "gpt2",
            GgufArch::Qwen3Moe => "qwen3moe",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The Hugging Face class the same weights load into.
    pub fn hub_architecture(self) -> &'static str {
        match self {
            GgufArch::Llama => "LlamaForCausalLM",
            GgufArch::Qwen2 => "Qwen2ForCausalLM",
            GgufArch::Qwen3 => "Qwen3ForCausalLM",
            GgufArch::Gemma => "GemmaForCausalLM",
            GgufArch::Phi3 => "Phi3ForCausalLM",
            GgufArch::Gpt2 => "GPT2LMHeadModel",
            GgufArch::Qwen3Moe => "Qwen3MoeForCausalLM",
        }
    }

    /// True where llama.cpp's converter permuted the Q/K rows (its "normal" rope type).
    pub fn permutes_qk(self) -> bool {
        matches!(self, GgufArch::Llama)
    }
}

/// How a Hub tensor is made from a stored GGUF tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    /// The whole stored tensor with [`gguf_names::hub_name`]'s fix-up applied (never
    /// [`Fixup::SplitExperts`]).
    Whole(Fixup),
    /// Expert `expert` of a stacked `[experts, rows, cols]` tensor (`ffn_*_exps`), read from
    /// its own bytes only, so unused experts are never touched.
    ExpertSlice { expert: usize, experts: usize },
}

#[derive(Debug, Clone)]
struct Source {
    gguf_name: String,
    transform: Transform,
}

/// Serves a GGUF's tensors under Hub names, undoing the converter's changes (module docs).
pub struct GgufBackend {
    checkpoint: Checkpoint,
    sources: HashMap<String, Source>,
    /// Query / key-value heads, for undoing the Q / K row permutation.
    heads: usize,
    kv_heads: usize,
}

impl GgufBackend {
    /// Maps every tensor of `checkpoint` (a GGUF) for `arch` with `heads` / `kv_heads` query /
    /// key-value heads, through [`gguf_names::hub_name`]. Tensors with no Hub name are left
    /// out.
    pub fn new(checkpoint: Checkpoint, arch: GgufArch, heads: usize, kv_heads: usize) -> Self {
        let mut sources = HashMap::new();
        for info in checkpoint.tensors() {
            let Some(HubName { name, fixup }) = gguf_names::hub_name(arch.name(), &info.name)
            else {
                continue;
            };
            let source = |transform| Source {
                gguf_name: info.name.clone(),
                transform,
            };
            if fixup == Fixup::SplitExperts {
                let experts = info.shape.first().copied().unwrap_or(0);
                for expert in 0..experts {
                    sources.insert(
                        name.replace("{e}", &expert.to_string()),
                        source(Transform::ExpertSlice { expert, experts }),
                    );
                }
            } else {
                sources.insert(name, source(Transform::Whole(fixup)));
            }
        }
        // Tied unembedding: no `output.weight`, the token embeddings are read instead.
        if !sources.contains_key("lm_head.weight") {
            let embed = match arch {
                GgufArch::Gpt2 => "transformer.wte.weight",
                _ => "model.embed_tokens.weight",
            };
            if let Some(source) = sources.get(embed).cloned() {
                sources.insert("lm_head.weight".into(), source);
            }
        }
        GgufBackend {
            checkpoint,
            sources,
            heads,
            kv_heads,
        }
    }

    /// Hub names served, sorted.
    pub fn hub_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.sources.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn read(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor `{name}`")))?;
        let fixup = match source.transform {
            Transform::ExpertSlice { expert, experts } => {
                return self
                    .read_expert(&source.gguf_name, expert, experts, dev)?
                    .to_dtype(dtype);
            }
            Transform::Whole(fixup) => fixup,
        };
        let stored = self
            .checkpoint
            .tensor(&source.gguf_name, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let t = match fixup {
            Fixup::None | Fixup::SplitExperts => stored,
            Fixup::UnpermuteQ => gguf_names::unpermute_qk(&stored, self.heads)?,
            Fixup::UnpermuteK => gguf_names::unpermute_qk(&stored, self.kv_heads)?,
            Fixup::Transpose => stored.t()?.contiguous()?,
            Fixup::SubtractOne => (stored.to_dtype(DType::F32)? - 1.0)?,
        };
        t.to_dtype(dtype)
    }
}

impl GgufBackend {
    /// Expert `expert` of the stacked tensor `gguf_name` [experts, rows, cols], decoded from its
    /// own slice of the memory map (each expert's rows are contiguous, whole blocks when
    /// quantized).
    fn read_expert(
        &self,
        gguf_name: &str,
        expert: usize,
        experts: usize,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let msg = |m: String| {
            candle_core::Error::Msg(format!(
                "{}: `{gguf_name}`: {m}",
                self.checkpoint.path.display()
            ))
        };
        let info = self
            .checkpoint
            .info(gguf_name)
            .ok_or_else(|| msg("missing".into()))?;
        let bytes = self
            .checkpoint
            .raw_bytes(gguf_name)
            .map_err(|e| msg(e.to_string()))?;
        if info.shape.len() != 3 || experts == 0 || expert >= experts || bytes.len() % experts != 0
        {
            return Err(msg(format!(
                "shape {:?} is not [experts, rows, cols]",
                info.shape
            )));
        }
        let per = bytes.len() / experts;
        let values = glassbox_formats::to_f32(info.dtype, &bytes[expert * per..(expert + 1) * per])
            .ok_or_else(|| {
                msg(format!(
                    "expert {expert} is not whole {} blocks",
                    info.dtype
                ))
            })?;
        Tensor::from_vec(values, (info.shape[1], info.shape[2]), dev)
    }
}

impl SimpleBackend for GgufBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.read(name, dtype, dev)?;
        if t.shape() != &shape {
            candle_core::bail!(
                "tensor `{name}` ({}) has shape {:?}, the config implies {:?}",
                self.sources[name].gguf_name,
                t.dims(),
                shape.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }
}

/// Reads `{arch}.*` metadata with the file named in every error.
struct Meta<'a> {
    gguf: &'a GgufFile,
    arch: GgufArch,
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch.name())
    }

    fn error(&self, msg: impl std::fmt::Display) -> ModelError {
        ModelError::config(format!("{}: {msg}", self.gguf.path.display()))
    }

    fn usize_opt(&self, suffix: &str) -> Result<Option<usize>> {
        let key = self.key(suffix);
        match self.gguf.get(&key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!("`{key}` is not a single unsigned integer (per-layer values are not supported)"))
                }),
        }
    }

    fn usize(&self, suffix: &str) -> Result<usize> {
        let key = self.key(suffix);
        self.usize_opt(suffix)?
            .ok_or_else(|| self.error(format!("missing metadata `{key}`")))
    }

    fn f64_opt(&self, suffix: &str) -> Result<Option<f64>> {
        let key = self.key(suffix);
        match self.gguf.get(&key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(format!("`{key}` is not a number"))),
        }
    }
}

/// The Hub `config.json` equivalent to a GGUF's metadata, for the architecture's Hub class.
pub fn hub_config(gguf: &GgufFile, checkpoint: &Checkpoint) -> Result<Value> {
    let arch_name = gguf.architecture().ok_or_else(|| {
        ModelError::config(format!("{}: no general.architecture", gguf.path.display()))
    })?;
    let arch = GgufArch::parse(arch_name).ok_or_else(|| ModelError::UnsupportedArchitecture {
        found: format!("{arch_name} (GGUF)"),
        supported: GgufArch::ALL.iter().map(|a| a.name().to_string()).collect(),
    })?;
    let meta = Meta { gguf, arch };
    let n_experts = meta.usize_opt("expert_count")?.unwrap_or(0);
    if n_experts > 0 && !matches!(arch, GgufArch::Llama | GgufArch::Qwen3Moe) {
        return Err(meta.error(format!(
            "mixture-of-experts GGUF files are supported for llama (Mixtral) and qwen3moe, not {}",
            arch.name()
        )));
    }
    let d_model = meta.usize("embedding_length")?;
    let n_layers = meta.usize("block_count")?;
    let n_heads = meta.usize("attention.head_count")?;
    if n_heads == 0 {
        return Err(meta.error("attention.head_count is 0"));
    }
    let n_kv_heads = meta
        .usize_opt("attention.head_count_kv")?
        .unwrap_or(n_heads);
    let d_mlp = match arch {
        // Qwen3-MoE files may have no dense layer, hence no dense feed-forward length.
        GgufArch::Qwen3Moe => match meta.usize_opt("feed_forward_length")? {
            Some(n) => n,
            None => meta.usize("expert_feed_forward_length")?,
        },
        _ => meta.usize("feed_forward_length")?,
    };
    let n_ctx = meta.usize_opt("context_length")?.unwrap_or(2048);
    let head_dim = meta
        .usize_opt("attention.key_length")?
        .unwrap_or(d_model / n_heads);
    let rope_dim = meta.usize_opt("rope.dimension_count")?.unwrap_or(head_dim);
    let rope_theta = meta.f64_opt("rope.freq_base")?.unwrap_or(10000.0);
    let rope_scaling = rope_scaling(&meta, checkpoint, rope_dim, rope_theta)?;
    let embed = checkpoint
        .info("token_embd.weight")
        .ok_or_else(|| meta.error("no `token_embd.weight` tensor"))?;
    let vocab_size = embed.shape.first().copied().unwrap_or(0);
    let tied = !checkpoint.contains("output.weight");
    let token_ids = |key: &str| gguf.get_u32(key).map(Value::from).unwrap_or(Value::Null);

    let mut config = match arch {
        GgufArch::Gpt2 => json!({
            "n_embd": d_model,
            "n_layer": n_layers,
            "n_head": n_heads,
            "n_inner": d_mlp,
            "n_positions": n_ctx,
            "layer_norm_epsilon": meta.f64_opt("attention.layer_norm_epsilon")?.unwrap_or(1e-5),
            "activation_function": "gelu_new",
        }),
        _ => {
            let eps = meta
                .f64_opt("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-6);
            let mut c = json!({
                "hidden_size": d_model,
                "num_hidden_layers": n_layers,
                "num_attention_heads": n_heads,
                "num_key_value_heads": n_kv_heads,
                "head_dim": head_dim,
                "intermediate_size": d_mlp,
                "max_position_embeddings": n_ctx,
                "rms_norm_eps": eps,
                "rope_theta": rope_theta,
                "hidden_act": "silu",
            });
            match arch {
                // Llama's `attention_bias` covers q, k, v and o alike; Qwen 2 always has q/k/v
                // biases and no o bias, with no config key.
                GgufArch::Llama => {
                    c["attention_bias"] = json!(checkpoint.contains("blk.0.attn_output.bias"));
                    c["mlp_bias"] = json!(checkpoint.contains("blk.0.ffn_down.bias"));
                }
                GgufArch::Qwen2 if !checkpoint.contains("blk.0.attn_q.bias") => {
                    return Err(meta.error("a qwen2 GGUF without attn_q biases"));
                }
                _ => {}
            }
            match arch {
                GgufArch::Gemma => {
                    c["hidden_act"] = json!("gelu_pytorch_tanh");
                    c["hidden_activation"] = json!("gelu_pytorch_tanh");
                }
                GgufArch::Phi3 => {
                    if rope_dim != head_dim {
                        c["partial_rotary_factor"] = json!(rope_dim as f64 / head_dim as f64);
                    }
                    if let Some(window) = meta.usize_opt("attention.sliding_window")? {
                        c["sliding_window"] = json!(window);
                    }
                }
                GgufArch::Llama | GgufArch::Qwen2 | GgufArch::Qwen3 | GgufArch::Qwen3Moe
                    if rope_dim != head_dim =>
                {
                    return Err(meta.error(format!(
                        "rope.dimension_count {rope_dim} differs from the head size {head_dim}: partial rotary is not part of this architecture"
                    )));
                }
                _ => {}
            }
            c
        }
    };
    if let Some(scaling) = rope_scaling {
        config["rope_scaling"] = scaling;
    }
    config["architectures"] = json!([arch.hub_architecture()]);
    config["model_type"] = json!(arch.name());
    if n_experts > 0 {
        let used = meta.usize("expert_used_count")?;
        match arch {
            // llama.cpp runs Mixtral as `llama` with experts; its experts are `feed_forward_length` wide.
            GgufArch::Llama => {
                config["architectures"] = json!(["MixtralForCausalLM"]);
                config["model_type"] = json!("mixtral");
                config["num_local_experts"] = json!(n_experts);
                config["num_experts_per_tok"] = json!(used);
            }
            _ => {
                config["num_experts"] = json!(n_experts);
                config["num_experts_per_tok"] = json!(used);
                config["moe_intermediate_size"] = json!(meta.usize("expert_feed_forward_length")?);
                // llama.cpp always renormalises Qwen3-MoE's expert weights.
                config["norm_topk_prob"] = json!(true);
                config["decoder_sparse_step"] = json!(1);
            }
        }
    }
    config["vocab_size"] = json!(vocab_size);
    config["tie_word_embeddings"] = json!(tied);
    config["bos_token_id"] = token_ids("tokenizer.ggml.bos_token_id");
    config["eos_token_id"] = token_ids("tokenizer.ggml.eos_token_id");
    if let Some(name) = gguf.get_str("general.name") {
        config["_name_or_path"] = json!(name);
    }
    Ok(config)
}

/// Llama 3.1's rope rule: the factor each rotary frequency is divided by, for wavelengths
/// between `original / high_freq_factor` (kept) and `original / low_freq_factor` (divided by
/// `factor`), smoothly interpolated in between.
fn llama3_rope_factors(
    theta: f64,
    rope_dim: usize,
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
) -> Vec<f64> {
    (0..rope_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / rope_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// The Hub `rope_scaling` of a GGUF: `{arch}.rope.scaling.type = linear`, or Llama 3.1's
/// per-frequency factors, which the converter stores as `rope_freqs.weight` and which are
/// recognised here as the `llama3` rule (with its published low/high frequency factors 1 and
/// 4). Anything else is refused rather than run with the wrong positions.
fn rope_scaling(
    meta: &Meta,
    checkpoint: &Checkpoint,
    rope_dim: usize,
    theta: f64,
) -> Result<Option<Value>> {
    for tensor in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if checkpoint.contains(tensor) {
            return Err(meta.error(format!(
                "`{tensor}` (long-context rope factors) is not supported"
            )));
        }
    }
    let has_freqs = checkpoint.contains("rope_freqs.weight");
    match meta.gguf.get_str(&meta.key("rope.scaling.type")) {
        None | Some("none") => {}
        Some("linear") if !has_freqs => {
            let factor = meta
                .f64_opt("rope.scaling.factor")?
                .ok_or_else(|| meta.error("linear rope scaling without rope.scaling.factor"))?;
            return Ok(Some(json!({"rope_type": "linear", "factor": factor})));
        }
        Some(kind) => {
            return Err(meta.error(format!("rope scaling `{kind}` is not supported")));
        }
    }
    if !has_freqs {
        return Ok(None);
    }
    let not_llama3 = |why: String| meta.error(format!("rope_freqs.weight: {why}"));
    if meta.arch != GgufArch::Llama {
        return Err(not_llama3(format!("unsupported for {}", meta.arch.name())));
    }
    let elements = checkpoint.info("rope_freqs.weight").map(|i| i.elements());
    if elements != Some((rope_dim / 2) as u64) {
        return Err(not_llama3(format!(
            "{elements:?} factors for {} rotary frequencies",
            rope_dim / 2
        )));
    }
    let stored: Vec<f32> = checkpoint
        .tensor_f32("rope_freqs.weight", &Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    let factor = stored.iter().fold(1.0f64, |m, &f| m.max(f as f64));
    let original = meta
        .usize_opt("rope.scaling.original_context_length")?
        .unwrap_or(8192) as f64;
    let expected = llama3_rope_factors(theta, rope_dim, factor, 1.0, 4.0, original);
    let matches = stored
        .iter()
        .zip(&expected)
        .all(|(&s, &e)| ((s as f64) - e).abs() <= 1e-3 * e.abs().max(1.0));
    if !matches {
        return Err(not_llama3(
            "the factors do not follow Llama 3's rope rule (low/high frequency factors 1 and 4)"
                .into(),
        ));
    }
    Ok(Some(json!({
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": original,
    })))
}

/// Loads a `.gguf` file as a hooked model with its embedded tokenizer.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<HookedModel> {
    load_checkpoint(Checkpoint::open(path)?, opts)
}

/// Loads an opened GGUF checkpoint (see [`load`]).
pub fn load_checkpoint(checkpoint: Checkpoint, opts: &LoadOptions) -> Result<HookedModel> {
    let path = checkpoint.path.clone();
    if checkpoint.kind != CheckpointKind::Gguf {
        return Err(ModelError::config(format!(
            "{}: not a GGUF file",
            path.display()
        )));
    }
    let gguf = checkpoint
        .gguf()
        .ok_or_else(|| ModelError::config(format!("{}: not a GGUF file", path.display())))?;
    let config = hub_config(gguf, &checkpoint)?;
    let tokenizer = if gguf.get("tokenizer.ggml.model").is_some() {
        Some(Tokenizer::from_hf(gguf_tokenizer::from_gguf(gguf)?))
    } else {
        None
    };
    let arch = GgufArch::parse(gguf.architecture().unwrap_or_default()).ok_or_else(|| {
        ModelError::config(format!("{}: unsupported architecture", path.display()))
    })?;
    let heads = config["num_attention_heads"]
        .as_u64()
        .or(config["n_head"].as_u64())
        .unwrap_or(1) as usize;
    let kv_heads = config["num_key_value_heads"]
        .as_u64()
        .unwrap_or(heads as u64) as usize;
    let backend = GgufBackend::new(checkpoint, arch, heads, kv_heads);
    HookedModel::from_backend(config, Box::new(backend), tokenizer, &path, opts)
}
