//! Request bodies: read up to 1 MiB (413 `request_too_large` beyond), parsed as JSON only after
//! authentication, with errors that name the field (spec §5.15). JSON `null` for an optional
//! field is "absent"; unknown fields are ignored.

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web::BytesMut};
use domain::Error;
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// The largest body Latch reads.
pub(crate) const LIMIT: usize = 1 << 20;

/// A request body, read but not yet parsed.
pub(crate) struct Body(BytesMut);

impl Body {
    /// Parses the body as `T`; a wrong type or a missing field is a `bad_request` naming it.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::BadRequest("the body must be a JSON object".into()).into());
        }
        // The body must be a JSON object: serde would otherwise read an array as a struct.
        let value: serde_json::Value = serde_json::from_slice(&self.0)
            .map_err(|e| ApiError(Error::BadRequest(format!("the body is not valid JSON ({e})"))))?;
        if !value.is_object() {
            return Err(Error::BadRequest("the body must be a JSON object".into()).into());
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let detail = if path == "." {
                inner.to_string()
            } else {
                format!("field `{path}`: {inner}")
            };
            ApiError(Error::BadRequest(detail))
        })
    }
}

impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > LIMIT) {
                return Err(ApiError(Error::RequestTooLarge));
            }
            let mut buf = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| match e {
                    actix_web::error::PayloadError::Overflow => ApiError(Error::RequestTooLarge),
                    other => ApiError(Error::BadRequest(format!("the body could not be read ({other})"))),
                })?;
                if buf.len() + chunk.len() > LIMIT {
                    return Err(ApiError(Error::RequestTooLarge));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Body(buf))
        })
    }
}
