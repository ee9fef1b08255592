//! candle operations computed by `glassbox-kernels`, each with its backward pass.
//!
//! candle stays the tensor and autograd layer; these custom ops route the arithmetic that
//! dominates a transformer — matmuls, softmax, norms, activations, the loss — to our own
//! kernels, which are faster than candle's generic CPU code and give the same bits on every
//! CPU and thread count (see the `glassbox-kernels` crate docs). Each backward is itself
//! computed by the kernels, so training is deterministic end to end.
//!
//! f32 tensors on the CPU take the kernel path. f16/bf16 inputs are widened to f32 around the
//! kernel (as the references upcast); f64 tensors (gradient checks) and other devices keep
//! candle's own ops, composed so that gradients still flow.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use glassbox_kernels::rows::{self, Activation as Act, NormKind};
use glassbox_kernels::{gemm_batched, MatRef};

use crate::mapped::MappedWeight;

pub use glassbox_kernels::rows::{Activation as KernelActivation, NormKind as KernelNorm};

/// Gives the CPU's threads to the kernels. Call once at process start, before any tensor
/// operation or other thread exists (it sets an environment variable).
///
/// candle runs its own element-wise operations on a pool of its own whose workers spin for a
/// while after every operation. Next to the kernels' rayon pool that means two busy threads
/// per core: on a 2-core machine GPT-2 small's forward took 240 ms instead of 200 ms. With
/// `CANDLE_NUM_THREADS=1` candle's pool is only the calling thread; what remains of candle's
/// arithmetic is small element-wise work. A value the user set is kept. Results are the same
/// either way (element-wise work does not depend on how it is split).
pub fn claim_cpu_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// True when `t` takes the kernel path as it is.
fn on_kernels(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The f32 elements of a CPU tensor in row-major order: borrowed when contiguous.
fn f32_rows<'a>(s: &'a CpuStorage, l: &Layout) -> Result<Cow<'a, [f32]>> {
    let data = s.as_slice::<f32>()?;
    Ok(match l.contiguous_offsets() {
        Some((a, b)) => Cow::Borrowed(&data[a..b]),
        None => Cow::Owned(gather(data, l)),
    })
}

fn u32_rows<'a>(s: &'a CpuStorage, l: &Layout) -> Result<Cow<'a, [u32]>> {
    let data = s.as_slice::<u32>()?;
    Ok(match l.contiguous_offsets() {
        Some((a, b)) => Cow::Borrowed(&data[a..b]),
        None => Cow::Owned(gather(data, l)),
    })
}

/// Copies a strided view into row-major order.
fn gather<T: Copy>(data: &[T], l: &Layout) -> Vec<T> {
    let dims = l.dims();
    let stride = l.stride();
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    let mut off = l.start_offset();
    for _ in 0..n {
        out.push(data[off]);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            off += stride[d];
            if idx[d] < dims[d] {
                break;
            }
            off -= stride[d] * dims[d];
            idx[d] = 0;
        }
    }
    out
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1)
}

// ---- widening -----------------------------------------------------------------------------

/// `t` as f32. A half-precision CPU tensor is widened by the kernels, vectorised and exact
/// (candle converts one value at a time); anything else goes through candle's `to_dtype`.
pub fn to_f32(t: &Tensor) -> Result<Tensor> {
    match t.dtype() {
        // A tracked input goes through candle's conversion, which records the backward (the
        // same values: widening is exact).
        DType::F16 | DType::BF16 if t.device().is_cpu() && !t.track_op() => {
            t.apply_op1_no_bwd(&Widen)
        }
        _ => t.to_dtype(DType::F32),
    }
}

struct Widen;

impl CustomOp1 for Widen {
    fn name(&self) -> &'static str {
        "glassbox-widen"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F16(v) => widen_layout(v, l),
            CpuStorage::BF16(v) => widen_layout(v, l),
            _ => candle_core::bail!("glassbox-widen: the input is not f16 or bf16"),
        };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

