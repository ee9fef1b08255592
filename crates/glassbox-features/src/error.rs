//! [`FeatureError`]: what can go wrong loading, splicing, evaluating or training an SAE.
//!
//! Errors in what the user gave (a malformed `cfg.json`, weights of the wrong shape, an SAE
//! for a hook the model does not have) are told apart from internal failures by
//! [`FeatureError::is_invalid_input`], which the CLI maps to exit code 2.

use std::path::PathBuf;

use glassbox_formats::FormatError;
use glassbox_models::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The request does not make sense for this model or this SAE.
    #[error("{0}")]
    Input(String),
    /// A file (cfg.json, weights, a manifest) is malformed.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // Boxed: large, and results are passed around a lot.
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error(transparent)]
    Format(Box<FormatError>),
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
}

impl From<ModelError> for FeatureError {
    fn from(e: ModelError) -> Self {
        FeatureError::Model(Box::new(e))
    }
}

impl From<FormatError> for FeatureError {
    fn from(e: FormatError) -> Self {
        FeatureError::Format(Box::new(e))
    }
}

impl From<candle_core::Error> for FeatureError {
    fn from(e: candle_core::Error) -> Self {
        FeatureError::Candle(Box::new(e))
    }
}

impl FeatureError {
    /// True when the user's input is at fault (CLI exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            FeatureError::Input(_) | FeatureError::File { .. } | FeatureError::Io { .. } => true,
            FeatureError::Model(e) => e.is_invalid_input(),
            FeatureError::Format(e) => e.is_invalid_input(),
            FeatureError::Candle(_) => false,
        }
    }

    pub(crate) fn input(msg: impl Into<String>) -> Self {
        FeatureError::Input(msg.into())
    }

    pub(crate) fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        FeatureError::File {
            path: path.into(),
            message: msg.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FeatureError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, FeatureError>;
