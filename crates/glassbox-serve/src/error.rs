//! Errors: [`ServeError`] stops the server from starting; [`ApiError`] is one request's
//! failure, answered with a status and a JSON message (`{"error": "…"}`), never a crash.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    /// A model file that cannot be read (the error names it).
    #[error(transparent)]
    File(#[from] glassbox_formats::FormatError),
    #[error("no models to serve: name at least one (a Hub folder, safetensors or GGUF file)")]
    Nothing,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Runtime(#[source] std::io::Error),
}

impl ServeError {
    /// The user named something that cannot be served (exit 2 at the CLI).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ServeError::File(e) => e.is_invalid_input(),
            other => matches!(other, ServeError::Model { .. } | ServeError::Nothing),
        }
    }
}

/// One request's failure.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<glassbox_analysis::AnalysisError> for ApiError {
    fn from(e: glassbox_analysis::AnalysisError) -> Self {
        if e.is_invalid_input() {
            ApiError::bad_request(e.to_string())
        } else {
            ApiError::internal(e.to_string())
        }
    }
}

impl From<glassbox_models::ModelError> for ApiError {
    fn from(e: glassbox_models::ModelError) -> Self {
        glassbox_analysis::AnalysisError::from(e).into()
    }
}

impl From<candle_core::Error> for ApiError {
    fn from(e: candle_core::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<glassbox_formats::FormatError> for ApiError {
    fn from(e: glassbox_formats::FormatError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
