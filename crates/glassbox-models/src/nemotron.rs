//! Nemotron (`NemotronForCausalLM`: Minitron, Nemotron-Mini, Nemotron-4).
//!
//! The Llama layout with three departures: every norm is `LayerNorm1P` — a LayerNorm with bias
//! whose scale is stored as `w − 1` (scale by `1 + w`) —, the MLP is not gated but
//! `down(relu(up x)²)`, and only the first `partial_rotary_factor` of each head rotates (the
//! two-halves form on that part). Norms read `norm_eps`; weight names are the Hub's.

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::decoder::FeedForward;
use crate::error::Result;
use crate::layers::{Linear, NormKind};
use crate::llama::{build_llama_style_with, LlamaDims, Quirks};
use crate::mlp::{Mlp, MlpProjection};
use crate::model::Model;

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    // Half the head rotates unless the config says otherwise (transformers' default for
    // Nemotron configs that predate the field).
    let stated = cfg.get("partial_rotary_factor").is_some()
        || cfg
            .get("rope_parameters")
            .and_then(|p| p.get("partial_rotary_factor"))
            .is_some();
    let mut with_default = config.clone();
    if !stated {
        with_default["partial_rotary_factor"] = serde_json::json!(0.5);
    }
    let config = &with_default;
    let mut dims = LlamaDims::from_config(config)?;
    dims.eps = cfg.f64_or(&["norm_eps", "layer_norm_eps"], 1e-5)?;
    let bias = cfg.bool_or("attention_bias", false)?;
    let mlp_bias = cfg.bool_or("mlp_bias", false)?;
    let quirks = Quirks {
        qkv_bias: bias,
        o_bias: bias,
        mlp_bias,
        norm_kind: Some(NormKind::LayerNormPlusOne { eps: dims.eps }),
        ..Quirks::default()
    };
    let vb_layers = vb.pp("model.layers");
    let d = dims.clone();
    // `up_proj` → activation → `down_proj`, no gate.
    let plain_mlp = |i: usize| -> Result<Option<Box<dyn FeedForward>>> {
        let vb_mlp = vb_layers.pp(format!("{i}.mlp"));
        Ok(Some(Box::new(Mlp {
            proj: MlpProjection::Plain {
                fc_in: Linear::load(vb_mlp.pp("up_proj"), d.d_model, d.d_mlp, mlp_bias)?,
            },
            act: d.act,
            fc_out: Linear::load(vb_mlp.pp("down_proj"), d.d_mlp, d.d_model, mlp_bias)?,
        })))
    };
    Ok(Box::new(build_llama_style_with(
        config, vb, &dims, &quirks, &plain_mlp,
    )?))
}
