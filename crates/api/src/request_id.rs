//! Request ids (spec §5.13, §5.17): `request-id-{test|live}-<uuid>`, the word taken from the
//! project named in the Authorization header. The id is set for the whole handling of a request
//! (a task-local), returned in `X-Request-Id`, and carried by the tracing span of every log line.

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use domain::ids::{self, Environment, Kind};
use std::time::Instant;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The current request's id; outside a request (which should not happen) a fresh one.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| ids::mint(Kind::RequestId, Environment::Test))
}

/// Middleware: assigns the id, opens the span, logs the outcome, sets `X-Request-Id`.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // The word in the id is the environment of the project the Authorization header names;
    // the parsed header stays with the request for the `Authed` extractor.
    let creds = crate::auth::basic_credentials(req.request());
    let env = creds
        .as_ref()
        .and_then(|(project_id, _)| ids::project_environment(project_id))
        .unwrap_or(Environment::Test);
    if let Some(c) = creds {
        req.extensions_mut().insert(crate::auth::Presented(c));
    }
    let request_id = ids::mint(Kind::RequestId, env);
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method());
    let started = Instant::now();
    let id_header = HeaderValue::from_str(&request_id).ok();
    REQUEST_ID
        .scope(
            request_id,
            async move {
                match next.call(req).await {
                    Ok(res) => {
                        let mut res = res.map_into_boxed_body();
                        let route = res.request().match_pattern();
                        let route = route.as_deref().unwrap_or("unmatched");
                        let elapsed = started.elapsed();
                        tracing::info!(
                            route,
                            status = res.status().as_u16(),
                            latency_ms = elapsed.as_secs_f64() * 1000.0,
                            "request finished"
                        );
                        record(
                            route,
                            res.request().method().as_str(),
                            res.status().as_u16(),
                            elapsed,
                        );
                        let decision = res.request().extensions().get::<ratelimit::Decision>().copied();
                        if let Some(d) = decision {
                            crate::limits::headers(res.headers_mut(), &d);
                        }
                        decorate(res.headers_mut(), id_header);
                        Ok(res)
                    }
                    // Rare (handlers and extractors answer with responses); the response is still
                    // built here, inside the scope, so it carries this request's id.
                    Err(e) => {
                        let mut resp = e.error_response();
                        tracing::info!(status = resp.status().as_u16(), "request failed before a handler");
                        record("unmatched", "-", resp.status().as_u16(), started.elapsed());
                        decorate(resp.headers_mut(), id_header);
                        Err(actix_web::error::InternalError::from_response(e.to_string(), resp).into())
                    }
                }
            }
            .instrument(span),
        )
        .await
}

/// Requests by route and status, and their latency (`/metrics`). Routes are patterns, never
/// raw paths, so the label set stays bounded.
fn record(route: &str, method: &str, status: u16, elapsed: std::time::Duration) {
    let method = match method {
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" => method,
        _ => "other",
    };
    metrics::counter!(
        "latch_http_requests_total",
        "route" => route.to_owned(),
        "method" => method.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("latch_http_request_duration_seconds", "route" => route.to_owned())
        .record(elapsed.as_secs_f64());
}

fn decorate(headers: &mut actix_web::http::header::HeaderMap, id: Option<HeaderValue>) {
    if let Some(v) = id {
        headers.insert(HEADER, v);
    }
    // Nothing Latch returns may be kept by a shared cache: bodies hold secrets and codes.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
