//! Packing B' into panels of NR columns (widened to f32), laid out as the micro-kernel reads them.

use super::{Element, MatRef};
use crate::Isa;

/// Packs B'[pc..pc+kc, jc..jc+nc] into panels of `nr` columns: panel q holds
/// `dst[q·kc·nr + kk·nr + jj] = B'[pc+kk, jc+q·nr+jj]`, columns past nc zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_b<T: Element>(
    b: &MatRef<T>,
    off: usize,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    nr: usize,
    dst: &mut [f32],
    isa: Isa,
) {
    let simd_transpose = isa != Isa::Portable;
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
                T::widen(isa, &row[q * nr..q * nr + cols], &mut d[..cols]);
                d[cols..].fill(0.0);
            }
        }
        return;
    }
    // Half-precision columns of B' widened, 8 at a time, for the transposer.
    #[cfg(target_arch = "x86_64")]
    let mut widened = Vec::new();
    #[allow(unused_mut)] // it mutates `widened`, on x86 only
    let mut pack_panel = |q: usize, panel: &mut [f32]| {
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
        } else if b.row_stride == 1 && simd_transpose && cols >= 8 {
            // The same for an f16/bf16 weight stored [n, k] (a linear layer loaded in f32):
            // 8 columns widened into an L1 block, then transposed. One value at a time, this
            // packing took two thirds of Qwen2.5-0.5B's 1×128 forward.
            widened.resize(8 * kc, 0.0);
            for block in 0..cols / 8 {
                for c in 0..8 {
                    let base = off + (j0 + block * 8 + c) * b.col_stride + pc;
                    T::widen(isa, &b.data[base..base + kc], &mut widened[c * kc..][..kc]);
                }
                // Safety: AVX2 is available on a non-portable x86 path; the block holds 8
                // runs of kc floats, and the panel has room for 8 columns from block·8.
                unsafe {
                    x86_pack::transposed(
                        widened.as_ptr(),
                        kc,
                        panel[block * 8..].as_mut_ptr(),
                        nr,
                        kc,
                        8,
                    )
                };
            }
            done = cols / 8 * 8;
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
    for (q, panel) in dst.chunks_mut(kc * nr).enumerate() {
        pack_panel(q, panel);
    }
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

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_pack {
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
                let out = transpose8(src.add(cb * 8 * col_stride + kb * 8), col_stride);
                for (i, v) in out.iter().enumerate() {
                    _mm256_storeu_ps(dst.add((kb * 8 + i) * nr + cb * 8), *v);
                }
            }
        }
        col_blocks * 8
    }

    /// Vector t holds element t of the 8 rows of 8 floats at `s`, `stride` apart: an 8×8
    /// transpose in registers. Each register first pairs the same 4 elements of rows r and
    /// r + 4 (one lane each), so that 4×4 transposes within lanes finish the job: no shuffle
    /// across lanes, which costs several times as much as one within them on some CPUs
    /// (8 µops on AMD's Zen 1).
    ///
    /// Safety: AVX available (callers enable AVX2); `s` valid for those reads.
    #[inline(always)]
    pub(crate) unsafe fn transpose8(s: *const f32, stride: usize) -> [__m256; 8] {
        let pair = |r: usize, half: usize| {
            let low = _mm_loadu_ps(s.add(r * stride + half));
            let high = _mm_loadu_ps(s.add((r + 4) * stride + half));
            _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(low), high)
        };
        let lanes_4x4 = |a0, a1, a2, a3| {
            let t0 = _mm256_unpacklo_ps(a0, a1);
            let t1 = _mm256_unpackhi_ps(a0, a1);
            let t2 = _mm256_unpacklo_ps(a2, a3);
            let t3 = _mm256_unpackhi_ps(a2, a3);
            [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ]
        };
        let [o0, o1, o2, o3] = lanes_4x4(pair(0, 0), pair(1, 0), pair(2, 0), pair(3, 0));
        let [o4, o5, o6, o7] = lanes_4x4(pair(0, 4), pair(1, 4), pair(2, 4), pair(3, 4));
        [o0, o1, o2, o3, o4, o5, o6, o7]
    }
}

/// Square tiles [`transpose`] moves at a time: a tile's 64 source rows and 64 destination
/// rows (16 KiB each way) stay in L1 while it is moved.
const TILE: usize = 64;

/// The [cols, rows] transpose of the row-major [rows, cols] `src` into `dst`:
/// `dst[j·rows + i] = src[i·cols + j]`, threaded over blocks of destination rows.
/// Pure data movement, so no effect on any bits.
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32], isa: Isa) {
    assert_eq!(src.len(), rows * cols, "source size");
    assert_eq!(dst.len(), rows * cols, "destination size");
    if rows == 0 || cols == 0 {
        return;
    }
    use rayon::prelude::*;
    let simd = isa != Isa::Portable && cfg!(target_arch = "x86_64") && Isa::Avx2.available();
    dst.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(jb, out)| {
            let j0 = jb * TILE;
            let tile_cols = out.len() / rows;
            for i0 in (0..rows).step_by(TILE) {
                let tile_rows = TILE.min(rows - i0);
                // (done columns of the tile, done rows) covered by the 8×8 block transposes.
                let mut done = (0, 0);
                #[cfg(target_arch = "x86_64")]
                if simd && tile_rows >= 8 && tile_cols >= 8 {
                    // Source rows are the "columns" the packing transposer reads (runs of
                    // `tile_cols` floats, `cols` apart); destination rows are its k rows.
                    // Safety: AVX2 is available; both windows lie inside the slices (asserted
                    // sizes, tile bounds clipped above).
                    let covered = unsafe {
                        x86_pack::transposed(
                            src[i0 * cols + j0..].as_ptr(),
                            cols,
                            out[i0..].as_mut_ptr(),
                            rows,
                            tile_cols,
                            tile_rows,
                        )
                    };
                    done = (tile_cols / 8 * 8, covered);
                }
                for jj in 0..tile_cols {
                    let first = if jj < done.0 { done.1 } else { 0 };
                    for ii in first..tile_rows {
                        out[jj * rows + i0 + ii] = src[(i0 + ii) * cols + j0 + jj];
                    }
                }
            }
        });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
}
