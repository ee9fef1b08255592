//! The micro-kernel: an R×NR tile of C' in registers, one FMA chain per element over k, and
//! the loop that runs it over every packed panel of B' for one block of A' rows.

use super::{Element, MatRef, SharedOut};
use crate::simd::{isa_entry, Simd};
use crate::Isa;

/// Most vectors of B' columns a tile holds on any path.
const MAX_NV: usize = 8;

/// The micro-kernel shape of a path: at most `MR` rows of A' × `NV` vectors of B' columns.
pub(crate) trait Shape: Simd {
    const MR: usize;
    const NV: usize;
    const NR: usize = Self::NV * Self::LANES;

    /// Writes a full tile (`acc[i][v]`: row i of C', lanes over NR columns) to C' stored by
    /// columns — column j's MR values contiguous at `c + j·c_cs`, as when C' is Cᵀ — by a
    /// transpose in registers. False where the path has none (the caller goes through memory).
    /// Pure data movement: the bits are the same either way.
    ///
    /// # Safety
    /// As [`Simd`]'s methods; `c` valid for NR columns of MR floats `c_cs` apart.
    #[inline(always)]
    unsafe fn store_columns(_acc: &[[Self::V; MAX_NV]], _c: *mut f32, _c_cs: usize) -> bool {
        false
    }

    /// The inverse of [`Shape::store_columns`]: a full tile read from C' stored by columns.
    #[inline(always)]
    unsafe fn load_columns(_acc: &mut [[Self::V; MAX_NV]], _c: *const f32, _c_cs: usize) -> bool {
        false
    }
}

impl Shape for crate::simd::Portable {
    const MR: usize = 4;
    const NV: usize = 8;
}

// AVX2's 6-row tiles keep the scatter through memory: an 8×8 transpose with rows padded and
// columns stored as 4 + 2 floats measured no faster (GPT-2's unembedding, 8 paired runs).
#[cfg(target_arch = "x86_64")]
impl Shape for crate::simd::Avx2 {
    const MR: usize = 6;
    const NV: usize = 2;
}

#[cfg(target_arch = "x86_64")]
impl Shape for crate::simd::Avx512 {
    const MR: usize = 8;
    const NV: usize = 2;

    #[inline(always)]
    unsafe fn store_columns(acc: &[[Self::V; MAX_NV]], c: *mut f32, c_cs: usize) -> bool {
        if acc.len() != Self::MR {
            return false;
        }
        avx512_columns::store(acc, c, c_cs);
        true
    }

    #[inline(always)]
    unsafe fn load_columns(acc: &mut [[Self::V; MAX_NV]], c: *const f32, c_cs: usize) -> bool {
        if acc.len() != Self::MR {
            return false;
        }
        avx512_columns::load(acc, c, c_cs);
        true
    }
}

/// 8 rows × 32 columns of C' to and from columns of 8 contiguous floats. Each vector of 16
/// columns is transposed in two steps: 4×4 blocks inside every 128-bit lane (rows 0–3 and
/// rows 4–7 apart), which leaves in lane L of `lo[q]` / `hi[q]` rows 0–3 / 4–7 of column
/// 4L + q; then pairs of lanes of `lo[q]` and `hi[q]` make whole columns.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // `v` picks the same vector out of every row
mod avx512_columns {
    use super::MAX_NV;
    use std::arch::x86_64::*;

    /// (a, b, c, d) → (u0, u1, u2, u3) with, in each 128-bit lane, `uq = (a[q], b[q], c[q],
    /// d[q])`. Its own inverse.
    #[inline(always)]
    unsafe fn transpose4_in_lanes(r: [__m512; 4]) -> [__m512; 4] {
        let t0 = _mm512_unpacklo_ps(r[0], r[1]);
        let t1 = _mm512_unpackhi_ps(r[0], r[1]);
        let t2 = _mm512_unpacklo_ps(r[2], r[3]);
        let t3 = _mm512_unpackhi_ps(r[2], r[3]);
        [
            _mm512_shuffle_ps::<0x44>(t0, t2),
            _mm512_shuffle_ps::<0xEE>(t0, t2),
            _mm512_shuffle_ps::<0x44>(t1, t3),
            _mm512_shuffle_ps::<0xEE>(t1, t3),
        ]
    }

