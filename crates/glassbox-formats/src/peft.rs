//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! PEFT saves each adapted module `M` (its name in the base model, e.g.
//! `model.layers.0.self_attn.q_proj`) as `base_model.model.M.lora_A.weight` `[r, in]` and
//! `base_model.model.M.lora_B.weight` `[out, r]`; the module then computes
//! `base(x) + s·B(A(x))` with `s = lora_alpha / r` (`/ √r` under `use_rslora`; `rank_pattern`
//! and `alpha_pattern` override r and alpha per module). [`LoraAdapter::open`] reads that,
//! refusing what it does not apply (DoRA, trained biases, `modules_to_save`, embedding
//! adapters) rather than dropping it; [`LoraAdapter::write`] writes what PEFT writes and reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{to_f32, Checkpoint, DType, FormatError, Result};

const PREFIX: &str = "base_model.model.";

/// One adapted module.
#[derive(Clone, Debug)]
pub struct LoraModule {
    /// `[r, in]`, row-major.
    pub a: Vec<f32>,
    /// `[out, r]`, row-major.
    pub b: Vec<f32>,
    pub rank: usize,
    pub in_dim: usize,
    pub out_dim: usize,
    /// `lora_alpha / r` (or `/ √r`).
    pub scale: f64,
    /// The name of the copy of the module's own weight the file holds
    /// (`…{module}.base_layer.weight`: PEFT's `save_embedding_layers` saves it for an
    /// embedding-named layer such as `lm_head`), which PEFT loads over the model's.
    pub saved_base: Option<String>,
}

impl LoraModule {
    /// `scale · B·A` as `[out, in]`, each element one chain over the rank in f64.
    pub fn delta(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.out_dim * self.in_dim];
        for o in 0..self.out_dim {
            for i in 0..self.in_dim {
                let mut s = 0f64;
                for k in 0..self.rank {
                    s += self.b[o * self.rank + k] as f64 * self.a[k * self.in_dim + i] as f64;
                }
                out[o * self.in_dim + i] = (s * self.scale) as f32;
            }
        }
        out
    }
}

/// The fields of PEFT's `LoraConfig` this reader honours or writes.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    pub lora_dropout: f64,
    pub use_rslora: bool,
    /// GPT-2's `Conv1D` stores `[in, out]`: merging transposes the delta.
    pub fan_in_fan_out: bool,
    pub base_model_name_or_path: Option<String>,
    pub rank_pattern: BTreeMap<String, usize>,
    pub alpha_pattern: BTreeMap<String, f64>,
}

/// A loaded adapter: per module name (without PEFT's prefix).
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    pub path: PathBuf,
    pub config: LoraConfig,
    pub modules: BTreeMap<String, LoraModule>,
}

/// PEFT's pattern match: `key` is the module's name or a dotted suffix of it.
fn pattern_matches(key: &str, module: &str) -> bool {
    module == key || module.ends_with(&format!(".{key}"))
}

impl LoraConfig {
    /// Rank and alpha of `module` (the patterns' first match, else the defaults).
    fn rank_alpha(&self, module: &str) -> (usize, f64) {
        let r = self
            .rank_pattern
            .iter()
            .find(|(k, _)| pattern_matches(k, module))
            .map_or(self.r, |(_, &r)| r);
        let alpha = self
            .alpha_pattern
            .iter()
            .find(|(k, _)| pattern_matches(k, module))
            .map_or(self.lora_alpha, |(_, &a)| a);
        (r, alpha)
    }

    fn scale(&self, r: usize, alpha: f64) -> f64 {
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }
}

