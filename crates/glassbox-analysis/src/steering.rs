//! Steering with control vectors, in llama.cpp's control-vector GGUF format.
//!
//! **The file.** `general.architecture = "controlvector"`, `controlvector.model_hint` (a
//! string), `controlvector.layer_count`, and one F32 tensor `direction.{N}` [d_model] per
//! steered layer, `N ≥ 1` — what llama.cpp's `cvector-generator` and repeng write, and what
//! `common_control_vector_load` reads (it rejects `direction.0`, non-F32 and non-1-D tensors,
//! and tensors of differing lengths; it ignores every metadata key).
//!
//! **Where it applies.** llama.cpp stores `direction.N` at offset `(N − 1)·n_embd` of its
//! buffer and fills layer `il`'s tensor from offset `(il − 1)·n_embd` (llama-adapter.cpp), so
//! `direction.N` belongs to the 0-based block `N`; the block adds it to its output
//! (`build_cvec` on `l_out-N`), which is TransformerLens' `blocks.N.hook_resid_post`. Block
//! 0 cannot be steered, and directions past the last block are ignored, as in llama.cpp.
//! [`ControlVector::apply`] adds `scale × direction.N` to `blocks.N.hook_resid_post` at every
//! position.
//!
//! **How it is made.** As llama.cpp's `cvector-generator --method mean` (cvector-generator.cpp,
//! mean.hpp): positive prompt `i` is paired with negative prompt `i` (as many of each); the
//! shorter of a pair is padded with the token a lone space ends with, to the longer's length;
//! at each position the pair's residual streams *entering* block N (`blocks.N.hook_resid_pre`,
//! which is block N−1's output — the generator reads `l_out-(N−1)` and names it `direction.N`,
//! as repeng does with `hidden_states[N]`) are subtracted, positive minus negative, and the
//! rows with no element above 1e-6 are dropped (the positions both prompts share from the
//! start, the BOS first: their difference is 0). The direction is the mean of the rows kept
//! over all pairs, normalised to unit length by default. (Averaging each set over its own
//! tokens instead weighs the BOS's large residual differently on each side when the sets'
//! token counts differ: the direction then points mostly along the BOS.)

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use glassbox_formats::{DType as FileDType, GgufFile};
use glassbox_models::{HookedModel, Hooks, Intervention, NameFilter, Selection};
use serde::Serialize;

use crate::error::{AnalysisError, Result};

/// A steering vector per layer (0-based block index whose output it is added to).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlVector {
    pub model_hint: String,
    pub d_model: usize,
    pub directions: BTreeMap<usize, Vec<f32>>,
}

