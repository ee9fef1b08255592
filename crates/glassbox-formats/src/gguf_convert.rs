//! A Hugging Face checkpoint seen as the GGUF llama.cpp's `convert_hf_to_gguf.py` would make
//! of it, for quantizing straight from safetensors.
//!
//! [`HubAsGguf`] names, shapes and orders nothing itself: tensor names come from the reader's
//! own map ([`crate::gguf_names::hub_name`], run backwards), so a file we write reads back
//! through the same table; llama.cpp's Q/K row permutation (Llama and Mistral) is a row
//! index map applied while rows are read; the metadata is the converter's, key for key and in
//! its order, from `config.json` and the tokenizer's files ([`vocab`]). Rows are read from the
//! memory map a slab at a time, so converting never holds a whole model.
//!
//! Covered: the dense decoder families `LlamaForCausalLM`, `MistralForCausalLM`,
//! `Qwen2ForCausalLM` and `Qwen3ForCausalLM` without rope scaling. Tokenizers: SentencePiece
//! (`tokenizer.model`, `tokenizer.ggml.model = "llama"`), byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`) with GPT-2's, Llama 3's or Qwen 2's split regex; any other
//! `tokenizer.json` is carried whole as `tokenizer.huggingface.json` (the GGUF specification's
//! key) with `tokenizer.ggml.model = "none"`, which llama.cpp loads without a vocabulary and
//! glassbox tokenizes from. Other architectures are refused with the way round: llama.cpp's
//! converter, then `glassbox quantize` on its GGUF.

use std::path::Path;

use serde_json::Value;

use crate::gguf_names::{hub_name, Fixup};
use crate::gguf_quantize::{QuantSource, SourceTensor};
use crate::hf_config::HfConfig;
use crate::{to_f32, Checkpoint, DType, FormatError, GgufValue, Result};

mod vocab;

/// One output tensor: where its rows come from.
struct Mapped {
    hub: String,
    /// For Q and K: heads whose rows llama.cpp interleaves (see [`permuted_row`]).
    permute_heads: Option<usize>,
}

/// A Hub checkpoint as the GGUF llama.cpp's converter would write (F32 weights).
pub struct HubAsGguf {
    checkpoint: Checkpoint,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<SourceTensor>,
    mapped: Vec<Mapped>,
}

fn unsupported(path: &Path, what: impl std::fmt::Display) -> FormatError {
    FormatError::unsupported(
        path,
        format!(
            "{what}; convert it with llama.cpp's convert_hf_to_gguf.py, then quantize that GGUF"
        ),
    )
}

impl HubAsGguf {
    /// Opens a Hub snapshot folder (config.json, safetensors, tokenizer.json).
    pub fn open(dir: &Path) -> Result<Self> {
        let checkpoint = Checkpoint::open(dir)?;
        let config = checkpoint
            .config
            .clone()
            .ok_or_else(|| FormatError::invalid(dir, "no config.json: not a Hub snapshot"))?;
        let hf = HfConfig(&config);
        let class = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("");
        let arch = match class {
            "LlamaForCausalLM" | "MistralForCausalLM" => "llama",
            "Qwen2ForCausalLM" => "qwen2",
            "Qwen3ForCausalLM" => "qwen3",
            "" => {
                return Err(FormatError::invalid(
                    dir,
                    "config.json names no architecture",
                ))
            }
            other => return Err(unsupported(dir, format!("{other} is not converted here"))),
        };
        let scaling = hf.get("rope_scaling").or_else(|| {
            hf.get("rope_parameters")
                .filter(|p| p.get("rope_type").and_then(Value::as_str) != Some("default"))
        });
        if scaling.is_some() {
            return Err(unsupported(dir, "rope scaling is not converted here"));
        }
        let cfg =
            |e: crate::hf_config::ConfigError| FormatError::invalid(dir.join("config.json"), e.0);
        let layers = hf.usize(&["num_hidden_layers"]).map_err(cfg)?;
        let heads = hf.usize(&["num_attention_heads"]).map_err(cfg)?;
        let kv_heads = hf
            .usize_opt(&["num_key_value_heads"])
            .map_err(cfg)?
            .unwrap_or(heads);
        let hidden = hf.usize(&["hidden_size"]).map_err(cfg)?;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(FormatError::invalid(
                dir.join("config.json"),
                "head counts do not divide",
            ));
        }

