//! A sparse autoencoder as SAELens defines it: its configuration, its weights, and its
//! forward pass with SAELens's hook points.
//!
//! ```text
//! x'   = norm_in(x) − b_dec·apply_b_dec_to_input          hook_sae_input sees x (before norm_in)
//! h    = x'·W_enc + b_enc                                  hook_sae_acts_pre
//! f    = standard: relu(h)                                 hook_sae_acts_post
//!        topk:     relu of the k largest of h (h·‖W_dec‖ with rescale_acts_by_decoder_norm)
//!        jumprelu: relu(h)·[h > θ]
//! x̂    = (f, or f / ‖W_dec‖ with rescaling)·W_dec + b_dec  hook_sae_recons
//! out  = norm_out(x̂)                                       hook_sae_output
//! ```
//!
//! `norm_in`/`norm_out` are SAELens's run-time normalisations (`constant_norm_rescale`:
//! x·√d_in/‖x‖ and back; `layer_norm`: centred, divided by the unbiased standard deviation
//! plus 1e-5, and back without the epsilon); `expected_average_only_in` and
//! `covariance_whitening` do nothing inside the SAE (SAELens folds them into the weights when
//! training ends). With `reshape_activations: "hook_z"` the heads of `attn.hook_z` are
//! flattened on the way in and restored on the way out.
//!
//! BatchTopK has no inference form of its own: its training checkpoint (a scalar
//! `topk_threshold`) is read as the JumpReLU SAE SAELens's `save_inference_model` makes of it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use glassbox_formats::input::{self, limit};
use glassbox_formats::SafetensorsFile;
use glassbox_models::kernel_ops;
use glassbox_models::Hooks;
use serde_json::{json, Map, Value};

use crate::error::{FeatureError, Result};

/// SAELens's file names.
pub const CFG_FILE: &str = "cfg.json";
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
pub const SPARSITY_FILE: &str = "sparsity.safetensors";
/// EleutherAI sparsify's weights file (one folder per hook point).
pub const SPARSIFY_WEIGHTS_FILE: &str = "sae.safetensors";

/// Largest `d_in` / `d_sae` accepted from a config before the weights confirm them.
const MAX_DIM: usize = 1 << 26;

/// How feature activations are computed from the pre-activations.
#[derive(Clone, Debug, PartialEq)]
pub enum Activation {
    /// ReLU (SAELens `standard`, trained with an L1 penalty).
    Relu,
    /// The `k` largest pre-activations per token, ReLU'd (SAELens `topk`).
    TopK {
        k: usize,
        /// Select on, and decode from, activations scaled by the decoder rows' norms.
        rescale_acts_by_decoder_norm: bool,
    },
    /// ReLU where the pre-activation exceeds a per-feature threshold (SAELens `jumprelu`,
    /// and what a BatchTopK SAE is at inference).
    JumpRelu,
}

/// SAELens's `normalize_activations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    None,
    /// Applied outside the SAE (a constant scaling folded into the weights after training).
    ExpectedAverageOnlyIn,
    ConstantNormRescale,
    LayerNorm,
    /// Applied outside the SAE and folded after training, like `ExpectedAverageOnlyIn`.
    CovarianceWhitening,
}

impl Normalization {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Normalization::None,
            "expected_average_only_in" => Normalization::ExpectedAverageOnlyIn,
            "constant_norm_rescale" => Normalization::ConstantNormRescale,
            "layer_norm" => Normalization::LayerNorm,
            "covariance_whitening" => Normalization::CovarianceWhitening,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalization::None => "none",
            Normalization::ExpectedAverageOnlyIn => "expected_average_only_in",
            Normalization::ConstantNormRescale => "constant_norm_rescale",
            Normalization::LayerNorm => "layer_norm",
            Normalization::CovarianceWhitening => "covariance_whitening",
        }
    }
}

