//! Differentiable building blocks every architecture uses.
//!
//! candle-nn's fused `softmax_last_dim`, `rms_norm`, `layer_norm` and `rope` kernels have no
//! backward pass, so gradients silently stop at them. Training and attribution patching need
//! gradients through the whole model, so every model here uses these versions instead: the
//! f32 CPU path runs our own kernels with their backward ([`crate::kernel_ops`]), everything
//! else composes ops that candle can differentiate (exp, sum, sqr, mean, sqrt, matmul, …).
//! Normalisations run in f32 whatever the model dtype, as the reference implementations do.

use candle_core::{DType, Result, Tensor, D};

use crate::kernel_ops::{self, KernelActivation, KernelNorm};

pub use crate::kernel_ops::matmul;

/// Whether each row of `t` [n, …] holds only finite values.
pub fn finite_rows(t: &Tensor) -> Result<Vec<bool>> {
    let t = t.to_dtype(DType::F32)?.flatten_from(1)?;
    // 0·x is 0 for a finite x and NaN otherwise, so a row sums to exactly 0 only when all of
    // it is finite (a sum of |x| would overflow to ∞ on large finite values; a max skips NaN)
    let s: Vec<f32> = t.affine(0.0, 0.0)?.sum(D::Minus1)?.to_vec1()?;
    Ok(s.iter().map(|&v| v == 0.0).collect())
}

/// Whether every value of `t` is finite.
pub fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(finite_rows(&t.flatten_all()?.unsqueeze(0)?)?[0])
}

/// Softmax over the last dimension (max-subtracted for stability).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    kernel_ops::softmax_last_dim(x)
}

pub use crate::kernel_ops::attention_softmax;

/// The dtype reductions run in: f32 for half-precision inputs, else the input's own (so f64
/// models, used for gradient checks, stay f64 throughout).
pub fn accumulation_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    }
}

/// `t` in its [`accumulation_dtype`]: half precision widened by the kernels (vectorised and
/// exact; candle converts one value at a time, which made widening an f16 model's KV cache
/// most of a decoding step), anything else as it is.
pub fn to_accumulation(t: &Tensor) -> Result<Tensor> {
    match t.dtype() {
        DType::F16 | DType::BF16 => kernel_ops::to_f32(t),
        _ => Ok(t.clone()),
    }
}

/// `x / sqrt(mean(x²) + eps)` over the last dimension, in f32 (or f64), returned in x's dtype.
pub fn rms_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = to_accumulation(x)?;
    if let Some(y) = kernel_ops::normalize(&x, KernelNorm::Rms, eps)? {
        return y.to_dtype(dtype);
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.to_dtype(dtype)
}

/// `(x - mean) / sqrt(var + eps)` over the last dimension (biased variance), in f32 (or f64).
pub fn layer_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = to_accumulation(x)?;
    if let Some(y) = kernel_ops::normalize(&x, KernelNorm::Layer, eps)? {
        return y.to_dtype(dtype);
    }
    let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .to_dtype(dtype)
}

/// Rotary embedding in the `rotate_half` layout (Llama, GPT-NeoX): dimension i pairs with
/// i + d/2. `x` is [batch, pos, head, d]; `cos`/`sin` are [pos, d/2]. Only the first
/// `2 × cos.dim(1)` dimensions rotate; the rest pass through (partial rotary).
pub fn rope_rotate_half(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    match kernel_ops::rotary(x, cos, sin, kernel_ops::RotaryPairs::Halves)? {
        Some(y) => Ok(y),
        None => rope_rotate_half_composed(x, cos, sin),
    }
}

/// [`rope_rotate_half`] composed of candle's element-wise ops (the kernel's specification).
fn rope_rotate_half_composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (_b, t, _h, d) = x.dims4()?;
    let half = cos.dim(1)?;
    let rot = 2 * half;
    let (x_rot, x_pass) = split_rotary(x, rot, d)?;
    let x1 = x_rot.narrow(3, 0, half)?;
    let x2 = x_rot.narrow(3, half, half)?;
    // [pos, half] -> [1, pos, 1, half] to broadcast over batch and heads.
    let cos = cos.reshape((1, t, 1, half))?.to_dtype(x.dtype())?;
    let sin = sin.reshape((1, t, 1, half))?.to_dtype(x.dtype())?;
    let out1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let out2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    join_rotary(Tensor::cat(&[out1, out2], 3)?, x_pass)
}

/// Rotary embedding on adjacent pairs (GPT-J, GLM, DeepSeek's `rope_interleave`): dimension
/// 2i pairs with 2i + 1. Shapes as in [`rope_rotate_half`].
pub fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    match kernel_ops::rotary(x, cos, sin, kernel_ops::RotaryPairs::Adjacent)? {
        Some(y) => Ok(y),
        None => rope_interleaved_composed(x, cos, sin),
    }
}

/// [`rope_interleaved`] composed of candle's element-wise ops (the kernel's specification).
fn rope_interleaved_composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, t, h, d) = x.dims4()?;
    let half = cos.dim(1)?;
    let rot = 2 * half;
    let (x_rot, x_pass) = split_rotary(x, rot, d)?;
    let pairs = x_rot.reshape((b, t, h, half, 2))?;
    let even = pairs.narrow(4, 0, 1)?.squeeze(4)?;
    let odd = pairs.narrow(4, 1, 1)?.squeeze(4)?;
    let cos = cos.reshape((1, t, 1, half))?.to_dtype(x.dtype())?;
    let sin = sin.reshape((1, t, 1, half))?.to_dtype(x.dtype())?;
    let out_even = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
    let out_odd = (odd.broadcast_mul(&cos)? + even.broadcast_mul(&sin)?)?;
    let rotated = Tensor::stack(&[out_even, out_odd], 4)?.reshape((b, t, h, rot))?;
    join_rotary(rotated, x_pass)
}

