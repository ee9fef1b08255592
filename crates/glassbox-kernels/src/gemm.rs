//! f32 GEMM `C (+)= A·B` with f32, f16 or bf16 operands (widened to f32 when packed),
//! packed and cache-blocked, threaded over output tiles, one micro-kernel per path.
//!
//! Every output element is one FMA chain over k in increasing order (see the crate docs), so
//! the result equals [`gemm_reference`] bit for bit on every path and thread count.
//!
//! Shape of the work: the problem is solved as `C' = A'·B'` where either (A', B', C') =
//! (A, B, C), or (Bᵀ, Aᵀ, Cᵀ) when packing Aᵀ is cheaper than packing B — as for a linear
//! layer `X·Wᵀ` with W stored [out, in]: then W is read in place, row by row, and only the
//! activations are packed. A' is read in place as the broadcast operand (any strides; packed
//! to f32 first when stored in half precision); B' is packed into panels of NR columns; the
//! micro-kernel keeps an R×NR tile of C' in registers, vector lanes over C' columns.

use rayon::prelude::*;

use crate::reduce::LANES;
use crate::simd::{isa_entry, Simd};
use crate::Isa;

/// Element types GEMM operands may have. Values are widened to f32 as they are read.
pub trait Element: Copy + Send + Sync + 'static {
    const IS_F32: bool;
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for half::f16 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

impl Element for half::bf16 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

/// A strided matrix view: element (i, j) is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T: Element> MatRef<'a, T> {
    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the last element the view (plus `extra` elements of offset) reads.
    fn span(&self, extra: usize) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        extra + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }

    #[inline(always)]
    fn at(&self, offset: usize, i: usize, j: usize) -> f32 {
        self.data[offset + i * self.row_stride + j * self.col_stride].to_f32()
    }
}

/// How a product with at most [`gemv::MAX_ROWS`](crate::gemv) rows of f32 is reduced, when
/// it is not by the general rule.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FewRows {
    /// B = Wᵀ with W's rows contiguous: each output is the 16-lane dot product of two rows.
    Dot,
    /// B with contiguous rows: each output is the GEMM chain, computed without packing.
    Chain,
}

/// The few-rows kernel a product uses, if any. Depends on the shape and layout only, never on
/// the instruction set or thread count.
fn few_rows_order<TA: Element, TB: Element>(m: usize, b: &MatRef<TB>) -> Option<FewRows> {
    if !(TA::IS_F32 && TB::IS_F32) || m > crate::gemv::MAX_ROWS || b.rows == 0 {
        None
    } else if b.row_stride == 1 {
        Some(FewRows::Dot)
    } else if b.col_stride == 1 {
        Some(FewRows::Chain)
    } else {
        None
    }
}

/// `C = A·B` (or `C += A·B` when `accumulate`), C contiguous row-major `m × n`, by the most
/// direct definition: each element an in-order `f32::mul_add` chain — except products of at
/// most 4 rows of f32 with B = Wᵀ (W's rows contiguous), where each element is the dot
/// product in [`reduce`](crate::reduce)'s order: 16 interleaved partial sums, the last chunk
/// zero-padded, combined by the fixed tree, added to C at the end when accumulating.
/// The oracle every path is tested against; single-threaded and slow.
pub fn gemm_reference<TA: Element, TB: Element>(
    a: MatRef<TA>,
    b: MatRef<TB>,
    c: &mut [f32],
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k);
    assert_eq!(c.len(), m * n);
    if let Some(FewRows::Dot) = few_rows_order::<TA, TB>(m, &b) {
        for i in 0..m {
            for j in 0..n {
                let mut lanes = [0f32; LANES];
                for p in 0..k.div_ceil(LANES) * LANES {
                    let (x, y) = match p < k {
                        true => (a.at(0, i, p).to_f32(), b.at(0, p, j).to_f32()),
                        false => (0.0, 0.0),
                    };
                    lanes[p % LANES] = x.mul_add(y, lanes[p % LANES]);
                }
                let mut width = LANES / 2;
                while width > 0 {
                    for l in 0..width {
                        lanes[l] += lanes[l + width];
                    }
                    width /= 2;
                }
                c[i * n + j] = if accumulate {
                    c[i * n + j] + lanes[0]
                } else {
                    lanes[0]
                };
            }
        }
        return;
    }
    for i in 0..m {
        for j in 0..n {
            let mut acc = if accumulate { c[i * n + j] } else { 0.0 };
            for p in 0..k {
                acc = a.at(0, i, p).mul_add(b.at(0, p, j), acc);
            }
            c[i * n + j] = acc;
        }
    }
}

