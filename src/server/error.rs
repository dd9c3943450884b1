//! Every error the server answers, in OpenAI's shape (`{"error": {"message", "type", "param",
//! "code"}}`) with the status its official client maps to an exception class.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

/// One failed request: status, OpenAI error type, the offending field and a short code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: a bad field, or audio that is empty or cannot be decoded.
    pub fn bad_request(param: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            param,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    pub fn unauthorized() -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "Incorrect API key provided.",
            )
        }
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            param: Some("model"),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{model}` does not exist or is not served here."),
            )
        }
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown route: {path}"),
        )
    }

    pub fn too_large(limit: u64) -> Self {
        ApiError {
            param: Some("file"),
            code: Some("file_too_large"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("The request body is larger than the limit of {limit} bytes."),
            )
        }
    }

    /// 431: more header lines than the server reads (`limit`).
    pub fn too_many_headers(count: usize, limit: usize) -> Self {
        ApiError {
            code: Some("request_header_fields_too_large"),
            ..Self::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_request_error",
                format!("The request has {count} header lines; at most {limit} are accepted."),
            )
        }
    }

    pub fn queue_full(retry_after: u64) -> Self {
        ApiError {
            code: Some("queue_full"),
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "The server's request queue is full; retry later.",
            )
        }
    }

    pub fn loading() -> Self {
        ApiError {
            code: Some("model_loading"),
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The models are still loading.",
            )
        }
    }

    pub fn shutting_down() -> Self {
        ApiError {
            code: Some("shutting_down"),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The server is shutting down.",
            )
        }
    }

    pub fn timeout(seconds: u64) -> Self {
        ApiError {
            code: Some("timeout"),
            ..Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                format!("The transcription did not finish within {seconds} s."),
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body, also sent as an SSE `error` event.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Errors of the transcription itself: the input's fault is a 400 (never a 500).
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Audio { msg, .. } => ApiError::bad_request(Some("file"), msg),
            Error::Usage(msg) => ApiError::bad_request(None, msg),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
