//! Rate limiting for Latch (architecture §5): one [`RateLimiter`] trait with two backends that
//! make the same GCRA decisions — governor's keyed limiter in process ([`InProcess`], the
//! default for one replica) and the same algorithm as one atomic Lua script in Redis
//! ([`RedisLimiter`], shared by every replica).
//!
//! Owns its own key and quota types and knows nothing of Latch's domain.

mod memory;
mod redis_backend;

pub use memory::InProcess;
pub use redis_backend::RedisLimiter;

/// What the shared limiter does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutagePolicy {
    /// Decide in process (each replica alone) until Redis is back.
    Local,
    /// Refuse: the caller answers 503.
    FailClosed,
}

/// Redis first; on an outage, the configured policy. The outage and its end are logged once
/// each, and the next request after Redis returns uses it again.
pub struct Shared {
    redis: RedisLimiter,
    local: InProcess,
    policy: OutagePolicy,
    down: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(redis: RedisLimiter, policy: OutagePolicy) -> Self {
        Shared {
            redis,
            local: InProcess::new(),
            policy,
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for Shared {
    async fn check(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        let shared = self.redis.check(key, quota).await;
        self.or_outage(shared, || self.local.decide(key, quota))
    }

    async fn peek(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        let shared = self.redis.peek(key, quota).await;
        self.or_outage(shared, || self.local.peek_now(key, quota))
    }
}

impl Shared {
    /// Redis's answer, or on an outage the configured policy's.
    fn or_outage(
        &self,
        shared: Result<Decision, Unavailable>,
        local: impl FnOnce() -> Result<Decision, Unavailable>,
    ) -> Result<Decision, Unavailable> {
        use std::sync::atomic::Ordering;
        match shared {
            Ok(d) => {
                if self.down.swap(false, Ordering::SeqCst) {
                    tracing::info!("redis answers again; rate limits are shared by every replica again");
                }
                Ok(d)
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, policy = ?self.policy, "redis unreachable for rate limiting");
                }
                match self.policy {
                    OutagePolicy::Local => local(),
                    OutagePolicy::FailClosed => Err(e),
                }
            }
        }
    }
}

use std::time::Duration;

/// `rate` requests per `per`, at most `burst` at once (a GCRA bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub rate: u32,
    pub per: Duration,
    pub burst: u32,
}

impl Quota {
    /// Checks bounds, naming the policy in the message.
    pub fn validate(&self, policy: &str) -> Result<(), String> {
        if self.rate == 0 || self.burst == 0 {
            return Err(format!("rate limit {policy}: rate and burst must be at least 1"));
        }
        if self.per < Duration::from_secs(1) || self.per > Duration::from_secs(86_400) {
            return Err(format!("rate limit {policy}: the period must be 1 s to 1 day"));
        }
        if self.emission().is_zero() {
            return Err(format!(
                "rate limit {policy}: more than one request per microsecond"
            ));
        }
        if self.burst > 1_000_000 {
            return Err(format!("rate limit {policy}: burst must be at most 1000000"));
        }
        Ok(())
    }

    /// The GCRA emission interval T: one request's share of the period, in whole microseconds
    /// (both backends use the same integer, so they decide alike).
    pub fn emission(&self) -> Duration {
        let micros = self.per.as_micros() / u128::from(self.rate.max(1));
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// τ, the tolerance beyond one cell: T × (burst − 1).
    fn tolerance(&self) -> Duration {
        self.emission() * self.burst.saturating_sub(1)
    }
}

/// What is limited: `<project>:<policy>:<subject>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub project: String,
    pub policy: String,
    pub subject: String,
}

impl Key {
    pub fn new(project: &str, policy: &str, subject: &str) -> Self {
        Key {
            project: project.to_owned(),
            policy: policy.to_owned(),
            subject: subject.to_owned(),
        }
    }

    fn flat(&self) -> String {
        format!("{}:{}:{}", self.project, self.policy, self.subject)
    }
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket size (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// When denied, how long until a request would be allowed (`Retry-After`).
    pub retry_after: Duration,
    /// How long until the bucket is full again (`X-RateLimit-Reset`).
    pub reset_after: Duration,
}

impl Decision {
    /// Builds a decision from GCRA state: the theoretical arrival time after this request
    /// (`reset_after` = tat − now) or, when denied, the wait.
    fn from_gcra(quota: &Quota, allowed: bool, wait: Duration, reset_after: Duration) -> Self {
        let t = quota.emission().as_micros().max(1);
        let capacity = (quota.emission() + quota.tolerance()).as_micros();
        let used = reset_after.as_micros().min(capacity);
        let remaining = u32::try_from((capacity - used) / t)
            .unwrap_or(u32::MAX)
            .min(quota.burst);
        Decision {
            allowed,
            limit: quota.burst,
            remaining: if allowed { remaining } else { 0 },
            retry_after: if allowed { Duration::ZERO } else { wait },
            reset_after,
        }
    }
}

/// The shared limiter could not be asked (Redis down or slow); the caller applies its outage
/// policy.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct Unavailable(pub String);

#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request against `key` under `quota`.
    async fn check(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable>;

    /// Whether a request against `key` would be allowed now, counting nothing (for limits on
    /// outcomes, such as failed authentications: peek before, count after).
    async fn peek(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable>;
}