        // Tensors: every GGUF name llama.cpp uses for these families, kept where the Hub
        // checkpoint has its counterpart.
        let mut tensors = Vec::new();
        let mut mapped = Vec::new();
        let mut used = std::collections::HashSet::new();
        let mut candidates = vec![
            "token_embd".to_string(),
            "output_norm".into(),
            "output".into(),
        ];
        for l in 0..layers {
            for part in [
                "attn_norm",
                "ffn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "attn_q_norm",
                "attn_k_norm",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ] {
                candidates.push(format!("blk.{l}.{part}"));
            }
        }
        for base in candidates {
            for suffix in ["weight", "bias"] {
                let name = format!("{base}.{suffix}");
                let Some(hub) = hub_name(arch, &name) else {
                    continue;
                };
                let Some(info) = checkpoint.info(&hub.name) else {
                    continue;
                };
                let permute_heads = match hub.fixup {
                    Fixup::None => None,
                    Fixup::UnpermuteQ => Some(heads),
                    Fixup::UnpermuteK => Some(kv_heads),
                    other => {
                        return Err(unsupported(dir, format!("`{}` needs {other:?}", hub.name)))
                    }
                };
                if let Some(h) = permute_heads {
                    let rows = info.shape.first().copied().unwrap_or(0);
                    if !rows.is_multiple_of(2 * h) {
                        return Err(FormatError::invalid(
                            dir,
                            format!(
                                "`{}`: {rows} rows do not split into {h} heads of pairs",
                                hub.name
                            ),
                        ));
                    }
                }
                if !matches!(info.dtype, DType::F32 | DType::F16 | DType::BF16)
                    || info.shape.len() > 2
                {
                    return Err(unsupported(
                        dir,
                        format!("`{}` is {} {:?}", hub.name, info.dtype, info.shape),
                    ));
                }
                used.insert(hub.name.clone());
                tensors.push(SourceTensor {
                    name,
                    shape: info.shape.clone(),
                    dtype: DType::F32,
                });
                mapped.push(Mapped {
                    hub: hub.name,
                    permute_heads,
                });
            }
        }
        let left: Vec<&str> = checkpoint
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| !used.contains(*n) && !n.ends_with("rotary_emb.inv_freq"))
            .collect();
        if !left.is_empty() {
            return Err(unsupported(
                dir,
                format!("tensors with no GGUF name here: {}", left.join(", ")),
            ));
        }
        if !tensors.iter().any(|t| t.name == "token_embd.weight") {
            return Err(FormatError::invalid(dir, "no token embedding"));
        }
        // The converter's order is the checkpoint's; llama.cpp's quantizer sorts anyway.
        let params: u64 = tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum();

        let mut m = Metadata::default();
        let key = |k: &str| format!("{arch}.{k}");
        m.string("general.architecture", arch);
        m.string("general.type", "model");
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        m.string("general.name", &id_to_title(&name));
        m.string("general.size_label", &size_label(params));
        m.u32(&key("block_count"), layers);
        let context = hf.usize(&["max_position_embeddings"]).map_err(cfg)?;
        m.u32(&key("context_length"), context);
        m.u32(&key("embedding_length"), hidden);
        m.u32(
            &key("feed_forward_length"),
            hf.usize(&["intermediate_size"]).map_err(cfg)?,
        );
        m.u32(&key("attention.head_count"), heads);
        m.u32(&key("attention.head_count_kv"), kv_heads);
        let theta = hf
            .f64_opt(&["rope_theta"])
            .map_err(cfg)?
            .or_else(|| {
                hf.get("rope_parameters")
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0);
        m.f32(&key("rope.freq_base"), theta as f32);
        let eps = hf.f64_opt(&["rms_norm_eps"]).map_err(cfg)?.unwrap_or(1e-6);
        m.f32(&key("attention.layer_norm_rms_epsilon"), eps as f32);
        let head_dim = hf.usize_opt(&["head_dim"]).map_err(cfg)?;
        if let Some(d) = head_dim {
            m.u32(&key("attention.key_length"), d);
            m.u32(&key("attention.value_length"), d);
        }
        m.u32("general.file_type", 0);
        let vocab_rows = checkpoint
            .info("model.embed_tokens.weight")
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(0);
        let config_vocab = hf.usize_opt(&["vocab_size"]).map_err(cfg)?;
        if config_vocab.is_some_and(|v| v > vocab_rows) {
            return Err(FormatError::invalid(
                dir.join("config.json"),
                format!(
                    "vocab_size {} is larger than the token embedding ({vocab_rows} rows)",
                    config_vocab.unwrap_or(0)
                ),
            ));
        }
        let vocab = config_vocab.unwrap_or(vocab_rows);
        if arch == "llama" {
            m.u32(&key("vocab_size"), vocab);
            m.u32(
                &key("rope.dimension_count"),
                head_dim.unwrap_or(hidden / heads),
            );
        }
        m.u32("general.quantization_version", 2);
        let size = vocab::VocabSize {
            config: config_vocab,
            rows: vocab_rows,
        };
        let tokenizer = checkpoint.tokenizer_path.as_deref();
        vocab::tokenizer_metadata(dir, tokenizer, &config, arch, size, &mut m)?;
        Ok(HubAsGguf {
            checkpoint,
            metadata: m.0,
            tensors,
            mapped,
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
}

/// The source row behind output row `row` of a Q or K projection: llama.cpp's converter views
/// each head's rows as (2, d/2) and stores them as (d/2, 2), so that its rotary, which rotates
/// adjacent pairs, computes what the Hub's rotation of the two halves computes.
fn permuted_row(row: usize, rows: usize, heads: usize) -> usize {
    let d = rows / heads;
    let (h, within) = (row / d, row % d);
    let (i, j) = (within / 2, within % 2);
    h * d + j * (d / 2) + i
}

impl QuantSource for HubAsGguf {
    fn path(&self) -> &Path {
        &self.checkpoint.path
    }

    fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    fn tensors(&self) -> &[SourceTensor] {
        &self.tensors
    }

    fn stored(&self, _index: usize) -> Option<&[u8]> {
        None
    }

    fn rows(&self, index: usize, first: usize, n: usize) -> Result<Vec<f32>> {
        let map = &self.mapped[index];
        let info = self.checkpoint.info(&map.hub).expect("mapped at open");
        let cols = if info.shape.len() == 2 {
            info.shape[1]
        } else {
            info.shape.first().copied().unwrap_or(1)
        };
        let rows = if info.shape.len() == 2 {
            info.shape[0]
        } else {
            1
        };
        let bytes = self.checkpoint.raw_bytes(&map.hub)?;
        let elem = info.dtype.block().1;
        let read = |r: usize| -> Result<Vec<f32>> {
            let raw = &bytes[r * cols * elem..(r + 1) * cols * elem];
            to_f32(info.dtype, raw).ok_or_else(|| {
                FormatError::invalid(&self.checkpoint.path, format!("`{}`: unreadable", map.hub))
            })
        };
        match map.permute_heads {
            // a 1-D bias: each element is a row of the permutation
            Some(heads) if info.shape.len() == 1 => {
                let all = read(0)?;
                let len = all.len();
                Ok((first..first + n)
                    .map(|r| all[permuted_row(r, len, heads)])
                    .collect())
            }
            Some(heads) => {
                let mut out = Vec::with_capacity(n * cols);
                for r in first..first + n {
                    out.extend(read(permuted_row(r, rows, heads))?);
                }
                Ok(out)
            }
            None => {
                let raw = &bytes[first * cols * elem..(first + n) * cols * elem];
                to_f32(info.dtype, raw).ok_or_else(|| {
                    FormatError::invalid(
                        &self.checkpoint.path,
                        format!("`{}`: unreadable", map.hub),
                    )
                })
            }
        }
    }
}

/// gguf-py's `id_to_title` on the folder's name (the converter's fallback for a model with
/// no model card): lower-case words title-cased, versions and numbers kept.
fn id_to_title(id: &str) -> String {
    let version_like = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_digit())
            || (w.starts_with('v')
                && w.len() > 1
                && w[1..]
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    };
    let title = |w: &str| {
        let mut out = String::new();
        let mut after_letter = false;
        for c in w.chars() {
            out.extend(if after_letter {
                c.to_lowercase().collect::<Vec<_>>()
            } else {
                c.to_uppercase().collect()
            });
            after_letter = c.is_alphabetic();
        }
        out
    };
    let words: Vec<String> = id
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let lower = w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_uppercase);
            if lower && !version_like(w) {
                title(w)
            } else {
                w.to_string()
            }
        })
        .collect();
    words.join(" ")
}

