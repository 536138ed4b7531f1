//! API errors as the `Status` objects the real server sends: kube-rs decodes
//! them into `kube::core::Status`, and a watcher decides on `code` (410 means
//! relist), so code, reason and shape must match.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// A failed API call: HTTP code, `reason`, message and the object it was
/// about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Expired`…).
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`: name, group and kind (the resource's plural), when
    /// the error is about one object.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error without details.
    #[must_use]
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, resource: &ResourceType, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": resource.group, "kind": resource.plural}));
        self
    }

    /// 400 `BadRequest`.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 `NotFound` for object `name` (`services "x" not found`).
    #[must_use]
    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .about(resource, name)
    }

    /// 404 `NotFound` for a path the server does not serve.
    #[must_use]
    pub fn no_such_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 `MethodNotAllowed`.
    #[must_use]
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    /// 409 `AlreadyExists`.
    #[must_use]
    pub fn already_exists(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .about(resource, name)
    }

    /// 409 `Conflict`: a stale resourceVersion or a failed precondition.
    #[must_use]
    pub fn conflict(resource: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .about(resource, name)
    }

    /// 410 `Expired`: a resourceVersion or continue token older than the
    /// compacted history.
    #[must_use]
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 `UnsupportedMediaType`.
    #[must_use]
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}); the stand-in accepts application/json, application/yaml and application/merge-patch+json"
            ),
        )
    }

    /// 422 `Invalid`.
    #[must_use]
    pub fn invalid(resource: &ResourceType, name: &str, message: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", resource.kind),
        )
        .about(resource, name)
    }

    /// The `Status` object (`kind: Status`, `status: Failure`).
    #[must_use]
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
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    /// Reads a `Status` answered with HTTP `code`; anything else becomes an
    /// error with the body as message.
    #[must_use]
    pub fn from_body(code: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(status) if status["kind"] == "Status" => ApiError {
                code,
                reason: status["reason"].as_str().unwrap_or_default().to_owned(),
                message: status["message"].as_str().unwrap_or_default().to_owned(),
                details: status.get("details").cloned(),
            },
            _ => Self::new(code, "Unknown", String::from_utf8_lossy(body).into_owned()),
        }
    }
}
