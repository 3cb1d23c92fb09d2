//! Answers as the apiserver writes them: JSON bodies, and failures as a `Status` object
//! with the HTTP code.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::resources::Kind;

/// A failed request: becomes a `Status` body (`kind: Status, status: Failure`) with this
/// HTTP code, or an `ERROR` event in a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    /// The apiserver's `StatusReason`: `NotFound`, `AlreadyExists`, `Conflict`…
    pub reason: &'static str,
    pub message: String,
    /// `details.name` and `details.kind` (the resource, as the apiserver writes it).
    pub details: Option<(String, String)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// `pods "web" not found`.
    pub fn not_found(kind: &Kind, name: &str) -> ApiError {
        ApiError::about(404, "NotFound", kind, name, "not found")
    }

    pub fn already_exists(kind: &Kind, name: &str) -> ApiError {
        ApiError::about(409, "AlreadyExists", kind, name, "already exists")
    }

    /// A write based on an old `resourceVersion`.
    pub fn conflict(kind: &Kind, name: &str) -> ApiError {
        ApiError::about(
            409,
            "Conflict",
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// A resource version older than the retained history.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn about(code: u16, reason: &'static str, kind: &Kind, name: &str, what: &str) -> ApiError {
        let resource = if kind.group.is_empty() {
            kind.plural.to_owned()
        } else {
            format!("{}.{}", kind.plural, kind.group)
        };
        let mut error = ApiError::new(code, reason, format!("{resource} {name:?} {what}"));
        error.details = Some((name.to_owned(), kind.plural.to_owned()));
        error
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, kind)) = &self.details {
            status["details"] = json!({"name": name, "kind": kind});
        }
        status
    }
}

pub(crate) fn not_allowed() -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
