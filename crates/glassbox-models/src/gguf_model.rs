//! GGUF checkpoints (llama.cpp) through the same architecture code as Hub safetensors.
//!
//! Design: nothing here knows how a transformer computes. A GGUF is turned into what the Hub
//! loader already reads — a Hub `config.json` synthesized from the `{arch}.*` metadata
//! ([`hub_config`]) and a [`GgufBackend`] serving every tensor under its Hub name — and handed
//! to [`HookedModel::from_backend`], so the registry builds the very same model (hooks
//! included) as for the safetensors release. The tokenizer comes from the GGUF's embedded
//! vocabulary ([`crate::gguf_tokenizer`]).
//!
//! What the backend undoes, per llama.cpp's `convert_hf_to_gguf.py`:
//!
//! - names: `blk.{i}.attn_q.weight` → `model.layers.{i}.self_attn.q_proj.weight`, … per
//!   architecture ([`hub_name`]);
//! - the Q/K row permutation of `llama`-architecture files (llama.cpp's "normal" rope rotates
//!   adjacent pairs, Hugging Face's rotates halves, so the converter permutes the rows of
//!   `q_proj` / `k_proj`). Only `llama` is permuted: qwen2, qwen3, gemma and phi3 use llama.cpp's
//!   NeoX rope, which is Hugging Face's layout already;
//! - Gemma's norms: the converter stores `w + 1` (llama.cpp scales by the weight, Hugging Face
//!   by `1 + w`), so 1 is subtracted back;
//! - GPT-2's `Conv1D` weights, stored `[in, out]` on the Hub and transposed by the converter;
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
#[derive(Debug, Clone, PartialEq)]
enum Transform {
    AsStored,
    /// Undo llama.cpp's rotary row permutation for a projection with this many heads.
    UnpermuteRows {
        heads: usize,
    },
    /// `[out, in]` back to GPT-2's `Conv1D` `[in, out]`.
    Transpose,
    /// Gemma's norms: stored `w + 1`, read `w`.
    MinusOne,
    /// Expert `expert` of a stacked `[experts, rows, cols]` tensor (`ffn_*_exps`), read from
    /// its own bytes only, so unused experts are never touched.
    ExpertSlice {
        expert: usize,
        experts: usize,
    },
}

#[derive(Debug, Clone)]
struct Source {
    gguf_name: String,
    transform: Transform,
}

/// llama.cpp's tensor names and the Hub's, without the `.weight` / `.bias` suffix: top-level
/// tensors, then the parts of block `i` (`blk.{i}.` / `{block_prefix}.{i}.`).
struct NameTable {
    top: &'static [(&'static str, &'static str)],
    block_prefix: &'static str,
    block: &'static [(&'static str, &'static str)],
}

const DECODER_TOP: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

const DECODER_BLOCK: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Phi-3 keeps Q/K/V and gate/up fused, as its Hub checkpoint does.
const PHI3_BLOCK: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_up", "mlp.gate_up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const GPT2_TOP: &[(&str, &str)] = &[
    ("token_embd", "transformer.wte"),
    ("position_embd", "transformer.wpe"),
    ("output_norm", "transformer.ln_f"),
    ("output", "lm_head"),
];

const GPT2_BLOCK: &[(&str, &str)] = &[
    ("attn_norm", "ln_1"),
    ("attn_qkv", "attn.c_attn"),
    ("attn_output", "attn.c_proj"),
    ("ffn_norm", "ln_2"),
    ("ffn_up", "mlp.c_fc"),
    ("ffn_down", "mlp.c_proj"),
];

impl GgufArch {
    fn names(self) -> NameTable {
        match self {
            GgufArch::Gpt2 => NameTable {
                top: GPT2_TOP,
                block_prefix: "transformer.h",
                block: GPT2_BLOCK,
            },
            GgufArch::Phi3 => NameTable {
                top: DECODER_TOP,
                block_prefix: "model.layers",
                block: PHI3_BLOCK,
            },
            _ => NameTable {
                top: DECODER_TOP,
                block_prefix: "model.layers",
                block: DECODER_BLOCK,
            },
        }
    }
}

/// Splits `name` into its base and its `weight` / `bias` suffix.
fn split_kind(name: &str) -> Option<(&str, &str)> {
    let (base, kind) = name.rsplit_once('.')?;
    matches!(kind, "weight" | "bias").then_some((base, kind))
}

/// The Hub name of a GGUF tensor for `arch`, or None for tensors with no Hub counterpart.
pub fn hub_name(arch: GgufArch, gguf_name: &str) -> Option<String> {
    let table = arch.names();
    let (base, kind) = split_kind(gguf_name)?;
    if let Some((_, hub)) = table.top.iter().find(|(g, _)| *g == base) {
        return Some(format!("{hub}.{kind}"));
    }
    let (layer, part) = base.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, hub) = table.block.iter().find(|(g, _)| *g == part)?;
    Some(format!("{}.{layer}.{hub}.{kind}", table.block_prefix))
}

