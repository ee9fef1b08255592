//! Gated DeltaNet linear attention (Qwen3-Next's `linear_attention` layers), as transformers'
//! `Qwen3NextGatedDeltaNet` computes it.
//!
//! Per value head h, a state S [d_k, d_v] is carried from position to position:
//!
//! ```text
//! S ← exp(g_t) · S                      decay, g_t = −exp(A_log) · softplus(a_t + dt_bias) ≤ 0
//! S ← S + k_t ⊗ β_t (v_t − Sᵀ k_t)       the delta rule: write the part of v_t S does not predict
//! o_t = Sᵀ q_t
//! ```
//!
//! with q and k L2-normalised (q also scaled by d_k^-½) and β_t = σ(b_t). Queries, keys and
//! values come from one projection (`in_proj_qkvz`, which also yields the output gate z) and
//! pass a causal depthwise convolution with SiLU first; key heads are shared by
//! `linear_num_value_heads / linear_num_key_heads` value heads. The output is RMS-normalised
//! per head, scaled by `norm.weight` and by SiLU(z), then projected by `out_proj`.
//!
//! A prompt runs in chunks of [`CHUNK`] positions ([`delta_rule_chunked`], the reference's
//! chunked form: within a chunk the sequential updates are solved as one triangular system,
//! so the loop runs over chunks, not positions); one new token at a time runs the recurrence
//! itself ([`delta_rule_step`]). The two agree (tested below). The KV cache keeps, per layer,
//! the convolution's last inputs and S.
//!
//! Hooks (batch first), under `attn` since the layer takes attention's place in the block
//! (`hook_attn_out` is its output, and analyses that split attention by head split it by value
//! head): `blocks.{i}.attn.hook_q` / `hook_k` [batch, pos, key head, d_k] and `hook_v`
//! [batch, pos, value head, d_v] after the convolution, `hook_beta` and `hook_decay` (g)
//! [batch, pos, value head], `hook_state` [batch, value head, d_k, d_v] (S after the last
//! position), `hook_z` [batch, pos, value head, d_v] (the gated, normalised output that
//! `out_proj` reads, so that `W_O` splits the output by value head). There is no
//! `hook_pattern`: nothing here is a distribution over positions.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::decoder::{LayerContext, SelfAttention};
use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::layers::{Activation, Linear, WEIGHT_INIT};
use crate::ops;

/// Positions per chunk of the chunked form (the reference's `chunk_size`).
pub const CHUNK: usize = 64;

/// Shapes of one gated DeltaNet layer.
#[derive(Clone, Copy, Debug)]
pub struct DeltaNetConfig {
    pub d_model: usize,
    pub n_k_heads: usize,
    pub n_v_heads: usize,
    pub d_k: usize,
    pub d_v: usize,
    pub conv_kernel: usize,
    pub eps: f64,
}

impl DeltaNetConfig {
    fn key_dim(&self) -> usize {
        self.n_k_heads * self.d_k
    }

    fn value_dim(&self) -> usize {
        self.n_v_heads * self.d_v
    }

    /// Channels of the convolution: q, k and v side by side.
    fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }

    /// Value heads per key head.
    fn ratio(&self) -> usize {
        self.n_v_heads / self.n_k_heads
    }
}

/// One gated DeltaNet layer (`model.layers.{i}.linear_attn`).
pub struct GatedDeltaNet {
    pub cfg: DeltaNetConfig,
    pub in_proj_qkvz: Linear,
    pub in_proj_ba: Linear,
    /// Depthwise kernel [conv_dim, kernel].
    pub conv: Tensor,
    pub dt_bias: Tensor,
    pub a_log: Tensor,
    /// `norm.weight` [d_v].
    pub norm: Tensor,
    pub out_proj: Linear,
}

