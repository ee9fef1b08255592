//! AVX2 integer dot products for the formats people run most: Q8_0 and Q4_0 (Q8_0 activations,
//! in [`super::dot::dot_lanes`]' order), Q5_0 (Q4_K_M's type for rows that are not whole
//! super-blocks, in [`super::dot::dot_small`]'s) and Q4_K and Q6_K (Q8_K activations, in
//! [`super::dot::dot_super`]'s). The integer sums are exact and the float operations the
//! portable path's, one for one, so the bits are the same.

use std::arch::x86_64::*;

use super::activations::{Q8Block, Q8KBlock};
use super::blocks::BlockFormat;

/// The f16 at `p` (little-endian), widened exactly.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// `acc` plus, per 32-bit lane, the sum of its four products `u·s` of unsigned and signed
/// bytes — with `maddubs` + `madd`: exact while each pair of products fits i16, which holds
/// for the operands below (activations stay within ±127, weights within 0..=127 unsigned).
#[inline(always)]
unsafe fn dot4(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, s);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// [`dot4`] in one VNNI instruction (exact: no intermediate i16).
#[inline(always)]
unsafe fn dot4_vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, s)
}

/// The exact integer sums of the eight groups of four `a[e]·x[e]` (32 signed bytes each), as
/// `|a|·(±x)` through `dot4` (`x` never holds −128: ggml's activation quantizers stay within
/// ±127).
#[inline(always)]
unsafe fn lane_sums_with(
    dot4: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    a: __m256i,
    x: __m256i,
) -> __m256i {
    dot4(
        _mm256_setzero_si256(),
        _mm256_sign_epi8(a, a),
        _mm256_sign_epi8(x, a),
    )
}

/// [`lane_sums_with`] on AVX2.
#[inline(always)]
unsafe fn lane_sums(a: __m256i, x: __m256i) -> __m256i {
    lane_sums_with(|acc, u, s| dot4(acc, u, s), a, x)
}

/// A Q4_0 block's 32 nibbles as bytes in element order: the low nibbles of its 16 bytes in
/// the low half, the high ones in the high half (the bytes in both halves, the high half
/// shifted down by four, masked).
#[inline(always)]
unsafe fn q4_0_nibbles(qs: *const u8) -> __m256i {
    let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(qs as *const __m128i));
    let shifted = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
}

/// Whether the CPU multiplies bytes into 32-bit lanes in one instruction on 256-bit registers
/// (AVX512-VNNI with VL): the AVX-512 path's Q4_0 and Q8_0 products use it.
pub(crate) fn has_vnni() -> bool {
    static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VNNI.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
    })
}

/// Rows read side by side (independent chains). One: a single stream through memory per
/// thread measured fastest in decoding (two sped a lone Q4_0 matrix up by a fifth but slowed
/// Qwen2.5-0.5B's Q4_0 decoding by as much; a Q8_0 row alone streams at memory bandwidth).
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
                // f16(d_w)·d_x in every lane: the same product as the scalar one
                let d_w = _mm_set1_epi16((block as *const i16).read_unaligned());
                let d = _mm256_mul_ps(_mm256_cvtph_ps(d_w), _mm256_set1_ps(x.d));
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

/// Q8_0 weight rows against Q8_0 activations, the byte products by `dot4`. Every row holds
/// `acts.len()` blocks.
#[inline(always)]
unsafe fn rows_q8_0_with(
    dot4: impl Fn(__m256i, __m256i, __m256i) -> __m256i + Copy,
    rows: &[&[u8]],
    acts: &[Q8Block],
    out: &mut [f32],
) {
    rows_lanes(
        rows,
        acts,
        34,
        |block, x| {
            let a = _mm256_loadu_si256(block.add(2) as *const __m256i);
            lane_sums_with(dot4, a, _mm256_loadu_si256(x.q.as_ptr() as *const __m256i))
        },
        out,
    )
}