/// `C = A·B` (or `C += A·B` when `accumulate`) with C contiguous row-major `m × n`.
pub fn gemm<TA: Element, TB: Element>(
    a: MatRef<TA>,
    b: MatRef<TB>,
    c: &mut [f32],
    accumulate: bool,
) {
    gemm_batched(1, a, 0, b, 0, c, accumulate)
}

/// `batch` independent products: item i reads A and B at element offsets `i·a_batch_stride`
/// and `i·b_batch_stride` (0 broadcasts one matrix) and writes the i-th `m × n` block of C.
pub fn gemm_batched<TA: Element, TB: Element>(
    batch: usize,
    a: MatRef<TA>,
    a_batch_stride: usize,
    b: MatRef<TB>,
    b_batch_stride: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!(c.len(), batch * m * n, "output size");
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    assert!(
        a.span(batch.saturating_sub(1) * a_batch_stride) <= a.data.len(),
        "A out of bounds"
    );
    assert!(
        b.span(batch.saturating_sub(1) * b_batch_stride) <= b.data.len(),
        "B out of bounds"
    );
    let isa = Isa::active();
    let threads = crate::threads();
    let flops = m * n * k.max(1);
    let c_ptr = SharedOut(c.as_mut_ptr());
    let item = move |i: usize, parallel: bool| {
        let c_item = c_ptr.add(i * m * n);
        let job = Job {
            a,
            a_off: i * a_batch_stride,
            b,
            b_off: i * b_batch_stride,
            c: c_item,
            accumulate,
            parallel,
        };
        job.run(isa);
    };
    if batch > 1 && threads > 1 && flops < (1 << 22) {
        // Many small products (attention heads): one thread per item.
        (0..batch).into_par_iter().for_each(|i| item(i, false));
    } else {
        let parallel = threads > 1 && flops >= 1 << 16;
        (0..batch).for_each(|i| item(i, parallel));
    }
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    /// The pointer `offset` elements further (a method, so closures capture the whole
    /// Send + Sync wrapper rather than its raw pointer field).
    fn add(self, offset: usize) -> SharedOut {
        SharedOut(self.0.wrapping_add(offset))
    }
}

/// One product, before choosing its formulation.
struct Job<'a, TA, TB> {
    a: MatRef<'a, TA>,
    a_off: usize,
    b: MatRef<'a, TB>,
    b_off: usize,
    c: SharedOut,
    accumulate: bool,
    parallel: bool,
}

/// The product as the kernels see it: `C' = A'·B'` with C' at `c` with strides (c_rs, c_cs).
struct Plan<'a, TA, TB> {
    a: MatRef<'a, TA>,
    a_off: usize,
    b: MatRef<'a, TB>,
    b_off: usize,
    c: SharedOut,
    c_rs: usize,
    c_cs: usize,
    accumulate: bool,
    parallel: bool,
    /// k per packed block of B'.
    kc: usize,
}

