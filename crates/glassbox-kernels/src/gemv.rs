//! Products with a few rows (m ≤ 4): the decoding step, one token against every weight.
//! Nothing is packed; the weight is streamed once, at memory bandwidth.
//!
//! - [`x_wt`]: `C = X·Wᵀ` with W stored [n, k], k contiguous (a linear layer's weight, the
//!   attention scores `q·Kᵀ`). Each output is a dot product of two contiguous rows, computed in
//!   the crate's dot-product order ([`reduce::LANES`] interleaved partial sums combined by a
//!   fixed tree), so vector lanes run along k and every W row is read sequentially.
//! - [`x_w`]: `C = X·B` with B stored [k, n], n contiguous (GPT-2's `Conv1D`, `attn·V`). Lanes
//!   run over output columns and each output keeps the GEMM order (one FMA chain over k), so
//!   the result is the one [`gemm`](crate::gemm) computes for any m.
//!
//! Both are generic over [`Simd`] and run on every path, the portable one included, so the
//! bits do not depend on the instruction set; threads split output columns only.
//!
//! [`reduce::LANES`]: crate::reduce::LANES

use rayon::prelude::*;

use crate::reduce::LANES;
use crate::simd::{isa_entry, Simd};
use crate::Isa;

/// The largest row count these kernels take.
pub(crate) const MAX_ROWS: usize = 4;

/// Output columns per threaded task of [`x_wt`].
const COLUMNS_PER_TASK: usize = 256;

/// Rows of B that [`chain_block`] reads across its whole column range before moving on.
const CHAIN_ROWS: usize = 8;

/// An output buffer threads write disjoint parts of.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    /// The pointer (a method, so closures capture the whole Send + Sync wrapper rather than
    /// its raw pointer field).
    pub(crate) fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// Splits columns 0..n into tasks of `per_task` columns (in parallel when asked and worth it)
/// and runs `f(j0, j1)`.
fn for_column_ranges(
    n: usize,
    per_task: usize,
    parallel: bool,
    f: impl Fn(usize, usize) + Send + Sync,
) {
    let tasks = n.div_ceil(per_task);
    if parallel && tasks > 1 {
        (0..tasks)
            .into_par_iter()
            .for_each(|t| f(t * per_task, ((t + 1) * per_task).min(n)));
    } else {
        f(0, n);
    }
}

/// X rows copied contiguous and zero-padded to a multiple of [`LANES`]: `m × kp`.
fn padded_rows(x: &[f32], x_rs: usize, x_cs: usize, m: usize, k: usize) -> (Vec<f32>, usize) {
    let kp = k.div_ceil(LANES) * LANES;
    let mut rows = vec![0f32; m * kp];
    for i in 0..m {
        for p in 0..k {
            rows[i * kp + p] = x[i * x_rs + p * x_cs];
        }
    }
    (rows, kp)
}

/// `c[i·ldc + j] (+)= dot(x row i, w row j)` for i < m ≤ 4, j < n; X element (i, p) at
/// `x[i·x_rs + p·x_cs]`, W element (j, p) at `w[j·w_rs + p]`. When accumulating, the dot
/// product is added to the existing output once, at the end.
#[allow(clippy::too_many_arguments)]
pub(crate) fn x_wt(
    isa: Isa,
    x: &[f32],
    x_rs: usize,
    x_cs: usize,
    m: usize,
    w: &[f32],
    w_rs: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    debug_assert!((1..=MAX_ROWS).contains(&m));
    let (xs, kp) = padded_rows(x, x_rs, x_cs, m, k);
    let c = Out(c);
    for_column_ranges(n, COLUMNS_PER_TASK, parallel, |j0, j1| {
        // Safety: column ranges are disjoint; the caller checked the bounds of W and C.
        dot_columns(
            isa,
            &xs,
            kp,
            m,
            w,
            w_rs,
            j0,
            j1,
            k,
            c.ptr(),
            ldc,
            accumulate,
        )
    });
}

