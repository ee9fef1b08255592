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
//!
//! Here: the layout helpers the ops share and widening; `matmul.rs` the products,
//! `attention.rs` rotary and softmax, `row_ops.rs` norms, activations and the loss.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

mod attention;
mod matmul;
mod row_ops;

pub use attention::{attention_softmax, rotary, softmax_last_dim, RotaryPairs};
pub use glassbox_kernels::rows::{Activation as KernelActivation, NormKind as KernelNorm};
pub use matmul::{matmul, matmul_mapped};
pub use row_ops::{activation, cross_entropy_rows, gelu_f16_table, normalize};

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
