//! The shared decoder engine: [`DecoderBlock`] and [`DecoderModel`].
//!
//! Every decoder family is this one computation, parameterised: token (and optionally learned
//! position) embeddings, a stack of blocks, a final norm and an unembedding. A block is
//!
//! ```text
//! resid_pre ─┬─ ln1 ─ attention ─ attn_out ─ post_attn_norm? ─┐
//!            └───────────────────────────────────────────── + ─ resid_mid ─┬─ ln2 ─ mlp ─ mlp_out ─ post_mlp_norm? ─┐
//!                                                                           └──────────────────────────────────── + ─ resid_post
//! ```
//!
//! or, with a parallel residual (GPT-NeoX, GPT-J, Phi-2), `resid_post = resid_pre +
//! attn(ln1(resid_pre)) + mlp(ln2(resid_pre))` with no `resid_mid`. Attention and MLP are trait
//! objects ([`SelfAttention`], [`FeedForward`]) so that families with their own attention
//! (latent attention) or feed-forward (mixtures of experts) reuse the rest unchanged. A family
//! file only reads its config and weight names and assembles these parts.
//!
//! Hooks: `hook_embed`, `hook_pos_embed`, `blocks.{i}.hook_resid_pre`, `ln1.hook_scale` /
//! `ln1.hook_normalized` (each norm has both: the scale, and the input divided by it before the
//! weight and bias), `ln1_post.*` (post-norms), `hook_attn_out`, `hook_resid_mid`, `ln2.*`,
//! `ln2_post.*`, `hook_mlp_out`, `hook_resid_post`, `ln_final.*`, `logits`; attention and MLP
//! add their own.
//! As in TransformerLens, `hook_attn_out` and `hook_mlp_out` are what joins the residual stream:
//! after the post-norm where a family has one.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Result, Tensor};

use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::layers::{Embedding, Linear, Norm};
use crate::model::{Model, ModelInfo};
use crate::ops;
use crate::weights::{self, WeightName};

/// Which earlier keys a query may attend to, besides causality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Window {
    /// Every earlier key.
    #[default]
    Causal,
    /// Keys less than this many positions back (Mistral, Gemma 2's local layers).
    Sliding(usize),
    /// Keys in the query's own block of this many positions (Llama 4's chunked layers).
    Chunked(usize),
}

impl Window {
    /// A sliding window where `size` is given, else causal.
    pub fn sliding(size: Option<usize>) -> Window {
        size.map_or(Window::Causal, Window::Sliding)
    }

    /// Whether the query at position `q` may attend to the key at `k`.
    pub fn allows(self, q: usize, k: usize) -> bool {
        k <= q
            && match self {
                Window::Causal => true,
                Window::Sliding(w) => q - k < w,
                Window::Chunked(c) => c == 0 || k / c == q / c,
            }
    }
}

/// What one forward pass shares with its layers: the current layer, the position offset, and
/// the attention masks (built once per pass and per window size).
pub struct LayerContext {
    /// Index of the block being run.
    pub layer: usize,
    /// Positions already in the KV cache before this pass.
    pub offset: usize,
    /// New positions in this pass.
    pub len: usize,
    /// Attention computes its output for the last this many new positions only (keys and
    /// values for all of them), and the block goes on with those positions; None = all.
    pub queries: Option<usize>,
    batch: usize,
    /// 1 = real token, per batch row, over all `offset + len` key positions.
    padding: Option<Vec<u8>>,
    masks: HashMap<(Window, usize, usize), Option<Tensor>>,
    device: Device,
}

