//! A GGUF's metadata as the Hub `config.json` the architecture code reads ([`hub_config`]),
//! following what llama.cpp reads from each `{arch}.*` key — including the values llama.cpp
//! fixes in its own code that the file does not carry (windows, temperatures, routers).

use candle_core::Device;
use glassbox_formats::{Checkpoint, GgufFile};
use serde_json::{json, Value};

use crate::error::{ModelError, Result};
use crate::gguf_model::GgufArch;

/// Reads `{arch}.*` metadata with the file named in every error.
struct Meta<'a> {
    gguf: &'a GgufFile,
    arch: GgufArch,
    /// One more than the highest `blk.{i}` index among the file's tensors (None: no blocks).
    stored_blocks: Option<usize>,
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

    /// A per-layer count (llama.cpp's `get_key_or_arr`): one value for every layer, or a list
    /// of `n_layers`.
    fn usize_per_layer(&self, suffix: &str, n_layers: usize) -> Result<Vec<usize>> {
        use glassbox_formats::gguf::GgufArray;
        let key = self.key(suffix);
        let list: Option<Vec<u64>> = match self.gguf.get_array(&key) {
            None => {
                return Ok(vec![self.usize(suffix)?; n_layers]);
            }
            Some(GgufArray::U32(v)) => Some(v.iter().map(|&n| n as u64).collect()),
            Some(GgufArray::I32(v)) => v.iter().map(|&n| u64::try_from(n).ok()).collect(),
            Some(GgufArray::U64(v)) => Some(v.clone()),
            Some(_) => None,
        };
        match list {
            Some(v) if v.len() == n_layers => v
                .into_iter()
                .map(|n| {
                    usize::try_from(n).map_err(|_| self.error(format!("`{key}`: {n} is too large")))
                })
                .collect(),
            _ => Err(self.error(format!(
                "`{key}` must be one count or a list of {n_layers} counts"
            ))),
        }
    }

    /// `block_count`, checked against the blocks the file stores before anything is sized by
    /// it (a count of 2³² would otherwise size per-layer lists and loops).
    fn block_count(&self) -> Result<usize> {
        let n = self.usize("block_count")?;
        match self.stored_blocks {
            _ if n == 0 => Err(self.error("block_count is 0")),
            Some(stored) if n > stored => Err(self.error(format!(
                "block_count is {n}, but the file stores tensors for {stored} blocks"
            ))),
            None => Err(self.error("no `blk.*` tensors: the file stores no blocks")),
            _ => Ok(n),
        }
    }

    /// `attention.head_count`, which every size is divided by: never 0.
    fn heads(&self) -> Result<usize> {
        match self.usize("attention.head_count")? {
            0 => Err(self.error("attention.head_count is 0")),
            n => Ok(n),
        }
    }

    /// Refuses a rotary base of its own on window layers (`rope.freq_base_swa`), which the
    /// architecture's graph in llama.cpp does not have.
    fn one_rotary_base(&self) -> Result<()> {
        if let (Some(swa), Some(full)) = (
            self.f64_opt("rope.freq_base_swa")?,
            self.f64_opt("rope.freq_base")?,
        ) {
            if swa != full {
                return Err(self.error(format!(
                    "a rotary base of its own on window layers (rope.freq_base_swa) is not supported for {}",
                    self.arch.name()
                )));
            }
        }
        Ok(())
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

/// The Hub `config.json` equivalent to a GGUF's metadata, for the architecture's Hub class,
/// as llama.cpp reads that metadata; what llama.cpp tolerates with a warning is added to
/// `warnings`.
pub fn hub_config(
    gguf: &GgufFile,
    checkpoint: &Checkpoint,
    warnings: &mut Vec<String>,
) -> Result<Value> {
    let arch_name = gguf.architecture().ok_or_else(|| {
        ModelError::config(format!("{}: no general.architecture", gguf.path.display()))
    })?;
    let arch = GgufArch::parse(arch_name).ok_or_else(|| ModelError::UnsupportedArchitecture {
        found: format!("{arch_name} (GGUF)"),
        supported: GgufArch::ALL.iter().map(|a| a.name().to_string()).collect(),
    })?;
    let stored_blocks = checkpoint
        .tensors()
        .iter()
        .filter_map(|t| {
            t.name
                .strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|i| i + 1);
    let meta = Meta {
        gguf,
        arch,
        stored_blocks,
    };
    // Architectures whose config is written whole by a function of their own.
    type Build = fn(&Meta, &Checkpoint) -> Result<Value>;
    let dedicated: Option<Build> = match arch {
        GgufArch::Deepseek2 => Some(deepseek2_config),
        GgufArch::Bert => Some(bert_config),
        GgufArch::Olmo2
            if meta
                .usize_opt("attention.sliding_window")?
                .is_some_and(|w| w > 0) =>
        {
            Some(olmo3_config)
        }
        GgufArch::GptOss => Some(gpt_oss_config),
        GgufArch::Qwen3Next => Some(qwen3next_config),
        GgufArch::NemotronH | GgufArch::NemotronHMoe => Some(nemotron_h_config),
        GgufArch::Glm4Moe => Some(glm4moe_config),
        _ => None,
    };
    if let Some(build) = dedicated {
        let mut config = build(&meta, checkpoint)?;
        common_keys(&mut config, gguf, checkpoint, &meta)?;
        return Ok(config);
    }
    let n_experts = meta.usize_opt("expert_count")?.unwrap_or(0);
    if n_experts > 0
        && !matches!(
            arch,
            GgufArch::Llama | GgufArch::Qwen3Moe | GgufArch::Olmoe | GgufArch::Llama4
        )
    {
        return Err(meta.error(format!(
            "mixture-of-experts GGUF files are supported for llama (Mixtral), qwen3moe, olmoe and deepseek2, not {}",
            arch.name()
        )));
    }
    let d_model = meta.usize("embedding_length")?;
    let n_layers = meta.block_count()?;
    let n_heads = meta.heads()?;
    let n_kv_heads = meta
        .usize_opt("attention.head_count_kv")?
        .unwrap_or(n_heads);
    let d_mlp = match arch {
        // Qwen3-MoE files may have no dense layer, hence no dense feed-forward length.
        GgufArch::Qwen3Moe | GgufArch::Olmoe => match meta.usize_opt("feed_forward_length")? {
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
    let rope_scaling = rope_scaling(&meta, checkpoint, rope_dim)?;
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
                // Nemotron's `attention_bias` covers q, k, v and o.
                GgufArch::Nemotron => {
                    c["attention_bias"] = json!(checkpoint.contains("blk.0.attn_q.bias"));
                    c["mlp_bias"] = json!(checkpoint.contains("blk.0.ffn_up.bias"));
                }
                // GLM-4's `attention_bias` covers q, k and v.
                GgufArch::Glm4 => {
                    c["attention_bias"] = json!(checkpoint.contains("blk.0.attn_q.bias"));
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
                GgufArch::Gemma2 => {
                    c["hidden_act"] = json!("gelu_pytorch_tanh");
                    c["hidden_activation"] = json!("gelu_pytorch_tanh");
                    gemma2_keys(&mut c, &meta, d_model, n_heads, n_layers, head_dim)?;
                }
                GgufArch::Llama4 => llama4_keys(&mut c, &meta, n_layers, n_experts)?,
                GgufArch::Gemma3 => {
                    c["hidden_act"] = json!("gelu_pytorch_tanh");
                    c["hidden_activation"] = json!("gelu_pytorch_tanh");
                    gemma3_keys(&mut c, &meta, d_model, n_heads, n_layers, head_dim)?;
                }
                GgufArch::Phi3 => {
                    if rope_dim != head_dim {
                        c["partial_rotary_factor"] = json!(rope_dim as f64 / head_dim as f64);
                    }
                    // llama.cpp runs every Phi-3 file with full attention: 0 means none, and
                    // a window is disabled with a warning (llama.cpp PR 13676).
                    if let Some(window) = meta.usize_opt("attention.sliding_window")? {
                        if window > 0 {
                            warnings.push(format!(
                                "{}: phi3.attention.sliding_window {window} is not applied (llama.cpp runs Phi-3 with full attention)",
                                gguf.path.display()
                            ));
                        }
                    }
                }
                // LayerNorm1P with `attention.layer_norm_epsilon`; squared ReLU; always
                // written, as transformers' Nemotron defaults to half the head rotating.
                GgufArch::Nemotron => {
                    c["hidden_act"] = json!("relu2");
                    c["partial_rotary_factor"] = json!(rope_dim as f64 / head_dim as f64);
                    c["norm_eps"] = json!(meta
                        .f64_opt("attention.layer_norm_epsilon")?
                        .unwrap_or(1e-5));
                }
                // Always written: transformers' GLM-4 defaults to half the head rotating.
                GgufArch::Glm4 => {
                    c["partial_rotary_factor"] = json!(rope_dim as f64 / head_dim as f64);
                }
                GgufArch::Llama
                | GgufArch::Qwen2
                | GgufArch::Qwen3
                | GgufArch::Qwen3Moe
                | GgufArch::Olmo2
                | GgufArch::Olmoe
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
    config["model_type"] = json!(match arch {
        GgufArch::Gemma3 => "gemma3_text",
        GgufArch::Llama4 => "llama4_text",
        _ => arch.name(),
    });
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
            // Llama 4's routed experts are `expert_feed_forward_length` wide, its dense layers
            // `feed_forward_length`.
            GgufArch::Llama4 => {
                config["num_local_experts"] = json!(n_experts);
                config["num_experts_per_tok"] = json!(used);
                config["intermediate_size_mlp"] = json!(d_mlp);
                config["intermediate_size"] = json!(meta.usize("expert_feed_forward_length")?);
            }
            // llama.cpp never renormalises OLMoE's expert weights; its experts are
            // `feed_forward_length` wide.
            GgufArch::Olmoe => {
                config["num_experts"] = json!(n_experts);
                config["num_experts_per_tok"] = json!(used);
                config["norm_topk_prob"] = json!(false);
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
    common_keys(&mut config, gguf, checkpoint, &meta)?;
    Ok(config)
}

/// Gemma 2's attention as llama.cpp sets it up: soft-capping from the file; a sliding window
/// (`attention.sliding_window`, 4096 when absent) on every layer but each
/// `attention.sliding_window_pattern`-th (2 when absent: even layers slide); queries scaled by
/// the head size, except in the 46-layer (27B) model, by `d_model / heads` — llama.cpp's rule
/// for what transformers calls `query_pre_attn_scalar`, which the file does not carry.
fn gemma2_keys(
    c: &mut Value,
    meta: &Meta,
    d_model: usize,
    n_heads: usize,
    n_layers: usize,
    head_dim: usize,
) -> Result<()> {
    for (key, hub) in [
        ("attn_logit_softcapping", "attn_logit_softcapping"),
        ("final_logit_softcapping", "final_logit_softcapping"),
    ] {
        c[hub] = json!(meta.f64_opt(key)?);
    }
    c["sliding_window"] = json!(meta.usize_opt("attention.sliding_window")?.unwrap_or(4096));
    let pattern = meta
        .usize_opt("attention.sliding_window_pattern")?
        .unwrap_or(2);
    let sliding: Vec<bool> = (0..n_layers)
        .map(|i| pattern == 0 || i % pattern < pattern - 1)
        .collect();
    c["layer_types"] = json!(layer_types(&sliding));
    c["query_pre_attn_scalar"] = json!(if n_layers == 46 {
        d_model / n_heads
    } else {
        head_dim
    });
    Ok(())
}

/// Which layers use the sliding window, as llama.cpp's `load_swa_pattern` reads them:
/// `attention.sliding_window_pattern` as one flag per layer, or as a period (every layer but
/// each period-th; `default_period` when absent; 0: every layer).
fn window_layers(meta: &Meta, n_layers: usize, default_period: usize) -> Result<Vec<bool>> {
    let key = meta.key("attention.sliding_window_pattern");
    match meta.gguf.get_array(&key) {
        Some(glassbox_formats::gguf::GgufArray::Bool(flags)) if flags.len() == n_layers => {
            Ok(flags.clone())
        }
        Some(_) => Err(meta.error(format!("`{key}` must list one flag per layer ({n_layers})"))),
        None => {
            let period = meta
                .usize_opt("attention.sliding_window_pattern")?
                .unwrap_or(default_period);
            Ok((0..n_layers)
                .map(|i| period == 0 || i % period < period - 1)
                .collect())
        }
    }
}

/// Hub `layer_types` from one window flag per layer.
fn layer_types(sliding: &[bool]) -> Vec<&'static str> {
    sliding
        .iter()
        .map(|&s| {
            if s {
                "sliding_attention"
            } else {
                "full_attention"
            }
        })
        .collect()
}

/// Gemma 3's attention as llama.cpp sets it up: a sliding window where
/// `attention.sliding_window` is positive, on the layers `attention.sliding_window_pattern`
/// marks (a list of flags, or a period: every layer but each period-th, 6 when absent); the
/// window layers rotate with `rope.freq_base_swa` (10000 when absent) and no scaling; queries
/// scaled by the head size, except in the 62-layer (27B) model, by `d_model / heads`; final
/// soft-capping where the file has it, none on attention.
fn gemma3_keys(
    c: &mut Value,
    meta: &Meta,
    d_model: usize,
    n_heads: usize,
    n_layers: usize,
    head_dim: usize,
) -> Result<()> {
    c["final_logit_softcapping"] = json!(meta.f64_opt("final_logit_softcapping")?);
    let window = meta.usize_opt("attention.sliding_window")?.unwrap_or(0);
    let sliding = if window == 0 {
        vec![false; n_layers]
    } else {
        window_layers(meta, n_layers, 6)?
    };
    c["sliding_window"] = json!(window.max(1));
    let layer_types = layer_types(&sliding);
    c["layer_types"] = json!(layer_types);
    c["rope_local_base_freq"] = json!(meta.f64_opt("rope.freq_base_swa")?.unwrap_or(10000.0));
    c["query_pre_attn_scalar"] = json!(if n_layers == 62 {
        d_model / n_heads
    } else {
        head_dim
    });
    Ok(())
}

/// Llama 4's layers as llama.cpp sets them up. Unless `attention.sliding_window` is 0, the
/// window layers (`attention.sliding_window_pattern`: flags, or a period, 4 when absent) attend
/// in chunks of 8192 and every 4th layer has no rotary; with a window of 0, no layer is chunked
/// and only the last has no rotary. Layers without rotary scale queries by llama.cpp's fixed
/// temperature (floor 8192, scale 0.1). QK norm everywhere but in the 128-expert model;
/// MoE layers every `interleave_moe_layer_step`-th.
fn llama4_keys(c: &mut Value, meta: &Meta, n_layers: usize, n_experts: usize) -> Result<()> {
    let window = meta.usize_opt("attention.sliding_window")?;
    let (chunked, no_rope_step): (Vec<bool>, usize) = if window == Some(0) {
        (vec![false; n_layers], n_layers)
    } else {
        let flags = window_layers(meta, n_layers, 4)?;
        (flags, 4)
    };
    meta.one_rotary_base()?;
    let layer_types: Vec<&str> = chunked
        .iter()
        .map(|&c| {
            if c {
                "chunked_attention"
            } else {
                "full_attention"
            }
        })
        .collect();
    c["layer_types"] = json!(layer_types);
    c["attention_chunk_size"] = json!(8192);
    c["no_rope_layers"] = json!((0..n_layers)
        .map(|i| u8::from((i + 1) % no_rope_step != 0))
        .collect::<Vec<_>>());
    c["attn_temperature_tuning"] = json!(true);
    c["floor_scale"] = json!(8192);
    c["attn_scale"] = json!(0.1);
    c["use_qk_norm"] = json!(n_experts != 128);
    c["interleave_moe_layer_step"] =
        json!(meta.usize_opt("interleave_moe_layer_step")?.unwrap_or(1));
    Ok(())
}

/// A `glm4moe` file's `Glm4MoeForCausalLM` config, as llama.cpp runs it: `block_count` counts
/// the multi-token-prediction layers (`nextn_predict_layers`), which the forward pass skips;
/// the first `leading_dense_block_count` layers are dense; routing is `expert_gating_func`
/// (sigmoid when absent) with the `exp_probs_b` correction, renormalised where
/// `expert_weights_norm` and scaled by `expert_weights_scale`, never limited to groups (the
/// file's group counts are not read by llama.cpp for this architecture); q/k norms and q/k/v
/// biases where the tensors exist; `rope.dimension_count` of each head rotates.
fn glm4moe_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    let n_layers = meta
        .block_count()?
        .checked_sub(meta.usize_opt("nextn_predict_layers")?.unwrap_or(0))
        .filter(|&n| n > 0)
        .ok_or_else(|| meta.error("nextn_predict_layers leaves no layers"))?;
    let d_model = meta.usize("embedding_length")?;
    let n_heads = meta.heads()?;
    let head_dim = meta
        .usize_opt("attention.key_length")?
        .unwrap_or(d_model / n_heads);
    let rope_dim = meta.usize_opt("rope.dimension_count")?.unwrap_or(head_dim);
    let scoring = match meta.usize_opt("expert_gating_func")?.map(|v| v as u64) {
        None | Some(GATING_SIGMOID) => "sigmoid",
        Some(GATING_SOFTMAX) => "softmax",
        Some(other) => {
            return Err(meta.error(format!(
                "expert_gating_func {other} is not softmax or sigmoid"
            )))
        }
    };
    let mut c = json!({
        "hidden_size": d_model,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": meta.usize_opt("attention.head_count_kv")?.unwrap_or(n_heads),
        "head_dim": head_dim,
        "partial_rotary_factor": rope_dim as f64 / head_dim as f64,
        "intermediate_size": meta.usize("feed_forward_length")?,
        "moe_intermediate_size": meta.usize("expert_feed_forward_length")?,
        "n_routed_experts": meta.usize("expert_count")?,
        "num_experts_per_tok": meta.usize("expert_used_count")?,
        "n_shared_experts": meta.usize_opt("expert_shared_count")?.unwrap_or(0),
        "first_k_dense_replace": meta.usize_opt("leading_dense_block_count")?.unwrap_or(0),
        "routed_scaling_factor": meta.f64_opt("expert_weights_scale")?.unwrap_or(1.0),
        "norm_topk_prob": meta.gguf.get_bool(&meta.key("expert_weights_norm")).unwrap_or(false),
        "scoring_func": scoring,
        "n_group": 1,
        "topk_group": 1,
        "max_position_embeddings": meta.usize_opt("context_length")?.unwrap_or(2048),
        "rms_norm_eps": meta.f64_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        "rope_theta": meta.f64_opt("rope.freq_base")?.unwrap_or(10000.0),
        "hidden_act": "silu",
        "attention_bias": checkpoint.contains("blk.0.attn_q.bias"),
        "use_qk_norm": checkpoint.contains("blk.0.attn_q_norm.weight"),
        "architectures": [GgufArch::Glm4Moe.hub_architecture()],
        "model_type": "glm4_moe",
    });
    if let Some(scaling) = rope_scaling(meta, checkpoint, rope_dim)? {
        c["rope_scaling"] = scaling;
    }
    Ok(c)
}

/// `rope.scaling.type = yarn` as llama.cpp applies it, as a Hub `rope_scaling` block: the ramp's
/// ends rounded outwards (llama.cpp always rounds), the magnitude `1 + 0.1 ln(factor)` times
/// `rope.scaling.attn_factor` (llama.cpp recomputes the magnitude and ignores
/// `rope.scaling.yarn_attn_factor`). An extrapolation factor other than 1 or DeepSeek's log
/// multiplier are refused.
fn yarn(meta: &Meta) -> Result<Value> {
    let factor = meta
        .f64_opt("rope.scaling.factor")?
        .filter(|f| f.is_finite() && *f > 0.0)
        .ok_or_else(|| meta.error("yarn rope scaling needs a positive rope.scaling.factor"))?;
    if let Some(ext) = meta.f64_opt("rope.scaling.yarn_ext_factor")? {
        if ext != 1.0 {
            return Err(meta.error(format!(
                "rope.scaling.yarn_ext_factor {ext} (a partial YaRN ramp) is not supported"
            )));
        }
    }
    if meta
        .f64_opt("rope.scaling.yarn_log_multiplier")?
        .is_some_and(|m| m != 0.0)
    {
        return Err(meta.error(format!(
            "rope.scaling.yarn_log_multiplier is not part of a {} model",
            meta.arch.name()
        )));
    }
    let magnitude = crate::config::yarn_get_mscale(factor, 1.0)
        * meta.f64_opt("rope.scaling.attn_factor")?.unwrap_or(1.0);
    Ok(json!({
        "rope_type": "yarn",
        "factor": factor,
        "original_max_position_embeddings": meta.usize("rope.scaling.original_context_length")?,
        "beta_fast": meta.f64_opt("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
        "beta_slow": meta.f64_opt("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
        "attention_factor": magnitude,
        "truncate": true,
    }))
}

/// An `olmo2` file with sliding windows (OLMo 3) as llama.cpp runs it: windows of
/// `attention.sliding_window` on the layers `attention.sliding_window_pattern` marks (a period
/// of 4 when absent); window layers rotate with `rope.freq_base` unscaled (llama.cpp's graph
/// ignores `rope.freq_base_swa` there), full layers with the file's scaling (linear or YaRN).
/// transformers' OLMo 3 does the same with one rotary block per layer type.
fn olmo3_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    let n_layers = meta.block_count()?;
    let n_heads = meta.heads()?;
    let d_model = meta.usize("embedding_length")?;
    let head_dim = d_model / n_heads;
    if meta
        .usize_opt("rope.dimension_count")?
        .is_some_and(|r| r != head_dim)
    {
        return Err(meta.error("partial rotary is not part of OLMo 3"));
    }
    if checkpoint.contains("rope_freqs.weight") {
        return Err(meta.error("rope_freqs.weight is not part of an olmo2 model"));
    }
    let theta = meta.f64_opt("rope.freq_base")?.unwrap_or(10000.0);
    let mut full = match meta.gguf.get_str(&meta.key("rope.scaling.type")) {
        None | Some("none") => json!({"rope_type": "default"}),
        Some("linear") => json!({
            "rope_type": "linear",
            "factor": meta.f64_opt("rope.scaling.factor")?
                .ok_or_else(|| meta.error("linear rope scaling without rope.scaling.factor"))?,
        }),
        Some("yarn") => yarn(meta)?,
        Some(kind) => {
            return Err(meta.error(format!("rope scaling `{kind}` is not supported for olmo2")));
        }
    };
    full["rope_theta"] = json!(theta);
    let window = meta.usize("attention.sliding_window")?;
    let layer_types = layer_types(&window_layers(meta, n_layers, 4)?);
    Ok(json!({
        "architectures": ["Olmo3ForCausalLM"],
        "model_type": "olmo3",
        "hidden_size": d_model,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": meta.usize_opt("attention.head_count_kv")?.unwrap_or(n_heads),
        "intermediate_size": meta.usize("feed_forward_length")?,
        "max_position_embeddings": meta.usize_opt("context_length")?.unwrap_or(2048),
        "rms_norm_eps": meta.f64_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        "hidden_act": "silu",
        "attention_bias": false,
        "sliding_window": window,
        "layer_types": layer_types,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": theta},
            "full_attention": full,
        },
    }))
}

/// A `gpt-oss` file's `GptOssForCausalLM` config, as llama.cpp runs it: a sliding window of
/// `attention.sliding_window` on the layers `attention.sliding_window_pattern` marks (a period
/// of 2 when absent: even layers), YaRN from `rope.scaling.*` with the ramp's ends rounded
/// outwards (llama.cpp always rounds; transformers' gpt-oss does not), the clamped SwiGLU at
/// llama.cpp's fixed α = 1.702 and limit 7, softmax over the top-k of the biased router.
fn gpt_oss_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    let n_layers = meta.block_count()?;
    let n_heads = meta.heads()?;
    let d_model = meta.usize("embedding_length")?;
    let head_dim = match meta.usize_opt("rope.dimension_count")? {
        Some(n) => n,
        None => meta
            .usize_opt("attention.key_length")?
            .unwrap_or(d_model / n_heads),
    };
    let window = meta.usize_opt("attention.sliding_window")?.unwrap_or(0);
    let sliding = if window == 0 {
        vec![false; n_layers]
    } else {
        window_layers(meta, n_layers, 2)?
    };
    let layer_types = layer_types(&sliding);
    meta.one_rotary_base()?;
    let mut c = json!({
        "architectures": [GgufArch::GptOss.hub_architecture()],
        "model_type": "gpt_oss",
        "hidden_size": d_model,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": meta.usize_opt("attention.head_count_kv")?.unwrap_or(n_heads),
        "head_dim": head_dim,
        "intermediate_size": meta.usize("expert_feed_forward_length")?,
        "num_local_experts": meta.usize("expert_count")?,
        "num_experts_per_tok": meta.usize("expert_used_count")?,
        "sliding_window": window.max(1),
        "layer_types": layer_types,
        "swiglu_alpha": 1.702,
        "swiglu_limit": 7.0,
        "attention_bias": true,
        "max_position_embeddings": meta.usize_opt("context_length")?.unwrap_or(4096),
        "rms_norm_eps": meta.f64_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        "rope_theta": meta.f64_opt("rope.freq_base")?.unwrap_or(10000.0),
        "hidden_act": "silu",
    });
    match meta.gguf.get_str(&meta.key("rope.scaling.type")) {
        None | Some("none") => {}
        Some("yarn") => c["rope_scaling"] = yarn(meta)?,
        Some(kind) => {
            return Err(meta.error(format!(
                "rope scaling `{kind}` is not supported for gpt-oss"
            )));
        }
    }
    if checkpoint.contains("rope_freqs.weight") {
        return Err(meta.error("rope_freqs.weight is not part of a gpt-oss model"));
    }
    Ok(c)
}

/// A `qwen3next` file's `Qwen3NextForCausalLM` config, as llama.cpp reads it: linear-attention
/// layers where `attention.recurrent_layers` says so (else every layer but each
/// `full_attention_interval`-th, 4 when absent); the DeltaNet shapes from `ssm.*` (`group_count`
/// key heads of `state_size`, `time_step_rank` value heads sharing `inner_size`); every layer
/// sparse, the top-k weights always renormalised (llama.cpp's graph fixes it); a sigmoid-gated
/// shared expert where the file has one; `rope.dimension_count` of each head rotates.
fn qwen3next_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    use glassbox_formats::gguf::GgufArray;
    let n_layers = meta.block_count()?;
    let n_heads = meta.heads()?;
    let d_model = meta.usize("embedding_length")?;
    let head_dim = meta
        .usize_opt("attention.key_length")?
        .unwrap_or(d_model / n_heads);
    let rope_dim = meta.usize_opt("rope.dimension_count")?.unwrap_or(head_dim);
    let key = meta.key("attention.recurrent_layers");
    let linear: Vec<bool> = match meta.gguf.get_array(&key) {
        Some(GgufArray::Bool(flags)) if flags.len() == n_layers => flags.clone(),
        Some(_) => {
            return Err(meta.error(format!("`{key}` must list one flag per layer ({n_layers})")))
        }
        None => {
            let interval = meta
                .usize_opt("full_attention_interval")?
                .unwrap_or(4)
                .max(1);
            (0..n_layers).map(|i| (i + 1) % interval != 0).collect()
        }
    };
    let layer_types: Vec<&str> = linear
        .iter()
        .map(|&l| {
            if l {
                "linear_attention"
            } else {
                "full_attention"
            }
        })
        .collect();
    if let Some(scale) = meta.f64_opt("expert_weights_scale")? {
        if scale != 1.0 {
            return Err(meta.error(format!(
                "expert_weights_scale {scale} (scaled expert weights) is not part of Qwen3-Next"
            )));
        }
    }
    let value_heads = meta.usize("ssm.time_step_rank")?;
    let value_width = meta.usize("ssm.inner_size")?;
    if value_heads == 0 || value_width % value_heads != 0 {
        return Err(meta.error(format!(
            "ssm.inner_size {value_width} does not split into ssm.time_step_rank {value_heads} heads"
        )));
    }
    let shared = checkpoint.contains("blk.0.ffn_up_shexp.weight");
    let mut c = json!({
        "architectures": [GgufArch::Qwen3Next.hub_architecture()],
        "model_type": "qwen3_next",
        "hidden_size": d_model,
        "num_hidden_layers": n_layers,
        "layer_types": layer_types,
        "num_attention_heads": n_heads,
        "num_key_value_heads": meta.usize_opt("attention.head_count_kv")?.unwrap_or(n_heads),
        "head_dim": head_dim,
        "partial_rotary_factor": rope_dim as f64 / head_dim as f64,
        "intermediate_size": meta.usize_opt("feed_forward_length")?.unwrap_or(0),
        "num_experts": meta.usize("expert_count")?,
        "num_experts_per_tok": meta.usize("expert_used_count")?,
        "moe_intermediate_size": meta.usize("expert_feed_forward_length")?,
        "shared_expert_intermediate_size": if shared {
            meta.usize("expert_shared_feed_forward_length")?
        } else {
            0
        },
        "norm_topk_prob": true,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "linear_num_key_heads": meta.usize("ssm.group_count")?,
        "linear_key_head_dim": meta.usize("ssm.state_size")?,
        "linear_num_value_heads": value_heads,
        "linear_value_head_dim": value_width / value_heads,
        "linear_conv_kernel_dim": meta.usize("ssm.conv_kernel")?,
        "max_position_embeddings": meta.usize_opt("context_length")?.unwrap_or(2048),
        "rms_norm_eps": meta.f64_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        "rope_theta": meta.f64_opt("rope.freq_base")?.unwrap_or(10000.0),
        "hidden_act": "silu",
        "attention_bias": false,
    });
    if let Some(scaling) = rope_scaling(meta, checkpoint, rope_dim)? {
        c["rope_scaling"] = scaling;
    }
    Ok(c)
}

/// A `nemotron_h` / `nemotron_h_moe` file's `NemotronHForCausalLM` config, as llama.cpp reads
/// the blocks: a layer with neither key-value heads nor a feed-forward length is Mamba-2; one
/// with key-value heads is attention (no rotary); one with a feed-forward length is a
/// squared-ReLU MLP, or in `nemotron_h_moe` an expert block (llama.cpp's MoE architecture has no
/// dense MLP block): a sigmoid router with the `exp_probs_b` correction, renormalised where
/// `expert_weights_norm`, scaled by `expert_weights_scale`, beside a shared expert. The Mamba
/// shapes are `ssm.*` (`time_step_rank` is the number of heads); norms use
/// `layer_norm_rms_epsilon`, else `layer_norm_epsilon`.
fn nemotron_h_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    let n_layers = meta.block_count()?;
    if n_layers == 0 {
        return Err(meta.error("block_count is 0"));
    }
    let kv_heads = meta.usize_per_layer("attention.head_count_kv", n_layers)?;
    let heads = meta.usize_per_layer("attention.head_count", n_layers)?;
    let ff = meta.usize_per_layer("feed_forward_length", n_layers)?;
    let moe = meta.arch == GgufArch::NemotronHMoe;
    let mut types = Vec::with_capacity(n_layers);
    for i in 0..n_layers {
        types.push(match (kv_heads[i], ff[i]) {
            (0, 0) => "mamba",
            (_, 0) => "attention",
            (0, _) if moe => "moe",
            (0, _) => "mlp",
            _ => {
                return Err(meta.error(format!(
                    "layer {i} has both key-value heads and a feed-forward length"
                )))
            }
        });
    }
    // The one value the blocks of a kind share (the Hub config has one per kind).
    let shared = |what: &str, values: &[usize], kind: &str| -> Result<Option<usize>> {
        let mut of_kind = (0..n_layers)
            .filter(|&i| types[i] == kind)
            .map(|i| values[i]);
        let first = of_kind.next();
        match first {
            Some(v) if of_kind.all(|w| w == v) => Ok(Some(v)),
            None => Ok(None),
            Some(_) => Err(meta.error(format!(
                "{kind} blocks with different {what} are not supported"
            ))),
        }
    };
    let n_heads = shared("head counts", &heads, "attention")?
        .unwrap_or(1)
        .max(1);
    let n_kv_heads = shared("key-value head counts", &kv_heads, "attention")?.unwrap_or(n_heads);
    let d_model = meta.usize("embedding_length")?;
    let ssm_heads = meta.usize("ssm.time_step_rank")?;
    let inner = meta.usize("ssm.inner_size")?;
    if ssm_heads == 0 || inner % ssm_heads != 0 {
        return Err(meta.error(format!(
            "ssm.inner_size {inner} does not split into ssm.time_step_rank {ssm_heads} heads"
        )));
    }
    let eps = match meta.f64_opt("attention.layer_norm_rms_epsilon")? {
        Some(eps) => eps,
        None => meta
            .f64_opt("attention.layer_norm_epsilon")?
            .unwrap_or(1e-5),
    };
    let first = |kind: &str| types.iter().position(|&t| t == kind);
    let has = |layer: Option<usize>, tensor: &str| {
        layer.is_some_and(|i| checkpoint.contains(&format!("blk.{i}.{tensor}")))
    };
    let mut c = json!({
        "architectures": [GgufArch::NemotronH.hub_architecture()],
        "model_type": "nemotron_h",
        "layers_block_type": types,
        "hidden_size": d_model,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": meta.usize_opt("attention.key_length")?.unwrap_or(d_model / n_heads),
        "attention_bias": has(first("attention"), "attn_output.bias"),
        "intermediate_size": shared("feed-forward lengths", &ff, "mlp")?.unwrap_or(0),
        "mlp_bias": has(first("mlp"), "ffn_up.bias"),
        "mlp_hidden_act": "relu2",
        "mamba_num_heads": ssm_heads,
        "mamba_head_dim": inner / ssm_heads,
        "ssm_state_size": meta.usize("ssm.state_size")?,
        "n_groups": meta.usize("ssm.group_count")?,
        "conv_kernel": meta.usize("ssm.conv_kernel")?,
        "use_conv_bias": has(first("mamba"), "ssm_conv1d.bias"),
        "mamba_hidden_act": "silu",
        "layer_norm_epsilon": eps,
        "max_position_embeddings": meta.usize_opt("context_length")?.unwrap_or(4096),
    });
    if moe {
        let shared_count = meta.usize_opt("expert_shared_count")?.unwrap_or(0);
        let experts_ff = match meta.usize_opt("expert_feed_forward_length")? {
            Some(n) => n,
            None => shared("feed-forward lengths", &ff, "moe")?.unwrap_or(0),
        };
        c["n_routed_experts"] = json!(meta.usize("expert_count")?);
        c["num_experts_per_tok"] = json!(meta.usize("expert_used_count")?);
        c["moe_intermediate_size"] = json!(experts_ff);
        c["moe_shared_expert_intermediate_size"] = json!(if shared_count > 0 {
            meta.usize("expert_shared_feed_forward_length")?
        } else {
            0
        });
        c["routed_scaling_factor"] = json!(meta.f64_opt("expert_weights_scale")?.unwrap_or(1.0));
        c["norm_topk_prob"] = json!(meta
            .gguf
            .get_bool(&meta.key("expert_weights_norm"))
            .unwrap_or(false));
        c["n_group"] = json!(meta.usize_opt("expert_group_count")?.unwrap_or(1).max(1));
        c["topk_group"] = json!(meta
            .usize_opt("expert_group_used_count")?
            .unwrap_or(1)
            .max(1));
        if let Some(latent) = meta.usize_opt("moe_latent_size")?.filter(|&n| n > 0) {
            c["moe_latent_size"] = json!(latent);
        }
    }
    Ok(c)
}

/// A `bert` file's `BertModel` config. llama.cpp runs BERT with token type 0 for every token,
/// learned absolute positions and its GELU (the tanh form); the type-embedding rows are the
/// `token_types` tensor's.
fn bert_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    if meta.gguf.get_bool(&meta.key("attention.causal")) == Some(true) {
        return Err(meta.error("a causal `bert` file is not a BERT encoder"));
    }
    let type_vocab = checkpoint
        .info("token_types.weight")
        .and_then(|i| i.shape.first().copied())
        .ok_or_else(|| meta.error("no `token_types.weight` tensor"))?;
    Ok(json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": meta.usize("embedding_length")?,
        "num_hidden_layers": meta.block_count()?,
        "num_attention_heads": meta.usize("attention.head_count")?,
        "intermediate_size": meta.usize("feed_forward_length")?,
        "max_position_embeddings": meta.usize("context_length")?,
        "layer_norm_eps": meta.f64_opt("attention.layer_norm_epsilon")?.unwrap_or(1e-12),
        "type_vocab_size": type_vocab,
        "hidden_act": "gelu_pytorch_tanh",
    }))
}

