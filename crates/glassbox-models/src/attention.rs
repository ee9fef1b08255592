//! Multi-head self-attention as decoder families compute it, with every TransformerLens hook.
//!
//! One [`Attention`] covers GPT-2, GPT-NeoX, Llama, Mistral, Qwen 2/3, OLMo 2, Gemma 1/2 and
//! Phi-3: they differ only in how q, k, v are projected ([`QkvProjection`]), whether q and k
//! are normalised ([`QkNorm`]), the rotary layout, the score scale, soft-capping and the
//! sliding window — all data here, none a separate code path.
//!
//! Hooks, batch first: `attn.hook_q`/`hook_k`/`hook_v` [batch, pos, head, d_head] after
//! projection, before any q/k norm (as in TransformerLens); `attn.q_norm.hook_normalized` /
//! `attn.k_norm.hook_normalized` after it; `attn.hook_rot_q`/`hook_rot_k` after rotary;
//! `attn.hook_attn_scores` [batch, head, q_pos, k_pos] scaled and masked (masked entries hold
//! the most negative finite value, so fully masked rows stay finite), pre-softmax;
//! `attn.hook_pattern` after softmax; `attn.hook_z` [batch, pos, head, d_head] (after the
//! output gate `attn.hook_gate`, where there is one: it is what `W_O` reads). Under
//! grouped-query attention `hook_k`/`hook_v` have `n_kv_heads` heads (as stored, before being
//! shared among query heads); with a KV cache they cover the new positions only.
//!
//! Under llama.cpp's F16 KV cache ([`KvCacheType::F16`], the loader's choice for its numerics)
//! keys and values are rounded to f16 after their hooks, as the cache stores them, and so are
//! the queries and the attention weights where they meet them in a product.

use std::cell::Cell;

use candle_core::{DType, Module, Result, Tensor};

use crate::config::RopeConfig;
use crate::decoder::{LayerContext, SelfAttention, Window};
use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::layers::{Linear, Norm};
use crate::model::KvCacheType;
use crate::ops;

thread_local! {
    /// How attention layers built on this thread hold keys and values ([`while_building`]).
    static BUILD_KV_CACHE: Cell<KvCacheType> = const { Cell::new(KvCacheType::F32) };
}

/// Runs `build` with every [`Attention`] it creates holding keys and values as `kv_cache` says
/// (the loader's choice, made once for the whole model).
pub fn while_building<R>(kv_cache: KvCacheType, build: impl FnOnce() -> R) -> R {
    struct Restore(KvCacheType);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUILD_KV_CACHE.with(|k| k.set(self.0));
        }
    }
    let _restore = Restore(BUILD_KV_CACHE.with(|k| k.replace(kv_cache)));
    build()
}

/// `t` rounded to f16 (to nearest, ties to even, as ggml-cpu converts) and widened back.
fn rounded_to_f16(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F16)?.to_dtype(t.dtype())
}

/// How the query, key and value projections are stored.
#[derive(Clone, Debug)]
pub enum QkvProjection {
    Separate {
        q: Linear,
        k: Linear,
        v: Linear,
    },
    /// One matrix whose output is `[q | k | v]` (GPT-2 `c_attn`, Phi-3 `qkv_proj`).
    Concatenated(Linear),
    /// One matrix whose output is laid out per head as `[head, (q, k, v), d_head]`
    /// (GPT-NeoX `query_key_value`).
    InterleavedPerHead(Linear),
}

/// Normalisation of queries and keys before rotary.
#[derive(Clone, Debug)]
pub enum QkNorm {
    None,
    /// Over each head's `d_head` (Qwen 3, Gemma 3).
    PerHead {
        q: Norm,
        k: Norm,
    },
    /// Over the whole projection, all heads at once (OLMo 2).
    Full {
        q: Norm,
        k: Norm,
    },
}

