//! Products with a few rows (m ≤ 4): the decoding step, one token against every weight.
//! Nothing is packed; the weight is streamed once, at memory bandwidth.
//!
//! - [`x_wt`]: `C = X·Wᵀ` with W stored [n, k], k contiguous (a linear layer's weight, the
//!   attention scores `q·Kᵀ`). Each output is a dot product of two contiguous rows, computed in
//!   the crate's dot-product order ([`reduce::LANES`] interleaved partial sums combined by a
//!   fixed tree), so vector lanes run along k and every W row is read sequentially.
//! - [`x_w`]: `C = X·B` with B stored [k, n], n contiguous (GPT-2's `Conv1D`, `attn·V`). Lanes
//!   run over output columns; each output is a sum of FMA chains over fixed 64-row chunks of k,
//!   so that each thread streams whole chunks of B.
//!
//! Both are generic over [`Simd`] and run on every path, the portable one included, so the
//! bits do not depend on the instruction set; threads split output columns only. A weight
//! stored in f16 or bf16 is widened (exactly) as its vectors are loaded, so it streams from
//! memory at its own width: half the bytes of f32.
//!
//! [`reduce::LANES`]: crate::reduce::LANES

use rayon::prelude::*;

use crate::gemm::{pack_b, Element, MatRef};
use crate::reduce::LANES;
use crate::simd::{per_element, Lanes, Simd};
use crate::Isa;

/// The largest row count these kernels take.
pub(crate) const MAX_ROWS: usize = 4;

/// Output columns per threaded task of [`x_wt`], at most.
const COLUMNS_PER_TASK: usize = 256;

/// Rows of B in each chunk of [`x_w`]'s sum (a constant, so the order never depends on the
/// thread count).
pub(crate) const CHAIN_CHUNK: usize = 64;

/// Columns of B that [`x_w`] moves into one block when B's rows are not contiguous: with
/// [`CHAIN_CHUNK`] rows, 16 KiB, which stays in L1 while its chains run.
const BLOCK_COLUMNS: usize = 64;

/// A weight as its element type, for the kernels' per-type entry points.
enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
}

impl<'a> Weights<'a> {
    fn of<T: Element>(w: &'a [T]) -> Self {
        use std::any::TypeId;
        let t = TypeId::of::<T>();
        // Safety of the casts: T is the type its TypeId names.
        unsafe {
            if t == TypeId::of::<f32>() {
                Weights::F32(&*(w as *const [T] as *const [f32]))
            } else if t == TypeId::of::<half::f16>() {
                Weights::F16(&*(w as *const [T] as *const [half::f16]))
            } else if t == TypeId::of::<half::bf16>() {
                Weights::Bf16(&*(w as *const [T] as *const [half::bf16]))
            } else {
                unreachable!("gemm element types are f32, f16 and bf16")
            }
        }
    }
}

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
pub(crate) fn x_wt<T: Element>(
    isa: Isa,
    x: &[f32],
    x_rs: usize,
    x_cs: usize,
    m: usize,
    w: &[T],
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
    // Past one task, a multiple of the thread count of tasks, so that no thread is left a
    // task more than the others (3 tasks on 2 threads ran at two thirds of the bandwidth).
    let threads = crate::threads();
    let per_task = match n <= COLUMNS_PER_TASK {
        true => n,
        false => n.div_ceil(threads * n.div_ceil(threads * COLUMNS_PER_TASK)),
    };
    // Safety (of each call below): column ranges are disjoint; the caller checked the bounds
    // of W and C.
    let w = Weights::of(w);
    for_column_ranges(n, per_task, parallel, |j0, j1| {
        let (xs, c) = (&xs[..], c.ptr());
        match w {
            Weights::F32(w) => {
                let w = &w[j0 * w_rs..];
                dot_columns_f32(isa, xs, kp, m, w, w_rs, j0, j1, k, c, ldc, accumulate)
            }
            Weights::F16(w) => {
                let w = &w[j0 * w_rs..];
                dot_columns_f16(isa, xs, kp, m, w, w_rs, j0, j1, k, c, ldc, accumulate)
            }
            Weights::Bf16(w) => {
                let w = &w[j0 * w_rs..];
                dot_columns_bf16(isa, xs, kp, m, w, w_rs, j0, j1, k, c, ldc, accumulate)
            }
        }
    });
}

