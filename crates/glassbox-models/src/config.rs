//! Model settings read from Hugging Face `config.json` files through the shared reader
//! [`HfConfig`] (`glassbox_formats::hf_config`, which also serves `glassbox inspect`): rotary
//! settings live either in `rope_theta` + `rope_scaling` (transformers ≤ 4) or in
//! `rope_parameters` (transformers 5); [`RopeConfig::from_config`] accepts both.

use serde_json::Value;

use crate::error::{ModelError, Result};

/// The one config reader, shared with `glassbox inspect` (see [`glassbox_formats::hf_config`]).
pub use glassbox_formats::hf_config::HfConfig;

impl From<glassbox_formats::hf_config::ConfigError> for ModelError {
    fn from(e: glassbox_formats::hf_config::ConfigError) -> Self {
        ModelError::Config(e.0)
    }
}

/// How rotary frequencies are rescaled for long contexts.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (`rope_type: linear`).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's wavelength-dependent rescaling (`rope_type: llama3`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Each frequency divided by its own factor: llama.cpp's `rope_freqs` tensor, which a GGUF
    /// carries instead of a rule (`rope_type: freq_factors`, `factors: [...]`, one per pair; a
    /// glassbox name, written only into configs synthesized from GGUF metadata).
    FreqFactors(Vec<f64>),
    /// YaRN (`rope_type: yarn`): frequencies between interpolation and extrapolation by a
    /// ramp over the pairs, cos and sin multiplied by an attention factor (gpt-oss, DeepSeek-V3).
    Yarn(Yarn),
}

/// YaRN rotary scaling parameters, exactly as transformers' `_compute_yarn_parameters`.
#[derive(Clone, Debug, PartialEq)]
pub struct Yarn {
    pub factor: f64,
    pub original_max_position_embeddings: f64,
    pub beta_fast: f64,
    pub beta_slow: f64,
    /// Multiplier of cos and sin.
    pub attention_factor: f64,
    /// DeepSeek-V3 also folds `mscale(factor, mscale_all_dim)²` into its softmax scale (0: none).
    pub mscale_all_dim: f64,
    /// Round the ramp's ends outwards (the default; gpt-oss turns it off).
    pub truncate: bool,
}

/// YaRN's magnitude correction `0.1 · m · ln(scale) + 1` (1 when not scaling up).
pub fn yarn_get_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl Yarn {
    /// From the scaling block `spec` (`rope_scaling`, or transformers 5's `rope_parameters`).
    pub fn from_spec(cfg: HfConfig, spec: &Value) -> Result<Yarn> {
        let num = |key: &str| spec.get(key).and_then(Value::as_f64);
        let max_pos = cfg.f64_opt(&["max_position_embeddings"])?.unwrap_or(2048.0);
        let original = num("original_max_position_embeddings").unwrap_or(max_pos);
        let factor = num("factor").unwrap_or(max_pos / original);
        if !(factor.is_finite() && factor > 0.0 && original.is_finite() && original > 0.0) {
            return Err(ModelError::config(format!(
                "yarn rope scaling needs a positive `factor` and `original_max_position_embeddings` (got {factor}, {original})"
            )));
        }
        // Python `x or default`: a zero counts as absent.
        let nonzero = |key: &str| num(key).filter(|v| *v != 0.0);
        let mscale = nonzero("mscale");
        let mscale_all_dim = nonzero("mscale_all_dim");
        let attention_factor = match (num("attention_factor"), mscale, mscale_all_dim) {
            (Some(a), _, _) => a,
            (None, Some(m), Some(m_all)) => {
                yarn_get_mscale(factor, m) / yarn_get_mscale(factor, m_all)
            }
            _ => yarn_get_mscale(factor, 1.0),
        };
        Ok(Yarn {
            factor,
            original_max_position_embeddings: original,
            beta_fast: nonzero("beta_fast").unwrap_or(32.0),
            beta_slow: nonzero("beta_slow").unwrap_or(1.0),
            attention_factor,
            mscale_all_dim: mscale_all_dim.unwrap_or(0.0),
            truncate: spec
                .get("truncate")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }

    /// Inverse frequency of each of the `dim / 2` rotating pairs for base `theta`.
    pub fn inv_freq(&self, theta: f64, dim: usize) -> Vec<f64> {
        let d = dim as f64;
        let pos_freqs: Vec<f64> = (0..dim / 2)
            .map(|i| theta.powf(2.0 * i as f64 / d))
            .collect();
        let correction_dim = |rotations: f64| {
            d * (self.original_max_position_embeddings / (rotations * 2.0 * std::f64::consts::PI))
                .ln()
                / (2.0 * theta.ln())
        };
        let (mut low, mut high) = (
            correction_dim(self.beta_fast),
            correction_dim(self.beta_slow),
        );
        if self.truncate {
            low = low.floor();
            high = high.ceil();
        }
        let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
        if low == high {
            high += 0.001; // as the reference, to avoid dividing by zero
        }
        pos_freqs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                let extrapolation = 1.0 - ramp;
                (1.0 / (self.factor * p)) * (1.0 - extrapolation) + (1.0 / p) * extrapolation
            })
            .collect()
    }
}

/// Rotary position embedding settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    /// Number of leading dimensions of each head that rotate (`partial_rotary_factor` × d_head).
    pub rotary_dim: usize,
    /// Rotate adjacent pairs (GPT-J, GLM) instead of the two halves (`rotate_half`, Llama/NeoX).
    pub interleaved: bool,
    pub scaling: RopeScaling,
}

