//! The read API's error answer: `{"error": …, "parameter": …}` with its status.
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::ParamError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub parameter: Option<String>,
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: e.message,
            parameter: Some(e.parameter),
        }
    }
}

/// A computation that panicked (a bug): 500 rather than a hung request.
impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        tracing::error!(%error, "response computation failed");
        Self::internal("internal error".into())
    }
}

impl ApiError {
    pub fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
            parameter: None,
        }
    }

    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the index database is unavailable; try again later".into(),
            parameter: None,
        }
    }

    pub fn internal(message: String) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
            parameter: None,
        }
    }

    pub fn response(&self) -> Response {
        let body = serde_json::json!({ "error": self.message, "parameter": self.parameter });
        (
            self.status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}
