//! Phi-3: Llama with the q, k, v projections fused into `self_attn.qkv_proj` (output
//! `[q | k | v]`) and gate and up fused into `mlp.gate_up_proj` (output `[gate | up]`).

use candle_nn::VarBuilder;

use crate::error::Result;
use crate::llama::{build_llama_style, LlamaDims, Quirks};
use crate::model::Model;

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let dims = LlamaDims::from_config(config)?;
    let quirks = Quirks {
        fused: true,
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}
