//! Row reductions in one fixed order, whatever the vector width.
//!
//! A sum over n elements runs as [`LANES`] = 16 interleaved partial sums (element i into lane
//! i mod 16, each lane in increasing i), the last partial chunk padded with zeros, then the
//! lanes combine as a fixed tree: lane i += lane i+8, then i+4, i+2, i+1. A 16-lane AVX-512
//! register, two 8-lane AVX2 registers and 16 scalars all perform exactly these operations.

use crate::simd::Simd;

/// The number of partial sums of every reduction.
pub const LANES: usize = 16;

/// Combines the 16 partial sums in the fixed tree order.
#[inline(always)]
pub(crate) fn tree(mut lanes: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// Folds `step(acc, values…)` over 16-element chunks of one or two equally long slices (the
/// tail zero-padded), then combines the lanes by [`tree`].
macro_rules! fold16 {
    ($S:ty, [$($x:expr),+], |$acc:ident, $($v:ident),+| $step:expr) => {{
        let n = [$($x.len()),+][0];
        let w = <$S as Simd>::LANES;
        let nv = LANES / w;
        let mut accs = [<$S as Simd>::splat(0.0); LANES];
        let full = n / LANES * LANES;
        let mut i = 0;
        while i < full {
            for (j, acc_slot) in accs.iter_mut().enumerate().take(nv) {
                let $acc = *acc_slot;
                $(let $v = <$S as Simd>::load($x.as_ptr().add(i + j * w));)+
                *acc_slot = $step;
            }
            i += LANES;
        }
        if full < n {
            $(let $v = {
                let mut buf = [0f32; LANES];
                buf[..n - full].copy_from_slice(&$x[full..]);
                buf
            };)+
            for (j, acc_slot) in accs.iter_mut().enumerate().take(nv) {
                let $acc = *acc_slot;
                $(let $v = <$S as Simd>::load($v.as_ptr().add(j * w));)+
                *acc_slot = $step;
            }
        }
        let mut lanes = [0f32; LANES];
        for (j, acc) in accs.iter().enumerate().take(nv) {
            <$S as Simd>::store(lanes.as_mut_ptr().add(j * w), *acc);
        }
        tree(lanes)
    }};
}

/// `Σ x`.
#[inline(always)]
pub(crate) unsafe fn sum<S: Simd>(x: &[f32]) -> f32 {
    fold16!(S, [x], |acc, v| S::add(acc, v))
}

/// `Σ (x − c)²` (with c = 0: the sum of squares). The partial last chunk is padded with
/// deviations of 0, not with elements of 0.
#[inline(always)]
pub(crate) unsafe fn sum_sq_dev<S: Simd>(x: &[f32], c: f32) -> f32 {
    let w = S::LANES;
    let nv = LANES / w;
    let cv = S::splat(c);
    let n = x.len();
    let full = n / LANES * LANES;
    let mut accs = [S::splat(0.0); LANES];
    let mut i = 0;
    while i < full {
        for (j, acc) in accs.iter_mut().enumerate().take(nv) {
            let d = S::sub(S::load(x.as_ptr().add(i + j * w)), cv);
            *acc = S::fma(d, d, *acc);
        }
        i += LANES;
    }
    if full < n {
        let mut dev = [0f32; LANES];
        for (d, &v) in dev.iter_mut().zip(&x[full..]) {
            *d = v - c;
        }
        for (j, acc) in accs.iter_mut().enumerate().take(nv) {
            let d = S::load(dev.as_ptr().add(j * w));
            *acc = S::fma(d, d, *acc);
        }
    }
    let mut lanes = [0f32; LANES];
    for (j, acc) in accs.iter().enumerate().take(nv) {
        S::store(lanes.as_mut_ptr().add(j * w), *acc);
    }
    tree(lanes)
}

/// `Σ x·y`.
#[inline(always)]
pub(crate) unsafe fn dot<S: Simd>(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    fold16!(S, [x, y], |acc, a, b| S::fma(a, b, acc))
}

/// `max x` (−∞ for an empty row). Exact whatever the order; NaN-free rows only matter.
#[inline(always)]
pub(crate) unsafe fn max<S: Simd>(x: &[f32]) -> f32 {
    let mut m = f32::NEG_INFINITY;
    for &v in x {
        m = if v > m { v } else { m };
    }
    m
}