/// The GGUF name llama.cpp gives a Hub tensor of `arch` (the inverse of [`hub_name`]).
pub fn gguf_name(arch: GgufArch, hub_name: &str) -> Option<String> {
    let table = arch.names();
    let (base, kind) = split_kind(hub_name)?;
    if let Some((gguf, _)) = table.top.iter().find(|(_, h)| *h == base) {
        return Some(format!("{gguf}.{kind}"));
    }
    let rest = base.strip_prefix(table.block_prefix)?.strip_prefix('.')?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (gguf, _) = table.block.iter().find(|(_, h)| *h == part)?;
    Some(format!("blk.{layer}.{gguf}.{kind}"))
}

/// How llama.cpp's converter changes a Hub tensor on its way into a GGUF, for writers: the
/// number of heads whose rows it permutes (Q and K of `llama`), whether it transposes it
/// (GPT-2 `Conv1D`), whether it adds 1 (Gemma norms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConverterChange {
    pub permute_heads: Option<usize>,
    pub transpose: bool,
    pub plus_one: bool,
}

/// What llama.cpp's converter does to the GGUF tensor `gguf_name` (see [`ConverterChange`]).
pub fn converter_change(
    arch: GgufArch,
    gguf_name: &str,
    heads: usize,
    kv_heads: usize,
) -> ConverterChange {
    let transform = transform_for(arch, gguf_name, heads, kv_heads);
    ConverterChange {
        permute_heads: match transform {
            Transform::UnpermuteRows { heads } => Some(heads),
            _ => None,
        },
        transpose: transform == Transform::Transpose,
        plus_one: transform == Transform::MinusOne,
    }
}

fn transform_for(arch: GgufArch, gguf_name: &str, heads: usize, kv_heads: usize) -> Transform {
    let part = gguf_name.rsplit('.').nth(1).unwrap_or("");
    match arch {
        GgufArch::Llama if part == "attn_q" => Transform::UnpermuteRows { heads },
        GgufArch::Llama if part == "attn_k" => Transform::UnpermuteRows { heads: kv_heads },
        GgufArch::Gemma if part.ends_with("norm") => Transform::MinusOne,
        GgufArch::Gpt2
            if gguf_name.ends_with(".weight")
                && matches!(part, "attn_qkv" | "attn_output" | "ffn_up" | "ffn_down") =>
        {
            Transform::Transpose
        }
        _ => Transform::AsStored,
    }
}

