//! The micro-kernel: an R×NR tile of C' in registers, one FMA chain per element over k, and
//! the loop that runs it over every packed panel of B' for one block of A' rows.

use super::{Element, MatRef, SharedOut};
use crate::simd::{isa_entry, Simd};
use crate::Isa;

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
