//! Attention's row operations: rotary embeddings, and softmax (plain, and over scaled, masked
//! attention scores).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use glassbox_kernels::rows;
pub use glassbox_kernels::rows::RotaryPairs;

use super::{f32_rows, last_dim, on_kernels};

// ---- rotary -------------------------------------------------------------------------------

/// Rotary embedding of `x` [batch, pos, head, d] with `cos`/`sin` [pos, half] (the first
/// `2·half` dimensions rotate, the rest pass through). Bit for bit the element-wise composition
/// in [`crate::ops`], forward and backward. `None` when `x` does not take the kernel path.
pub fn rotary(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    pairs: RotaryPairs,
) -> Result<Option<Tensor>> {
    if !(on_kernels(x) && cos.device().is_cpu() && x.rank() == 4) {
        return Ok(None);
    }
    let (positions, half) = cos.dims2()?;
    if x.dim(1)? != positions || 2 * half > x.dim(3)? || sin.dims2()? != (positions, half) {
        candle_core::bail!("rotary: x {:?} against tables {:?}", x.dims(), cos.dims());
    }
    let table = |t: &Tensor| -> Result<Arc<Vec<f32>>> {
        Ok(Arc::new(
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ))
    };
    let op = Rotary {
        pairs,
        cos: table(cos)?,
        sin: table(sin)?,
        half,
        positions,
        inverse: false,
    };
    Ok(Some(x.apply_op1_arc(Arc::new(Box::new(op)))?))
}

#[derive(Clone)]
struct Rotary {
    pairs: RotaryPairs,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    half: usize,
    positions: usize,
    inverse: bool,
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "glassbox-rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_rows(s, l)?;
        let dims = l.dims();
        let mut y = vec![0f32; x.len()];
        let tables = rows::RotaryTables {
            cos: &self.cos,
            sin: &self.sin,
            half: self.half,
            heads: dims[2],
            positions: self.positions,
        };
        rows::rotary(self.pairs, tables, self.inverse, &x, &mut y, dims[3]);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The rotation is orthogonal: its transpose (sin negated) carries the gradient back.
        let back = Rotary {
            inverse: !self.inverse,
            ..self.clone()
        };
        Ok(Some(grad.apply_op1_arc(Arc::new(Box::new(back)))?))
    }
}

// ---- softmax ------------------------------------------------------------------------------

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if on_kernels(x) {
        x.apply_op1_arc(Arc::new(Box::new(Softmax)))
    } else if x.device().is_cpu() && matches!(x.dtype(), DType::F16 | DType::BF16) {
        softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())
    } else {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "glassbox-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = rows::softmax_scaled(&f32_rows(s, l)?, last_dim(l), 1.0, None);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(grad, &SoftmaxBackward)?))
    }
}

/// The attention pattern `softmax(scores · scale + mask)` of raw scores [batch, heads, queries,
/// keys] and an additive mask [batch or 1, 1, queries, keys], in one pass over the scores on
/// the kernel path: the bits (and gradients) of scaling, masking and [`softmax_last_dim`] one
/// after another, which is what other dtypes and devices do.
pub fn attention_softmax(scores: &Tensor, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
    let fusable = on_kernels(scores)
        && scores.rank() == 4
        && mask.is_none_or(|m| {
            on_kernels(m)
                && m.rank() == 4
                && m.dim(1).ok() == Some(1)
                && m.dims()[2..] == scores.dims()[2..]
                && (m.dim(0).ok() == Some(1) || m.dim(0).ok() == scores.dim(0).ok())
        });
    if !fusable {
        let scaled = (scores * scale)?;
        let masked = match mask {
            Some(m) => scaled.broadcast_add(&m.to_dtype(scaled.dtype())?)?,
            None => scaled,
        };
        return softmax_last_dim(&masked);
    }
    let op = AttentionSoftmax { scale };
    match mask {
        Some(m) => scores.apply_op2_arc(m, Arc::new(Box::new(op))),
        None => scores.apply_op1_arc(Arc::new(Box::new(op))),
    }
}

struct AttentionSoftmax {
    scale: f64,
}

impl AttentionSoftmax {
    fn run(
        &self,
        s: &CpuStorage,
        l: &Layout,
        mask: Option<(&[f32], &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_rows(s, l)?;
        let dims = l.dims();
        let (heads, queries, keys) = (dims[1], dims[2], dims[3]);
        // Candle's `tensor * f64` multiplies by the f64 rounded to f32.
        let scale = self.scale as f32;
        let y = match mask {
            None => rows::softmax_scaled(&x, keys, scale, None),
            Some((m, ml)) => {
                let per_batch = ml.dims()[0] > 1;
                let row_of = move |row: usize| {
                    let (q, b) = (row % queries, row / (queries * heads));
                    if per_batch {
                        b * queries + q
                    } else {
                        q
                    }
                };
                rows::softmax_scaled(&x, keys, scale, Some((m, &row_of)))
            }
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// ∂/∂scores: the softmax's backward pass, then the scale (as candle's affine does it).
    fn grad(&self, y: &Tensor, grad: &Tensor) -> Result<Tensor> {
        y.apply_op2_no_bwd(grad, &SoftmaxBackward)?
            .affine(self.scale, 0.)
    }
}

impl CustomOp1 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "glassbox-attention-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(s, l, None)
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.grad(y, grad)?))
    }
}

impl CustomOp2 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "glassbox-attention-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let m = f32_rows(s2, l2)?;
        self.run(s1, l1, Some((&m, l2)))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.grad(y, grad)?), None))
    }
}

struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "glassbox-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, dy) = (f32_rows(s1, l1)?, f32_rows(s2, l2)?);
        let mut dx = vec![0f32; y.len()];
        rows::softmax_backward(&y, &dy, &mut dx, last_dim(l1));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