impl LayerContext {
    /// `attention_mask` [batch, len] or [batch, offset + len] (1 = token, 0 = padding).
    pub fn new(
        batch: usize,
        offset: usize,
        len: usize,
        attention_mask: Option<&Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let padding = match attention_mask {
            None => None,
            Some(m) => {
                let (mb, mlen) = m.dims2()?;
                if mb != batch || (mlen != len && mlen != offset + len) {
                    candle_core::bail!(
                        "attention mask is {:?}, expected [{batch}, {len}] or [{batch}, {}]",
                        m.dims(),
                        offset + len
                    );
                }
                let rows = m.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                let mut flat = Vec::with_capacity(batch * (offset + len));
                for row in rows {
                    // Cached positions not covered by the mask are real tokens.
                    flat.extend(std::iter::repeat_n(1u8, offset + len - mlen));
                    flat.extend(row.iter().map(|&v| (v != 0) as u8));
                }
                if flat.iter().all(|&v| v == 1) {
                    None
                } else {
                    Some(flat)
                }
            }
        };
        Ok(LayerContext {
            layer: 0,
            offset,
            len,
            queries: None,
            batch,
            padding,
            masks: HashMap::new(),
            device: device.clone(),
        })
    }

    /// The positions attention computes outputs for: the last [`query_rows`](Self::query_rows)
    /// of the new ones.
    pub fn query_rows(&self) -> usize {
        self.queries.map_or(self.len, |q| q.min(self.len))
    }

    /// The additive causal mask [batch or 1, 1, queries, keys] (0 where a query may attend,
    /// the most negative f32 where not), or None when nothing is masked; the queries are the
    /// last [`query_rows`](Self::query_rows) positions.
    pub fn mask(&mut self, window: Window, keys: usize) -> Result<Option<Tensor>> {
        let t = self.query_rows();
        if let Some(m) = self.masks.get(&(window, keys, t)) {
            return Ok(m.clone());
        }
        let offset = keys.saturating_sub(t);
        let allowed = |q: usize, k: usize| window.allows(offset + q, k);
        let any_masked = (0..t).any(|q| (0..keys).any(|k| !allowed(q, k)));
        let mask = if self.padding.is_none() && !any_masked {
            None
        } else {
            let rows = if self.padding.is_some() {
                self.batch
            } else {
                1
            };
            let mut data = vec![0f32; rows * t * keys];
            for r in 0..rows {
                for q in 0..t {
                    for k in 0..keys {
                        let pad_ok = self.padding.as_ref().is_none_or(|p| p[r * keys + k] == 1);
                        if !(allowed(q, k) && pad_ok) {
                            data[(r * t + q) * keys + k] = f32::MIN;
                        }
                    }
                }
            }
            Some(Tensor::from_vec(data, (rows, 1, t, keys), &self.device)?)
        };
        self.masks.insert((window, keys, t), mask.clone());
        Ok(mask)
    }
}

/// A self-attention layer: normalised residual [batch, pos, d_model] → attention output
/// (after the output projection, before any post-attention norm).
pub trait SelfAttention: Send + Sync {
    fn forward(
        &self,
        x: &Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor>;
    /// `W_O` [n_heads, d_head, d_model] in f32.
    fn w_o(&self) -> Result<Tensor>;
    /// `b_O` [d_model] in f32 (zeros if none).
    fn b_o(&self) -> Result<Tensor>;
    /// Whether the layer carries a recurrent state from position to position (linear
    /// attention, Mamba): a pass cannot then resume from a prefix of the KV cache.
    fn recurrent(&self) -> bool {
        false
    }
    /// The weights [`parameter`](Self::parameter) gives, by TransformerLens' field names
    /// (`W_Q`, `b_O`, …; see [`crate::weights`]).
    fn parameter_names(&self) -> Vec<&'static str> {
        vec!["W_O", "b_O"]
    }
    /// The weight TransformerLens calls `attn.{field}`, in its layout, in f32.
    fn parameter(&self, field: &str) -> Result<Option<Tensor>> {
        match field {
            "W_O" => self.w_o().map(Some),
            "b_O" => self.b_o().map(Some),
            _ => Ok(None),
        }
    }
}

/// A feed-forward layer: normalised residual → MLP output (before any post-MLP norm).
pub trait FeedForward: Send + Sync {
    fn forward(&self, x: &Tensor, layer: usize, hooks: &mut Hooks) -> Result<Tensor>;
    /// The weights [`parameter`](Self::parameter) gives, by TransformerLens' field names
    /// (`W_in`, `b_out`, …; see [`crate::weights`]); none for a mixture of experts.
    fn parameter_names(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// The weight TransformerLens calls `mlp.{field}`, in its layout, in f32.
    fn parameter(&self, field: &str) -> Result<Option<Tensor>> {
        let _ = field;
        Ok(None)
    }
}

/// How attention and MLP outputs join the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    Sequential,
    /// Both read `resid_pre` and are added together (GPT-NeoX `use_parallel_residual`).
    Parallel,
}

