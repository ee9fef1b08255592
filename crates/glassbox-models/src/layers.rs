//! The layers every architecture is built from: [`Linear`], [`Norm`], [`Activation`],
//! [`Embedding`]. Each loads its weights from a [`VarBuilder`] under the checkpoint's own names
//! and computes with differentiable ops only (see [`crate::ops`]).
//!
//! Weights keep the dtype they were loaded in. Matmuls run in the activation dtype, except on
//! the CPU with bf16 (which candle cannot multiply there): those weights are upcast per call.
//! The matrices of linear layers and embeddings are [`Weight`]s: read in place from the
//! checkpoint's memory map where it can serve them (see [`crate::mapped`]), else tensors.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::kernel_ops::{self, KernelActivation};
use crate::mapped::{self, MappedWeight};
use crate::ops;
use crate::quantized::{self, QuantWeight};

/// Initialisation for freshly created (trainable) weights: GPT-2 / Llama's N(0, 0.02²).
pub const WEIGHT_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// A weight matrix: an owned (possibly trainable) tensor, or read in place from a checkpoint's
/// memory map, as stored or in a GGUF block format. Clones share the data.
#[derive(Clone, Debug)]
pub enum Weight {
    Tensor(Tensor),
    Mapped(Arc<MappedWeight>),
    /// Always `[out, in]` (a GPT-2 `Conv1D` so stored is used transposed).
    Quantized(Arc<QuantWeight>),
}

impl From<Tensor> for Weight {
    fn from(t: Tensor) -> Self {
        Weight::Tensor(t)
    }
}

impl Weight {
    /// `{vb}.{name}` of `shape`: mapped when the checkpoint being built from can serve it in
    /// place, else through `vb` (which initialises it with `init` when building fresh weights).
    pub fn load(vb: &VarBuilder, shape: &[usize], name: &str, init: Init) -> Result<Self> {
        if let Some(q) = quantized::find(vb, name, shape, false) {
            return Ok(Weight::Quantized(Arc::new(q)));
        }
        if let Some(m) = mapped::find(vb, name, shape) {
            return Ok(Weight::Mapped(Arc::new(m)));
        }
        Ok(Weight::Tensor(vb.get_with_hints(shape, name, init)?))
    }

    /// As a tensor (a mapped weight is copied on first use, then kept).
    pub fn tensor(&self) -> Result<Tensor> {
        match self {
            Weight::Tensor(t) => Ok(t.clone()),
            Weight::Mapped(m) => m.tensor(),
            Weight::Quantized(q) => q.tensor(),
        }
    }

