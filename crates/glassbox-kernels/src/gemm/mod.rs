//! f32 GEMM `C (+)= A·B` with f32, f16 or bf16 operands (widened to f32 as they are read),
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

mod micro;
mod pack;

use rayon::prelude::*;

use crate::reduce::LANES;
use crate::simd::{isa_entry, per_element, Lanes, Simd};
use crate::Isa;
use micro::{row_block, Shape, Tile};
pub(crate) use pack::pack_b;
#[cfg(target_arch = "x86_64")]
pub(crate) use pack::x86_pack;

/// Element types GEMM operands may have. Values are widened to f32 as they are read; widening
/// is exact, so it has no effect on the bits.
pub trait Element: Copy + Send + Sync + 'static {
    const IS_F32: bool;
    fn to_f32(self) -> f32;
    /// `dst[i] = src[i].to_f32()` for a run, on the `isa` path.
    fn widen(isa: Isa, src: &[Self], dst: &mut [f32]);
}

impl Element for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    fn widen(_: Isa, src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl Element for half::f16 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn widen(isa: Isa, src: &[half::f16], dst: &mut [f32]) {
        widen_f16(isa, src, dst)
    }
}

impl Element for half::bf16 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn widen(isa: Isa, src: &[half::bf16], dst: &mut [f32]) {
        widen_bf16(isa, src, dst)
    }
}

per_element!(widen_f16, widen_f16_k, widen_k, half::f16, (src: &[half::f16], dst: &mut [f32]));
per_element!(widen_bf16, widen_bf16_k, widen_k, half::bf16, (src: &[half::bf16], dst: &mut [f32]));

