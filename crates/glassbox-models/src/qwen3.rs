//! Qwen 3: Llama with an RMSNorm over each head's queries and keys (`self_attn.q_norm`,
//! `k_norm`, of size `head_dim`) before rotary, and an explicit `head_dim`.

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::error::Result;
use crate::llama::{build_llama_style, LlamaDims, QkNormKind, Quirks};
use crate::model::Model;

pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    let dims = LlamaDims::from_config(config)?;
    let bias = HfConfig(config).bool_or("attention_bias", false)?;
    let quirks = Quirks {
        qkv_bias: bias,
        o_bias: bias,
        qk_norm: QkNormKind::PerHead,
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style(config, vb, &dims, &quirks)?))
}
