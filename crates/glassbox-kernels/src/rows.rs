//! Fused row kernels of a transformer, each with its backward: softmax, LayerNorm and RMSNorm
//! (the normalisation before the learned scale), GELU (tanh and erf forms), SiLU, rotary
//! position embedding, and next-token cross-entropy. Rows are contiguous runs of `n` elements; threads take whole
//! rows (or, elementwise, whole chunks), and every row's arithmetic is fixed by
//! [`crate::reduce`] and [`crate::math`], so results never depend on the thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::math::{erf_v, exp_v, ln, map_in_place, sigmoid_v, tanh_v};
use crate::reduce;
use crate::simd::{isa_entry, Simd};
use crate::Isa;

/// Below this many elements a call stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// Runs `f(isa, rows_chunk…)` over chunks of whole rows, in parallel when large.
fn for_row_chunks<'a>(
    n: usize,
    total: usize,
    f: impl Fn(usize, usize) + Send + Sync + 'a, // (first row, row count)
) {
    let rows = if n == 0 { 0 } else { total / n };
    if rows == 0 {
        return;
    }
    let threads = crate::threads();
    if total < PARALLEL_MIN || threads == 1 || rows == 1 {
        f(0, rows);
        return;
    }
    let per = rows.div_ceil(threads * 4).max(1);
    (0..rows.div_ceil(per))
        .into_par_iter()
        .for_each(|c| f(c * per, per.min(rows - c * per)));
}

/// A mutable slice shared by row chunks that write disjoint rows.
#[derive(Clone, Copy)]
struct Shared(*mut f32, usize);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}
impl Shared {
    fn new(s: &mut [f32]) -> Self {
        Shared(s.as_mut_ptr(), s.len())
    }
    /// Over not yet initialised memory: see [`range_uninit`](Self::range_uninit).
    fn new_uninit(s: &mut [MaybeUninit<f32>]) -> Self {
        Shared(s.as_mut_ptr() as *mut f32, s.len())
    }
    /// Safety: as `range`; the elements may be uninitialised.
    #[allow(clippy::mut_from_ref)] // disjoint ranges of one buffer, by contract
    unsafe fn range_uninit(&self, start: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        assert!(start + len <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(start) as *mut MaybeUninit<f32>, len)
    }
    /// Safety: callers touch disjoint ranges.
    #[allow(clippy::mut_from_ref)] // disjoint ranges of one buffer, by contract
    unsafe fn range(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

// ---- softmax ----------------------------------------------------------------------------

#[inline(always)]
unsafe fn softmax_rows_k<S: Simd>(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        let m = reduce::max::<S>(row);
        let mv = S::splat(m);
        map_in_place!(S, &mut *row, |v| exp_v::<S>(S::sub(v, mv)));
        let s = S::splat(reduce::sum::<S>(row));
        map_in_place!(S, &mut *row, |v| S::div(v, s));
    }
}

#[inline(always)]
unsafe fn softmax_backward_rows_k<S: Simd>(y: &[f32], dy: &[f32], dx: &mut [f32], n: usize) {
    for ((y, dy), dx) in y
        .chunks_exact(n)
        .zip(dy.chunks_exact(n))
        .zip(dx.chunks_exact_mut(n))
    {
        let s = S::splat(reduce::dot::<S>(dy, y));
        dx.copy_from_slice(dy);
        // dx = y (dy − Σ dy·y), lane by lane over dx (holding dy) with y read alongside.
        let w = S::LANES;
        let mut i = 0;
        while i + w <= n {
            let v = S::sub(S::load(dx.as_ptr().add(i)), s);
            S::store(
                dx.as_mut_ptr().add(i),
                S::mul(S::load(y.as_ptr().add(i)), v),
            );
            i += w;
        }
        let sc = {
            let mut b = [0f32; 16];
            S::store(b.as_mut_ptr(), s);
            b[0]
        };
        for j in i..n {
            dx[j] = y[j] * (dx[j] - sc);
        }
    }
}

isa_entry!(fn softmax_rows(x: &mut [f32], n: usize) => softmax_rows_k);
isa_entry!(fn softmax_backward_rows(y: &[f32], dy: &[f32], dx: &mut [f32], n: usize) => softmax_backward_rows_k);

/// Softmax of each row of `n` elements, in place. A row whose maximum is −∞ (all masked)
/// comes out NaN, as in PyTorch; glassbox masks with the most negative finite value instead.
pub fn softmax(x: &mut [f32], n: usize) {
    let isa = Isa::active();
    let xs = Shared::new(x);
    for_row_chunks(n, xs.1, move |r, k| unsafe {
        softmax_rows(isa, xs.range(r * n, k * n), n)
    });
}

/// Additive mask rows and the map from a row of scores to its mask row.
pub type MaskRows<'a> = (&'a [f32], &'a (dyn Fn(usize) -> usize + Sync));

/// Softmax of the attention scores `x * scale + mask`, row by row (`n` per row), into a new
/// vector: each thread scales, masks and normalises its rows while they are in cache, in one
/// pass instead of three. `mask`, when given, holds additive mask rows and maps a row of `x` to
/// its mask row. The bits are those of computing `x * scale` (one rounding), adding the mask
/// (one rounding) and calling [`softmax`]; with `scale` 1 and no mask, of [`softmax`] on a copy.
pub fn softmax_scaled(x: &[f32], n: usize, scale: f32, mask: Option<MaskRows>) -> Vec<f32> {
    let mut y = uninit_vec(x.len());
    let isa = Isa::active();
    let ys = Shared::new_uninit(&mut y);
    for_row_chunks(n, x.len(), move |r, k| {
        // SAFETY: row chunks are disjoint.
        let out = unsafe { ys.range_uninit(r * n, k * n) };
        for (i, (src, dst)) in x[r * n..(r + k) * n]
            .chunks_exact(n)
            .zip(out.chunks_exact_mut(n))
            .enumerate()
        {
            match mask {
                Some((m, row_of)) => {
                    let m = &m[row_of(r + i) * n..][..n];
                    for ((d, &v), &mv) in dst.iter_mut().zip(src).zip(m) {
                        d.write(v * scale + mv);
                    }
                }
                None => {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        d.write(if scale == 1.0 { v } else { v * scale });
                    }
                }
            }
        }
        // SAFETY: every element of the chunk was written just above.
        softmax_rows(isa, unsafe { assume_init(out) }, n)
    });
    // SAFETY: every row chunk was written.
    unsafe { vec_assume_init(y) }
}