/// The elements of `data` under layout `l`, row-major, widened to f32: rows of the last
/// dimension at a time when it is contiguous, in parallel over rows.
fn widen_layout<T: glassbox_kernels::Element>(data: &[T], l: &Layout) -> Vec<f32> {
    use rayon::prelude::*;
    let isa = glassbox_kernels::Isa::active();
    let d = last_dim(l);
    let n = l.shape().elem_count();
    let mut out = vec![0f32; n];
    if d == 0 || n == 0 {
        return out;
    }
    if let Some((a, b)) = l.contiguous_offsets() {
        out.par_chunks_mut(1 << 16)
            .zip(data[a..b].par_chunks(1 << 16))
            .for_each(|(o, s)| T::widen(isa, s, o));
        return out;
    }
    if l.stride().last() != Some(&1) {
        let gathered = gather(data, l);
        T::widen(isa, &gathered, &mut out);
        return out;
    }
    // Start offset of each row (all dimensions but the last), in row-major order.
    let dims = &l.dims()[..l.dims().len() - 1];
    let strides = &l.stride()[..dims.len()];
    let row_start = |mut r: usize| {
        let mut off = l.start_offset();
        for (dim, stride) in dims.iter().zip(strides).rev() {
            off += (r % dim) * stride;
            r /= dim;
        }
        off
    };
    out.par_chunks_mut(d)
        .enumerate()
        .with_min_len(64)
        .for_each(|(r, o)| {
            let start = row_start(r);
            T::widen(isa, &data[start..start + d], o);
        });
    out
}

// ---- matmul -------------------------------------------------------------------------------

/// `a · b` over the last two dimensions (equal leading dimensions), as `Tensor::matmul`.
/// `a` in f32 and `b` in f32, f16 or bf16 (widened while packing) take the kernel path.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let b_ok = matches!(b.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if on_kernels(a) && b.device().is_cpu() && b_ok && a.rank() >= 2 && a.rank() == b.rank() {
        a.apply_op2_arc(b, Arc::new(Box::new(MatMul)))
    } else {
        // candle's matmul accepts only some strided layouts.
        a.contiguous()?.matmul(&b.contiguous()?)
    }
}

struct MatMul;

/// Offsets of every batch item of a layout's leading dimensions, and their common stride
/// when they form an arithmetic progression.
fn batch_offsets(l: &Layout) -> (Vec<usize>, Option<usize>) {
    let dims = l.dims();
    let r = dims.len();
    let sub = Layout::new(
        Shape::from(dims[..r - 2].to_vec()),
        l.stride()[..r - 2].to_vec(),
        l.start_offset(),
    );
    let offsets = offsets_of(&sub);
    let step = match offsets.as_slice() {
        [_] => Some(0),
        [a, b, ..] if b >= a => {
            let s = b - a;
            offsets.windows(2).all(|w| w[1] == w[0] + s).then_some(s)
        }
        _ => None,
    };
    (offsets, step)
}

fn offsets_of(l: &Layout) -> Vec<usize> {
    let dims = l.dims();
    let stride = l.stride();
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    let mut off = l.start_offset();
    for _ in 0..n {
        out.push(off);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            off += stride[d];
            if idx[d] < dims[d] {
                break;
            }
            off -= stride[d] * dims[d];
            idx[d] = 0;
        }
    }
    out
}

fn matmul_cpu<TB: glassbox_kernels::Element>(
    a: &[f32],
    la: &Layout,
    b: &[TB],
    lb: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (da, db) = (la.dims(), lb.dims());
    let r = da.len();
    if db.len() != r || da[..r - 2] != db[..r - 2] || da[r - 1] != db[r - 2] {
        candle_core::bail!("matmul: shapes {da:?} and {db:?} do not multiply");
    }
    let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
    let (sa, sb) = (la.stride(), lb.stride());
    let batch: usize = da[..r - 2].iter().product();
    let mut c = vec![0f32; batch * m * n];
    let (oa, step_a) = batch_offsets(la);
    let (ob, step_b) = batch_offsets(lb);
    let view_a = |off: usize| MatRef {
        data: &a[off..],
        rows: m,
        cols: k,
        row_stride: sa[r - 2],
        col_stride: sa[r - 1],
    };
    let view_b = |off: usize| MatRef {
        data: &b[off..],
        rows: k,
        cols: n,
        row_stride: sb[r - 2],
        col_stride: sb[r - 1],
    };
    if batch > 0 && m * n > 0 {
        match (step_a, step_b) {
            (Some(step_a), Some(step_b)) => gemm_batched(
                batch,
                view_a(oa[0]),
                step_a,
                view_b(ob[0]),
                step_b,
                &mut c,
                false,
            ),
            _ => {
                // Irregular batch offsets (a broadcast operand under grouped-query attention):
                // items in parallel, each computing exactly what it would alone.
                use rayon::prelude::*;
                let isa = glassbox_kernels::Isa::active();
                c.par_chunks_mut(m * n).enumerate().for_each(|(i, ci)| {
                    glassbox_kernels::with_isa(isa, || {
                        glassbox_kernels::gemm(view_a(oa[i]), view_b(ob[i]), ci, false)
                    })
                });
            }
        }
    }
    let mut out = da.to_vec();
    out[r - 1] = n;
    Ok((CpuStorage::F32(c), Shape::from(out)))
}

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "glassbox-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = s1.as_slice::<f32>()?;
        match s2 {
            CpuStorage::F32(b) => matmul_cpu(a, l1, b, l2),
            CpuStorage::F16(b) => matmul_cpu(a, l1, b, l2),
            CpuStorage::BF16(b) => matmul_cpu(a, l1, b, l2),
            _ => candle_core::bail!("glassbox-matmul: the right operand must be f32, f16 or bf16"),
        }
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_a = matmul(grad, &b.t()?)?;
        let grad_b = matmul(&a.t()?, grad)?.to_dtype(b.dtype())?;
        Ok((Some(grad_a), Some(grad_b)))
    }
}