/// The shape and arithmetic of one attention layer.
#[derive(Clone, Debug)]
pub struct AttentionConfig {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    /// Rotary embedding, if positions are rotary.
    pub rope: Option<RopeConfig>,
    /// Multiplier of q·k (usually 1/sqrt(d_head)).
    pub scale: f64,
    /// `cap × tanh(scores / cap)` before masking (Gemma 2).
    pub softcap: Option<f64>,
    /// Which earlier keys each query sees (sliding: Mistral, Gemma 2's local layers; chunked:
    /// Llama 4).
    pub window: Window,
}

/// Attention temperature tuning (Llama 4, arXiv 2501.19399): the query at position p is
/// multiplied by `1 + attn_scale · ln(1 + ⌊(p + 1) / floor_scale⌋)`, sharpening attention
/// over long contexts in layers without rotary positions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryTemperature {
    pub floor_scale: f64,
    pub attn_scale: f64,
}

impl QueryTemperature {
    /// The multipliers of positions `start..start + len`, [1, len, 1, 1], computed in f32 as
    /// the reference does.
    fn scales(&self, start: usize, len: usize, device: &candle_core::Device) -> Result<Tensor> {
        let (floor, scale) = (self.floor_scale as f32, self.attn_scale as f32);
        let v: Vec<f32> = (start..start + len)
            .map(|p| ((p as f32 + 1.0) / floor).floor().ln_1p() * scale + 1.0)
            .collect();
        Tensor::from_vec(v, (1, len, 1, 1), device)
    }
}

/// A self-attention layer.
#[derive(Clone, Debug)]
pub struct Attention {
    pub cfg: AttentionConfig,
    pub qkv: QkvProjection,
    pub qk_norm: QkNorm,
    pub o: Linear,
    /// One learned logit per head that joins every query's softmax as an extra key with no
    /// value (gpt-oss' `sinks`): a head can attend to nothing. `hook_pattern` leaves it out,
    /// so a row sums to less than 1.
    pub sinks: Option<Tensor>,
    /// Queries scaled up with their position (Llama 4's no-rope layers).
    pub query_temperature: Option<QueryTemperature>,
    /// The query projection also yields, per head, a gate after the head's `d_head` query
    /// values; the head's output is multiplied by its sigmoid before `W_O` (Qwen3-Next).
    pub output_gate: bool,
    inv_freq: Vec<f32>,
    /// Multiplier of cos and sin (YaRN).
    cos_sin_scale: f64,
    /// How keys and values are held (see [`KvCacheType`]).
    kv_cache: KvCacheType,
}

impl Attention {
    pub fn new(cfg: AttentionConfig, qkv: QkvProjection, qk_norm: QkNorm, o: Linear) -> Self {
        let inv_freq = cfg
            .rope
            .as_ref()
            .map(|r| r.inv_freq().into_iter().map(|f| f as f32).collect())
            .unwrap_or_default();
        let cos_sin_scale = cfg.rope.as_ref().map_or(1.0, RopeConfig::cos_sin_scale);
        Attention {
            cfg,
            qkv,
            qk_norm,
            o,
            sinks: None,
            query_temperature: None,
            output_gate: false,
            inv_freq,
            cos_sin_scale,
            kv_cache: BUILD_KV_CACHE.with(Cell::get),
        }
    }

    /// With queries scaled by position as `temperature` says.
    pub fn with_query_temperature(self, temperature: QueryTemperature) -> Self {
        Attention {
            query_temperature: Some(temperature),
            ..self
        }
    }

    /// With a sigmoid output gate per head from the query projection.
    pub fn with_output_gate(self) -> Self {
        Attention {
            output_gate: true,
            ..self
        }
    }

    /// With attention sinks `sinks` [n_heads].
    pub fn with_sinks(self, sinks: Tensor) -> Self {
        Attention {
            sinks: Some(sinks),
            ..self
        }
    }

