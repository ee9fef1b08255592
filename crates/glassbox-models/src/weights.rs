//! Weights by TransformerLens' names and in its layouts, as its `HookedTransformer` exposes
//! them (`model.W_Q`, `model.blocks[0].attn.W_O`, `model.unembed.W_U`, …) for a model loaded
//! without weight processing (`from_pretrained_no_processing`): the checkpoint's numbers, in
//! float32.
//!
//! | name                          | shape                          |
//! |-------------------------------|--------------------------------|
//! | `embed.W_E`                   | [d_vocab, d_model]             |
//! | `pos_embed.W_pos`             | [n_ctx, d_model]               |
//! | `blocks.L.attn.W_Q` `W_K` `W_V` | [n_heads, d_model, d_head]   |
//! | `blocks.L.attn.b_Q` `b_K` `b_V` | [n_heads, d_head]            |
//! | `blocks.L.attn.W_O`           | [n_heads, d_head, d_model]     |
//! | `blocks.L.attn.b_O`           | [d_model]                      |
//! | `blocks.L.mlp.W_in` `W_gate`  | [d_model, d_mlp]               |
//! | `blocks.L.mlp.b_in`           | [d_mlp]                        |
//! | `blocks.L.mlp.W_out`          | [d_mlp, d_model]               |
//! | `blocks.L.mlp.b_out`          | [d_model]                      |
//! | `blocks.L.ln1.w` `b` (`ln2`, `ln1_post`, `ln2_post`), `ln_final.w` `b` | [d_model] |
//! | `blocks.L.attn.q_norm.w` `k_norm.w` | [d_head] (per head) or [heads · d_head] |
//! | `unembed.W_U`                 | [d_model, d_vocab]             |
//! | `unembed.b_U`                 | [d_vocab]                      |
//!
//! As in TransformerLens: a bias the checkpoint lacks is zeros; with grouped-query attention
//! `W_K` / `W_V` (and their biases) are repeated to every query head (`attn.W_K`, not
//! `attn._W_K`); a gated MLP's gate is `W_gate` and its linear branch `W_in`; a norm's `w`
//! is the factor it multiplies by (`1 + w` where the checkpoint stores `w`, as Gemma's);
//! `W_E` includes the scale the embeddings are multiplied by (Gemma's √d_model), so that
//! `W_E[ids]` is `hook_embed`.
//! With an adapter (`--adapter`) the weights are the adapted layers' effective ones.

use candle_core::{DType, Result, Tensor};

use crate::layers::{Linear, Norm, NormKind};

/// A weight name split at its block: `blocks.3.attn.W_Q` is `Block { layer: 3, part: "attn",
/// field: "W_Q" }` (`blocks.3.attn.q_norm.w` has the field `q_norm.w`); `unembed.W_U` is
/// `Top("unembed.W_U")`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightName<'a> {
    Top(&'a str),
    Block {
        layer: usize,
        part: &'a str,
        field: &'a str,
    },
}

impl<'a> WeightName<'a> {
    pub fn parse(name: &'a str) -> WeightName<'a> {
        let block = name.strip_prefix("blocks.").and_then(|rest| {
            let (layer, rest) = rest.split_once('.')?;
            let (part, field) = rest.split_once('.')?;
            Some(WeightName::Block {
                layer: layer.parse().ok()?,
                part,
                field,
            })
        });
        block.unwrap_or(WeightName::Top(name))
    }
}

/// A linear layer as `([in, out], [out])` in f32, the bias zeros where it has none.
pub fn linear_in_out(linear: &Linear) -> Result<(Tensor, Tensor)> {
    let w = linear.weight_in_out()?.to_dtype(DType::F32)?;
    let out = w.dim(1)?;
    let b = match &linear.bias {
        Some(b) => b.to_dtype(DType::F32)?,
        None => Tensor::zeros(out, DType::F32, w.device())?,
    };
    Ok((w, b))
}

/// `[d_model, heads · d_head]` → `[heads, d_model, d_head]`, `[heads · d_head]` →
/// `[heads, d_head]`, each head repeated `repeat` times in a row (grouped-query attention's
/// key and value heads, as `repeat_interleave`).
pub fn per_head(w: &Tensor, b: &Tensor, d_head: usize, repeat: usize) -> Result<(Tensor, Tensor)> {
    let d_model = w.dim(0)?;
    let heads = w.dim(1)? / d_head;
    let w = w.reshape((d_model, heads, d_head))?.transpose(0, 1)?;
    let b = b.reshape((heads, d_head))?;
    if repeat == 1 {
        return Ok((w.contiguous()?, b));
    }
    let w = w
        .unsqueeze(1)?
        .broadcast_as((heads, repeat, d_model, d_head))?
        .reshape((heads * repeat, d_model, d_head))?;
    let b = b
        .unsqueeze(1)?
        .broadcast_as((heads, repeat, d_head))?
        .reshape((heads * repeat, d_head))?;
    Ok((w, b))
}

/// A norm's `w` (the factor it multiplies by) and `b` (LayerNorms only).
pub fn norm_parameter(norm: &Norm, field: &str) -> Result<Option<Tensor>> {
    match field {
        "w" => {
            let w = norm.weight.to_dtype(DType::F32)?;
            match norm.kind {
                NormKind::RmsNormPlusOne { .. } | NormKind::LayerNormPlusOne { .. } => {
                    Ok(Some((w + 1.0)?))
                }
                _ => Ok(Some(w)),
            }
        }
        "b" => norm
            .bias
            .as_ref()
            .map(|b| b.to_dtype(DType::F32))
            .transpose(),
        _ => Ok(None),
    }
}

/// The fields [`norm_parameter`] gives for `norm`.
pub fn norm_fields(norm: &Norm) -> &'static [&'static str] {
    if norm.bias.is_some() {
        &["w", "b"]
    } else {
        &["w"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_split_at_the_block() {
        assert_eq!(
            WeightName::parse("blocks.12.attn.W_Q"),
            WeightName::Block {
                layer: 12,
                part: "attn",
                field: "W_Q"
            }
        );
        assert_eq!(
            WeightName::parse("blocks.0.attn.q_norm.w"),
            WeightName::Block {
                layer: 0,
                part: "attn",
                field: "q_norm.w"
            }
        );
        assert_eq!(
            WeightName::parse("unembed.W_U"),
            WeightName::Top("unembed.W_U")
        );
        assert_eq!(
            WeightName::parse("blocks.x.attn.W_Q"),
            WeightName::Top("blocks.x.attn.W_Q")
        );
    }

    #[test]
    fn grouped_heads_repeat_in_a_row() {
        // two kv heads of d_head 1 over d_model 2, each serving two query heads
        let w = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[5f32, 6.], &Device::Cpu).unwrap();
        let (w, b) = per_head(&w, &b, 1, 2).unwrap();
        assert_eq!(w.dims(), &[4, 2, 1]);
        let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(w, [1., 3., 1., 3., 2., 4., 2., 4.]);
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(b, [5., 5., 6., 6.]);
    }
}