    pub fn dims(&self) -> &[usize] {
        match self {
            Weight::Tensor(t) => t.dims(),
            Weight::Mapped(m) => m.dims(),
            Weight::Quantized(q) => q.dims(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Weight::Tensor(t) => t.dtype(),
            Weight::Mapped(m) => m.dtype(),
            // It computes in f32 and widens to f32.
            Weight::Quantized(_) => DType::F32,
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Weight::Tensor(t) => t.device().clone(),
            Weight::Mapped(_) | Weight::Quantized(_) => Device::Cpu,
        }
    }

    /// Bytes of its values in memory (as stored, for a mapped or quantized weight).
    pub fn bytes(&self) -> usize {
        match self {
            Weight::Quantized(q) => q.bytes(),
            Weight::Mapped(m) => m.bytes(),
            Weight::Tensor(_) => {
                self.dims().iter().product::<usize>() * self.dtype().size_in_bytes()
            }
        }
    }
}

/// `y = x Wᵀ + b` with `W` stored [out, in] (torch `nn.Linear`), or `y = x W + b` with `W`
/// stored [in, out] (GPT-2's `Conv1D`).
#[derive(Clone, Debug)]
pub struct Linear {
    /// As stored in the checkpoint.
    pub weight: Weight,
    pub bias: Option<Tensor>,
    /// True when `weight` is [in, out].
    pub in_out: bool,
    /// A LoRA adapter applied on top (`+ s·(x·Aᵀ)·Bᵀ`), see [`crate::lora`].
    pub lora: Option<crate::lora::Lora>,
}

impl Linear {
    /// A torch `nn.Linear` named `{vb}.weight` [out, in] (+ `{vb}.bias` [out] if `bias`).
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = Weight::load(&vb, &[out_dim, in_dim], "weight", WEIGHT_INIT)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            in_out: false,
            lora: crate::lora::find(&vb, in_dim, out_dim).map_err(candle_error)?,
        })
    }

    /// The unembedding: tied to `embed` (its matrix, shared) or `{vb}.lm_head` [vocab, d_model].
    pub fn unembedding(
        vb: &VarBuilder,
        embed: &Embedding,
        tied: bool,
        d_model: usize,
        vocab: usize,
    ) -> Result<Self> {
        if tied {
            Ok(Self::tied(embed))
        } else {
            Self::load(vb.pp("lm_head"), d_model, vocab, false)
        }
    }

    /// The unembedding tied to `embed`: its matrix, shared.
    pub fn tied(embed: &Embedding) -> Self {
        Linear {
            weight: embed.weight.clone(),
            bias: None,
            in_out: false,
            lora: None,
        }
    }

    /// A GPT-2 `Conv1D`: `{vb}.weight` [in, out] and `{vb}.bias` [out].
    pub fn load_conv1d(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let bias = Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?);
        let lora = crate::lora::find(&vb, in_dim, out_dim).map_err(candle_error)?;
        // A GGUF stores it [out, in] (and may keep it quantized): used as such.
        if let Some(q) = quantized::find(&vb, "weight", &[in_dim, out_dim], true) {
            return Ok(Linear {
                weight: Weight::Quantized(Arc::new(q)),
                bias,
                in_out: false,
                lora,
            });
        }
        let weight = Weight::load(&vb, &[in_dim, out_dim], "weight", WEIGHT_INIT)?;
        Ok(Linear {
            weight,
            bias,
            in_out: true,
            lora,
        })
    }

    /// The weight as [in, out], for reading directions out of it: with an adapter, the
    /// adapted layer's effective weight `W + s·B·A`, so that directions (W_O, W_U) read from
    /// a model with `--adapter` are the ones its forward pass uses.
    pub fn weight_in_out(&self) -> Result<Tensor> {
        let w = self.weight.tensor()?;
        let w = if self.in_out { w } else { w.t()? };
        match &self.lora {
            None => Ok(w),
            Some(l) => {
                let delta = (l.b.matmul(&l.a)? * l.scale)?.t()?; // [in, out]
                w.to_dtype(DType::F32)? + delta.to_dtype(DType::F32)?
            }
        }
    }

    pub fn out_dim(&self) -> Result<usize> {
        let dims = self.weight.dims();
        match dims {
            [rows, cols] => Ok(if self.in_out { *cols } else { *rows }),
            _ => candle_core::bail!("linear weight of shape {dims:?}"),
        }
    }
}

/// A model error met while loading a layer, carried through candle's error type.
fn candle_error(e: crate::error::ModelError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// The dtype matmuls run in for a weight (its dtype and device).
fn compute_dtype(w: &Weight) -> DType {
    if w.dtype() == DType::BF16 && w.device().is_cpu() {
        DType::F32
    } else {
        w.dtype()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / in_dim.max(1);
        // f32 activations on the CPU multiply any stored weight dtype directly (the kernels
        // widen f16/bf16 while packing); elsewhere both sides go to the compute dtype.
        let kernel =
            x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16);
        let work = if kernel {
            DType::F32
        } else {
            compute_dtype(&self.weight)
        };
        let x2 = x.reshape((rows, in_dim))?.to_dtype(work)?;
        let mut y = match &self.weight {
            Weight::Mapped(w) if kernel => kernel_ops::matmul_mapped(&x2, w, self.in_out)?,
            Weight::Quantized(w) if kernel => quantized::matmul(&x2, w)?,
            weight => {
                let w = weight.tensor()?;
                let w = if kernel { w } else { w.to_dtype(work)? };
                let w = if self.in_out { w } else { w.t()? };
                ops::matmul(&x2, &w)?
            }
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(work)?)?;
        }
        if let Some(lora) = &self.lora {
            // PEFT's order: the low-rank product, scaled, added to the base output
            let low = ops::matmul(&x2, &lora.a.to_dtype(work)?.t()?)?;
            let delta = ops::matmul(&low, &lora.b.to_dtype(work)?.t()?)?;
            y = (y + (delta * lora.scale)?)?;
        }
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = y.dim(1)?;
        y.reshape(out_dims)?.to_dtype(x.dtype())
    }
}

