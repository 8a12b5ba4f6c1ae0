//! Rate limits at the HTTP edge (spec §5.7): every authenticated `/v1` request counts against
//! its project × route bucket (users search has its own), authenticate and recover also against
//! the user's; a refusal is 429 `too_many_requests` with `Retry-After`, and every `/v1` answer
//! carries `X-RateLimit-*` of its project × route bucket. Per client IP: failed authentications
//! (401s; peeked before the credentials are checked, counted after a failure) and the public
//! JWKS route. The client IP is the peer's, or the forwarded one when the peer is a trusted
//! proxy.

use crate::error::ApiError;
use actix_web::HttpMessage;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use domain::Error;
use ratelimit::{Decision, Key, Quota, RateLimiter};
use std::sync::Arc;
use std::time::Duration;

/// The limiter and the quotas of each policy.
pub struct Limits {
    pub limiter: Arc<dyn RateLimiter>,
    pub project_route: Quota,
    pub users_search: Quota,
    pub user_attempts: Quota,
    /// Failed authentications (401) per client IP.
    pub auth_failures: Quota,
    /// `GET /v1/sessions/jwks/{project_id}` per client IP.
    pub jwks: Quota,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, TLS-terminating proxies).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Rate limits keyed by client IP are not per project.
const ANY_PROJECT: &str = "-";

fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limits {
    async fn check(&self, key: &Key, quota: &Quota) -> Result<Decision, ApiError> {
        let d = self.limiter.check(key, quota).await.map_err(|e| {
            tracing::debug!(error = %e, "rate limiter unavailable; failing closed");
            ApiError(Error::ServiceUnavailable)
        })?;
        if d.allowed {
            Ok(d)
        } else {
            tracing::info!(policy = %key.policy, "rate limit reached");
            rejected(&key.policy);
            Err(ApiError(Error::TooManyRequests {
                retry_after_secs: secs(d.retry_after).max(1),
            }))
        }
    }

    /// Counts a request against its project × route bucket and records the decision for the
    /// response headers.
    pub(crate) async fn project_route(
        &self,
        req: &actix_web::HttpRequest,
        project_id: &str,
    ) -> Result<(), ApiError> {
        let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
        let (policy, quota) = if route == "/v1/users/search" {
            ("users_search", &self.users_search)
        } else {
            ("route", &self.project_route)
        };
        let key = Key::new(project_id, policy, &format!("{} {route}", req.method()));
        let result = self.check(&key, quota).await;
        let decision = match &result {
            Ok(d) => Some(*d),
            Err(ApiError(Error::TooManyRequests { retry_after_secs })) => Some(Decision {
                allowed: false,
                limit: quota.burst,
                remaining: 0,
                retry_after: Duration::from_secs(*retry_after_secs),
                reset_after: Duration::from_secs(*retry_after_secs) + quota.emission() * quota.burst,
            }),
            Err(_) => None,
        };
        if let Some(d) = decision {
            req.extensions_mut().insert(d);
        }
        result.map(|_| ())
    }

    /// Counts an authenticate or recover attempt against the user's bucket (keyed by the id or
    /// external id as sent).
    pub(crate) async fn user_attempt(&self, project_id: &str, user: &str) -> Result<(), ApiError> {
        self.check(&Key::new(project_id, "user_attempts", user), &self.user_attempts)
            .await
            .map(|_| ())
    }
}

impl Limits {
    /// The client's address: the peer's, or, while the peer is a trusted proxy, the next
    /// address leftwards in `X-Forwarded-For`.
    pub fn client_ip(&self, req: &actix_web::HttpRequest) -> String {
        let peer = req.peer_addr().map(|a| a.ip());
        let Some(mut ip) = peer else {
            return "unknown".into();
        };
        if self.trusted(ip) {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>();
            for hop in forwarded.iter().rev() {
                let Ok(hop) = hop.parse::<std::net::IpAddr>() else {
                    break; // a garbled hop: trust nothing before it
                };
                ip = hop;
                if !self.trusted(ip) {
                    break;
                }
            }
        }
        ip.to_string()
    }

    fn trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Refuses a client whose failed authentications used up its bucket (counts nothing).
    pub(crate) async fn auth_failures_allow(&self, ip: &str) -> Result<(), ApiError> {
        let key = Key::new(ANY_PROJECT, "auth_failures", ip);
        let d = self
            .limiter
            .peek(&key, &self.auth_failures)
            .await
            .map_err(|_| ApiError(Error::ServiceUnavailable))?;
        if d.allowed {
            Ok(())
        } else {
            tracing::info!(policy = "auth_failures", "rate limit reached");
            rejected("auth_failures");
            Err(ApiError(Error::TooManyRequests {
                retry_after_secs: secs(d.retry_after).max(1),
            }))
        }
    }

    /// Counts a failed authentication against the client's bucket.
    pub(crate) async fn auth_failed(&self, ip: &str) {
        let key = Key::new(ANY_PROJECT, "auth_failures", ip);
        if let Err(e) = self.limiter.check(&key, &self.auth_failures).await {
            tracing::debug!(error = %e, "could not count a failed authentication");
        }
    }

    /// Counts a JWKS request against the client's bucket.
    pub(crate) async fn jwks(&self, ip: &str) -> Result<(), ApiError> {
        self.check(&Key::new(ANY_PROJECT, "jwks", ip), &self.jwks)
            .await
            .map(|_| ())
    }
}

fn rejected(policy: &str) {
    metrics::counter!("latch_ratelimit_rejections_total", "policy" => policy.to_owned()).increment(1);
}

/// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds until the bucket is full).
pub(crate) fn headers(headers: &mut HeaderMap, d: &Decision) {
    for (name, value) in [
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", secs(d.reset_after).to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
}