isa_entry!(
    #[allow(clippy::too_many_arguments)]
    fn dot_columns(xs: &[f32], kp: usize, m: usize, w: &[f32], w_rs: usize, j0: usize, j1: usize, k: usize, c: *mut f32, ldc: usize, accumulate: bool) => dot_columns_k
);

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn dot_columns_k<S: Simd>(
    xs: &[f32],
    kp: usize,
    m: usize,
    w: &[f32],
    w_rs: usize,
    j0: usize,
    j1: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // One W row at a time: a single sequential stream is what the hardware prefetcher follows
    // best once W is in memory (several row streams at once measured 1.8× slower at the
    // 50257-row unembedding); the out-of-order core overlaps consecutive rows' chains.
    for j in j0..j1 {
        match m {
            1 => dot_block::<S, 1, 1>(xs, kp, w, w_rs, j, k, c, ldc, accumulate),
            2 => dot_block::<S, 2, 1>(xs, kp, w, w_rs, j, k, c, ldc, accumulate),
            3 => dot_block::<S, 3, 1>(xs, kp, w, w_rs, j, k, c, ldc, accumulate),
            _ => dot_block::<S, 4, 1>(xs, kp, w, w_rs, j, k, c, ldc, accumulate),
        }
    }
}

/// Outputs (i, j..j + R) for i < M: the 16-lane dot products of X rows and W rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn dot_block<S: Simd, const M: usize, const R: usize>(
    xs: &[f32],
    kp: usize,
    w: &[f32],
    w_rs: usize,
    j: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let width = S::LANES;
    let nv = LANES / width;
    let xp = xs.as_ptr();
    let wp = w.as_ptr().add(j * w_rs);
    let mut acc = [[[S::splat(0.0); LANES]; R]; M];
    let full = k / LANES * LANES;
    let mut p = 0;
    while p < full {
        for r in 0..R {
            for v in 0..nv {
                let wv = S::load(wp.add(r * w_rs + p + v * width));
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let xv = S::load(xp.add(i * kp + p + v * width));
                    acc_i[r][v] = S::fma(xv, wv, acc_i[r][v]);
                }
            }
        }
        p += LANES;
    }
    if full < k {
        // The last partial chunk, both operands zero-padded (X already is).
        for r in 0..R {
            let mut tail = [0f32; LANES];
            let row = &w[(j + r) * w_rs + full..(j + r) * w_rs + k];
            tail[..k - full].copy_from_slice(row);
            for v in 0..nv {
                let wv = S::load(tail.as_ptr().add(v * width));
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let xv = S::load(xp.add(i * kp + full + v * width));
                    acc_i[r][v] = S::fma(xv, wv, acc_i[r][v]);
                }
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (r, acc_ir) in acc_i.iter().enumerate() {
            let mut lanes = [0f32; LANES];
            for (v, a) in acc_ir.iter().enumerate().take(nv) {
                S::store(lanes.as_mut_ptr().add(v * width), *a);
            }
            let dot = crate::reduce::tree(lanes);
            let out = c.add(i * ldc + j + r);
            *out = if accumulate { *out + dot } else { dot };
        }
    }
}

/// `c[i·ldc + j] (+)= Σ_p x[i·x_rs + p·x_cs] · b[p·b_rs + j]` for i < m ≤ 4, j < n, each
/// output one FMA chain over p in increasing order, starting from 0 or from the existing output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn x_w(
    isa: Isa,
    x: &[f32],
    x_rs: usize,
    x_cs: usize,
    m: usize,
    b: &[f32],
    b_rs: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    debug_assert!((1..=MAX_ROWS).contains(&m));
    let (xs, kp) = padded_rows(x, x_rs, x_cs, m, k);
    let c = Out(c);
    // One task per thread: the longest row segments of B, read in long sequential runs.
    let per_task = n.div_ceil(crate::threads()).next_multiple_of(64);
    for_column_ranges(n, per_task, parallel, |j0, j1| {
        // Safety: column ranges are disjoint; the caller checked the bounds of B and C.
        chain_columns(
            isa,
            &xs,
            kp,
            m,
            b,
            b_rs,
            j0,
            j1,
            k,
            c.ptr(),
            ldc,
            accumulate,
        )
    });
}