/// gguf-py's size label: the parameter count in K/M/B/T with at least two digits.
fn size_label(params: u64) -> String {
    let p = params as f64;
    let (scaled, suffix) = if p > 1e12 {
        (p * 1e-12, "T")
    } else if p > 1e9 {
        (p * 1e-9, "B")
    } else if p > 1e6 {
        (p * 1e-6, "M")
    } else {
        (p * 1e-3, "K")
    };
    let digits = format!("{}", scaled.round() as u64);
    let digits = digits.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

#[derive(Default)]
struct Metadata(Vec<(String, GgufValue)>);

impl Metadata {
    /// Sets `key`; one set again keeps its place, as in gguf-py's writer (a dict).
    fn set(&mut self, key: &str, v: GgufValue) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.0.push((key.to_string(), v)),
        }
    }
    fn string(&mut self, key: &str, v: &str) {
        self.set(key, GgufValue::String(v.to_string()))
    }
    fn u32(&mut self, key: &str, v: usize) {
        self.set(key, GgufValue::U32(v as u32))
    }
    fn f32(&mut self, key: &str, v: f32) {
        self.set(key, GgufValue::F32(v))
    }
}

/// Whether `path` is a folder to convert (rather than a GGUF file).
pub fn is_hub_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels_follow_gguf_py() {
        assert_eq!(size_label(123_200), "123K");
        assert_eq!(size_label(99_000), "99K");
        assert_eq!(size_label(1_500_000), "1.5M");
        assert_eq!(size_label(494_000_000), "494M");
        assert_eq!(size_label(7_240_000_000), "7.2B");
    }

    #[test]
    fn names_are_titled_as_gguf_py_titles_them() {
        assert_eq!(id_to_title("llama"), "Llama");
        assert_eq!(id_to_title("qwen2"), "Qwen2");
        assert_eq!(id_to_title("my-model-v1.2-7b"), "My Model v1.2 7b");
        assert_eq!(id_to_title("abc1def"), "Abc1Def");
        assert_eq!(id_to_title("SmolLM-135M"), "SmolLM 135M");
    }

    #[test]
    fn q_k_rows_interleave_the_two_halves_of_each_head() {
        // one head of 4 rows: halves (0, 1) and (2, 3) become pairs (0, 2), (1, 3)
        let rows: Vec<usize> = (0..8).map(|r| permuted_row(r, 8, 2)).collect();
        assert_eq!(rows, vec![0, 2, 1, 3, 4, 6, 5, 7]);
    }
}
