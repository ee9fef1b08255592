//! Mechanistic-interpretability analyses on top of the hooked forward pass.
//!
//! Design: every analysis is a function of a [`glassbox_models::HookedModel`] (to run prompts)
//! and, where it can be, of an [`glassbox_models::ActivationCache`] alone, so a caller who
//! already holds a cache can reuse it. Each module owns one analysis and documents its exact
//! conventions (which hook, which position, which normalisation), following TransformerLens
//! so results can be compared number for number:
//!
//! - [`lens`] — logit lens over the accumulated residual stream;
//! - [`attribution`] — direct logit attribution to embeddings, heads, MLPs and biases, whose
//!   parts sum to the logit (difference); [`norm`] reads the final norm off the model;
//! - [`heads`] — previous-token, duplicate-token, induction and first-token head scores;
//! - [`patching`] — activation patching and gradient-based attribution patching;
//! - [`ablation`] — zero, mean and resample ablation of heads, MLPs and neurons;
//! - [`steering`] — control vectors in llama.cpp's GGUF format;
//! - [`predictions`] — the most likely next tokens at each position;
//! - [`routing`] — mixture-of-experts routing of a prompt;
//! - [`drift`] — what changed between two versions of one model (quantization, fine-tune,
//!   checkpoints), from the outputs down to heads and features.
//!
//! Results are plain serialisable structs; rendering them is the CLI's job. Components and
//! ablation targets are `#[non_exhaustive]` enums so new kinds (mixture-of-experts experts)
//! are additions.

pub mod ablation;
pub mod attribution;
pub mod drift;
mod error;
pub mod heads;
pub mod lens;
pub mod norm;
pub mod patching;
pub mod predictions;
pub mod probe;
pub mod routing;
pub mod steering;

pub use error::{AnalysisError, Result};
