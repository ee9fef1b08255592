//! GGUF checkpoints (llama.cpp) through the same architecture code as Hub safetensors.
//!
//! Design: nothing here knows how a transformer computes. A GGUF is turned into what the Hub
//! loader already reads — a Hub `config.json` synthesized from the `{arch}.*` metadata
//! ([`gguf_config::hub_config`]) and a [`GgufBackend`] serving every tensor under its Hub name — and handed
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
//! - Qwen3-Next (`qwen3next`): zero-centred norms stored `w + 1` (as Gemma's); DeltaNet's
//!   `in_proj_qkvz` split into `attn_qkv` and `attn_gate` and regrouped, rejoined here
//!   (`Transform::JoinQkvz`); `A` stored as `−exp(A_log)`, the convolution squeezed;
//! - Nemotron-H (`nemotron_h`, `nemotron_h_moe`): Mamba's `A` is stored as `−exp(A_log)` and
//!   is logged back; `D`, the grouped norm and the convolution were reshaped and are reshaped
//!   back;
//! - gpt-oss (`gpt-oss`): the Hub's stacked, interleaved `gate_up_proj` is stored as stacked
//!   `ffn_gate_exps` / `ffn_up_exps` with stacked biases, served per expert like any stack;
//!   MXFP4 experts (ggml's `MXFP4` type) are decoded per expert;
//! - quantized matrices stay quantized in the memory map and are multiplied there
//!   ([`crate::quantized`]) under the model's [`Numerics`] (llama.cpp's by default); the
//!   quantized tensors that need more than a row permutation or a transpose (stacked experts,
//!   split and rejoined tensors) are dequantized to f32 on load;
//! - a missing `output.weight` means the unembedding is tied to `token_embd`;
//! - rope scaling: `{arch}.rope.scaling.type = linear` becomes `rope_scaling.linear`; the
//!   per-frequency factors of `rope_freqs.weight` (Llama 3.1's rule, any factors) divide each
//!   frequency, as llama.cpp does (`rope_scaling.freq_factors`); YaRN is read back for
//!   DeepSeek, gpt-oss and OLMo 3 with llama.cpp's rounding and magnitude ([`gguf_config`]);
//!   other schemes (Phi-3's long/short factors, YaRN elsewhere) are refused;
//! - `glm4`: nothing is permuted (GLM-4 already rotates adjacent pairs, as llama.cpp does);
//!   `rope.dimension_count` gives `partial_rotary_factor`;
//! - `deepseek2`: the MLA shapes come from `kv_lora_rank`, `q_lora_rank`, `key_length_mla` /
//!   `value_length_mla` (or, in older files, `key_length` / `value_length`) and
//!   `rope.dimension_count`; the router from `expert_gating_func` (sigmoid: V3, softmax or
//!   absent: V2), `expert_weights_scale` / `_norm`, `expert_group_count` / `_used_count` and
//!   `leading_dense_block_count`. Newer converters split `kv_b_proj` per head into `attn_k_b`
//!   (transposed) and `attn_v_b`; the backend joins them back.
//!
//! Fused tensors need no splitting: Phi-3's `attn_qkv` / fused `ffn_up` and GPT-2's `attn_qkv`
//! are the same fused `qkv_proj` / `gate_up_proj` / `c_attn` that the Hub architectures read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use glassbox_formats::gguf_names::{self, Fixup, HubName};
use glassbox_formats::{Checkpoint, CheckpointKind};
use serde_json::json;

use crate::error::{ModelError, Result};
use crate::gguf_config;
use crate::gguf_tokenizer;
use crate::model::{HookedModel, KvCacheType, LoadOptions, Numerics};
use crate::quantized::{self, QuantSource};
use crate::tokenizer::Tokenizer;