/// Q4_0 weight rows against Q8_0 activations: per lane `Σ(q − 8)·x`, the unsigned nibbles `q`
/// multiplying `x` directly onto the activation block's own `−8·Σx`.
#[inline(always)]
unsafe fn rows_q4_0_with(
    dot4: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    rows: &[&[u8]],
    acts: &[Q8Block],
    out: &mut [f32],
) {
    rows_lanes(
        rows,
        acts,
        18,
        |block, x| {
            let xq = _mm256_loadu_si256(x.q.as_ptr() as *const __m256i);
            let m8 = _mm256_loadu_si256(x.minus_lanes8.as_ptr() as *const __m256i);
            dot4(m8, q4_0_nibbles(block.add(2)), xq)
        },
        out,
    )
}

/// Q8_0 weight rows against Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_q8_0(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    rows_q8_0_with(|acc, u, s| dot4(acc, u, s), rows, acts, out)
}

/// Q4_0 weight rows against Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_q4_0(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    rows_q4_0_with(|acc, u, s| dot4(acc, u, s), rows, acts, out)
}

/// [`rows_q8_0`] with VNNI (the AVX-512 path where the CPU has it): the same sums, the same
/// bits.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(crate) unsafe fn rows_q8_0_vnni(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    rows_q8_0_with(|acc, u, s| dot4_vnni(acc, u, s), rows, acts, out)
}

/// [`rows_q4_0`] with VNNI: the same sums, the same bits.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(crate) unsafe fn rows_q4_0_vnni(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    rows_q4_0_with(|acc, u, s| dot4_vnni(acc, u, s), rows, acts, out)
}

/// Σ of the 8 i32 lanes (exact: integers).
#[inline(always)]
unsafe fn sum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Σ over the 16 groups of `scale[g]·bsums[g]` as eight i32 lanes (exact), `scales` the
/// groups' multipliers as i16.
#[inline(always)]
unsafe fn scaled_bsums(scales: __m256i, x: &Q8KBlock) -> __m256i {
    _mm256_madd_epi16(
        scales,
        _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i),
    )
}

/// Shuffles that spread i16 values `2q` (low 128 bits) and `2q + 1` (high) of a 128-bit lane
/// over eight i16 each.
#[inline(always)]
unsafe fn pair_spread(q: usize) -> __m256i {
    let (a, b) = ((4 * q) as i8, (4 * q + 2) as i8);
    let (a1, b1) = (a + 1, b + 1);
    _mm256_setr_epi8(
        a, a1, a, a1, a, a1, a, a1, a, a1, a, a1, a, a1, a, a1, b, b1, b, b1, b, b1, b, b1, b, b1,
        b, b1, b, b1, b, b1,
    )
}

/// A Q4_K super-block's 6-bit scales and mins (12 bytes at `sc`) as sixteen bytes: the eight
/// sub-blocks' scales, then their mins (the bit layout of ggml's `get_scale_min_k4`, unpacked
/// four at a time).
#[inline(always)]
unsafe fn q4_k_scales_mins(sc: *const u8) -> __m128i {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let word = |i: usize| {
        u32::from_le_bytes([
            *sc.add(4 * i),
            *sc.add(4 * i + 1),
            *sc.add(4 * i + 2),
            *sc.add(4 * i + 3),
        ])
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let scales_lo = w0 & LOW6;
    let scales_hi = (w2 & LOW4) | (((w0 >> 6) & TOP2) << 4);
    let mins_lo = w1 & LOW6;
    let mins_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & TOP2) << 4);
    _mm_setr_epi32(
        scales_lo as i32,
        scales_hi as i32,
        mins_lo as i32,
        mins_hi as i32,
    )
}