impl RopeConfig {
    /// The settings of the layers of type `layer_type` (`sliding_attention`,
    /// `full_attention`) where `rope_parameters` holds one block per layer type (transformers
    /// 5's Gemma 3, OLMo 3); None where it holds one for all.
    pub fn for_layer_type(
        config: &serde_json::Value,
        d_head: usize,
        layer_type: &str,
    ) -> Result<Option<RopeConfig>> {
        let Some(block) = config
            .get("rope_parameters")
            .and_then(|p| p.get(layer_type))
            .filter(|b| b.is_object())
        else {
            return Ok(None);
        };
        let mut view = config.clone();
        view["rope_parameters"] = block.clone();
        Ok(Some(RopeConfig::from_config(HfConfig(&view), d_head)?))
    }

    /// Reads `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (older),
    /// and the partial-rotary fraction under any of its names.
    pub fn from_config(cfg: HfConfig, d_head: usize) -> Result<RopeConfig> {
        // A block of another kind (`"rope_scaling": "yes"`) was ignored; null means none.
        for key in ["rope_parameters", "rope_scaling"] {
            if let Some(v) = cfg.get(key).filter(|v| !v.is_object()) {
                return Err(ModelError::config(format!("`{key}` is not an object: {v}")));
            }
        }
        let params = cfg.get("rope_parameters").filter(|v| v.is_object());
        let scaling = cfg.get("rope_scaling").filter(|v| v.is_object());
        let from_params = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_f64);
        let theta = from_params("rope_theta")
            .or(cfg.f64_opt(&["rope_theta", "rotary_emb_base"])?)
            .unwrap_or(10_000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(ModelError::config(format!(
                "rope_theta {theta}: the rotary base must be a positive number"
            )));
        }
        let fraction = from_params("partial_rotary_factor")
            .or(cfg.f64_opt(&["partial_rotary_factor", "rotary_pct"])?)
            .unwrap_or(1.0);
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ModelError::config(format!(
                "partial rotary fraction {fraction} is outside [0, 1]"
            )));
        }
        let rotary_dim = (d_head as f64 * fraction) as usize;
        // The scaling block is `rope_parameters` itself in transformers 5, `rope_scaling` before.
        let spec = scaling.or(params);
        let scaling = match spec {
            None => RopeScaling::None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                // Every number of a scaling block is a factor or a length: positive.
                let num = |key: &str| -> Result<f64> {
                    let x = s.get(key).and_then(Value::as_f64).ok_or_else(|| {
                        ModelError::config(format!("rope scaling `{kind}` needs `{key}`"))
                    })?;
                    if !(x.is_finite() && x > 0.0) {
                        return Err(ModelError::config(format!(
                            "rope scaling `{kind}`: `{key}` is {x}, not a positive number"
                        )));
                    }
                    Ok(x)
                };
                match kind {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear {
                        factor: num("factor")?,
                    },
                    "llama3" => {
                        let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
                        // The smooth band between the two divides by their difference.
                        if low >= high {
                            return Err(ModelError::config(format!(
                                "rope scaling `llama3`: `low_freq_factor` {low} must be below `high_freq_factor` {high}"
                            )));
                        }
                        RopeScaling::Llama3 {
                            factor: num("factor")?,
                            low_freq_factor: low,
                            high_freq_factor: high,
                            original_max_position_embeddings: num(
                                "original_max_position_embeddings",
                            )?,
                        }
                    }
                    "yarn" => RopeScaling::Yarn(Yarn::from_spec(cfg, s)?),
                    "freq_factors" => {
                        let factors: Option<Vec<f64>> = s
                            .get("factors")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().map(Value::as_f64).collect())
                            .unwrap_or(None);
                        match factors {
                            Some(f) if f.iter().all(|x| x.is_finite() && *x > 0.0) => {
                                RopeScaling::FreqFactors(f)
                            }
                            _ => {
                                return Err(ModelError::config(
                                    "rope scaling `freq_factors` needs `factors`, a list of positive numbers",
                                ))
                            }
                        }
                    }
                    other => {
                        return Err(ModelError::config(format!(
                            "rope scaling type `{other}` is not supported (supported: default, linear, llama3, yarn, freq_factors)"
                        )))
                    }
                }
            }
        };
        if let RopeScaling::FreqFactors(f) = &scaling {
            if f.len() != rotary_dim / 2 {
                return Err(ModelError::config(format!(
                    "{} rope frequency factors for {} rotating pairs",
                    f.len(),
                    rotary_dim / 2
                )));
            }
        }
        Ok(RopeConfig {
            theta,
            rotary_dim,
            interleaved: false,
            scaling,
        })
    }

    /// Multiplier of cos and sin (YaRN's attention factor, else 1).
    pub fn cos_sin_scale(&self) -> f64 {
        match &self.scaling {
            RopeScaling::Yarn(y) => y.attention_factor,
            _ => 1.0,
        }
    }

    /// The inverse frequency of each rotating pair, after scaling.
    pub fn inv_freq(&self) -> Vec<f64> {
        if let RopeScaling::Yarn(y) = &self.scaling {
            return y.inv_freq(self.theta, self.rotary_dim);
        }
        let half = self.rotary_dim / 2;
        let base: Vec<f64> = (0..half)
            .map(|i| 1.0 / self.theta.powf(2.0 * i as f64 / self.rotary_dim as f64))
            .collect();
        match &self.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::FreqFactors(factors) => {
                base.iter().zip(factors).map(|(f, d)| f / d).collect()
            }
            RopeScaling::Yarn(_) => unreachable!("handled above"),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_ctx,
            } => {
                let low_freq_wavelen = old_ctx / low_freq_factor;
                let high_freq_wavelen = old_ctx / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_ctx / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}
