//! GLM-4.5 and GLM-4.6 (`Glm4MoeForCausalLM`), as transformers' `modeling_glm4_moe.py`.
//!
//! Llama's block (pre-norms, no post-norms unlike GLM-4) with grouped-query attention whose
//! q/k/v carry biases (`attention_bias`), an optional RMSNorm over each head's queries and keys
//! (`use_qk_norm`) and rotary on half of each head (`partial_rotary_factor`, two-halves form).
//! The first `first_k_dense_replace` layers have a dense SwiGLU; the others a mixture of
//! experts routed as DeepSeek-V3 routes: sigmoid scores, a score-correction bias that only
//! steers the choice, group-limited top-k (`n_group`, `topk_group`, groups ranked by the sum
//! of their two best scores), renormalised (`norm_topk_prob`) and scaled
//! (`routed_scaling_factor`), plus `n_shared_experts` always-on experts.

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::decoder::FeedForward;
use crate::deepseek::{self, Generation};
use crate::error::{ModelError, Result};
use crate::llama::{build_llama_style_with, LlamaDims, QkNormKind, Quirks};
use crate::model::Model;
use crate::moe::{self, MoeBlock, MoeSpec};

pub fn build(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let cfg = HfConfig(config);
    let dims = LlamaDims::from_config(config)?;
    let n_experts = cfg.usize(&["n_routed_experts"])?;
    let top_k = cfg.usize(&["num_experts_per_tok"])?;
    if n_experts == 0 || top_k == 0 {
        return Err(ModelError::config(
            "`n_routed_experts` and `num_experts_per_tok` must be positive",
        ));
    }
    let first_dense = cfg.usize_opt(&["first_k_dense_replace"])?.unwrap_or(1);
    let spec = MoeSpec {
        router: deepseek::router_config(cfg, Generation::V3, n_experts, top_k)?,
        correction_bias: true,
        names: moe::LLAMA_MLP_NAMES,
        d_model: dims.d_model,
        d_ff: cfg
            .usize_opt(&["moe_intermediate_size"])?
            .unwrap_or(dims.d_mlp),
        n_shared: cfg.usize_opt(&["n_shared_experts"])?.unwrap_or(0),
        act: dims.act,
        budget: moe::default_expert_budget(),
    };
    let layers = vb.pp("model").pp("layers");
    let feed_forward = |i: usize| -> Result<Option<Box<dyn FeedForward>>> {
        if i < first_dense {
            return Ok(None);
        }
        Ok(Some(Box::new(MoeBlock::load(
            layers.pp(i).pp("mlp"),
            &spec,
        )?)))
    };
    let quirks = Quirks {
        qkv_bias: cfg.bool_or("attention_bias", false)?,
        o_bias: false,
        qk_norm: if cfg.bool_or("use_qk_norm", false)? {
            QkNormKind::PerHead
        } else {
            QkNormKind::None
        },
        ..Quirks::default()
    };
    Ok(Box::new(build_llama_style_with(
        config,
        vb.clone(),
        &dims,
        &quirks,
        &feed_forward,
    )?))
}