/// What an SAE's `cfg.json` says, as SAELens reads it.
#[derive(Clone, Debug)]
pub struct SaeConfig {
    pub activation: Activation,
    pub d_in: usize,
    pub d_sae: usize,
    /// The dtype the SAE computes in (`cfg.json` `dtype`); inputs are cast to it.
    pub dtype: DType,
    pub apply_b_dec_to_input: bool,
    pub normalize_activations: Normalization,
    /// `reshape_activations: "hook_z"`: heads flattened on the way in.
    pub reshape_hook_z: bool,
    /// The TransformerLens hook the SAE reads (`metadata.hook_name`).
    pub hook_name: String,
    /// One head of a per-head hook (`metadata.hook_head_index`).
    pub hook_head_index: Option<usize>,
    /// Token ids SAELens's store prepended (`metadata.prepend_bos`), context length etc.: the
    /// whole metadata object, written back on save.
    pub metadata: Map<String, Value>,
}

impl SaeConfig {
    /// SAELens's architecture name for this SAE at inference.
    pub fn architecture(&self) -> &'static str {
        match self.activation {
            Activation::Relu => "standard",
            Activation::TopK { .. } => "topk",
            Activation::JumpRelu => "jumprelu",
        }
    }

    /// `cfg.json` as SAELens's `SAEConfig.to_dict` writes it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("d_in".into(), json!(self.d_in));
        m.insert("d_sae".into(), json!(self.d_sae));
        m.insert("dtype".into(), json!(dtype_name(self.dtype)));
        m.insert("device".into(), json!("cpu"));
        m.insert(
            "apply_b_dec_to_input".into(),
            json!(self.apply_b_dec_to_input),
        );
        m.insert(
            "normalize_activations".into(),
            json!(self.normalize_activations.name()),
        );
        m.insert(
            "reshape_activations".into(),
            json!(if self.reshape_hook_z {
                "hook_z"
            } else {
                "none"
            }),
        );
        let mut metadata = self.metadata.clone();
        metadata.insert("hook_name".into(), json!(self.hook_name));
        metadata.insert("hook_head_index".into(), json!(self.hook_head_index));
        metadata
            .entry("sae_lens_version")
            .or_insert(json!(SAE_LENS_FORMAT_VERSION));
        metadata
            .entry("sae_lens_training_version")
            .or_insert(json!(SAE_LENS_FORMAT_VERSION));
        m.insert("metadata".into(), Value::Object(metadata));
        if let Activation::TopK {
            k,
            rescale_acts_by_decoder_norm,
        } = self.activation
        {
            m.insert("k".into(), json!(k));
            m.insert(
                "rescale_acts_by_decoder_norm".into(),
                json!(rescale_acts_by_decoder_norm),
            );
        }
        m.insert("architecture".into(), json!(self.architecture()));
        Value::Object(m)
    }
}

/// The SAELens file-format version glassbox writes (the version its fixtures were made with).
pub const SAE_LENS_FORMAT_VERSION: &str = "6.54.12";

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

fn parse_dtype(s: &str) -> Option<DType> {
    Some(match s.strip_prefix("torch.").unwrap_or(s) {
        "float32" | "float" => DType::F32,
        "float64" | "double" => DType::F64,
        "float16" | "half" => DType::F16,
        "bfloat16" => DType::BF16,
        _ => return None,
    })
}

/// A sparse autoencoder with its weights, ready to encode, decode and splice.
#[derive(Clone, Debug)]
pub struct Sae {
    pub cfg: SaeConfig,
    /// [d_in, d_sae]
    pub w_enc: Tensor,
    /// [d_sae]
    pub b_enc: Tensor,
    /// [d_sae, d_in]: row j is feature j's direction.
    pub w_dec: Tensor,
    /// [d_in]
    pub b_dec: Tensor,
    /// [d_sae] (JumpReLU only).
    pub threshold: Option<Tensor>,
    /// The folder it was read from, for messages.
    pub source: PathBuf,
}

