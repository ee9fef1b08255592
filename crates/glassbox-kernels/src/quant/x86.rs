//! AVX2 integer dot products for the formats decoding is most often bound by (Q8_0, Q4_0 and
//! their Q8_0 activations), in [`super::dot::dot_lanes`]' order: the integer sums are exact and
//! the float operations the portable path's, one for one, so the bits are the same.

use std::arch::x86_64::*;

use super::activations::Q8Block;

/// The f16 at `p` (little-endian), widened exactly.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The exact integer sums of the eight groups of four `a[e]·x[e]` (32 signed bytes each);
/// `x` never holds −128 (ggml's activation quantizers stay within ±127), so the `|a|·(±x)`
/// pairs fit i16 exactly.
#[inline(always)]
unsafe fn lane_sums(a: __m256i, x: __m256i) -> __m256i {
    let abs_a = _mm256_sign_epi8(a, a);
    let signed_x = _mm256_sign_epi8(x, a);
    let pairs = _mm256_maddubs_epi16(abs_a, signed_x);
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// A Q4_0 block's lane sums `Σ(q − 8)·x`: its nibbles `q` (the low nibbles of its 16 bytes,
/// then the high ones) are unsigned, so they multiply `x` directly; `8·Σx` per lane is the
/// activation block's own.
#[inline(always)]
unsafe fn q4_0_lane_sums(qs: *const u8, x: __m256i, x_lanes8: __m256i) -> __m256i {
    let bytes = _mm_loadu_si128(qs as *const __m128i);
    let low = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(bytes, low);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), low);
    let pairs = _mm256_maddubs_epi16(_mm256_set_m128i(hi, lo), x);
    _mm256_sub_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)), x_lanes8)
}

/// Rows read side by side (independent chains). One: a single stream through memory per
/// thread measured fastest (decoding is bound by reading the weights).
const GROUP: usize = 1;

/// How far ahead of the block being read its row is prefetched.
const PREFETCH_BYTES: usize = 4096;

/// [`super::dot::combine_lanes`] of a register.
#[inline(always)]
unsafe fn combine(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Rows of Q8_0 or Q4_0 against one Q8_0 activation row in [`super::dot::dot_lanes`]' order,
/// [`GROUP`] rows at a time. `sums(block, x)` gives a block's exact lane sums; `out[r]`
/// receives row r's value.
#[inline(always)]
unsafe fn rows_lanes(
    rows: &[&[u8]],
    acts: &[Q8Block],
    block_bytes: usize,
    sums: impl Fn(*const u8, &Q8Block) -> __m256i,
    out: &mut [f32],
) {
    let mut r = 0;
    while r < rows.len() {
        let group = (rows.len() - r).min(GROUP);
        let mut p = [rows[r].as_ptr(); GROUP];
        for (c, p) in p.iter_mut().enumerate().take(group) {
            *p = rows[r + c].as_ptr();
        }
        let mut acc = [_mm256_setzero_ps(); GROUP];
        for (b, x) in acts.iter().enumerate() {
            for c in 0..GROUP {
                let block = p[c].add(b * block_bytes);
                // The weights stream from memory once: ask for them well ahead (past a row's
                // end this reaches into the next rows, which usually follow in memory).
                _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_BYTES) as *const i8);
                let d = _mm256_set1_ps(f16_at(block) * x.d);
                let sums = _mm256_cvtepi32_ps(sums(block, x));
                acc[c] = _mm256_fmadd_ps(d, sums, acc[c]);
            }
        }
        for c in 0..group {
            out[r + c] = combine(acc[c]);
        }
        r += group;
    }
}

/// Q8_0 weight rows against Q8_0 activations. Every row holds `acts.len()` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_q8_0(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    rows_lanes(
        rows,
        acts,
        34,
        |block, x| {
            let a = _mm256_loadu_si256(block.add(2) as *const __m256i);
            lane_sums(a, _mm256_loadu_si256(x.q.as_ptr() as *const __m256i))
        },
        out,
    )
}

/// Q4_0 weight rows against Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_q4_0(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    rows_lanes(
        rows,
        acts,
        18,
        |block, x| {
            let xq = _mm256_loadu_si256(x.q.as_ptr() as *const __m256i);
            let lanes8 = _mm256_loadu_si256(x.lanes8.as_ptr() as *const __m256i);
            q4_0_lane_sums(block.add(2), xq, lanes8)
        },
        out,
    )
}