// Outputs (i, j0..j1); `w` starts at the row of output column j0.
per_element!(dot_columns_f32, dot_columns_f32_k, dot_columns_k, f32, (xs: &[f32], kp: usize, m: usize, w: &[f32], w_rs: usize, j0: usize, j1: usize, k: usize, c: *mut f32, ldc: usize, accumulate: bool));
per_element!(dot_columns_f16, dot_columns_f16_k, dot_columns_k, half::f16, (xs: &[f32], kp: usize, m: usize, w: &[half::f16], w_rs: usize, j0: usize, j1: usize, k: usize, c: *mut f32, ldc: usize, accumulate: bool));
per_element!(dot_columns_bf16, dot_columns_bf16_k, dot_columns_k, half::bf16, (xs: &[f32], kp: usize, m: usize, w: &[half::bf16], w_rs: usize, j0: usize, j1: usize, k: usize, c: *mut f32, ldc: usize, accumulate: bool));

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn dot_columns_k<S: Simd, E: Lanes>(
    xs: &[f32],
    kp: usize,
    m: usize,
    w: &[E],
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
        let row = j - j0;
        match m {
            1 => dot_block::<S, E, 1, 1>(xs, kp, w, w_rs, row, j, k, c, ldc, accumulate),
            2 => dot_block::<S, E, 2, 1>(xs, kp, w, w_rs, row, j, k, c, ldc, accumulate),
            3 => dot_block::<S, E, 3, 1>(xs, kp, w, w_rs, row, j, k, c, ldc, accumulate),
            _ => dot_block::<S, E, 4, 1>(xs, kp, w, w_rs, row, j, k, c, ldc, accumulate),
        }
    }
}

