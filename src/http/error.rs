//! The one error shape of the API: `{"error": {"code", "message"}}`, with the status codes and
//! stable codes of API.md, mapped from the library's errors in one place.

use crate::chat::ChatError;
use crate::llm::ModelError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The error shape of every endpoint: `{"error": {"code", "message"}}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong: a stable code and a sentence a person can act on.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    code: String,
    message: String,
}

/// An error as the client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a stable code and a sentence a person can act on.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 `lesson_not_found`.
    pub fn lesson_not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "lesson_not_found",
            format!("there is no lesson `{id}`; GET /v1/lessons lists them"),
        )
    }

    /// 503 `not_ready`, while the index is being built.
    pub fn not_ready() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the tutor is still loading its lessons; try again in a moment",
            )
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        })
        .unwrap_or_else(|_| json!({"error": {"code": self.code}}))
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> ApiError {
        match error {
            ChatError::LessonNotFound(id) => ApiError::lesson_not_found(&id),
            ChatError::InvalidMessage(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", message)
            }
            ChatError::Model(ModelError::Upstream(cause)) => {
                tracing::warn!(%cause, "model provider failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "the model provider failed to answer; try again shortly",
                )
            }
            ChatError::Model(ModelError::Timeout(cause)) => {
                tracing::warn!(%cause, "model provider timed out");
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the model provider did not answer in time; try again shortly",
                )
            }
            ChatError::Overloaded => ApiError {
                retry_after: Some(2),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the tutor is answering as many questions as it can; try again in a moment",
                )
            },
            ChatError::Prompt(cause) => {
                tracing::error!(error = %cause, "prompt template failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the tutor could not build its prompt",
                )
            }
            ChatError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the tutor failed unexpectedly",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