impl<TA: Element, TB: Element> Job<'_, TA, TB> {
    fn run(self, isa: Isa) {
        let (m, k, n) = (self.a.rows, self.a.cols, self.b.cols);
        if k == 0 {
            if !self.accumulate {
                for i in 0..m * n {
                    unsafe { *self.c.0.add(i) = 0.0 };
                }
            }
            return;
        }
        // A few rows (decoding): stream the weight, no packing.
        if let Some(order) = few_rows_order::<TA, TB>(m, &self.b) {
            // Safety of the casts: both are f32 (`few_rows_order` checks).
            let x = unsafe { &*(&self.a.data[self.a_off..] as *const [TA] as *const [f32]) };
            let w = unsafe { &*(&self.b.data[self.b_off..] as *const [TB] as *const [f32]) };
            let (a, b) = (&self.a, &self.b);
            let kernel = match order {
                FewRows::Dot => crate::gemv::x_wt,
                FewRows::Chain => crate::gemv::x_w,
            };
            let b_stride = match order {
                FewRows::Dot => b.col_stride,
                FewRows::Chain => b.row_stride,
            };
            kernel(
                isa,
                x,
                a.row_stride,
                a.col_stride,
                m,
                w,
                b_stride,
                n,
                k,
                self.c.0,
                n,
                self.accumulate,
                self.parallel,
            );
            return;
        }
        // Packing cost of each formulation: the packed operand's size, tripled when it must
        // be transposed element by element (f16/bf16, or the portable path; f32 on SIMD
        // paths transposes 8×8 blocks in registers at copy speed); the transposed output
        // costs a scatter per k block.
        let slow_transpose = !(isa != Isa::Portable && TA::IS_F32 && TB::IS_F32);
        let pack_cost = |elems: usize, contiguous_cols: bool| {
            elems
                * if contiguous_cols || !slow_transpose {
                    1
                } else {
                    3
                }
        };
        let cost_n = pack_cost(k * n, self.b.col_stride == 1);
        // Transposed, A' = W is read in place along its rows; read down its columns instead
        // (B with contiguous rows) it strides a whole row per k, as costly as packing it.
        let kc_t = transposed_kc(k);
        let a_strided = if self.b.row_stride == 1 { 0 } else { k * n };
        let cost_t =
            pack_cost(k * m, self.a.row_stride == 1) + m * n * k.div_ceil(kc_t) * 4 + a_strided;
        // Measured (bench/kernels and the forward pass, 2-core Zen 4, AVX2 and AVX-512): an
        // f32 W[n, k] with k in one block, read in place, is as fast as packed or up to 20 %
        // faster from 128 to 4096 rows (Qwen2.5-0.5B's 1×128 forward: −10 %); packing W is a
        // pass through memory of its own, while the in-place read overlaps with arithmetic.
        // (Below that the cost rule already chooses the transposed form.)
        let w_in_place = !slow_transpose && self.b.row_stride == 1 && kc_t == k;
        if w_in_place || cost_t < cost_n {
            run_plan(
                isa,
                Plan {
                    a: self.b.t(),
                    a_off: self.b_off,
                    b: self.a.t(),
                    b_off: self.a_off,
                    c: self.c,
                    c_rs: 1,
                    c_cs: n,
                    accumulate: self.accumulate,
                    parallel: self.parallel,
                    kc: kc_t,
                },
            )
        } else {
            run_plan(
                isa,
                Plan {
                    a: self.a,
                    a_off: self.a_off,
                    b: self.b,
                    b_off: self.b_off,
                    c: self.c,
                    c_rs: n,
                    c_cs: 1,
                    accumulate: self.accumulate,
                    parallel: self.parallel,
                    kc: KC,
                },
            )
        }
    }
}

/// k per packed block: a micro-panel of A' (≤ 8 × KC f32) stays in L1.
const KC: usize = 512;
/// Longest k block when C' is Cᵀ: each k block after the first reads the transposed output
/// back through a scatter, so k is split into as few equal blocks as this allows. A' (W, read
/// in place along its rows) streams through L1 then, which measured no slower than 512.
const KC_TRANSPOSED: usize = 2048;

fn transposed_kc(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC_TRANSPOSED))
}

/// B' columns per packed block: a packed block (KC × NC f32, 1 MiB) stays in L2.
const NC: usize = 512;

/// The micro-kernel shape of a path: at most `MR` rows of A' × `NV` vectors of B' columns.
pub(crate) trait Shape: Simd {
    const MR: usize;
    const NV: usize;
    const NR: usize = Self::NV * Self::LANES;
}

impl Shape for crate::simd::Portable {
    const MR: usize = 4;
    const NV: usize = 8;
}

#[cfg(target_arch = "x86_64")]
impl Shape for crate::simd::Avx2 {
    const MR: usize = 6;
    const NV: usize = 2;
}

#[cfg(target_arch = "x86_64")]
impl Shape for crate::simd::Avx512 {
    const MR: usize = 8;
    const NV: usize = 2;
}

