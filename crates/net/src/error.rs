//! API errors: an HTTP status, a stable machine-readable code, and a short message that says
//! what to do. Body: [`api::ErrorBody`] (`{"error": {"code": "...", "message": "..."}}`), plus a
//! `Retry-After` header (seconds) on 429.
//!
//! Owns the mapping of every failure to HTTP; never hides a storage failure as a refusal.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use mesh::MeshError;
use sim::market::TradeError;
use sim::system::Reject;

/// Every code this API answers with: the wire's list ([`api::CODES`]).
pub use api::CODES;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before asking again (the `Retry-After` header).
    pub retry_after_s: Option<u64>,
    /// The id of a request whose outcome is unknown (`outcome_unknown`), in the body.
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        debug_assert!(CODES.contains(&code), "undocumented error code {code}");
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
            request_id: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn retry_after_s(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

impl From<MeshError> for ApiError {
    fn from(e: MeshError) -> ApiError {
        let status = match &e {
            // Bad input the rules caught (this layer checks it first; kept for safety).
            MeshError::Rejected(Reject::Trade(
                TradeError::UnknownGood(_) | TradeError::BadQuantity { .. },
            )) => StatusCode::BAD_REQUEST,
            MeshError::Rejected(_) | MeshError::InJump(_) => StatusCode::CONFLICT,
            MeshError::UnknownPlayer(_) => StatusCode::NOT_FOUND,
            MeshError::ShuttingDown | MeshError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            MeshError::Storage(_) | MeshError::Snapshot(_) | MeshError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut e = ApiError::new(status, e.code(), e.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            e = e.retry_after_s(1);
        }
        e
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let code = match &r {
            JsonRejection::JsonDataError(_) => "bad_field",
            JsonRejection::JsonSyntaxError(_) => "bad_json",
            JsonRejection::MissingJsonContentType(_) => "bad_content_type",
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "bad_json",
        };
        let message = match code {
            "too_large" => format!(
                "the request body is larger than {} bytes",
                super::MAX_BODY_BYTES
            ),
            "bad_content_type" => "send JSON with `content-type: application/json`".to_string(),
            _ => short(&r.body_text()),
        };
        ApiError::new(r.status(), code, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request("bad_query", short(&r.body_text()))
    }
}

/// The first few hundred bytes of a parser's message (it may quote the input).
pub fn short(text: &str) -> String {
    const MAX_MESSAGE_BYTES: usize = 300;
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = api::ErrorBody::new(self.code, self.message);
        body.error.request_id = self.request_id;
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
