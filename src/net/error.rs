//! API errors: an HTTP status, a stable machine-readable code, and a short message that says
//! what to do. Body: `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::mesh::MeshError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<MeshError> for ApiError {
    fn from(e: MeshError) -> ApiError {
        let status = match &e {
            MeshError::Rejected(_) | MeshError::InJump(_) => StatusCode::CONFLICT,
            MeshError::UnknownPlayer(_) => StatusCode::NOT_FOUND,
            MeshError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            MeshError::Storage(_) | MeshError::Snapshot(_) | MeshError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}
