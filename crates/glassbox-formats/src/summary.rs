//! What a checkpoint is: its architecture, parameter counts by component, dtype breakdown.
//!
//! Design: the architecture comes from whichever metadata the checkpoint carries — a Hub
//! `config.json` (whose keys differ per family: GPT-2's `n_layer`/`n_embd`, Llama-style
//! `num_hidden_layers`/`hidden_size`, NeoX `rotary_pct`, DeepSeek's MoE keys, multimodal
//! `text_config`...) or GGUF metadata (`{arch}.block_count`, `{arch}.embedding_length`...).
//! Both readers take a key lookup `Fn(&str) -> Option<Value>`, so this module knows nothing of
//! how either file is parsed. Fields a source does not state are filled from the tensors where
//! that is unambiguous (vocabulary from the embedding's shape, tied embeddings from the absence
//! of an unembedding), otherwise left `None`.
//!
//! Parameter components are classified by tensor name only, with patterns covering both Hub
//! naming (`model.layers.0.self_attn.q_proj.weight`, `h.0.attn.c_attn.weight`...) and GGUF
//! naming (`blk.0.attn_q.weight`, `token_embd.weight`, `output.weight`...).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::hf_config::HfConfig;
use crate::{DType, TensorInfo};

/// The architecture of a model, as far as its metadata states it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArchitectureSummary {
    /// `model_type` of a Hub config, `general.architecture` of a GGUF file.
    pub family: Option<String>,
    /// The Hub config's `architectures` classes.
    pub classes: Vec<String>,
    pub layers: Option<u64>,
    pub d_model: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub head_dim: Option<u64>,
    pub d_mlp: Option<u64>,
    pub vocab: Option<u64>,
    pub context_length: Option<u64>,
    /// "rotary", "learned", "alibi" or None when unknown.
    pub positions: Option<String>,
    pub rope: Option<RopeSummary>,
    /// "RMSNorm" or "LayerNorm".
    pub norm: Option<String>,
    pub norm_eps: Option<f64>,
    pub tied_embeddings: Option<bool>,
    pub experts: Option<u64>,
    pub experts_per_token: Option<u64>,
    pub shared_experts: Option<u64>,
    pub d_expert: Option<u64>,
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RopeSummary {
    pub theta: Option<f64>,
    /// Fraction of each head's dimensions that rotate (1.0 = all).
    pub fraction: Option<f64>,
    /// Rotated dimensions per head, where stated.
    pub dims: Option<u64>,
    /// Context-extension scaling: its type ("linear", "yarn", "llama3", "longrope"...)
    /// and factor.
    pub scaling: Option<String>,
    pub scaling_factor: Option<f64>,
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        // Per-layer arrays (some GGUF files give head counts per layer): the largest.
        Value::Array(items) => items.iter().filter_map(as_u64).max(),
        _ => None,
    }
}

/// The first of `keys` that `get` has with a usable value.
fn first<T>(
    get: &dyn Fn(&str) -> Option<Value>,
    keys: &[&str],
    f: fn(&Value) -> Option<T>,
) -> Option<T> {
    keys.iter().find_map(|k| get(k).as_ref().and_then(f))
}

