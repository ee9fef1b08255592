//! Operations on rows of activations: normalisation, element-wise nonlinearities (GELU also
//! through ggml's f16 table), and the cross-entropy loss.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use glassbox_kernels::rows::{self, Activation as Act, NormKind};

use super::{f32_rows, last_dim, on_kernels, u32_rows};

// ---- norms --------------------------------------------------------------------------------

/// LayerNorm's or RMSNorm's normalisation over the last dimension (no learned scale/shift).
/// `None` when `x` does not take the kernel path (the caller composes candle ops then).
pub fn normalize(x: &Tensor, kind: NormKind, eps: f64) -> Result<Option<Tensor>> {
    if on_kernels(x) {
        Ok(Some(x.apply_op1_arc(Arc::new(Box::new(Normalize {
            kind,
            eps: eps as f32,
        })))?))
    } else {
        Ok(None)
    }
}

struct Normalize {
    kind: NormKind,
    eps: f32,
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "glassbox-normalize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_rows(s, l)?;
        let mut y = vec![0f32; x.len()];
        rows::normalize(self.kind, &x, &mut y, last_dim(l), self.eps);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = NormalizeBackward {
            kind: self.kind,
            eps: self.eps,
        };
        Ok(Some(x.apply_op2_no_bwd(grad, &op)?))
    }
}

struct NormalizeBackward {
    kind: NormKind,
    eps: f32,
}

impl CustomOp2 for NormalizeBackward {
    fn name(&self) -> &'static str {
        "glassbox-normalize-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (f32_rows(s1, l1)?, f32_rows(s2, l2)?);
        let mut dx = vec![0f32; x.len()];
        rows::normalize_backward(self.kind, &x, &dy, &mut dx, last_dim(l1), self.eps);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---- elementwise nonlinearities -----------------------------------------------------------

/// `act(x)` elementwise (GELU, SiLU, tanh). f16/bf16 compute in f32; f64 uses candle's ops.
pub fn activation(x: &Tensor, act: Act) -> Result<Tensor> {
    if on_kernels(x) {
        x.apply_op1_arc(Arc::new(Box::new(Elementwise(act))))
    } else if x.device().is_cpu() && matches!(x.dtype(), DType::F16 | DType::BF16) {
        activation(&x.to_dtype(DType::F32)?, act)?.to_dtype(x.dtype())
    } else {
        match act {
            Act::GeluErf => x.gelu_erf(),
            Act::GeluTanh => x.gelu(),
            Act::Silu => x.silu(),
            Act::Tanh => x.tanh(),
        }
    }
}

struct Elementwise(Act);

impl CustomOp1 for Elementwise {
    fn name(&self) -> &'static str {
        "glassbox-elementwise"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = rows::activation_of(self.0, &f32_rows(s, l)?);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            x.apply_op2_no_bwd(grad, &ElementwiseBackward(self.0))?,
        ))
    }
}

struct ElementwiseBackward(Act);

impl CustomOp2 for ElementwiseBackward {
    fn name(&self) -> &'static str {
        "glassbox-elementwise-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let mut dx = f32_rows(s1, l1)?.into_owned();
        let dy = f32_rows(s2, l2)?;
        rows::activation_backward(self.0, &mut dx, &dy);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---- GELU through ggml's f16 table ---------------------------------------------------------

/// GELU (tanh form) as ggml-cpu computes it: the input rounded to f16 and looked up in a table
/// of `f16(gelu(x))` for every f16 `x`; inputs at or above 10 pass through, at or below −10
/// give 0. One pass for f32 CPU tensors (decoding calls it on every layer); elsewhere the same
/// values composed from candle's ops. The gradient is the tanh GELU's at the rounded input.
pub fn gelu_f16_table(x: &Tensor) -> Result<Tensor> {
    if on_kernels(x) {
        return x.apply_op1_arc(Arc::new(Box::new(GeluF16Table)));
    }
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let to_f16 = |t: &Tensor| t.to_dtype(DType::F16)?.to_dtype(DType::F32);
    let table = to_f16(&activation(&to_f16(&x)?, Act::GeluTanh)?)?;
    let high = x.ge(10f32)?;
    let low = x.le(-10f32)?;
    let y = high.where_cond(&x, &low.where_cond(&x.zeros_like()?, &table)?)?;
    y.to_dtype(dtype)
}

/// `f16(gelu_tanh(x))` for the f16 with bits `b`, at index `b`: our GELU kernel on every f16.
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let inputs: Vec<f32> = (0..=u16::MAX)
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect();
        rows::activation_of(Act::GeluTanh, &inputs)
            .into_iter()
            .map(|y| half::f16::from_f32(y).to_f32())
            .collect()
    })
}

struct GeluF16Table;

impl CustomOp1 for GeluF16Table {
    fn name(&self) -> &'static str {
        "glassbox-gelu-f16-table"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        use half::slice::HalfFloatSliceExt;
        let table = gelu_table();
        let x = f32_rows(s, l)?;
        // Rounded to f16 a slice at a time (vectorised), then looked up.
        let mut rounded = vec![half::f16::ZERO; x.len()];
        rounded.convert_from_f32_slice(&x);
        let y = x
            .iter()
            .zip(&rounded)
            .map(|(&x, r)| {
                if x >= 10.0 {
                    x
                } else if x <= -10.0 {
                    0.0
                } else {
                    table[r.to_bits() as usize]
                }
            })
            .collect();
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let rounded = x.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
        let inside = rounded.apply_op2_no_bwd(grad, &ElementwiseBackward(Act::GeluTanh))?;
        let high = x.ge(10f32)?;
        let low = x.le(-10f32)?;
        Ok(Some(high.where_cond(
            grad,
            &low.where_cond(&grad.zeros_like()?, &inside)?,
        )?))
    }
}

// ---- cross-entropy ------------------------------------------------------------------------

/// Per-row `−ln softmax(logits)[target]` of logits [n, vocab] and u32 targets [n] → [n].
/// Targets must index the vocabulary (an error otherwise).
pub fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (rows_n, vocab) = logits.dims2()?;
    if targets.dims1()? != rows_n {
        candle_core::bail!(
            "cross-entropy: {rows_n} rows of logits but {} targets",
            targets.dims1()?
        );
    }
    let targets = targets.to_dtype(DType::U32)?;
    let max = targets.max(0)?.to_scalar::<u32>()? as usize;
    if rows_n > 0 && max >= vocab {
        candle_core::bail!("cross-entropy: target {max} outside the {vocab}-token vocabulary");
    }
    if on_kernels(logits) {
        logits.apply_op2_arc(&targets, Arc::new(Box::new(CrossEntropy)))
    } else {
        let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        lsm.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
    }
}

struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "glassbox-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, targets) = (f32_rows(s1, l1)?, u32_rows(s2, l2)?);
        let loss = rows::cross_entropy(&logits, last_dim(l1), &targets);
        Ok((CpuStorage::F32(loss), Shape::from(targets.len())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.apply_op3_no_bwd(targets, grad, &CrossEntropyBackward)?;
        Ok((Some(g), None))
    }
}

struct CrossEntropyBackward;

impl CustomOp3 for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "glassbox-cross-entropy-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, grad) = (f32_rows(s1, l1)?, u32_rows(s2, l2)?, f32_rows(s3, l3)?);
        let mut dx = vec![0f32; logits.len()];
        rows::cross_entropy_backward(&logits, last_dim(l1), &targets, &grad, &mut dx);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