/// The `general.architecture` values glassbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufArch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma,
    /// Gemma 2: soft-capping, alternating sliding-window attention, extra norms.
    Gemma2,
    Phi3,
    Gpt2,
    /// Qwen3-MoE (`qwen3moe`).
    Qwen3Moe,
    /// GLM-4-0414 (`glm4`).
    Glm4,
    /// DeepSeek-V2 / V3 / R1 (`deepseek2`): multi-head latent attention.
    Deepseek2,
    /// BERT encoders (`bert`), e.g. sentence-embedding models.
    Bert,
    /// OLMo 2 (`olmo2`; OLMo 3 files too, which add sliding windows and YaRN on full layers).
    Olmo2,
    /// Gemma 3's text model (`gemma3`).
    Gemma3,
    /// GLM-4.5 / 4.6 (`glm4moe`).
    Glm4Moe,
    /// Llama 4's text model (`llama4`).
    Llama4,
    /// OLMoE (`olmoe`).
    Olmoe,
    /// Nemotron (`nemotron`: Minitron, Nemotron-Mini): LayerNorm1P, squared-ReLU MLP,
    /// partial rotary.
    Nemotron,
    /// Qwen3-Next (`qwen3next`): gated DeltaNet and gated attention, experts everywhere.
    Qwen3Next,
    /// gpt-oss (`gpt-oss`): sinks, alternating windows, YaRN, biased experts (MXFP4 too).
    GptOss,
    /// Nemotron-H: Mamba-2, attention and squared-ReLU MLP blocks (`nemotron_h`).
    NemotronH,
    /// Nemotron-H with expert blocks in place of the MLPs (`nemotron_h_moe`).
    NemotronHMoe,
}

impl GgufArch {
    pub const ALL: [GgufArch; 21] = [
        GgufArch::Llama,
        GgufArch::Qwen2,
        GgufArch::Qwen3,
        GgufArch::Gemma,
        GgufArch::Gemma2,
        GgufArch::Phi3,
        GgufArch::Gpt2,
        GgufArch::Qwen3Moe,
        GgufArch::Glm4,
        GgufArch::Deepseek2,
        GgufArch::Bert,
        GgufArch::Olmo2,
        GgufArch::Olmoe,
        GgufArch::Gemma3,
        GgufArch::Glm4Moe,
        GgufArch::Llama4,
        GgufArch::Nemotron,
        GgufArch::Qwen3Next,
        GgufArch::GptOss,
        GgufArch::NemotronH,
        GgufArch::NemotronHMoe,
    ];