/// `dst[i] = src[i]` widened: whole vectors on the path, the tail one value at a time.
#[inline(always)]
unsafe fn widen_k<S: Simd, E: Lanes>(src: &[E], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let full = src.len() / S::LANES * S::LANES;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for i in (0..full).step_by(S::LANES) {
        S::store(d.add(i), E::load::<S>(s.add(i)));
    }
    for (o, v) in dst[full..].iter_mut().zip(&src[full..]) {
        *o = v.to_f32();
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
    /// B with contiguous rows: each output sums in-order chains over fixed chunks of k,
    /// computed without packing.
    Chain,
}

/// The few-rows kernel a product uses, if any. Depends on the shape and layout only, never on
/// the instruction set or thread count.
fn few_rows_order<TA: Element, TB: Element>(m: usize, b: &MatRef<TB>) -> Option<FewRows> {
    if !TA::IS_F32 || m > crate::gemv::MAX_ROWS || b.rows == 0 {
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
/// most 4 rows of f32 A (B of any element type), whose sums are added to C at the end when
/// accumulating: with B = Wᵀ
/// (W's rows contiguous) each element is the dot product in [`reduce`](crate::reduce)'s
/// order (16 interleaved partial sums, the last chunk zero-padded, combined by the fixed
/// tree); with B's rows contiguous, in-order chains over chunks of 64 rows of B, the chunks'
/// sums added in order.
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
    if let Some(FewRows::Chain) = few_rows_order::<TA, TB>(m, &b) {
        for i in 0..m {
            for j in 0..n {
                let sum = crate::gemv::chunked_chain_order(
                    k,
                    |p| a.at(0, i, p).to_f32(),
                    |p| b.at(0, p, j).to_f32(),
                );
                c[i * n + j] = if accumulate { c[i * n + j] + sum } else { sum };
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

/// The [cols, rows] transpose of the row-major [rows, cols] `src`. A weight stored [in, out]
/// (GPT-2's `Conv1D`) is packed into panels on every product; stored [out, in] it is read in
/// place, the packing pass gone — a caller that multiplies by the same weight many times may
/// keep this copy. The products give the same bits either way (one FMA chain per element),
/// except with at most [`FEW_ROWS`](crate::FEW_ROWS) rows, whose order follows the layout.
pub fn transposed(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut dst = vec![0.0; src.len()];
    transpose_into(src, rows, cols, &mut dst);
    dst
}

/// [`transposed`] into a buffer of the caller's (`src.len()` values).
pub fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    pack::transpose(src, rows, cols, dst, Isa::active());
}

/// `C = A·B` for A of at most [`FEW_ROWS`](crate::FEW_ROWS) rows, summed in the order [`gemm`]
/// gives such a product when B's rows are contiguous (in-order chains over chunks of 64 rows
/// of B), whatever B's layout. For a caller that holds a weight stored [k, n] as its [n, k]
/// copy ([`transposed`]) and must keep the stored layout's bits in few-row products too (see
/// `gemv::x_w` for how the copy's rows are read).
pub fn gemm_few_rows_chained(a: MatRef<f32>, b: MatRef<f32>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        (1..=crate::FEW_ROWS).contains(&m),
        "{m} rows: not a few-row product"
    );
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!(c.len(), m * n, "output size");
    assert!(a.span(0) <= a.data.len(), "A out of bounds");
    assert!(b.span(0) <= b.data.len(), "B out of bounds");
    if n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let parallel = crate::threads() > 1 && m * n * k >= 1 << 16;
    let (isa, x) = (Isa::active(), a.data);
    crate::gemv::x_w(
        isa,
        x,
        a.row_stride,
        a.col_stride,
        m,
        b,
        c.as_mut_ptr(),
        n,
        false,
        parallel,
    );
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
    let out = (SharedOut(c.as_mut_ptr()), c.len());
    batched(batch, a, a_batch_stride, b, b_batch_stride, out, accumulate)
}

/// [`gemm_batched`]'s `C = A·B` in a new buffer, which is never zeroed: every element is
/// written and none read first. (Zeroing it, as `vec![0.0; n]` does for memory the heap
/// reuses, was a pass through memory of its own: 2–3 % of a forward pass.)
pub fn gemm_batched_new<TA: Element, TB: Element>(
    batch: usize,
    a: MatRef<TA>,
    a_batch_stride: usize,
    b: MatRef<TB>,
    b_batch_stride: usize,
) -> Vec<f32> {
    let len = batch * a.rows * b.cols;
    let mut c = std::mem::ManuallyDrop::new(Vec::<f32>::with_capacity(len));
    let out = (SharedOut(c.as_mut_ptr()), len);
    batched(batch, a, a_batch_stride, b, b_batch_stride, out, false);
    // Safety: `batched` wrote all `len` elements (it asserts that C is `batch × m × n`; without
    // `accumulate` each path writes every element of C before reading any); the buffer is the
    // Vec's own allocation, its capacity unchanged.
    unsafe { Vec::from_raw_parts(c.as_mut_ptr(), len, c.capacity()) }
}

/// The batched product into `out` = (pointer, length): with `accumulate` C is read before it
/// is written, without it only written (k = 0 included).
fn batched<TA: Element, TB: Element>(
    batch: usize,
    a: MatRef<TA>,
    a_batch_stride: usize,
    b: MatRef<TB>,
    b_batch_stride: usize,
    out: (SharedOut, usize),
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let (c_ptr, c_len) = out;
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!(c_len, batch * m * n, "output size");
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
            // Safety of the cast: A is f32 (`few_rows_order` checks).
            let x = unsafe { &*(&self.a.data[self.a_off..] as *const [TA] as *const [f32]) };
            let w = &self.b.data[self.b_off..];
            let a = &self.a;
            match order {
                FewRows::Dot => crate::gemv::x_wt::<TB>(
                    isa,
                    x,
                    a.row_stride,
                    a.col_stride,
                    m,
                    w,
                    self.b.col_stride,
                    n,
                    k,
                    self.c.0,
                    n,
                    self.accumulate,
                    self.parallel,
                ),
                FewRows::Chain => crate::gemv::x_w::<TB>(
                    isa,
                    x,
                    a.row_stride,
                    a.col_stride,
                    m,
                    MatRef { data: w, ..self.b },
                    self.c.0,
                    n,
                    self.accumulate,
                    self.parallel,
                ),
            }
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
                pack_b(&p.b, p.b_off, pc, kc, j0, ncols, nr, &mut packed, isa);
                run_blocks(packed.as_ptr(), nr, kc * nr, j0, ncols);
            }
            pc += kc;
        }
        jc += nc;
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
