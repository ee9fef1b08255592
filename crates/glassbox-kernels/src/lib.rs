//! glassbox's CPU kernels: one job, fast and deterministic numerics.
//!
//! Everything glassbox computes in f32 on the CPU goes through here: GEMM ([`gemm`]), the row
//! kernels of a transformer ([`rows`]: softmax, norms, activations, cross-entropy, each with
//! its backward) and the transcendental functions they use ([`math`]). Nothing here knows
//! about models or tensors; callers pass slices with shapes and strides.
//!
//! # The determinism contract
//!
//! For the same inputs, every kernel returns the same bits whatever the thread count and
//! whichever instruction-set path ([`Isa`]) runs it:
//!
//! - **GEMM**: each output element is one fused multiply-add chain over k in increasing order,
//!   starting from 0 (or from the existing output when accumulating): `c = fma(a₀,b₀,0)`,
//!   `c = fma(a₁,b₁,c)`, … Vector lanes run over output *columns*, never over k; threads split
//!   output tiles, never k; k-blocking reloads the partial sum, which is an f32 either way.
//! - **Few-row GEMM** (m ≤ 4 rows of f32 against a weight of any element type, the decode
//!   case) streams the weight once instead of packing it, half-precision weights widened as
//!   they stream. When B is stored k-contiguous (a `[n, k]` weight used transposed, the usual
//!   linear layer), each output is a dot product in the row-reduction order below (element p of
//!   k to lane p mod 16, the 16 lanes combined in the fixed tree). When B is row-major `[k, n]`
//!   (GPT-2's Conv1D), k is cut into chunks of 64 rows, each chunk one FMA chain from 0, the
//!   chunks' sums added in increasing order (so each thread streams whole chunks of B). Either
//!   way the existing output is added at the end when accumulating. The choice depends only
//!   on m, the element types and B's strides, so it is the same on every path and every
//!   thread count. [`gemm_few_rows_chained`] asks for the chunked chains whatever B's layout,
//!   so that a weight stored `[k, n]` and held as its transposed copy keeps its bits.
//! - **Row reductions** (sums, means, sums of squares) use [`reduce::LANES`] = 16 partial sums:
//!   element i goes to lane i mod 16, each lane accumulates in order, and the 16 lanes combine
//!   in a fixed tree. AVX-512 holds the 16 lanes in one register, AVX2 in two, NEON in four,
//!   the portable path in an array: the same arithmetic, so the same bits.
//! - **Transcendentals** (`exp`, `tanh`, `erf`, `log`) are our own polynomials built from
//!   IEEE-exact operations and FMA only, never the platform's libm.
//!
//! Each SIMD path is tested bit for bit against the portable reference, which is plain Rust
//! with `f32::mul_add` (a correctly rounded FMA on every platform, in software where the CPU
//! has none). [`Isa`] selects a path; `GLASSBOX_ISA=portable|avx2|avx512|neon` forces one for
//! the whole process and [`with_isa`] for one thread, so tests prove on one machine that all
//! paths agree.

pub mod gemm;
mod gemv;
mod isa;
pub mod math;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod rows;
mod simd;

pub use gemm::{
    gemm, gemm_batched, gemm_batched_new, gemm_few_rows_chained, gemm_reference, transpose_into,
    transposed, Element, MatRef,
};
pub use isa::{isa_from_env, with_isa, Isa, IsaError};

/// Names the arithmetic these kernels perform (reduction orders, polynomials). Two builds with
/// the same value compute the same bits; a release records it so that a rebuild knows whether
/// bit identity is possible. Change it whenever any kernel's arithmetic changes.
pub const NUMERICS: &str = "glassbox-kernels/3";

/// Products with at most this many rows of f32 take the few-row kernels, whose reduction order
/// differs from GEMM's (see the contract above). A computation
/// that must give the same bits as the same rows inside a larger product keeps more rows.
pub const FEW_ROWS: usize = gemv::MAX_ROWS;

/// The number of threads kernels split work over: rayon's current pool (the global pool, or
/// the one a caller installed). Results never depend on it.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
