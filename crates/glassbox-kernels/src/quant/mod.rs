//! Weights in ggml's block formats (Q4_0 … Q6_K), multiplied where they lie: a quantized
//! file is never widened to f32 as a whole.
//!
//! [`quantized_matmul`] computes `Y = X·Wᵀ` for a weight stored as rows of blocks (a GGUF
//! matrix: each output's `k` inputs contiguous) under one of two numerics:
//!
//! - [`QuantNumerics::LlamaCpp`]: what ggml-cpu computes. Each activation row is quantized to
//!   the weight format's companion (Q8_0, Q8_1 or Q8_K, see [`activations`]) and each output is
//!   an integer dot product per block scaled in f32 ([`dot`]). A hook then sees the numbers a
//!   llama.cpp user gets.
//! - [`QuantNumerics::F32`]: what the dequantized model computes. A band of weight rows is
//!   widened into a scratch buffer and multiplied by [`gemm`](crate::gemm), so every output
//!   has exactly the bits of the same product with the whole weight dequantized first.
//!
//! Both are deterministic: integer sums are exact, each float sum is one chain in a fixed
//! order, threads split output rows only, and every instruction-set path gives the same bits.

mod activations;
mod blocks;
mod dot;
pub mod encode;
#[cfg(target_arch = "x86_64")]
mod x86;

use rayon::prelude::*;

pub use blocks::{dequantize_row, BlockFormat, QK_K};

use crate::gemv::Out;
use crate::simd::{isa_entry, Simd};
use crate::{gemm, Isa, MatRef};
use activations::{quantize_q8, quantize_q8k, Q8Block, Q8KBlock};

/// Whose arithmetic a product with a quantized weight follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantNumerics {
    /// ggml-cpu's: activations quantized, integer dot products.
    LlamaCpp,
    /// The dequantized weight's, in f32.
    F32,
}

/// A `rows × cols` matrix stored as rows of `format` blocks, row `r` at bytes
/// `r·row_bytes()..`.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    pub format: BlockFormat,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> QuantMatrix<'a> {
    /// Checks that `cols` is a whole number of blocks and `data` exactly `rows` rows of them.
    pub fn new(
        format: BlockFormat,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, String> {
        if !cols.is_multiple_of(format.block_elements()) {
            return Err(format!(
                "rows of {cols} values are not whole {} blocks of {}",
                format.name(),
                format.block_elements()
            ));
        }
        let expected = (cols / format.block_elements())
            .checked_mul(format.block_bytes())
            .and_then(|r| r.checked_mul(rows));
        if expected != Some(data.len()) {
            return Err(format!(
                "{} bytes for {rows} × {cols} {} values",
                data.len(),
                format.name()
            ));
        }
        Ok(QuantMatrix {
            format,
            data,
            rows,
            cols,
        })
    }

    pub fn row_bytes(&self) -> usize {
        self.cols / self.format.block_elements() * self.format.block_bytes()
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Stored rows `rows` (in that order) widened to f32, `rows.len() × cols`.
    pub fn dequantize_rows(&self, rows: impl Iterator<Item = usize>, out: &mut [f32]) {
        for (r, out) in rows.zip(out.chunks_exact_mut(self.cols)) {
            dequantize_row(self.format, self.row(r), out);
        }
    }
}

/// Activation rows quantized for one weight format.
enum Acts {
    Q8(Vec<Q8Block>),
    Q8K(Vec<Q8KBlock>),
}

/// Output rows (weight rows) are split among threads in multiples of this many.
const ROW_GROUP: usize = 16;
/// Tasks per thread of the pool under llama.cpp's numerics.
const TASKS_PER_THREAD: usize = 4;
/// Weight rows widened at a time under [`QuantNumerics::F32`].
const F32_BAND: usize = 256;

/// `out[i·n + j] = Σ_p x[i·k + p] · W[row(j), p]` for `i < m`, `j < n`, where `row(j)` is
/// `row_map[j]` (a permutation or selection of W's rows) or `j`, and `n` is the number of
/// rows so chosen. `x` is `m × k` row-major with `k = w.cols`.
pub fn quantized_matmul(
    x: &[f32],
    m: usize,
    w: &QuantMatrix,
    row_map: Option<&[u32]>,
    numerics: QuantNumerics,
    out: &mut [f32],
) {
    let k = w.cols;
    let n = row_map.map_or(w.rows, <[u32]>::len);
    assert_eq!(x.len(), m * k, "activations are not {m} × {k}");
    assert_eq!(out.len(), m * n, "output size");
    if let Some(map) = row_map {
        assert!(
            map.iter().all(|&r| (r as usize) < w.rows),
            "row map outside the matrix"
        );
    }
    if m == 0 || n == 0 {
        return;
    }
    let row_of = |j: usize| row_map.map_or(j, |map| map[j] as usize);
    match numerics {
        QuantNumerics::F32 => {
            let band = F32_BAND.min(n);
            let mut widened = vec![0f32; band * k];
            let mut product = vec![0f32; m * band];
            for j0 in (0..n).step_by(band) {
                let j1 = (j0 + band).min(n);
                let nb = j1 - j0;
                widened[..nb * k]
                    .par_chunks_mut(k)
                    .enumerate()
                    .for_each(|(j, out)| dequantize_row(w.format, w.row(row_of(j0 + j)), out));
                // B = the band transposed: element (p, j) at j·k + p, as a [n, k] weight is
                // used by every linear layer.
                let b = MatRef {
                    data: &widened[..nb * k],
                    rows: k,
                    cols: nb,
                    row_stride: 1,
                    col_stride: k,
                };
                let c = &mut product[..m * nb];
                gemm(MatRef::row_major(x, m, k), b, c, false);
                for i in 0..m {
                    out[i * n + j0..i * n + j1].copy_from_slice(&c[i * nb..(i + 1) * nb]);
                }
            }
        }
        QuantNumerics::LlamaCpp => {
            let acts = quantize_activations(w.format, x, m, k);
            let isa = Isa::active();
            // A few tasks per thread (balance), of whole groups of rows (less scheduling).
            let per_task = n
                .div_ceil(crate::threads() * TASKS_PER_THREAD)
                .next_multiple_of(ROW_GROUP)
                .max(ROW_GROUP);
            let tasks = n.div_ceil(per_task);
            let o = Out(out.as_mut_ptr());
            let run = |t: usize| {
                let j0 = t * per_task;
                let j1 = (j0 + per_task).min(n);
                let rows = Rows {
                    w,
                    row_map,
                    acts: &acts,
                    m,
                    n,
                    out: o,
                };
                // Safety: task t alone writes columns j0..j1 of `out` (m × n).
                unsafe { rows_on(isa, &rows, j0, j1) };
            };
            if tasks > 1 && m * n * k >= 1 << 16 {
                (0..tasks).into_par_iter().for_each(run);
            } else {
                (0..tasks).for_each(run);
            }
        }
    }
}

/// One task's view of a product under llama.cpp's numerics.
struct Rows<'a> {
    w: &'a QuantMatrix<'a>,
    row_map: Option<&'a [u32]>,
    acts: &'a Acts,
    m: usize,
    n: usize,
    out: Out,
}