    /// llama.cpp's name for the architecture (the metadata key prefix).
    pub fn name(self) -> &'static str {
        match self {
            GgufArch::Llama => "llama",
            GgufArch::Qwen2 => "qwen2",
            GgufArch::Qwen3 => "qwen3",
            GgufArch::Gemma => "gemma",
            GgufArch::Gemma2 => "gemma2",
            GgufArch::Phi3 => "phi3",
            GgufArch::Gpt2 => "gpt2",
            GgufArch::Qwen3Moe => "qwen3moe",
            GgufArch::Glm4 => "glm4",
            GgufArch::Deepseek2 => "deepseek2",
            GgufArch::Bert => "bert",
            GgufArch::Olmo2 => "olmo2",
            GgufArch::Olmoe => "olmoe",
            GgufArch::Gemma3 => "gemma3",
            GgufArch::Glm4Moe => "glm4moe",
            GgufArch::Llama4 => "llama4",
            GgufArch::Nemotron => "nemotron",
            GgufArch::Qwen3Next => "qwen3next",
            GgufArch::GptOss => "gpt-oss",
            GgufArch::NemotronH => "nemotron_h",
            GgufArch::NemotronHMoe => "nemotron_h_moe",
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
            GgufArch::Gemma2 => "Gemma2ForCausalLM",
            GgufArch::Phi3 => "Phi3ForCausalLM",
            GgufArch::Gpt2 => "GPT2LMHeadModel",
            GgufArch::Qwen3Moe => "Qwen3MoeForCausalLM",
            GgufArch::Glm4 => "Glm4ForCausalLM",
            // Whatever the DeepSeek version ([`gguf_config`]).
            GgufArch::Deepseek2 => "DeepseekV3ForCausalLM",
            GgufArch::Bert => "BertModel",
            GgufArch::Olmo2 => "Olmo2ForCausalLM",
            GgufArch::Olmoe => "OlmoeForCausalLM",
            GgufArch::Gemma3 => "Gemma3ForCausalLM",
            GgufArch::Glm4Moe => "Glm4MoeForCausalLM",
            GgufArch::Llama4 => "Llama4ForCausalLM",
            GgufArch::Nemotron => "NemotronForCausalLM",
            GgufArch::Qwen3Next => "Qwen3NextForCausalLM",
            GgufArch::GptOss => "GptOssForCausalLM",
            GgufArch::NemotronH | GgufArch::NemotronHMoe => "NemotronHForCausalLM",
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
    /// The whole stored tensor with [`gguf_names::hub_name`]'s fix-up applied (never
    /// [`Fixup::SplitExperts`]).
    Whole(Fixup),
    /// Expert `expert` of a stacked `[experts, rows, cols]` tensor (`ffn_*_exps`, or its
    /// biases `[experts, n]`), read from its own bytes only, so unused experts are never
    /// touched.
    ExpertSlice { expert: usize, experts: usize },
    /// DeepSeek's `kv_b_proj`, which newer converters split per head into `attn_k_b`
    /// (the source, stored transposed as [heads, kv_lora_rank, qk_nope_head_dim]) and
    /// `v_b` ([heads, v_head_dim, kv_lora_rank]); rejoined as [heads × (nope + v), rank].
    JoinKvB { v_b: String },
    /// Qwen3-Next's `in_proj_qkvz`, which the converter stores as `attn_qkv` (the source:
    /// every key head's q rows, then every head's k rows, then the values) and `attn_gate`
    /// (z); rejoined per key head as `[q | k | v | z]`, the Hub's grouping.
    JoinQkvz {
        gate: String,
        key_heads: usize,
        key_dim: usize,
    },
}

#[derive(Debug, Clone)]
struct Source {
    gguf_name: String,
    transform: Transform,
}

/// `(layer, tensor name)` of every `blk.{layer}{suffix}` tensor in `checkpoint`.
fn layers_with(checkpoint: &Checkpoint, suffix: &str) -> Vec<(String, String)> {
    checkpoint
        .tensors()
        .iter()
        .filter_map(|info| {
            let layer = info.name.strip_prefix("blk.")?.strip_suffix(suffix)?;
            Some((layer.to_string(), info.name.clone()))
        })
        .collect()
}

/// Serves a GGUF's tensors under Hub names, undoing the converter's changes (module docs).
pub struct GgufBackend {
    checkpoint: Arc<Checkpoint>,
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
        // DeepSeek's split `kv_b_proj`, unless the file also keeps the whole one.
        if arch == GgufArch::Deepseek2 {
            for (layer, name) in layers_with(&checkpoint, ".attn_k_b.weight") {
                let v_b = format!("blk.{layer}.attn_v_b.weight");
                let hub = format!("model.layers.{layer}.self_attn.kv_b_proj.weight");
                if checkpoint.contains(&v_b) && !sources.contains_key(&hub) {
                    sources.insert(
                        hub,
                        Source {
                            gguf_name: name,
                            transform: Transform::JoinKvB { v_b },
                        },
                    );
                }
            }
        }
        // Qwen3-Next's split `in_proj_qkvz`, with the DeltaNet shapes from the metadata.
        if arch == GgufArch::Qwen3Next {
            let key = |k: &str| {
                checkpoint
                    .gguf()
                    .and_then(|g| g.get_u64(&format!("qwen3next.ssm.{k}")))
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0)
            };
            let (key_heads, key_dim) = (key("group_count"), key("state_size"));
            for (layer, name) in layers_with(&checkpoint, ".attn_qkv.weight") {
                let gate = format!("blk.{layer}.attn_gate.weight");
                if checkpoint.contains(&gate) {
                    sources.insert(
                        format!("model.layers.{layer}.linear_attn.in_proj_qkvz.weight"),
                        Source {
                            gguf_name: name,
                            transform: Transform::JoinQkvz {
                                gate,
                                key_heads,
                                key_dim,
                            },
                        },
                    );
                }
            }
        }
        // Tied unembedding: no `output.weight`, the token embeddings are read instead.
        if !sources.contains_key("lm_head.weight") {
            let embed = match arch {
                GgufArch::Gpt2 => "transformer.wte.weight",
                GgufArch::NemotronH | GgufArch::NemotronHMoe => "backbone.embeddings.weight",
                _ => "model.embed_tokens.weight",
            };
            if let Some(source) = sources.get(embed).cloned() {
                sources.insert("lm_head.weight".into(), source);
            }
        }
        GgufBackend {
            checkpoint: Arc::new(checkpoint),
            sources,
            heads,
            kv_heads,
        }
    }

    /// The quantized matrices it serves that can be multiplied in place (see
    /// [`crate::quantized`]), under `numerics`.
    pub fn quant_source(&self, numerics: Numerics) -> QuantSource {
        let whole = self.sources.iter().filter_map(|(hub, source)| {
            let (fixup, expert) = match source.transform {
                Transform::Whole(fixup) => (fixup, None),
                Transform::ExpertSlice { expert, .. } => (Fixup::None, Some(expert)),
                _ => return None,
            };
            Some(quantized::HubSource {
                hub: hub.clone(),
                gguf_name: source.gguf_name.clone(),
                fixup,
                expert,
            })
        });
        let numerics = match numerics {
            Numerics::F32 => glassbox_kernels::quant::QuantNumerics::F32,
            Numerics::LlamaCpp => glassbox_kernels::quant::QuantNumerics::LlamaCpp,
        };
        QuantSource::new(
            self.checkpoint.clone(),
            whole,
            self.heads,
            self.kv_heads,
            numerics,
        )
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
            Transform::JoinKvB { ref v_b } => {
                return self.join_kv_b(&source.gguf_name, v_b, dev)?.to_dtype(dtype);
            }
            Transform::JoinQkvz {
                ref gate,
                key_heads,
                key_dim,
            } => {
                return self
                    .join_qkvz(&source.gguf_name, gate, key_heads, key_dim, dev)?
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
            Fixup::Flatten => stored.flatten_all()?,
            Fixup::LogOfNegated => stored.to_dtype(DType::F32)?.neg()?.log()?.flatten_all()?,
            Fixup::ConvChannels => stored.unsqueeze(1)?,
            Fixup::Row => stored.flatten_all()?.unsqueeze(0)?,
        };
        t.to_dtype(dtype)
    }
}

