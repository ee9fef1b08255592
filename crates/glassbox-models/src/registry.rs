//! The architecture registry: `architectures[0]` of a config → the constructor that builds it.
//!
//! Adding an architecture is one file with a `build` function and one line in
//! [`ARCHITECTURES`]. Configs without `architectures` are looked up by `model_type`
//! through [`MODEL_TYPES`].

use candle_nn::VarBuilder;

use crate::config::HfConfig;
use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::{
    bert, deepseek, gemma, glm4, glm4_moe, gpt2, gpt_neox, gpt_oss, llama, llama4, mixtral,
    nemotron, nemotron_h, olmo2, olmoe, phi3, qwen3, qwen3_moe, qwen3_next,
};

/// Builds a model from a Hub config and its weights.
/// `'static` because lazily loaded weights (mixture-of-experts) keep the builder.
pub type Constructor = fn(&serde_json::Value, VarBuilder<'static>) -> Result<Box<dyn Model>>;

/// Every supported architecture, by its Hub class name.
pub const ARCHITECTURES: &[(&str, Constructor)] = &[
    ("GPT2LMHeadModel", gpt2::build),
    ("GPTNeoXForCausalLM", gpt_neox::build),
    ("LlamaForCausalLM", llama::build),
    ("Llama4ForCausalLM", llama4::build),
    ("MistralForCausalLM", llama::build),
    ("Qwen2ForCausalLM", llama::build),
    ("Qwen3ForCausalLM", qwen3::build),
    ("Olmo2ForCausalLM", olmo2::build),
    ("Olmo3ForCausalLM", olmo2::build3),
    ("OlmoeForCausalLM", olmoe::build),
    ("GemmaForCausalLM", gemma::build),
    ("Gemma2ForCausalLM", gemma::build2),
    ("Gemma3ForCausalLM", gemma::build3),
    ("Phi3ForCausalLM", phi3::build),
    ("Glm4ForCausalLM", glm4::build),
    ("Glm4MoeForCausalLM", glm4_moe::build),
    ("NemotronForCausalLM", nemotron::build),
    ("NemotronHForCausalLM", nemotron_h::build),
    ("DeepseekV2ForCausalLM", deepseek::build_v2),
    ("MixtralForCausalLM", mixtral::build),
    ("Qwen3MoeForCausalLM", qwen3_moe::build),
    ("Qwen3NextForCausalLM", qwen3_next::build),
    ("DeepseekV3ForCausalLM", deepseek::build_v3),
    ("GptOssForCausalLM", gpt_oss::build),
    ("BertModel", bert::build),
    ("BertForMaskedLM", bert::build),
];

/// `model_type` → architecture, for configs that do not list `architectures`.
pub const MODEL_TYPES: &[(&str, &str)] = &[
    ("gpt2", "GPT2LMHeadModel"),
    ("gpt_neox", "GPTNeoXForCausalLM"),
    ("llama", "LlamaForCausalLM"),
    ("llama4_text", "Llama4ForCausalLM"),
    ("mistral", "MistralForCausalLM"),
    ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"),
    ("olmo2", "Olmo2ForCausalLM"),
    ("olmo3", "Olmo3ForCausalLM"),
    ("olmoe", "OlmoeForCausalLM"),
    ("gemma", "GemmaForCausalLM"),
    ("gemma2", "Gemma2ForCausalLM"),
    ("gemma3_text", "Gemma3ForCausalLM"),
    ("phi3", "Phi3ForCausalLM"),
    ("glm4", "Glm4ForCausalLM"),
    ("glm4_moe", "Glm4MoeForCausalLM"),
    ("nemotron", "NemotronForCausalLM"),
    ("nemotron_h", "NemotronHForCausalLM"),
    ("deepseek_v2", "DeepseekV2ForCausalLM"),
    ("mixtral", "MixtralForCausalLM"),
    ("qwen3_moe", "Qwen3MoeForCausalLM"),
    ("qwen3_next", "Qwen3NextForCausalLM"),
    ("deepseek_v3", "DeepseekV3ForCausalLM"),
    ("gpt_oss", "GptOssForCausalLM"),
    ("bert", "BertModel"),
];

/// Names of every supported architecture.
pub fn supported() -> Vec<String> {
    ARCHITECTURES.iter().map(|(n, _)| n.to_string()).collect()
}

/// The registered constructor for `config`, or an error listing what is supported.
pub fn constructor(config: &serde_json::Value) -> Result<Constructor> {
    let arch = HfConfig(config).architecture()?;
    let arch = MODEL_TYPES
        .iter()
        .find(|(t, _)| *t == arch)
        .map_or(arch.as_str(), |(_, a)| a);
    ARCHITECTURES
        .iter()
        .find(|(n, _)| *n == arch)
        .map(|(_, c)| *c)
        .ok_or_else(|| ModelError::UnsupportedArchitecture {
            found: arch.to_string(),
            supported: supported(),
        })
}

/// Builds the model `config` describes over `vb`.
pub fn build(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Box<dyn Model>> {
    let model = constructor(config)?(config, vb)?;
    // A context of 0 positions loads (rotary models need no table for it), but no token
    // fits: generation would print the prompt alone and stop, with no reason given.
    if model.info().n_ctx == 0 {
        return Err(ModelError::config(
            "the context length (max_position_embeddings / n_positions) is 0: no token has a position",
        ));
    }
    Ok(model)
}