/// A Q4_K super-block (`d`, `dmin`, scales, nibbles) against a Q8_K block: the exact
/// `Σ scale·Σ q·x` and `Σ min·bsum` of [`super::dot::dot_super`].
#[inline(always)]
unsafe fn q4_k_isums(block: *const u8, x: &Q8KBlock) -> (i32, i32) {
    let packed = q4_k_scales_mins(block.add(4));
    // Sub-block j's scale in i16 position j of both halves; each min twice (its two groups of 16).
    let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(packed));
    let mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(packed, packed));
    let qs = block.add(16);
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_si256();
    for j in 0..4 {
        let q = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
        let lo = _mm256_and_si256(q, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
        let x_lo = _mm256_loadu_si256(x.q.as_ptr().add(64 * j) as *const __m256i);
        let x_hi = _mm256_loadu_si256(x.q.as_ptr().add(64 * j + 32) as *const __m256i);
        // Sub-blocks 2j and 2j + 1: their scales spread over all sixteen i16.
        let s = _mm256_shuffle_epi8(scales, pair_spread(j));
        let s_lo = _mm256_permute4x64_epi64::<0b01_00_01_00>(s);
        let s_hi = _mm256_permute4x64_epi64::<0b11_10_11_10>(s);
        let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x_lo), s_lo);
        let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x_hi), s_hi);
        acc = _mm256_add_epi32(acc, _mm256_add_epi32(p_lo, p_hi));
    }
    (sum_i32(acc), sum_i32(scaled_bsums(mins, x)))
}

/// A Q6_K super-block's `Σ scale·Σ (u − 32)·x` against a Q8_K block, exactly: the 6-bit values
/// `u` are unsigned, so `Σ u·x` comes from `maddubs` and `32·Σx` from the block's sums of 16.
#[inline(always)]
unsafe fn q6_k_isum(block: *const u8, x: &Q8KBlock) -> i32 {
    let (ql, qh, sc) = (block, block.add(128), block.add(192));
    let low = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    // The sixteen i8 scales as i16: groups 0–7 in the low half, 8–15 in the high.
    let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(sc as *const __m128i));
    let mut acc = _mm256_slli_epi32::<5>(scaled_bsums(scales, x));
    acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
    for n in 0..2 {
        let l0 = _mm256_loadu_si256(ql.add(64 * n) as *const __m256i);
        let l1 = _mm256_loadu_si256(ql.add(64 * n + 32) as *const __m256i);
        let h = _mm256_loadu_si256(qh.add(32 * n) as *const __m256i);
        // The four quarters of 32: low nibbles of l0 / l1, high nibbles of l0 / l1, each with two
        // bits of h (bits 0–1, 2–3, 4–5, 6–7) on top.
        let high = |shift: i32| {
            let bits = match shift {
                0 => h,
                2 => _mm256_srli_epi16::<2>(h),
                4 => _mm256_srli_epi16::<4>(h),
                _ => _mm256_srli_epi16::<6>(h),
            };
            _mm256_slli_epi16::<4>(_mm256_and_si256(bits, three))
        };
        let quarters = [
            _mm256_or_si256(_mm256_and_si256(l0, low), high(0)),
            _mm256_or_si256(_mm256_and_si256(l1, low), high(2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l0), low), high(4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), low), high(6)),
        ];
        // This half's eight scales in both 128-bit lanes.
        let half = if n == 0 {
            _mm256_permute2x128_si256::<0x00>(scales, scales)
        } else {
            _mm256_permute2x128_si256::<0x11>(scales, scales)
        };
        for (quarter, u) in quarters.into_iter().enumerate() {
            let at = 128 * n + 32 * quarter;
            let xq = _mm256_loadu_si256(x.q.as_ptr().add(at) as *const __m256i);
            let s = _mm256_shuffle_epi8(half, pair_spread(quarter));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, xq), s));
        }
    }
    sum_i32(acc)
}

/// K-quant weight rows (Q4_K, Q6_K) against one Q8_K activation row: [`super::dot::dot_super`]'s
/// value for each, its integer sums computed with AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_k(
    format: BlockFormat,
    rows: &[&[u8]],
    acts: &[Q8KBlock],
    out: &mut [f32],
) {
    let bytes = format.block_bytes();
    for (row, o) in rows.iter().zip(out.iter_mut()) {
        let (mut acc, mut offsets) = (0f32, 0f32);
        for (b, x) in acts.iter().enumerate() {
            let block = row.as_ptr().add(b * bytes);
            _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_BYTES) as *const i8);
            match format {
                BlockFormat::Q4K => {
                    let (isum, m) = q4_k_isums(block, x);
                    acc = (f16_at(block) * x.d).mul_add(isum as f32, acc);
                    offsets = (f16_at(block.add(2)) * x.d).mul_add(m as f32, offsets);
                }
                _ => {
                    let isum = q6_k_isum(block, x);
                    acc = (f16_at(block.add(208)) * x.d).mul_add(isum as f32, acc);
                }
            }
        }
        *o = acc - offsets;
    }
}