    /// q [b, t, H·d], k and v [b, t, H_kv·d].
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let c = &self.cfg;
        let (q_size, kv_size) = (c.n_heads * c.d_head, c.n_kv_heads * c.d_head);
        match &self.qkv {
            QkvProjection::Separate { q, k, v } => {
                Ok((q.forward(x)?, k.forward(x)?, v.forward(x)?))
            }
            QkvProjection::Concatenated(w) => {
                let y = w.forward(x)?;
                Ok((
                    y.narrow(2, 0, q_size)?,
                    y.narrow(2, q_size, kv_size)?,
                    y.narrow(2, q_size + kv_size, kv_size)?,
                ))
            }
            QkvProjection::InterleavedPerHead(w) => {
                let (b, t, _) = x.dims3()?;
                let y = w.forward(x)?.reshape((b, t, c.n_heads, 3 * c.d_head))?;
                let part = |i: usize| -> Result<Tensor> {
                    y.narrow(3, i * c.d_head, c.d_head)?.reshape((b, t, q_size))
                };
                Ok((part(0)?, part(1)?, part(2)?))
            }
        }
    }

    /// The query (`which` 0), key (1) or value (2) projection as `([d_model, heads · d_head],
    /// [heads · d_head])` in f32, cut out of a fused projection, the output gate left out.
    fn projection_in_out(&self, which: usize) -> Result<(Tensor, Tensor)> {
        let c = &self.cfg;
        let (q_size, kv_size) = (c.n_heads * c.d_head, c.n_kv_heads * c.d_head);
        let (w, b) = match &self.qkv {
            QkvProjection::Separate { q, k, v } => crate::weights::linear_in_out([q, k, v][which])?,
            QkvProjection::Concatenated(l) => {
                let (w, b) = crate::weights::linear_in_out(l)?;
                let (start, len) =
                    [(0, q_size), (q_size, kv_size), (q_size + kv_size, kv_size)][which];
                (w.narrow(1, start, len)?, b.narrow(0, start, len)?)
            }
            QkvProjection::InterleavedPerHead(l) => {
                let (w, b) = crate::weights::linear_in_out(l)?;
                per_head_part(&w, &b, c.n_heads, 3 * c.d_head, which * c.d_head, c.d_head)?
            }
        };
        if which == 0 && self.output_gate {
            // [q_h | gate_h] per head: the query half.
            return per_head_part(&w, &b, c.n_heads, 2 * c.d_head, 0, c.d_head);
        }
        Ok((w, b))
    }

    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        match &self.cfg.rope {
            Some(r) if r.interleaved => ops::rope_interleaved(x, cos, sin),
            _ => ops::rope_rotate_half(x, cos, sin),
        }
    }
}

/// Softmax of `scores` [b, heads, q, k] with one more logit per head (`sinks` [heads]) as an
/// extra column, which is then dropped.
/// Columns `start .. start + len` of each head's `width` in a projection laid out head by head:
/// `([d_model, heads · width], [heads · width])` → `([d_model, heads · len], [heads · len])`.
fn per_head_part(
    w: &Tensor,
    b: &Tensor,
    heads: usize,
    width: usize,
    start: usize,
    len: usize,
) -> Result<(Tensor, Tensor)> {
    let d_model = w.dim(0)?;
    let w = w
        .reshape((d_model, heads, width))?
        .narrow(2, start, len)?
        .reshape((d_model, heads * len))?;
    let b = b
        .reshape((heads, width))?
        .narrow(1, start, len)?
        .reshape(heads * len)?;
    Ok((w, b))
}

fn softmax_with_sinks(scores: &Tensor, sinks: &Tensor) -> Result<Tensor> {
    let (b, h, q, k) = scores.dims4()?;
    let sink = sinks
        .to_dtype(scores.dtype())?
        .reshape((1, h, 1, 1))?
        .broadcast_as((b, h, q, 1))?;
    let all = Tensor::cat(&[scores, &sink], 3)?;
    ops::softmax_last_dim(&all)?.narrow(3, 0, k)
}