/// Weight rows gathered at a time by [`rows_on`]: their slices fit on the stack, and the
/// band stays in cache while every activation row passes over it.
const ROW_BAND: usize = 64;

/// Outputs `j0..j1` of every activation row, on `isa`. The caller guarantees no other task
/// writes those columns.
unsafe fn rows_on(isa: Isa, r: &Rows, j0: usize, j1: usize) {
    let mut band: [&[u8]; ROW_BAND] = [&[]; ROW_BAND];
    let mut values = [0f32; ROW_BAND];
    for b0 in (j0..j1).step_by(ROW_BAND) {
        let b1 = (b0 + ROW_BAND).min(j1);
        for (slot, j) in band.iter_mut().zip(b0..b1) {
            *slot = r.w.row(r.row_map.map_or(j, |map| map[j] as usize));
        }
        band_on(isa, r, &band[..b1 - b0], &mut values[..b1 - b0], b0);
    }
}

/// Outputs `j0..j0 + rows.len()` (weight rows `rows`) of every activation row.
unsafe fn band_on(isa: Isa, r: &Rows, rows: &[&[u8]], values: &mut [f32], j0: usize) {
    let per_row = r.w.cols / r.w.format.block_elements();
    for i in 0..r.m {
        match r.acts {
            Acts::Q8(a) => {
                let a = &a[i * per_row..(i + 1) * per_row];
                match (isa, r.w.format) {
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx512, BlockFormat::Q8_0) if x86::has_vnni() => unsafe {
                        x86::rows_q8_0_vnni(rows, a, values)
                    },
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx512, BlockFormat::Q4_0) if x86::has_vnni() => unsafe {
                        x86::rows_q4_0_vnni(rows, a, values)
                    },
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx2 | Isa::Avx512, BlockFormat::Q8_0) => unsafe {
                        x86::rows_q8_0(rows, a, values)
                    },
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx2 | Isa::Avx512, BlockFormat::Q4_0) => unsafe {
                        x86::rows_q4_0(rows, a, values)
                    },
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx2 | Isa::Avx512, BlockFormat::Q5_0) => unsafe {
                        x86::rows_q5_0(rows, a, values)
                    },
                    _ => {
                        for (v, row) in values.iter_mut().zip(rows) {
                            *v = dot_small_on(isa, r.w.format, row, a);
                        }
                    }
                }
            }
            Acts::Q8K(a) => {
                let a = &a[i * per_row..(i + 1) * per_row];
                match (isa, r.w.format) {
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx2 | Isa::Avx512, BlockFormat::Q4K | BlockFormat::Q6K) => unsafe {
                        x86::rows_k(r.w.format, rows, a, values)
                    },
                    _ => {
                        for (v, row) in values.iter_mut().zip(rows) {
                            *v = dot_super_on(isa, r.w.format, row, a);
                        }
                    }
                }
            }
        }
        for (jj, &v) in values.iter().enumerate() {
            unsafe { *r.out.ptr().add(i * r.n + j0 + jj) = v };
        }
    }
}