/// One decoder layer. Hybrids whose layers hold one sublayer each (Nemotron-H: a Mamba,
/// attention, MLP or MoE block) leave out the other: a block without attention has no
/// `hook_attn_out` (nor `ln1`), one without an MLP no `hook_mlp_out`, and neither has
/// `hook_resid_mid`.
pub struct DecoderBlock {
    /// Norm before attention (absent in OLMo 2).
    pub ln1: Option<Norm>,
    /// The token mixer: attention, or what takes its place (linear attention, Mamba).
    pub attn: Option<Box<dyn SelfAttention>>,
    /// Norm of the attention output before it joins the residual (OLMo 2, Gemma 2, GLM-4).
    pub post_attn_norm: Option<Norm>,
    /// Norm before the MLP (absent in OLMo 2).
    pub ln2: Option<Norm>,
    pub mlp: Option<Box<dyn FeedForward>>,
    /// Norm of the MLP output before it joins the residual.
    pub post_mlp_norm: Option<Norm>,
    pub residual: Residual,
}

/// Applies a post-norm, hooked as `blocks.{i}.{which}.hook_normalized` (TransformerLens'
/// `ln1_post` / `ln2_post`). `hook_attn_out` / `hook_mlp_out` come after it, as in
/// TransformerLens (its HookedTransformer and its bridge alike): they are what joins the
/// residual stream, which is what SAEs on those hooks (Gemma Scope's) were trained on.
fn post_norm(
    hooks: &mut Hooks,
    norm: &Option<Norm>,
    i: usize,
    which: &str,
    x: Tensor,
) -> Result<Tensor> {
    match norm {
        Some(n) => n.forward_hooked(&x, hooks, || format!("blocks.{i}.{which}")),
        None => Ok(x),
    }
}

impl DecoderBlock {
    /// A block with only a token mixer or only an MLP: `resid_pre + sublayer(norm(resid_pre))`.
    fn single_sublayer(
        &self,
        resid_pre: Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let i = ctx.layer;
        let normed = |hooks: &mut Hooks, norm: &Option<Norm>, which: &str| match norm {
            Some(n) => n.forward_hooked(&resid_pre, hooks, || format!("blocks.{i}.{which}")),
            None => Ok(resid_pre.clone()),
        };
        let (out, resid_pre) = match (&self.attn, &self.mlp) {
            (Some(attn), None) => {
                let out = attn.forward(&normed(hooks, &self.ln1, "ln1")?, ctx, hooks, kv)?;
                let out = post_norm(hooks, &self.post_attn_norm, i, "ln1_post", out)?;
                let out = hooks.point(|| format!("blocks.{i}.hook_attn_out"), out)?;
                let (t, tq) = (resid_pre.dim(1)?, out.dim(1)?);
                (out, resid_pre.narrow(1, t - tq, tq)?)
            }
            (None, Some(mlp)) => {
                // Only the last positions go on when the pass answers for those alone.
                let tq = ctx.query_rows();
                let t = resid_pre.dim(1)?;
                let resid_pre = resid_pre.narrow(1, t - tq, tq)?;
                let input = normed(hooks, &self.ln2, "ln2")?.narrow(1, t - tq, tq)?;
                let out = mlp.forward(&input, i, hooks)?;
                let out = post_norm(hooks, &self.post_mlp_norm, i, "ln2_post", out)?;
                let out = hooks.point(|| format!("blocks.{i}.hook_mlp_out"), out)?;
                (out, resid_pre)
            }
            _ => candle_core::bail!("block {i} has neither a token mixer nor an MLP"),
        };
        hooks.point(|| format!("blocks.{i}.hook_resid_post"), (resid_pre + out)?)
    }