impl Attention {
    /// Queries and keys [b, pos, heads, d_head] through their norms, if any, each hooked as
    /// `attn.q_norm.hook_normalized` / `attn.k_norm.hook_normalized` (TransformerLens' names):
    /// per head in that shape, or over the whole projection as [b, pos, heads·d_head].
    fn normalize_qk(
        &self,
        q: Tensor,
        k: Tensor,
        i: usize,
        hooks: &mut Hooks,
    ) -> Result<(Tensor, Tensor)> {
        let (qn, kn, full) = match &self.qk_norm {
            QkNorm::None => return Ok((q, k)),
            QkNorm::PerHead { q, k } => (q, k, false),
            QkNorm::Full { q, k } => (q, k, true),
        };
        let mut norm = |x: Tensor, norm: &Norm, which: &str| -> Result<Tensor> {
            let shape = x.dims().to_vec();
            let x = if full { x.flatten_from(2)? } else { x };
            let x = norm.forward_hooked(&x, hooks, || format!("blocks.{i}.attn.{which}"))?;
            x.reshape(shape)
        };
        Ok((norm(q, qn, "q_norm")?, norm(k, kn, "k_norm")?))
    }
}

impl SelfAttention for Attention {
    fn forward(
        &self,
        x: &Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let i = ctx.layer;
        let (b, t, _) = x.dims3()?;
        let (mut q, k, v) = self.project(x)?;
        let mut gate = None;
        if self.output_gate {
            let both = q.reshape((b, t, c.n_heads, 2 * c.d_head))?;
            gate = Some(both.narrow(3, c.d_head, c.d_head)?);
            q = both
                .narrow(3, 0, c.d_head)?
                .reshape((b, t, c.n_heads * c.d_head))?;
        }
        // As in TransformerLens, hook_q / hook_k are the projections; their norms come after.
        let q = q.reshape((b, t, c.n_heads, c.d_head))?;
        let k = k.reshape((b, t, c.n_kv_heads, c.d_head))?;
        let v = v.reshape((b, t, c.n_kv_heads, c.d_head))?;
        let q = hooks.point(|| format!("blocks.{i}.attn.hook_q"), q)?;
        let k = hooks.point(|| format!("blocks.{i}.attn.hook_k"), k)?;
        let v = hooks.point(|| format!("blocks.{i}.attn.hook_v"), v)?;
        let (mut q, mut k) = self.normalize_qk(q, k, i, hooks)?;
        if c.rope.is_some() && !self.inv_freq.is_empty() {
            let (mut cos, mut sin) = ops::rope_tables(&self.inv_freq, ctx.offset, t, x.device())?;
            if self.cos_sin_scale != 1.0 {
                cos = (cos * self.cos_sin_scale)?;
                sin = (sin * self.cos_sin_scale)?;
            }
            q = self.rotate(&q, &cos, &sin)?;
            k = self.rotate(&k, &cos, &sin)?;
            q = hooks.point(|| format!("blocks.{i}.attn.hook_rot_q"), q)?;
            k = hooks.point(|| format!("blocks.{i}.attn.hook_rot_k"), k)?;
        }
        if let Some(temperature) = &self.query_temperature {
            let scales = temperature.scales(ctx.offset, t, x.device())?;
            q = q.broadcast_mul(&scales.to_dtype(q.dtype())?)?;
        }
        let tq = ctx.query_rows();
        if tq < t {
            q = q.narrow(1, t - tq, tq)?;
        }
        // [b, heads, pos, d_head] views for the batched matmuls (the kernels read strides;
        // the cache copies only the new positions into its buffers).
        let mut q = q.transpose(1, 2)?;
        let mut k = k.transpose(1, 2)?;
        let mut v = v.transpose(1, 2)?;
        // llama.cpp's F16 cache: keys and values stored rounded (and kept in f16 here too),
        // the queries rounded as ggml converts them for `q·Kᵀ`.
        let f16_cache = self.kv_cache == KvCacheType::F16 && k.dtype() == DType::F32;
        if f16_cache {
            k = k.to_dtype(DType::F16)?;
            v = v.to_dtype(DType::F16)?;
            q = rounded_to_f16(&q)?;
        }
        if let Some(cache) = kv {
            (k, v) = cache.append(i, &k, &v, 2)?;
        }

        // Scores and softmax in f32 for half-precision models, as the references upcast.
        let dtype = q.dtype();
        let acc = ops::accumulation_dtype(dtype);
        let raw = ops::grouped_matmul(&ops::to_accumulation(&q)?, &ops::to_accumulation(&k)?.t()?)?;
        let mask = ctx.mask(c.window, k.dim(2)?)?;
        let scores_name = || format!("blocks.{i}.attn.hook_attn_scores");
        let pattern = if c.softcap.is_none() && self.sinks.is_none() && !hooks.watches(scores_name)
        {
            // No one looks at the scores: scale, mask and softmax in one pass.
            ops::attention_softmax(&raw, c.scale, mask.as_ref())?
        } else {
            let mut scores = (raw * c.scale)?;
            if let Some(cap) = c.softcap {
                scores = ops::soft_cap(&scores, cap)?;
            }
            if let Some(mask) = &mask {
                scores = scores.broadcast_add(&mask.to_dtype(acc)?)?;
            }
            let scores = hooks.point(scores_name, scores)?;
            match &self.sinks {
                None => ops::softmax_last_dim(&scores)?,
                Some(sinks) => softmax_with_sinks(&scores, sinks)?,
            }
        };
        let mut pattern = hooks.point(|| format!("blocks.{i}.attn.hook_pattern"), pattern)?;
        if f16_cache {
            // ggml converts the attention weights to f16 for their product with f16 values.
            pattern = rounded_to_f16(&pattern)?;
        }
        let mut z = ops::grouped_matmul(&pattern, &ops::to_accumulation(&v)?)?
            .to_dtype(dtype)?
            .transpose(1, 2)?;
        if let Some(gate) = gate {
            let gate = ops::sigmoid(&gate.narrow(1, t - tq, tq)?)?;
            let gate = hooks.point(|| format!("blocks.{i}.attn.hook_gate"), gate)?;
            z = (z * gate)?;
        }
        let z = hooks.point(|| format!("blocks.{i}.attn.hook_z"), z)?;
        let z = z.reshape((b, tq, c.n_heads * c.d_head))?;
        self.o.forward(&z)
    }

