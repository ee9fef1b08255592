//! Transformer forward passes with a hook at every point, in parity with the reference
//! implementations (Hugging Face transformers) at 1e-4 in float32.
//!
//! Layering, candle-style:
//! - [`ops`]: differentiable primitives (softmax, norms, rotary) — candle-nn's fused kernels
//!   have no backward pass, so nothing here uses them.
//! - [`layers`]: `Linear`, `Norm`, `Activation`, `Embedding`, loaded through a `VarBuilder`.
//! - [`attention`], [`mlp`], [`decoder`]: one shared decoder engine, parameterised by data.
//! - one file per family ([`gpt2`], [`gpt_neox`], [`llama`] (also Mistral, Qwen 2), [`qwen3`],
//!   [`olmo2`], [`gemma`], [`phi3`], [`glm4`], [`deepseek`], [`mixtral`], [`qwen3_moe`] (with
//!   [`moe`]), the encoder [`bert`]) reading its config and weight names; [`gguf_model`] serves
//!   GGUF files to the same constructors;
//! - [`registry`]: architecture name → constructor;
//! - [`model`]: the [`Model`] trait and [`HookedModel`], the entry point;
//! - [`hooks`]: the one hook mechanism every model calls at each TransformerLens-named point;
//!   [`stop`]: a computation stopped from outside at its next hook point.
//!
//! Weights come through `candle_nn::VarBuilder`, so the same constructors build a model from a
//! checkpoint ([`CheckpointBackend`]), from another backend (GGUF), or from a `VarMap` with
//! fresh trainable weights.
pub mod attention;
pub mod backend;
pub mod bert;
pub mod config;
pub mod decoder;
pub mod deepseek;
pub mod error;
pub mod fp8;
pub mod gemma;
pub mod generate;
pub mod gguf_config;
pub mod gguf_model;
pub mod gguf_tokenizer;
pub mod glm4;
pub mod glm4_moe;
pub mod gpt2;
pub mod gpt_neox;
pub mod gpt_oss;
pub mod hooks;
pub mod kernel_ops;
pub mod kv_cache;
pub mod layers;
pub mod linear_attention;
pub mod llama;
pub mod llama4;
pub mod lora;
pub mod mapped;
pub mod memory;
pub mod mixtral;
pub mod mlp;
pub mod model;
pub mod moe;
pub mod nemotron;
pub mod nemotron_h;
pub mod olmo2;
pub mod olmoe;
pub mod ops;
pub mod phi3;
pub mod prefix;
pub mod quantized;
pub mod qwen3;
pub mod qwen3_moe;
pub mod qwen3_next;
pub mod registry;
pub mod rng;
pub mod ssm;
pub mod stop;
#[cfg(test)]
mod testing;
pub mod tokenizer;
pub mod weights;

pub use backend::CheckpointBackend;
pub use error::{ModelError, Result};
pub use generate::GenerateOptions;
pub use hooks::{
    ActivationCache, HookFn, Hooks, Intervention, Layout, NameFilter, Selection, Splice,
};
pub use kv_cache::KvCache;
pub use model::{HookedModel, KvCacheType, LoadOptions, Model, ModelInfo, Numerics};
pub use prefix::RecordedRun;
pub use tokenizer::{TextTokenizer, Tokenizer};