/// What a run-time normalisation remembers between encoding and decoding one batch.
#[derive(Clone, Debug)]
enum NormState {
    None,
    /// x was multiplied by this [.., 1].
    Scaled(Tensor),
    /// x was centred by `mu` and divided by `sd + 1e-5` (both [.., 1]).
    Standardised {
        mu: Tensor,
        sd: Tensor,
    },
}

/// Feature activations of a batch, with what decoding them back needs.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// [.., d_sae]
    pub acts: Tensor,
    norm: NormState,
    /// (heads, d_head) when hook_z activations were flattened.
    heads: Option<(usize, usize)>,
}

/// The hook-point names an SAE spliced at `point` fires, in order (the error term's only
/// with the error term).
pub fn hook_names(point: &str, error_term: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "hook_sae_input",
        "hook_sae_acts_pre",
        "hook_sae_acts_post",
        "hook_sae_recons",
    ]
    .iter()
    .map(|s| format!("{point}.{s}"))
    .collect();
    if error_term {
        v.push(format!("{point}.hook_sae_error"));
    }
    v.push(format!("{point}.hook_sae_output"));
    v
}

impl Sae {
    /// Reads an SAE folder: SAELens's (`cfg.json` + `sae_weights.safetensors`) or one hook
    /// point's folder of EleutherAI sparsify (`cfg.json` + `sae.safetensors`).
    pub fn load(dir: &Path) -> Result<Sae> {
        let meta = std::fs::metadata(dir).map_err(|e| FeatureError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(FeatureError::file(
                dir,
                "an SAE is a folder (SAELens: cfg.json + sae_weights.safetensors; sparsify: cfg.json + sae.safetensors)",
            ));
        }
        use glassbox_formats::input::present;
        if present(&dir.join(WEIGHTS_FILE))? {
            Self::load_saelens(dir)
        } else if present(&dir.join(SPARSIFY_WEIGHTS_FILE))? {
            crate::sparsify::load(dir)
        } else {
            Err(FeatureError::file(
                dir,
                format!("no {WEIGHTS_FILE} (SAELens) or {SPARSIFY_WEIGHTS_FILE} (sparsify) in this folder"),
            ))
        }
    }

    fn load_saelens(dir: &Path) -> Result<Sae> {
        let cfg_path = dir.join(CFG_FILE);
        let raw = input::read_json(&cfg_path, "SAE config", limit::CONFIG)?;
        let parsed = parse_saelens_config(&raw).map_err(|m| FeatureError::file(&cfg_path, m))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let mut w = Weights::open(&weights_path)?;
        let (d_in, d_sae) = (parsed.cfg.d_in, parsed.cfg.d_sae);
        let w_enc = w.take("W_enc", &[d_in, d_sae])?;
        let b_enc = w.take("b_enc", &[d_sae])?;
        let w_dec = w.take("W_dec", &[d_sae, d_in])?;
        let b_dec = w.take("b_dec", &[d_in])?;
        // A `scaling_factor` of ones means nothing (SAELens drops it); any other is a
        // fine-tuning factor SAELens 6 cannot load either.
        if let Some(s) = w.take_optional("scaling_factor", &[d_sae])? {
            if s.flatten_all()?.to_vec1::<f32>()?.iter().any(|&v| v != 1.0) {
                return Err(FeatureError::file(
                    &weights_path,
                    "`scaling_factor` is not all ones: a fine-tuning scaling factor, which SAELens 6 does not support either",
                ));
            }
        }
        let mut sae = Sae {
            cfg: parsed.cfg,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            threshold: None,
            source: dir.to_path_buf(),
        };
        match parsed.stored {
            Stored::Plain => {}
            Stored::JumpRelu => {
                sae.threshold = Some(match w.take_optional("threshold", &[d_sae])? {
                    Some(t) => t,
                    // SAELens's older JumpReLU training checkpoints store the logarithm.
                    None => w.take("log_threshold", &[d_sae])?.exp()?,
                });
            }
            Stored::BatchTopK { rescale } => {
                let t = w.take("topk_threshold", &[])?.to_scalar::<f32>()?;
                if rescale {
                    sae.fold_decoder_norm_into_encoder()?;
                }
                sae.threshold = Some(Tensor::full(t, d_sae, &Device::Cpu)?);
            }
        }
        w.finish()?;
        let dtype = sae.cfg.dtype;
        sae.to_dtype(dtype)
    }