fn split_rotary(x: &Tensor, rot: usize, d: usize) -> Result<(Tensor, Option<Tensor>)> {
    if rot == d {
        Ok((x.clone(), None))
    } else {
        Ok((x.narrow(3, 0, rot)?, Some(x.narrow(3, rot, d - rot)?)))
    }
}

fn join_rotary(rotated: Tensor, pass: Option<Tensor>) -> Result<Tensor> {
    match pass {
        None => Ok(rotated),
        Some(p) => Tensor::cat(&[rotated, p], 3),
    }
}

/// `cos` and `sin` tables [len, inv_freq.len()] for positions `start..start + len`. Angles are
/// f32 products as in the reference implementations; cos and sin are taken in f64 and
/// rounded, so the tables are the correctly rounded values on every platform (f32 libm
/// results differ between CPUs and libraries).
pub fn rope_tables(
    inv_freq: &[f32],
    start: usize,
    len: usize,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for p in start..start + len {
        let p = p as f32;
        for f in inv_freq {
            let angle = (p * f) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (len, half), device)?,
        Tensor::from_vec(sin, (len, half), device)?,
    ))
}

/// `x · y` per head, for x [batch, heads, r, k] and y [batch, kv_heads, k, c] under
/// grouped-query attention (query head h reads kv head h / (heads / kv_heads)). On the kernel
/// path y is broadcast as a view, never copied per query head.
pub fn grouped_matmul(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (b, h, r, k) = x.dims4()?;
    let (_, kv, _, c) = y.dims4()?;
    if kv == h {
        return matmul(x, y);
    }
    if kv == 0 || h % kv != 0 {
        candle_core::bail!("{h} query heads cannot share {kv} key/value heads");
    }
    let n_rep = h / kv;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let x5 = x.reshape((b, kv, n_rep, r, k))?;
        let y5 = y.unsqueeze(2)?.broadcast_as((b, kv, n_rep, k, c))?;
        matmul(&x5, &y5)?.reshape((b, h, r, c))
    } else {
        matmul(x, &repeat_kv(y, n_rep)?.contiguous()?)
    }
}

/// Repeats each key/value head `n_rep` times along dim 1 of [batch, kv_heads, pos, d]
/// (grouped-query attention: query head h reads kv head h / n_rep).
pub fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, n_rep, t, d))?
        .reshape((b, kv * n_rep, t, d))
}

/// `1 / (1 + e^-x)`, from differentiable primitives.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// Causal depthwise convolution over positions of `x` [b, t, c] with `kernel` [c, k] (and a
/// `bias` [c]), after the `k − 1` inputs in `past` [b, k − 1, c] (zeros at the start): the
/// convolutions of linear attention and Mamba. Returns the output [b, t, c] and the last
/// `k − 1` inputs, the next call's `past`.
pub fn causal_conv(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    past: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (b, t, c) = x.dims3()?;
    let k = kernel.dim(1)?;
    let past = match past {
        Some(p) => p.to_dtype(x.dtype())?,
        None => Tensor::zeros((b, k - 1, c), x.dtype(), x.device())?,
    };
    let ext = Tensor::cat(&[&past, x], 1)?;
    let kernel = kernel.to_dtype(x.dtype())?;
    let mut out = ext
        .narrow(1, 0, t)?
        .broadcast_mul(&kernel.narrow(1, 0, 1)?.t()?)?;
    for j in 1..k {
        out = (out
            + ext
                .narrow(1, j, t)?
                .broadcast_mul(&kernel.narrow(1, j, 1)?.t()?)?)?;
    }
    if let Some(bias) = bias {
        out = out.broadcast_add(&bias.to_dtype(x.dtype())?)?;
    }
    let next = ext.narrow(1, t, k - 1)?.contiguous()?;
    Ok((out, next))
}

/// `ln(1 + eᕽ)`, stable for large |x|, from differentiable primitives.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.relu()? + tail
}

/// `cap × tanh(x / cap)` (Gemma 2's logit soft-capping).
pub fn soft_cap(x: &Tensor, cap: f64) -> Result<Tensor> {
    kernel_ops::activation(&(x / cap)?, KernelActivation::Tanh)? * cap
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    type Rope = fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>;

    /// The rotary kernel gives the bits of the element-wise composition, forward and backward
    /// (so training numerics did not change when it replaced the composition).
    #[test]
    fn rotary_kernel_is_the_composition_bit_for_bit() {
        let dev = Device::Cpu;
        let (b, t, h, d, half) = (2, 5, 3, 12, 4); // partial: 8 of 12 dimensions rotate
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1e4f32.powf(-(i as f32) / half as f32))
            .collect();
        let (cos, sin) = rope_tables(&inv_freq, 3, t, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev).unwrap();
        let cases: [(Rope, Rope); 2] = [
            (rope_rotate_half, rope_rotate_half_composed),
            (rope_interleaved, rope_interleaved_composed),
        ];
        let bits = |t: &Tensor| -> Vec<u32> {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            v.into_iter().map(f32::to_bits).collect()
        };
        for (kernel, composed) in cases {
            let run = |f: Rope| {
                let var = Var::from_tensor(&x).unwrap();
                let y = f(var.as_tensor(), &cos, &sin).unwrap();
                let grads = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
                (bits(&y), bits(grads.get(var.as_tensor()).unwrap()))
            };
            let (y_k, g_k) = run(kernel);
            let (y_c, g_c) = run(composed);
            assert_eq!(y_k, y_c, "forward");
            assert_eq!(g_k, g_c, "backward");
            assert_ne!(y_k, bits(&x), "the kernel rotated nothing");
        }
    }
}
