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

/// Every error code of API.md, with its HTTP status: the one list both error shapes (ours and
/// the OpenAI-compatible one) are built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    OriginNotAllowed,
    NotFound,
    LessonNotFound,
    ModelNotFound,
    AnswerNotFound,
    MethodNotAllowed,
    MisdirectedRequest,
    RequestTimeout,
    PayloadTooLarge,
    InvalidMessage,
    RateLimited,
    Internal,
    UpstreamError,
    NotReady,
    Overloaded,
    UpstreamTimeout,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::OriginNotAllowed,
        ErrorCode::NotFound,
        ErrorCode::LessonNotFound,
        ErrorCode::ModelNotFound,
        ErrorCode::AnswerNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::MisdirectedRequest,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidMessage,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::UpstreamError,
        ErrorCode::NotReady,
        ErrorCode::Overloaded,
        ErrorCode::UpstreamTimeout,
    ];

    /// The code as sent in `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::LessonNotFound => "lesson_not_found",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::AnswerNotFound => "answer_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::MisdirectedRequest => "misdirected_request",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The HTTP status the code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::OriginNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::NotFound
            | ErrorCode::LessonNotFound
            | ErrorCode::ModelNotFound
            | ErrorCode::AnswerNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidMessage => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorCode::NotReady | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `type` of OpenAI's error shape.
    pub fn openai_type(self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 | 421 => "permission_error",
            400 | 404 | 405 | 408 | 413 | 422 => "invalid_request_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }
}

/// An error as the client sees it. The response carries it as an extension, so the
/// OpenAI-compatible routes restate it in OpenAI's shape without re-reading the body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a stable code (which sets the status) and a sentence a person can act on.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// 413 `payload_too_large`, for a body over [`super::BODY_LIMIT`].
    pub fn payload_too_large() -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request body is larger than {} KiB",
                super::BODY_LIMIT / 1024
            ),
        )
    }

    /// 404 `lesson_not_found`.
    pub fn lesson_not_found(id: &str) -> ApiError {
        ApiError::new(
            ErrorCode::LessonNotFound,
            format!("there is no lesson `{id}`; GET /v1/lessons lists them"),
        )
    }

    /// 503 `not_ready`, while the index is being built.
    pub fn not_ready() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                ErrorCode::NotReady,
                "the tutor is still loading its lessons; try again in a moment",
            )
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_string(),
                message: self.message.clone(),
            },
        })
        .unwrap_or_else(|_| json!({"error": {"code": self.code.as_str()}}))
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> ApiError {
        match error {
            ChatError::LessonNotFound(id) => ApiError::lesson_not_found(&id),
            ChatError::InvalidMessage(message) => ApiError::new(ErrorCode::InvalidMessage, message),
            ChatError::Model(ModelError::Upstream(cause)) => {
                tracing::warn!(%cause, "model provider failed");
                ApiError::new(
                    ErrorCode::UpstreamError,
                    "the model provider failed to answer; try again shortly",
                )
            }
            ChatError::Model(ModelError::Timeout(cause)) => {
                tracing::warn!(%cause, "model provider timed out");
                ApiError::new(
                    ErrorCode::UpstreamTimeout,
                    "the model provider did not answer in time; try again shortly",
                )
            }
            ChatError::Overloaded => ApiError {
                retry_after: Some(2),
                ..ApiError::new(
                    ErrorCode::Overloaded,
                    "the tutor is answering as many questions as it can; try again in a moment",
                )
            },
            ChatError::Prompt(cause) => {
                tracing::error!(error = %cause, "prompt template failed");
                ApiError::new(ErrorCode::Internal, "the tutor could not build its prompt")
            }
            ChatError::Internal(cause) => {
                tracing::error!(cause = %crate::telemetry::untrusted(&cause), "internal error");
                ApiError::new(ErrorCode::Internal, "the tutor failed unexpectedly")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}
