//! llama.cpp tensor names → Hugging Face names, and the few value fix-ups the conversion made.
//!
//! llama.cpp's `convert_hf_to_gguf.py` renames every tensor (`model.layers.3.self_attn.q_proj`
//! becomes `blk.3.attn_q`) and, for some architectures, changes values:
//! - **llama** (and Mistral/Mixtral, which llama.cpp also calls `llama`): the rows of Q and K
//!   are permuted so that llama.cpp's rotary, which rotates *adjacent* pairs, computes what
//!   HF's `rotate_half`, which rotates the two *halves* of each head, computes.
//!   [`unpermute_qk`] inverts it exactly (what transformers' GGUF loader also does).
//! - **gemma** (and Qwen3-Next's RMSNorms, Nemotron's LayerNorm1P): HF's norm multiplies by
//!   `1 + w`; llama.cpp stores `w + 1` so it can use a plain norm. Subtract one. The converter adds 1 to every tensor whose HF name
//!   ends in `norm.weight`, so the final `output_norm` (`model.norm.weight`) is shifted too.
//! - **gpt2**: HF stores GPT-2's Conv1D weights `[in, out]`; llama.cpp stores them as linear
//!   weights `[out, in]`. Transpose.
//! - **mixtures of experts**: llama.cpp stacks all experts of a layer in one
//!   `[n_expert, out, in]` tensor (`ffn_gate_exps`); HF has one tensor per expert.
//!
//! [`hub_name`] returns the HF name and which [`Fixup`] to apply; it does not touch data.

use candle_core::Tensor;

/// What must be done to a GGUF tensor's values (in row-major shape) to get the HF tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixup {
    None,
    /// Undo llama.cpp's Q row permutation: [`unpermute_qk`] with `attention.head_count`.
    UnpermuteQ,
    /// Undo llama.cpp's K row permutation: [`unpermute_qk`] with `attention.head_count_kv`.
    UnpermuteK,
    /// Swap the two dims (GPT-2 Conv1D weights).
    Transpose,
    /// Subtract one (Gemma's `1 + w` norms).
    SubtractOne,
    /// The tensor stacks experts on dim 0; expert `e` is the HF tensor named with `{e}`
    /// replaced by `e`.
    SplitExperts,
    /// Flatten to one dimension (Mamba-2's `D`, and its grouped norm, which the converter
    /// stores as `[groups, width / groups]`).
    Flatten,
    /// Mamba's `A_log` from the `A = −exp(A_log)` the converter stores (`[heads, 1]`):
    /// `ln(−A)`, flattened.
    LogOfNegated,
    /// A depthwise convolution's `[channels, kernel]` back to the Hub's `[channels, 1, kernel]`.
    ConvChannels,
    /// A one-row matrix `[1, n]` (a shared expert's gate; llama.cpp's quantizer writes it as a
    /// vector `[n]`).
    Row,
}

/// The Hugging Face name of a GGUF tensor and the fix-up its values need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubName {
    /// For [`Fixup::SplitExperts`], contains the placeholder `{e}`.
    pub name: String,
    pub fixup: Fixup,
}

/// llama.cpp's Mamba and hybrid architectures whose tensors are named as [`nemotron_h_name`]
/// reads them.
const NEMOTRON_H: &[&str] = &["nemotron_h", "nemotron_h_moe"];

/// Architecture families that share a naming scheme.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Qwen,
    Gemma,
    Gemma2,
    Phi3,
    Gpt2,
    Deepseek2,
    Glm4,
    /// OLMo 2: post-norms only, q/k norms over the whole projection.
    Olmo2,
    /// GLM-4.5: Llama's norms (`post_attention_norm` is the pre-MLP one), DeepSeek's experts.
    Glm4Moe,
    /// Llama 4: feed-forwards under `feed_forward`, the router named `router`.
    Llama4,
    /// Nemotron (Minitron): LayerNorm1P norms stored `w + 1`, otherwise Llama's names without
    /// the Q/K permutation.
    Nemotron,
    /// gpt-oss: attention sinks, a biased `router`, experts with biases (split from the Hub's
    /// interleaved `gate_up_proj`).
    GptOss,
    /// Qwen3-Next: Qwen-MoE's names, zero-centred norms stored `w + 1`, gated DeltaNet layers
    /// (`ssm_*`) under `linear_attn`.
    Qwen3Next,
    Bert,
}

