//! Quantizing f32 rows into ggml's block formats, as llama.cpp's quantizer does.
//!
//! A file we quantize should hold the bytes llama.cpp's own quantizer writes for the same
//! tensor, so that "the Q4_0 model" means one model whichever tool made it. The routines below
//! follow ggml's reference quantizers (`quantize_row_*_ref`, and with an importance matrix the
//! `quantize_row_*_impl` searches) operation for operation in f32: ggml builds them without
//! fused multiply-adds or reassociation, so plain IEEE arithmetic in the same order gives the
//! same bits on every CPU. The rounding helpers are ggml's: [`nearest`] (ties to even, by the
//! 1.5·2²³ trick), `roundf` (ties away from zero) and truncating casts, each where ggml uses it.
//!
//! Formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K (everything llama.cpp's Q8_0,
//! Q4_0, Q4_K_M, Q5_K_M and Q6_K mixtures choose, fallbacks included).

use half::f16;

use super::blocks::{BlockFormat, QK_K};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it is all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Whether [`quantize_row`] can write `format`.
pub fn can_encode(format: BlockFormat) -> bool {
    !matches!(format, BlockFormat::Q2K | BlockFormat::Q3K)
}

/// Quantizes one row (`row.len()` a multiple of the format's block) into `out`
/// (`row.len() / block_elements · block_bytes` bytes). `importance` — one weight per element of
/// the row, from an importance matrix — switches to ggml's weighted searches where ggml has
/// them (Q8_0 ignores it, as ggml does).
///
/// # Panics
/// When the lengths disagree or [`can_encode`] is false: callers check shapes first.
pub fn quantize_row(format: BlockFormat, row: &[f32], importance: Option<&[f32]>, out: &mut [u8]) {
    let per = format.block_elements();
    assert!(can_encode(format), "no quantizer for {}", format.name());
    assert!(
        row.len().is_multiple_of(per),
        "row is not whole {} blocks",
        format.name()
    );
    assert_eq!(
        out.len(),
        row.len() / per * format.block_bytes(),
        "output size"
    );
    if let Some(w) = importance {
        assert_eq!(w.len(), row.len(), "importance length");
    }
    let blocks = out.chunks_exact_mut(format.block_bytes());
    match (format, importance) {
        (BlockFormat::Q8_0, _) => blocks
            .zip(row.chunks_exact(32))
            .for_each(|(b, x)| q8_0(x, b)),
        (BlockFormat::Q4_0, None) => blocks
            .zip(row.chunks_exact(32))
            .for_each(|(b, x)| q4_0(x, b)),
        (BlockFormat::Q4_1, None) => blocks
            .zip(row.chunks_exact(32))
            .for_each(|(b, x)| q4_1(x, b)),
        (BlockFormat::Q5_0, None) => blocks
            .zip(row.chunks_exact(32))
            .for_each(|(b, x)| q5_0(x, b)),
        (BlockFormat::Q5_1, None) => blocks
            .zip(row.chunks_exact(32))
            .for_each(|(b, x)| q5_1(x, b)),
        (BlockFormat::Q4K, None) => blocks
            .zip(row.chunks_exact(QK_K))
            .for_each(|(b, x)| q4_k(x, b)),
        (BlockFormat::Q5K, None) => blocks
            .zip(row.chunks_exact(QK_K))
            .for_each(|(b, x)| q5_k(x, b)),
        (BlockFormat::Q6K, None) => blocks
            .zip(row.chunks_exact(QK_K))
            .for_each(|(b, x)| q6_k(x, None, b)),
        (BlockFormat::Q6K, Some(w)) => blocks
            .zip(row.chunks_exact(QK_K).zip(w.chunks_exact(QK_K)))
            .for_each(|(b, (x, w))| q6_k(x, Some(w), b)),
        (BlockFormat::Q4K | BlockFormat::Q5K, Some(w)) => {
            for (b, (x, w)) in blocks.zip(row.chunks_exact(QK_K).zip(w.chunks_exact(QK_K))) {
                k_weighted(format, x, w, b);
            }
        }
        (_, Some(w)) => {
            // The 32-element formats weigh each element by its importance times the spread of
            // the whole row.
            let sigma2 = sum_squares(row) / row.len() as f32;
            for (b, (x, w)) in blocks.zip(row.chunks_exact(32).zip(w.chunks_exact(32))) {
                small_weighted(format, x, w, sigma2, b);
            }
        }
        (BlockFormat::Q2K | BlockFormat::Q3K, None) => unreachable!("checked above"),
    }
}