/// A vector of `len` elements, not yet initialised.
fn uninit_vec(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: MaybeUninit<f32> needs no initialisation.
    unsafe { v.set_len(len) };
    v
}

/// Safety: every element of `s` is initialised.
unsafe fn assume_init(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len())
}

/// Safety: every element of `v` is initialised.
unsafe fn vec_assume_init(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    Vec::from_raw_parts(v.as_mut_ptr() as *mut f32, v.len(), v.capacity())
}

/// `dx = y ⊙ (dy − Σ dy ⊙ y)` row by row, given the softmax output `y`.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], n: usize) {
    assert!(y.len() == dy.len() && y.len() == dx.len());
    let isa = Isa::active();
    let dxs = Shared::new(dx);
    for_row_chunks(n, y.len(), move |r, k| unsafe {
        let (a, b) = (r * n, k * n);
        softmax_backward_rows(isa, &y[a..a + b], &dy[a..a + b], dxs.range(a, b), n)
    });
}

// ---- norms --------------------------------------------------------------------------------

/// What a norm subtracts and divides by: LayerNorm centres, RMSNorm does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    Layer,
    Rms,
}

/// `(mean, 1/sqrt(var + eps))` of a row; mean is 0 for RMSNorm, whose "variance" is the mean
/// square.
#[inline(always)]
unsafe fn norm_stats<S: Simd>(kind: NormKind, x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = match kind {
        NormKind::Layer => reduce::sum::<S>(x) / n,
        NormKind::Rms => 0.0,
    };
    let var = reduce::sum_sq_dev::<S>(x, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

#[inline(always)]
unsafe fn norm_rows_k<S: Simd>(kind: NormKind, x: &[f32], y: &mut [f32], n: usize, eps: f32) {
    for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let (mean, rstd) = norm_stats::<S>(kind, x, eps);
        y.copy_from_slice(x);
        let (m, r) = (S::splat(mean), S::splat(rstd));
        map_in_place!(S, &mut *y, |v| S::mul(S::sub(v, m), r));
    }
}

/// `dx = rstd (dy − mean(dy) − ŷ mean(dy ⊙ ŷ))` (RMSNorm drops the `mean(dy)` term), ŷ the
/// normalised row.
#[inline(always)]
unsafe fn norm_backward_rows_k<S: Simd>(
    kind: NormKind,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    n: usize,
    eps: f32,
) {
    let nf = n as f32;
    let mut yhat = vec![0f32; n];
    for ((x, dy), dx) in x
        .chunks_exact(n)
        .zip(dy.chunks_exact(n))
        .zip(dx.chunks_exact_mut(n))
    {
        let (mean, rstd) = norm_stats::<S>(kind, x, eps);
        yhat.copy_from_slice(x);
        let (m, r) = (S::splat(mean), S::splat(rstd));
        map_in_place!(S, &mut yhat[..], |v| S::mul(S::sub(v, m), r));
        let mean_dy = match kind {
            NormKind::Layer => reduce::sum::<S>(dy) / nf,
            NormKind::Rms => 0.0,
        };
        let mean_dy_y = reduce::dot::<S>(dy, &yhat) / nf;
        for j in 0..n {
            // Scalar on every path: the same three roundings per element.
            dx[j] = rstd * ((dy[j] - mean_dy) - yhat[j] * mean_dy_y);
        }
    }
}

isa_entry!(fn norm_rows(kind: NormKind, x: &[f32], y: &mut [f32], n: usize, eps: f32) => norm_rows_k);
isa_entry!(fn norm_backward_rows(kind: NormKind, x: &[f32], dy: &[f32], dx: &mut [f32], n: usize, eps: f32) => norm_backward_rows_k);

/// Normalises each row of `n`: LayerNorm `(x − mean) / sqrt(var + eps)` (biased variance) or
/// RMSNorm `x / sqrt(mean(x²) + eps)`, before any learned scale or shift.
pub fn normalize(kind: NormKind, x: &[f32], y: &mut [f32], n: usize, eps: f32) {
    assert_eq!(x.len(), y.len());
    let isa = Isa::active();
    let ys = Shared::new(y);
    for_row_chunks(n, x.len(), move |r, k| unsafe {
        let (a, b) = (r * n, k * n);
        norm_rows(isa, kind, &x[a..a + b], ys.range(a, b), n, eps)
    });
}

/// The gradient of [`normalize`] with respect to `x`, given the output gradient `dy`.
pub fn normalize_backward(
    kind: NormKind,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    n: usize,
    eps: f32,
) {
    assert!(x.len() == dy.len() && x.len() == dx.len());
    let isa = Isa::active();
    let dxs = Shared::new(dx);
    for_row_chunks(n, x.len(), move |r, k| unsafe {
        let (a, b) = (r * n, k * n);
        norm_backward_rows(
            isa,
            kind,
            &x[a..a + b],
            &dy[a..a + b],
            dxs.range(a, b),
            n,
            eps,
        )
    });
}

// ---- activations --------------------------------------------------------------------------

/// Elementwise nonlinearities with their derivatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
    /// `0.5 x (1 + erf(x / √2))`.
    GeluErf,
    /// `x σ(x)`.
    Silu,
    /// `tanh x` (soft-capping).
    Tanh,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
unsafe fn act_v<S: Simd>(act: Activation, x: S::V) -> S::V {
    let half_x = S::mul(S::splat(0.5), x);
    match act {
        Activation::GeluTanh => {
            let x3 = S::mul(S::mul(x, x), x);
            let inner = S::mul(S::splat(SQRT_2_OVER_PI), S::fma(S::splat(GELU_C), x3, x));
            S::mul(half_x, S::add(S::splat(1.0), tanh_v::<S>(inner)))
        }
        Activation::GeluErf => {
            let e = erf_v::<S>(S::mul(x, S::splat(FRAC_1_SQRT_2)));
            S::mul(half_x, S::add(S::splat(1.0), e))
        }
        Activation::Silu => S::mul(x, sigmoid_v::<S>(x)),
        Activation::Tanh => tanh_v::<S>(x),
    }
}

#[inline(always)]
unsafe fn act_grad_v<S: Simd>(act: Activation, x: S::V) -> S::V {
    let one = S::splat(1.0);
    match act {
        Activation::GeluTanh => {
            let x2 = S::mul(x, x);
            let x3 = S::mul(x2, x);
            let inner = S::mul(S::splat(SQRT_2_OVER_PI), S::fma(S::splat(GELU_C), x3, x));
            let t = tanh_v::<S>(inner);
            let dinner = S::mul(
                S::splat(SQRT_2_OVER_PI),
                S::fma(S::splat(3.0 * GELU_C), x2, one),
            );
            let dt = S::mul(S::sub(one, S::mul(t, t)), dinner);
            S::fma(
                S::mul(S::splat(0.5), x),
                dt,
                S::mul(S::splat(0.5), S::add(one, t)),
            )
        }
        Activation::GeluErf => {
            let e = erf_v::<S>(S::mul(x, S::splat(FRAC_1_SQRT_2)));
            let pdf = S::mul(
                S::splat(FRAC_1_SQRT_2PI),
                exp_v::<S>(S::mul(S::splat(-0.5), S::mul(x, x))),
            );
            S::fma(x, pdf, S::mul(S::splat(0.5), S::add(one, e)))
        }
        Activation::Silu => {
            let s = sigmoid_v::<S>(x);
            S::mul(s, S::fma(x, S::sub(one, s), one))
        }
        Activation::Tanh => {
            let t = tanh_v::<S>(x);
            S::sub(one, S::mul(t, t))
        }
    }
}

#[inline(always)]
unsafe fn act_k<S: Simd>(act: Activation, x: &mut [f32]) {
    map_in_place!(S, x, |v| act_v::<S>(act, v))
}

/// `dx ← dy ⊙ act'(x)`, with `dx` holding `x` on entry.
#[inline(always)]
unsafe fn act_backward_k<S: Simd>(act: Activation, x_then_dx: &mut [f32], dy: &[f32]) {
    let w = S::LANES;
    let n = dy.len();
    let mut i = 0;
    while i + w <= n {
        let g = act_grad_v::<S>(act, S::load(x_then_dx.as_ptr().add(i)));
        S::store(
            x_then_dx.as_mut_ptr().add(i),
            S::mul(S::load(dy.as_ptr().add(i)), g),
        );
        i += w;
    }
    if i < n {
        let mut xb = [0f32; 16];
        let mut db = [0f32; 16];
        xb[..n - i].copy_from_slice(&x_then_dx[i..]);
        db[..n - i].copy_from_slice(&dy[i..]);
        let g = act_grad_v::<S>(act, S::load(xb.as_ptr()));
        S::store(xb.as_mut_ptr(), S::mul(S::load(db.as_ptr()), g));
        x_then_dx[i..].copy_from_slice(&xb[..n - i]);
    }
}

isa_entry!(fn act_chunk(act: Activation, x: &mut [f32]) => act_k);
isa_entry!(fn act_backward_chunk(act: Activation, x_then_dx: &mut [f32], dy: &[f32]) => act_backward_k);

/// Elementwise chunk size for threads (a multiple of every vector width).
const CHUNK: usize = 1 << 14;

/// `x ← act(x)` elementwise.
pub fn activation(act: Activation, x: &mut [f32]) {
    let isa = Isa::active();
    if x.len() < PARALLEL_MIN || crate::threads() == 1 {
        act_chunk(isa, act, x);
    } else {
        x.par_chunks_mut(CHUNK).for_each(|c| act_chunk(isa, act, c));
    }
}

/// `act(x)` elementwise into a new vector: each thread copies its chunk and applies `act`
/// while it is in cache (the bits of [`activation`] on a copy).
pub fn activation_of(act: Activation, x: &[f32]) -> Vec<f32> {
    let isa = Isa::active();
    if x.len() < PARALLEL_MIN || crate::threads() == 1 {
        let mut y = x.to_vec();
        act_chunk(isa, act, &mut y);
        return y;
    }
    let mut y = uninit_vec(x.len());
    let ys = Shared::new_uninit(&mut y);
    (0..x.len().div_ceil(CHUNK)).into_par_iter().for_each(|c| {
        let (start, len) = (c * CHUNK, CHUNK.min(x.len() - c * CHUNK));
        // SAFETY: chunks are disjoint.
        let out = unsafe { ys.range_uninit(start, len) };
        for (d, &v) in out.iter_mut().zip(&x[start..start + len]) {
            d.write(v);
        }
        // SAFETY: the chunk was written just above.
        act_chunk(isa, act, unsafe { assume_init(out) })
    });
    // SAFETY: every chunk was written.
    unsafe { vec_assume_init(y) }
}

/// `dx = dy ⊙ act'(x)` elementwise; `x_then_dx` holds x on entry and dx on return.
pub fn activation_backward(act: Activation, x_then_dx: &mut [f32], dy: &[f32]) {
    assert_eq!(x_then_dx.len(), dy.len());
    let isa = Isa::active();
    if dy.len() < PARALLEL_MIN || crate::threads() == 1 {
        act_backward_chunk(isa, act, x_then_dx, dy);
    } else {
        x_then_dx
            .par_chunks_mut(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .for_each(|(x, d)| act_backward_chunk(isa, act, x, d));
    }
}

// ---- cross-entropy ------------------------------------------------------------------------

/// `ln Σ e^{x − max} + max` of a row.
#[inline(always)]
unsafe fn log_sum_exp<S: Simd>(row: &[f32], scratch: &mut [f32]) -> f32 {
    let m = reduce::max::<S>(row);
    scratch.copy_from_slice(row);
    let mv = S::splat(m);
    map_in_place!(S, &mut *scratch, |v| exp_v::<S>(S::sub(v, mv)));
    ln(reduce::sum::<S>(scratch)) + m
}

#[inline(always)]
unsafe fn cross_entropy_k<S: Simd>(logits: &[f32], n: usize, targets: &[u32], loss: &mut [f32]) {
    let mut scratch = vec![0f32; n];
    for ((row, &t), l) in logits.chunks_exact(n).zip(targets).zip(loss.iter_mut()) {
        *l = log_sum_exp::<S>(row, &mut scratch) - row[t as usize];
    }
}

/// `dx = g (softmax(x) − onehot(t))` per row, `g` the row loss's gradient.
#[inline(always)]
unsafe fn cross_entropy_backward_k<S: Simd>(
    logits: &[f32],
    n: usize,
    targets: &[u32],
    grad: &[f32],
    dx: &mut [f32],
) {
    for (((row, &t), &g), dx) in logits
        .chunks_exact(n)
        .zip(targets)
        .zip(grad)
        .zip(dx.chunks_exact_mut(n))
    {
        dx.copy_from_slice(row);
        softmax_rows_k::<S>(dx, n);
        dx[t as usize] -= 1.0;
        let gv = S::splat(g);
        map_in_place!(S, &mut *dx, |v| S::mul(v, gv));
    }
}

isa_entry!(fn cross_entropy_rows(logits: &[f32], n: usize, targets: &[u32], loss: &mut [f32]) => cross_entropy_k);
isa_entry!(fn cross_entropy_backward_rows(logits: &[f32], n: usize, targets: &[u32], grad: &[f32], dx: &mut [f32]) => cross_entropy_backward_k);

/// Per-row `−ln softmax(x)[t]` of logits rows of `n`. Targets must be `< n` (checked).
pub fn cross_entropy(logits: &[f32], n: usize, targets: &[u32]) -> Vec<f32> {
    let rows = targets.len();
    assert_eq!(logits.len(), rows * n);
    assert!(
        targets.iter().all(|&t| (t as usize) < n),
        "target out of range"
    );
    let mut loss = vec![0f32; rows];
    let isa = Isa::active();
    let ls = Shared::new(&mut loss);
    for_row_chunks(n, logits.len(), move |r, k| unsafe {
        cross_entropy_rows(
            isa,
            &logits[r * n..(r + k) * n],
            n,
            &targets[r..r + k],
            ls.range(r, k),
        )
    });
    loss
}

/// The gradient of [`cross_entropy`]'s per-row losses given their gradients `grad`.
pub fn cross_entropy_backward(
    logits: &[f32],
    n: usize,
    targets: &[u32],
    grad: &[f32],
    dx: &mut [f32],
) {
    let rows = targets.len();
    assert!(logits.len() == rows * n && dx.len() == logits.len() && grad.len() == rows);
    assert!(
        targets.iter().all(|&t| (t as usize) < n),
        "target out of range"
    );
    let isa = Isa::active();
    let dxs = Shared::new(dx);
    for_row_chunks(n, logits.len(), move |r, k| unsafe {
        cross_entropy_backward_rows(
            isa,
            &logits[r * n..(r + k) * n],
            n,
            &targets[r..r + k],
            &grad[r..r + k],
            dxs.range(r * n, k * n),
        )
    });
}

// ---- rotary -------------------------------------------------------------------------------

/// Which dimensions a rotary embedding pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotaryPairs {
    /// i with i + half (`rotate_half`: Llama, GPT-NeoX, Qwen).
    Halves,
    /// 2i with 2i + 1 (GPT-J, GLM, DeepSeek's `rope_interleave`).
    Adjacent,
}

/// The tables of one rotary call: `cos`/`sin` [positions, half], and how rows map to them.
#[derive(Clone, Copy, Debug)]
pub struct RotaryTables<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    /// Pairs per row: dimensions `0..2·half` rotate, the rest pass through.
    pub half: usize,
    /// Rows are [batch, positions, heads] in that order: row r sits at position
    /// `(r / heads) % positions`.
    pub heads: usize,
    pub positions: usize,
}

