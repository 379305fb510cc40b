//! Error bodies, one type per API dialect, each mapping to its status and body.
//! A 5xx logs its detail and answers with a generic message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::StoreError;

/// Rocket.Chat's errors, with the bodies its documents show.
#[derive(Debug)]
pub enum RcError {
    /// 401 `{"status":"error","message":"You must be logged in to do this."}`.
    NotLoggedIn,
    /// 401 `{"success":false,"error":"error-unauthorized"}` (the ABAC endpoints).
    Unauthorized,
    /// 400 `{"success":false,"error":"error-not-authorized"}` (`ldap.syncNow`).
    NotAuthorized,
    /// 403 `{"success":false,"error":"error-not-authorized"}` (the ABAC endpoints).
    Forbidden,
    /// 400 `{"success":false,"error":<code>}`: `LDAP_disabled`,
    /// `error-abac-not-enabled`, `error-invalid-body-params`, …
    Plain(&'static str),
    /// 400 `totp-required`.
    TotpRequired {
        /// The method the code must come from.
        method: &'static str,
        /// Whether a code was just sent (by email).
        code_generated: bool,
        /// The methods the account has.
        available: Vec<&'static str>,
    },
    /// 400 `totp-invalid`.
    TotpInvalid {
        /// The method the code was checked against.
        method: &'static str,
    },
    /// 429: too many failed attempts.
    TooManyRequests {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 401 on a failed login.
    LoginFailed,
    /// 401 on a login that needs (or got a wrong) two-factor code.
    LoginTwoFactor {
        /// `totp-required` or `totp-invalid`.
        error: &'static str,
        /// The method.
        method: &'static str,
        /// Whether a code was just sent.
        code_generated: bool,
        /// The account's methods.
        available: Vec<&'static str>,
    },
    /// 400 `{"success":false,"error":"<message> [<type>]","errorType":<type>}`, as
    /// Rocket.Chat answers a method's error.
    Failed {
        /// For people.
        message: String,
        /// The error's code (`error-token-already-exists`, …).
        error_type: &'static str,
    },
    /// 503 with a message: the server cannot do it now (its store cannot write).
    Unavailable(String),
    /// 500, detail logged.
    Internal(String),
}

impl From<StoreError> for RcError {
    fn from(err: StoreError) -> Self {
        match err.unwritable() {
            Some(reason) => {
                tracing::error!(%err, "the user store cannot write");
                RcError::Unavailable(unwritable_message(reason))
            }
            None => RcError::Internal(err.to_string()),
        }
    }
}

impl IntoResponse for RcError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            RcError::NotLoggedIn => (StatusCode::UNAUTHORIZED, not_logged_in_body()),
            RcError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"success": false, "error": "error-unauthorized"}),
            ),
            RcError::NotAuthorized => (
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": "error-not-authorized"}),
            ),
            RcError::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"success": false, "error": "error-not-authorized"}),
            ),
            RcError::Plain(error) => (
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": error}),
            ),
            RcError::TotpRequired {
                method,
                code_generated,
                available,
            } => (
                StatusCode::BAD_REQUEST,
                json!({
                    "success": false,
                    "error": "TOTP Required [totp-required]",
                    "errorType": "totp-required",
                    "details": {"method": method, "codeGenerated": code_generated, "availableMethods": available},
                }),
            ),
            RcError::TotpInvalid { method } => (
                StatusCode::BAD_REQUEST,
                json!({
                    "success": false,
                    "error": "TOTP Invalid [totp-invalid]",
                    "errorType": "totp-invalid",
                    "details": {"method": method, "codeGenerated": false},
                }),
            ),
            RcError::TooManyRequests { retry_after } => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({
                        "success": false,
                        "error": format!("Error, too many requests. Please slow down. You must wait {retry_after} seconds before trying this endpoint again. [error-too-many-requests]"),
                        "errorType": "error-too-many-requests",
                    })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return response;
            }
            RcError::LoginFailed => (
                StatusCode::UNAUTHORIZED,
                json!({"status": "error", "error": "Unauthorized", "message": "Unauthorized", "success": false}),
            ),
            RcError::LoginTwoFactor {
                error,
                method,
                code_generated,
                available,
            } => {
                let message = if error == "totp-required" {
                    "TOTP Required"
                } else {
                    "TOTP Invalid"
                };
                (
                    StatusCode::UNAUTHORIZED,
                    json!({
                        "status": "error",
                        "success": false,
                        "error": error,
                        "message": message,
                        "details": {"method": method, "codeGenerated": code_generated, "availableMethods": available},
                    }),
                )
            }
            RcError::Failed {
                message,
                error_type,
            } => (
                StatusCode::BAD_REQUEST,
                json!({
                    "success": false,
                    "error": format!("{message} [{error_type}]"),
                    "errorType": error_type,
                }),
            ),
            RcError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"success": false, "error": message, "status": "error", "message": message}),
            ),
            RcError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"success": false, "error": "Internal server error"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// Rocket.Chat's 401 for a request without a valid session: the seed's
/// `status`/`message` pair (Restivus, Rocket.Chat 7.x) and the `success`/`error` pair
/// of its newer API (8.x), so that clients of either read it.
fn not_logged_in_body() -> Value {
    const MESSAGE: &str = "You must be logged in to do this.";
    json!({"status": "error", "message": MESSAGE, "success": false, "error": MESSAGE})
}

/// grommunio-admin-api's errors (`{"message", "error"?, "errors"?}`); the admin API
/// answers in the same shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"message": message.into()}),
        }
    }

    /// 400 with the list of what is wrong.
    pub fn invalid(errors: Vec<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({"message": "Bad Request", "errors": errors}),
        }
    }

    /// 422 with `message` and the list of reasons.
    pub fn unprocessable(message: &str, errors: Vec<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"message": message, "errors": errors}),
        }
    }

    /// 401 `{"message":"Access denied","error":…}`, with Rocket.Chat's
    /// `"status":"error","success":false` beside: the routes both dialects share
    /// (`/me`, the admin API) may be read by either's client.
    pub fn access_denied(error: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: json!({"message": "Access denied", "error": error, "status": "error", "success": false}),
        }
    }

    /// 401 in Rocket.Chat's words, for a shared route called with Rocket.Chat's
    /// headers and no valid session.
    pub fn not_logged_in() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: not_logged_in_body(),
        }
    }

    /// 403 `{"message":"Access denied: Insufficient permissions for this operation"}`,
    /// grommunio's words (`api/errors.py`).
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Access denied: Insufficient permissions for this operation",
        )
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server encountered an error while processing the request.",
        )
    }

    /// 429 after too many failed attempts.
    pub fn too_many(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed attempts; try again in {retry_after} seconds"),
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A JSON request body, or 400 saying what is wrong with it.
///
/// # Errors
/// [`ApiError::invalid`] with serde's message.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::invalid(vec![format!("body: {err}")]))
}

impl From<crate::sync::StartError> for ApiError {
    fn from(err: crate::sync::StartError) -> Self {
        use crate::sync::StartError;
        match err {
            StartError::UnknownTenant(id) => ApiError::not_found(format!("Tenant {id} not found")),
            StartError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "abacsync is shutting down")
            }
            StartError::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err.unwritable() {
            Some(reason) => {
                tracing::error!(%err, "the user store cannot write");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, unwritable_message(reason))
            }
            None => ApiError::internal(err),
        }
    }
}

/// What a client is told when the store cannot write because of its data directory.
fn unwritable_message(reason: &str) -> String {
    format!(
        "The user store cannot write: {reason}. Reads still work; try again once that is fixed."
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