/// The keys every synthesized config has: vocabulary, tying, special tokens, name.
fn common_keys(
    config: &mut Value,
    gguf: &GgufFile,
    checkpoint: &Checkpoint,
    meta: &Meta,
) -> Result<()> {
    let embed = checkpoint
        .info("token_embd.weight")
        .ok_or_else(|| meta.error("no `token_embd.weight` tensor"))?;
    let token_ids = |key: &str| gguf.get_u32(key).map(Value::from).unwrap_or(Value::Null);
    config["vocab_size"] = json!(embed.shape.first().copied().unwrap_or(0));
    config["tie_word_embeddings"] = json!(!checkpoint.contains("output.weight"));
    config["bos_token_id"] = token_ids("tokenizer.ggml.bos_token_id");
    config["eos_token_id"] = token_ids("tokenizer.ggml.eos_token_id");
    if let Some(name) = gguf.get_str("general.name") {
        config["_name_or_path"] = json!(name);
    }
    Ok(())
}

/// llama.cpp's `expert_gating_func` values (`LLAMA_EXPERT_GATING_FUNC_TYPE_*`).
const GATING_SOFTMAX: u64 = 1;
const GATING_SIGMOID: u64 = 2;

/// A `deepseek2` file's Hub config. llama.cpp runs every `deepseek2` file with one router and
/// one attention, whatever DeepSeek version it came from: scores by `expert_gating_func`
/// (absent: softmax, as llama.cpp assumes for the V2 files written before the key existed),
/// selection shifted by `exp_probs_b` when present, groups ranked by the sum of their two best
/// scores, weights renormalised when `expert_weights_norm`, times `expert_weights_scale`; the
/// YaRN magnitude folded into the softmax scale. That is transformers' DeepSeek-V3, given its
/// `scoring_func`; so every file becomes `DeepseekV3ForCausalLM` (V2's `group_limited_greedy`,
/// which ranks groups by their best score, is not what llama.cpp computes).
///
/// Attention shapes: since llama.cpp stores MLA as multi-query attention over the latent,
/// newer files give `key_length = kv_lora_rank + rope` and `value_length = kv_lora_rank`, with
/// the per-head sizes in `key_length_mla` / `value_length_mla`; older files (whole
/// `attn_kv_b`) give the per-head sizes in `key_length` / `value_length`. The rope part is
/// `rope.dimension_count`.
fn deepseek2_config(meta: &Meta, checkpoint: &Checkpoint) -> Result<Value> {
    let gguf = meta.gguf;
    let n_heads = meta.usize("attention.head_count")?;
    let kv_lora_rank = meta.usize("attention.kv_lora_rank")?;
    let q_lora_rank = meta.usize_opt("attention.q_lora_rank")?.filter(|&r| r > 0);
    let rope_dim = meta.usize("rope.dimension_count")?;
    let (qk_head_dim, v_head_dim) = match meta.usize_opt("attention.key_length_mla")? {
        Some(k) => (k, meta.usize("attention.value_length_mla")?),
        None => (
            meta.usize("attention.key_length")?,
            meta.usize("attention.value_length")?,
        ),
    };
    if rope_dim == 0 || rope_dim % 2 != 0 || qk_head_dim <= rope_dim {
        return Err(meta.error(format!(
            "rope.dimension_count {rope_dim} does not fit the key head size {qk_head_dim}"
        )));
    }
    let n_experts = meta.usize_opt("expert_count")?.unwrap_or(0);
    let expert_ff = meta.usize_opt("expert_feed_forward_length")?;
    let d_mlp = match (meta.usize_opt("feed_forward_length")?, expert_ff) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err(meta.error("missing metadata `deepseek2.feed_forward_length`")),
    };
    let rope_theta = meta.f64_opt("rope.freq_base")?.unwrap_or(10000.0);
    let mut c = json!({
        "hidden_size": meta.usize("embedding_length")?,
        "num_hidden_layers": meta.block_count()?,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_heads,
        "intermediate_size": d_mlp,
        "q_lora_rank": q_lora_rank,
        "kv_lora_rank": kv_lora_rank,
        "qk_rope_head_dim": rope_dim,
        "qk_nope_head_dim": qk_head_dim - rope_dim,
        "v_head_dim": v_head_dim,
        "max_position_embeddings": meta.usize_opt("context_length")?.unwrap_or(4096),
        "rms_norm_eps": meta.f64_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        "rope_theta": rope_theta,
        "hidden_act": "silu",
        // transformers' `attention_bias` covers q_a, kv_a and o alike.
        "attention_bias": checkpoint.contains("blk.0.attn_kv_a_mqa.bias"),
    });
    let gating = match gguf.get(&meta.key("expert_gating_func")) {
        None => GATING_SOFTMAX,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| meta.error("`deepseek2.expert_gating_func` is not an integer"))?,
    };
    let scoring = match gating {
        GATING_SOFTMAX => "softmax",
        GATING_SIGMOID => "sigmoid",
        other => {
            return Err(meta.error(format!(
                "expert_gating_func {other} is not supported (1 softmax, 2 sigmoid)"
            )))
        }
    };
    c["architectures"] = json!(["DeepseekV3ForCausalLM"]);
    c["model_type"] = json!("deepseek_v3");
    // Adjacent-pair rotary, llama.cpp's "normal" rope: the same scores as V3's default.
    c["rope_interleave"] = json!(true);
    if n_experts > 0 {
        let groups = meta.usize_opt("expert_group_count")?;
        let groups_used = meta.usize_opt("expert_group_used_count")?;
        c["scoring_func"] = json!(scoring);
        c["n_routed_experts"] = json!(n_experts);
        c["num_experts_per_tok"] = json!(meta.usize("expert_used_count")?);
        c["moe_intermediate_size"] = json!(expert_ff.unwrap_or(d_mlp));
        c["n_shared_experts"] = json!(meta.usize_opt("expert_shared_count")?.unwrap_or(0));
        c["first_k_dense_replace"] =
            json!(meta.usize_opt("leading_dense_block_count")?.unwrap_or(0));
        c["routed_scaling_factor"] = json!(meta.f64_opt("expert_weights_scale")?.unwrap_or(1.0));
        c["norm_topk_prob"] = json!(gguf
            .get_bool(&meta.key("expert_weights_norm"))
            .unwrap_or(false));
        // One group is no group limit (what llama.cpp does without the keys).
        c["n_group"] = json!(groups.unwrap_or(1));
        c["topk_group"] = json!(groups_used.or(groups).unwrap_or(1));
    }
    if let Some(scaling) = deepseek2_rope_scaling(meta)? {
        c["rope_scaling"] = scaling;
    }
    Ok(c)
}

