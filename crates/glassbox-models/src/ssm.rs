//! The Mamba-2 mixer (Nemotron-H's `linear_attention` / `mamba` blocks), as transformers'
//! `NemotronHMamba2Mixer` computes it.
//!
//! `in_proj` yields a gate z, the convolution input x‖B‖C and one time step per head. After a
//! causal depthwise convolution with SiLU, each head h (of `mamba_head_dim` P channels, reading
//! the B and C of its group) carries a state S [P, N] (N = `ssm_state_size`):
//!
//! ```text
//! Δ_t = softplus(dt_t + dt_bias)              (clamped to time_step_limit)
//! S ← exp(Δ_t · A_h) · S + Δ_t · x_t ⊗ B_t     A_h = −exp(A_log_h)
//! y_t = S C_t + D_h · x_t
//! ```
//!
//! then `y · SiLU(z)` is RMS-normalised in `n_groups` groups, scaled by `norm.weight`, and
//! projected by `out_proj`. A prompt runs in chunks of `chunk_size` positions
//! ([`ssd_chunked`], the state-space-duality form: within a chunk the outputs are one masked
//! matrix product, so the loop runs over chunks); one new token at a time runs the recurrence
//! ([`ssd_step`]). They agree (tested below). The KV cache keeps, per layer, the convolution's
//! last inputs and S.
//!
//! Hooks (batch first), under the block's `mixer`, with the names and meanings of
//! TransformerLens' Mamba-2 bridge where it has them:
//! `blocks.{i}.mixer.hook_in_proj` [batch, pos, 2·H·P + 2·G·N + H] (z, x‖B‖C and dt, as
//! projected), `hook_conv` [batch, pos, H·P + 2·G·N] (the convolution's output, before its
//! SiLU; the bridge's `conv1d.hook_out` is the same values channels-first, with the kernel's
//! K − 1 padding positions still on), `hook_dt` [batch, pos, H] (Δ, after softplus and the
//! clamp), `hook_scan_out` [batch, pos, H, P] (y, with the D skip, before gate and norm),
//! `hook_ssm_final_state` [batch, H, P, N] (S after the last position: what the KV cache
//! carries on; the bridge's `hook_ssm_state` is the whole trajectory S_t),
//! `hook_inner_norm` [batch, pos, H·P] (the gated, group-normalised, scaled y: `out_proj`'s
//! input) and `hook_ssm_out` [batch, pos, d_model] (the mixer's output, after `out_proj`).
//! The mixer's output is also the block's `hook_attn_out`; it has no heads in the attention
//! sense, so attribution takes it whole. When a pass answers for its last positions only (the
//! last block of a next-token pass), `hook_ssm_out` holds those positions while the hooks
//! before `out_proj` hold every position (the scan needs them all).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::decoder::{LayerContext, SelfAttention};
use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::layers::{Activation, Linear, WEIGHT_INIT};
use crate::ops;

/// Shapes and settings of one Mamba-2 mixer.
#[derive(Clone, Copy, Debug)]
pub struct Mamba2Config {
    pub d_model: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub state: usize,
    pub n_groups: usize,
    pub conv_kernel: usize,
    pub chunk: usize,
    pub eps: f64,
    /// Δ is clamped to [min, max].
    pub dt_limit: (f64, f64),
    pub conv_bias: bool,
    pub proj_bias: bool,
}

impl Mamba2Config {
    fn inner(&self) -> usize {
        self.n_heads * self.head_dim
    }

    fn conv_dim(&self) -> usize {
        self.inner() + 2 * self.n_groups * self.state
    }
}

/// One Mamba-2 mixer (`model.layers.{i}.mixer`).
pub struct Mamba2 {
    pub cfg: Mamba2Config,
    pub in_proj: Linear,
    /// Depthwise kernel [conv_dim, kernel].
    pub conv: Tensor,
    pub conv_bias: Option<Tensor>,
    pub dt_bias: Tensor,
    pub a_log: Tensor,
    pub d: Tensor,
    /// `norm.weight` [H·P].
    pub norm: Tensor,
    pub out_proj: Linear,
}