fn family(arch: &str) -> Option<Family> {
    Some(match arch {
        "llama" | "mistral" => Family::Llama,
        // OLMoE names its tensors as Qwen-MoE does (with q/k norms over the projections).
        "qwen2" | "qwen3" | "qwen2moe" | "qwen3moe" | "olmoe" => Family::Qwen,
        "olmo2" => Family::Olmo2,
        "glm4moe" => Family::Glm4Moe,
        "llama4" => Family::Llama4,
        "qwen3next" => Family::Qwen3Next,
        "gpt-oss" => Family::GptOss,
        "nemotron" => Family::Nemotron,
        "gemma" => Family::Gemma,
        "gemma2" | "gemma3" => Family::Gemma2,
        "phi3" => Family::Phi3,
        "gpt2" => Family::Gpt2,
        "deepseek2" => Family::Deepseek2,
        "glm4" => Family::Glm4,
        "bert" => Family::Bert,
        _ => return None,
    })
}

/// The architectures [`hub_name`] knows (`general.architecture` values).
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "qwen2moe",
    "qwen3moe",
    "gemma",
    "gemma2",
    "gemma3",
    "phi3",
    "gpt2",
    "deepseek2",
    "glm4",
    "bert",
    "nemotron_h",
    "nemotron_h_moe",
    "qwen3next",
    "gpt-oss",
    "nemotron",
];