fn as_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl ArchitectureSummary {
    /// From a Hub `config.json`. Multimodal configs whose language model lives under
    /// `text_config` (Llava, Gemma 3...) are read from there, keeping the outer class names.
    pub fn from_config(config: &Value) -> Self {
        // Through the models' own reader, so an alias one knows the other knows.
        let reader = HfConfig(config);
        let get = |k: &str| reader.get(k).cloned();
        let mut summary = Self::from_config_lookup(&get);
        if summary.layers.is_none() {
            if let Some(text) = config.get("text_config").filter(|t| t.is_object()) {
                let text_reader = HfConfig(text);
                let get_text = |k: &str| text_reader.get(k).cloned();
                let inner = Self::from_config_lookup(&get_text);
                summary = ArchitectureSummary {
                    family: summary.family.or(inner.family.clone()),
                    classes: summary.classes,
                    ..inner
                };
            }
        }
        summary
    }

    fn from_config_lookup(get: &dyn Fn(&str) -> Option<Value>) -> Self {
        let d_model = first(
            get,
            &["hidden_size", "n_embd", "d_model", "dim", "model_dim"],
            as_u64,
        );
        let heads = first(
            get,
            &["num_attention_heads", "n_head", "num_heads", "n_heads"],
            as_u64,
        );
        let kv_heads = first(
            get,
            &[
                "num_key_value_heads",
                "num_kv_heads",
                "n_head_kv",
                "multi_query_group_num",
            ],
            as_u64,
        )
        .or_else(|| {
            // Falcon-style multi-query flag: one shared key/value head.
            (get("multi_query").and_then(|v| v.as_bool()) == Some(true)).then_some(1)
        })
        .or(heads);
        let head_dim =
            first(get, &["head_dim", "d_kv", "kv_channels"], as_u64).or(match (d_model, heads) {
                (Some(d), Some(h)) if h > 0 => Some(d / h),
                _ => None,
            });
        // Multi-head latent attention (DeepSeek): every head has its own keys and values once
        // decompressed; a head's output is `v_head_dim` wide (`head_dim` there is the rope part).
        let mla = get("kv_lora_rank").is_some();
        let (kv_heads, head_dim) = if mla {
            (heads, first(get, &["v_head_dim"], as_u64).or(head_dim))
        } else {
            (kv_heads, head_dim)
        };
        let mla_key_dim = match (
            first(get, &["qk_nope_head_dim"], as_u64),
            first(get, &["qk_rope_head_dim"], as_u64),
        ) {
            (Some(n), Some(r)) if mla => Some(n + r),
            _ => None,
        };
        let d_mlp = first(
            get,
            &[
                "intermediate_size",
                "n_inner",
                "ffn_dim",
                "d_ff",
                "ffn_hidden_size",
                "hidden_dim",
            ],
            as_u64,
        )
        // GPT-2 and GPT-J leave `n_inner` null to mean 4 × d_model.
        .or_else(|| get("n_embd").and_then(|v| as_u64(&v)).map(|d| 4 * d));

        let rope_parameters = get("rope_parameters").filter(|v| v.is_object());
        // Transformers 5 may key `rope_parameters` by layer type (Gemma 3): use the full-attention
        // entry, or else the first one.
        let rope_parameters = rope_parameters.map(|p| {
            if p.get("rope_theta").is_some() || p.get("rope_type").is_some() {
                p
            } else {
                p.get("full_attention")
                    .cloned()
                    .or_else(|| p.as_object().and_then(|o| o.values().next().cloned()))
                    .unwrap_or(p)
            }
        });
        let rope_get = |k: &str| rope_parameters.as_ref().and_then(|p| p.get(k)).cloned();
        let scaling = get("rope_scaling").filter(|v| v.is_object());
        let theta = get("rope_theta")
            .or_else(|| rope_get("rope_theta"))
            .or_else(|| get("rotary_emb_base"))
            .or_else(|| get("rope_embedding_base"))
            .and_then(|v| v.as_f64());
        let fraction = get("partial_rotary_factor")
            .or_else(|| rope_get("partial_rotary_factor"))
            .or_else(|| get("rotary_pct"))
            .and_then(|v| v.as_f64());
        let dims = first(get, &["rotary_dim", "qk_rope_head_dim", "rope_dim"], as_u64);
        let scaling_type = scaling
            .as_ref()
            .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
            .cloned()
            .or_else(|| rope_get("rope_type"))
            .and_then(|v| as_string(&v))
            .filter(|t| t != "default");
        let scaling_factor = scaling
            .as_ref()
            .and_then(|s| s.get("factor"))
            .cloned()
            .or_else(|| rope_get("factor"))
            .and_then(|v| v.as_f64());
        let is_rotary =
            theta.is_some() || fraction.is_some() || dims.is_some() || rope_parameters.is_some();
        let rope = is_rotary.then(|| RopeSummary {
            theta,
            fraction: fraction.or_else(|| match (dims, mla_key_dim.or(head_dim)) {
                (Some(r), Some(h)) if h > 0 => Some(r as f64 / h as f64),
                _ => None,
            }),
            dims,
            scaling: scaling_type,
            scaling_factor,
        });
        let alibi = get("alibi").and_then(|v| v.as_bool()) == Some(true)
            || matches!(
                get("model_type").and_then(|v| as_string(&v)).as_deref(),
                Some("bloom")
            );
        let rms_eps = first(get, &["rms_norm_eps", "rms_norm_epsilon"], Value::as_f64);
        let ln_eps = first(
            get,
            &[
                "layer_norm_eps",
                "layer_norm_epsilon",
                "layernorm_epsilon",
                "norm_eps",
            ],
            Value::as_f64,
        );
        let (norm, norm_eps) = match (rms_eps, ln_eps) {
            (Some(e), _) => (Some("RMSNorm"), Some(e)),
            (None, Some(e)) => (Some("LayerNorm"), Some(e)),
            _ => (None, None),
        };
        ArchitectureSummary {
            family: get("model_type").and_then(|v| as_string(&v)),
            classes: get("architectures")
                .and_then(|v| v.as_array().cloned())
                .map(|a| a.iter().filter_map(as_string).collect())
                .unwrap_or_default(),
            // Hybrids that list their blocks (Nemotron-H) may give no count.
            layers: first(
                get,
                &["num_hidden_layers", "n_layer", "num_layers", "n_layers"],
                as_u64,
            )
            .or_else(|| {
                get("layers_block_type")
                    .and_then(|v| v.as_array().map(|a| a.len() as u64))
                    .or_else(|| {
                        get("hybrid_override_pattern")
                            .and_then(|v| v.as_str().map(|p| p.chars().count() as u64))
                    })
            }),
            d_model,
            heads,
            kv_heads,
            head_dim,
            d_mlp,
            vocab: first(get, &["vocab_size", "padded_vocab_size"], as_u64),
            context_length: first(
                get,
                &[
                    "max_position_embeddings",
                    "n_positions",
                    "max_seq_len",
                    "seq_length",
                    "n_ctx",
                ],
                as_u64,
            ),
            positions: if alibi {
                Some("alibi".into())
            } else if rope.is_some() {
                Some("rotary".into())
            } else {
                None
            },
            rope: if alibi { None } else { rope },
            norm: norm.map(str::to_string),
            norm_eps,
            tied_embeddings: get("tie_word_embeddings").and_then(|v| v.as_bool()),
            experts: first(
                get,
                &["num_local_experts", "n_routed_experts", "num_experts"],
                as_u64,
            ),
            experts_per_token: first(get, &["num_experts_per_tok", "moe_top_k", "top_k"], as_u64),
            shared_experts: first(get, &["n_shared_experts", "num_shared_experts"], as_u64),
            d_expert: first(
                get,
                &["moe_intermediate_size", "expert_intermediate_size"],
                as_u64,
            ),
        }
    }

    /// From GGUF metadata: `get` looks a key up (`general.architecture`, `llama.block_count`...).
    pub fn from_gguf(get: &dyn Fn(&str) -> Option<Value>) -> Self {
        let arch = get("general.architecture").and_then(|v| as_string(&v));
        let key = |suffix: &str| format!("{}.{suffix}", arch.as_deref().unwrap_or(""));
        let u = |suffix: &str| get(&key(suffix)).and_then(|v| as_u64(&v));
        let f = |suffix: &str| get(&key(suffix)).and_then(|v| v.as_f64());
        let d_model = u("embedding_length");
        let heads = u("attention.head_count");
        let head_dim = u("attention.key_length").or(match (d_model, heads) {
            (Some(d), Some(h)) if h > 0 => Some(d / h),
            _ => None,
        });
        // DeepSeek's latent attention, which llama.cpp stores as one key/value head over the
        // latent: reported as the model runs it, one key/value head per head of
        // `value_length_mla` (older files: `value_length`).
        let mla = u("attention.kv_lora_rank").is_some();
        let key_dim = if mla {
            u("attention.key_length_mla").or(head_dim)
        } else {
            head_dim
        };
        let head_dim = if mla {
            u("attention.value_length_mla").or(u("attention.value_length"))
        } else {
            head_dim
        };
        let rope_dims = u("rope.dimension_count");
        let theta = f("rope.freq_base");
        let scaling = get(&key("rope.scaling.type"))
            .and_then(|v| as_string(&v))
            .filter(|t| t != "none");
        let rope = (theta.is_some() || rope_dims.is_some()).then(|| RopeSummary {
            // llama.cpp's default base when the file leaves it out.
            theta: theta.or(Some(10000.0)),
            fraction: match (rope_dims, key_dim) {
                (Some(r), Some(h)) if h > 0 => Some(r as f64 / h as f64),
                _ => None,
            },
            dims: rope_dims,
            scaling,
            scaling_factor: f("rope.scaling.factor"),
        });
        let (norm, norm_eps) = match (
            f("attention.layer_norm_rms_epsilon"),
            f("attention.layer_norm_epsilon"),
        ) {
            (Some(e), _) => (Some("RMSNorm".to_string()), Some(e)),
            (None, Some(e)) => (Some("LayerNorm".to_string()), Some(e)),
            _ => (None, None),
        };
        let vocab = u("vocab_size").or_else(|| {
            get("tokenizer.ggml.tokens").and_then(|v| v.as_array().map(|a| a.len() as u64))
        });
        ArchitectureSummary {
            family: arch.clone(),
            classes: Vec::new(),
            layers: u("block_count"),
            d_model,
            heads,
            kv_heads: if mla {
                heads
            } else {
                u("attention.head_count_kv").or(heads)
            },
            head_dim,
            d_mlp: u("feed_forward_length"),
            vocab,
            context_length: u("context_length"),
            positions: rope.as_ref().map(|_| "rotary".to_string()),
            rope,
            norm,
            norm_eps,
            tied_embeddings: None,
            experts: u("expert_count"),
            experts_per_token: u("expert_used_count"),
            shared_experts: u("expert_shared_count"),
            d_expert: u("expert_feed_forward_length"),
        }
    }

    /// Fills what the metadata left out from the tensor table, where it is unambiguous.
    pub fn complete_from_tensors(&mut self, tensors: &[TensorInfo]) {
        let embedding = tensors.iter().find(|t| {
            let n = t.name.as_str();
            n.ends_with("embed_tokens.weight")
                || n.ends_with("wte.weight")
                || n.ends_with("word_embeddings.weight")
                || n == "token_embd.weight"
                || n.ends_with("embed_in.weight")
                || n.ends_with("tok_embeddings.weight")
        });
        let has_unembedding = tensors
            .iter()
            .any(|t| component_of(&t.name) == Component::Unembedding);
        // Only a language-model head can be tied: an encoder (BertModel) has none at all.
        let has_lm_head = self.classes.is_empty()
            || self.classes.iter().any(|c| {
                c.ends_with("ForCausalLM")
                    || c.ends_with("LMHeadModel")
                    || c.ends_with("ForConditionalGeneration")
            });
        if self.tied_embeddings.is_none() && embedding.is_some() && has_lm_head {
            self.tied_embeddings = Some(!has_unembedding);
        }
        if let Some(e) = embedding {
            if e.shape.len() == 2 {
                // Both [vocab, d] (Hub) and GGUF's reversed order end up here: vocab is the
                // larger side for any real model, and d_model must match the other.
                let (a, b) = (e.shape[0] as u64, e.shape[1] as u64);
                let (vocab, d) = match self.d_model {
                    Some(d) if a == d => (b, a),
                    Some(_) => (a, b),
                    None if a >= b => (a, b),
                    None => (b, a),
                };
                self.vocab.get_or_insert(vocab);
                self.d_model.get_or_insert(d);
            }
        }
        if self.positions.is_none()
            && tensors.iter().any(|t| {
                let n = t.name.as_str();
                n.contains("wpe.")
                    || n.contains("position_embeddings")
                    || n.contains("embed_positions")
                    || n.starts_with("position_embd")
            })
        {
            self.positions = Some("learned".into());
        }
    }
}