impl Mamba2 {
    pub fn load(vb: VarBuilder, cfg: Mamba2Config) -> Result<Self> {
        if cfg.n_groups == 0
            || !cfg.n_heads.is_multiple_of(cfg.n_groups)
            || cfg.conv_kernel == 0
            || cfg.chunk == 0
        {
            candle_core::bail!(
                "{} Mamba heads cannot be split into {} groups (or the kernel or chunk is empty)",
                cfg.n_heads,
                cfg.n_groups
            );
        }
        let projected = cfg.inner() + cfg.conv_dim() + cfg.n_heads;
        let vb_conv = vb.pp("conv1d");
        let conv = vb_conv
            .get_with_hints((cfg.conv_dim(), 1, cfg.conv_kernel), "weight", WEIGHT_INIT)?
            .squeeze(1)?;
        let conv_bias = if cfg.conv_bias {
            Some(vb_conv.get_with_hints(cfg.conv_dim(), "bias", candle_nn::Init::Const(0.0))?)
        } else {
            None
        };
        let one = candle_nn::Init::Const(1.0);
        Ok(Mamba2 {
            in_proj: Linear::load(vb.pp("in_proj"), cfg.d_model, projected, cfg.proj_bias)?,
            conv,
            conv_bias,
            dt_bias: vb.get_with_hints(cfg.n_heads, "dt_bias", one)?,
            a_log: vb.get_with_hints(cfg.n_heads, "A_log", candle_nn::Init::Const(0.0))?,
            d: vb.get_with_hints(cfg.n_heads, "D", one)?,
            norm: vb.pp("norm").get_with_hints(cfg.inner(), "weight", one)?,
            out_proj: Linear::load(vb.pp("out_proj"), cfg.inner(), cfg.d_model, cfg.proj_bias)?,
            cfg,
        })
    }
}

/// The recurrence, one position at a time: x [b, h, t, p], dt [b, h, t], a [h] (negative),
/// bm and cm [b, h, t, n], state [b, h, p, n] (all f32). Returns y [b, h, t, p] (without the D
/// skip) and the state after the last position.
pub fn ssd_step(
    x: &Tensor,
    dt: &Tensor,
    a: &Tensor,
    bm: &Tensor,
    cm: &Tensor,
    state: Tensor,
) -> Result<(Tensor, Tensor)> {
    let (_, h, t, _) = x.dims4()?;
    let a = a.reshape((1, h, 1, 1))?;
    let mut s = state;
    let mut ys = Vec::with_capacity(t);
    for i in 0..t {
        let dt_i = dt.narrow(2, i, 1)?.unsqueeze(3)?; // [b, h, 1, 1]
        let x_i = x.narrow(2, i, 1)?; // [b, h, 1, p]
        let b_i = bm.narrow(2, i, 1)?; // [b, h, 1, n]
        let c_i = cm.narrow(2, i, 1)?;
        let decay = dt_i.broadcast_mul(&a)?.exp()?;
        let input = ops::matmul(&x_i.broadcast_mul(&dt_i)?.transpose(2, 3)?, &b_i)?; // [b, h, p, n]
        s = (s.broadcast_mul(&decay)? + input)?;
        ys.push(ops::matmul(&c_i, &s.transpose(2, 3)?)?); // [b, h, 1, p]
    }
    Ok((Tensor::cat(&ys, 2)?, s))
}