fn file_error(path: &Path, message: impl Into<String>) -> AnalysisError {
    AnalysisError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl ControlVector {
    /// Mean-difference directions for blocks `layers` (see the module documentation) from
    /// tokenized `positive` and `negative` prompts, paired in order; unit length if
    /// `normalize`.
    pub fn from_contrast(
        model: &HookedModel,
        positive: &[Vec<u32>],
        negative: &[Vec<u32>],
        layers: RangeInclusive<usize>,
        normalize: bool,
    ) -> Result<Self> {
        let c = contrast(model, positive, negative, layers)?;
        Ok(if normalize {
            c.vector.normalized()
        } else {
            c.vector
        })
    }

    /// Each direction's L2 norm, by layer.
    pub fn norms(&self) -> Vec<(usize, f32)> {
        self.directions
            .iter()
            .map(|(l, v)| (*l, v.iter().map(|x| x * x).sum::<f32>().sqrt()))
            .collect()
    }

    /// Each direction scaled to unit length (zero directions stay zero), as llama.cpp's
    /// generator writes them.
    pub fn normalized(&self) -> Self {
        let mut out = self.clone();
        for v in out.directions.values_mut() {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        out
    }

    /// Writes the llama.cpp control-vector GGUF (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        let directions: Vec<(usize, Vec<f32>)> = self
            .directions
            .iter()
            .map(|(l, v)| (*l, v.clone()))
            .collect();
        glassbox_formats::gguf_write::write_control_vector(path, &self.model_hint, &directions)?;
        Ok(())
    }

    /// Reads a llama.cpp control-vector GGUF, with llama.cpp's checks: tensors named
    /// `direction.N` with N ≥ 1, F32, one-dimensional, all of one length.
    pub fn read(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        if let Some(arch) = file.architecture() {
            if arch != "controlvector" {
                return Err(file_error(
                    path,
                    format!("general.architecture is `{arch}`, not `controlvector`: not a control vector"),
                ));
            }
        }
        let model_hint = file
            .get_str("controlvector.model_hint")
            .unwrap_or_default()
            .to_string();
        let mut directions = BTreeMap::new();
        let mut d_model = None;
        for info in &file.tensors {
            let layer = info
                .name
                .strip_prefix("direction.")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    file_error(
                        path,
                        format!("tensor `{}` is not named direction.N", info.name),
                    )
                })?;
            if layer == 0 {
                return Err(file_error(
                    path,
                    "direction.0 is invalid: llama.cpp numbers control-vector layers from 1",
                ));
            }
            if info.dtype != FileDType::F32 {
                return Err(file_error(
                    path,
                    format!("{} is {:?}, control vectors are F32", info.name, info.dtype),
                ));
            }
            if info.shape.len() != 1 {
                return Err(file_error(
                    path,
                    format!(
                        "{} has shape {:?}, expected one dimension",
                        info.name, info.shape
                    ),
                ));
            }
            let n = info.shape[0];
            if *d_model.get_or_insert(n) != n {
                return Err(file_error(
                    path,
                    format!(
                        "{} has {n} values, earlier directions had {}",
                        info.name,
                        d_model.unwrap_or(0)
                    ),
                ));
            }
            let bytes = file.bytes(info);
            if bytes.len() != n * 4 {
                return Err(file_error(
                    path,
                    format!("{}: data size does not match its shape", info.name),
                ));
            }
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(file_error(
                    path,
                    format!("{} holds non-finite values", info.name),
                ));
            }
            // llama.cpp adds repeated directions of one layer together
            let slot = directions.entry(layer).or_insert_with(|| vec![0.0; n]);
            slot.iter_mut().zip(values).for_each(|(a, b)| *a += b);
        }
        let d_model = d_model.ok_or_else(|| file_error(path, "no direction tensors"))?;
        Ok(ControlVector {
            model_hint,
            d_model,
            directions,
        })
    }

    /// Adds `scale × direction.N` to `blocks.N.hook_resid_post` for every layer of the model
    /// this vector has; returns the layers ignored because the model has no such block.
    pub fn apply(&self, hooks: &mut Hooks, model: &HookedModel, scale: f32) -> Result<Vec<usize>> {
        let info = model.info();
        if self.d_model != info.d_model {
            return Err(AnalysisError::input(format!(
                "the control vector has {} dimensions, the model's residual stream {}",
                self.d_model, info.d_model
            )));
        }
        let mut ignored = Vec::new();
        for (&layer, v) in &self.directions {
            if layer >= info.n_layers {
                ignored.push(layer);
                continue;
            }
            let add = (Tensor::new(v.as_slice(), model.device())? * scale as f64)?;
            let name = format!("blocks.{layer}.hook_resid_post");
            let filter =
                NameFilter::new(&[name]).map_err(|e| AnalysisError::input(e.to_string()))?;
            hooks.intervene(filter, Intervention::Add(add), Selection::All);
        }
        Ok(ignored)
    }
}

/// Writes `vector` (normalised to unit length per direction unless `normalize` is false) to
/// `path` and reads it back: what a reader (llama.cpp's checks) sees must be what was written,
/// and a file that fails that is removed. Refuses a direction that is not finite.
pub fn write_checked(raw: &ControlVector, normalize: bool, path: &Path) -> Result<ControlVector> {
    // A zero direction has no unit length: normalising it gave zeros reported as unit length.
    if let (true, Some((layer, _))) = (
        normalize,
        raw.directions
            .iter()
            .find(|(_, v)| v.iter().all(|x| *x == 0.0)),
    ) {
        return Err(AnalysisError::input(format!(
            "the direction at layer {layer} is zero (the two sides do not differ there), so it has no unit length: nothing written"
        )));
    }
    let vector = if normalize {
        raw.normalized()
    } else {
        raw.clone()
    };
    if let Some((layer, _)) = vector
        .directions
        .iter()
        .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
    {
        return Err(AnalysisError::input(format!(
            "the direction at layer {layer} is not finite (the model's activations there are NaN or infinite): nothing written"
        )));
    }
    vector.write(path)?;
    let back = ControlVector::read(path);
    if !matches!(&back, Ok(b) if b.directions == vector.directions) {
        let _ = std::fs::remove_file(path);
        return Err(AnalysisError::File {
            path: path.to_path_buf(),
            message: "the control vector read back differs from the one written".into(),
        });
    }
    Ok(vector)
}