/// Which normalisation a layer uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormKind {
    /// LayerNorm with weight and bias.
    LayerNorm { eps: f64 },
    /// LayerNorm without bias (OLMo 1, some GPT-NeoX variants).
    LayerNormNoBias { eps: f64 },
    /// RMSNorm scaling by `w` (Llama).
    RmsNorm { eps: f64 },
    /// RMSNorm scaling by `1 + w` (Gemma stores the weight as w − 1).
    RmsNormPlusOne { eps: f64 },
    /// LayerNorm scaling by `1 + w`, with bias (Nemotron's `LayerNorm1P`).
    LayerNormPlusOne { eps: f64 },
}

impl NormKind {
    /// TransformerLens' `cfg.normalization_type`: `"LN"` (centred, then scaled) or `"RMS"`.
    pub fn transformerlens_type(self) -> &'static str {
        match self {
            NormKind::LayerNorm { .. }
            | NormKind::LayerNormNoBias { .. }
            | NormKind::LayerNormPlusOne { .. } => "LN",
            NormKind::RmsNorm { .. } | NormKind::RmsNormPlusOne { .. } => "RMS",
        }
    }
}

/// A normalisation layer over the last dimension.
#[derive(Clone, Debug)]
pub struct Norm {
    pub kind: NormKind,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Norm {
    /// Loads `{vb}.weight` (and `{vb}.bias` for LayerNorm) of size `dim`.
    pub fn load(vb: VarBuilder, kind: NormKind, dim: usize) -> Result<Self> {
        let neutral = match kind {
            NormKind::RmsNormPlusOne { .. } | NormKind::LayerNormPlusOne { .. } => 0.0,
            _ => 1.0,
        };
        let weight = vb.get_with_hints(dim, "weight", Init::Const(neutral))?;
        let bias = match kind {
            NormKind::LayerNorm { .. } | NormKind::LayerNormPlusOne { .. } => {
                Some(vb.get_with_hints(dim, "bias", Init::Const(0.0))?)
            }
            _ => None,
        };
        Ok(Norm { kind, weight, bias })
    }

    /// The normalised input before the learned scale and shift: what TransformerLens hooks
    /// as `hook_normalized` (`x / scale`, centred first for LayerNorm).
    fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        match self.kind {
            NormKind::LayerNorm { eps }
            | NormKind::LayerNormNoBias { eps }
            | NormKind::LayerNormPlusOne { eps } => ops::layer_normalize(x, eps),
            NormKind::RmsNorm { eps } | NormKind::RmsNormPlusOne { eps } => {
                ops::rms_normalize(x, eps)
            }
        }
    }
}

impl Norm {
    /// The norm named `prefix` (`blocks.0.ln1`) with TransformerLens' hooks:
    /// `{prefix}.hook_scale` [.., 1] (√(mean(x²) + ε), of the centred x for LayerNorm) and
    /// `{prefix}.hook_normalized` (x / scale, before the weight and bias). An edit at either
    /// goes through the rest of the norm, as in TransformerLens.
    pub fn forward_hooked(
        &self,
        x: &Tensor,
        hooks: &mut crate::hooks::Hooks,
        prefix: impl Fn() -> String,
    ) -> Result<Tensor> {
        let scale_name = || format!("{}.hook_scale", prefix());
        let normed = if hooks.watches(scale_name) {
            // The scale by itself only when something reads or writes it. Only read (cached),
            // the fused normalisation runs, with the same numbers as a pass without the hook;
            // with a writer there (which may edit the tensor in place), x is divided by what
            // the hook leaves.
            let (centred, scale) = self.centred_and_scale(x)?;
            let written = hooks.writes(scale_name);
            let seen = hooks.point(scale_name, scale)?;
            if written {
                centred.broadcast_div(&seen)?.to_dtype(x.dtype())?
            } else {
                self.normalize(x)?
            }
        } else {
            self.normalize(x)?
        };
        let normed = hooks.point(|| format!("{}.hook_normalized", prefix()), normed)?;
        self.scale_and_shift(normed)
    }

