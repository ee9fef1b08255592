//! Activations quantized as ggml-cpu quantizes the right-hand side of a matmul with a
//! quantized weight (its `vec_dot_type`): Q8_0 for Q4_0 / Q5_0 / Q8_0 weights, Q8_1 for Q4_1 /
//! Q5_1, Q8_K for the K-quants. The x86 forms (`quantize_row_q8_0` / `_q8_1` with AVX2, the
//! reference `quantize_row_q8_K_ref`) are the ones followed: scale `127 / max|x|`, rounding
//! half to even.

use half::f16;

use super::blocks::QK_K;

/// A block of 32 activations: `d·q[j]`; `s = d·Σq` (Q8_1 only). Scales are held as the f16
/// values ggml stores.
#[derive(Clone, Copy)]
pub(crate) struct Q8Block {
    pub d: f32,
    pub s: f32,
    pub q: [i8; 32],
    /// −8·Σq over each group of four (`−8·Σ_{e=4l}^{4l+3} q[e]` for lane l): a Q4_0 weight's
    /// `Σ(q_w − 8)·x = Σq_w·x − 8·Σx` per lane, exactly, is the unsigned product added to it.
    pub minus_lanes8: [i32; 8],
}

/// A super-block of 256 activations: `d·q[j]`, with the sums of each 16 (as ggml keeps them:
/// i16, exact since |Σ| ≤ 16·128).
#[derive(Clone, Copy)]
pub(crate) struct Q8KBlock {
    pub d: f32,
    pub q: [i8; QK_K],
    pub bsums: [i16; 16],
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// ggml-cpu's `quantize_row_q8_0` (`with_sum`: `_q8_1`) on x86.
#[inline(always)]
pub(crate) fn quantize_q8(x: &[f32], with_sum: bool, out: &mut Vec<Q8Block>) {
    for block in x.chunks_exact(32) {
        let max = block.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let d = max / 127.0;
        let id = if max != 0.0 { 127.0 / max } else { 0.0 };
        let mut q = [0i8; 32];
        let mut sum = 0i32;
        for (q, &v) in q.iter_mut().zip(block) {
            let r = (v * id).round_ties_even().clamp(-128.0, 127.0) as i32;
            *q = r as i8;
            sum += r;
        }
        let s = if with_sum {
            round_f16(d * sum as f32)
        } else {
            0.0
        };
        let mut minus_lanes8 = [0i32; 8];
        for (l, lane) in minus_lanes8.iter_mut().enumerate() {
            *lane = -8 * q[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum::<i32>();
        }
        out.push(Q8Block {
            d: round_f16(d),
            s,
            q,
            minus_lanes8,
        });
    }
}

/// ggml's `quantize_row_q8_K_ref`: scale `−127 / x_max` where `x_max` is the element of
/// largest magnitude (the first, in a tie), its reciprocal kept as `d`.
#[inline(always)]
pub(crate) fn quantize_q8k(x: &[f32], out: &mut Vec<Q8KBlock>) {
    for block in x.chunks_exact(QK_K) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in block {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let mut b = Q8KBlock {
            d: 0.0,
            q: [0; QK_K],
            bsums: [0; 16],
        };
        if amax != 0.0 {
            let iscale = -127.0 / max;
            for (q, &v) in b.q.iter_mut().zip(block) {
                *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
            }
            for (g, sum) in b.bsums.iter_mut().enumerate() {
                *sum = b.q[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
            }
            b.d = 1.0 / iscale;
        }
        out.push(b);
    }
}
