//! OLMoE (`OlmoeForCausalLM`): AI2's fully open mixture of experts. OLMo's attention — an
//! RMSNorm over the whole query and key projections (`q_norm` [H·d_head], `k_norm`
//! [H_kv·d_head]) before they are split into heads — with Llama's pre-norms, and in every layer
//! a sparse block as Qwen3-MoE's: a softmax router over `num_experts`, the best
//! `num_experts_per_tok` kept (renormalised only with `norm_topk_prob`, off by default), SwiGLU
//! experts of `intermediate_size`, no shared expert.

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::error::{ModelError, Result};
use crate::llama::QkNormKind;
use crate::model::Model;
use crate::qwen3_moe;

pub fn build(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    if HfConfig(config).f64_opt(&["clip_qkv"])?.is_some() {
        return Err(ModelError::config(
            "`clip_qkv` (clamping queries, keys and values) is not supported yet",
        ));
    }
    qwen3_moe::build_with(config, vb, QkNormKind::Full)
}