fn run_plan<TA: Element, TB: Element>(isa: Isa, p: Plan<TA, TB>) {
    let (mr, nr) = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if Isa::Avx512.available() => {
            use crate::simd::Avx512 as S;
            (<S as Shape>::MR, <S as Shape>::NR)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if Isa::Avx2.available() => {
            use crate::simd::Avx2 as S;
            (<S as Shape>::MR, <S as Shape>::NR)
        }
        _ => {
            use crate::simd::Portable as S;
            (<S as Shape>::MR, <S as Shape>::NR)
        }
    };
    let (m, n) = (p.a.rows, p.b.cols);
    let threads = if p.parallel { crate::threads() } else { 1 };
    if threads == 1 {
        return run_range(isa, &p, mr, nr, 0..n, 0..m.div_ceil(mr));
    }
    // Threads take column ranges of C' when there are enough columns, so each packs and
    // consumes its own panels (they stay in its core's cache); otherwise row blocks.
    let panels = n.div_ceil(nr);
    if panels >= threads * 4 {
        let per = panels.div_ceil(threads) * nr;
        (0..threads).into_par_iter().for_each(|t| {
            let cols = (t * per).min(n)..((t + 1) * per).min(n);
            if !cols.is_empty() {
                run_range(isa, &p, mr, nr, cols, 0..m.div_ceil(mr));
            }
        });
    } else {
        let blocks = m.div_ceil(mr);
        let per = blocks.div_ceil(threads);
        (0..threads).into_par_iter().for_each(|t| {
            let rows = (t * per).min(blocks)..((t + 1) * per).min(blocks);
            if !rows.is_empty() {
                run_range(isa, &p, mr, nr, 0..n, rows);
            }
        });
    }
}

/// The serial blocked product over C' columns `cols` and row blocks `blocks` (of `mr` rows).
fn run_range<TA: Element, TB: Element>(
    isa: Isa,
    p: &Plan<TA, TB>,
    mr: usize,
    nr: usize,
    cols: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
) {
    let (m, k) = (p.a.rows, p.a.cols);
    // With few rows of A' (decoding), a row-major f32 B' is read in place: packing would
    // cost as much as the product. Only a last partial panel is packed (zero-padded).
    let in_place = TB::IS_F32 && p.b.col_stride == 1 && m <= 16;
    // A packed block holds KC·NC floats whatever its k length.
    let nc_block = (KC * NC / p.kc).max(nr) / nr * nr;
    let mut packed = Vec::new();
    let mut jc = cols.start;
    while jc < cols.end {
        let nc = nc_block.min(cols.end - jc);
        let mut pc = 0;
        while pc < k {
            let kc = p.kc.min(k - pc);
            let run_blocks =
                |b_ptr: *const f32, b_ks: usize, panel_step: usize, j0: usize, ncols: usize| {
                    for bi in blocks.clone() {
                        let i0 = bi * mr;
                        let tile = Tile {
                            a: &p.a,
                            a_off: p.a_off,
                            i0,
                            rows: mr.min(m - i0),
                            pc,
                            kc,
                            b_ptr,
                            b_ks,
                            panel_step,
                            nr,
                            jc: j0,
                            nc: ncols,
                            c: p.c,
                            c_rs: p.c_rs,
                            c_cs: p.c_cs,
                            load_c: p.accumulate || pc > 0,
                        };
                        row_block(isa, &tile);
                    }
                };
            let full = if in_place { nc / nr * nr } else { 0 };
            if full > 0 {
                let start = p.b_off + pc * p.b.row_stride + jc;
                // Safety of the cast: TB is f32 (IS_F32); bounds were checked by the caller.
                let b_ptr = p.b.data[start..].as_ptr() as *const f32;
                run_blocks(b_ptr, p.b.row_stride, nr, jc, full);
            }
            if full < nc {
                let (j0, ncols) = (jc + full, nc - full);
                let panels = ncols.div_ceil(nr);
                // Every element is written by pack_b (padding included): no zeroing pass.
                packed.resize(panels * nr * kc, 0.0);
                pack_b(
                    &p.b,
                    p.b_off,
                    pc,
                    kc,
                    j0,
                    ncols,
                    nr,
                    &mut packed,
                    isa != Isa::Portable,
                );
                run_blocks(packed.as_ptr(), nr, kc * nr, j0, ncols);
            }
            pc += kc;
        }
        jc += nc;
    }
}

