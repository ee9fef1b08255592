//! [`ModelError`]: everything that can go wrong building or running a model.
//!
//! Errors caused by the user's input (an unsupported architecture, a malformed config, a
//! checkpoint missing a weight, a token id outside the vocabulary) are distinguished from
//! internal failures by [`ModelError::is_invalid_input`], which the CLI maps to exit code 2.

use std::path::PathBuf;

use glassbox_formats::FormatError;

/// Errors from configuring, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `config.json` names an architecture with no entry in the registry.
    #[error("unsupported architecture `{found}` (supported: {})", supported.join(", "))]
    UnsupportedArchitecture {
        found: String,
        supported: Vec<String>,
    },
    /// The config is missing a field, has a wrong type, or asks for something unsupported.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The checkpoint itself could not be read.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The checkpoint's weights do not fit the config (a missing tensor, a wrong shape). The
    /// message ends with candle's (it is the whole story, so it is not also a `source`, which
    /// a chain printer would repeat).
    #[error("{path}: weights do not match the config: {cause}")]
    Weights {
        path: PathBuf,
        cause: candle_core::Error,
    },
    /// The tokenizer could not be loaded or failed on the input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Bad arguments to a forward pass: token ids out of range, a mask of the wrong shape.
    #[error("invalid input: {0}")]
    Input(String),
    /// A tensor operation failed (an internal error, or a hook returning a bad tensor).
    #[error(transparent)]
    Candle(candle_core::Error),
}

/// Weights read on first use (a mixture's experts) that do not fit the config: carried through
/// candle's error as `Error::WrappedContext`, and turned back into the input error it is
/// ([`ModelError::Input`]) when the forward pass returns it.
#[derive(Debug, thiserror::Error)]
#[error("weights do not match the config: {0}")]
pub struct LazyWeights(pub String);

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        // Unwrap candle's layers (context, path, backtrace) to find a lazily read weight.
        let mut inner = &e;
        loop {
            match inner {
                candle_core::Error::Context { inner: i, .. }
                | candle_core::Error::WithPath { inner: i, .. }
                | candle_core::Error::WithBacktrace { inner: i, .. } => inner = i,
                candle_core::Error::WrappedContext { wrapped, .. } => {
                    if let Some(lazy) = wrapped.downcast_ref::<LazyWeights>() {
                        return ModelError::Input(lazy.to_string());
                    }
                    break;
                }
                _ => break,
            }
        }
        ModelError::Candle(e)
    }
}

impl ModelError {
    /// True when the error is the user's input being wrong (CLI exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ModelError::Format(e) => e.is_invalid_input(),
            ModelError::Candle(_) => false,
            _ => true,
        }
    }

    pub(crate) fn config(msg: impl Into<String>) -> Self {
        ModelError::Config(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;