    /// Casts the weights to `dtype` (the dtype the SAE computes in).
    pub fn to_dtype(mut self, dtype: DType) -> Result<Sae> {
        self.cfg.dtype = dtype;
        self.w_enc = self.w_enc.to_dtype(dtype)?;
        self.b_enc = self.b_enc.to_dtype(dtype)?;
        self.w_dec = self.w_dec.to_dtype(dtype)?;
        self.b_dec = self.b_dec.to_dtype(dtype)?;
        if let Some(t) = &self.threshold {
            self.threshold = Some(t.to_dtype(dtype)?);
        }
        Ok(self)
    }

    /// Decoder rows scaled to unit norm, the scale moved into the encoder (SAELens's
    /// `fold_W_dec_norm` / the TopK fold on saving): the same function when activations
    /// were rescaled by decoder norms.
    pub(crate) fn fold_decoder_norm_into_encoder(&mut self) -> Result<()> {
        let norms = self.decoder_norms()?;
        self.w_dec = self.w_dec.broadcast_div(&norms.unsqueeze(1)?)?;
        self.w_enc = self.w_enc.broadcast_mul(&norms.unsqueeze(0)?)?;
        self.b_enc = (&self.b_enc * &norms)?;
        Ok(())
    }

    /// ‖W_dec‖ per feature [d_sae], at least 1e-8 (as SAELens clamps it).
    pub fn decoder_norms(&self) -> Result<Tensor> {
        let sq = self.w_dec.sqr()?.sum(1)?;
        Ok(sq.sqrt()?.clamp(1e-8, f64::INFINITY)?)
    }

