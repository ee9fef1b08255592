//! Features, not neurons: sparse autoencoders in SAELens's format.
//!
//! - [`sae`]: an SAE's config and weights as SAELens saves them (and EleutherAI sparsify's
//!   layout, [`sparsify`]), its forward pass with SAELens's hook points;
//! - [`splice`]: SAEs spliced into any model's forward pass at their hooks;
//! - [`eval`]: SAELens's evaluation metrics, under its names and definitions;
//! - [`store`]: the activation store (sharded, resumable) and its shuffled reader;
//! - [`corpus`]: token rows from text, JSON Lines or a tokens file.
pub mod corpus;
pub mod dashboard;
pub mod error;
pub mod eval;
pub mod sae;
pub mod sparsify;
pub mod splice;
pub mod store;
pub mod train;
mod train_options;
mod train_sparse;
mod write;

pub use error::{FeatureError, Result};
pub use sae::{Activation, Normalization, Sae, SaeConfig};
pub use splice::{splice, SpliceOptions};