/// Packs B'[pc..pc+kc, jc..jc+nc] into panels of `nr` columns: panel q holds
/// `dst[q·kc·nr + kk·nr + jj] = B'[pc+kk, jc+q·nr+jj]`, columns past nc zero.
#[allow(clippy::too_many_arguments)]
fn pack_b<T: Element>(
    b: &MatRef<T>,
    off: usize,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    nr: usize,
    dst: &mut [f32],
    simd_transpose: bool,
) {
    if b.col_stride == 1 {
        // Rows of B' are contiguous: read each row once, front to back, and deal it out to
        // the panels (reading panel by panel would jump a whole row stride per k, and with
        // strides that are multiples of 4 KiB every read lands in the same cache set).
        let panels = nc.div_ceil(nr);
        for kk in 0..kc {
            let src = off + (pc + kk) * b.row_stride + jc;
            let row = &b.data[src..src + nc];
            // Rows a few kilobytes long and far apart defeat the hardware prefetcher (it
            // ramps up afresh for every row): ask for a later row while copying this one.
            if kk + PREFETCH_ROWS < kc {
                prefetch_row(&b.data[src + PREFETCH_ROWS * b.row_stride..][..nc]);
            }
            for q in 0..panels {
                let cols = nr.min(nc - q * nr);
                let d = &mut dst[q * kc * nr + kk * nr..][..nr];
                widen(&row[q * nr..q * nr + cols], &mut d[..cols]);
                d[cols..].fill(0.0);
            }
        }
        return;
    }
    let pack_panel = |q: usize, panel: &mut [f32]| {
        let j0 = jc + q * nr;
        let cols = nr.min(jc + nc - j0);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if T::IS_F32 && b.row_stride == 1 && simd_transpose && cols >= 8 {
            // Columns of B' are contiguous runs over k: transpose 8×8 blocks in registers.
            let base = off + j0 * b.col_stride + pc;
            // Safety: T is f32 (IS_F32); the view's bounds were checked against its span.
            let src = b.data[base..].as_ptr() as *const f32;
            done = unsafe {
                x86_pack::transposed(src, b.col_stride, panel.as_mut_ptr(), nr, kc, cols)
            };
        }
        for jj in 0..cols {
            let base = off + (j0 + jj) * b.col_stride + pc * b.row_stride;
            let first = if jj < done { kc / 8 * 8 } else { 0 };
            for kk in first..kc {
                panel[kk * nr + jj] = b.data[base + kk * b.row_stride].to_f32();
            }
        }
        if cols < nr {
            for kk in 0..kc {
                panel[kk * nr + cols..(kk + 1) * nr].fill(0.0);
            }
        }
    };
    dst.chunks_mut(kc * nr)
        .enumerate()
        .for_each(|(q, panel)| pack_panel(q, panel));
}

/// How many rows ahead `pack_b` prefetches.
const PREFETCH_ROWS: usize = 4;