    /// Writes the SAE as SAELens's `save_model` does: `cfg.json` and
    /// `sae_weights.safetensors` in `dir` (created if missing), each through a temporary file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FeatureError::io(dir, e))?;
        let mut tensors: Vec<(&str, Tensor)> = vec![
            ("W_enc", self.w_enc.clone()),
            ("b_enc", self.b_enc.clone()),
            ("W_dec", self.w_dec.clone()),
            ("b_dec", self.b_dec.clone()),
        ];
        if let Some(t) = &self.threshold {
            tensors.push(("threshold", t.clone()));
        }
        crate::write::safetensors(&dir.join(WEIGHTS_FILE), &tensors)?;
        let cfg = serde_json::to_string(&self.cfg.to_json()).expect("JSON values serialise");
        crate::write::atomically(&dir.join(CFG_FILE), cfg.as_bytes())
    }

    /// The point this SAE is spliced at and reads from.
    pub fn hook_name(&self) -> &str {
        &self.cfg.hook_name
    }

    /// Feature activations of `x` [.., d_in] (hook_z: [.., heads, d_head]) with no hooks.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encode_hooked(x, &mut Hooks::none(), "")?.acts)
    }

    /// Reconstruction of `x` with no hooks (`decode(encode(x))`).
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let enc = self.encode_hooked(x, &mut Hooks::none(), "")?;
        self.decode_hooked(&enc, &mut Hooks::none(), "")
    }

    /// Decodes feature activations computed without normalisation state (an SAE whose
    /// `normalize_activations` works at run time needs the batch it encoded: use
    /// [`reconstruct`](Self::reconstruct)).
    pub fn decode(&self, acts: &Tensor) -> Result<Tensor> {
        if matches!(
            self.cfg.normalize_activations,
            Normalization::ConstantNormRescale | Normalization::LayerNorm
        ) {
            return Err(FeatureError::input(format!(
                "{}: an SAE with normalize_activations `{}` decodes only the batch it encoded",
                self.source.display(),
                self.cfg.normalize_activations.name()
            )));
        }
        let enc = Encoded {
            acts: acts.to_dtype(self.cfg.dtype)?,
            norm: NormState::None,
            heads: None,
        };
        self.decode_hooked(&enc, &mut Hooks::none(), "")
    }

    /// Encodes `x`, firing `{point}.hook_sae_input`, `.hook_sae_acts_pre` and
    /// `.hook_sae_acts_post` through `hooks`.
    pub fn encode_hooked(&self, x: &Tensor, hooks: &mut Hooks, point: &str) -> Result<Encoded> {
        let c = &self.cfg;
        let mut x = x.to_dtype(c.dtype)?;
        let mut heads = None;
        if c.reshape_hook_z {
            let dims = x.dims().to_vec();
            if dims.len() < 2 {
                return Err(self.shape_error(&dims));
            }
            let (h, dh) = (dims[dims.len() - 2], dims[dims.len() - 1]);
            heads = Some((h, dh));
            x = x.flatten_from(dims.len() - 2)?;
        }
        if x.dims().last() != Some(&c.d_in) {
            return Err(self.shape_error(x.dims()));
        }
        let x = hooks.point(|| format!("{point}.hook_sae_input"), x)?;
        let (x, norm) = self.normalize_in(&x)?;
        let x = if c.apply_b_dec_to_input {
            x.broadcast_sub(&self.b_dec)?
        } else {
            x
        };
        let h = linear(&x, &self.w_enc)?.broadcast_add(&self.b_enc)?;
        let h = hooks.point(|| format!("{point}.hook_sae_acts_pre"), h)?;
        let acts = match &c.activation {
            Activation::Relu => h.relu()?,
            Activation::TopK {
                k,
                rescale_acts_by_decoder_norm,
            } => {
                let h = if *rescale_acts_by_decoder_norm {
                    h.broadcast_mul(&self.decoder_norms()?)?
                } else {
                    h
                };
                let mask = top_k_mask(&h, *k)?;
                (h.relu()? * mask)?
            }
            Activation::JumpRelu => {
                let t = self
                    .threshold
                    .as_ref()
                    .expect("a JumpReLU SAE has thresholds");
                let mask = h.broadcast_gt(t)?.to_dtype(h.dtype())?;
                (h.relu()? * mask)?
            }
        };
        let acts = hooks.point(|| format!("{point}.hook_sae_acts_post"), acts)?;
        Ok(Encoded { acts, norm, heads })
    }

    /// Decodes, firing `{point}.hook_sae_recons` through `hooks`; returns the output before
    /// `hook_sae_output` (which the splice fires after adding any error term).
    pub fn decode_hooked(&self, enc: &Encoded, hooks: &mut Hooks, point: &str) -> Result<Tensor> {
        let acts = match self.cfg.activation {
            Activation::TopK {
                rescale_acts_by_decoder_norm: true,
                ..
            } => enc.acts.broadcast_div(&self.decoder_norms()?)?,
            _ => enc.acts.clone(),
        };
        let y = linear(&acts, &self.w_dec)?.broadcast_add(&self.b_dec)?;
        let y = hooks.point(|| format!("{point}.hook_sae_recons"), y)?;
        let y = match &enc.norm {
            NormState::None => y,
            NormState::Scaled(c) => y.broadcast_div(c)?,
            NormState::Standardised { mu, sd } => y.broadcast_mul(sd)?.broadcast_add(mu)?,
        };
        Ok(match enc.heads {
            Some((h, dh)) => {
                let mut dims = y.dims().to_vec();
                dims.pop();
                dims.extend([h, dh]);
                y.reshape(dims)?
            }
            None => y,
        })
    }

    fn normalize_in(&self, x: &Tensor) -> Result<(Tensor, NormState)> {
        Ok(match self.cfg.normalize_activations {
            Normalization::ConstantNormRescale => {
                let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
                let c = norm.recip()?.affine((self.cfg.d_in as f64).sqrt(), 0.0)?;
                (x.broadcast_mul(&c)?, NormState::Scaled(c))
            }
            Normalization::LayerNorm => {
                let n = self.cfg.d_in as f64;
                let mu = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mu)?;
                // torch's std: unbiased (n − 1).
                let var = xc
                    .sqr()?
                    .sum_keepdim(D::Minus1)?
                    .affine(1.0 / (n - 1.0), 0.0)?;
                let sd = var.sqrt()?;
                let out = xc.broadcast_div(&sd.affine(1.0, 1e-5)?)?;
                (out, NormState::Standardised { mu, sd })
            }
            _ => (x.clone(), NormState::None),
        })
    }

    fn shape_error(&self, dims: &[usize]) -> FeatureError {
        let want = if self.cfg.reshape_hook_z {
            format!(
                "[.., heads, d_head] with heads × d_head = {}",
                self.cfg.d_in
            )
        } else {
            format!("[.., {}]", self.cfg.d_in)
        };
        FeatureError::input(format!(
            "{}: the SAE reads activations {want} at `{}`, got {dims:?}",
            self.source.display(),
            self.cfg.hook_name
        ))
    }
}