    pub fn forward(
        &self,
        x: Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let i = ctx.layer;
        let resid_pre = hooks.point(|| format!("blocks.{i}.hook_resid_pre"), x)?;
        let normed = |hooks: &mut Hooks, norm: &Option<Norm>, which: &str, x: &Tensor| match norm {
            Some(n) => n.forward_hooked(x, hooks, || format!("blocks.{i}.{which}")),
            None => Ok(x.clone()),
        };
        let (Some(attn), Some(mlp)) = (&self.attn, &self.mlp) else {
            return self.single_sublayer(resid_pre, ctx, hooks, kv);
        };
        let attn_in = normed(hooks, &self.ln1, "ln1", &resid_pre)?;
        let attn_out = attn.forward(&attn_in, ctx, hooks, kv)?;
        let attn_out = post_norm(hooks, &self.post_attn_norm, i, "ln1_post", attn_out)?;
        let attn_out = hooks.point(|| format!("blocks.{i}.hook_attn_out"), attn_out)?;
        // With ctx.queries, attention answered for the last positions only: so does the rest.
        let (t, tq) = (resid_pre.dim(1)?, attn_out.dim(1)?);
        let resid_pre = if tq < t {
            resid_pre.narrow(1, t - tq, tq)?
        } else {
            resid_pre
        };
        let resid_post = match self.residual {
            Residual::Sequential => {
                let resid_mid = hooks.point(
                    || format!("blocks.{i}.hook_resid_mid"),
                    (&resid_pre + &attn_out)?,
                )?;
                let mlp_in = normed(hooks, &self.ln2, "ln2", &resid_mid)?;
                let mlp_out = mlp.forward(&mlp_in, i, hooks)?;
                let mlp_out = post_norm(hooks, &self.post_mlp_norm, i, "ln2_post", mlp_out)?;
                let mlp_out = hooks.point(|| format!("blocks.{i}.hook_mlp_out"), mlp_out)?;
                (resid_mid + mlp_out)?
            }
            Residual::Parallel => {
                let mlp_in = normed(hooks, &self.ln2, "ln2", &resid_pre)?;
                let mlp_out = mlp.forward(&mlp_in, i, hooks)?;
                let mlp_out = post_norm(hooks, &self.post_mlp_norm, i, "ln2_post", mlp_out)?;
                let mlp_out = hooks.point(|| format!("blocks.{i}.hook_mlp_out"), mlp_out)?;
                ((resid_pre + attn_out)? + mlp_out)?
            }
        };
        hooks.point(|| format!("blocks.{i}.hook_resid_post"), resid_post)
    }
}

/// A decoder-only language model assembled from parts.
pub struct DecoderModel {
    pub info: ModelInfo,
    pub embed: Embedding,
    /// Learned absolute positions (GPT-2); None when positions are rotary.
    pub pos_embed: Option<Embedding>,
    /// Embeddings are multiplied by this (Gemma: sqrt(d_model), in the model dtype).
    pub embed_scale: Option<f64>,
    pub blocks: Vec<DecoderBlock>,
    pub ln_final: Norm,
    /// [d_vocab, d_model] (shares the embedding's tensor when tied).
    pub lm_head: Linear,
    /// `cap × tanh(logits / cap)` (Gemma 2).
    pub final_softcap: Option<f64>,
}

impl DecoderModel {
    /// The forward pass; with `last_only` the residual stream is cut to the last position
    /// before the final norm and the unembedding.
    fn pass(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        hooks: &mut Hooks,
        mut kv: Option<&mut KvCache>,
        last_only: bool,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let offset = kv.as_ref().map_or(0, |c| c.len());
        let device = input_ids.device();
        let mut x = self.embed.lookup(input_ids)?;
        if let Some(scale) = self.embed_scale {
            let s = Tensor::new(scale as f32, device)?.to_dtype(x.dtype())?;
            x = x.broadcast_mul(&s)?;
        }
        let mut x = hooks.point(|| "hook_embed".to_string(), x)?;
        if let Some(pos) = &self.pos_embed {
            let n_positions = pos.weight.dims()[0];
            if offset + t > n_positions {
                candle_core::bail!(
                    "{} positions requested but the model has learned embeddings for {n_positions}",
                    offset + t
                );
            }
            let positions = Tensor::arange(offset as u32, (offset + t) as u32, device)?;
            let p = pos
                .lookup(&positions)?
                .unsqueeze(0)?
                .broadcast_as(x.shape())?
                .contiguous()?;
            let p = hooks.point(|| "hook_pos_embed".to_string(), p)?;
            x = (x + p)?;
        }
        let mut ctx = LayerContext::new(b, offset, t, attention_mask, device)?;
        x = self.blocks_from(0, x, &mut ctx, hooks, kv.as_deref_mut())?;
        if last_only {
            x = x.narrow(1, t - 1, 1)?;
        }
        let logits = self.finish(&x, hooks)?;
        if let Some(cache) = kv {
            cache.advance(t);
        }
        Ok(logits)
    }
}

