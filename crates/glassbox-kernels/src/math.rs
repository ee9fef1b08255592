//! Transcendental functions as our own polynomials, one definition for every path.
//!
//! Each function is a fixed sequence of IEEE-exact operations and FMAs, written once over
//! [`Simd`]; the scalar versions here are that same code on the portable path. So `exp` of a
//! value is the same bits in a softmax on AVX-512, in a GELU on AVX2 and in a test on any CPU,
//! unlike libm's, which differ between platforms and versions. Accuracy: `exp` ≤ 2 ulp,
//! `tanh` and `erf` within 2e-7 absolute (ample for activations compared at 1e-4).

use crate::simd::{isa_entry, Portable, Simd};

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that n × LN2_HI is exact for |n| < 2^9 (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// Adding then subtracting 1.5 × 2^23 rounds to the nearest integer (ties to even) with plain
// IEEE additions, identically on every path.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x`. Below −104 it is 0, above 88.73 +∞; NaN stays NaN.
#[inline(always)]
pub(crate) unsafe fn exp_v<S: Simd>(x: S::V) -> S::V {
    let xc = S::min(S::max(x, S::splat(-104.0)), S::splat(89.0));
    let n = S::sub(
        S::fma(xc, S::splat(LOG2E), S::splat(ROUND_MAGIC)),
        S::splat(ROUND_MAGIC),
    );
    let r = S::fma(n, S::splat(-LN2_HI), xc);
    let r = S::fma(n, S::splat(-LN2_LO), r);
    // e^r on |r| ≤ ln2/2 (Cephes' expf coefficients).
    let mut p = S::splat(1.987_569_1e-4);
    p = S::fma(p, r, S::splat(1.398_199_9e-3));
    p = S::fma(p, r, S::splat(8.333_452e-3));
    p = S::fma(p, r, S::splat(4.166_579_6e-2));
    p = S::fma(p, r, S::splat(1.666_666_5e-1));
    p = S::fma(p, r, S::splat(5.000_000_1e-1));
    let r2 = S::mul(r, r);
    let y = S::add(S::fma(p, r2, r), S::splat(1.0));
    // 2^n as 2^(n/2) · 2^(n − n/2): both factors stay normal for n in [−152, 128], so results
    // round into the subnormal range (or overflow to ∞) in the last multiply only.
    let n1 = S::half_floor(n);
    let n2 = S::sub(n, n1);
    let y = S::mul(S::mul(y, S::pow2i(n1)), S::pow2i(n2));
    S::select(S::is_nan(x), x, y)
}

/// `tanh(x) = sign(x) (1 − 2 / (e^{2|x|} + 1))`.
#[inline(always)]
pub(crate) unsafe fn tanh_v<S: Simd>(x: S::V) -> S::V {
    let a = S::min(S::abs(x), S::splat(10.0));
    let e = exp_v::<S>(S::add(a, a));
    let t = S::sub(
        S::splat(1.0),
        S::div(S::splat(2.0), S::add(e, S::splat(1.0))),
    );
    S::select(S::is_nan(x), x, S::copysign(t, x))
}

/// `1 / (1 + e^{−x})`.
#[inline(always)]
pub(crate) unsafe fn sigmoid_v<S: Simd>(x: S::V) -> S::V {
    let e = exp_v::<S>(S::sub(S::splat(0.0), x));
    S::div(S::splat(1.0), S::add(S::splat(1.0), e))
}

/// `erf(x)`: its Maclaurin series below |x| = 1, Abramowitz & Stegun 7.1.26 above
/// (absolute error ≤ 3e-7 in f32 arithmetic).
#[inline(always)]
pub(crate) unsafe fn erf_v<S: Simd>(x: S::V) -> S::V {
    let a = S::min(S::abs(x), S::splat(10.0));
    // Series in z = x²: erf x = x Σ cₙ zⁿ, cₙ = 2/√π (−1)ⁿ / (n! (2n+1)).
    let z = S::mul(a, a);
    let mut q = S::splat(1.480719281587922e-08);
    q = S::fma(q, z, S::splat(-1.6365844691234924e-07));
    q = S::fma(q, z, S::splat(1.6462114365889248e-06));
    q = S::fma(q, z, S::splat(-1.4925650358406252e-05));
    q = S::fma(q, z, S::splat(0.00012055332981789665));
    q = S::fma(q, z, S::splat(-0.0008548327023450853));
    q = S::fma(q, z, S::splat(0.005223977625442188));
    q = S::fma(q, z, S::splat(-0.026866170645131252));
    q = S::fma(q, z, S::splat(0.11283791670955128));
    q = S::fma(q, z, S::splat(-0.37612638903183754));
    q = S::fma(q, z, S::splat(core::f32::consts::FRAC_2_SQRT_PI));
    let small = S::mul(q, a);
    let t = S::div(
        S::splat(1.0),
        S::fma(S::splat(0.327_591_1), a, S::splat(1.0)),
    );
    let mut p = S::splat(1.061_405_4);
    p = S::fma(p, t, S::splat(-1.453_152_1));
    p = S::fma(p, t, S::splat(1.421_413_7));
    p = S::fma(p, t, S::splat(-0.284_496_74));
    p = S::fma(p, t, S::splat(0.254_829_6));
    p = S::mul(p, t);
    let e = exp_v::<S>(S::mul(S::sub(S::splat(0.0), a), a));
    let large = S::sub(S::splat(1.0), S::mul(p, e));
    let y = S::select(S::lt(a, S::splat(1.0)), small, large);
    S::select(S::is_nan(x), x, S::copysign(y, x))
}

/// `e^x` (the portable path's instance of the shared definition).
pub fn exp(x: f32) -> f32 {
    unsafe { exp_v::<Portable>(x) }
}

pub fn tanh(x: f32) -> f32 {
    unsafe { tanh_v::<Portable>(x) }
}

pub fn erf(x: f32) -> f32 {
    unsafe { erf_v::<Portable>(x) }
}

pub fn sigmoid(x: f32) -> f32 {
    unsafe { sigmoid_v::<Portable>(x) }
}

/// Natural logarithm for positive finite `x` (Cephes' logf polynomial); 0 → −∞, negative or
/// NaN → NaN, +∞ → +∞. Used once per row (cross-entropy), so scalar on every path.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // Normalise subnormals, then split x = m · 2^e with m in [√½, √2).
    let (x, bias) = if x < f32::MIN_POSITIVE {
        (x * 8_388_608.0, -23)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126 + bias;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // in [0.5, 1)
    if m < std::f32::consts::FRAC_1_SQRT_2 {
        e -= 1;
        m = m + m - 1.0;
    } else {
        m -= 1.0;
    }
    let z = m * m;
    let mut y = 7.037_683_6e-2_f32;
    for c in [
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333_1e-1,
    ] {
        y = y.mul_add(m, c);
    }
    y = y * m * z;
    let ef = e as f32;
    y = ef.mul_add(LN2_LO, y);
    y = (-0.5f32).mul_add(z, y);
    let r = m + y;
    ef.mul_add(LN2_HI, r)
}

/// Applies a vector expression to a slice in place: whole vectors, then the tail through a
/// zero-padded vector (so tail lanes see exactly the arithmetic full lanes do). A macro, not a
/// closure, so the body always inlines into the path's `#[target_feature]` instance.
macro_rules! map_in_place {
    ($S:ty, $x:expr, |$v:ident| $body:expr) => {{
        let x: &mut [f32] = $x;
        let w = <$S as Simd>::LANES;
        let mut chunks = x.chunks_exact_mut(w);
        for c in &mut chunks {
            let $v = <$S as Simd>::load(c.as_ptr());
            <$S as Simd>::store(c.as_mut_ptr(), $body);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut buf = [0f32; 16];
            buf[..rest.len()].copy_from_slice(rest);
            let $v = <$S as Simd>::load(buf.as_ptr());
            <$S as Simd>::store(buf.as_mut_ptr(), $body);
            rest.copy_from_slice(&buf[..rest.len()]);
        }
    }};
}
pub(crate) use map_in_place;

#[inline(always)]
unsafe fn exp_slice<S: Simd>(x: &mut [f32]) {
    map_in_place!(S, x, |v| exp_v::<S>(v))
}

#[inline(always)]
unsafe fn tanh_slice<S: Simd>(x: &mut [f32]) {
    map_in_place!(S, x, |v| tanh_v::<S>(v))
}

#[inline(always)]
unsafe fn erf_slice<S: Simd>(x: &mut [f32]) {
    map_in_place!(S, x, |v| erf_v::<S>(v))
}

isa_entry!(
    /// `x ← e^x` elementwise on the path `isa`.
    pub fn exp_in_place(x: &mut [f32]) => exp_slice
);
isa_entry!(
    /// `x ← tanh(x)` elementwise on the path `isa`.
    pub fn tanh_in_place(x: &mut [f32]) => tanh_slice
);
isa_entry!(
    /// `x ← erf(x)` elementwise on the path `isa`.
    pub fn erf_in_place(x: &mut [f32]) => erf_slice
);
