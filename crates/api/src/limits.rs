//! Rate limits at the HTTP edge (spec §5.7): every authenticated `/v1` request counts against
//! its project × route bucket (users search has its own), authenticate and recover also against
//! the user's; a refusal is 429 `too_many_requests` with `Retry-After`, and every `/v1` answer
//! carries `X-RateLimit-*` of its project × route bucket.

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
}

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