impl DecoderModel {
    /// Runs blocks `first..` on the residual stream `x`.
    fn blocks_from(
        &self,
        first: usize,
        mut x: Tensor,
        ctx: &mut LayerContext,
        hooks: &mut Hooks,
        mut kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        for (i, block) in self.blocks.iter().enumerate().skip(first) {
            ctx.layer = i;
            x = block.forward(x, ctx, hooks, kv.as_deref_mut())?;
        }
        Ok(x)
    }
}

impl Model for DecoderModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        self.pass(input_ids, attention_mask, hooks, kv, false)
    }

    fn forward_last(
        &self,
        input_ids: &Tensor,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        self.pass(input_ids, None, hooks, kv, true)
    }

    fn forward_from_layer(
        &self,
        resid: &Tensor,
        first_layer: usize,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
        last_rows: Option<usize>,
    ) -> Result<Tensor> {
        if first_layer > self.blocks.len() {
            candle_core::bail!(
                "layer {first_layer} out of range (the model has {})",
                self.blocks.len()
            );
        }
        let (b, t, _) = resid.dims3()?;
        let offset = kv.as_ref().map_or(0, |c| c.len());
        let mut ctx = LayerContext::new(b, offset, t, None, resid.device())?;
        let mut kv = kv;
        let n = self.blocks.len();
        // in the dtype the pass's own stream has (the embeddings'), whatever the caller's
        let stream = self
            .embed
            .lookup(&Tensor::zeros(1, DType::U32, resid.device())?)?
            .dtype();
        let mut x = resid.to_dtype(stream)?;
        for (i, block) in self.blocks.iter().enumerate().skip(first_layer) {
            ctx.layer = i;
            if i + 1 == n {
                ctx.queries = last_rows;
            }
            x = block.forward(x, &mut ctx, hooks, kv.as_deref_mut())?;
        }
        if let Some(cache) = kv {
            cache.advance(t);
        }
        Ok(x)
    }

    fn starts_midway(&self) -> bool {
        !self
            .blocks
            .iter()
            .any(|b| b.attn.as_ref().is_some_and(|a| a.recurrent()))
    }

    fn finish(&self, resid: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let normed = self
            .ln_final
            .forward_hooked(resid, hooks, || "ln_final".to_string())?;
        let logits = self.unembed(&normed)?;
        hooks.point(|| "logits".to_string(), logits)
    }

    fn final_norm(&self, resid: &Tensor) -> Result<Tensor> {
        self.ln_final.forward(resid)
    }

    fn normalization_type(&self) -> Option<&'static str> {
        Some(self.ln_final.kind.transformerlens_type())
    }

    fn unembed(&self, normed: &Tensor) -> Result<Tensor> {
        let logits = self.lm_head.forward(normed)?;
        // f32 logits, except that f64 models (gradient checks) keep f64.
        let logits = match logits.dtype() {
            DType::F64 => logits,
            _ => logits.to_dtype(DType::F32)?,
        };
        match self.final_softcap {
            Some(cap) => ops::soft_cap(&logits, cap),
            None => Ok(logits),
        }
    }

    fn final_softcap(&self) -> Option<f64> {
        self.final_softcap
    }

    fn w_u(&self) -> Result<Tensor> {
        self.lm_head.weight_in_out()?.to_dtype(DType::F32)
    }

    fn w_o(&self, layer: usize) -> Result<Tensor> {
        self.attention(layer)?.w_o()
    }

    fn b_o(&self, layer: usize) -> Result<Tensor> {
        self.attention(layer)?.b_o()
    }

    fn parameter_names(&self) -> Vec<String> {
        let mut names = vec!["embed.W_E".to_string()];
        if self.pos_embed.is_some() {
            names.push("pos_embed.W_pos".into());
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let mut part = |part: &str, fields: &[&str]| {
                names.extend(fields.iter().map(|f| format!("blocks.{i}.{part}.{f}")));
            };
            for (name, norm) in block.norms() {
                part(name, weights::norm_fields(norm));
            }
            if let Some(attn) = &block.attn {
                part("attn", &attn.parameter_names());
            }
            if let Some(mlp) = &block.mlp {
                part("mlp", &mlp.parameter_names());
            }
        }
        names.extend(
            weights::norm_fields(&self.ln_final)
                .iter()
                .map(|f| format!("ln_final.{f}")),
        );
        names.extend(["unembed.W_U".to_string(), "unembed.b_U".to_string()]);
        names
    }

    fn parameter(&self, name: &str) -> Result<Option<Tensor>> {
        let f32 = |t: Tensor| t.to_dtype(DType::F32).map(Some);
        match WeightName::parse(name) {
            WeightName::Top("embed.W_E") => {
                // As TransformerLens holds it: with the scale the pass applies (Gemma's
                // √d_model, rounded to the model's dtype as there), so `W_E[ids]` is `hook_embed`.
                let w = self.embed.weight.tensor()?;
                match self.embed_scale {
                    Some(scale) => {
                        let s = Tensor::new(scale as f32, w.device())?.to_dtype(w.dtype())?;
                        f32(w.broadcast_mul(&s)?)
                    }
                    None => f32(w),
                }
            }
            WeightName::Top("pos_embed.W_pos") => match &self.pos_embed {
                Some(p) => f32(p.weight.tensor()?),
                None => Ok(None),
            },
            WeightName::Top("unembed.W_U") => self.w_u().map(Some),
            WeightName::Top("unembed.b_U") => Ok(Some(weights::linear_in_out(&self.lm_head)?.1)),
            WeightName::Top(name) => match name.strip_prefix("ln_final.") {
                Some(field) => weights::norm_parameter(&self.ln_final, field),
                None => Ok(None),
            },
            WeightName::Block { layer, part, field } => {
                let Some(block) = self.blocks.get(layer) else {
                    return Ok(None);
                };
                match part {
                    "attn" => match &block.attn {
                        Some(attn) => attn.parameter(field),
                        None => Ok(None),
                    },
                    "mlp" => match &block.mlp {
                        Some(mlp) => mlp.parameter(field),
                        None => Ok(None),
                    },
                    _ => match block.norms().find(|(n, _)| *n == part) {
                        Some((_, norm)) => weights::norm_parameter(norm, field),
                        None => Ok(None),
                    },
                }
            }
        }
    }
}

impl DecoderBlock {
    /// The block's norms by TransformerLens' names (`ln1`, `ln1_post`, `ln2`, `ln2_post`).
    fn norms(&self) -> impl Iterator<Item = (&'static str, &Norm)> {
        [
            ("ln1", &self.ln1),
            ("ln1_post", &self.post_attn_norm),
            ("ln2", &self.ln2),
            ("ln2_post", &self.post_mlp_norm),
        ]
        .into_iter()
        .filter_map(|(name, norm)| norm.as_ref().map(|n| (name, n)))
    }
}

impl DecoderModel {
    fn attention(&self, layer: usize) -> Result<&dyn SelfAttention> {
        self.block(layer)?
            .attn
            .as_deref()
            .ok_or_else(|| candle_core::Error::Msg(format!("layer {layer} has no attention")))
    }

    fn block(&self, layer: usize) -> Result<&DecoderBlock> {
        self.blocks.get(layer).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "layer {layer} out of range (the model has {})",
                self.blocks.len()
            ))
        })
    }
}