/// `x [.., k] · w [k, n]`, on the kernels for f32.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().expect("rank ≥ 1");
    let rows = x.elem_count() / k.max(1);
    let y = kernel_ops::matmul(&x.reshape((rows, k))?, w)?;
    let mut out = dims;
    *out.last_mut().expect("rank ≥ 1") = w.dim(1)?;
    Ok(y.reshape(out)?)
}

/// The indices of the `k` largest of `values`, by value descending then index ascending (NaN
/// counts as largest, as in torch.topk); in no particular order.
pub(crate) fn top_indices(values: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..values.len() as u32).collect();
    let order = |a: &u32, b: &u32| {
        values[*b as usize]
            .total_cmp(&values[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(idx.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, order);
    }
    idx.truncate(k);
    idx
}

/// A 0/1 mask of the `k` largest entries of each row of `h` ([`top_indices`] per row), in
/// `h`'s dtype.
pub(crate) fn top_k_mask(h: &Tensor, k: usize) -> Result<Tensor> {
    use rayon::prelude::*;
    let dims = h.dims().to_vec();
    let n = *dims.last().expect("rank ≥ 1");
    let values = h.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut mask = vec![0f32; values.len()];
    if n > 0 {
        mask.par_chunks_mut(n)
            .zip(values.par_chunks(n))
            .for_each(|(m, row)| {
                for i in top_indices(row, k) {
                    m[i as usize] = 1.0;
                }
            });
    }
    Ok(Tensor::from_vec(mask, dims, h.device())?.to_dtype(h.dtype())?)
}

/// How the weights file stores the activation's parameters.
enum Stored {
    Plain,
    JumpRelu,
    /// A BatchTopK training checkpoint: a scalar threshold on activations that were
    /// rescaled by decoder norms when `rescale` is set.
    BatchTopK {
        rescale: bool,
    },
}

struct Parsed {
    cfg: SaeConfig,
    stored: Stored,
}

fn get_bool(v: &Value, key: &str, default: bool) -> std::result::Result<bool, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("`{key}` must be true or false, not {other}")),
    }
}

fn get_dim(v: &Value, key: &str) -> std::result::Result<usize, String> {
    let n = v
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("`{key}` is missing or not a whole number"))?;
    if n == 0 || n > MAX_DIM as u64 {
        return Err(format!("`{key}` is {n}: give 1..{MAX_DIM}"));
    }
    Ok(n as usize)
}