/// DeepSeek's YaRN from `rope.scaling.*`. llama.cpp keeps the rotated vectors' length (its
/// rope's YaRN magnitude is divided back out), so `attention_factor` is 1, and scales q·k by
/// `(1 + yarn_log_multiplier · ln factor)²`, which is transformers' V3 `mscale_all_dim`
/// correction with `mscale_all_dim = yarn_log_multiplier / 0.1` (the converter writes
/// `0.1 × mscale_all_dim`).
fn deepseek2_rope_scaling(meta: &Meta) -> Result<Option<Value>> {
    match meta.gguf.get_str(&meta.key("rope.scaling.type")) {
        None | Some("none") => Ok(None),
        Some("yarn") => {
            let factor = meta
                .f64_opt("rope.scaling.factor")?
                .ok_or_else(|| meta.error("yarn rope scaling without rope.scaling.factor"))?;
            let original = meta
                .usize_opt("rope.scaling.original_context_length")?
                .ok_or_else(|| {
                    meta.error("yarn rope scaling without rope.scaling.original_context_length")
                })?;
            let log_mul = meta
                .f64_opt("rope.scaling.yarn_log_multiplier")?
                .unwrap_or(0.0);
            let mut s = json!({
                "rope_type": "yarn",
                "factor": factor,
                "original_max_position_embeddings": original,
                "attention_factor": 1.0,
                "mscale_all_dim": log_mul / 0.1,
            });
            for (key, hub) in [
                ("rope.scaling.yarn_beta_fast", "beta_fast"),
                ("rope.scaling.yarn_beta_slow", "beta_slow"),
            ] {
                if let Some(v) = meta.f64_opt(key)? {
                    s[hub] = json!(v);
                }
            }
            Ok(Some(s))
        }
        Some(kind) => Err(meta.error(format!(
            "rope scaling `{kind}` is not supported for deepseek2 (supported: yarn)"
        ))),
    }
}