    /// x (centred for LayerNorm) and its scale √(mean(x²) + ε) [.., 1], in the accumulation
    /// dtype.
    fn centred_and_scale(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (eps, centre) = match self.kind {
            NormKind::LayerNorm { eps }
            | NormKind::LayerNormNoBias { eps }
            | NormKind::LayerNormPlusOne { eps } => (eps, true),
            NormKind::RmsNorm { eps } | NormKind::RmsNormPlusOne { eps } => (eps, false),
        };
        let x = x.to_dtype(ops::accumulation_dtype(x.dtype()))?;
        let x = if centre {
            x.broadcast_sub(&x.mean_keepdim(candle_core::D::Minus1)?)?
        } else {
            x
        };
        let scale = (x.sqr()?.mean_keepdim(candle_core::D::Minus1)? + eps)?.sqrt()?;
        Ok((x, scale))
    }

    /// The learned scale (w, or 1 + w) and shift (b) applied to a normalised input.
    fn scale_and_shift(&self, normed: Tensor) -> Result<Tensor> {
        let dtype = normed.dtype();
        let out = match self.kind {
            // Gemma scales in f32 by (1 + w) and only then casts down (Nemotron's 1 + w too).
            NormKind::RmsNormPlusOne { .. } | NormKind::LayerNormPlusOne { .. } => {
                let acc = ops::accumulation_dtype(dtype);
                let scale = (self.weight.to_dtype(acc)? + 1.0)?;
                normed
                    .to_dtype(acc)?
                    .broadcast_mul(&scale)?
                    .to_dtype(dtype)?
            }
            _ => normed.broadcast_mul(&self.weight.to_dtype(dtype)?)?,
        };
        match &self.bias {
            Some(b) => out.broadcast_add(&b.to_dtype(dtype)?),
            None => Ok(out),
        }
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.scale_and_shift(self.normalize(x)?)
    }
}

/// MLP nonlinearities, by their Hugging Face `hidden_act` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (`gelu`).
    Gelu,
    /// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// `silu` / `swish`.
    Silu,
    Relu,
    /// `relu(x)²` (`relu2`, Nemotron's squared ReLU).
    Relu2,
    /// GELU (tanh form) as ggml-cpu computes it, through its f16 lookup table: the input and
    /// the result are rounded to f16, inputs at or below −10 give 0 and at or above 10 give
    /// themselves (`gelu_llamacpp`, a glassbox name used for GGUF models loaded with
    /// [`crate::Numerics::LlamaCpp`]). The gradient is the tanh GELU's, through the roundings.
    GeluLlamaCpp,
}

impl Activation {
    pub fn from_hf(name: &str) -> Option<Activation> {
        Some(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            "relu2" => Activation::Relu2,
            "gelu_llamacpp" => Activation::GeluLlamaCpp,
            _ => return None,
        })
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu => kernel_ops::activation(x, KernelActivation::GeluErf),
            Activation::GeluTanh => kernel_ops::activation(x, KernelActivation::GeluTanh),
            Activation::Silu => kernel_ops::activation(x, KernelActivation::Silu),
            Activation::Relu => x.relu(),
            Activation::Relu2 => x.relu()?.sqr(),
            Activation::GeluLlamaCpp => kernel_ops::gelu_f16_table(x),
        }
    }
}

/// A token (or position) embedding table [n, d], looked up by index.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Weight,
}

impl Embedding {
    pub fn load(vb: VarBuilder, n: usize, d: usize) -> Result<Self> {
        Ok(Embedding {
            weight: Weight::load(&vb, &[n, d], "weight", WEIGHT_INIT)?,
        })
    }