/// The part of a model a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Embedding,
    Attention,
    Mlp,
    Norm,
    Unembedding,
    Other,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Embedding,
        Component::Attention,
        Component::Mlp,
        Component::Norm,
        Component::Unembedding,
        Component::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Embedding => "embedding",
            Component::Attention => "attention",
            Component::Mlp => "mlp",
            Component::Norm => "norm",
            Component::Unembedding => "unembedding",
            Component::Other => "other",
        }
    }
}

/// Classifies a tensor by its name (Hub or GGUF naming). Norms are recognised first, since
/// their names also mention the block they sit in (`post_attention_layernorm`, `attn_norm`).
pub fn component_of(name: &str) -> Component {
    let n = name.to_ascii_lowercase();
    let has = |pats: &[&str]| pats.iter().any(|p| n.contains(p));
    let segments: Vec<&str> = n.split('.').collect();
    if has(&["norm"]) || segments.iter().any(|s| s.starts_with("ln")) {
        return Component::Norm;
    }
    if n.contains("lm_head.")
        || n == "output.weight"
        || n == "output.bias"
        || has(&["embed_out.", "cls.predictions.decoder", "unembed"])
    {
        return Component::Unembedding;
    }
    if has(&[
        "embed_tokens",
        "wte.",
        "wpe.",
        "word_embeddings",
        "position_embeddings",
        "token_type_embeddings",
        "token_embd",
        "position_embd",
        "token_types",
        "embed_positions",
        "embed_in.",
        "tok_embeddings",
    ]) {
        return Component::Embedding;
    }
    if has(&[
        "attn",
        "attention",
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "query_key_value",
    ]) {
        return Component::Attention;
    }
    if has(&[
        "mlp",
        "ffn",
        "feed_forward",
        "experts",
        "moe",
        "intermediate.",
        "gate_proj",
        "up_proj",
        "down_proj",
        "c_fc",
    ]) || (segments.contains(&"output") && segments.contains(&"dense"))
    {
        return Component::Mlp;
    }
    Component::Other
}