/// The `--json` document of `glassbox steer`: where the vector went and, per steered block,
/// the length of the raw mean difference (worth reporting even when the file holds unit
/// vectors).
/// `control`: a contrast's (see [`Contrast::control`]); None for a probe's directions.
pub fn document(
    model: &str,
    out: Option<&Path>,
    raw: &ControlVector,
    normalized: bool,
    control: Option<&Contrast>,
) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = raw
        .norms()
        .iter()
        .map(|(l, n)| {
            let mut entry = serde_json::json!({"layer": l, "hook": format!("blocks.{l}.hook_resid_post"), "mean_difference_norm": n});
            if let Some(c) = control.and_then(|c| c.control.get(l)) {
                entry["swapped_norm"] = serde_json::json!(c.swapped_norm);
                entry["p_value"] = serde_json::json!(c.p_value);
            }
            entry
        })
        .collect();
    let mut doc = serde_json::json!({
        "model": model,
        "out": out,
        "model_hint": raw.model_hint,
        "d_model": raw.d_model,
        "normalized": normalized,
        "layers": layers,
    });
    if let Some(c) = control {
        doc["pairs"] = serde_json::json!(c.pairs);
        doc["control"] = serde_json::json!(
            "swapped_norm: the mean difference's length with each pair's sides swapped at random (the mean over the swaps); p_value: the share of swaps at least as long as the prompts' own (a paired permutation test of no shared direction)"
        );
    }
    doc
}

/// A contrast's mean difference at each layer, and how it compares with the pairs' sides
/// swapped at random: the paired permutation test of "no shared direction".
#[derive(Clone, Debug)]
pub struct Contrast {
    /// The raw (not normalised) mean differences.
    pub vector: ControlVector,
    /// Per layer, the control.
    pub control: BTreeMap<usize, Control>,
    pub pairs: usize,
}

/// The mean difference's length with each pair's sides swapped at random.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Control {
    /// Its mean over the swaps.
    pub swapped_norm: f32,
    /// The share of swaps giving a difference at least as long as the prompts' own (the
    /// identity and its mirror included): small when the pairs share a direction. With n
    /// pairs it is at least 2 / 2ⁿ (0.25 for 3 pairs: too few to tell).
    pub p_value: f64,
}

/// Pairs up to this many are swapped every way; more, [`SWAP_DRAWS`] seeded draws.
const EXACT_PAIRS: usize = 12;
const SWAP_DRAWS: usize = 4096;