impl LoraAdapter {
    /// Reads a PEFT adapter folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text =
            crate::input::read_text(&config_path, "adapter config", crate::input::limit::CONFIG)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| FormatError::invalid(&config_path, format!("malformed JSON: {e}")))?;
        let bad = |m: String| FormatError::invalid(&config_path, m);
        let unsupported = |m: &str| FormatError::unsupported(&config_path, m.to_string());
        match v.get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            other => {
                return Err(bad(format!(
                    "peft_type {other:?}: only LORA adapters are read"
                )))
            }
        }
        if v.get("use_dora").and_then(Value::as_bool) == Some(true) {
            return Err(unsupported("a DoRA adapter (use_dora): not applied here"));
        }
        if v.get("bias")
            .and_then(Value::as_str)
            .is_some_and(|b| b != "none")
        {
            return Err(unsupported(
                "an adapter that trains biases (bias != \"none\"): not applied here",
            ));
        }
        if v.get("modules_to_save")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(unsupported(
                "an adapter with modules_to_save (whole modules replaced): not applied here",
            ));
        }
        let r = v
            .get("r")
            .and_then(Value::as_u64)
            .filter(|&r| r > 0)
            .ok_or_else(|| bad("`r` must be a positive integer".into()))? as usize;
        let lora_alpha = v
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("no `lora_alpha`".into()))?;
        let target_modules = match v.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let pattern = |key: &str| -> BTreeMap<String, Value> {
            v.get(key)
                .and_then(Value::as_object)
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        };
        let config = LoraConfig {
            r,
            lora_alpha,
            target_modules,
            lora_dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
            use_rslora: v
                .get("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            fan_in_fan_out: v
                .get("fan_in_fan_out")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            base_model_name_or_path: v
                .get("base_model_name_or_path")
                .and_then(Value::as_str)
                .map(String::from),
            rank_pattern: pattern("rank_pattern")
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_u64()? as usize)))
                .collect(),
            alpha_pattern: pattern("alpha_pattern")
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_f64()?)))
                .collect(),
        };

        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.exists() && dir.join("adapter_model.bin").exists() {
            return Err(FormatError::unsupported(
                dir.join("adapter_model.bin"),
                "a pickled adapter: save it with safe_serialization (adapter_model.safetensors)",
            ));
        }
        let weights = Checkpoint::open_safetensors(&weights_path)?;
        let mut parts: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        let mut saved_base: BTreeMap<String, String> = BTreeMap::new();
        for t in weights.tensors() {
            let rest = t.name.strip_prefix(PREFIX).unwrap_or(&t.name);
            let rest = rest.replace(".default.weight", ".weight");
            if let Some(module) = rest.strip_suffix(".base_layer.weight") {
                saved_base.insert(module.to_string(), t.name.clone());
            } else if let Some(module) = rest.strip_suffix(".lora_A.weight") {
                parts.entry(module.to_string()).or_default().0 = Some(t.name.clone());
            } else if let Some(module) = rest.strip_suffix(".lora_B.weight") {
                parts.entry(module.to_string()).or_default().1 = Some(t.name.clone());
            } else if rest.contains("lora_embedding_") {
                return Err(FormatError::unsupported(
                    &weights_path,
                    format!("`{}`: embedding adapters are not applied here", t.name),
                ));
            } else {
                return Err(FormatError::invalid(
                    &weights_path,
                    format!("`{}` is not a LoRA A or B matrix", t.name),
                ));
            }
        }
        let wbad = |m: String| FormatError::invalid(&weights_path, m);
        let mut modules = BTreeMap::new();
        for (module, pair) in parts {
            let (Some(a_name), Some(b_name)) = pair else {
                return Err(wbad(format!(
                    "`{module}`: lora_A without lora_B or lora_B without lora_A"
                )));
            };
            let (a_info, b_info) = (
                weights.info(&a_name).expect("listed"),
                weights.info(&b_name).expect("listed"),
            );
            let (&[rank, in_dim], &[out_dim, rank_b]) =
                (a_info.shape.as_slice(), b_info.shape.as_slice())
            else {
                return Err(wbad(format!(
                    "`{module}`: A {:?} and B {:?} must be matrices",
                    a_info.shape, b_info.shape
                )));
            };
            let (r_cfg, alpha) = config.rank_alpha(&module);
            if rank != rank_b || rank != r_cfg {
                return Err(wbad(format!(
                    "`{module}`: A {:?} and B {:?} disagree with each other or with r = {r_cfg}",
                    a_info.shape, b_info.shape
                )));
            }
            let read = |name: &str, dtype: DType| -> Result<Vec<f32>> {
                to_f32(dtype, weights.raw_bytes(name)?)
                    .ok_or_else(|| wbad(format!("`{name}`: unreadable {dtype}")))
            };
            let saved = saved_base.remove(&module);
            if let Some(name) = &saved {
                let shape = &weights.info(name).expect("listed").shape;
                if shape.as_slice() != [out_dim, in_dim] {
                    return Err(wbad(format!(
                        "`{name}`: the saved weight is {shape:?}, the adapted layer [{out_dim}, {in_dim}]"
                    )));
                }
            }
            let module_entry = LoraModule {
                a: read(&a_name, a_info.dtype)?,
                b: read(&b_name, b_info.dtype)?,
                rank,
                in_dim,
                out_dim,
                scale: config.scale(rank, alpha),
                saved_base: saved,
            };
            modules.insert(module, module_entry);
        }
        if let Some((module, name)) = saved_base.into_iter().next() {
            return Err(wbad(format!(
                "`{name}`: a saved weight of `{module}`, which the adapter has no LoRA matrices for (PEFT's modules_to_save are not applied here)"
            )));
        }
        if modules.is_empty() {
            return Err(wbad("no LoRA matrices".into()));
        }
        // PEFT builds LoRA layers only where the config says; weights elsewhere are not
        // applied there. A file whose weights and config disagree is refused, not resolved
        // one way in silence. (A `target_modules` string is a regular expression, which the
        // weights themselves are taken to follow.)
        let listed = matches!(v.get("target_modules"), Some(Value::Array(_)));
        let layers: Option<Vec<u64>> = match v.get("layers_to_transform") {
            Some(Value::Number(n)) => n.as_u64().map(|l| vec![l]),
            Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_u64).collect()),
            _ => None,
        };
        for module in modules.keys() {
            if listed && !targets(&config.target_modules, module) {
                return Err(bad(format!(
                    "adapter_model.safetensors adapts `{module}`, which target_modules {:?} does not name",
                    config.target_modules
                )));
            }
            if let Some(layers) = &layers {
                let layer = module.split('.').find_map(|c| c.parse::<u64>().ok());
                if !layer.is_some_and(|l| layers.contains(&l)) {
                    return Err(bad(format!(
                        "adapter_model.safetensors adapts `{module}`, outside layers_to_transform {layers:?}"
                    )));
                }
            }
        }
        Ok(LoraAdapter {
            path: dir.to_path_buf(),
            config,
            modules,
        })
    }

    /// The copy of `module`'s own weight the adapter file holds ([`LoraModule::saved_base`]),
    /// as f32 `[out, in]` row-major; None when it holds none.
    pub fn saved_base(&self, module: &str) -> Result<Option<Vec<f32>>> {
        let Some(name) = self.modules.get(module).and_then(|m| m.saved_base.as_ref()) else {
            return Ok(None);
        };
        let path = self.path.join("adapter_model.safetensors");
        let weights = Checkpoint::open_safetensors(&path)?;
        let info = weights
            .info(name)
            .ok_or_else(|| FormatError::invalid(&path, format!("`{name}` is gone")))?;
        to_f32(info.dtype, weights.raw_bytes(name)?)
            .map(Some)
            .ok_or_else(|| {
                FormatError::invalid(&path, format!("`{name}`: unreadable {}", info.dtype))
            })
    }

    /// Writes the adapter as PEFT saves one (the config's fields PEFT 0.x writes, tensors in
    /// f32), atomically per file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
        let c = &self.config;
        let config = json!({
            "alpha_pattern": c.alpha_pattern,
            "auto_mapping": null,
            "base_model_name_or_path": c.base_model_name_or_path,
            "bias": "none",
            "fan_in_fan_out": c.fan_in_fan_out,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": c.lora_alpha,
            "lora_dropout": c.lora_dropout,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": c.r,
            "rank_pattern": c.rank_pattern,
            "revision": null,
            "target_modules": c.target_modules,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": c.use_rslora,
        });
        let mut tensors = Vec::new();
        for (name, m) in &self.modules {
            tensors.push((
                format!("{PREFIX}{name}.lora_A.weight"),
                vec![m.rank, m.in_dim],
                &m.a,
            ));
            tensors.push((
                format!("{PREFIX}{name}.lora_B.weight"),
                vec![m.out_dim, m.rank],
                &m.b,
            ));
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(n, shape, data)| {
                let bytes: &[u8] = bytemuck_f32(data);
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytes,
                )
                .map_err(|e| FormatError::Write(format!("`{n}`: {e}")))?;
                Ok((n.clone(), view))
            })
            .collect::<Result<_>>()?;
        let bytes =
            safetensors::serialize(views, None).map_err(|e| FormatError::Write(e.to_string()))?;
        crate::output::write_bytes(&dir.join("adapter_model.safetensors"), &bytes)?;
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| FormatError::Write(e.to_string()))?;
        crate::output::write_bytes(&dir.join("adapter_config.json"), text.as_bytes())
    }
}

