//! Settings: `config/default.toml` compiled in, then `config/<LATCH_ENV>.toml`, then
//! `LATCH__SECTION__KEY` environment variables, then `DATABASE_URL` (spec §5.19). Parsed once
//! into typed values and validated, so a bad value stops the start with its key named.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

#[derive(Clone, Deserialize)]
pub struct Settings {
    #[serde(skip)]
    pub env: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub keys: KeySettings,
    pub totp: TotpSettings,
    pub lock: LockSettings,
    pub log: LogSettings,
    pub bootstrap: BootstrapSettings,
    pub redis: RedisSettings,
    pub ratelimit: RateLimitSettings,
    pub retention: RetentionSettings,
}

#[derive(Clone, Deserialize)]
pub struct RetentionSettings {
    pub enabled: bool,
    pub interval_secs: u64,
    pub session_days: i64,
}

#[derive(Clone, Deserialize)]
pub struct RedisSettings {
    pub url: String,
}

#[derive(Clone, Deserialize)]
pub struct RateLimitSettings {
    pub prefix: String,
    pub redis_timeout_ms: u64,
    pub outage: String,
    pub project_route: QuotaSettings,
    pub users_search: QuotaSettings,
    pub user_attempts: QuotaSettings,
    pub auth_failures: QuotaSettings,
    pub jwks: QuotaSettings,
}

#[derive(Clone, Copy, Deserialize)]
pub struct QuotaSettings {
    pub rate: u32,
    pub per_secs: u64,
    pub burst: u32,
}

impl QuotaSettings {
    pub fn quota(&self) -> ratelimit::Quota {
        ratelimit::Quota {
            rate: self.rate,
            per: std::time::Duration::from_secs(self.per_secs),
            burst: self.burst,
        }
    }
}

#[derive(Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub trusted_proxies: String,
    pub behind_tls_proxy: bool,
    pub credentials_cache_secs: u64,
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

impl ServerSettings {
    /// Latch serves HTTPS itself.
    pub fn tls(&self) -> bool {
        !self.tls_cert_file.is_empty()
    }

    /// `server.trusted_proxies`: comma-separated addresses or CIDR blocks.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("server.trusted_proxies: {p:?} is not an IP address or CIDR block")
                    })
            })
            .collect()
    }
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    /// 0 picks by backend (see [`DatabaseSettings::pool_size`]).
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

impl DatabaseSettings {
    /// The pool size: `max_connections`, or when it is 0 [`store::default_pool_size`] (16 on
    /// Postgres, 4 on SQLite).
    pub fn pool_size(&self) -> u32 {
        match self.max_connections {
            0 => store::default_pool_size(&self.url),
            n => n,
        }
    }
}

/// The key ring; never printed (no `Debug`).
#[derive(Clone, Deserialize)]
pub struct KeySettings {
    pub active: String,
    pub file: String,
    #[serde(default)]
    pub ring: BTreeMap<String, String>,
}

#[derive(Clone, Deserialize)]
pub struct TotpSettings {
    pub period_secs: u64,
    pub skew_steps: u8,
}

#[derive(Clone, Deserialize)]
pub struct LockSettings {
    pub max_failures: u32,
    pub lock_minutes: i64,
}

#[derive(Clone, Deserialize)]
pub struct LogSettings {
    pub level: String,
    pub format: String,
}

#[derive(Clone, Deserialize)]
pub struct BootstrapSettings {
    pub first_project: bool,
    pub first_project_name: String,
}

