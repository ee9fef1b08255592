//! Deterministic training of a fully open model, its release, and its reproduction.
//!
//! Design: a run is a pure function of its recipe. [`recipe::Recipe`] fixes the architecture
//! (a Hugging Face `config.json`), the synthetic corpus ([`corpus`], seeded), the tokenizer
//! ([`vocab`]), AdamW and its schedule, the batch, the steps, the seed and the thread count.
//! [`trainer`] initialises weights from its own seeded RNG ([`rng`], never candle's), feeds
//! batches in a seeded order and steps AdamW; with the same recipe, thread count and backend
//! the weights are bit-identical. [`release`] writes the Hub-layout release directory (weights,
//! tokenizer, card, licence, recipe, data manifest, log, checkpoints, `mof.yml`) through a
//! temporary directory renamed into place, so a failed run never leaves a half-written release.
//! [`reproduce`] regenerates the data, checks its hashes, reruns the recipe and compares: bit
//! for bit at a checkpoint when threads and backend match, otherwise by comparability figures.

pub mod corpus;
pub mod eval;
pub mod finetune;
pub mod recipe;
pub mod release;
pub mod reproduce;
pub mod rng;
pub mod trainer;
pub mod vocab;

pub use recipe::Recipe;

/// What can go wrong training, writing or reproducing a release.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("recipe {path}: {why}")]
    Recipe { path: String, why: String },
    #[error("release {path}: {why}")]
    Release { path: String, why: String },
    /// A file or folder given to a command (a model, training data) that cannot be used.
    #[error("{path}: {why}")]
    Input { path: String, why: String },
    /// A setting out of its domain.
    #[error("{0}")]
    Setting(String),
    /// The loss or the weights stopped being finite numbers: nothing is written.
    #[error("training diverged at step {step} (the loss is {loss}); nothing was written: {hint}")]
    Diverged {
        step: usize,
        loss: f32,
        hint: &'static str,
    },
    /// Boxed: model errors are large and every training function returns this type.
    #[error("{0}")]
    Model(Box<glassbox_models::ModelError>),
    #[error("{0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Analysis(Box<glassbox_analysis::AnalysisError>),
    #[error("{0}")]
    Internal(String),
}

/// A file refused by the input policy ([`glassbox_formats::input`]): an input error.
impl From<glassbox_formats::FormatError> for TrainError {
    fn from(e: glassbox_formats::FormatError) -> Self {
        TrainError::Model(Box::new(glassbox_models::ModelError::Format(e)))
    }
}

impl From<glassbox_models::ModelError> for TrainError {
    fn from(e: glassbox_models::ModelError) -> Self {
        TrainError::Model(Box::new(e))
    }
}

impl From<glassbox_analysis::AnalysisError> for TrainError {
    fn from(e: glassbox_analysis::AnalysisError) -> Self {
        TrainError::Analysis(Box::new(e))
    }
}

impl TrainError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// True when the user's input (recipe, release directory) is at fault.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            TrainError::Recipe { .. }
            | TrainError::Release { .. }
            | TrainError::Input { .. }
            | TrainError::Setting(_)
            | TrainError::Diverged { .. } => true,
            TrainError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData
            ),
            TrainError::Model(e) => e.is_invalid_input(),
            _ => false,
        }
    }
}
