//! Matrix products: candle tensors by candle tensors, and activations by weights read in place
//! from a checkpoint's memory map.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

use glassbox_kernels::{gemm_batched_new, MatRef};

use super::on_kernels;
use crate::mapped::MappedWeight;

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
    let c = match (step_a, step_b) {
        _ if batch == 0 || m * n == 0 => Vec::new(),
        (Some(step_a), Some(step_b)) => {
            gemm_batched_new(batch, view_a(oa[0]), step_a, view_b(ob[0]), step_b)
        }
        _ => {
            // Irregular batch offsets (a broadcast operand under grouped-query attention):
            // items in parallel, each computing exactly what it would alone.
            use rayon::prelude::*;
            let isa = glassbox_kernels::Isa::active();
            let mut c = vec![0f32; batch * m * n];
            c.par_chunks_mut(m * n).enumerate().for_each(|(i, ci)| {
                glassbox_kernels::with_isa(isa, || {
                    glassbox_kernels::gemm(view_a(oa[i]), view_b(ob[i]), ci, false)
                })
            });
            c
        }
    };
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
        // A backward pass has no hook points: its products are where it sees a stop request.
        crate::stop::check()?;
        let grad_a = matmul(grad, &b.t()?)?;
        let grad_b = matmul(&a.t()?, grad)?.to_dtype(b.dtype())?;
        Ok((Some(grad_a), Some(grad_b)))
    }
}

/// `x · W` (`in_out`: W stored [in, out]) or `x · Wᵀ` (W stored [out, in]) for f32 `x` [rows,
/// in] and a weight read in place from the memory map — the same kernel call, so the same bits,
/// as [`matmul`] on a copy of it. The gradient reaches `x`; a mapped weight is a constant.
/// A weight stored [in, out] that is multiplied again by more than FEW_ROWS rows is read from
/// its [out, in] copy ([`MappedWeight::out_in_copy`]), forward and backward, and so are later
/// few-row forward products (decoding): the same bits, without packing it every time, and its
/// mapped pages stay released.
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
        let few_rows = x_rows <= glassbox_kernels::FEW_ROWS;
        if self.in_out && !few_rows {
            if let Some(copy) = self.w.out_in_copy() {
                // The copy holds the stored matrix transposed, [cols, rows]. More than
                // FEW_ROWS rows: one FMA chain per element whichever way B is laid out.
                return matmul_cpu(a, l, copy, &oriented(cols, rows, as_stored)?);
            }
        }
        if self.in_out && few_rows && !self.backward {
            // A few rows (decoding) by the stored [in, out] matrix sum in chunked chains over
            // its rows; a copy made by earlier products is read in that order, so that its
            // released pages stay released. (Nor does a few-row product make one: it would
            // not pay. A few rows backward sum dot products of stored rows and read those.)
            if let Some(copy) = self.w.out_in_copy_if_made() {
                if let Some(a) = l.contiguous_offsets().map(|(start, end)| &a[start..end]) {
                    let mut c = vec![0f32; x_rows * cols];
                    let x = glassbox_kernels::MatRef::row_major(a, x_rows, rows);
                    let b = glassbox_kernels::MatRef::row_major(copy, cols, rows).t();
                    glassbox_kernels::gemm_few_rows_chained(x, b, &mut c);
                    let mut dims = l.dims().to_vec();
                    *dims.last_mut().unwrap() = cols;
                    return Ok((CpuStorage::F32(c), Shape::from(dims)));
                }
            }
        }
        let lb = oriented(rows, cols, !as_stored)?;
        match self.w.stored_dtype() {
            DType::F32 => matmul_cpu(a, l, self.w.values::<f32>()?, &lb),
            DType::F16 => matmul_cpu(a, l, self.w.values::<half::f16>()?, &lb),
            DType::BF16 => matmul_cpu(a, l, self.w.values::<half::bf16>()?, &lb),
            dt => candle_core::bail!("glassbox-matmul-mapped: {dt:?} weight"),
        }
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        crate::stop::check()?;
        // d(x·B)/dx = grad·Bᵀ, and Bᵀ is the weight read the other way round.
        let grad_x = grad.apply_op1_arc(Arc::new(Box::new(MappedMatMul {
            w: self.w.clone(),
            in_out: self.in_out,
            backward: !self.backward,
        })))?;
        Ok(Some(grad_x))
    }
}
