//! Rust errors as Python exceptions, with the whole chain of messages (each cause once).
//!
//! A file that cannot be opened or read as what it should be is an `OSError` (the matching
//! subclass for the operating system's errors: `FileNotFoundError`, `PermissionError`, …); a
//! request that makes no sense for the model is a `ValueError`; a call cut short by Ctrl-C is a
//! `KeyboardInterrupt`; anything else (an internal failure) is a `RuntimeError`.

use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyKeyboardInterrupt, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::PyErr;

/// The error and its causes on one line, each cause once, the operating system's texts in
/// words (as the CLI prints them).
pub fn describe(err: &anyhow::Error) -> String {
    glassbox_formats::error::describe(err.as_ref())
}

fn io_error(err: &anyhow::Error) -> Option<&std::io::Error> {
    err.chain().find_map(|c| c.downcast_ref::<std::io::Error>())
}

fn cancelled(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        matches!(
            c.downcast_ref::<glassbox_analysis::AnalysisError>(),
            Some(glassbox_analysis::AnalysisError::Cancelled)
        )
    })
}

fn invalid_input(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<glassbox_models::ModelError>()
            .is_some_and(|e| e.is_invalid_input())
            || c.downcast_ref::<glassbox_analysis::AnalysisError>()
                .is_some_and(|e| e.is_invalid_input())
            || c.downcast_ref::<glassbox_formats::FormatError>()
                .is_some_and(|e| e.is_invalid_input())
            || c.downcast_ref::<glassbox_features::FeatureError>()
                .is_some_and(|e| e.is_invalid_input())
            || c.downcast_ref::<glassbox_audit::AuditError>()
                .is_some_and(|e| e.is_invalid_input())
            || c.downcast_ref::<Invalid>().is_some()
    })
}

fn os_error(io: &std::io::Error, msg: String) -> PyErr {
    use std::io::ErrorKind::*;
    match io.kind() {
        NotFound => PyFileNotFoundError::new_err(msg),
        PermissionDenied => PyPermissionError::new_err(msg),
        IsADirectory => PyIsADirectoryError::new_err(msg),
        NotADirectory => PyNotADirectoryError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

/// An error of a call on a model or an analysis: `ValueError` for what the caller asked wrong.
pub fn call_error(err: anyhow::Error) -> PyErr {
    let msg = describe(&err);
    if cancelled(&err) {
        return PyKeyboardInterrupt::new_err(msg);
    }
    if let Some(io) = io_error(&err) {
        return os_error(io, msg);
    }
    if invalid_input(&err) {
        return PyValueError::new_err(msg);
    }
    PyRuntimeError::new_err(msg)
}

/// An error reading a file the caller named (a model, an SAE, an adapter, a release): the file
/// could not be used, so an `OSError` whatever was wrong inside it.
pub fn file_error(err: anyhow::Error) -> PyErr {
    let msg = describe(&err);
    if let Some(io) = io_error(&err) {
        return os_error(io, msg);
    }
    if invalid_input(&err) {
        return PyOSError::new_err(msg);
    }
    PyRuntimeError::new_err(msg)
}

/// A caller's mistake found here, in the binding.
#[derive(Debug)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// A `ValueError` with `msg`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// `Invalid` as an `anyhow::Error`, for use inside computations.
pub fn invalid_anyhow(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Invalid(msg.into()))
}