/// The Hub `rope_scaling` of a GGUF, as llama.cpp applies it: `{arch}.rope.scaling.type =
/// linear` divides positions by `rope.scaling.factor`; a `rope_freqs.weight` tensor (what the
/// converter stores for Llama 3.1's rule, with whatever factors the checkpoint had) divides each
/// rotary frequency by its own factor — llama.cpp does no more than that, so neither do we
/// (`freq_factors`, with a linear factor folded in). Other schemes (Phi-3's long/short
/// factors, YaRN outside deepseek2) are refused rather than run with the wrong positions.
fn rope_scaling(meta: &Meta, checkpoint: &Checkpoint, rope_dim: usize) -> Result<Option<Value>> {
    for tensor in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if checkpoint.contains(tensor) {
            return Err(meta.error(format!(
                "`{tensor}` (long-context rope factors) is not supported"
            )));
        }
    }
    let linear = match meta.gguf.get_str(&meta.key("rope.scaling.type")) {
        None | Some("none") => None,
        Some("linear") => Some(
            meta.f64_opt("rope.scaling.factor")?
                .ok_or_else(|| meta.error("linear rope scaling without rope.scaling.factor"))?,
        ),
        Some(kind) => {
            return Err(meta.error(format!("rope scaling `{kind}` is not supported")));
        }
    };
    if !checkpoint.contains("rope_freqs.weight") {
        return Ok(linear.map(|factor| json!({"rope_type": "linear", "factor": factor})));
    }
    // llama.cpp reads `rope_freqs` for llama only; elsewhere it refuses the extra tensor.
    if meta.arch != GgufArch::Llama {
        return Err(meta.error(format!(
            "rope_freqs.weight is not part of a {} model",
            meta.arch.name()
        )));
    }
    let elements = checkpoint.info("rope_freqs.weight").map(|i| i.elements());
    if elements != Some((rope_dim / 2) as u64) {
        return Err(meta.error(format!(
            "rope_freqs.weight: {} factors for {} rotary frequencies",
            elements.unwrap_or(0),
            rope_dim / 2
        )));
    }
    let stored: Vec<f32> = checkpoint
        .tensor_f32("rope_freqs.weight", &Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    if let Some(bad) = stored.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        return Err(meta.error(format!(
            "rope_freqs.weight: factor {bad} is not a positive number"
        )));
    }
    let linear = linear.unwrap_or(1.0);
    let factors: Vec<f64> = stored.iter().map(|&f| f as f64 * linear).collect();
    Ok(Some(
        json!({"rope_type": "freq_factors", "factors": factors}),
    ))
}