/// `x · W` (`in_out`: W stored [in, out]) or `x · Wᵀ` (W stored [out, in]) for f32 `x` [rows,
/// in] and a weight read in place from the memory map — the same kernel call, so the same bits,
/// as [`matmul`] on a copy of it. The gradient reaches `x`; a mapped weight is a constant.
/// A weight stored [in, out] that is multiplied again is read from its [out, in] copy
/// ([`MappedWeight::out_in_copy`]) in products of more than FEW_ROWS rows, forward and
/// backward: the same bits, without packing it every time, and its mapped pages stay released.
pub fn matmul_mapped(x: &Tensor, w: &Arc<MappedWeight>, in_out: bool) -> Result<Tensor> {
    x.apply_op1_arc(Arc::new(Box::new(MappedMatMul {
        w: w.clone(),
        in_out,
        backward: false,
    })))
}

struct MappedMatMul {
    w: Arc<MappedWeight>,
    /// The weight is stored [in, out] (a `Conv1D`), not [out, in].
    in_out: bool,
    /// The product by the transpose of the layer's matrix (the backward pass).
    backward: bool,
}

impl CustomOp1 for MappedMatMul {
    fn name(&self) -> &'static str {
        "glassbox-matmul-mapped"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = s.as_slice::<f32>()?;
        let [rows, cols] = self.w.dims()[..] else {
            candle_core::bail!("{:?}: not a matrix", self.w);
        };
        // B is the weight as stored, or its transpose.
        let as_stored = self.in_out != self.backward;
        let oriented = |rows: usize, cols: usize, transpose: bool| {
            let l = Layout::contiguous((rows, cols));
            if transpose {
                l.transpose(0, 1)
            } else {
                Ok(l)
            }
        };
        let x_rows = l.dims().iter().rev().skip(1).product::<usize>();
        if self.in_out && x_rows > glassbox_kernels::FEW_ROWS {
            if let Some(copy) = self.w.out_in_copy() {
                // The copy holds the stored matrix transposed, [cols, rows]. More than
                // FEW_ROWS rows: one FMA chain per element whichever way B is laid out.
                return matmul_cpu(a, l, copy, &oriented(cols, rows, as_stored)?);
            }
        }
        let lb = oriented(rows, cols, !as_stored)?;
        match self.w.dtype() {
            DType::F32 => matmul_cpu(a, l, self.w.values::<f32>()?, &lb),
            DType::F16 => matmul_cpu(a, l, self.w.values::<half::f16>()?, &lb),
            DType::BF16 => matmul_cpu(a, l, self.w.values::<half::bf16>()?, &lb),
            dt => candle_core::bail!("glassbox-matmul-mapped: {dt:?} weight"),
        }
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // d(x·B)/dx = grad·Bᵀ, and Bᵀ is the weight read the other way round.
        let grad_x = grad.apply_op1_arc(Arc::new(Box::new(MappedMatMul {
            w: self.w.clone(),
            in_out: self.in_out,
            backward: !self.backward,
        })))?;
        Ok(Some(grad_x))
    }
}

// ---- rotary -------------------------------------------------------------------------------

pub use glassbox_kernels::rows::RotaryPairs;

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