/// f32s as their little-endian bytes (every target glassbox builds for is little-endian).
fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Whether `module` (a linear layer's name in the base model) is one the adapter's
/// `target_modules` names: the name itself or its last dotted components.
pub fn targets(target_modules: &[String], module: &str) -> bool {
    target_modules.iter().any(|t| pattern_matches(t, module))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_dotted_suffixes_only() {
        assert!(pattern_matches("q_proj", "model.layers.0.self_attn.q_proj"));
        assert!(pattern_matches(
            "self_attn.q_proj",
            "model.layers.0.self_attn.q_proj"
        ));
        assert!(!pattern_matches("proj", "model.layers.0.self_attn.q_proj"));
    }

    #[test]
    fn delta_is_scale_times_b_a() {
        let m = LoraModule {
            a: vec![1.0, 2.0, 3.0, 4.0],
            b: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            rank: 2,
            in_dim: 2,
            out_dim: 3,
            scale: 0.5,
            saved_base: None,
        };
        assert_eq!(m.delta(), vec![0.5, 1.0, 1.5, 2.0, 2.0, 3.0]);
    }
}

/// What [`merge`] did.
#[derive(Clone, Debug)]
pub struct MergeReport {
    pub merged: usize,
    pub copied: usize,
}

/// Writes `checkpoint` (a Hub snapshot) with `adapter` merged into its weights to the folder
/// `out`: `W + s·B·A` (transposed for `fan_in_fan_out` layers), in each weight's own dtype, as
/// PEFT's `merge_and_unload` computes it; every other tensor and the config, tokenizer and
/// generation files copied. Streams one tensor at a time into `model.safetensors`, in a
/// temporary folder renamed to `out` when complete.
pub fn merge(checkpoint: &Checkpoint, adapter: &LoraAdapter, out: &Path) -> Result<MergeReport> {
    if checkpoint.kind != crate::CheckpointKind::HubSnapshot {
        return Err(FormatError::unsupported(
            &checkpoint.path,
            "merging writes a Hub snapshot: give the base model's folder (config.json + safetensors)",
        ));
    }
    for module in adapter.modules.keys() {
        let name = format!("{module}.weight");
        let Some(info) = checkpoint.info(&name) else {
            return Err(FormatError::invalid(
                &adapter.path,
                format!("`{name}` is not in {}", checkpoint.path.display()),
            ));
        };
        // PEFT merges into the saved copy of the weight it loaded over the model's: the same
        // merge only when the two are equal.
        if let Some(saved) = adapter.saved_base(module)? {
            let own = to_f32(info.dtype, checkpoint.raw_bytes(&name)?);
            if own.as_deref() != Some(saved.as_slice()) {
                return Err(FormatError::unsupported(
                    &adapter.path,
                    format!("the adapter holds its own copy of `{name}` (PEFT's save_embedding_layers), which differs from the model's: PEFT would merge into that copy; save the adapter with save_embedding_layers=False from the model it was trained on"),
                ));
            }
        }
    }
    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| FormatError::io(&tmp, e))?;
        for file in [
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            let src = checkpoint.path.join(file);
            if src.is_file() {
                std::fs::copy(&src, tmp.join(file)).map_err(|e| FormatError::io(&src, e))?;
            }
        }
        // The safetensors header: every tensor in name order, offsets as written below.
        let tensors = checkpoint.tensors();
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        for t in tensors {
            let adapted = t
                .name
                .strip_suffix(".weight")
                .is_some_and(|m| adapter.modules.contains_key(m));
            if adapted && !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
                return Err(FormatError::unsupported(
                    &checkpoint.path,
                    format!(
                        "`{}` is {}: merging needs F32, F16 or BF16",
                        t.name, t.dtype
                    ),
                ));
            }
            if t.dtype.is_quantized() {
                return Err(FormatError::unsupported(
                    &checkpoint.path,
                    format!("`{}` is {}: not a safetensors type", t.name, t.dtype),
                ));
            }
            let dtype = t.dtype.name();
            header.insert(
                t.name.clone(),
                json!({"dtype": dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes]}),
            );
            offset += t.bytes;
        }
        let mut head = serde_json::to_vec(&Value::Object(header))
            .map_err(|e| FormatError::Write(e.to_string()))?;
        while head.len() % 8 != 0 {
            head.push(b' ');
        }
        let mut merged = 0;
        crate::output::write_atomically(&tmp.join("model.safetensors"), |w| {
            let io = |e: std::io::Error| FormatError::Write(e.to_string());
            w.write_all(&(head.len() as u64).to_le_bytes())
                .map_err(io)?;
            w.write_all(&head).map_err(io)?;
            for t in tensors {
                let bytes = checkpoint.raw_bytes(&t.name)?;
                let module = t
                    .name
                    .strip_suffix(".weight")
                    .and_then(|m| adapter.modules.get(m));
                let Some(m) = module else {
                    w.write_all(bytes).map_err(io)?;
                    continue;
                };
                let mut values = to_f32(t.dtype, bytes).ok_or_else(|| {
                    FormatError::invalid(&checkpoint.path, format!("`{}`: unreadable", t.name))
                })?;
                let delta = m.delta();
                let stored_in_out = t.shape == [m.in_dim, m.out_dim]
                    && (adapter.config.fan_in_fan_out || t.shape != [m.out_dim, m.in_dim]);
                if !stored_in_out && t.shape != [m.out_dim, m.in_dim] {
                    return Err(FormatError::invalid(
                        &adapter.path,
                        format!(
                            "`{}` is {:?}, the adapter's layer [{}, {}]",
                            t.name, t.shape, m.out_dim, m.in_dim
                        ),
                    ));
                }
                for o in 0..m.out_dim {
                    for i in 0..m.in_dim {
                        let at = if stored_in_out {
                            i * m.out_dim + o
                        } else {
                            o * m.in_dim + i
                        };
                        values[at] += delta[o * m.in_dim + i];
                    }
                }
                let out: Vec<u8> = match t.dtype {
                    DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    DType::F16 => values
                        .iter()
                        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                        .collect(),
                    _ => values
                        .iter()
                        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                        .collect(),
                };
                w.write_all(&out).map_err(io)?;
                merged += 1;
            }
            Ok(())
        })?;
        if out.exists() {
            std::fs::remove_dir(out).map_err(|e| FormatError::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| FormatError::io(out, e))?;
        Ok(MergeReport {
            merged,
            copied: tensors.len() - merged,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