impl GatedDeltaNet {
    pub fn load(vb: VarBuilder, cfg: DeltaNetConfig) -> Result<Self> {
        if cfg.n_k_heads == 0
            || !cfg.n_v_heads.is_multiple_of(cfg.n_k_heads)
            || cfg.conv_kernel == 0
        {
            candle_core::bail!(
                "{} linear-attention value heads cannot share {} key heads (or the kernel is empty)",
                cfg.n_v_heads,
                cfg.n_k_heads
            );
        }
        let qkvz = 2 * cfg.key_dim() + 2 * cfg.value_dim();
        let conv = vb
            .pp("conv1d")
            .get_with_hints((cfg.conv_dim(), 1, cfg.conv_kernel), "weight", WEIGHT_INIT)?
            .squeeze(1)?;
        Ok(GatedDeltaNet {
            in_proj_qkvz: Linear::load(vb.pp("in_proj_qkvz"), cfg.d_model, qkvz, false)?,
            in_proj_ba: Linear::load(vb.pp("in_proj_ba"), cfg.d_model, 2 * cfg.n_v_heads, false)?,
            conv,
            dt_bias: vb.get_with_hints(cfg.n_v_heads, "dt_bias", candle_nn::Init::Const(1.0))?,
            a_log: vb.get_with_hints(cfg.n_v_heads, "A_log", candle_nn::Init::Const(0.0))?,
            norm: vb
                .pp("norm")
                .get_with_hints(cfg.d_v, "weight", candle_nn::Init::Const(1.0))?,
            out_proj: Linear::load(vb.pp("out_proj"), cfg.value_dim(), cfg.d_model, false)?,
            cfg,
        })
    }
}

/// `x / sqrt(Σx² + eps)` over the last dimension (the FLA library's `l2norm`).
fn l2_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + eps)?.sqrt()?)
}

/// The recurrence over positions, one at a time: q, k [b, h, t, d_k], v [b, h, t, d_v],
/// g and beta [b, h, t] (f32), state [b, h, d_k, d_v]. Returns the outputs [b, h, t, d_v] and
/// the state after the last position.
pub fn delta_rule_step(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    state: Tensor,
) -> Result<(Tensor, Tensor)> {
    let t = q.dim(2)?;
    let mut s = state;
    let mut outs = Vec::with_capacity(t);
    for i in 0..t {
        let q_t = q.narrow(2, i, 1)?; // [b, h, 1, dk]
        let k_t = k.narrow(2, i, 1)?;
        let v_t = v.narrow(2, i, 1)?; // [b, h, 1, dv]
        let decay = g.narrow(2, i, 1)?.exp()?.unsqueeze(3)?; // [b, h, 1, 1]
        let beta_t = beta.narrow(2, i, 1)?.unsqueeze(3)?;
        s = s.broadcast_mul(&decay)?;
        let predicted = ops::matmul(&k_t, &s)?; // [b, h, 1, dv]
        let delta = (v_t - predicted)?.broadcast_mul(&beta_t)?;
        s = (s + ops::matmul(&k_t.transpose(2, 3)?, &delta)?)?;
        outs.push(ops::matmul(&q_t, &s)?);
    }
    Ok((Tensor::cat(&outs, 2)?, s))
}

