//! HTTP Basic `project_id:secret` on every `/v1` route (spec §1.2, §5.14). An extractor, not a
//! scope middleware, so route matching comes first (unknown route → 404, wrong method → 405).

use crate::error::ApiError;
use crate::limits::Limits;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, http::header, web};
use domain::model::Project;
use domain::service::Latch;
use futures::future::LocalBoxFuture;

/// The project a request authenticated as.
pub(crate) struct Authed(pub Project);

/// The Basic credentials as the request-id middleware parsed them (it needs the project's
/// environment first), left in the request's extensions so the header is decoded once.
pub(crate) struct Presented(pub(crate) (String, String));

/// `(project_id, secret)` from `Authorization: Basic …`, if the header has that shape.
pub(crate) fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = data_encoding::BASE64.decode(b64.trim().as_bytes()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let creds = req
            .extensions_mut()
            .remove::<Presented>()
            .map(|p| p.0)
            .or_else(|| basic_credentials(req));
        let latch = req.app_data::<web::Data<Latch>>().cloned();
        let limits = req.app_data::<web::Data<Limits>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let latch =
                latch.ok_or_else(|| ApiError(domain::Error::internal("Latch is not in the app data")))?;
            let ip = limits.as_ref().map(|l| l.client_ip(&req));
            if let (Some(limits), Some(ip)) = (&limits, &ip) {
                limits.auth_failures_allow(ip).await?;
            }
            let authenticated = match creds {
                Some((id, secret)) => latch.authenticate_project(&id, &secret).await,
                None => Err(domain::Error::Unauthorized),
            };
            let project = match authenticated {
                Ok(project) => project,
                Err(e) => {
                    if let (domain::Error::Unauthorized, Some(limits), Some(ip)) = (&e, &limits, &ip) {
                        limits.auth_failed(ip).await;
                    }
                    return Err(ApiError(e));
                }
            };
            // Every authenticated /v1 request counts against its project × route bucket.
            if let Some(limits) = limits {
                limits.project_route(&req, &project.id).await?;
            }
            Ok(Authed(project))
        })
    }
}
