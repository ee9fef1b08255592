//! [`AnalysisError`]: what can go wrong in an analysis.
//!
//! Errors in what the user asked for (prompts of different lengths, a target that is not one
//! token, a malformed control-vector file) are told apart from internal failures by
//! [`AnalysisError::is_invalid_input`], which the CLI maps to exit code 2.

use std::path::PathBuf;

use glassbox_formats::FormatError;
use glassbox_models::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The request does not make sense for this model or these prompts.
    #[error("{0}")]
    Input(String),
    /// A file (e.g. a control vector) is malformed.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The wrapped errors are boxed: they are large, and results are passed around a lot.
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error(transparent)]
    Format(Box<FormatError>),
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
    /// The caller's progress callback asked to stop (a cancelled request).
    #[error("cancelled")]
    Cancelled,
}

impl From<ModelError> for AnalysisError {
    fn from(e: ModelError) -> Self {
        AnalysisError::Model(Box::new(e))
    }
}

impl From<FormatError> for AnalysisError {
    fn from(e: FormatError) -> Self {
        AnalysisError::Format(Box::new(e))
    }
}

impl From<candle_core::Error> for AnalysisError {
    fn from(e: candle_core::Error) -> Self {
        AnalysisError::Candle(Box::new(e))
    }
}

impl AnalysisError {
    /// True when the user's input is at fault (CLI exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            AnalysisError::Input(_) | AnalysisError::File { .. } => true,
            AnalysisError::Io { .. } => true,
            AnalysisError::Model(e) => e.is_invalid_input(),
            AnalysisError::Format(e) => e.is_invalid_input(),
            AnalysisError::Candle(_) | AnalysisError::Cancelled => false,
        }
    }

    pub(crate) fn input(msg: impl Into<String>) -> Self {
        AnalysisError::Input(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, AnalysisError>;
