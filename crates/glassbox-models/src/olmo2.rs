//! OLMo 2: no norms before attention and MLP; instead their outputs are RMS-normalised
//! (`post_attention_layernorm`, `post_feedforward_layernorm`) before joining the residual, and
//! queries and keys are RMS-normalised over the whole projection (`q_norm` [H·d_head],
//! `k_norm` [H_kv·d_head]) before being split into heads.
//!
//! OLMo 3 (`Olmo3ForCausalLM`) is OLMo 2 with a sliding window on three layers of every four
//! (`layer_types`; that pattern when the config does not list them) and rotary settings per
//! layer type (`rope_parameters.sliding_attention` / `.full_attention`).

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::error::Result;
use crate::llama::{build_llama_style, LlamaDims, QkNormKind, Quirks};
use crate::model::Model;

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let dims = LlamaDims::from_config(config)?;
    build_with(config, vb, dims)
}

pub fn build3(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let mut dims = LlamaDims::from_config(config)?;
    if dims.layer_sliding.is_none() {
        dims.layer_sliding = Some((0..dims.n_layers).map(|i| (i + 1) % 4 != 0).collect());
    }
    build_with(config, vb, dims)
}

fn build_with(
    config: &serde_json::Value,
    vb: VarBuilder,
    dims: LlamaDims,
) -> Result<Box<dyn Model>> {
    let bias = HfConfig(config).bool_or("attention_bias", false)?;
    let quirks = Quirks {
        qkv_bias: bias,
        o_bias: bias,
        qk_norm: QkNormKind::Full,
        pre_norms: false,
        post_norms: true,
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}