/// Totals for one dtype.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DTypeTotals {
    pub dtype: String,
    pub tensors: u64,
    pub parameters: u64,
    pub bytes: u64,
}

/// Parameter counts and storage of a tensor table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParameterSummary {
    /// Sum of every tensor's element count (a tied embedding, stored once, counts once).
    pub parameters: u64,
    pub bytes: u64,
    /// Parameters per component, every component present (zero when absent).
    pub by_component: BTreeMap<String, u64>,
    /// One entry per dtype, most parameters first.
    pub by_dtype: Vec<DTypeTotals>,
}

/// The parameters a tensor holds: its elements, except in MXFP4 pairs as gpt-oss publishes
/// them (`{name}_blocks`, bytes of two 4-bit values, beside `{name}_scales`, one shared
/// exponent per 32 values, which are not parameters).
fn parameters_in(t: &TensorInfo, names: &std::collections::HashSet<&str>) -> u64 {
    let mxfp4 = |suffix: &str, sibling: &str| {
        t.dtype == DType::U8
            && t.name
                .strip_suffix(suffix)
                .is_some_and(|stem| names.contains(format!("{stem}{sibling}").as_str()))
    };
    if mxfp4("_blocks", "_scales") {
        2 * t.elements()
    } else if mxfp4("_scales", "_blocks") {
        0
    } else {
        t.elements()
    }
}

