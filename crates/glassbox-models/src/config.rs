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
        let params = cfg.get("rope_parameters").filter(|v| v.is_object());
        let scaling = cfg.get("rope_scaling").filter(|v| v.is_object());
        let from_params = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_f64);
        let theta = from_params("rope_theta")
            .or(cfg.f64_opt(&["rope_theta", "rotary_emb_base"])?)
            .unwrap_or(10_000.0);
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
                let num = |key: &str| -> Result<f64> {
                    s.get(key).and_then(Value::as_f64).ok_or_else(|| {
                        ModelError::config(format!("rope scaling `{kind}` needs `{key}`"))
                    })
                };
                match kind {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear {
                        factor: num("factor")?,
                    },
                    "llama3" => RopeScaling::Llama3 {
                        factor: num("factor")?,
                        low_freq_factor: num("low_freq_factor")?,
                        high_freq_factor: num("high_freq_factor")?,
                        original_max_position_embeddings: num("original_max_position_embeddings")?,
                    },
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
                            "rope scaling type `{other}` is not supported (supported: default, linear, llama3, freq_factors)"
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

    /// The inverse frequency of each rotating pair, after scaling.
    pub fn inv_freq(&self) -> Vec<f64> {
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
