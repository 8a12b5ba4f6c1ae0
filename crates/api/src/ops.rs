//! Routes for operators, outside the Stytch API and its OpenAPI document: `/healthz` (the
//! process answers), `/readyz` (what it depends on answers, check by check) and `/metrics`
//! (Prometheus text). No credentials: they reveal no user data; keep them off the public
//! listener's path at the proxy if you prefer.

use actix_web::{HttpResponse, web};
use serde_json::json;

/// One dependency's answer.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    /// It answered.
    pub ok: bool,
    /// Not answering makes the replica unready (a dependency with a fallback is not required).
    pub required: bool,
    /// What was seen: "ok", the error, or what Latch does meanwhile.
    pub detail: String,
}

/// What the server knows of its dependencies and metrics.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Asks each dependency, each within a bounded time.
    async fn checks(&self) -> Vec<Check>;
    /// The Prometheus text exposition of every metric.
    fn metrics(&self) -> String;
}

pub(crate) fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(probe: Option<web::Data<dyn Probe>>) -> HttpResponse {
    let checks = match probe {
        Some(p) => p.checks().await,
        None => Vec::new(),
    };
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let detail: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|c| {
            (
                c.name.to_owned(),
                json!({"ok": c.ok, "required": c.required, "detail": c.detail}),
            )
        })
        .collect();
    let body = json!({"status": if ready { "ready" } else { "unready" }, "checks": detail});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(probe: Option<web::Data<dyn Probe>>) -> HttpResponse {
    let text = probe.map(|p| p.metrics()).unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