/// The same computation as [`delta_rule_step`], by chunks of `chunk` positions: within a chunk
/// the delta rule's sequential updates are one unit-lower-triangular system (solved by forward
/// substitution), so the loop runs over chunks.
pub fn delta_rule_chunked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    state: Tensor,
    chunk: usize,
) -> Result<(Tensor, Tensor)> {
    let (b, h, t, dk) = q.dims4()?;
    let dv = v.dim(3)?;
    let pad = (chunk - t % chunk) % chunk;
    let padded = |x: &Tensor, dim: usize| -> Result<Tensor> {
        if pad == 0 {
            return Ok(x.clone());
        }
        x.pad_with_zeros(dim, 0, pad)
    };
    let (q, k, v, g, beta) = (
        padded(q, 2)?,
        padded(k, 2)?,
        padded(v, 2)?,
        padded(g, 2)?,
        padded(beta, 2)?,
    );
    let n = (t + pad) / chunk;
    let chunks = |x: &Tensor, d: usize| x.reshape((b, h, n, chunk, d));
    let v_beta = chunks(&v.broadcast_mul(&beta.unsqueeze(3)?)?, dv)?;
    let k_beta = chunks(&k.broadcast_mul(&beta.unsqueeze(3)?)?, dk)?;
    let (q, k) = (chunks(&q, dk)?, chunks(&k, dk)?);
    // Log-decay accumulated from the chunk's start to each position: [b, h, n, chunk].
    let cum = g.reshape((b, h, n, chunk))?.cumsum(3)?;
    let dev = q.device();
    // 1 on and below the diagonal.
    let lower: Vec<f32> = (0..chunk * chunk)
        .map(|ij| ((ij % chunk) <= (ij / chunk)) as u8 as f32)
        .collect();
    let lower = Tensor::from_vec(lower, (chunk, chunk), dev)?;
    // exp(cum_i − cum_j) below the diagonal, 0 above (clamped first: above, it could overflow).
    let pairwise = cum
        .unsqueeze(4)?
        .broadcast_sub(&cum.unsqueeze(3)?)?
        .minimum(0.0)?
        .exp()?
        .broadcast_mul(&lower)?;
    let strictly_lower = (&lower - Tensor::eye(chunk, DType::F32, dev)?)?;
    let k_t = k.transpose(3, 4)?;
    let system = ops::matmul(&k_beta, &k_t)?
        .mul(&pairwise)?
        .broadcast_mul(&strictly_lower)?;
    let intra = ops::matmul(&q, &k_t)?.mul(&pairwise)?;
    let decayed_k_beta = k_beta.broadcast_mul(&cum.exp()?.unsqueeze(4)?)?;
    // Solve (I + system) X = [v_beta | decayed_k_beta] row by row.
    let rhs = Tensor::cat(&[&v_beta, &decayed_k_beta], 4)?;
    let mut rows: Vec<Tensor> = Vec::with_capacity(chunk);
    rows.push(rhs.narrow(3, 0, 1)?);
    for i in 1..chunk {
        let solved = Tensor::cat(&rows, 3)?; // [b, h, n, i, dv + dk]
        let coeff = system.narrow(3, i, 1)?.narrow(4, 0, i)?; // [b, h, n, 1, i]
        rows.push((rhs.narrow(3, i, 1)? - ops::matmul(&coeff, &solved)?)?);
    }
    let solved = Tensor::cat(&rows, 3)?;
    let new_values = solved.narrow(4, 0, dv)?.contiguous()?;
    let k_cumdecay = solved.narrow(4, dv, dk)?.contiguous()?;

    let last = cum.narrow(3, chunk - 1, 1)?; // [b, h, n, 1]
    let q_decayed = q.broadcast_mul(&cum.exp()?.unsqueeze(4)?)?;
    let k_decayed = k.broadcast_mul(&last.broadcast_sub(&cum)?.exp()?.unsqueeze(4)?)?;
    let chunk_decay = last.exp()?; // [b, h, n, 1]
    let mut s = state;
    let mut outs = Vec::with_capacity(n);
    for c in 0..n {
        let at = |x: &Tensor| x.narrow(2, c, 1)?.squeeze(2);
        let v_new = (at(&new_values)? - ops::matmul(&at(&k_cumdecay)?, &s)?)?;
        let out = (ops::matmul(&at(&q_decayed)?, &s)? + ops::matmul(&at(&intra)?, &v_new)?)?;
        outs.push(out);
        let decay = at(&chunk_decay)?.unsqueeze(3)?; // [b, h, 1, 1]
        let k_c = at(&k_decayed)?.transpose(2, 3)?;
        s = (s.broadcast_mul(&decay)? + ops::matmul(&k_c, &v_new)?)?;
    }
    let out = Tensor::cat(&outs, 2)?.narrow(2, 0, t)?;
    Ok((out, s))
}