isa_entry!(
    #[allow(clippy::too_many_arguments)]
    fn chain_columns(xs: &[f32], kp: usize, m: usize, b: &[f32], b_rs: usize, j0: usize, j1: usize, k: usize, c: *mut f32, ldc: usize, accumulate: bool) => chain_columns_k
);

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_columns_k<S: Simd>(
    xs: &[f32],
    kp: usize,
    m: usize,
    b: &[f32],
    b_rs: usize,
    j0: usize,
    j1: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = vec![0f32; m * (j1 - j0)];
    match m {
        1 => chain_block::<S, 1, 8>(xs, kp, b, b_rs, j0, j1, k, c, ldc, accumulate, &mut acc),
        2 => chain_block::<S, 2, 4>(xs, kp, b, b_rs, j0, j1, k, c, ldc, accumulate, &mut acc),
        3 => chain_block::<S, 3, 2>(xs, kp, b, b_rs, j0, j1, k, c, ldc, accumulate, &mut acc),
        _ => chain_block::<S, 4, 2>(xs, kp, b, b_rs, j0, j1, k, c, ldc, accumulate, &mut acc),
    }
}

/// Outputs (i, j0..j1) for i < M, each an FMA chain over k. The partial sums live in `acc`
/// (M × (j1 - j0)); B is read [`CHAIN_ROWS`] rows at a time across the whole column range, so
/// the weight streams in long sequential runs whatever its row stride, and within those rows a
/// register tile of V vectors × M rows carries the chains.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_block<S: Simd, const M: usize, const V: usize>(
    xs: &[f32],
    kp: usize,
    b: &[f32],
    b_rs: usize,
    j0: usize,
    j1: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    acc: &mut [f32],
) {
    let width = j1 - j0;
    let vectors = width / S::LANES * S::LANES;
    let ap = acc.as_mut_ptr();
    if accumulate {
        for i in 0..M {
            std::ptr::copy_nonoverlapping(c.add(i * ldc + j0), ap.add(i * width), width);
        }
    }
    let bp = b.as_ptr().add(j0);
    let mut p0 = 0;
    while p0 < k {
        let p1 = (p0 + CHAIN_ROWS).min(k);
        let mut v = 0;
        while v + V * S::LANES <= vectors {
            chain_tile::<S, M, V>(xs, kp, bp.add(v), b_rs, p0, p1, ap.add(v), width);
            v += V * S::LANES;
        }
        while v < vectors {
            chain_tile::<S, M, 1>(xs, kp, bp.add(v), b_rs, p0, p1, ap.add(v), width);
            v += S::LANES;
        }
        while v < width {
            chain_tile::<crate::simd::Portable, M, 1>(
                xs,
                kp,
                bp.add(v),
                b_rs,
                p0,
                p1,
                ap.add(v),
                width,
            );
            v += 1;
        }
        p0 = p1;
    }
    for i in 0..M {
        std::ptr::copy_nonoverlapping(ap.add(i * width), c.add(i * ldc + j0), width);
    }
}

/// Continues the chains of V vectors of columns × M rows (partial sums at `acc`, row stride
/// `acc_rs`) over rows p0..p1 of B (column 0 of the tile at `b`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_tile<S: Simd, const M: usize, const V: usize>(
    xs: &[f32],
    kp: usize,
    b: *const f32,
    b_rs: usize,
    p0: usize,
    p1: usize,
    acc: *mut f32,
    acc_rs: usize,
) {
    let width = S::LANES;
    let xp = xs.as_ptr();
    let mut regs: [[S::V; V]; M] =
        std::array::from_fn(|i| std::array::from_fn(|v| S::load(acc.add(i * acc_rs + v * width))));
    for p in p0..p1 {
        let row = b.add(p * b_rs);
        let xv: [S::V; M] = std::array::from_fn(|i| S::splat(*xp.add(i * kp + p)));
        for v in 0..V {
            let bv = S::load(row.add(v * width));
            for i in 0..M {
                regs[i][v] = S::fma(xv[i], bv, regs[i][v]);
            }
        }
    }
    for (i, regs_i) in regs.iter().enumerate() {
        for (v, r) in regs_i.iter().enumerate() {
            S::store(acc.add(i * acc_rs + v * width), *r);
        }
    }
}
