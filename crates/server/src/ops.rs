//! The server's side of `/readyz` and `/metrics`: asks the database and Redis, and renders the
//! Prometheus registry (installed once per process as the `metrics` recorder).

use api::{Check, Probe};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use store::Db;

/// Latency buckets in seconds: an auth service answers in milliseconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The process's Prometheus registry (the `metrics` facade has one global recorder).
pub fn prometheus() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("latch_http_request_duration_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "a different metrics recorder is already installed".to_owned())?;
            Ok(handle)
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

pub struct ServerProbe {
    pub db: Db,
    pub max_connections: u32,
    /// Redis, and whether Latch refuses limited routes without it (`fail_closed`).
    pub redis: Option<(ratelimit::RedisLimiter, bool)>,
    pub metrics: PrometheusHandle,
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl Probe for ServerProbe {
    async fn checks(&self) -> Vec<Check> {
        let db = tokio::time::timeout(self.timeout, self.db.ping()).await;
        let mut checks = vec![Check {
            name: "database",
            ok: matches!(db, Ok(Ok(()))),
            required: true,
            detail: match db {
                Ok(Ok(())) => "ok".into(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
            },
        }];
        if let Some((redis, fail_closed)) = &self.redis {
            let r = redis.ping().await;
            checks.push(Check {
                name: "redis",
                ok: r.is_ok(),
                required: *fail_closed,
                detail: match r {
                    Ok(()) => "ok".into(),
                    Err(e) if *fail_closed => format!("{e}; limited routes answer 503"),
                    Err(e) => format!("{e}; rate limits are kept in this process meanwhile"),
                },
            });
        }
        checks
    }

    fn metrics(&self) -> String {
        let (open, idle) = self.db.pool_usage();
        let in_use = f64::from(open) - idle as f64;
        metrics::gauge!("latch_db_pool_connections", "state" => "in_use").set(in_use.max(0.0));
        metrics::gauge!("latch_db_pool_connections", "state" => "idle").set(idle as f64);
        metrics::gauge!("latch_db_pool_max_connections").set(f64::from(self.max_connections));
        self.metrics.render()
    }
}