/// The same computation as [`ssd_step`] by chunks of `chunk` positions: within a chunk,
/// y_l = Σ_{s ≤ l} (C_l · B_s) exp(Σ_{s<r≤l} Δ_r A) Δ_s x_s plus the entering state's
/// contribution; the state is carried from chunk to chunk.
pub fn ssd_chunked(
    x: &Tensor,
    dt: &Tensor,
    a: &Tensor,
    bm: &Tensor,
    cm: &Tensor,
    state: Tensor,
    chunk: usize,
) -> Result<(Tensor, Tensor)> {
    let (b, h, t, p) = x.dims4()?;
    let n = bm.dim(3)?;
    let pad = (chunk - t % chunk) % chunk;
    let padded = |x: &Tensor| -> Result<Tensor> {
        if pad == 0 {
            Ok(x.clone())
        } else {
            x.pad_with_zeros(2, 0, pad)
        }
    };
    let chunks = (t + pad) / chunk;
    let by_chunk = |x: &Tensor, d: usize| padded(x)?.reshape((b, h, chunks, chunk, d));
    let xdt = by_chunk(&x.broadcast_mul(&dt.unsqueeze(3)?)?, p)?;
    let (bm, cm) = (by_chunk(bm, n)?, by_chunk(cm, n)?);
    // Log-decay from the chunk's start to each position: [b, h, chunks, chunk].
    let cum = padded(&dt.broadcast_mul(&a.reshape((1, h, 1))?)?)?
        .reshape((b, h, chunks, chunk))?
        .cumsum(3)?;
    let dev = x.device();
    let lower: Vec<f32> = (0..chunk * chunk)
        .map(|ij| ((ij % chunk) <= (ij / chunk)) as u8 as f32)
        .collect();
    let lower = Tensor::from_vec(lower, (chunk, chunk), dev)?;
    // exp(cum_l − cum_s) for s ≤ l, 0 above the diagonal (clamped first: it could overflow).
    let decay = cum
        .unsqueeze(4)?
        .broadcast_sub(&cum.unsqueeze(3)?)?
        .minimum(0.0)?
        .exp()?
        .broadcast_mul(&lower)?;
    let scores = ops::matmul(&cm, &bm.transpose(3, 4)?)?.mul(&decay)?; // [.., l, s]
    let y_diag = ops::matmul(&scores, &xdt)?; // [b, h, chunks, chunk, p]
    let last = cum.narrow(3, chunk - 1, 1)?;
    let to_end = last.broadcast_sub(&cum)?.exp()?.unsqueeze(4)?; // [.., chunk, 1]
    let from_start = cum.exp()?.unsqueeze(4)?;
    let chunk_decay = last.exp()?.unsqueeze(4)?; // [b, h, chunks, 1, 1]
    let mut s = state;
    let mut ys = Vec::with_capacity(chunks);
    for c in 0..chunks {
        let at = |x: &Tensor| x.narrow(2, c, 1)?.squeeze(2);
        // the entering state read by every position of the chunk, decayed to it
        let y_off =
            ops::matmul(&at(&cm)?, &s.transpose(2, 3)?)?.broadcast_mul(&at(&from_start)?)?;
        ys.push((at(&y_diag)? + y_off)?);
        let written = ops::matmul(
            &at(&xdt)?.broadcast_mul(&at(&to_end)?)?.transpose(2, 3)?,
            &at(&bm)?,
        )?; // [b, h, p, n]
        s = (s.broadcast_mul(&at(&chunk_decay)?)? + written)?;
    }
    let y = Tensor::cat(&ys, 2)?.narrow(2, 0, t)?;
    Ok((y, s))
}

impl SelfAttention for Mamba2 {
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
        let (h, p, n, g) = (c.n_heads, c.head_dim, c.state, c.n_groups);
        let dtype = x.dtype();
        let projected = self.in_proj.forward(x)?;
        let projected = hooks.point(|| format!("blocks.{i}.mixer.hook_in_proj"), projected)?;
        let z = projected.narrow(2, 0, c.inner())?;
        let xbc = projected.narrow(2, c.inner(), c.conv_dim())?;
        let dt_raw = projected.narrow(2, c.inner() + c.conv_dim(), h)?;

        let (conv_past, state) = match kv.as_ref().and_then(|cache| cache.state(i)) {
            Some([conv, s]) => (Some(conv.clone()), Some(s.clone())),
            _ => (None, None),
        };
        let (xbc, conv_next) = ops::causal_conv(
            &xbc,
            &self.conv,
            self.conv_bias.as_ref(),
            conv_past.as_ref(),
        )?;
        let xbc = hooks.point(|| format!("blocks.{i}.mixer.hook_conv"), xbc)?;
        let xbc = Activation::Silu.apply(&xbc)?;