/// Rotary position embedding of rows of `d` values: for each pair (a, b) at angle θ,
/// `(a·cos θ − b·sin θ, b·cos θ + a·sin θ)`, each product rounded before the sum — no fused
/// multiply-add, so the bits are those of the element-wise composition the reference
/// implementations run, on every path. With `inverse`, sin θ is negated: that map is the
/// backward pass (the rotation's transpose) applied to the output gradient.
pub fn rotary(
    pairs: RotaryPairs,
    t: RotaryTables,
    inverse: bool,
    x: &[f32],
    y: &mut [f32],
    d: usize,
) {
    assert_eq!(x.len(), y.len());
    assert!(2 * t.half <= d && t.heads > 0 && t.positions > 0);
    assert!(t.cos.len() >= t.positions * t.half && t.sin.len() >= t.positions * t.half);
    let ys = Shared::new(y);
    for_row_chunks(d, x.len(), move |r0, rows| {
        // Safety: chunks cover disjoint rows.
        let y = unsafe { ys.range(r0 * d, rows * d) };
        let x = &x[r0 * d..(r0 + rows) * d];
        for (i, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
            let pos = ((r0 + i) / t.heads) % t.positions;
            let cos = &t.cos[pos * t.half..(pos + 1) * t.half];
            let sin = &t.sin[pos * t.half..(pos + 1) * t.half];
            rotate_row(pairs, inverse, xr, yr, cos, sin);
        }
    });
}

#[inline]
fn rotate_row(
    pairs: RotaryPairs,
    inverse: bool,
    x: &[f32],
    y: &mut [f32],
    cos: &[f32],
    sin: &[f32],
) {
    let half = cos.len();
    let turn = |a: f32, b: f32, c: f32, s: f32| {
        let s = if inverse { -s } else { s };
        (a * c - b * s, b * c + a * s)
    };
    match pairs {
        RotaryPairs::Halves => {
            let (x1, x2) = x[..2 * half].split_at(half);
            let (y1, rest) = y.split_at_mut(half);
            let y2 = &mut rest[..half];
            for i in 0..half {
                (y1[i], y2[i]) = turn(x1[i], x2[i], cos[i], sin[i]);
            }
        }
        RotaryPairs::Adjacent => {
            for i in 0..half {
                (y[2 * i], y[2 * i + 1]) = turn(x[2 * i], x[2 * i + 1], cos[i], sin[i]);
            }
        }
    }
    y[2 * half..].copy_from_slice(&x[2 * half..]);
}