impl Settings {
    /// Loads the layered settings for `LATCH_ENV` (default `local`).
    pub fn load() -> anyhow::Result<Settings> {
        let env = std::env::var("LATCH_ENV").unwrap_or_else(|_| "local".into());
        let dir = std::env::var("LATCH_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| "config".into());
        Self::load_from(&env, Some(dir.join(format!("{env}.toml"))), std::env::vars())
    }

    /// Loads settings from the embedded defaults, an optional file and the given variables.
    pub fn load_from(
        env: &str,
        file: Option<PathBuf>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        if !env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || env.is_empty()
        {
            bail!("LATCH_ENV={env:?} must be a plain name such as local, test or production");
        }
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        let mut b = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
        if let Some(f) = file.filter(|f| f.exists()) {
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        let latch_vars: config::Map<String, String> = vars
            .iter()
            .filter(|(k, _)| k.starts_with("LATCH__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        b = b.add_source(
            config::Environment::with_prefix("LATCH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(latch_vars)),
        );
        if let Some(url) = vars.get("DATABASE_URL").filter(|u| !u.is_empty()) {
            b = b.set_override("database.url", url.as_str())?;
        }
        if let Some(url) = vars.get("REDIS_URL").filter(|u| !u.is_empty()) {
            b = b.set_override("redis.url", url.as_str())?;
        }
        let mut s: Settings = b
            .build()
            .context("reading the configuration")?
            .try_deserialize()
            .context("the configuration has a missing or mistyped key")?;
        s.env = env.to_owned();
        s.validate()?;
        Ok(s)
    }

    pub fn is_production(&self) -> bool {
        self.env == "production"
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.server
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "server.listen = {:?} is not an address like 127.0.0.1:8080",
                    self.server.listen
                )
            })?;
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres")) {
            bail!(
                "database.url must start with sqlite: or postgres:// (got a {} URL)",
                scheme(&self.database.url)
            );
        }
        if self.database.max_connections > 1000 {
            bail!(
                "database.max_connections must be 0 (by backend) to 1000, got {}",
                self.database.max_connections
            );
        }
        self.policy().totp.validate().map_err(anyhow::Error::msg)?;
        if !(1..=100).contains(&self.lock.max_failures) {
            bail!(
                "lock.max_failures must be 1 to 100, got {}",
                self.lock.max_failures
            );
        }
        if !(1..=10080).contains(&self.lock.lock_minutes) {
            bail!(
                "lock.lock_minutes must be 1 to 10080, got {}",
                self.lock.lock_minutes
            );
        }
        for (name, q) in [
            ("ratelimit.project_route", &self.ratelimit.project_route),
            ("ratelimit.users_search", &self.ratelimit.users_search),
            ("ratelimit.user_attempts", &self.ratelimit.user_attempts),
            ("ratelimit.auth_failures", &self.ratelimit.auth_failures),
            ("ratelimit.jwks", &self.ratelimit.jwks),
        ] {
            q.quota().validate(name).map_err(anyhow::Error::msg)?;
        }
        self.server.trusted_proxies()?;
        if !(60..=86_400).contains(&self.retention.interval_secs) {
            bail!(
                "retention.interval_secs must be 60 to 86400, got {}",
                self.retention.interval_secs
            );
        }
        if !(0..=3650).contains(&self.retention.session_days) {
            bail!(
                "retention.session_days must be 0 to 3650, got {}",
                self.retention.session_days
            );
        }
        if self.server.credentials_cache_secs > 300 {
            bail!(
                "server.credentials_cache_secs must be 0 to 300, got {}",
                self.server.credentials_cache_secs
            );
        }
        if self.server.tls_cert_file.is_empty() != self.server.tls_key_file.is_empty() {
            bail!("server.tls_cert_file and server.tls_key_file go together: set both or neither");
        }
        if !["local", "fail_closed"].contains(&self.ratelimit.outage.as_str()) {
            bail!(
                "ratelimit.outage must be \"local\" or \"fail_closed\", got {:?}",
                self.ratelimit.outage
            );
        }
        if !(10..=10_000).contains(&self.ratelimit.redis_timeout_ms) {
            bail!(
                "ratelimit.redis_timeout_ms must be 10 to 10000, got {}",
                self.ratelimit.redis_timeout_ms
            );
        }
        if !self.redis.url.is_empty() && !self.redis.url.starts_with("redis") {
            bail!("redis.url must start with redis:// or rediss://");
        }
        if !["pretty", "json"].contains(&self.log.format.as_str()) {
            bail!(
                "log.format must be \"pretty\" or \"json\", got {:?}",
                self.log.format
            );
        }
        if self.is_production() {
            if self.keys.ring.is_empty() {
                bail!(
                    "the production profile needs a configured key ring: set keys.active and keys.ring.<id> \
                     (LATCH__KEYS__ACTIVE, LATCH__KEYS__RING__<ID>); `latch keys generate` makes a key"
                );
            }
            if self.bootstrap.first_project {
                bail!("bootstrap.first_project must be false in production");
            }
            if !self.server.tls() && !self.server.behind_tls_proxy {
                bail!(
                    "the production profile does not serve codes over plain HTTP: configure TLS \
                     (server.tls_cert_file and server.tls_key_file) or declare the TLS-terminating \
                     proxy in front (server.behind_tls_proxy = true, LATCH__SERVER__BEHIND_TLS_PROXY=true)"
                );
            }
        }
        Ok(())
    }