impl GgufBackend {
    /// A stored tensor widened to f32, with the file and tensor named in any error.
    fn read_f32(&self, name: &str, dev: &Device) -> candle_core::Result<Tensor> {
        self.checkpoint.tensor_f32(name, dev).map_err(|e| {
            candle_core::Error::Msg(format!("{}: `{name}`: {e}", self.checkpoint.path.display()))
        })
    }

    /// `kv_b_proj` [heads × (qk_nope + v), kv_lora_rank] from llama.cpp's per-head halves: head
    /// `h` is `k_b[h]ᵀ` (its no-rope key rows) followed by `v_b[h]` (its value rows).
    fn join_kv_b(&self, k_b: &str, v_b: &str, dev: &Device) -> candle_core::Result<Tensor> {
        let (k, v) = (self.read_f32(k_b, dev)?, self.read_f32(v_b, dev)?);
        let (Ok((heads, rank, _nope)), Ok((v_heads, _v_dim, v_rank))) = (k.dims3(), v.dims3())
        else {
            candle_core::bail!(
                "{}: `{k_b}` {:?} and `{v_b}` {:?} are not [heads, rows, cols]",
                self.checkpoint.path.display(),
                k.dims(),
                v.dims()
            );
        };
        if heads != v_heads || rank != v_rank {
            candle_core::bail!(
                "{}: `{k_b}` {:?} and `{v_b}` {:?} disagree on heads or latent rank",
                self.checkpoint.path.display(),
                k.dims(),
                v.dims()
            );
        }
        let joined = Tensor::cat(&[&k.transpose(1, 2)?, &v], 1)?;
        let rows = joined.dim(1)?;
        joined.reshape((heads * rows, rank))
    }

