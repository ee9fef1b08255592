use std::path::PathBuf;

/// Errors from opening or reading a checkpoint. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is malformed: truncated, inconsistent, or out of bounds.
    #[error("{path}: invalid file: {msg}")]
    Invalid { path: PathBuf, msg: String },
    /// The file is well-formed but uses something glassbox does not read.
    #[error("{path}: unsupported: {msg}")]
    Unsupported { path: PathBuf, msg: String },
    #[error("{path}: no tensor named `{name}`")]
    NoSuchTensor { path: PathBuf, name: String },
    /// A GGUF writer was given inconsistent data (a shape that does not match the values).
    #[error("GGUF writer: {0}")]
    Write(String),
    #[error("{path}: {source}")]
    Tensor {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

impl FormatError {
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        FormatError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn unsupported(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        FormatError::Unsupported {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
    /// True when the error is the user's input being wrong (CLI exit code 2).
    /// A path that does not exist, or is not readable as asked, is the user's input too.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            FormatError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::UnexpectedEof
            ),
            FormatError::Tensor { .. } | FormatError::Write(_) => false,
            _ => true,
        }
    }
}

pub type Result<T> = std::result::Result<T, FormatError>;