/// The paired permutation test over the pairs' summed differences (each pair's kept rows):
/// ‖Σ sᵢ·vᵢ‖ for sign patterns s, through the pairs' Gram matrix.
fn control_of(pair_sums: &[Vec<f64>], count: usize) -> Control {
    let n = pair_sums.len();
    let gram: Vec<Vec<f64>> = pair_sums
        .iter()
        .map(|a| {
            pair_sums
                .iter()
                .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    let norm = |signs: &[f64]| -> f64 {
        let mut q = 0.0;
        for i in 0..n {
            for j in 0..n {
                q += signs[i] * signs[j] * gram[i][j];
            }
        }
        q.max(0.0).sqrt() / count as f64
    };
    let observed = norm(&vec![1.0; n]);
    let patterns: Vec<Vec<f64>> = if n <= EXACT_PAIRS {
        (0..1usize << n)
            .map(|bits| {
                (0..n)
                    .map(|i| if bits >> i & 1 == 1 { -1.0 } else { 1.0 })
                    .collect()
            })
            .collect()
    } else {
        let mut rng = glassbox_models::rng::SplitMix64::keyed(0, "steer/control");
        (0..SWAP_DRAWS)
            .map(|_| {
                (0..n)
                    .map(|_| if rng.next_u64() & 1 == 1 { -1.0 } else { 1.0 })
                    .collect()
            })
            .collect()
    };
    let norms: Vec<f64> = patterns.iter().map(|s| norm(s)).collect();
    // a relative tolerance: the mirror pattern gives the same length up to rounding
    let as_long = norms
        .iter()
        .filter(|&&v| v >= observed * (1.0 - 1e-9))
        .count();
    let p_value = if n <= EXACT_PAIRS {
        as_long as f64 / norms.len() as f64
    } else {
        (1 + as_long) as f64 / (1 + norms.len()) as f64
    };
    Control {
        swapped_norm: (norms.iter().sum::<f64>() / norms.len() as f64) as f32,
        p_value,
    }
}

/// Mean-difference directions for blocks `layers` from tokenized `positive` and `negative`
/// prompts paired in order (see the module documentation), with their control.
pub fn contrast(
    model: &HookedModel,
    positive: &[Vec<u32>],
    negative: &[Vec<u32>],
    layers: RangeInclusive<usize>,
) -> Result<Contrast> {
    let info = model.info();
    if positive.is_empty() || negative.is_empty() {
        return Err(AnalysisError::input(
            "a control vector needs at least one positive and one negative prompt",
        ));
    }
    if positive.len() != negative.len() {
        return Err(AnalysisError::input(format!(
            "{} positive and {} negative prompts: llama.cpp's cvector-generator pairs the i-th positive prompt with the i-th negative one, so give as many of each",
            positive.len(),
            negative.len()
        )));
    }
    if *layers.start() == 0 {
        return Err(AnalysisError::input(
            "layer 0 cannot be steered in llama.cpp's control-vector format (direction.N \
             is added to the output of block N, N ≥ 1)",
        ));
    }
    if *layers.end() >= info.n_layers || layers.is_empty() {
        return Err(AnalysisError::input(format!(
            "layers {}-{} are outside 1-{} (the model has {} blocks)",
            layers.start(),
            layers.end(),
            info.n_layers - 1,
            info.n_layers
        )));
    }
    let names: Vec<String> = layers
        .clone()
        .map(|n| format!("blocks.{n}.hook_resid_pre"))
        .collect();
    let filter = NameFilter::new(&names).map_err(|e| AnalysisError::input(e.to_string()))?;
    // the generator's padding: the last token of a lone space (without a BOS)
    let pad = || -> Result<u32> {
        model
            .tokenizer
            .as_ref()
            .map(|t| t.encode_plain(" "))
            .transpose()?
            .and_then(|ids| ids.last().copied())
            .ok_or_else(|| {
                AnalysisError::input(
                    "the prompts of a pair differ in length and this tokenizer has no token for a space to pad the shorter with (llama.cpp's generator pads with it): give pairs of equal token length",
                )
            })
    };
    let residuals = |ids: &[u32]| -> Result<Vec<Vec<Vec<f32>>>> {
        let (_, cache) = model.run_with_cache(&model.ids_tensor(ids)?, &filter)?;
        names
            .iter()
            .map(|name| {
                Ok(cache
                    .require(name)?
                    .to_dtype(DType::F32)?
                    .get(0)?
                    .to_vec2()?)
            })
            .collect()
    };
    // per layer: each pair's own sum of the rows kept (the control swaps pairs' sides), and
    // the count of rows kept
    let mut kept = vec![0usize; names.len()];
    let mut pair_sums: Vec<Vec<Vec<f64>>> = vec![Vec::new(); names.len()];
    for (pair, (p, n)) in positive.iter().zip(negative).enumerate() {
        if p.is_empty() || n.is_empty() {
            return Err(AnalysisError::input("an empty prompt has no activations"));
        }
        let len = p.len().max(n.len());
        let padded = |ids: &[u32]| -> Result<Vec<u32>> {
            let mut ids = ids.to_vec();
            if ids.len() < len {
                ids.resize(len, pad()?);
            }
            Ok(ids)
        };
        let (rp, rn) = (residuals(&padded(p)?)?, residuals(&padded(n)?)?);
        for (layer, (lp, ln)) in rp.iter().zip(&rn).enumerate() {
            let before = kept[layer];
            let mut own = vec![0f64; info.d_model];
            for (row_p, row_n) in lp.iter().zip(ln) {
                let diff: Vec<f32> = row_p.iter().zip(row_n).map(|(a, b)| a - b).collect();
                // llama.cpp's test of an all-zero row: no element above 1e-6 (a NaN
                // row is kept: a direction that is not finite is refused whole later)
                if diff.iter().any(|&d| d > 1e-6 || d.is_nan()) {
                    own.iter_mut().zip(&diff).for_each(|(s, &d)| *s += d as f64);
                    kept[layer] += 1;
                }
            }
            if kept[layer] == before {
                return Err(AnalysisError::input(format!(
                    "pair {}: the positive and negative prompts give the same residual stream entering block {} (identical prompts?): nothing to contrast",
                    pair + 1,
                    layers.start() + layer
                )));
            }
            pair_sums[layer].push(own);
        }
    }
    let mut directions = BTreeMap::new();
    for ((layer, own), &count) in layers.clone().zip(&pair_sums).zip(&kept) {
        let mut sum = vec![0f64; info.d_model];
        for o in own {
            sum.iter_mut().zip(o).for_each(|(s, o)| *s += o);
        }
        directions.insert(
            layer,
            sum.iter().map(|s| (s / count as f64) as f32).collect(),
        );
    }
    // llama.cpp's generator writes the model's architecture name (`llama`, `gpt2`):
    // the Hub `model_type` is that name
    let model_hint = model
        .config
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or(&info.architecture)
        .to_string();
    let control = layers
        .clone()
        .zip(&pair_sums)
        .zip(&kept)
        .map(|((layer, own), &count)| (layer, control_of(own, count)))
        .collect();
    Ok(Contrast {
        vector: ControlVector {
            model_hint,
            d_model: info.d_model,
            directions,
        },
        control,
        pairs: positive.len(),
    })
}

/// Parses `FILE[:SCALE]` (scale 1 when absent), as llama.cpp's `--control-vector-scaled`.
pub fn parse_file_and_scale(spec: &str) -> Result<(PathBuf, f32)> {
    if let Some((file, scale)) = spec.rsplit_once(':') {
        if let Ok(s) = scale.parse::<f32>() {
            if !s.is_finite() {
                return Err(AnalysisError::input(format!(
                    "control-vector scale `{scale}` is not finite"
                )));
            }
            return Ok((PathBuf::from(file), s));
        }
    }
    Ok((PathBuf::from(spec), 1.0))
}

/// Parses a layer range `L1-L2` or a single layer `L`.
pub fn parse_layers(spec: &str) -> Result<RangeInclusive<usize>> {
    let bad = || AnalysisError::input(format!("`{spec}` is not a layer range like 1-3"));
    let (a, b) = match spec.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (spec.trim(), spec.trim()),
    };
    let a: usize = a.parse().map_err(|_| bad())?;
    let b: usize = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_scale_parse() {
        assert_eq!(
            parse_file_and_scale("v.gguf").unwrap(),
            (PathBuf::from("v.gguf"), 1.0)
        );
        assert_eq!(
            parse_file_and_scale("v.gguf:-0.5").unwrap(),
            (PathBuf::from("v.gguf"), -0.5)
        );
        assert_eq!(parse_file_and_scale("C:dir/v.gguf").unwrap().1, 1.0);
        assert_eq!(parse_layers("1-3").unwrap(), 1..=3);
        assert_eq!(parse_layers("2").unwrap(), 2..=2);
        assert!(parse_layers("3-1").is_err() && parse_layers("a-b").is_err());
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[test]
    fn pairs_that_agree_reach_the_least_p_and_pairs_that_do_not_stay_near_one_half() {
        // four pairs with the same difference: only the identity and its mirror are as long
        let same = vec![vec![1.0, 2.0, -1.0]; 4];
        let c = control_of(&same, 4);
        assert_eq!(c.p_value, 2.0 / 16.0);
        // the swapped mean is the mean of |Σ s| / 4 over the 16 patterns: (2·4 + 8·2 + 6·0)/16/4
        let unit = (1.0f64 + 4.0 + 1.0).sqrt();
        assert!(
            (c.swapped_norm as f64 - unit * 24.0 / 64.0).abs() < 1e-6,
            "{c:?}"
        );
        // orthogonal differences: every pattern is as long, p = 1
        let orthogonal = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        assert_eq!(control_of(&orthogonal, 3).p_value, 1.0);
        // many pairs are drawn, not enumerated: p stays a share, the least 1 / (1 + draws)
        let many = vec![vec![1.0, 0.5]; 20];
        let c = control_of(&many, 20);
        assert!(c.p_value > 0.0 && c.p_value < 0.01, "{c:?}");
    }
}
