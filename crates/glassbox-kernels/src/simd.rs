//! One vector vocabulary, implemented once per instruction-set path.
//!
//! Kernels are written once, generically over [`Simd`], and instantiated per path inside a
//! `#[target_feature]` function (see `dispatch!`), so each path's intrinsics inline. Every
//! operation is IEEE-exact lane by lane (add, mul, div, sqrt, min/max, fused multiply-add
//! with one rounding), which is why the paths agree bit for bit.

/// A vector of `LANES` f32 and the operations kernels use on it.
///
/// # Safety
/// Methods may only be called where the path's instruction set is enabled (inside the
/// `#[target_feature]` functions `dispatch!` generates, after [`crate::Isa::available`]).
pub(crate) unsafe trait Simd: Copy {
    const LANES: usize;
    type V: Copy;
    type M: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// IEEE half-precision values at `p`, widened (exactly).
    unsafe fn load_f16(p: *const u16) -> Self::V;
    /// bfloat16 values at `p`, widened (exactly: each is the top half of an f32).
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `a × b + c` with one rounding.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `max(a, b)`; when `a` is NaN the result is `b` (x86's rule, kept on every path).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `min(a, b)`; when `a` is NaN the result is `b`.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn lt(a: Self::V, b: Self::V) -> Self::M;
    unsafe fn is_nan(a: Self::V) -> Self::M;
    /// `m ? a : b` lane by lane.
    unsafe fn select(m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    /// `2^n` for lanes holding integers in [-126, 127].
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// Integer part of lanes holding integers, halved toward −∞ (`n >> 1`), as f32.
    unsafe fn half_floor(n: Self::V) -> Self::V;
    unsafe fn abs(a: Self::V) -> Self::V;
    /// `|a|` with the sign of `s`.
    unsafe fn copysign(a: Self::V, s: Self::V) -> Self::V;
}

/// Weight element types kernels read straight into f32 vectors, widening exactly.
pub(crate) trait Lanes: crate::Element {
    /// `S::LANES` values at `p`, widened.
    ///
    /// # Safety
    /// As [`Simd`]'s methods; `p` valid for `S::LANES` reads.
    unsafe fn load<S: Simd>(p: *const Self) -> S::V;
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const f32) -> S::V {
        S::load(p)
    }
}

impl Lanes for half::f16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const half::f16) -> S::V {
        S::load_f16(p as *const u16)
    }
}

impl Lanes for half::bf16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const half::bf16) -> S::V {
        S::load_bf16(p as *const u16)
    }
}

/// Scalar lanes: the portable reference.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