fn quantize_activations(format: BlockFormat, x: &[f32], m: usize, k: usize) -> Acts {
    let per_row = k / format.block_elements();
    let isa = Isa::active();
    if format.is_k_quant() {
        let mut acts = Vec::with_capacity(m * per_row);
        quantize_q8k_on(isa, x, &mut acts);
        Acts::Q8K(acts)
    } else {
        let mut acts = Vec::with_capacity(m * per_row);
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe {
                x86::quantize_q8(x, format.has_offset(), &mut acts)
            },
            _ => quantize_q8_on(isa, x, format.has_offset(), &mut acts),
        }
        Acts::Q8(acts)
    }
}

// The quantizers are plain Rust; compiled for each path, their rounding is an instruction
// rather than a call (the same IEEE operation, so the same values).
#[inline(always)]
unsafe fn quantize_q8_kernel<S: Simd>(x: &[f32], with_sum: bool, out: &mut Vec<Q8Block>) {
    quantize_q8(x, with_sum, out)
}

#[inline(always)]
unsafe fn quantize_q8k_kernel<S: Simd>(x: &[f32], out: &mut Vec<Q8KBlock>) {
    quantize_q8k(x, out)
}

isa_entry! {
    fn quantize_q8_on(x: &[f32], with_sum: bool, out: &mut Vec<Q8Block>) => quantize_q8_kernel
}
isa_entry! {
    fn quantize_q8k_on(x: &[f32], out: &mut Vec<Q8KBlock>) => quantize_q8k_kernel
}

#[inline(always)]
unsafe fn dot_small_kernel<S: Simd>(format: BlockFormat, row: &[u8], acts: &[Q8Block]) -> f32 {
    // The integer loops vectorise under the path's target features; the arithmetic is the
    // same on every path.
    match format {
        BlockFormat::Q8_0 => dot::dot_lanes(BlockFormat::Q8_0, row, acts),
        BlockFormat::Q4_0 => dot::dot_lanes(BlockFormat::Q4_0, row, acts),
        BlockFormat::Q4_1 => dot::dot_small(BlockFormat::Q4_1, row, acts),
        BlockFormat::Q5_0 => dot::dot_small(BlockFormat::Q5_0, row, acts),
        _ => dot::dot_small(BlockFormat::Q5_1, row, acts),
    }
}

#[inline(always)]
unsafe fn dot_super_kernel<S: Simd>(format: BlockFormat, row: &[u8], acts: &[Q8KBlock]) -> f32 {
    match format {
        BlockFormat::Q2K => dot::dot_super(BlockFormat::Q2K, row, acts),
        BlockFormat::Q3K => dot::dot_super(BlockFormat::Q3K, row, acts),
        BlockFormat::Q4K => dot::dot_super(BlockFormat::Q4K, row, acts),
        BlockFormat::Q5K => dot::dot_super(BlockFormat::Q5K, row, acts),
        _ => dot::dot_super(BlockFormat::Q6K, row, acts),
    }
}

isa_entry! {
    fn dot_small_on(format: BlockFormat, row: &[u8], acts: &[Q8Block]) -> f32 => dot_small_kernel
}
isa_entry! {
    fn dot_super_on(format: BlockFormat, row: &[u8], acts: &[Q8KBlock]) -> f32 => dot_super_kernel
}

/// Where a block keeps its f16 scales (`d`, and `m` / `dmin` where it has one).
fn scale_offsets(format: BlockFormat) -> &'static [usize] {
    match format {
        BlockFormat::Q4_0 | BlockFormat::Q5_0 | BlockFormat::Q8_0 => &[0],
        BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K | BlockFormat::Q5K => &[0, 2],
        BlockFormat::Q2K => &[80, 82],
        BlockFormat::Q3K => &[108],
        BlockFormat::Q6K => &[208],
    }
}

/// `rows × cols` values of `format` with seeded random quants and finite scales of about
/// `1/64`: every bit pattern a quantizer can write, for tests and benchmarks.
pub fn sample_matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let blocks = rows * cols / format.block_elements();
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut data = vec![0u8; blocks * format.block_bytes()];
    for byte in data.iter_mut() {
        *byte = next() as u8;
    }
    for block in data.chunks_exact_mut(format.block_bytes()) {
        for &at in scale_offsets(format) {
            let scale = (next() % 1000) as f32 / 64_000.0;
            block[at..at + 2].copy_from_slice(&half::f16::from_f32(scale).to_le_bytes());
        }
    }
    data
}

#[cfg(test)]
mod tests;