/// ggml's `nearest_int`: ties to even through the float adder (exact for |v| < 2²²).
#[inline]
fn nearest(v: f32) -> i32 {
    let shifted = v + 12_582_912.0;
    (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Σ x², one chain in element order.
fn sum_squares(x: &[f32]) -> f32 {
    x.iter().fold(0.0, |s, &v| s + v * v)
}

/// The element of largest magnitude (the first one on ties), and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Packs 32 small integers two to a byte (element j low, j + 16 high).
fn pack_nibbles(l: &[u8; 32], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = (l[j] & 0x0f) | ((l[j + 16] & 0x0f) << 4);
    }
}

/// The fifth bits of 32 small integers, element j at bit j.
fn high_bits(l: &[u8; 32]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, &v) in l.iter().enumerate() {
        qh |= (((v & 0x10) >> 4) as u32) << j;
    }
    qh.to_le_bytes()
}

// ---- the 32-element formats, reference (no importance) ----

fn q8_0(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    for (q, &v) in b[2..].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

fn q4_0(x: &[f32], b: &mut [u8]) {
    let (max, _) = signed_max(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    let mut l = [0u8; 32];
    for (q, &v) in l.iter_mut().zip(x) {
        *q = ((v * id + 8.5) as i8).min(15) as u8;
    }
    pack_nibbles(&l, &mut b[2..18]);
}

fn q4_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    let mut l = [0u8; 32];
    for (q, &v) in l.iter_mut().zip(x) {
        *q = (((v - min) * id + 0.5) as i8).min(15) as u8;
    }
    pack_nibbles(&l, &mut b[4..20]);
}

fn q5_0(x: &[f32], b: &mut [u8]) {
    let (max, _) = signed_max(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    let mut l = [0u8; 32];
    for (q, &v) in l.iter_mut().zip(x) {
        *q = ((v * id + 16.5) as i8).min(31) as u8;
    }
    b[2..6].copy_from_slice(&high_bits(&l));
    pack_nibbles(&l, &mut b[6..22]);
}

fn q5_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    let mut l = [0u8; 32];
    for (q, &v) in l.iter_mut().zip(x) {
        *q = ((v - min) * id + 0.5) as u8;
    }
    b[4..8].copy_from_slice(&high_bits(&l));
    pack_nibbles(&l, &mut b[8..24]);
}

// ---- the 32-element formats with importance ----

fn small_weighted(format: BlockFormat, x: &[f32], qw: &[f32], sigma2: f32, b: &mut [u8]) {
    let mut weight = [0f32; 32];
    for ((w, &q), &v) in weight.iter_mut().zip(qw).zip(x) {
        *w = q * (sigma2 + v * v).sqrt();
    }
    let mut l = [0u8; 32];
    match format {
        BlockFormat::Q4_0 | BlockFormat::Q5_0 => {
            let nmax = if format == BlockFormat::Q4_0 { 8 } else { 16 };
            let d = symmetric_search(x, nmax, &mut l, Weighting::Given(&weight));
            put_f16(b, 0, d);
            if format == BlockFormat::Q4_0 {
                pack_nibbles(&l, &mut b[2..18]);
            } else {
                b[2..6].copy_from_slice(&high_bits(&l));
                pack_nibbles(&l, &mut b[6..22]);
            }
        }
        BlockFormat::Q4_1 | BlockFormat::Q5_1 => {
            let nmax = if format == BlockFormat::Q4_1 { 15 } else { 31 };
            let search = Search {
                rmin: -0.9,
                rdelta: 0.05,
                steps: 36,
            };
            let (d, min) = offset_search(x, Some(&weight), nmax, &mut l, search);
            put_f16(b, 0, d);
            put_f16(b, 2, -min);
            if format == BlockFormat::Q4_1 {
                pack_nibbles(&l, &mut b[4..20]);
            } else {
                b[4..8].copy_from_slice(&high_bits(&l));
                pack_nibbles(&l, &mut b[8..24]);
            }
        }
        _ => unreachable!("32-element formats only"),
    }
}

/// How [`symmetric_search`] weighs each element's error.
enum Weighting<'a> {
    /// x² (ggml's `rmse_type` 1 without weights).
    Squares,
    Given(&'a [f32]),
}

/// ggml's `make_qx_quants` with `rmse_type` 1: integers in `[0, 2·nmax)` (stored with the
/// offset `nmax`) and the scale minimising the weighted squared error among 19 candidate
/// scalings of the largest element. Returns the scale.
fn symmetric_search(x: &[f32], nmax: i32, l: &mut [u8], weighting: Weighting) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l[..x.len()].fill(0);
        return 0.0;
    }
    let weight = |i: usize| match weighting {
        Weighting::Squares => x[i] * x[i],
        Weighting::Given(w) => w[i],
    };
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (i, &v) in x.iter().enumerate() {
        let q = clamp(nearest(iscale * v));
        l[i] = (q + nmax) as u8;
        let w = weight(i);
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in -9..=9 {
        if step == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for (i, &v) in x.iter().enumerate() {
            let q = clamp(nearest(iscale * v));
            let w = weight(i);
            sumlx += w * v * q as f32;
            suml2 += w * q as f32 * q as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &v) in x.iter().enumerate() {
                l[i] = (clamp(nearest(iscale * v)) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The candidate scalings of an offset search: `(nmax + rmin + rdelta·i) / range`, i = 0..=steps.
#[derive(Clone, Copy)]
struct Search {
    rmin: f32,
    rdelta: f32,
    steps: i32,
}

/// ggml's `make_qkx2_quants` (weights given) / `make_qkx3_quants` (weights given or x²): integers
/// in `[0, nmax]` with a scale and a minimum, the pair fitted by weighted least squares for each
/// candidate scaling and the best kept. Returns (scale, −minimum).
fn offset_search(
    x: &[f32],
    weights: Option<&[f32]>,
    nmax: i32,
    l: &mut [u8],
    search: Search,
) -> (f32, f32) {
    let weight = |i: usize| weights.map_or(x[i] * x[i], |w| w[i]);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weight(0);
    let mut sum_x = sum_w * x[0];
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        l[..x.len()].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for (i, &v) in x.iter().enumerate() {
        let q = nearest(iscale * (v - min)).clamp(0, nmax) as u8;
        l[i] = q;
        let diff = scale * q as f32 + min - v;
        best_error += weight(i) * (diff * diff);
    }
    let mut aux = [0u8; 32];
    for step in 0..=search.steps {
        iscale = (search.rmin + search.rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for (i, &v) in x.iter().enumerate() {
            let q = nearest(iscale * (v - min)).clamp(0, nmax);
            aux[i] = q as u8;
            let w = weight(i);
            let q = q as f32;
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for (i, &v) in x.iter().enumerate() {
                let diff = this_scale * aux[i] as f32 + this_min - v;
                error += weight(i) * (diff * diff);
            }
            if error < best_error {
                l[..x.len()].copy_from_slice(&aux[..x.len()]);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qp_quants`: non-negative values (sub-block scales or minima) as integers in
/// `[0, nmax]` under one weighted-least-squares scale, refined coordinate by coordinate.
fn positive_search(x: &[f32; 8], nmax: i32, l: &mut [u8; 8], weights: &[f32; 8]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, &v| m.max(v));
    if max < GROUP_MAX_EPS {
        *l = [0; 8];
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for (q, &v) in l.iter_mut().zip(x) {
        *q = nearest(iscale * v) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..8 {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += weights[i] * diff * diff;
    }
    for step in -4..=4 {
        if step == 0 {
            continue;
        }
        let iscale_step = (0.1 * step as f32 + nmax as f32) / max;
        let scale_step = 1.0 / iscale_step;
        let mut mse = 0.0f32;
        for i in 0..8 {
            let q = nearest(iscale_step * x[i]).min(nmax);
            let diff = x[i] - scale_step * q as f32;
            mse += weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_step;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..8 {
        let q = nearest(iscale * x[i]).min(nmax);
        l[i] = q as u8;
        let (w, q) = (weights[i], q as f32);
        sumlx += w * x[i] * q;
        suml2 += w * q * q;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..8 {
            let (w, li) = (weights[i], l[i] as f32);
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest(x[i] * sl2 / slx).min(nmax);
                if new_l != l[i] as i32 {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

// ---- K-quants ----

/// Q4_K / Q5_K's twelve bytes of six-bit sub-block scales and minima.
fn pack_k_scales(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (ls[j], lm[j]);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    s
}

fn unpack_k_scale(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Writes a Q4_K / Q5_K super-block from its sub-block scales: the final integers are each
/// element's nearest under the stored (f16-rounded, six-bit) scale and minimum; a sub-block
/// whose stored scale is zero keeps the search's integers `l`, as ggml's does.
fn finish_k(
    format: BlockFormat,
    x: &[f32],
    mut l: [u8; QK_K],
    scales: [u8; 12],
    (d, dmin): (f32, f32),
    b: &mut [u8],
) {
    let nmax = if format == BlockFormat::Q4K { 15 } else { 31 };
    put_f16(b, 0, d);
    put_f16(b, 2, dmin);
    b[4..16].copy_from_slice(&scales);
    let (d, dmin) = (f16_round(d), f16_round(dmin));
    for j in 0..8 {
        let (sc, m) = unpack_k_scale(j, &scales);
        let ds = d * sc as f32;
        if ds == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest((x[32 * j + i] + dm) / ds).clamp(0, nmax) as u8;
        }
    }
    if format == BlockFormat::Q4K {
        let qs = &mut b[16..144];
        for (chunk, out) in l.chunks_exact(64).zip(qs.chunks_exact_mut(32)) {
            for i in 0..32 {
                out[i] = chunk[i] | (chunk[i + 32] << 4);
            }
        }
    } else {
        let (qh, qs) = b[16..176].split_at_mut(32);
        qh.fill(0);
        for (pair, (chunk, out)) in l.chunks_exact(64).zip(qs.chunks_exact_mut(32)).enumerate() {
            let (m1, m2) = (1u8 << (2 * pair), 2u8 << (2 * pair));
            for i in 0..32 {
                let (mut l1, mut l2) = (chunk[i], chunk[i + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[i] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[i] |= m2;
                }
                out[i] = l1 | (l2 << 4);
            }
        }
    }
}

/// Q4_K / Q5_K without importance (`quantize_row_q{4,5}_K_ref`).
fn k_reference(format: BlockFormat, x: &[f32], b: &mut [u8]) {
    let (nmax, search) = if format == BlockFormat::Q4K {
        (
            15,
            Search {
                rmin: -1.0,
                rdelta: 0.1,
                steps: 20,
            },
        )
    } else {
        (
            31,
            Search {
                rmin: -0.5,
                rdelta: 0.1,
                steps: 15,
            },
        )
    };
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    let mut l = [0u8; QK_K];
    for j in 0..8 {
        let sub = &x[32 * j..32 * j + 32];
        let av_x = (sum_squares(sub) / 32.0).sqrt();
        let mut weights = [0f32; 32];
        for (w, &v) in weights.iter_mut().zip(sub) {
            *w = av_x + v.abs();
        }
        let (scale, min) = offset_search(sub, Some(&weights), nmax, &mut l[32 * j..], search);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        ls[j] = (nearest(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest(inv_min * mins[j]) as u8).min(63);
    }
    let d = (max_scale / 63.0, max_min / 63.0);
    finish_k(format, x, l, pack_k_scales(&ls, &lm), d, b);
}

fn q4_k(x: &[f32], b: &mut [u8]) {
    k_reference(BlockFormat::Q4K, x, b)
}

fn q5_k(x: &[f32], b: &mut [u8]) {
    k_reference(BlockFormat::Q5K, x, b)
}

/// Q4_K / Q5_K with importance (`quantize_row_q{4,5}_K_impl`).
fn k_weighted(format: BlockFormat, x: &[f32], qw: &[f32], b: &mut [u8]) {
    let nmax = if format == BlockFormat::Q4K { 15 } else { 31 };
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut sw = [0f32; 8];
    let mut l = [0u8; QK_K];
    for j in 0..8 {
        let sub = &x[32 * j..32 * j + 32];
        let mut weights = [0f32; 32];
        for ((w, &q), &v) in weights.iter_mut().zip(&qw[32 * j..32 * j + 32]).zip(sub) {
            *w = q * (sigma2 + v * v).sqrt();
        }
        sw[j] = weights.iter().fold(0.0, |s, &w| s + w);
        let search = Search {
            rmin: -0.9,
            rdelta: 0.05,
            steps: 36,
        };
        (scales[j], mins[j]) = offset_search(sub, Some(&weights), nmax, &mut l[32 * j..], search);
    }
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d = positive_search(&scales, 63, &mut ls, &sw);
    let dmin = positive_search(&mins, 63, &mut lm, &sw);
    for v in ls.iter_mut().chain(lm.iter_mut()) {
        *v = (*v).min(63);
    }
    finish_k(format, x, l, pack_k_scales(&ls, &lm), (d, dmin), b);
}

/// Q6_K (`quantize_row_q6_K_ref`; with importance `_impl`, which only weighs the
/// sub-block searches).
fn q6_k(x: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ib in 0..16 {
        let sub = &x[16 * ib..16 * ib + 16];
        let weighting = match qw {
            Some(w) => Weighting::Given(&w[16 * ib..16 * ib + 16]),
            None => Weighting::Squares,
        };
        let scale = symmetric_search(sub, 32, &mut l[16 * ib..16 * ib + 16], weighting);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    b.fill(0);
    if max_abs_scale < GROUP_MAX_EPS {
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = 1.0 / iscale;
    put_f16(b, 208, d);
    let mut sc = [0i8; 16];
    for (s, &scale) in sc.iter_mut().zip(&scales) {
        *s = nearest(iscale * scale).min(127) as i8;
    }
    for (out, &s) in b[192..208].iter_mut().zip(&sc) {
        *out = s as u8;
    }
    let d = f16_round(d);
    for j in 0..16 {
        let ds = d * sc[j] as f32;
        if ds == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = (nearest(x[16 * j + i] / ds).clamp(-32, 31) + 32) as u8;
        }
    }
    let (ql, rest) = b.split_at_mut(128);
    let qh = &mut rest[..64];
    for half in 0..2 {
        let l = &l[128 * half..128 * half + 128];
        let ql = &mut ql[64 * half..64 * half + 64];
        let qh = &mut qh[32 * half..32 * half + 32];
        for i in 0..32 {
            ql[i] = (l[i] & 0x0f) | ((l[i + 64] & 0x0f) << 4);
            ql[i + 32] = (l[i + 32] & 0x0f) | ((l[i + 96] & 0x0f) << 4);
            qh[i] = (l[i] >> 4)
                | ((l[i + 32] >> 4) << 2)
                | ((l[i + 64] >> 4) << 4)
                | ((l[i + 96] >> 4) << 6);
        }
    }
}