/// Maps a GGUF tensor name of architecture `arch` (`general.architecture`) to its Hugging Face
/// name, or None when the architecture is unknown or the tensor has no HF counterpart (e.g.
/// llama.cpp's precomputed `rope_freqs`).
pub fn hub_name(arch: &str, gguf_name: &str) -> Option<HubName> {
    if NEMOTRON_H.contains(&arch) {
        return nemotron_h_name(gguf_name);
    }
    let fam = family(arch)?;
    if fam == Family::Qwen3Next {
        if let Some(layer) = gguf_name
            .strip_prefix("blk.")
            .and_then(|r| r.strip_suffix(".ssm_a"))
        {
            return Some(HubName {
                name: format!("model.layers.{layer}.linear_attn.A_log"),
                fixup: Fixup::LogOfNegated,
            });
        }
    }
    // gpt-oss' sinks are a bare parameter on the Hub, a `.weight` in the file.
    if fam == Family::GptOss {
        if let Some(layer) = gguf_name
            .strip_prefix("blk.")
            .and_then(|r| r.strip_suffix(".attn_sinks.weight"))
        {
            return Some(HubName {
                name: format!("model.layers.{layer}.self_attn.sinks"),
                fixup: Fixup::None,
            });
        }
    }
    let (base, suffix) = gguf_name.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    // Norms whose Hub weight scales by `1 + w`, which the converter stores as `w + 1`.
    let plus_one_norms = matches!(
        fam,
        Family::Gemma | Family::Gemma2 | Family::Qwen3Next | Family::Nemotron
    );
    let norm_fixup = if plus_one_norms && suffix == "weight" {
        Fixup::SubtractOne
    } else {
        Fixup::None
    };
    let done = |name: String, fixup: Fixup| {
        Some(HubName {
            name: format!("{name}.{suffix}"),
            fixup,
        })
    };
    if fam == Family::Bert {
        return bert_name(base).and_then(|name| done(name, Fixup::None));
    }
    let gpt2 = fam == Family::Gpt2;
    match base {
        "token_embd" if gpt2 => return done("transformer.wte".into(), Fixup::None),
        "token_embd" => return done("model.embed_tokens".into(), Fixup::None),
        "position_embd" if gpt2 => return done("transformer.wpe".into(), Fixup::None),
        "output_norm" if gpt2 => return done("transformer.ln_f".into(), Fixup::None),
        "output_norm" => return done("model.norm".into(), norm_fixup),
        "output" => return done("lm_head".into(), Fixup::None),
        _ => {}
    }
    let rest = base.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if gpt2 {
        let p = format!("transformer.h.{layer}");
        let transpose = if suffix == "weight" {
            Fixup::Transpose
        } else {
            Fixup::None
        };
        return match part {
            "attn_norm" => done(format!("{p}.ln_1"), Fixup::None),
            "attn_qkv" => done(format!("{p}.attn.c_attn"), transpose),
            "attn_output" => done(format!("{p}.attn.c_proj"), transpose),
            "ffn_norm" => done(format!("{p}.ln_2"), Fixup::None),
            "ffn_up" => done(format!("{p}.mlp.c_fc"), transpose),
            "ffn_down" => done(format!("{p}.mlp.c_proj"), transpose),
            _ => None,
        };
    }
    let p = format!("model.layers.{layer}");
    let attn = format!("{p}.self_attn");
    let mlp = match fam {
        Family::Llama4 => format!("{p}.feed_forward"),
        _ => format!("{p}.mlp"),
    };
    let llama = fam == Family::Llama;
    // Mixtral (llama.cpp arch `llama`) keeps its MoE under `block_sparse_moe` with w1/w2/w3.
    let (moe, expert_gate, expert_up, expert_down) = if llama {
        (format!("{p}.block_sparse_moe"), "w1", "w3", "w2")
    } else {
        (mlp.clone(), "gate_proj", "up_proj", "down_proj")
    };
    let (q_fix, k_fix) = if llama {
        (Fixup::UnpermuteQ, Fixup::UnpermuteK)
    } else {
        (Fixup::None, Fixup::None)
    };
    let shared = match fam {
        Family::Deepseek2 | Family::Glm4Moe => format!("{mlp}.shared_experts"),
        _ => format!("{mlp}.shared_expert"),
    };
    let linear_attn = format!("{p}.linear_attn");
    match (fam, part) {
        (_, "attn_norm") => done(format!("{p}.input_layernorm"), norm_fixup),
        // Qwen3-Next's DeltaNet: `in_proj_qkvz` is stored split and regrouped (`attn_qkv` and
        // `attn_gate`), which only the model's loader can rejoin; the gated norm is a plain one.
        (Family::Qwen3Next, "ssm_ba") => done(format!("{linear_attn}.in_proj_ba"), Fixup::None),
        (Family::Qwen3Next, "ssm_conv1d") if suffix == "weight" => {
            done(format!("{linear_attn}.conv1d"), Fixup::ConvChannels)
        }
        (Family::Qwen3Next, "ssm_dt") if suffix == "bias" => Some(HubName {
            name: format!("{linear_attn}.dt_bias"),
            fixup: Fixup::None,
        }),
        (Family::Qwen3Next, "ssm_norm") => done(format!("{linear_attn}.norm"), Fixup::None),
        (Family::Qwen3Next, "ssm_out") => done(format!("{linear_attn}.out_proj"), Fixup::None),
        (Family::Qwen3Next, "attn_qkv" | "attn_gate") => None,
        (Family::Qwen3Next, "post_attention_norm") => {
            done(format!("{p}.post_attention_layernorm"), norm_fixup)
        }
        (Family::Phi3, "attn_qkv") => done(format!("{attn}.qkv_proj"), Fixup::None),
        (Family::Deepseek2, "attn_q_a") => done(format!("{attn}.q_a_proj"), Fixup::None),
        (Family::Deepseek2, "attn_q_a_norm") => done(format!("{attn}.q_a_layernorm"), Fixup::None),
        (Family::Deepseek2, "attn_q_b") => done(format!("{attn}.q_b_proj"), Fixup::None),
        (Family::Deepseek2, "attn_kv_a_mqa") => {
            done(format!("{attn}.kv_a_proj_with_mqa"), Fixup::None)
        }
        (Family::Deepseek2, "attn_kv_a_norm") => {
            done(format!("{attn}.kv_a_layernorm"), Fixup::None)
        }
        (Family::Deepseek2, "attn_kv_b") => done(format!("{attn}.kv_b_proj"), Fixup::None),
        (_, "attn_q") => done(format!("{attn}.q_proj"), q_fix),
        (_, "attn_k") => done(format!("{attn}.k_proj"), k_fix),
        (_, "attn_v") => done(format!("{attn}.v_proj"), Fixup::None),
        (_, "attn_output") => done(format!("{attn}.o_proj"), Fixup::None),
        (Family::Glm4Moe, "post_attention_norm") => {
            done(format!("{p}.post_attention_layernorm"), Fixup::None)
        }
        (
            Family::Qwen | Family::Qwen3Next | Family::Gemma2 | Family::Olmo2 | Family::Glm4Moe,
            "attn_q_norm",
        ) => done(format!("{attn}.q_norm"), norm_fixup),
        (
            Family::Qwen | Family::Qwen3Next | Family::Gemma2 | Family::Olmo2 | Family::Glm4Moe,
            "attn_k_norm",
        ) => done(format!("{attn}.k_norm"), norm_fixup),
        (Family::Olmo2, "post_attention_norm") => {
            done(format!("{p}.post_attention_layernorm"), Fixup::None)
        }
        (Family::Olmo2, "post_ffw_norm") => {
            done(format!("{p}.post_feedforward_layernorm"), Fixup::None)
        }
        (Family::Gemma2, "post_attention_norm") => {
            done(format!("{p}.post_attention_layernorm"), norm_fixup)
        }
        (Family::Gemma2, "ffn_norm") => done(format!("{p}.pre_feedforward_layernorm"), norm_fixup),
        (Family::Gemma2, "post_ffw_norm") => {
            done(format!("{p}.post_feedforward_layernorm"), norm_fixup)
        }
        (Family::Glm4, "post_attention_norm") => {
            done(format!("{p}.post_self_attn_layernorm"), Fixup::None)
        }
        (Family::Glm4, "post_ffw_norm") => done(format!("{p}.post_mlp_layernorm"), Fixup::None),
        (_, "ffn_norm") => done(format!("{p}.post_attention_layernorm"), norm_fixup),
        (Family::Phi3 | Family::Glm4, "ffn_up") => done(format!("{mlp}.gate_up_proj"), Fixup::None),
        (_, "ffn_gate") => done(format!("{mlp}.gate_proj"), Fixup::None),
        (_, "ffn_up") => done(format!("{mlp}.up_proj"), Fixup::None),
        (_, "ffn_down") => done(format!("{mlp}.down_proj"), Fixup::None),
        (Family::Llama4 | Family::GptOss, "ffn_gate_inp") => {
            done(format!("{moe}.router"), Fixup::None)
        }
        (Family::GptOss, "post_attention_norm") => {
            done(format!("{p}.post_attention_layernorm"), Fixup::None)
        }
        (_, "ffn_gate_inp") => done(format!("{moe}.gate"), Fixup::None),
        (Family::Deepseek2 | Family::Glm4Moe, "exp_probs_b") if suffix == "bias" => Some(HubName {
            name: format!("{mlp}.gate.e_score_correction_bias"),
            fixup: Fixup::None,
        }),
        (_, "ffn_gate_exps") => done(
            format!("{moe}.experts.{{e}}.{expert_gate}"),
            Fixup::SplitExperts,
        ),
        (_, "ffn_up_exps") => done(
            format!("{moe}.experts.{{e}}.{expert_up}"),
            Fixup::SplitExperts,
        ),
        (_, "ffn_down_exps") => done(
            format!("{moe}.experts.{{e}}.{expert_down}"),
            Fixup::SplitExperts,
        ),
        (
            Family::Qwen | Family::Qwen3Next | Family::Deepseek2 | Family::Glm4Moe | Family::Llama4,
            "ffn_gate_shexp",
        ) => done(format!("{shared}.gate_proj"), Fixup::None),
        (
            Family::Qwen | Family::Qwen3Next | Family::Deepseek2 | Family::Glm4Moe | Family::Llama4,
            "ffn_up_shexp",
        ) => done(format!("{shared}.up_proj"), Fixup::None),
        (
            Family::Qwen | Family::Qwen3Next | Family::Deepseek2 | Family::Glm4Moe | Family::Llama4,
            "ffn_down_shexp",
        ) => done(format!("{shared}.down_proj"), Fixup::None),
        (Family::Qwen | Family::Qwen3Next, "ffn_gate_inp_shexp") => {
            done(format!("{mlp}.shared_expert_gate"), Fixup::Row)
        }
        _ => None,
    }
}