/// Outputs (i, j..j + R) for i < M: the 16-lane dot products of X rows and W rows
/// `row..row + R` (W's row `row` is output column j).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn dot_block<S: Simd, E: Lanes, const M: usize, const R: usize>(
    xs: &[f32],
    kp: usize,
    w: &[E],
    w_rs: usize,
    row: usize,
    j: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let width = S::LANES;
    let nv = LANES / width;
    let xp = xs.as_ptr();
    let wp = w.as_ptr().add(row * w_rs);
    let mut acc = [[[S::splat(0.0); LANES]; R]; M];
    let full = k / LANES * LANES;
    let mut p = 0;
    while p < full {
        for r in 0..R {
            for v in 0..nv {
                let wv = E::load::<S>(wp.add(r * w_rs + p + v * width));
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
            let last = &w[(row + r) * w_rs + full..(row + r) * w_rs + k];
            for (t, v) in tail.iter_mut().zip(last) {
                *t = v.to_f32();
            }
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

/// `c[i·ldc + j] (+)= Σ_p x[i·x_rs + p·x_cs] · B[p, j]` for i < m ≤ 4, j < n, summed in
/// [`chunked_chain_order`]'s order: k is cut into chunks of [`CHAIN_CHUNK`] rows, each chunk
/// one FMA chain from 0 in increasing p, the chunks' sums added in increasing order, and the
/// total added to the existing output once, at the end, when accumulating.
///
/// The chunks are what make the weight stream: a chunk of B is one contiguous block when B's
/// rows are contiguous (`b.col_stride == 1`, GPT-2's `Conv1D`), and each thread reads whole
/// chunks (whole rows of B) one after another. Splitting columns among threads instead leaves
/// every thread short runs of each row with gaps between them, which measured 1.4× slower at
/// GPT-2's `Conv1D` weights than a dot product's single stream.
///
/// B in another layout (a `Conv1D` weight held as its [n, k] copy, see [`crate::transposed`],
/// whose products must keep the stored layout's bits) is read 64 columns per task: on x86
/// SIMD paths straight from the copy's rows, 8×8 blocks transposed in registers; otherwise a
/// chunk at a time moved into an L1 block laid out as the stored weight. Either way the same
/// values in the same order, so the same bits.
#[allow(clippy::too_many_arguments)]
pub(crate) fn x_w<T: Element>(
    isa: Isa,
    x: &[f32],
    x_rs: usize,
    x_cs: usize,
    m: usize,
    b: MatRef<T>,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    debug_assert!((1..=MAX_ROWS).contains(&m));
    let (k, n) = (b.rows, b.cols);
    let (xs, kp) = padded_rows(x, x_rs, x_cs, m, k);
    let chunks = k.div_ceil(CHAIN_CHUNK).max(1);
    // Chunk q's sums: row i, column j at `sums[(q·m + i)·n + j]`.
    let mut sums = vec![0f32; chunks * m * n];
    let out = Out(sums.as_mut_ptr());
    if b.col_stride == 1 {
        // Columns are split as well only where there are too few chunks to go round the
        // threads; the split moves no bits (each column is summed on its own).
        let parts = if parallel {
            (2 * crate::threads()).div_ceil(chunks)
        } else {
            1
        };
        let per_part = n.div_ceil(parts).next_multiple_of(64);
        let parts = n.div_ceil(per_part).max(1);
        let b_rs = b.row_stride;
        let weights = Weights::of(b.data);
        let task = |t: usize| {
            let (q, part) = (t / parts, t % parts);
            let (p0, p1) = (q * CHAIN_CHUNK, ((q + 1) * CHAIN_CHUNK).min(k));
            let (j0, j1) = (part * per_part, ((part + 1) * per_part).min(n));
            let sums = out.ptr().wrapping_add(q * m * n + j0);
            // Safety (of each call below): tasks write disjoint (chunk, column range) blocks
            // of `sums`; the caller checked the bounds of B.
            let width = j1 - j0;
            match weights {
                Weights::F32(b) => {
                    chain_columns_f32(isa, &xs, kp, m, &b[j0..], b_rs, p0, p1, width, sums, n)
                }
                Weights::F16(b) => {
                    chain_columns_f16(isa, &xs, kp, m, &b[j0..], b_rs, p0, p1, width, sums, n)
                }
                Weights::Bf16(b) => {
                    chain_columns_bf16(isa, &xs, kp, m, &b[j0..], b_rs, p0, p1, width, sums, n)
                }
            }
        };
        if parallel && chunks * parts > 1 {
            (0..chunks * parts).into_par_iter().for_each(task);
        } else {
            (0..chunks * parts).for_each(task);
        }
    } else {
        // B's columns are its contiguous runs (the copy's rows): a task takes 64 of them and
        // reads each front to back. On x86 SIMD paths, groups of 16 are chained straight from
        // them, 8×8 blocks transposed in registers ([`x86::copy_chains`]); otherwise (and for
        // the last columns) a chunk of them at a time is moved into an L1 block laid out as
        // B's rows, which the chains then read.
        let task = |t: usize| {
            #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
            let (mut j0, j1) = (t * BLOCK_COLUMNS, ((t + 1) * BLOCK_COLUMNS).min(n));
            #[cfg(target_arch = "x86_64")]
            if let (Weights::F32(data), true) = (Weights::of(b.data), b.row_stride == 1) {
                if isa != Isa::Portable && Isa::Avx2.available() {
                    // Whole groups of 16 columns straight from the copy's rows.
                    let width = (j1 - j0) / 16 * 16;
                    // Safety: AVX2 and FMA are available; the caller checked B's bounds;
                    // tasks write disjoint column ranges of `sums`.
                    let (bt, sums) = (
                        data[j0 * b.col_stride..].as_ptr(),
                        out.ptr().wrapping_add(j0),
                    );
                    let args = (&xs[..], kp, bt, b.col_stride, k, width, sums, n);
                    unsafe {
                        match m {
                            1 => x86::copy_chains::<1>(args),
                            2 => x86::copy_chains::<2>(args),
                            3 => x86::copy_chains::<3>(args),
                            _ => x86::copy_chains::<4>(args),
                        }
                    }
                    j0 += width;
                }
            }
            if j0 == j1 {
                return;
            }
            let mut block = [0f32; CHAIN_CHUNK * BLOCK_COLUMNS];
            for q in 0..chunks {
                let (p0, p1) = (q * CHAIN_CHUNK, ((q + 1) * CHAIN_CHUNK).min(k));
                let block = &mut block[..(p1 - p0) * BLOCK_COLUMNS];
                // block[(p - p0)·64 + (j - j0)] = B[p, j]
                pack_b(&b, 0, p0, p1 - p0, j0, j1 - j0, BLOCK_COLUMNS, block, isa);
                let sums = out.ptr().wrapping_add(q * m * n + j0);
                // Safety: tasks write disjoint column ranges of `sums`. The chains read X
                // from position p0 on, as the block's row 0 is B's row p0.
                let xs = &xs[p0..];
                chain_block_f32(isa, xs, kp, m, block, p1 - p0, j1 - j0, sums, n)
            }
        };
        let tasks = n.div_ceil(BLOCK_COLUMNS);
        if parallel && tasks > 1 {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
    }
    // The chunks' sums, in order, into chunk 0's; then out.
    let (totals, rest) = sums.split_at_mut(m * n);
    for later in rest.chunks_exact(m * n) {
        for (t, s) in totals.iter_mut().zip(later) {
            *t += s;
        }
    }
    for (i, totals) in totals.chunks_exact(n).enumerate() {
        // Safety: the caller checked that row i of C holds n outputs from `ldc·i`.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n) };
        for (o, t) in row.iter_mut().zip(totals) {
            *o = if accumulate { *o + t } else { *t };
        }
    }
}

/// The summation order of [`x_w`], one output at a time: the oracle its paths are tested
/// against. `x(p)` and `b(p)` give the operands at position p of the sum.
pub(crate) fn chunked_chain_order(
    k: usize,
    x: impl Fn(usize) -> f32,
    b: impl Fn(usize) -> f32,
) -> f32 {
    let mut total = 0f32;
    for q in 0..k.div_ceil(CHAIN_CHUNK).max(1) {
        let mut chain = 0f32;
        for p in q * CHAIN_CHUNK..((q + 1) * CHAIN_CHUNK).min(k) {
            chain = x(p).mul_add(b(p), chain);
        }
        total = if q == 0 { chain } else { total + chain };
    }
    total
}

// Continues the chains of `width` columns over rows p0..p1 of B; `b` and `sums` start at the
// first of those columns.
per_element!(chain_columns_f32, chain_columns_f32_k, chain_columns_k, f32, (xs: &[f32], kp: usize, m: usize, b: &[f32], b_rs: usize, p0: usize, p1: usize, width: usize, sums: *mut f32, sums_rs: usize));
per_element!(chain_columns_f16, chain_columns_f16_k, chain_columns_k, half::f16, (xs: &[f32], kp: usize, m: usize, b: &[half::f16], b_rs: usize, p0: usize, p1: usize, width: usize, sums: *mut f32, sums_rs: usize));
per_element!(chain_columns_bf16, chain_columns_bf16_k, chain_columns_k, half::bf16, (xs: &[f32], kp: usize, m: usize, b: &[half::bf16], b_rs: usize, p0: usize, p1: usize, width: usize, sums: *mut f32, sums_rs: usize));

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_columns_k<S: Simd, E: Lanes>(
    xs: &[f32],
    kp: usize,
    m: usize,
    b: &[E],
    b_rs: usize,
    p0: usize,
    p1: usize,
    width: usize,
    sums: *mut f32,
    sums_rs: usize,
) {
    match m {
        1 => chain_block::<S, E, 1, 8>(xs, kp, b, b_rs, p0, p1, width, sums, sums_rs),
        2 => chain_block::<S, E, 2, 4>(xs, kp, b, b_rs, p0, p1, width, sums, sums_rs),
        3 => chain_block::<S, E, 3, 2>(xs, kp, b, b_rs, p0, p1, width, sums, sums_rs),
        _ => chain_block::<S, E, 4, 2>(xs, kp, b, b_rs, p0, p1, width, sums, sums_rs),
    }
}

/// The chains of outputs (i, 0..width) for i < M over rows p0..p1 of B (`b` at the first
/// column), continued from the sums at `sums` (row stride `sums_rs`, zero at first). B is read row by row, each across the
/// whole column range, a register tile of V vectors × M rows carrying the chains; the sums go
/// through L1 once per row. Reading several rows per pass keeps the sums in registers longer
/// but splits the stream into as many short runs, which measured 15–30 % slower.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_block<S: Simd, E: Lanes, const M: usize, const V: usize>(
    xs: &[f32],
    kp: usize,
    b: &[E],
    b_rs: usize,
    p0: usize,
    p1: usize,
    width: usize,
    sums: *mut f32,
    sums_rs: usize,
) {
    let vectors = width / S::LANES * S::LANES;
    let ap = sums;
    let bp = b.as_ptr();
    for p in p0..p1 {
        let mut v = 0;
        while v + V * S::LANES <= vectors {
            chain_tile::<S, E, M, V>(xs, kp, bp.add(v), b_rs, p, p + 1, ap.add(v), sums_rs);
            v += V * S::LANES;
        }
        while v < vectors {
            chain_tile::<S, E, M, 1>(xs, kp, bp.add(v), b_rs, p, p + 1, ap.add(v), sums_rs);
            v += S::LANES;
        }
        while v < width {
            chain_tile::<crate::simd::Portable, E, M, 1>(
                xs,
                kp,
                bp.add(v),
                b_rs,
                p,
                p + 1,
                ap.add(v),
                sums_rs,
            );
            v += 1;
        }
    }
}

// Continues the chains of `width` ≤ BLOCK_COLUMNS columns over the `rows` rows of an
// L1-resident `block` (row stride BLOCK_COLUMNS), each register tile down all rows at once.
per_element!(chain_block_f32, chain_block_f32_k, chain_block_k, f32, (xs: &[f32], kp: usize, m: usize, block: &[f32], rows: usize, width: usize, sums: *mut f32, sums_rs: usize));

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_block_k<S: Simd, E: Lanes>(
    xs: &[f32],
    kp: usize,
    m: usize,
    block: &[E],
    rows: usize,
    width: usize,
    sums: *mut f32,
    sums_rs: usize,
) {
    // The widest register tile the row count allows (as in `chain_columns_k`), then narrower
    // ones for what is left of the block: its rows are in L1, so each tile runs down all of
    // them, the chains staying in registers.
    let block = Block {
        xs,
        kp,
        b: block,
        rows,
        width,
        sums,
        sums_rs,
    };
    let v = match m {
        1 => block.tiles::<S, 1, 1>(
            block.tiles::<S, 1, 2>(block.tiles::<S, 1, 4>(block.tiles::<S, 1, 8>(0))),
        ),
        2 => block.tiles::<S, 2, 1>(block.tiles::<S, 2, 2>(block.tiles::<S, 2, 4>(0))),
        3 => block.tiles::<S, 3, 1>(block.tiles::<S, 3, 2>(0)),
        _ => block.tiles::<S, 4, 1>(block.tiles::<S, 4, 2>(0)),
    };
    // Columns past the last whole vector, one at a time.
    for i in 0..m {
        let row = Block {
            xs: &xs[i * kp..],
            sums: sums.add(i * sums_rs),
            ..block
        };
        row.tiles::<crate::simd::Portable, 1, 1>(v);
    }
}

/// An L1-resident block of B's rows (row stride [`BLOCK_COLUMNS`]) and the chains it continues.
#[derive(Clone, Copy)]
struct Block<'a, E> {
    xs: &'a [f32],
    kp: usize,
    b: &'a [E],
    rows: usize,
    width: usize,
    sums: *mut f32,
    sums_rs: usize,
}

impl<E: Lanes> Block<'_, E> {
    /// Tiles of V vectors × M rows from column `v` on, each chained down all rows of the
    /// block, while whole ones fit in its width; returns the first column left.
    #[inline(always)]
    unsafe fn tiles<S: Simd, const M: usize, const V: usize>(&self, mut v: usize) -> usize {
        while v + V * S::LANES <= self.width {
            let (b, sums) = (self.b.as_ptr().add(v), self.sums.add(v));
            chain_tile::<S, E, M, V>(
                self.xs,
                self.kp,
                b,
                BLOCK_COLUMNS,
                0,
                self.rows,
                sums,
                self.sums_rs,
            );
            v += V * S::LANES;
        }
        v
    }
}

/// Continues the chains of V vectors of columns × M rows (partial sums at `acc`, row stride
/// `acc_rs`) over rows p0..p1 of B (column 0 of the tile at `b`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn chain_tile<S: Simd, E: Lanes, const M: usize, const V: usize>(
    xs: &[f32],
    kp: usize,
    b: *const E,
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
            let bv = E::load::<S>(row.add(v * width));
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAIN_CHUNK;
    use crate::gemm::x86_pack::transpose8;

    /// The chunk sums of [`x_w`](super::x_w) for `width` (a multiple of 16) columns of B,
    /// given as its [n, k] copy: column j of B is the contiguous row `bt + j·bt_rs`. Each group
    /// of 16 columns reads its 16 copy rows front to back, 8×8 blocks transposed in registers
    /// into 8 k-steps of 8 columns, and continues two chains per X row (two groups of 8
    /// columns, to hide the FMA latency). Chunk q's sums of row i go to
    /// `sums[(q·M + i)·sums_n + j]`. The chains are x_w's: from 0, in increasing p.
    ///
    /// Safety: AVX2 and FMA available; `bt` valid for `width` rows of k floats `bt_rs` apart;
    /// `sums` for every chunk's rows at those columns.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn copy_chains<const M: usize>(
        (xs, kp, bt, bt_rs, k, width, sums, sums_n): (
            &[f32],
            usize,
            *const f32,
            usize,
            usize,
            usize,
            *mut f32,
            usize,
        ),
    ) {
        let chunks = k.div_ceil(CHAIN_CHUNK).max(1);
        let xp = xs.as_ptr();
        for j in (0..width).step_by(16) {
            let rows = [bt.add(j * bt_rs), bt.add((j + 8) * bt_rs)];
            for q in 0..chunks {
                let (p0, p1) = (q * CHAIN_CHUNK, ((q + 1) * CHAIN_CHUNK).min(k));
                let mut acc = [[_mm256_setzero_ps(); 2]; M];
                let mut p = p0;
                while p + 8 <= p1 {
                    let columns = [
                        transpose8(rows[0].add(p), bt_rs),
                        transpose8(rows[1].add(p), bt_rs),
                    ];
                    for (t, (c0, c1)) in columns[0].iter().zip(&columns[1]).enumerate() {
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let x = _mm256_broadcast_ss(&*xp.add(i * kp + p + t));
                            acc[0] = _mm256_fmadd_ps(x, *c0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(x, *c1, acc[1]);
                        }
                    }
                    p += 8;
                }
                while p < p1 {
                    // The last k of an uneven chunk, one at a time.
                    for (g, rows) in rows.iter().enumerate() {
                        let column: [f32; 8] = std::array::from_fn(|r| *rows.add(r * bt_rs + p));
                        let v = _mm256_loadu_ps(column.as_ptr());
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let x = _mm256_broadcast_ss(&*xp.add(i * kp + p));
                            acc[g] = _mm256_fmadd_ps(x, v, acc[g]);
                        }
                    }
                    p += 1;
                }
                for (i, acc) in acc.iter().enumerate() {
                    let out = sums.add((q * M + i) * sums_n + j);
                    _mm256_storeu_ps(out, acc[0]);
                    _mm256_storeu_ps(out.add(8), acc[1]);
                }
            }
        }
    }
}