    /// Rows for `ids` of any shape: [..] -> [.., d].
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let weight = match &self.weight {
            Weight::Mapped(m) if ids.device().is_cpu() => return m.rows(ids),
            Weight::Quantized(q) if ids.device().is_cpu() => return q.rows(ids),
            weight => weight.tensor()?,
        };
        let mut dims = ids.dims().to_vec();
        let flat = ids.flatten_all()?;
        let rows = weight.index_select(&flat, 0)?;
        dims.push(weight.dim(1)?);
        rows.reshape(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml-cpu's table entry for an f16 input: `ggml_gelu_f32` in f32 (with the platform's
    /// tanh), rounded to f16.
    fn ggml_table(x: f32) -> f32 {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        const GELU_COEF_A: f32 = 0.044715;
        let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh());
        half::f16::from_f32(y).to_f32()
    }

    /// The one-pass f32 op and the composition of candle ops (taken for f64) agree bit for
    /// bit forward, across the ±10 cut-offs and f16 rounding ties; backward to f16 precision
    /// (candle's casts round the composed gradient to f16 on its way back, twice).
    #[test]
    fn gelu_llamacpp_one_pass_equals_the_composed_ops() {
        let mut inputs: Vec<f64> = (-1300..1300).map(|i| i as f64 * 0.0091).collect();
        inputs.extend([
            -10.0,
            10.0,
            -10.000001,
            9.999999,
            1.0 + 1.0 / 2048.0,
            0.0,
            -0.0,
        ]);
        let fused = candle_core::Var::new(
            inputs
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>()
                .as_slice(),
            &Device::Cpu,
        )
        .unwrap();
        let composed = candle_core::Var::new(
            inputs
                .iter()
                .map(|&v| v as f32 as f64)
                .collect::<Vec<_>>()
                .as_slice(),
            &Device::Cpu,
        )
        .unwrap();
        let weights: Vec<f32> = (0..inputs.len()).map(|i| (i % 7) as f32 - 3.0).collect();
        let w = Tensor::new(weights.as_slice(), &Device::Cpu).unwrap();
        let y_fused = Activation::GeluLlamaCpp.apply(fused.as_tensor()).unwrap();
        let y_composed = Activation::GeluLlamaCpp
            .apply(composed.as_tensor())
            .unwrap();
        let as_f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(as_f32(&y_fused), as_f32(&y_composed));
        let g_fused = (y_fused * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_composed = (y_composed * w.to_dtype(DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_fused = as_f32(g_fused.get(fused.as_tensor()).unwrap());
        let g_composed = as_f32(g_composed.get(composed.as_tensor()).unwrap());
        for (i, (a, b)) in g_fused.iter().zip(&g_composed).enumerate() {
            assert!(
                // Half an f16 step twice: relative 2⁻¹¹ each, or 2⁻²⁵ below the normal range.
                (a - b).abs() <= 2e-3 * b.abs() + 1.2e-7,
                "gradient at {}: {a} vs {b}",
                inputs[i]
            );
        }
        assert!(g_fused.iter().any(|&g| g != 0.0));
    }

    /// Every finite f16 input: the result is ggml's table entry (below −10 zero, from 10 the
    /// input itself), to within one f16 step where our tanh and libm's round differently.
    #[test]
    fn gelu_llamacpp_is_ggmls_table() {
        let inputs: Vec<f32> = (0..=u16::MAX)
            .map(|b| half::f16::from_bits(b).to_f32())
            .filter(|x| x.is_finite())
            .collect();
        let x = Tensor::new(inputs.as_slice(), &Device::Cpu).unwrap();
        let y: Vec<f32> = Activation::GeluLlamaCpp
            .apply(&x)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut off_by_one_step = 0;
        for (&x, &y) in inputs.iter().zip(&y) {
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                ggml_table(x)
            };
            if y != want {
                let step = (half::f16::from_bits(half::f16::from_f32(want).to_bits() + 1).to_f32()
                    - want)
                    .abs();
                assert!(
                    (y - want).abs() <= step * 1.01,
                    "gelu({x}) = {y}, ggml {want}"
                );
                off_by_one_step += 1;
            }
        }
        assert!(
            off_by_one_step * 1000 < inputs.len(),
            "{off_by_one_step} of {} entries differ by a step",
            inputs.len()
        );
    }
}