    #[inline(always)]
    pub(super) unsafe fn store(acc: &[[__m512; MAX_NV]], c: *mut f32, c_cs: usize) {
        // Lanes (lo.L0, hi.L0, lo.L1, hi.L1) and (lo.L2, hi.L2, lo.L3, hi.L3).
        let first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
        let second =
            _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
        for v in 0..2 {
            let lo = transpose4_in_lanes([acc[0][v], acc[1][v], acc[2][v], acc[3][v]]);
            let hi = transpose4_in_lanes([acc[4][v], acc[5][v], acc[6][v], acc[7][v]]);
            let col = |j: usize| c.add((v * 16 + j) * c_cs);
            for q in 0..4 {
                let a = _mm512_permutex2var_ps(lo[q], first, hi[q]);
                let b = _mm512_permutex2var_ps(lo[q], second, hi[q]);
                _mm256_storeu_ps(col(q), _mm512_castps512_ps256(a));
                _mm256_storeu_ps(col(4 + q), _mm512_extractf32x8_ps::<1>(a));
                _mm256_storeu_ps(col(8 + q), _mm512_castps512_ps256(b));
                _mm256_storeu_ps(col(12 + q), _mm512_extractf32x8_ps::<1>(b));
            }
        }
    }

    #[inline(always)]
    pub(super) unsafe fn load(acc: &mut [[__m512; MAX_NV]], c: *const f32, c_cs: usize) {
        // From (col q, col 4+q) and (col 8+q, col 12+q): lanes 0 and 2 of each are rows 0–3.
        let rows_lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        let rows_hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        for v in 0..2 {
            let col = |j: usize| _mm256_loadu_ps(c.add((v * 16 + j) * c_cs));
            let mut lo = [_mm512_setzero_ps(); 4];
            let mut hi = [_mm512_setzero_ps(); 4];
            for q in 0..4 {
                let a = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(col(q)), col(4 + q));
                let b = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(col(8 + q)), col(12 + q));
                lo[q] = _mm512_permutex2var_ps(a, rows_lo, b);
                hi[q] = _mm512_permutex2var_ps(a, rows_hi, b);
            }
            let top = transpose4_in_lanes(lo);
            let bottom = transpose4_in_lanes(hi);
            for i in 0..4 {
                acc[i][v] = top[i];
                acc[4 + i][v] = bottom[i];
            }
        }
    }
}

/// One block of up to MR rows of A' against every packed panel of B'.
pub(super) struct Tile<'a, 'b, TA> {
    pub(super) a: &'b MatRef<'a, TA>,
    pub(super) a_off: usize,
    pub(super) i0: usize,
    pub(super) rows: usize,
    pub(super) pc: usize,
    pub(super) kc: usize,
    /// B' panels: panel q starts at `b_ptr + q·panel_step`, row kk of it at `+ kk·b_ks`.
    pub(super) b_ptr: *const f32,
    pub(super) b_ks: usize,
    pub(super) panel_step: usize,
    pub(super) nr: usize,
    pub(super) jc: usize,
    pub(super) nc: usize,
    pub(super) c: SharedOut,
    pub(super) c_rs: usize,
    pub(super) c_cs: usize,
    pub(super) load_c: bool,
}

pub(super) fn row_block<TA: Element>(isa: Isa, t: &Tile<TA>) {
    // A' as f32 with strides: in place when it is f32, else packed (rows interleaved).
    let packed_a;
    let (a_ptr, a_rs, a_ks) = if TA::IS_F32 {
        let base = t.a_off + t.i0 * t.a.row_stride + t.pc * t.a.col_stride;
        // Safety of the cast: TA is f32 exactly when IS_F32.
        let ptr = t.a.data[base..].as_ptr() as *const f32;
        (ptr, t.a.row_stride, t.a.col_stride)
    } else if t.a.col_stride == 1 {
        // Rows of A' are contiguous runs over k (a half-precision weight W[n, k] in the
        // transposed form): each row widened whole, vectorised. Element by element this was
        // two thirds of Qwen2.5-0.5B's 1×128 forward with its weights in f16.
        let mut buf = vec![0f32; t.rows * t.kc];
        for (ii, row) in buf.chunks_mut(t.kc).enumerate() {
            let base = t.a_off + (t.i0 + ii) * t.a.row_stride + t.pc;
            TA::widen(isa, &t.a.data[base..base + t.kc], row);
        }
        packed_a = buf;
        (packed_a.as_ptr(), t.kc, 1)
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
    let w = S::LANES;
    let nv = S::NV;
    let nr = S::NR;
    let mut acc = [[S::splat(0.0); MAX_NV]; R];
    let direct = m.c_cs == 1 && cols == nr;
    // A whole tile of a C' stored by columns (C' = Cᵀ) is transposed in registers where the
    // path can; otherwise it goes through `tile` element by element.
    let by_columns = m.c_rs == 1 && cols == nr && R == S::MR;
    let mut tile = [0f32; 8 * 32];
    if m.load_c {
        if direct {
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, a) in row.iter_mut().enumerate().take(nv) {
                    *a = S::load(c.add(i * m.c_rs + v * w));
                }
            }
        } else if !(by_columns && S::load_columns(&mut acc, c, m.c_cs)) {
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
    } else if !(by_columns && S::store_columns(&acc, c, m.c_cs)) {
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
