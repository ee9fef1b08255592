//! Few-row products with a linear layer's weight, `C = X·Wᵀ` for X [m ≤ 4, k] and W [n, k]
//! stored row-major (k contiguous): the decoding step. Streams W once at memory bandwidth,
//! without packing: blocks of 8 rows × 8 k of W are transposed in registers, then each of
//! the 8 outputs gets its FMA chain over k in increasing order — the same chain [`gemm`]'s
//! micro-kernel computes, so a token decoded with a KV cache has the bits it has in a full
//! forward pass.
//!
//! [`gemm`]: crate::gemm

use rayon::prelude::*;

/// Rows of W per task when threaded.
const ROWS_PER_TASK: usize = 256;

/// `c[i·ldc + j] (+)= Σ_k x[i·x_rs + k·x_cs] · w[j·w_rs + k]` for i < m ≤ 4, j < n.
/// Returns false (doing nothing) when this CPU lacks AVX2 + FMA.
#[allow(clippy::too_many_arguments)]
pub(crate) fn x_wt(
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
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !(crate::Isa::Avx2.available() && (1..=4).contains(&m)) {
            return false;
        }
        let c = Out(c);
        let run = |j0: usize, j1: usize| unsafe {
            let c = c;
            avx2::rows(x, x_rs, x_cs, m, w, w_rs, j0, j1, k, c.0, ldc, accumulate)
        };
        if parallel && n > ROWS_PER_TASK {
            (0..n.div_ceil(ROWS_PER_TASK))
                .into_par_iter()
                .for_each(|t| run(t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(n)));
        } else {
            run(0, n);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (
            x, x_rs, x_cs, m, w, w_rs, n, k, c, ldc, accumulate, parallel,
        );
        false
    }
}

/// `c[i·ldc + j] (+)= Σ_k x[i·x_rs + k·x_cs] · b[k·b_rs + j]` for i < m ≤ 4, j < n: B stored
/// row-major [k, n] (GPT-2's `Conv1D`). Streams B row by row; the outputs of a column tile
/// stay in L1 and each gets its FMA chain over k in increasing order.
/// Returns false (doing nothing) when this CPU lacks AVX2 + FMA.
#[allow(clippy::too_many_arguments)]
pub(crate) fn x_w(
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
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !(crate::Isa::Avx2.available() && (1..=4).contains(&m)) {
            return false;
        }
        let c = Out(c);
        let run = |j0: usize, j1: usize| unsafe {
            let c = c;
            avx2::columns(x, x_rs, x_cs, m, b, b_rs, j0, j1, k, c.0, ldc, accumulate)
        };
        let tiles = n.div_ceil(COLUMN_TILE);
        if parallel && tiles > 1 {
            (0..tiles)
                .into_par_iter()
                .for_each(|t| run(t * COLUMN_TILE, ((t + 1) * COLUMN_TILE).min(n)));
        } else {
            (0..tiles).for_each(|t| run(t * COLUMN_TILE, ((t + 1) * COLUMN_TILE).min(n)));
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (
            x, x_rs, x_cs, m, b, b_rs, n, k, c, ldc, accumulate, parallel,
        );
        false
    }
}

/// Output columns per tile of [`x_w`]: 4 rows × 1024 f32 = 16 KiB of outputs in L1.
const COLUMN_TILE: usize = 1024;

#[derive(Clone, Copy)]
struct Out(*mut f32);
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Output rows j0..j1 of W for every x row.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(
        x: &[f32],
        x_rs: usize,
        x_cs: usize,
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
        let xp = x.as_ptr();
        let wp = w.as_ptr();
        let k8 = k / 8 * 8;
        let mut j = j0;
        while j + 8 <= j1 {
            let mut acc = [_mm256_setzero_ps(); 4];
            if accumulate {
                for (i, a) in acc.iter_mut().enumerate().take(m) {
                    let mut t = [0f32; 8];
                    for (l, v) in t.iter_mut().enumerate() {
                        *v = *c.add(i * ldc + j + l);
                    }
                    *a = _mm256_loadu_ps(t.as_ptr());
                }
            }
            let base = wp.add(j * w_rs);
            let mut kb = 0;
            while kb < k8 {
                let cols = transpose8(base.add(kb), w_rs);
                for (kk, col) in cols.iter().enumerate() {
                    for (i, a) in acc.iter_mut().enumerate().take(m) {
                        let xv = _mm256_set1_ps(*xp.add(i * x_rs + (kb + kk) * x_cs));
                        *a = _mm256_fmadd_ps(xv, *col, *a);
                    }
                }
                kb += 8;
            }
            for (i, a) in acc.iter().enumerate().take(m) {
                let mut t = [0f32; 8];
                _mm256_storeu_ps(t.as_mut_ptr(), *a);
                // The last k mod 8 terms continue each chain in order.
                for (l, v) in t.iter_mut().enumerate() {
                    let row = base.add(l * w_rs);
                    for kk in k8..k {
                        *v = (*xp.add(i * x_rs + kk * x_cs)).mul_add(*row.add(kk), *v);
                    }
                    *c.add(i * ldc + j + l) = *v;
                }
            }
            j += 8;
        }
        // Leftover rows: the same chains, one element at a time.
        for jj in j..j1 {
            let row = wp.add(jj * w_rs);
            for i in 0..m {
                let mut v = if accumulate {
                    *c.add(i * ldc + jj)
                } else {
                    0.0
                };
                for kk in 0..k {
                    v = (*xp.add(i * x_rs + kk * x_cs)).mul_add(*row.add(kk), v);
                }
                *c.add(i * ldc + jj) = v;
            }
        }
    }

    /// Output columns j0..j1 of a row-major B for every x row.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn columns(
        x: &[f32],
        x_rs: usize,
        x_cs: usize,
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
        let (xp, bp) = (x.as_ptr(), b.as_ptr());
        let w = j1 - j0;
        let w8 = w / 8 * 8;
        if !accumulate {
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * ldc + j0), 0, w);
            }
        }
        for kk in 0..k {
            let row = bp.add(kk * b_rs + j0);
            for i in 0..m {
                let xs = *xp.add(i * x_rs + kk * x_cs);
                let xv = _mm256_set1_ps(xs);
                let out = c.add(i * ldc + j0);
                let mut j = 0;
                while j < w8 {
                    let acc = _mm256_loadu_ps(out.add(j));
                    _mm256_storeu_ps(
                        out.add(j),
                        _mm256_fmadd_ps(xv, _mm256_loadu_ps(row.add(j)), acc),
                    );
                    j += 8;
                }
                for j in w8..w {
                    *out.add(j) = xs.mul_add(*row.add(j), *out.add(j));
                }
            }
        }
    }

    /// Loads 8 rows × 8 floats (rows `stride` apart) and returns the 8 columns.
    #[inline(always)]
    unsafe fn transpose8(p: *const f32, stride: usize) -> [__m256; 8] {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(i * stride)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}