/// A Nemotron-H tensor's Hub name (`NemotronHForCausalLM`: `backbone.`, every block's single
/// sublayer under `mixer`). Mamba's `A`, `D` and `dt` bias have no `.weight` suffix in either
/// naming; the converter turned `A_log` into `A` and reshaped `D`, the norm and the convolution.
fn nemotron_h_name(gguf_name: &str) -> Option<HubName> {
    let named = |name: String, fixup: Fixup| Some(HubName { name, fixup });
    match gguf_name {
        "token_embd.weight" => return named("backbone.embeddings.weight".into(), Fixup::None),
        "output_norm.weight" => return named("backbone.norm_f.weight".into(), Fixup::None),
        "output.weight" => return named("lm_head.weight".into(), Fixup::None),
        _ => {}
    }
    let (layer, part) = gguf_name.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let p = format!("backbone.layers.{layer}");
    if part == "attn_norm.weight" {
        return named(format!("{p}.norm.weight"), Fixup::None);
    }
    let (hub, fixup) = match part {
        "ssm_a" => ("A_log", Fixup::LogOfNegated),
        "ssm_d" => ("D", Fixup::Flatten),
        "ssm_dt.bias" => ("dt_bias", Fixup::None),
        "ssm_norm.weight" => ("norm.weight", Fixup::Flatten),
        "ssm_conv1d.weight" => ("conv1d.weight", Fixup::ConvChannels),
        "ssm_conv1d.bias" => ("conv1d.bias", Fixup::None),
        "ffn_gate_inp.weight" => ("gate.weight", Fixup::None),
        "exp_probs_b.bias" => ("gate.e_score_correction_bias", Fixup::None),
        "ffn_up_exps.weight" => ("experts.{e}.up_proj.weight", Fixup::SplitExperts),
        "ffn_down_exps.weight" => ("experts.{e}.down_proj.weight", Fixup::SplitExperts),
        "ffn_up_shexp.weight" => ("shared_experts.up_proj.weight", Fixup::None),
        "ffn_down_shexp.weight" => ("shared_experts.down_proj.weight", Fixup::None),
        _ => {
            let (base, suffix) = part.rsplit_once('.')?;
            let module = match base {
                "ssm_in" => "in_proj",
                "ssm_out" => "out_proj",
                "attn_q" => "q_proj",
                "attn_k" => "k_proj",
                "attn_v" => "v_proj",
                "attn_output" => "o_proj",
                "ffn_up" => "up_proj",
                "ffn_down" => "down_proj",
                _ => return None,
            };
            if suffix != "weight" && suffix != "bias" {
                return None;
            }
            return named(format!("{p}.mixer.{module}.{suffix}"), Fixup::None);
        }
    };
    named(format!("{p}.mixer.{hub}"), fixup)
}