/// SAELens's major version of a cfg.json, if it names one.
fn format_major(raw: &Value) -> Option<u64> {
    let v = raw
        .get("sae_lens_version")
        .or_else(|| raw.get("metadata").and_then(|m| m.get("sae_lens_version")))?
        .as_str()?;
    v.split('.').next()?.trim_start_matches('v').parse().ok()
}

/// SAELens 6's reading of a cfg.json (`handle_config_defaulting`, then the architecture's
/// config class): files from before 6.0 are converted as SAELens converts them.
fn parse_saelens_config(raw: &Value) -> std::result::Result<Parsed, String> {
    if !raw.is_object() {
        return Err("not a JSON object".into());
    }
    let pre_6 = format_major(raw).is_none_or(|m| m < 6);
    let mut metadata = raw
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let architecture: String;
    let mut k_from_fn = None;
    if pre_6 {
        // Older files keep hook and model facts at the top level, the hook as `hook_point`
        // before 3.x, and TopK as an activation function.
        for (old, new) in [
            ("hook_point", "hook_name"),
            ("hook_point_head_index", "hook_head_index"),
            ("hook_name", "hook_name"),
            ("hook_head_index", "hook_head_index"),
            ("model_name", "model_name"),
            ("context_size", "context_size"),
            ("prepend_bos", "prepend_bos"),
            ("dataset_path", "dataset_path"),
        ] {
            if let Some(v) = raw.get(old) {
                metadata.entry(new.to_string()).or_insert(v.clone());
            }
        }
        let act = raw
            .get("activation_fn")
            .or_else(|| raw.get("activation_fn_str"))
            .and_then(Value::as_str);
        if act == Some("topk") {
            k_from_fn = raw
                .get("activation_fn_kwargs")
                .and_then(|kw| kw.get("k"))
                .and_then(Value::as_u64);
        }
        architecture = match raw.get("architecture").and_then(Value::as_str) {
            Some(a) => a.to_string(),
            None if k_from_fn.is_some() => "topk".into(),
            None => "standard".into(),
        };
    } else {
        architecture = raw
            .get("architecture")
            .and_then(Value::as_str)
            .ok_or("`architecture` is missing (SAELens 6 requires it)")?
            .to_string();
    }
    let d_in = get_dim(raw, "d_in")?;
    let d_sae = get_dim(raw, "d_sae")?;
    let dtype_name = raw
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("`dtype` is missing (SAELens requires it)")?;
    let dtype = parse_dtype(dtype_name).ok_or_else(|| {
        format!("`dtype` `{dtype_name}` is not one of float32, float64, float16, bfloat16")
    })?;
    let apply_b_dec_to_input = get_bool(raw, "apply_b_dec_to_input", true)?;
    let normalize_activations = match raw.get("normalize_activations") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Normalization::None,
        Some(Value::Bool(true)) if pre_6 => Normalization::ExpectedAverageOnlyIn,
        Some(Value::String(s)) => Normalization::parse(s).ok_or_else(|| {
            format!("`normalize_activations` `{s}` is not one of none, expected_average_only_in, constant_norm_rescale, layer_norm, covariance_whitening")
        })?,
        Some(other) => return Err(format!("`normalize_activations` {other} is not a name")),
    };
    let hook_name = metadata
        .get("hook_name")
        .and_then(Value::as_str)
        .ok_or("no hook named (`metadata.hook_name`): glassbox needs to know where the SAE reads")?
        .to_string();
    let reshape_hook_z = match raw.get("reshape_activations").and_then(Value::as_str) {
        Some("hook_z") => true,
        Some("none") => false,
        None if pre_6 => hook_name.contains("hook_z"),
        None => false,
        Some(other) => {
            return Err(format!(
                "`reshape_activations` `{other}` is not none or hook_z"
            ))
        }
    };
    if reshape_hook_z && !hook_name.ends_with("_z") {
        return Err(format!(
            "`reshape_activations` is hook_z but the hook `{hook_name}` is not a hook_z"
        ));
    }
    let hook_head_index = match metadata.get("hook_head_index") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| format!("`hook_head_index` {v} is not a head number"))?
                as usize,
        ),
    };
    let k_of = |default: Option<u64>| -> std::result::Result<usize, String> {
        // Training configs write BatchTopK's k as a float.
        let k = match raw.get("k") {
            Some(v) => v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            }),
            None => default,
        }
        .ok_or("`k` is missing or not a whole number")?;
        if k == 0 || k > d_sae as u64 {
            return Err(format!("`k` is {k}: give 1..d_sae ({d_sae})"));
        }
        Ok(k as usize)
    };
    let (activation, stored) = match architecture.as_str() {
        "standard" => (Activation::Relu, Stored::Plain),
        "topk" => (
            Activation::TopK {
                k: k_of(k_from_fn.or(Some(100)))?,
                rescale_acts_by_decoder_norm: get_bool(raw, "rescale_acts_by_decoder_norm", false)?,
            },
            Stored::Plain,
        ),
        "jumprelu" => (Activation::JumpRelu, Stored::JumpRelu),
        "batchtopk" => {
            k_of(Some(100))?;
            // The training config's default rescales.
            let rescale = get_bool(raw, "rescale_acts_by_decoder_norm", true)?;
            (Activation::JumpRelu, Stored::BatchTopK { rescale })
        }
        other => {
            return Err(format!(
                "architecture `{other}` is not supported (glassbox reads standard, topk, batchtopk and jumprelu)"
            ))
        }
    };
    Ok(Parsed {
        cfg: SaeConfig {
            activation,
            d_in,
            d_sae,
            dtype,
            apply_b_dec_to_input,
            normalize_activations,
            reshape_hook_z,
            hook_name,
            hook_head_index,
            metadata,
        },
        stored,
    })
}