    fn parameter_names(&self) -> Vec<&'static str> {
        let mut names = vec!["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"];
        if let QkNorm::PerHead { q, .. } | QkNorm::Full { q, .. } = &self.qk_norm {
            names.extend(["q_norm.w", "k_norm.w"]);
            if q.bias.is_some() {
                names.extend(["q_norm.b", "k_norm.b"]);
            }
        }
        names
    }

    fn parameter(&self, field: &str) -> Result<Option<Tensor>> {
        if let Some((norm, field)) = field.split_once('.') {
            return match (&self.qk_norm, norm) {
                (QkNorm::PerHead { q, .. } | QkNorm::Full { q, .. }, "q_norm") => {
                    crate::weights::norm_parameter(q, field)
                }
                (QkNorm::PerHead { k, .. } | QkNorm::Full { k, .. }, "k_norm") => {
                    crate::weights::norm_parameter(k, field)
                }
                _ => Ok(None),
            };
        }
        let which = match field {
            "W_O" => return self.w_o().map(Some),
            "b_O" => return self.b_o().map(Some),
            "W_Q" | "b_Q" => 0,
            "W_K" | "b_K" => 1,
            "W_V" | "b_V" => 2,
            _ => return Ok(None),
        };
        let (w, b) = self.projection_in_out(which)?;
        let c = &self.cfg;
        let repeat = if which == 0 {
            1
        } else {
            c.n_heads / c.n_kv_heads.max(1)
        };
        let (w, b) = crate::weights::per_head(&w, &b, c.d_head, repeat)?;
        Ok(Some(if field.starts_with('W') { w } else { b }))
    }

    fn w_o(&self) -> Result<Tensor> {
        let c = &self.cfg;
        let d_model = self.o.out_dim()?;
        self.o
            .weight_in_out()?
            .to_dtype(DType::F32)?
            .reshape((c.n_heads, c.d_head, d_model))
    }

    fn b_o(&self) -> Result<Tensor> {
        match &self.o.bias {
            Some(b) => b.to_dtype(DType::F32),
            None => Tensor::zeros(self.o.out_dim()?, DType::F32, &self.o.weight.device()),
        }
    }
}