/// Hints the cache lines of `row` into L2 (no effect on results).
#[inline]
fn prefetch_row<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let bytes = std::mem::size_of_val(row);
        let base = row.as_ptr() as *const i8;
        for line in (0..bytes).step_by(64) {
            // Safety: a prefetch never faults; the address is inside `row` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(base.add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `dst[i] = src[i]` widened to f32 (a plain copy for f32).
#[inline]
fn widen<T: Element>(src: &[T], dst: &mut [f32]) {
    if T::IS_F32 {
        // Safety of the cast: T is f32 exactly when IS_F32.
        let src = unsafe { &*(src as *const [T] as *const [f32]) };
        dst.copy_from_slice(src);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
}

/// One block of up to MR rows of A' against every packed panel of B'.
struct Tile<'a, 'b, TA> {
    a: &'b MatRef<'a, TA>,
    a_off: usize,
    i0: usize,
    rows: usize,
    pc: usize,
    kc: usize,
    /// B' panels: panel q starts at `b_ptr + q·panel_step`, row kk of it at `+ kk·b_ks`.
    b_ptr: *const f32,
    b_ks: usize,
    panel_step: usize,
    nr: usize,
    jc: usize,
    nc: usize,
    c: SharedOut,
    c_rs: usize,
    c_cs: usize,
    load_c: bool,
}

fn row_block<TA: Element>(isa: Isa, t: &Tile<TA>) {
    // A' as f32 with strides: in place when it is f32, else packed (rows interleaved).
    let packed_a;
    let (a_ptr, a_rs, a_ks) = if TA::IS_F32 {
        let base = t.a_off + t.i0 * t.a.row_stride + t.pc * t.a.col_stride;
        // Safety of the cast: TA is f32 exactly when IS_F32.
        let ptr = t.a.data[base..].as_ptr() as *const f32;
        (ptr, t.a.row_stride, t.a.col_stride)
    } else {
        let mut buf = vec![0f32; t.rows * t.kc];
        for kk in 0..t.kc {
            for ii in 0..t.rows {
                buf[kk * t.rows + ii] = t.a.at(t.a_off, t.i0 + ii, t.pc + kk);
            }
        }
        packed_a = buf;
        (packed_a.as_ptr(), 1, t.rows)
    };
    let args = Micro {
        kc: t.kc,
        a: a_ptr,
        a_rs,
        a_ks,
        rows: t.rows,
        packed: t.b_ptr,
        b_ks: t.b_ks,
        panel_step: t.panel_step,
        nr: t.nr,
        nc: t.nc,
        c: t.c.add(t.i0 * t.c_rs + t.jc * t.c_cs).0,
        c_rs: t.c_rs,
        c_cs: t.c_cs,
        load_c: t.load_c,
    };
    micro_panels(isa, &args);
}

/// What the micro-kernel loop needs, as raw pointers (bounds were checked by the caller).
struct Micro {
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_ks: usize,
    rows: usize,
    packed: *const f32,
    b_ks: usize,
    panel_step: usize,
    nr: usize,
    nc: usize,
    c: *mut f32,
    c_rs: usize,
    c_cs: usize,
    load_c: bool,
}

#[inline(always)]
unsafe fn micro_panels_k<S: Shape>(m: &Micro) {
    match m.rows {
        1 => panels_r::<S, 1>(m),
        2 => panels_r::<S, 2>(m),
        3 => panels_r::<S, 3>(m),
        4 => panels_r::<S, 4>(m),
        5 => panels_r::<S, 5>(m),
        6 => panels_r::<S, 6>(m),
        7 => panels_r::<S, 7>(m),
        8 => panels_r::<S, 8>(m),
        _ => unreachable!("micro-kernel rows"),
    }
}

isa_entry!(fn micro_panels(m: &Micro) => micro_panels_k);

/// Every panel for an R-row block.
#[inline(always)]
unsafe fn panels_r<S: Shape, const R: usize>(m: &Micro) {
    let nr = S::NR;
    debug_assert_eq!(nr, m.nr);
    let panels = m.nc.div_ceil(nr);
    for q in 0..panels {
        let cols = nr.min(m.nc - q * nr);
        let b = m.packed.add(q * m.panel_step);
        let c = m.c.add(q * nr * m.c_cs);
        kernel::<S, R>(m, b, c, cols);
    }
}

/// The R×NR tile: accumulators in registers, one FMA chain per element over k.
#[inline(always)]
unsafe fn kernel<S: Shape, const R: usize>(m: &Micro, b: *const f32, c: *mut f32, cols: usize) {
    const MAX_NV: usize = 8;
    let w = S::LANES;
    let nv = S::NV;
    let nr = S::NR;
    let mut acc = [[S::splat(0.0); MAX_NV]; R];
    let direct = m.c_cs == 1 && cols == nr;
    let mut tile = [0f32; 8 * 32];
    if m.load_c {
        if direct {
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, a) in row.iter_mut().enumerate().take(nv) {
                    *a = S::load(c.add(i * m.c_rs + v * w));
                }
            }
        } else {
            for j in 0..cols {
                for i in 0..R {
                    tile[i * nr + j] = *c.add(i * m.c_rs + j * m.c_cs);
                }
            }
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, a) in row.iter_mut().enumerate().take(nv) {
                    *a = S::load(tile.as_ptr().add(i * nr + v * w));
                }
            }
        }
    }
    let mut a_rows = [m.a; R];
    for (i, p) in a_rows.iter_mut().enumerate() {
        *p = m.a.add(i * m.a_rs);
    }
    for p in 0..m.kc {
        let bp = b.add(p * m.b_ks);
        let mut bv = [S::splat(0.0); MAX_NV];
        for (v, x) in bv.iter_mut().enumerate().take(nv) {
            *x = S::load(bp.add(v * w));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let av = S::splat(*a_rows[i].add(p * m.a_ks));
            for (v, a) in row.iter_mut().enumerate().take(nv) {
                *a = S::fma(av, bv[v], *a);
            }
        }
    }
    if direct {
        for (i, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate().take(nv) {
                S::store(c.add(i * m.c_rs + v * w), *a);
            }
        }
    } else {
        for (i, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate().take(nv) {
                S::store(tile.as_mut_ptr().add(i * nr + v * w), *a);
            }
        }
        for j in 0..cols {
            for i in 0..R {
                *c.add(i * m.c_rs + j * m.c_cs) = tile[i * nr + j];
            }
        }
    }
}