impl ParameterSummary {
    pub fn of(tensors: &[TensorInfo]) -> Self {
        let mut by_component: BTreeMap<String, u64> = Component::ALL
            .iter()
            .map(|c| (c.name().to_string(), 0))
            .collect();
        let mut by_dtype: BTreeMap<&'static str, DTypeTotals> = BTreeMap::new();
        let (mut parameters, mut bytes) = (0u64, 0u64);
        let names: std::collections::HashSet<&str> =
            tensors.iter().map(|t| t.name.as_str()).collect();
        for t in tensors {
            let n = parameters_in(t, &names);
            parameters += n;
            bytes += t.bytes;
            *by_component
                .entry(component_of(&t.name).name().to_string())
                .or_default() += n;
            let d = by_dtype
                .entry(t.dtype.name())
                .or_insert_with(|| DTypeTotals {
                    dtype: t.dtype.to_string(),
                    ..Default::default()
                });
            d.tensors += 1;
            d.parameters += n;
            d.bytes += t.bytes;
        }
        let mut by_dtype: Vec<DTypeTotals> = by_dtype.into_values().collect();
        by_dtype.sort_by(|a, b| b.parameters.cmp(&a.parameters).then(a.dtype.cmp(&b.dtype)));
        ParameterSummary {
            parameters,
            bytes,
            by_component,
            by_dtype,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_component(name: &str, expected: Component) {
        assert_eq!(component_of(name), expected, "{name}");
    }

    #[test]
    fn mxfp4_pairs_count_two_parameters_per_byte_and_no_scales() {
        let t = |name: &str, shape: Vec<usize>, dtype: DType| TensorInfo {
            name: name.into(),
            bytes: shape.iter().product::<usize>() as u64,
            shape,
            dtype,
        };
        let tensors = [
            t("m.experts.down_proj_blocks", vec![2, 8, 1, 16], DType::U8),
            t("m.experts.down_proj_scales", vec![2, 8, 1], DType::U8),
            t("m.other", vec![4, 4], DType::U8),
        ];
        // 2 experts × 8 rows × 32 values, and the unrelated U8 tensor's 16 elements
        assert_eq!(ParameterSummary::of(&tensors).parameters, 2 * 8 * 32 + 16);
    }

    #[test]
    fn components_of_hub_and_gguf_names() {
        use Component::*;
        for (name, want) in [
            ("model.embed_tokens.weight", Embedding),
            ("transformer.wte.weight", Embedding),
            ("transformer.wpe.weight", Embedding),
            ("token_embd.weight", Embedding),
            ("embeddings.word_embeddings.weight", Embedding),
            ("embeddings.LayerNorm.weight", Norm),
            ("model.layers.0.input_layernorm.weight", Norm),
            ("transformer.h.0.ln_1.bias", Norm),
            ("transformer.ln_f.weight", Norm),
            ("blk.3.attn_norm.weight", Norm),
            ("output_norm.weight", Norm),
            ("model.layers.0.self_attn.q_proj.weight", Attention),
            ("transformer.h.1.attn.c_attn.weight", Attention),
            (
                "gpt_neox.layers.0.attention.query_key_value.weight",
                Attention,
            ),
            ("blk.0.attn_q.weight", Attention),
            ("encoder.layer.0.attention.output.dense.weight", Attention),
            ("model.layers.0.mlp.gate_proj.weight", Mlp),
            ("transformer.h.0.mlp.c_proj.weight", Mlp),
            ("blk.0.ffn_down.weight", Mlp),
            ("blk.1.ffn_gate_exps.weight", Mlp),
            ("model.layers.1.mlp.experts.3.up_proj.weight", Mlp),
            ("model.layers.0.block_sparse_moe.gate.weight", Mlp),
            ("encoder.layer.0.intermediate.dense.weight", Mlp),
            ("encoder.layer.0.output.dense.weight", Mlp),
            ("lm_head.weight", Unembedding),
            ("output.weight", Unembedding),
            ("embed_out.weight", Unembedding),
            ("pooler.dense.weight", Other),
        ] {
            check_component(name, want);
        }
    }

    #[test]
    fn gguf_keys_are_read_per_architecture() {
        let meta = serde_json::json!({
            "general.architecture": "llama",
            "llama.block_count": 2,
            "llama.embedding_length": 16,
            "llama.attention.head_count": 4,
            "llama.attention.head_count_kv": 2,
            "llama.feed_forward_length": 64,
            "llama.context_length": 2048,
            "llama.rope.dimension_count": 4,
            "llama.attention.layer_norm_rms_epsilon": 1e-6,
            "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"],
        });
        let s = ArchitectureSummary::from_gguf(&|k| meta.get(k).cloned());
        assert_eq!(s.family.as_deref(), Some("llama"));
        assert_eq!(
            (s.layers, s.d_model, s.heads, s.kv_heads),
            (Some(2), Some(16), Some(4), Some(2))
        );
        assert_eq!(
            (s.head_dim, s.d_mlp, s.context_length, s.vocab),
            (Some(4), Some(64), Some(2048), Some(3))
        );
        assert_eq!(s.rope.as_ref().and_then(|r| r.fraction), Some(1.0));
        assert_eq!(s.norm.as_deref(), Some("RMSNorm"));
    }

    #[test]
    fn legacy_rope_keys_and_text_config() {
        let config = serde_json::json!({
            "architectures": ["LlavaForConditionalGeneration"],
            "model_type": "llava",
            "text_config": {
                "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
                "num_attention_heads": 32, "intermediate_size": 11008,
                "rope_theta": 500000.0,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
                "rms_norm_eps": 1e-5
            }
        });
        let s = ArchitectureSummary::from_config(&config);
        assert_eq!(s.family.as_deref(), Some("llava"));
        assert_eq!(s.classes, vec!["LlavaForConditionalGeneration".to_string()]);
        assert_eq!(
            (s.layers, s.kv_heads, s.head_dim),
            (Some(32), Some(32), Some(128))
        );
        let rope = s.rope.expect("rotary");
        assert_eq!(rope.theta, Some(500000.0));
        assert_eq!(rope.scaling.as_deref(), Some("llama3"));
        assert_eq!(rope.scaling_factor, Some(8.0));
    }
}
