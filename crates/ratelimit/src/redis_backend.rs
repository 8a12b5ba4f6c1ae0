//! The shared backend: the same GCRA as governor (allow iff now ≥ tat − τ; then
//! tat = max(tat, now) + T), run as one atomic Lua script in Redis with EVALSHA (redis-rs
//! loads it again after a Redis restart), keys `<prefix><project>:<policy>:<subject>` expiring
//! when the bucket is full again. Every call is bounded by a timeout.

use crate::{Decision, Key, Quota, RateLimiter, Unavailable};
use redis::aio::ConnectionManager;
use std::time::Duration;

const GCRA: &str = r#"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - tau
if now < earliest then
  return {0, earliest - now, tat - now}
end
if ARGV[4] == 'peek' then
  return {1, 0, math.max(tat - now, 0)}
end
local nxt = math.max(tat, now) + t
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.floor((nxt - now) / 1000) + 1)
return {1, 0, nxt - now}
"#;

/// GCRA in Redis, shared by every replica. Connects on first use (so Latch starts while Redis
/// is down) and reconnects by itself.
#[derive(Clone)]
pub struct RedisLimiter {
    client: redis::Client,
    conn: std::sync::Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
}

impl RedisLimiter {
    /// A limiter for `url` (parsed now, connected on first use); keys start with `prefix`.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, Unavailable> {
        let client = redis::Client::open(url).map_err(|e| Unavailable(format!("bad redis url: {e}")))?;
        Ok(RedisLimiter {
            client,
            conn: Default::default(),
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    /// A limiter connected now (for tests and start-up checks).
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, Unavailable> {
        let l = Self::new(url, prefix, timeout)?;
        l.connection().await?;
        Ok(l)
    }

    async fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        let c = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| Unavailable("redis did not answer in time".into()))?
            .map_err(|e| Unavailable(e.to_string()))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Redis answers a PING within the timeout (for readiness checks).
    pub async fn ping(&self) -> Result<(), Unavailable> {
        let mut conn = self.connection().await?;
        let cmd = redis::cmd("PING");
        tokio::time::timeout(self.timeout, cmd.query_async::<String>(&mut conn))
            .await
            .map_err(|_| Unavailable("redis did not answer in time".into()))?
            .map_err(|e| Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Runs the script; `now_micros` only for tests that drive time.
    pub async fn decide_at(
        &self,
        key: &Key,
        quota: &Quota,
        now_micros: Option<u64>,
    ) -> Result<Decision, Unavailable> {
        self.run(key, quota, now_micros, false).await
    }

    /// Would a request be allowed now? Counts nothing.
    pub async fn peek_at(
        &self,
        key: &Key,
        quota: &Quota,
        now_micros: Option<u64>,
    ) -> Result<Decision, Unavailable> {
        self.run(key, quota, now_micros, true).await
    }

    async fn run(
        &self,
        key: &Key,
        quota: &Quota,
        now_micros: Option<u64>,
        peek: bool,
    ) -> Result<Decision, Unavailable> {
        let t = u64::try_from(quota.emission().as_micros()).unwrap_or(u64::MAX);
        let tau = u64::try_from(quota.tolerance().as_micros()).unwrap_or(u64::MAX);
        let mut conn = self.connection().await?;
        let mut call = self.script.key(format!("{}{}", self.prefix, key.flat()));
        call.arg(t)
            .arg(tau)
            .arg(now_micros.map(|n| n.to_string()).unwrap_or_default())
            .arg(if peek { "peek" } else { "" });
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| Unavailable("redis did not answer in time".into()))?
            .map_err(|e| Unavailable(e.to_string()))?;
        let [allowed, wait, reset] = reply[..] else {
            return Err(Unavailable("unexpected reply from the rate-limit script".into()));
        };
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision::from_gcra(
            quota,
            allowed == 1,
            micros(wait),
            micros(reset),
        ))
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        self.decide_at(key, quota, None).await
    }

    async fn peek(&self, key: &Key, quota: &Quota) -> Result<Decision, Unavailable> {
        self.peek_at(key, quota, None).await
    }
}
