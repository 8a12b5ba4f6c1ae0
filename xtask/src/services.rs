//! Postgres and Redis for the suites, in the order of architecture §9: the servers named by
//! `DATABASE_URL` / `REDIS_URL`; else, when xtask is built with the `containers` feature and a
//! Docker engine answers, testcontainers (removed when xtask exits); else none, and the suites
//! that need one say SKIPPED. Also the sweep of what crashed tests can leave in Postgres.

use std::process::Command;

/// Servers started for this run: their URLs, and the containers kept alive until xtask exits
/// (dropping them removes them).
#[derive(Default)]
pub(crate) struct Provided {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    #[cfg(feature = "containers")]
    _containers: Vec<Box<dyn std::any::Any>>,
}

/// Whether a Docker engine answers (its socket, or `DOCKER_HOST`).
pub(crate) fn docker_engine() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
}

/// Starts a container for each of `DATABASE_URL` / `REDIS_URL` that is unset, and sets it.
#[cfg(feature = "containers")]
pub(crate) fn containers(need_pg: bool, need_redis: bool) -> anyhow::Result<Provided> {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::redis::Redis;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    let mut provided = Provided::default();
    if need_pg {
        let pg = Postgres::default().with_host_auth().start()?;
        let url = format!(
            "postgres://postgres@{}:{}/postgres",
            pg.get_host()?,
            pg.get_host_port_ipv4(5432)?
        );
        eprintln!("xtask: Postgres: testcontainers ({url})");
        provided.database_url = Some(url);
        provided._containers.push(Box::new(pg));
    }
    if need_redis {
        let redis = Redis::default().start()?;
        let url = format!(
            "redis://{}:{}",
            redis.get_host()?,
            redis.get_host_port_ipv4(6379)?
        );
        eprintln!("xtask: Redis: testcontainers ({url})");
        provided.redis_url = Some(url);
        provided._containers.push(Box::new(redis));
    }
    Ok(provided)
}

#[cfg(not(feature = "containers"))]
pub(crate) fn containers(need_pg: bool, need_redis: bool) -> anyhow::Result<Provided> {
    if need_pg || need_redis {
        eprintln!(
            "xtask: a Docker engine answers, but this xtask was built without testcontainers; \
             run `cargo run -p xtask --features containers -- test` to use it"
        );
    }
    Ok(Provided::default())
}

/// Drops the databases and schemas that e2e and store tests create (`latch_e2e_<hex>`,
/// `t_<hex>`) and that a crashed test can leave; returns how many it removed.
pub(crate) fn sweep_postgres(url: &str) -> anyhow::Result<usize> {
    let psql = |sql: &str| -> anyhow::Result<Vec<String>> {
        let out = Command::new("psql")
            .args([url, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()?;
        if !out.status.success() {
            anyhow::bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    };
    let dbs = psql("SELECT datname FROM pg_database WHERE datname ~ '^latch_e2e_[0-9a-f]{32}$'")?;
    for db in &dbs {
        psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
    }
    let schemas = psql("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t_[0-9a-f]{32}$'")?;
    for s in &schemas {
        psql(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))?;
    }
    Ok(dbs.len() + schemas.len())
}

/// Deletes the rate-limit keys test runs create under their own prefixes (they also expire).
pub(crate) fn sweep_redis(url: &str) -> anyhow::Result<usize> {
    let mut removed = 0;
    for pattern in [
        "latch:rl:e2e-*",
        "latch:rl:test-*",
        "latch:rl:sdk-*",
        "latch:rl:ops-*",
    ] {
        let out = Command::new("redis-cli")
            .args(["-u", url, "--scan", "--pattern", pattern])
            .output()?;
        let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for chunk in keys.chunks(500) {
            let del = Command::new("redis-cli")
                .args(["-u", url, "DEL"])
                .args(chunk)
                .output()?;
            if del.status.success() {
                removed += chunk.len();
            }
        }
    }
    Ok(removed)
}