impl SelfAttention for GatedDeltaNet {
    fn forward(
        &self,
        x: &Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let c = self.cfg;
        let i = ctx.layer;
        let (b, t, _) = x.dims3()?;
        let r = c.ratio();
        let dtype = x.dtype();
        // Per key head: [q (d_k) | k (d_k) | v (r·d_v) | z (r·d_v)], and [b (r) | a (r)].
        let qkvz = self.in_proj_qkvz.forward(x)?.reshape((
            b,
            t,
            c.n_k_heads,
            2 * c.d_k + 2 * r * c.d_v,
        ))?;
        let ba = self
            .in_proj_ba
            .forward(x)?
            .reshape((b, t, c.n_k_heads, 2 * r))?;
        let part = |from: usize, len: usize| qkvz.narrow(3, from, len);
        let (q, k) = (part(0, c.d_k)?, part(c.d_k, c.d_k)?);
        let v = part(2 * c.d_k, r * c.d_v)?;
        let z = part(2 * c.d_k + r * c.d_v, r * c.d_v)?.reshape((b, t, c.n_v_heads, c.d_v))?;
        let beta_in = ba.narrow(3, 0, r)?.reshape((b, t, c.n_v_heads))?;
        let a = ba.narrow(3, r, r)?.reshape((b, t, c.n_v_heads))?;
        let mixed = Tensor::cat(
            &[
                q.reshape((b, t, c.key_dim()))?,
                k.reshape((b, t, c.key_dim()))?,
                v.reshape((b, t, c.value_dim()))?,
            ],
            2,
        )?;

        let past = kv.as_ref().and_then(|cache| cache.state(i));
        let (conv_past, state) = match past {
            Some([conv, s]) => (Some(conv.clone()), Some(s.clone())),
            _ => (None, None),
        };
        let (mixed, conv_next) = ops::causal_conv(&mixed, &self.conv, None, conv_past.as_ref())?;
        let mixed = Activation::Silu.apply(&mixed)?;
        let q = mixed
            .narrow(2, 0, c.key_dim())?
            .reshape((b, t, c.n_k_heads, c.d_k))?;
        let k = mixed
            .narrow(2, c.key_dim(), c.key_dim())?
            .reshape((b, t, c.n_k_heads, c.d_k))?;
        let v =
            mixed
                .narrow(2, 2 * c.key_dim(), c.value_dim())?
                .reshape((b, t, c.n_v_heads, c.d_v))?;
        let q = hooks.point(|| format!("blocks.{i}.attn.hook_q"), q)?;
        let k = hooks.point(|| format!("blocks.{i}.attn.hook_k"), k)?;
        let v = hooks.point(|| format!("blocks.{i}.attn.hook_v"), v)?;

        let f32_ = |x: &Tensor| x.to_dtype(DType::F32);
        let beta = ops::sigmoid(&f32_(&beta_in)?)?;
        let beta = hooks.point(|| format!("blocks.{i}.attn.hook_beta"), beta)?;
        let a_rate = f32_(&self.a_log)?.exp()?;
        let g = ops::softplus(&f32_(&a)?.broadcast_add(&f32_(&self.dt_bias)?)?)?
            .broadcast_mul(&a_rate)?
            .neg()?;
        let g = hooks.point(|| format!("blocks.{i}.attn.hook_decay"), g)?;

        // [b, head, pos, d] in f32; key heads repeated for the value heads that share them.
        let heads = |x: &Tensor| f32_(&x.transpose(1, 2)?);
        let q = ops::repeat_kv(&heads(&q)?, r)?;
        let k = ops::repeat_kv(&heads(&k)?, r)?;
        let q = (l2_normalize(&q, 1e-6)? * (1.0 / (c.d_k as f64).sqrt()))?;
        let k = l2_normalize(&k, 1e-6)?;
        let v = heads(&v)?;
        let (g, beta) = (g.transpose(1, 2)?, beta.transpose(1, 2)?);
        let state = match state {
            Some(s) => s.to_dtype(DType::F32)?,
            None => Tensor::zeros((b, c.n_v_heads, c.d_k, c.d_v), DType::F32, x.device())?,
        };
        let (out, state) = if t == 1 {
            delta_rule_step(&q, &k, &v, &g, &beta, state)?
        } else {
            delta_rule_chunked(&q, &k, &v, &g, &beta, state, CHUNK.min(t))?
        };
        let state = hooks.point(|| format!("blocks.{i}.attn.hook_state"), state)?;
        if let Some(cache) = kv {
            cache.set_state(i, vec![conv_next, state]);
        }

        // RMS-normalise each head's output, scale by the weight and by SiLU(z), in f32.
        let out = out.transpose(1, 2)?; // [b, t, h, dv]
        let normed = ops::rms_normalize(&out, c.eps)?
            .to_dtype(dtype)?
            .broadcast_mul(&self.norm.to_dtype(dtype)?)?;
        let gated = (f32_(&normed)? * Activation::Silu.apply(&f32_(&z)?)?)?.to_dtype(dtype)?;
        let tq = ctx.query_rows();
        let gated = gated.narrow(1, t - tq, tq)?;
        let z = hooks.point(|| format!("blocks.{i}.attn.hook_z"), gated)?;
        self.out_proj.forward(&z.reshape((b, tq, c.value_dim()))?)
    }