    /// The services' policy.
    pub fn policy(&self) -> domain::service::Policy {
        domain::service::Policy {
            totp: domain::totp::TotpParams {
                period_secs: self.totp.period_secs,
                skew_steps: self.totp.skew_steps,
            },
            lock: domain::model::LockPolicy {
                max_failures: self.lock.max_failures,
                lock_secs: self.lock.lock_minutes * 60,
            },
            credentials_ttl: std::time::Duration::from_secs(self.server.credentials_cache_secs),
        }
    }
}

/// The scheme of a URL, for messages that must not echo credentials.
fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_work_on_a_laptop() {
        let s = Settings::load_from("local", None, vars(&[])).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:8080");
        assert_eq!(s.database.url, "sqlite://./data/latch.db");
        assert_eq!(s.lock.max_failures, 10);
        assert!(s.bootstrap.first_project);
    }

    #[test]
    fn the_pool_is_sized_by_backend_unless_configured() {
        let size = |pairs: &[(&str, &str)]| {
            Settings::load_from("local", None, vars(pairs))
                .unwrap()
                .database
                .pool_size()
        };
        assert_eq!(size(&[]), 4, "SQLite by default");
        assert_eq!(size(&[("DATABASE_URL", "postgres://u@h/db")]), 16);
        let explicit = [
            ("DATABASE_URL", "postgres://u@h/db"),
            ("LATCH__DATABASE__MAX_CONNECTIONS", "3"),
        ];
        assert_eq!(size(&explicit), 3);
        let e = Settings::load_from(
            "local",
            None,
            vars(&[("LATCH__DATABASE__MAX_CONNECTIONS", "1001")]),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("database.max_connections"), "{e}");
    }

    #[test]
    fn environment_variables_override_and_bad_values_name_their_key() {
        let s = Settings::load_from(
            "local",
            None,
            vars(&[
                ("LATCH__SERVER__LISTEN", "0.0.0.0:9000"),
                ("LATCH__LOCK__MAX_FAILURES", "5"),
                ("LATCH__KEYS__RING__K1", "abc"),
                ("DATABASE_URL", "postgres://u@h/db"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen, "0.0.0.0:9000");
        assert_eq!(s.lock.max_failures, 5);
        assert_eq!(s.keys.ring.get("k1").map(String::as_str), Some("abc"));
        assert_eq!(s.database.url, "postgres://u@h/db");
        for (k, v, named) in [
            ("LATCH__SERVER__LISTEN", "nope", "server.listen"),
            ("LATCH__RETENTION__INTERVAL_SECS", "5", "retention.interval_secs"),
            ("LATCH__RETENTION__SESSION_DAYS", "-1", "retention.session_days"),
            (
                "LATCH__SERVER__TRUSTED_PROXIES",
                "10.0.0.0/33",
                "server.trusted_proxies",
            ),
            ("LATCH__TOTP__SKEW_STEPS", "3", "totp.skew_steps"),
            ("LATCH__TOTP__PERIOD_SECS", "300", "totp.period_secs"),
            ("LATCH__LOCK__MAX_FAILURES", "0", "lock.max_failures"),
            ("LATCH__LOG__FORMAT", "xml", "log.format"),
        ] {
            let e = format!(
                "{:#}",
                Settings::load_from("local", None, vars(&[(k, v)])).err().unwrap()
            );
            assert!(e.contains(named), "{k}={v}: {e}");
        }
    }

    #[test]
    fn production_refuses_to_start_without_a_key_ring() {
        let dir = tempfile::tempdir().unwrap();
        let prod = dir.path().join("production.toml");
        std::fs::write(&prod, include_str!("../../../config/production.toml")).unwrap();
        let e = format!(
            "{:#}",
            Settings::load_from("production", Some(prod.clone()), vars(&[]))
                .err()
                .unwrap()
        );
        assert!(e.contains("key ring"), "{e}");
        let ok = Settings::load_from(
            "production",
            Some(prod),
            vars(&[
                ("LATCH__KEYS__ACTIVE", "k1"),
                ("LATCH__KEYS__RING__K1", "x"),
                ("LATCH__SERVER__BEHIND_TLS_PROXY", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.log.format, "json");
        assert!(!ok.bootstrap.first_project);
    }
}