    /// `in_proj_qkvz` [key heads × (2·key_dim + 2·r·value_dim), d] from `qkv` (all q rows, all
    /// k rows, all v rows) and `gate` (all z rows): each key head's q, k, v and z rows in turn.
    fn join_qkvz(
        &self,
        qkv: &str,
        gate: &str,
        key_heads: usize,
        key_dim: usize,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let path = self.checkpoint.path.display();
        let (qkv_t, z) = (self.read_f32(qkv, dev)?, self.read_f32(gate, dev)?);
        let (Ok((qkv_rows, d)), Ok((v_rows, z_d))) = (qkv_t.dims2(), z.dims2()) else {
            candle_core::bail!("{path}: `{qkv}` and `{gate}` are not matrices");
        };
        let q_rows = key_heads * key_dim;
        if key_heads == 0 || d != z_d || qkv_rows != 2 * q_rows + v_rows || v_rows % key_heads != 0
        {
            candle_core::bail!(
                "{path}: `{qkv}` {:?} and `{gate}` {:?} do not split into {key_heads} key heads of {key_dim} (ssm.group_count, ssm.state_size)",
                qkv_t.dims(),
                z.dims()
            );
        }
        let per_head = |t: &Tensor, start: usize, rows: usize| {
            t.narrow(0, start, rows)?
                .reshape((key_heads, rows / key_heads, d))
        };
        let joined = Tensor::cat(
            &[
                per_head(&qkv_t, 0, q_rows)?,
                per_head(&qkv_t, q_rows, q_rows)?,
                per_head(&qkv_t, 2 * q_rows, v_rows)?,
                per_head(&z, 0, v_rows)?,
            ],
            1,
        )?;
        joined.reshape((qkv_rows + v_rows, d))
    }

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
        // Weights [experts, rows, cols], or biases [experts, n] (gpt-oss).
        if !matches!(info.shape.len(), 2 | 3)
            || experts == 0
            || expert >= experts
            || bytes.len() % experts != 0
        {
            return Err(msg(format!(
                "shape {:?} is not [experts, rows, cols] or [experts, n]",
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
        Tensor::from_vec(values, &info.shape[1..], dev)
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
    let mut warnings = Vec::new();
    let mut config = gguf_config::hub_config(gguf, &checkpoint, &mut warnings)?;
    // `none`: no llama.cpp vocabulary; a tokenizer llama.cpp has no kind for travels whole as
    // the GGUF specification's `tokenizer.huggingface.json` (what `glassbox quantize` writes).
    let vocab = match gguf.get("tokenizer.ggml.model") {
        None => None,
        Some(_) if gguf.get_str("tokenizer.ggml.model") == Some("none") => None,
        Some(_) => Some(gguf_tokenizer::GgufVocab::from_gguf(gguf)?),
    };
    let tokenizer = match (&vocab, gguf.get_str("tokenizer.huggingface.json")) {
        (Some(v), _) => Some(
            Tokenizer::from_hf(
                gguf_tokenizer::build_tokenizer(v)
                    .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?,
            )
            .with_origin(&path),
        ),
        (None, Some(json)) => Some(Tokenizer::from_json(
            json,
            &path.join("tokenizer.huggingface.json"),
        )?),
        (None, None) => None,
    };
    let quantized = checkpoint
        .tensors()
        .iter()
        .any(|t| glassbox_formats::quant::block_format(t.dtype).is_some());
    let numerics = opts.numerics.unwrap_or(if quantized {
        Numerics::LlamaCpp
    } else {
        Numerics::F32
    });
    if numerics == Numerics::LlamaCpp {
        // ggml's GELU (every GELU llama.cpp runs for these architectures is its tanh table).
        for key in ["hidden_act", "hidden_activation", "activation_function"] {
            if config[key].as_str().is_some_and(|a| a.starts_with("gelu")) {
                config[key] = json!("gelu_llamacpp");
            }
        }
    }
    if let Some(v) = &vocab {
        // The special ids as the vocabulary resolved them (llama.cpp's rules), not as written.
        config["bos_token_id"] = json!(v.bos_id);
        config["eos_token_id"] = json!(v.eos_id);
        warnings.extend(
            v.warnings
                .iter()
                .map(|w| format!("{}: {w}", path.display())),
        );
    }
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
    // (`block_count` was checked against the stored blocks when the config was made.)
    let backend = GgufBackend::new(checkpoint, arch, heads, kv_heads);
    let source = Arc::new(backend.quant_source(numerics));
    // llama.cpp's own default cache under its numerics.
    let opts = &LoadOptions {
        kv_cache: Some(opts.kv_cache.unwrap_or(match numerics {
            Numerics::LlamaCpp => KvCacheType::F16,
            Numerics::F32 => KvCacheType::F32,
        })),
        ..opts.clone()
    };
    let mut model = quantized::while_building(source, || {
        HookedModel::from_backend(config, Box::new(backend), tokenizer, &path, opts)
    })?;
    model.warnings = warnings;
    model.numerics = numerics;
    Ok(model)
}
