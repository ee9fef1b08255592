//! Dot products of a quantized weight row with quantized activations, as ggml-cpu's
//! `ggml_vec_dot_*` compute them: an exact integer sum per block (or per group of 16 in a
//! K-quant super-block, weighted by its integer scale), then one fused multiply-add per block
//! of `d_w·d_x` with that sum. The integer parts are exact on every path; the float part is
//! one chain over the blocks in order, so every path gives the same bits.

use super::activations::{Q8Block, Q8KBlock};
use super::blocks::{decode_small, decode_super, BlockFormat};

/// Lanes of [`dot_lanes`]: element `e` of a block belongs to lane `e / 4`.
pub(crate) const LANES: usize = 8;

/// The fixed tree that combines [`dot_lanes`]' lanes (an AVX2 register's halves added, then
/// its quarters, then its pairs).
#[inline(always)]
pub(crate) fn combine_lanes(a: [f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// A Q8_0 or Q4_0 weight row with its Q8_0 activations, the order llama.cpp's x86 kernels
/// use: per block, the exact integer sum of each group of four elements (lane `e / 4`) is
/// added to its lane as `fma(d_w·d_x, sum, lane)`; the lanes are combined at the end.
#[inline(always)]
pub(crate) fn dot_lanes(format: BlockFormat, row: &[u8], acts: &[Q8Block]) -> f32 {
    let mut lanes = [0f32; LANES];
    for (block, x) in row.chunks_exact(format.block_bytes()).zip(acts) {
        let w = decode_small(format, block);
        let d = w.d * x.d;
        for (l, lane) in lanes.iter_mut().enumerate() {
            let mut s = 0i32;
            for e in 4 * l..4 * l + 4 {
                s += w.a[e] as i32 * x.q[e] as i32;
            }
            *lane = d.mul_add(s as f32, *lane);
        }
    }
    combine_lanes(lanes)
}

/// A weight row of a 32-element format with its activations (Q8_0, or Q8_1 for Q4_1 / Q5_1).
#[inline(always)]
pub(crate) fn dot_small(format: BlockFormat, row: &[u8], acts: &[Q8Block]) -> f32 {
    let offset = format.has_offset();
    let (mut acc, mut offsets) = (0f32, 0f32);
    for (block, x) in row.chunks_exact(format.block_bytes()).zip(acts) {
        let w = decode_small(format, block);
        let mut isum = 0i32;
        for j in 0..32 {
            isum += w.a[j] as i32 * x.q[j] as i32;
        }
        acc = (w.d * x.d).mul_add(isum as f32, acc);
        if offset {
            offsets = w.m.mul_add(x.s, offsets);
        }
    }
    acc + offsets
}

/// A K-quant weight row with its Q8_K activations.
#[inline(always)]
pub(crate) fn dot_super(format: BlockFormat, row: &[u8], acts: &[Q8KBlock]) -> f32 {
    let offset = format.has_offset();
    let (mut acc, mut offsets) = (0f32, 0f32);
    for (block, x) in row.chunks_exact(format.block_bytes()).zip(acts) {
        let w = decode_super(format, block);
        let mut isum = 0i32;
        for g in 0..16 {
            let mut s = 0i32;
            for l in 16 * g..16 * g + 16 {
                s += w.a[l] as i32 * x.q[l] as i32;
            }
            isum += w.scale[g] * s;
        }
        acc = (w.d * x.d).mul_add(isum as f32, acc);
        if offset {
            let mut mins = 0i32;
            for g in 0..16 {
                mins += x.bsums[g] as i32 * w.min[g];
            }
            offsets = (w.dmin * x.d).mul_add(mins as f32, offsets);
        }
    }
    acc - offsets
}
