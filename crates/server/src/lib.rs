//! The `latch` server: settings, telemetry, wiring of the store into the services, migrations
//! at boot, and the admin commands. Only this crate knows which database is behind the ports.

pub mod keys;
pub mod ops;
pub mod settings;
pub mod telemetry;

use anyhow::Context;
use domain::clock::Clock;
use domain::ids::Environment;
use domain::service::{Latch, NewProject};
use settings::Settings;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use store::{Db, PoolSettings};

/// Slow crypto (RSA signing and key generation) on tokio's blocking pool, so an actix worker
/// keeps serving its other connections meanwhile (issue 8).
pub struct BlockingPool;

#[async_trait::async_trait]
impl domain::ports::Offload for BlockingPool {
    async fn run(&self, job: domain::ports::Job) -> Result<Box<dyn std::any::Any + Send>, domain::Error> {
        tokio::task::spawn_blocking(job)
            .await
            .map_err(domain::Error::internal)
    }
}

/// The wall clock. The binary has no other (spec §5.20).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// Opens the database (running migrations) and builds the services.
pub async fn services(s: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<(Arc<Latch>, Db)> {
    let (latch, db, _) = services_with_ring(s, clock).await?;
    Ok((latch, db))
}

/// [`services`], also returning the active key id and the ids in the ring.
pub async fn services_with_ring(
    s: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<Latch>, Db, (String, Vec<String>))> {
    let ring = keys::load_ring(s)?;
    let pool = PoolSettings {
        max_connections: s.database.pool_size(),
        acquire_timeout: Duration::from_secs(s.database.acquire_timeout_secs),
        schema: None,
    };
    let db = Db::connect(&s.database.url, &pool)
        .await
        .with_context(|| format!("connecting to the database ({})", redact(&s.database.url)))?;
    db.migrate().await.context("running database migrations")?;
    // A key removed from the ring while values are still sealed under it would lose them.
    let usage = db.key_usage().await.context("counting sealed values per key")?;
    for (key_id, kinds) in &usage {
        if !ring.ids().any(|id| id == key_id) {
            let what: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            anyhow::bail!(
                "key {key_id:?} is not in keys.ring but still seals {}; put it back in the ring (it \
                 can stay inactive, keys.active names the key new values use)",
                what.join(", ")
            );
        }
    }
    let ids = (
        ring.active_id().to_owned(),
        ring.ids().map(str::to_owned).collect(),
    );
    let latch = Latch::new(Arc::new(db.clone()), Arc::new(ring), clock, s.policy())
        .with_offload(Arc::new(BlockingPool));
    Ok((Arc::new(latch), db, ids))
}

/// Redis for the rate limits, if `redis.url` is set, and whether its outage policy is
/// `fail_closed`.
pub fn redis(s: &Settings) -> anyhow::Result<Option<(ratelimit::RedisLimiter, bool)>> {
    if s.redis.url.is_empty() {
        return Ok(None);
    }
    let r = &s.ratelimit;
    let redis =
        ratelimit::RedisLimiter::new(&s.redis.url, &r.prefix, Duration::from_millis(r.redis_timeout_ms))
            .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
    Ok(Some((redis, r.outage == "fail_closed")))
}

/// The rate limits: shared through Redis when `redis.url` is set, else in this process.
pub fn limits(s: &Settings) -> anyhow::Result<api::Limits> {
    let r = &s.ratelimit;
    let limiter: Arc<dyn ratelimit::RateLimiter> = match redis(s)? {
        None => Arc::new(ratelimit::InProcess::new()),
        Some((redis, fail_closed)) => {
            let policy = if fail_closed {
                ratelimit::OutagePolicy::FailClosed
            } else {
                ratelimit::OutagePolicy::Local
            };
            Arc::new(ratelimit::Shared::new(redis, policy))
        }
    };
    Ok(api::Limits {
        limiter,
        project_route: r.project_route.quota(),
        users_search: r.users_search.quota(),
        user_attempts: r.user_attempts.quota(),
        auth_failures: r.auth_failures.quota(),
        jwks: r.jwks.quota(),
        trusted_proxies: s.server.trusted_proxies()?,
    })
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The rustls configuration for `server.tls_cert_file` / `server.tls_key_file`.
fn tls_config(s: &settings::ServerSettings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&s.tls_cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading server.tls_cert_file {}", s.tls_cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&s.tls_key_file)
        .with_context(|| format!("reading server.tls_key_file {}", s.tls_key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls_cert_file and server.tls_key_file do not make a usable certificate")
}

/// The retention task: a purge every `retention.interval_secs`, the first at start. A failed
/// pass is logged and tried again at the next tick.
fn retention(latch: Arc<Latch>, r: settings::RetentionSettings) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(r.interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = latch.purge(r.session_days * 86_400, false).await {
                tracing::warn!(error = %e.message(), "retention pass failed; trying again at the next interval");
            }
        }
    });
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    db: Db,
    /// The project created on a first start, whose credentials the caller shows once.
    pub first_project: Option<NewProject>,
    pub latch: Arc<Latch>,
}

impl Application {
    /// Builds the application on `settings.server.listen` (port 0 picks a free port).
    pub async fn build(s: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let (latch, db) = services(s, clock).await?;
        let first_project = if s.bootstrap.first_project && latch.count_projects().await? == 0 {
            Some(
                latch
                    .create_project(&s.bootstrap.first_project_name, Environment::Test)
                    .await?,
            )
        } else {
            None
        };
        if s.retention.enabled {
            retention(latch.clone(), s.retention.clone());
        }
        let listener = TcpListener::bind(&s.server.listen)
            .with_context(|| format!("listening on {} (server.listen / --listen)", s.server.listen))?;
        let port = listener.local_addr()?.port();
        let for_workers = latch.clone();
        let limits = Arc::new(limits(s)?);
        let probe: Arc<dyn api::Probe> = Arc::new(ops::ServerProbe {
            db: db.clone(),
            max_connections: s.database.pool_size(),
            redis: redis(s)?,
            metrics: ops::prometheus()?,
            timeout: Duration::from_secs(2),
        });
        let mut server =
            actix_web::HttpServer::new(move || api::app(for_workers.clone(), limits.clone(), probe.clone()))
                .shutdown_timeout(s.server.shutdown_timeout_secs);
        if s.server.workers > 0 {
            server = server.workers(s.server.workers);
        }
        let server = if s.server.tls() {
            server.listen_rustls_0_23(listener, tls_config(&s.server)?)?
        } else {
            server.listen(listener)?
        }
        .run();
        Ok(Application {
            port,
            server,
            db,
            first_project,
            latch,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT drain in-flight requests), then closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        self.db.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_never_reach_messages() {
        assert_eq!(
            super::redact("postgres://app:hunter2@db:5432/latch"),
            "postgres://app:***@db:5432/latch"
        );
        assert_eq!(
            super::redact("sqlite://./data/latch.db"),
            "sqlite://./data/latch.db"
        );
    }

    /// A slow job handed to the blocking pool leaves the worker free: on a one-thread runtime
    /// (as each actix worker is), a timer of 20 ms fires while a 400 ms job is still running,
    /// and the job's value comes back. Run inline, the same job would hold the timer back.
    #[tokio::test(flavor = "current_thread")]
    async fn slow_work_leaves_the_worker_free() {
        use domain::ports::{Inline, Offload};
        use std::time::{Duration, Instant};
        let slow = || -> domain::ports::Job {
            Box::new(|| {
                std::thread::sleep(Duration::from_millis(400));
                Box::new(std::thread::current().id())
            })
        };
        let started = Instant::now();
        let job = tokio::spawn(async move { super::BlockingPool.run(slow()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "the worker was blocked for {:?}",
            started.elapsed()
        );
        let ran_on = *job
            .await
            .unwrap()
            .unwrap()
            .downcast::<std::thread::ThreadId>()
            .unwrap();
        assert_ne!(ran_on, std::thread::current().id(), "ran off the worker thread");
        // The contrast: inline, the worker is held for the whole job.
        let started = Instant::now();
        let job = tokio::spawn(async move { Inline.run(slow()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert!(job.await.unwrap().is_ok());
    }
}
