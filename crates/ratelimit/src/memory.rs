//! The in-process backend: governor's keyed GCRA, one keyed limiter per quota.

use crate::{Decision, Key, Quota, RateLimiter, Unavailable};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Keyed<C> = governor::RateLimiter<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

/// Governor's keyed GCRA. Generic over the clock so tests can drive time.
pub struct InProcess<C: Clock = DefaultClock> {
    clock: C,
    origin: C::Instant,
    limiters: Mutex<HashMap<Quota, Arc<Keyed<C>>>>,
    /// Keys whose bucket is empty, and until when (time since `origin`), for [`Self::peek_now`]:
    /// governor does not show a bucket without counting against it.
    empty_until: Mutex<HashMap<String, Duration>>,
    checks: AtomicU64,
}

impl InProcess<DefaultClock> {
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl Default for InProcess<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> InProcess<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    pub fn with_clock(clock: C) -> Self {
        InProcess {
            origin: clock.now(),
            clock,
            limiters: Mutex::new(HashMap::new()),
            empty_until: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }

    fn limiter(&self, quota: &Quota) -> Result<Arc<Keyed<C>>, Unavailable> {
        let mut map = self
            .limiters
            .lock()
            .map_err(|_| Unavailable("limiter map poisoned".into()))?;
        if let Some(l) = map.get(quota) {
            return Ok(l.clone());
        }
        let burst = NonZeroU32::new(quota.burst).ok_or_else(|| Unavailable("burst 0".into()))?;
        let g = governor::Quota::with_period(quota.emission())
            .ok_or_else(|| Unavailable("period 0".into()))?
            .allow_burst(burst);
        let l = Arc::new(
            governor::RateLimiter::dashmap_with_clock(g, self.clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
        );
        map.insert(*quota, l.clone());
        Ok(l)
    }

    fn elapsed(&self) -> Duration {
        self.clock.now().duration_since(self.origin).into()
    }

    /// Counts one request; synchronous (no I/O).
    pub fn decide(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        let limiter = self.limiter(quota)?;
        // Forget idle keys now and then, so memory stays bounded by the active keys.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
            let now = self.elapsed();
            if let Ok(mut empty) = self.empty_until.lock() {
                empty.retain(|_, until| *until > now);
            }
        }
        let flat = key.flat();
        let decision = self.count(&limiter, &flat, quota);
        // Remember an empty bucket, so that a peek can say so without counting.
        let empty_for = match &decision {
            Decision {
                allowed: false,
                retry_after,
                ..
            } => Some(*retry_after),
            Decision { remaining: 0, .. } => Some(quota.emission()),
            _ => None,
        };
        if let (Some(wait), Ok(mut empty)) = (empty_for, self.empty_until.lock()) {
            empty.insert(flat, self.elapsed() + wait);
        }
        Ok(decision)
    }

    /// Whether a request would be allowed now, counting nothing. Exact for a bucket a check
    /// found empty; after the last cell was taken, it says "empty" for up to one emission
    /// interval (governor counts whole cells).
    pub fn peek_now(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        let now = self.elapsed();
        let until = self
            .empty_until
            .lock()
            .map_err(|_| Unavailable("limiter map poisoned".into()))?
            .get(&key.flat())
            .copied()
            .filter(|until| *until > now);
        Ok(match until {
            Some(until) => Decision {
                allowed: false,
                limit: quota.burst,
                remaining: 0,
                retry_after: until - now,
                reset_after: until - now + quota.emission() * quota.burst,
            },
            None => Decision {
                allowed: true,
                limit: quota.burst,
                remaining: 1,
                retry_after: Duration::ZERO,
                reset_after: Duration::ZERO,
            },
        })
    }

    fn count(&self, limiter: &Keyed<C>, flat: &str, quota: &Quota) -> Decision {
        let t = quota.emission();
        match limiter.check_key(&flat.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(quota.burst);
                Decision {
                    allowed: true,
                    limit: quota.burst,
                    remaining,
                    retry_after: Duration::ZERO,
                    // Whole cells in use; governor does not expose the fraction of a cell.
                    reset_after: t * (quota.burst - remaining),
                }
            }
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: quota.burst,
                    remaining: 0,
                    retry_after: wait,
                    reset_after: wait + t * quota.burst,
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl<C> RateLimiter for InProcess<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    async fn check(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        self.decide(key, quota)
    }

    async fn peek(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        self.peek_now(key, quota)
    }
}