/// The tensors of a weights file, taken by name and shape-checked; any left over is an
/// error (SAELens loads strictly: an unknown tensor may change the maths).
pub(crate) struct Weights {
    file: SafetensorsFile,
    taken: Vec<bool>,
}

impl Weights {
    pub(crate) fn open(path: &Path) -> Result<Weights> {
        let file = SafetensorsFile::open(path)?;
        let taken = vec![false; file.entries.len()];
        Ok(Weights { file, taken })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    pub(crate) fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.file
            .entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.shape.clone())
    }

    pub(crate) fn dtype_of(&self, name: &str) -> Option<glassbox_formats::DType> {
        self.file
            .entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.dtype)
    }

    /// The tensor `name` as f32, which must have `shape`.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.take_optional(name, shape)?
            .ok_or_else(|| FeatureError::file(self.path(), format!("no tensor `{name}`")))
    }

    pub(crate) fn take_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let Some(i) = self.file.entries.iter().position(|e| e.name == name) else {
            return Ok(None);
        };
        let e = &self.file.entries[i];
        if e.shape != shape {
            return Err(FeatureError::file(
                self.path(),
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    e.shape
                ),
            ));
        }
        let values = glassbox_formats::to_f32(e.dtype, self.file.bytes(e)).ok_or_else(|| {
            FeatureError::file(
                self.path(),
                format!(
                    "tensor `{name}` has dtype {}, which is not a number type an SAE uses",
                    e.dtype
                ),
            )
        })?;
        self.taken[i] = true;
        Ok(Some(Tensor::from_vec(values, shape, &Device::Cpu)?))
    }

    /// Refuses tensors nothing took.
    pub(crate) fn finish(self) -> Result<()> {
        let left: Vec<&str> = self
            .file
            .entries
            .iter()
            .zip(&self.taken)
            .filter(|(_, t)| !**t)
            .map(|(e, _)| e.name.as_str())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        Err(FeatureError::file(
            self.path(),
            format!("unexpected tensor{} {}: this SAE has parameters glassbox does not know the meaning of", if left.len() == 1 { "" } else { "s" }, left.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
        ))
    }
}