/// Undoes llama.cpp's `permute`: within each head, llama.cpp interleaved the rows of the two
/// rotary halves (row `2j + s` of its layout is row `s · d/2 + j` of the Hub's). Works on
/// weights `[rows, in]` and biases `[rows]`.
pub fn unpermute_rows(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!("cannot split {rows} rows into {heads} heads of rotary pairs");
    }
    let half = rows / heads / 2;
    let rest: usize = dims[1..].iter().product();
    t.reshape((heads, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// llama.cpp's `permute`, the inverse of [`unpermute_rows`] (for writing GGUF files).
pub fn permute_rows(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!("cannot split {rows} rows into {heads} heads of rotary pairs");
    }
    let half = rows / heads / 2;
    let rest: usize = dims[1..].iter().product();
    t.reshape((heads, 2, half, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// The Hub module holding a mixture-of-experts block: Mixtral's `block_sparse_moe` for
/// `llama` files with experts, `mlp` for the others.
fn moe_module(arch: GgufArch) -> &'static str {
    match arch {
        GgufArch::Llama => "block_sparse_moe",
        _ => "mlp",
    }
}

/// Hub names of llama.cpp's mixture-of-experts tensors of block `layer`: the router
/// (`ffn_gate_inp`), and the stacked experts (`ffn_{gate,up,down}_exps`), one Hub tensor per
/// expert. Returns `(hub name, expert)` pairs; `expert` is None for the router.
fn moe_hub_names(arch: GgufArch, gguf_name: &str, experts: usize) -> Vec<(String, Option<usize>)> {
    let Some((base, kind)) = split_kind(gguf_name) else {
        return Vec::new();
    };
    let Some((layer, part)) = base.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
        return Vec::new();
    };
    let Ok(layer) = layer.parse::<usize>() else {
        return Vec::new();
    };
    let module = format!("model.layers.{layer}.{}", moe_module(arch));
    if part == "ffn_gate_inp" {
        return vec![(format!("{module}.gate.{kind}"), None)];
    }
    let mixtral = arch == GgufArch::Llama;
    let proj = match part {
        "ffn_gate_exps" => {
            if mixtral {
                "w1"
            } else {
                "gate_proj"
            }
        }
        "ffn_up_exps" => {
            if mixtral {
                "w3"
            } else {
                "up_proj"
            }
        }
        "ffn_down_exps" => {
            if mixtral {
                "w2"
            } else {
                "down_proj"
            }
        }
        _ => return Vec::new(),
    };
    (0..experts)
        .map(|e| (format!("{module}.experts.{e}.{proj}.{kind}"), Some(e)))
        .collect()
}

/// Serves a GGUF's tensors under Hub names, undoing the converter's changes (module docs).
pub struct GgufBackend {
    checkpoint: Checkpoint,
    sources: HashMap<String, Source>,
}

impl GgufBackend {
    /// Maps every tensor of `checkpoint` (a GGUF) for `arch` with `heads` / `kv_heads` query /
    /// key-value heads. Tensors with no Hub name are left out.
    pub fn new(checkpoint: Checkpoint, arch: GgufArch, heads: usize, kv_heads: usize) -> Self {
        let mut sources = HashMap::new();
        for info in checkpoint.tensors() {
            let experts = info.shape.first().copied().unwrap_or(0);
            for (hub, expert) in moe_hub_names(arch, &info.name, experts) {
                let transform = match expert {
                    Some(expert) => Transform::ExpertSlice { expert, experts },
                    None => Transform::AsStored,
                };
                sources.insert(
                    hub,
                    Source {
                        gguf_name: info.name.clone(),
                        transform,
                    },
                );
            }
            if let Some(hub) = hub_name(arch, &info.name) {
                sources.insert(
                    hub,
                    Source {
                        gguf_name: info.name.clone(),
                        transform: transform_for(arch, &info.name, heads, kv_heads),
                    },
                );
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
        if let Transform::ExpertSlice { expert, experts } = source.transform {
            return self
                .read_expert(&source.gguf_name, expert, experts, dev)?
                .to_dtype(dtype);
        }
        let stored = self
            .checkpoint
            .tensor(&source.gguf_name, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let t = match source.transform {
            Transform::AsStored => stored,
            Transform::UnpermuteRows { heads } => unpermute_rows(&stored, heads)?,
            Transform::Transpose => stored.t()?.contiguous()?,
            Transform::MinusOne => (stored.to_dtype(DType::F32)? - 1.0)?,
            Transform::ExpertSlice { .. } => stored,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let t = Tensor::arange(0f32, 48., &Device::Cpu)
            .unwrap()
            .reshape((8, 6))
            .unwrap();
        for heads in [1, 2, 4] {
            let back = unpermute_rows(&permute_rows(&t, heads).unwrap(), heads).unwrap();
            assert_eq!(back.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
        }
        // One head of 4 rows: llama.cpp's order is [0, 2, 1, 3] of the Hub's.
        let rows = Tensor::new(&[0f32, 1., 2., 3.], &Device::Cpu).unwrap();
        let permuted = permute_rows(&rows, 1).unwrap();
        assert_eq!(permuted.to_vec1::<f32>().unwrap(), [0., 2., 1., 3.]);
        assert!(unpermute_rows(&rows, 3).is_err());
    }

    #[test]
    fn names_map_per_architecture() {
        let cases = [
            (
                GgufArch::Llama,
                "blk.3.attn_q.weight",
                Some("model.layers.3.self_attn.q_proj.weight"),
            ),
            (
                GgufArch::Qwen2,
                "blk.0.attn_k.bias",
                Some("model.layers.0.self_attn.k_proj.bias"),
            ),
            (
                GgufArch::Qwen3,
                "blk.1.attn_k_norm.weight",
                Some("model.layers.1.self_attn.k_norm.weight"),
            ),
            (
                GgufArch::Phi3,
                "blk.0.attn_qkv.weight",
                Some("model.layers.0.self_attn.qkv_proj.weight"),
            ),
            (
                GgufArch::Phi3,
                "blk.0.ffn_up.weight",
                Some("model.layers.0.mlp.gate_up_proj.weight"),
            ),
            (
                GgufArch::Gpt2,
                "blk.2.attn_qkv.bias",
                Some("transformer.h.2.attn.c_attn.bias"),
            ),
            (
                GgufArch::Gpt2,
                "position_embd.weight",
                Some("transformer.wpe.weight"),
            ),
            (
                GgufArch::Gemma,
                "output_norm.weight",
                Some("model.norm.weight"),
            ),
            (GgufArch::Llama, "output.weight", Some("lm_head.weight")),
            (GgufArch::Llama, "rope_freqs.weight", None),
            (GgufArch::Llama, "blk.x.attn_q.weight", None),
        ];
        for (arch, gguf, hub) in cases {
            assert_eq!(hub_name(arch, gguf).as_deref(), hub, "{arch:?} {gguf}");
            if let Some(hub) = hub {
                assert_eq!(
                    gguf_name(arch, hub).as_deref(),
                    Some(gguf),
                    "{arch:?} {hub}"
                );
            }
        }
    }
}