unsafe impl Simd for Portable {
    const LANES: usize = 1;
    type V = f32;
    type M = bool;
    #[inline(always)]
    unsafe fn splat(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> f32 {
        half::f16::from_bits(*p).to_f32()
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> f32 {
        f32::from_bits((*p as u32) << 16)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        *p = v
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    unsafe fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    unsafe fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn max(a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn min(a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn lt(a: f32, b: f32) -> bool {
        a < b
    }
    #[inline(always)]
    unsafe fn is_nan(a: f32) -> bool {
        a.is_nan()
    }
    #[inline(always)]
    unsafe fn select(m: bool, a: f32, b: f32) -> f32 {
        if m {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn pow2i(n: f32) -> f32 {
        f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    unsafe fn half_floor(n: f32) -> f32 {
        ((n as i32) >> 1) as f32
    }
    #[inline(always)]
    unsafe fn abs(a: f32) -> f32 {
        f32::from_bits(a.to_bits() & 0x7fff_ffff)
    }
    #[inline(always)]
    unsafe fn copysign(a: f32, s: f32) -> f32 {
        f32::from_bits((a.to_bits() & 0x7fff_ffff) | (s.to_bits() & 0x8000_0000))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// 8 lanes of AVX2 + FMA.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    unsafe impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        type M = __m256;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m256 {
            let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            _mm256_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            _mm256_min_ps(a, b)
        }
        #[inline(always)]
        unsafe fn lt(a: __m256, b: __m256) -> __m256 {
            _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn is_nan(a: __m256) -> __m256 {
            _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a)
        }
        #[inline(always)]
        unsafe fn select(m: __m256, a: __m256, b: __m256) -> __m256 {
            _mm256_blendv_ps(b, a, m)
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m256) -> __m256 {
            let i = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(i))
        }
        #[inline(always)]
        unsafe fn half_floor(n: __m256) -> __m256 {
            _mm256_cvtepi32_ps(_mm256_srai_epi32::<1>(_mm256_cvtps_epi32(n)))
        }
        #[inline(always)]
        unsafe fn abs(a: __m256) -> __m256 {
            _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)))
        }
        #[inline(always)]
        unsafe fn copysign(a: __m256, s: __m256) -> __m256 {
            let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
            _mm256_or_ps(Self::abs(a), _mm256_and_ps(s, sign))
        }
    }

    /// 16 lanes of AVX-512F.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    unsafe impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        type M = __mmask16;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> __m512 {
            let wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(wide))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m512, b: __m512) -> __m512 {
            _mm512_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            _mm512_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: __m512, b: __m512) -> __m512 {
            _mm512_min_ps(a, b)
        }
        #[inline(always)]
        unsafe fn lt(a: __m512, b: __m512) -> __mmask16 {
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn is_nan(a: __m512) -> __mmask16 {
            _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a)
        }
        #[inline(always)]
        unsafe fn select(m: __mmask16, a: __m512, b: __m512) -> __m512 {
            _mm512_mask_blend_ps(m, b, a)
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m512) -> __m512 {
            let i = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(i))
        }
        #[inline(always)]
        unsafe fn half_floor(n: __m512) -> __m512 {
            _mm512_cvtepi32_ps(_mm512_srai_epi32::<1>(_mm512_cvtps_epi32(n)))
        }
        #[inline(always)]
        unsafe fn abs(a: __m512) -> __m512 {
            _mm512_castsi512_ps(_mm512_and_si512(
                _mm512_castps_si512(a),
                _mm512_set1_epi32(0x7fff_ffff),
            ))
        }
        #[inline(always)]
        unsafe fn copysign(a: __m512, s: __m512) -> __m512 {
            let sign = _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(i32::MIN));
            _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(Self::abs(a)), sign))
        }
    }
}

/// Defines `pub fn $name(isa, args…)` that runs the generic `$kernel::<S>(args…)` on the
/// path `isa` names. Each path's instance is compiled inside a `#[target_feature]` function, and
/// kernels and their helpers are `#[inline(always)]`, so the path's intrinsics inline into it.
macro_rules! isa_entry {
    ($(#[$meta:meta])* $vis:vis fn $name:ident ( $($p:ident : $t:ty),* $(,)? ) $(-> $r:ty)? => $kernel:ident) => {
        $(#[$meta])*
        $vis fn $name(isa: $crate::Isa, $($p: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512dq,avx2,fma,f16c")]
            unsafe fn avx512($($p: $t),*) $(-> $r)? {
                unsafe { $kernel::<$crate::simd::Avx512>($($p),*) }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn avx2($($p: $t),*) $(-> $r)? {
                unsafe { $kernel::<$crate::simd::Avx2>($($p),*) }
            }
            match isa {
                // Safety: `Isa::active` and `with_isa` only hand out available paths.
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx512 if $crate::Isa::Avx512.available() => unsafe { avx512($($p),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx2 if $crate::Isa::Avx2.available() => unsafe { avx2($($p),*) },
                #[allow(unused_unsafe)]
                _ => unsafe { $kernel::<$crate::simd::Portable>($($p),*) },
            }
        }
    };
}
pub(crate) use isa_entry;

/// [`isa_entry!`] for a kernel generic over the weight element type too: `$entry` runs
/// `$generic::<S, $elem>` on the path `isa` names (`$kernel` is the per-type wrapper it needs).
macro_rules! per_element {
    ($entry:ident, $kernel:ident, $generic:ident, $elem:ty, ($($p:ident : $t:ty),* $(,)?)) => {
        $crate::simd::isa_entry!(
            #[allow(clippy::too_many_arguments)]
            fn $entry($($p: $t),*) => $kernel
        );
        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        unsafe fn $kernel<S: $crate::simd::Simd>($($p: $t),*) {
            $generic::<S, $elem>($($p),*)
        }
    };
}
pub(crate) use per_element;
