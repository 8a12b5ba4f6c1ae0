//! The Stytch error envelope, built in exactly one place (spec §3.1). Handlers return
//! `Result<_, ApiError>`; the body extractor, the auth extractor and the 404/405 fallback use the
//! same builder, so every error a client can see has the same shape and a `request_id`.

use crate::request_id;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, http::header};
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

/// A domain error on its way to the client.
pub struct ApiError(pub domain::Error);

impl From<domain::Error> for ApiError {
    fn from(e: domain::Error) -> Self {
        ApiError(e)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Every error Latch returns: HTTP status, Stytch `error_type`, a sentence, and the request id.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "status_code": 404,
    "request_id": "request-id-test-b05c992f-ebdc-489d-a754-c7e70ba13141",
    "error_type": "user_not_found",
    "error_message": "User could not be found.",
    "error_url": "https://stytch.com/docs/api/errors/404#user_not_found"
}))]
pub struct ErrorBody {
    /// The HTTP status, repeated in the body (the SDKs read it from here).
    pub status_code: u16,
    /// The id of this request, also in the `X-Request-Id` header and every log line of it.
    pub request_id: String,
    /// Machine-readable error name, one of Stytch's `error_type`s.
    pub error_type: String,
    /// One English sentence for people.
    pub error_message: String,
    /// Where the error type is described.
    pub error_url: String,
}

/// Writes the chain of causes of an internal error on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let e = &self.0;
        let status = self.status_code();
        if status.is_server_error() {
            // The cause is logged once, here, and never sent to the client.
            tracing::error!(error_type = e.error_type(), cause = %chain(e), "request failed");
        } else {
            tracing::info!(error_type = e.error_type(), "request refused");
        }
        let body = ErrorBody {
            status_code: status.as_u16(),
            request_id: request_id::current(),
            error_type: e.error_type().to_owned(),
            error_message: e.message(),
            error_url: format!(
                "https://stytch.com/docs/api/errors/{}#{}",
                status.as_u16(),
                e.error_type()
            ),
        };
        let mut res = HttpResponse::build(status);
        if let Some(secs) = e.retry_after_secs() {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(body)
    }
}