    fn w_o(&self) -> Result<Tensor> {
        let c = self.cfg;
        self.out_proj
            .weight_in_out()?
            .to_dtype(DType::F32)?
            .reshape((c.n_v_heads, c.d_v, c.d_model))
    }

    fn b_o(&self) -> Result<Tensor> {
        Tensor::zeros(self.cfg.d_model, DType::F32, &self.out_proj.weight.device())
    }

    fn recurrent(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, random};

    /// The chunked form computes the recurrence: same outputs and final state, across chunk
    /// boundaries, from a nonzero starting state.
    #[test]
    fn chunked_delta_rule_equals_the_recurrence() {
        let (b, h, t, dk, dv) = (2, 3, 37, 8, 5);
        let q = l2_normalize(&random(&[b, h, t, dk], 1), 1e-6).unwrap();
        let k = l2_normalize(&random(&[b, h, t, dk], 2), 1e-6).unwrap();
        let v = random(&[b, h, t, dv], 3);
        let g = (random(&[b, h, t], 4).abs().unwrap() * -0.5).unwrap();
        let beta = ops::sigmoid(&random(&[b, h, t], 5)).unwrap();
        let s0 = random(&[b, h, dk, dv], 6);
        let (o1, s1) = delta_rule_step(&q, &k, &v, &g, &beta, s0.clone()).unwrap();
        for chunk in [1, 4, 16, 64] {
            let (o2, s2) = delta_rule_chunked(&q, &k, &v, &g, &beta, s0.clone(), chunk).unwrap();
            assert!(max_diff(&o1, &o2) < 1e-5, "chunk {chunk}: outputs");
            assert!(max_diff(&s1, &s2) < 1e-5, "chunk {chunk}: state");
        }
    }

    /// Convolving a sequence whole or in two parts (carrying the last inputs) is the same.
    #[test]
    fn causal_conv_carries_its_past() {
        let x = random(&[2, 9, 6], 7);
        let kernel = random(&[6, 4], 8);
        let bias = random(&[6], 9);
        let conv = |x: &Tensor, past: Option<&Tensor>| {
            ops::causal_conv(x, &kernel, Some(&bias), past).unwrap()
        };
        let (whole, _) = conv(&x, None);
        let (a, past) = conv(&x.narrow(1, 0, 5).unwrap(), None);
        let (b, _) = conv(&x.narrow(1, 5, 4).unwrap(), Some(&past));
        let joined = Tensor::cat(&[a, b], 1).unwrap();
        assert!(max_diff(&whole, &joined) < 1e-6);
        // and the first output is the kernel's last tap on the first input, plus the bias
        let first = x
            .narrow(1, 0, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .broadcast_mul(&kernel.narrow(1, 3, 1).unwrap().squeeze(1).unwrap())
            .unwrap();
        let first = first.broadcast_add(&bias).unwrap();
        assert!(max_diff(&whole.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(), &first) < 1e-6);
    }
}