/// A BERT tensor's Hub name (a `BertModel`, no `bert.` prefix), without the suffix.
fn bert_name(base: &str) -> Option<String> {
    let embeddings = |n: &str| Some(format!("embeddings.{n}"));
    match base {
        "token_embd" => return embeddings("word_embeddings"),
        "position_embd" => return embeddings("position_embeddings"),
        "token_types" => return embeddings("token_type_embeddings"),
        "token_embd_norm" => return embeddings("LayerNorm"),
        _ => {}
    }
    let (layer, part) = base.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match part {
        "attn_q" => "attention.self.query",
        "attn_k" => "attention.self.key",
        "attn_v" => "attention.self.value",
        "attn_output" => "attention.output.dense",
        "attn_output_norm" => "attention.output.LayerNorm",
        "ffn_up" => "intermediate.dense",
        "ffn_down" => "output.dense",
        "layer_output_norm" => "output.LayerNorm",
        _ => return None,
    };
    Some(format!("encoder.layer.{layer}.{part}"))
}

/// Undoes llama.cpp's Q/K row permutation for `n_head` heads (use the KV head count for K).
///
/// llama.cpp's converter views the rows of each head as `[2, head_dim/2]` (HF's two rotary
/// halves) and transposes that to `[head_dim/2, 2]` (adjacent pairs): GGUF row
/// `h*hd + 2*j + i` holds HF row `h*hd + i*hd/2 + j`. This applies the inverse transpose.
/// Works on weights `[rows, cols]` and on biases `[rows]`.
pub fn unpermute_qk(t: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    regroup_rows(t, n_head, true)
}

/// llama.cpp's permutation itself (HF layout → GGUF layout), the inverse of [`unpermute_qk`];
/// for writing llama-architecture GGUFs.
pub fn permute_qk(t: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    regroup_rows(t, n_head, false)
}

fn regroup_rows(t: &Tensor, n_head: usize, from_gguf: bool) -> candle_core::Result<Tensor> {
    let dims = t.dims();
    let rows = *dims
        .first()
        .ok_or_else(|| candle_core::Error::Msg("Q/K permutation of a scalar".into()))?;
    if n_head == 0 || rows % (2 * n_head) != 0 {
        candle_core::bail!(
            "Q/K permutation: {rows} rows do not split into {n_head} heads of even size"
        );
    }
    let half = rows / n_head / 2;
    let cols: usize = dims[1..].iter().product();
    // GGUF groups a head's rows as [half, 2]; HF as [2, half].
    let grouped = if from_gguf {
        (n_head, half, 2, cols)
    } else {
        (n_head, 2, half, cols)
    };
    t.reshape(grouped)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}