/// Byte j all ones where bit j of `bits` is set (ggml's trick: spread the four bytes, keep one
/// bit per byte, compare).
#[inline(always)]
unsafe fn bytes_from_bits(bits: u32) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1))
}

/// Q5_0 weight rows against Q8_0 activations: [`super::dot::dot_small`]'s value, the block's
/// integer sum `Σ (q − 16)·x` exact (`q` the nibble with its fifth bit from `qh`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_q5_0(rows: &[&[u8]], acts: &[Q8Block], out: &mut [f32]) {
    let low = _mm_set1_epi8(0x0F);
    for (row, o) in rows.iter().zip(out.iter_mut()) {
        let mut acc = 0f32;
        for (b, x) in acts.iter().enumerate() {
            let block = row.as_ptr().add(b * 22);
            _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_BYTES) as *const i8);
            let qh =
                u32::from_le_bytes([*block.add(2), *block.add(3), *block.add(4), *block.add(5)]);
            let bytes = _mm_loadu_si128(block.add(6) as *const __m128i);
            let nibbles = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16::<4>(bytes), low),
                _mm_and_si128(bytes, low),
            );
            let fifth = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
            let values = _mm256_sub_epi8(_mm256_or_si256(nibbles, fifth), _mm256_set1_epi8(16));
            let xq = _mm256_loadu_si256(x.q.as_ptr() as *const __m256i);
            let isum = sum_i32(lane_sums(values, xq));
            acc = (f16_at(block) * x.d).mul_add(isum as f32, acc);
        }
        // dot_small adds the (absent) offsets: the same `+ 0.0`.
        *o = acc + 0.0;
    }
}

/// [`super::activations::quantize_q8`] with AVX2 (ggml-cpu's own `quantize_row_q8_0` / `_q8_1`
/// steps): the same maximum, scale, rounding half to even and sums, so the same blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8(x: &[f32], with_sum: bool, out: &mut Vec<Q8Block>) {
    let sign = _mm256_set1_ps(-0.0);
    let round_f16 = |v: f32| {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
            _mm_set_ss(v),
        )))
    };
    for block in x.chunks_exact(32) {
        let p = block.as_ptr();
        let v = [0, 8, 16, 24].map(|at| _mm256_loadu_ps(p.add(at)));
        let abs = v.map(|v| _mm256_andnot_ps(sign, v));
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let max = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = max / 127.0;
        let id = _mm256_set1_ps(if max != 0.0 { 127.0 / max } else { 0.0 });
        let q = v.map(|v| {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(v, id),
            );
            _mm256_cvtps_epi32(r)
        });
        // i32 → i8 with saturation (the clamp to −128..=127); the packs interleave 128-bit
        // halves, the permutation restores element order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // Sums of each four elements (exact), then −8 times them and their total.
        let fours = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes),
            _mm256_set1_epi16(1),
        );
        let mut b = Q8Block {
            d: round_f16(d),
            s: 0.0,
            q: [0; 32],
            minus_lanes8: [0; 8],
        };
        _mm256_storeu_si256(b.q.as_mut_ptr() as *mut __m256i, bytes);
        _mm256_storeu_si256(
            b.minus_lanes8.as_mut_ptr() as *mut __m256i,
            _mm256_mullo_epi32(fours, _mm256_set1_epi32(-8)),
        );
        if with_sum {
            b.s = round_f16(d * sum_i32(fours) as f32);
        }
        out.push(b);
    }
}