        let f32_ = |x: &Tensor| x.to_dtype(DType::F32);
        let xs = f32_(&xbc.narrow(2, 0, c.inner())?.reshape((b, t, h, p))?)?;
        // Each head reads the B and C of its group: [b, h, t, n].
        let per_head = |from: usize| -> Result<Tensor> {
            let m = xbc.narrow(2, from, g * n)?.reshape((b, t, g, n))?;
            ops::repeat_kv(&f32_(&m.transpose(1, 2)?)?, h / g)
        };
        let (bm, cm) = (per_head(c.inner())?, per_head(c.inner() + g * n)?);
        let mut dt = ops::softplus(&f32_(&dt_raw)?.broadcast_add(&f32_(&self.dt_bias)?)?)?;
        let (lo, hi) = c.dt_limit;
        if lo > 0.0 {
            dt = dt.maximum(lo)?;
        }
        if hi.is_finite() {
            dt = dt.minimum(hi)?;
        }
        let dt = hooks.point(|| format!("blocks.{i}.mixer.hook_dt"), dt)?;
        let a = f32_(&self.a_log)?.exp()?.neg()?;
        let x_heads = xs.transpose(1, 2)?; // [b, h, t, p]
        let dt_heads = dt.transpose(1, 2)?; // [b, h, t]
        let state = match state {
            Some(s) => s.to_dtype(DType::F32)?,
            None => Tensor::zeros((b, h, p, n), DType::F32, x.device())?,
        };
        let (y, state) = if t == 1 {
            ssd_step(&x_heads, &dt_heads, &a, &bm, &cm, state)?
        } else {
            // A chunk longer than the prompt is the prompt (and its mask no larger).
            ssd_chunked(&x_heads, &dt_heads, &a, &bm, &cm, state, c.chunk.min(t))?
        };
        let state = hooks.point(|| format!("blocks.{i}.mixer.hook_ssm_final_state"), state)?;
        if let Some(cache) = kv {
            cache.set_state(i, vec![conv_next, state]);
        }
        let y = (y.transpose(1, 2)? + xs.broadcast_mul(&f32_(&self.d)?.reshape((1, 1, h, 1))?)?)?;
        let y = hooks.point(|| format!("blocks.{i}.mixer.hook_scan_out"), y)?;

        // Gate, then RMS-normalise in groups, in f32; scale by the weight in the model dtype.
        let gated = (y.reshape((b, t, c.inner()))? * Activation::Silu.apply(&f32_(&z)?)?)?;
        let normed = ops::rms_normalize(&gated.reshape((b, t, g, c.inner() / g))?, c.eps)?
            .reshape((b, t, c.inner()))?
            .to_dtype(dtype)?
            .broadcast_mul(&self.norm.to_dtype(dtype)?)?;
        let normed = hooks.point(|| format!("blocks.{i}.mixer.hook_inner_norm"), normed)?;
        let tq = ctx.query_rows();
        let out = self.out_proj.forward(&normed.narrow(1, t - tq, tq)?)?;
        hooks.point(|| format!("blocks.{i}.mixer.hook_ssm_out"), out)
    }

    fn w_o(&self) -> Result<Tensor> {
        candle_core::bail!("a Mamba mixer has no attention heads")
    }

    fn b_o(&self) -> Result<Tensor> {
        candle_core::bail!("a Mamba mixer has no attention heads")
    }

    fn recurrent(&self) -> bool {
        true
    }

    fn parameter_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn parameter(&self, _field: &str) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, random};

    /// The chunked (state-space-duality) form computes the recurrence, across chunk boundaries
    /// and from a nonzero starting state.
    #[test]
    fn chunked_scan_equals_the_recurrence() {
        let (b, h, t, p, n) = (2, 4, 29, 3, 5);
        let x = random(&[b, h, t, p], 1);
        let dt = ops::softplus(&random(&[b, h, t], 2)).unwrap();
        let a = (random(&[h], 3).abs().unwrap() + 0.1)
            .unwrap()
            .neg()
            .unwrap();
        let bm = random(&[b, h, t, n], 4);
        let cm = random(&[b, h, t, n], 5);
        let s0 = random(&[b, h, p, n], 6);
        let (y1, s1) = ssd_step(&x, &dt, &a, &bm, &cm, s0.clone()).unwrap();
        for chunk in [1, 4, 8, 64] {
            let (y2, s2) = ssd_chunked(&x, &dt, &a, &bm, &cm, s0.clone(), chunk).unwrap();
            assert!(max_diff(&y1, &y2) < 1e-5, "chunk {chunk}: outputs");
            assert!(max_diff(&s1, &s2) < 1e-5, "chunk {chunk}: state");
        }
    }
}
