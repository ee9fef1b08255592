//! EleutherAI sparsify's layout: one folder per hook point, named by the transformers module
//! it read (`layers.3`, `layers.3.mlp`, `embed_tokens`), holding `cfg.json` and
//! `sae.safetensors` (`encoder.weight` [d_sae, d_in], `encoder.bias`, `W_dec` [d_sae, d_in],
//! `b_dec`). Its SAEs are TopK SAEs that always subtract `b_dec` first (sparsify's
//! `relu` before the top-k gives the same outputs as SAELens's top-k before `relu`).
//!
//! SAELens's own converter reads these files differently (it transposes `W_dec`, takes
//! `num_latents: 0` as the width, and skips subtracting `b_dec` when the decoder was
//! normalised); glassbox follows sparsify's own code.

use std::path::Path;

use candle_core::DType;
use glassbox_formats::input::{self, limit};
use serde_json::{json, Map, Value};

use crate::error::{FeatureError, Result};
use crate::sae::{
    Activation, Normalization, Sae, SaeConfig, Weights, CFG_FILE, SPARSIFY_WEIGHTS_FILE,
};

/// The TransformerLens hook of the transformers module a sparsify folder is named after.
fn hook_of(folder: &str) -> Option<String> {
    if folder == "embed_tokens" || folder == "wte" {
        return Some("hook_embed".into());
    }
    let parts: Vec<&str> = folder.split('.').collect();
    let (layer, rest) = match parts.as_slice() {
        ["layers" | "h" | "layer", n, rest @ ..] => (n.parse::<usize>().ok()?, rest),
        ["model" | "transformer", "layers" | "h", n, rest @ ..] => (n.parse::<usize>().ok()?, rest),
        _ => return None,
    };
    let point = match rest {
        [] => "hook_resid_post",
        ["mlp"] => "hook_mlp_out",
        ["self_attn" | "attn" | "attention"] => "hook_attn_out",
        _ => return None,
    };
    Some(format!("blocks.{layer}.{point}"))
}

pub(crate) fn load(dir: &Path) -> Result<Sae> {
    let cfg_path = dir.join(CFG_FILE);
    let raw = input::read_json(&cfg_path, "sparsify config", limit::CONFIG)?;
    let bad = |m: String| FeatureError::file(&cfg_path, m);
    let flag = |k: &str| raw.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("transcode") {
        return Err(bad("a transcoder (`transcode: true`) maps one point to another; glassbox reads sparsify's SAEs".into()));
    }
    if flag("skip_connection") {
        return Err(bad("`skip_connection: true` is not supported".into()));
    }
    match raw.get("activation").and_then(Value::as_str) {
        None | Some("topk") => {}
        Some(other) => {
            return Err(bad(format!(
                "activation `{other}` is not supported (topk is)"
            )))
        }
    }
    let folder = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let hook_name = hook_of(&folder).ok_or_else(|| {
        FeatureError::file(
            dir,
            format!("a sparsify folder is named after the module it read (`layers.N`, `layers.N.mlp`, `embed_tokens`); `{folder}` is not one glassbox can place"),
        )
    })?;
    let weights_path = dir.join(SPARSIFY_WEIGHTS_FILE);
    let mut w = Weights::open(&weights_path)?;
    let enc_shape = w
        .shape_of("encoder.weight")
        .ok_or_else(|| FeatureError::file(&weights_path, "no tensor `encoder.weight`"))?;
    let [d_sae, d_in] = enc_shape[..] else {
        return Err(FeatureError::file(
            &weights_path,
            format!("`encoder.weight` has shape {enc_shape:?}, expected [d_sae, d_in]"),
        ));
    };
    if let Some(n) = raw.get("d_in").and_then(Value::as_u64) {
        if n as usize != d_in {
            return Err(bad(format!("`d_in` is {n} but the encoder reads {d_in}")));
        }
    }
    let k = raw
        .get("k")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("`k` is missing or not a whole number".into()))? as usize;
    if k == 0 || k > d_sae {
        return Err(bad(format!("`k` is {k}: give 1..{d_sae}")));
    }
    let dtype = match w.dtype_of("encoder.weight") {
        Some(glassbox_formats::DType::BF16) => DType::BF16,
        Some(glassbox_formats::DType::F16) => DType::F16,
        _ => DType::F32,
    };
    let w_enc = w
        .take("encoder.weight", &[d_sae, d_in])?
        .t()?
        .contiguous()?;
    let b_enc = w.take("encoder.bias", &[d_sae])?;
    let w_dec = w.take("W_dec", &[d_sae, d_in])?;
    let b_dec = w.take("b_dec", &[d_in])?;
    w.finish()?;
    let mut metadata = Map::new();
    metadata.insert("hook_name".into(), json!(hook_name));
    metadata.insert("sparsify_hookpoint".into(), json!(folder));
    let sae = Sae {
        cfg: SaeConfig {
            activation: Activation::TopK {
                k,
                rescale_acts_by_decoder_norm: false,
            },
            d_in,
            d_sae,
            dtype,
            apply_b_dec_to_input: true,
            normalize_activations: Normalization::None,
            reshape_hook_z: false,
            hook_name,
            hook_head_index: None,
            metadata,
        },
        w_enc,
        b_enc,
        w_dec,
        b_dec,
        threshold: None,
        source: dir.to_path_buf(),
    };
    sae.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::hook_of;

    #[test]
    fn folders_name_their_hooks() {
        assert_eq!(
            hook_of("layers.3").as_deref(),
            Some("blocks.3.hook_resid_post")
        );
        assert_eq!(
            hook_of("layers.3.mlp").as_deref(),
            Some("blocks.3.hook_mlp_out")
        );
        assert_eq!(
            hook_of("h.0.attn").as_deref(),
            Some("blocks.0.hook_attn_out")
        );
        assert_eq!(hook_of("embed_tokens").as_deref(), Some("hook_embed"));
        assert_eq!(hook_of("layers.x"), None);
        assert_eq!(hook_of("layers.3.mlp.act_fn"), None);
    }
}