/// One core's f32 FMA throughput in GFLOP/s on `isa`, measured: independent FMA chains (enough
/// to cover latency × ports), each FMA two flops.
pub fn fma_peak_gflops(isa: Isa) -> f64 {
    #[inline(always)]
    unsafe fn chains<S: Simd>(iters: usize) -> f32 {
        const CHAINS: usize = 12;
        let mut acc = [S::splat(1.0); CHAINS];
        let (a, b) = (S::splat(0.999_999), S::splat(1e-7));
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = S::fma(*x, a, b);
            }
        }
        let mut out = [0f32; 16];
        let mut sum = S::splat(0.0);
        for x in acc {
            sum = S::add(sum, x);
        }
        S::store(out.as_mut_ptr(), sum);
        out[0]
    }
    isa_entry!(fn run_chains(iters: usize) -> f32 => chains);
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Neon => 4,
        Isa::Portable => 1,
    };
    let iters = 20_000_000 / lanes.max(1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        std::hint::black_box(run_chains(isa, std::hint::black_box(iters)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    (iters * 12 * lanes * 2) as f64 / best / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86_pack {
    use std::arch::x86_64::*;

    /// Packs `cols` (≥ 8) columns of B', each a contiguous run of `kc` floats `col_stride`
    /// apart from the next, into a panel `dst[kk·nr + jj]`, by 8×8 in-register transposes.
    /// Covers whole blocks of 8 columns and 8 k; returns how many columns it covered (the
    /// caller packs the remaining columns, and the last `kc mod 8` k of covered ones).
    /// Pure data movement: no arithmetic, so no effect on the bits.
    ///
    /// Safety: AVX2 available; `src` valid for those reads and `dst` for `kc·nr` floats.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transposed(
        src: *const f32,
        col_stride: usize,
        dst: *mut f32,
        nr: usize,
        kc: usize,
        cols: usize,
    ) -> usize {
        let col_blocks = cols / 8;
        let k_blocks = kc / 8;
        for cb in 0..col_blocks {
            for kb in 0..k_blocks {
                let s = src.add(cb * 8 * col_stride + kb * 8);
                let r0 = _mm256_loadu_ps(s);
                let r1 = _mm256_loadu_ps(s.add(col_stride));
                let r2 = _mm256_loadu_ps(s.add(2 * col_stride));
                let r3 = _mm256_loadu_ps(s.add(3 * col_stride));
                let r4 = _mm256_loadu_ps(s.add(4 * col_stride));
                let r5 = _mm256_loadu_ps(s.add(5 * col_stride));
                let r6 = _mm256_loadu_ps(s.add(6 * col_stride));
                let r7 = _mm256_loadu_ps(s.add(7 * col_stride));
                let t0 = _mm256_unpacklo_ps(r0, r1);
                let t1 = _mm256_unpackhi_ps(r0, r1);
                let t2 = _mm256_unpacklo_ps(r2, r3);
                let t3 = _mm256_unpackhi_ps(r2, r3);
                let t4 = _mm256_unpacklo_ps(r4, r5);
                let t5 = _mm256_unpackhi_ps(r4, r5);
                let t6 = _mm256_unpacklo_ps(r6, r7);
                let t7 = _mm256_unpackhi_ps(r6, r7);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let out = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (i, v) in out.iter().enumerate() {
                    _mm256_storeu_ps(dst.add((kb * 8 + i) * nr + cb * 8), *v);
                }
            }
        }
        col_blocks * 8
    }
}
