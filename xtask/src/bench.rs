//! `cargo xtask bench [--backend postgres|sqlite] [--duration S] [--connections N[,N…]]
//! [--users N] [--routes R[,R…]] [--bin-dir DIR] [--callgrind]`: Latch's cost per request against this machine's own ceilings, in one run.
//!
//! 1. Builds `latch` and `latch-baseline` with `--release --locked`.
//! 2. Starts Latch on a fresh database (a new Postgres database under `DATABASE_URL`, or a
//!    SQLite file) with the rate limits raised by configuration, after seeding `--users` users
//!    (default 60 000) with verified, never-used TOTPs in bulk through `store`, sealed under a
//!    key ring the bench makes and hands to Latch, so every success-path request uses a fresh
//!    valid code.
//! 3. Drives each route for `--duration` seconds at each connection count with a load generator
//!    that computes codes (reqwest + an HDR histogram per connection). The baselines run before
//!    and after Latch's routes, and each route's own ceiling again right after it at the same
//!    connection count, since the machine's speed drifts during a run: `latch-baseline`'s
//!    primary-key lookup through the same actix + sea-orm stack on Postgres and on SQLite, and
//!    its no-I/O handler. Each route gets two ratios: to the mean of all its ceiling's runs, and
//!    to the run right after it. The generator shares the machine with the server.
//! 4. Measures one rate-limiter check in process and in Redis (`REDIS_URL`).
//! 5. Prints the table (route, requests/s, p50, p99, p99.9, errors, server RSS, CPU time per
//!    request of the server and of Postgres, both ratios) and writes it as JSON and
//!    Markdown under `target/bench/`.
//! 6. With `--callgrind`, runs both servers under callgrind and adds each route's server
//!    instructions per request: the number to compare two builds by on a machine whose speed
//!    drifts (`callgrind.rs`).

use crate::callgrind::Callgrind;
use crate::{cargo, root, run, target_dir};
use anyhow::{Context, bail};
use domain::ids::{self, Environment, Kind};
use domain::model::{Email, Name, NewTotp, NewUser, UserStatus};
use domain::totp::TotpSecret;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Opts {
    backend: String,
    duration: Duration,
    connections: Vec<usize>,
    users: usize,
    /// Only these Latch routes (`--routes a,b`); the baselines always run.
    routes: Option<Vec<String>>,
    /// `--bin-dir DIR`: measure the `latch` and `latch-baseline` found there (another build,
    /// for an A/B comparison) instead of building this checkout.
    bin_dir: Option<PathBuf>,
    /// `--callgrind`: the servers run under callgrind and each route reports the server's
    /// instructions per request (see `callgrind.rs`).
    callgrind: bool,
}

fn opts(args: &[String]) -> anyhow::Result<Opts> {
    let flag = |name: &str| crate::flag(args, name);
    let pg = std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    let backend = flag("--backend").unwrap_or_else(|| if pg { "postgres" } else { "sqlite" }.into());
    if !["postgres", "sqlite"].contains(&backend.as_str()) {
        bail!("--backend postgres|sqlite");
    }
    if backend == "postgres" && !pg {
        bail!(
            "--backend postgres needs DATABASE_URL=postgres://… (the server to create the bench database on)"
        );
    }
    let duration = Duration::from_secs(flag("--duration").map(|d| d.parse()).transpose()?.unwrap_or(10));
    let connections = flag("--connections")
        .unwrap_or_else(|| "64,16".into())
        .split(',')
        .map(|c| c.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .context("--connections N[,N…]")?;
    let users = flag("--users").map(|u| u.parse()).transpose()?.unwrap_or(60_000);
    let routes = flag("--routes").map(|r| r.split(',').map(|s| s.trim().to_owned()).collect());
    Ok(Opts {
        backend,
        duration,
        connections,
        users,
        routes,
        bin_dir: flag("--bin-dir").map(PathBuf::from),
        callgrind: args.iter().any(|a| a == "--callgrind"),
    })
}

/// A server process, killed when dropped; under callgrind when the bench runs with
/// `--callgrind`.
struct Proc(Child, Option<Callgrind>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Starts `bin` with `args` (and the environment `env` sets), under `callgrind` if given.
    fn spawn(
        bin: &Path,
        callgrind: Option<&Callgrind>,
        env: impl FnOnce(&mut Command),
        args: &[&str],
    ) -> anyhow::Result<Proc> {
        let mut cmd = match callgrind {
            Some(cg) => cg.command(bin),
            None => Command::new(bin),
        };
        env(&mut cmd);
        let child = cmd
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Proc(child, callgrind.cloned()))
    }

    /// Resident and peak resident memory in MB (`/proc/<pid>/status`).
    fn rss_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }

    fn cpu_micros(&self) -> u64 {
        cpu_micros(Path::new(&format!("/proc/{}/stat", self.0.id())))
    }
}

/// User + system CPU time of one process in µs, from `/proc/<pid>/stat` (fields 14 and 15, in
/// clock ticks of 10 ms: Linux reports them in `USER_HZ`, which is 100 on every architecture
/// this runs on).
fn cpu_micros(stat: &Path) -> u64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it follow its `)`.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    (ticks(11) + ticks(12)) * 10_000
}

/// The CPU time of this process: the load generator's.
fn generator_cpu_micros() -> u64 {
    cpu_micros(Path::new("/proc/self/stat"))
}

/// The CPU time of every Postgres process on the machine (the bench's database server), in µs.
fn postgres_cpu_micros() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|e| cpu_micros(&e.path().join("stat")))
        .sum()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let ok = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("psql {sql} failed");
    }
    Ok(())
}

/// One seeded user: what the load needs to send valid requests.
#[derive(Clone)]
struct Seeded {
    id: String,
    secret: Vec<u8>,
    recovery: Vec<String>,
}

/// The result of driving one target.
struct Row {
    route: String,
    connections: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    requests: u64,
    rss_mb: f64,
    /// CPU time per request: the server process, and Postgres (when the route reads it).
    server_cpu_us: f64,
    db_cpu_us: Option<f64>,
    /// The load generator's own CPU (this process), which shares the cores with the server.
    generator_cpu_us: f64,
    /// `--callgrind`: the server's user-space instructions per request.
    instructions_per_request: Option<f64>,
    baseline: Option<String>,
    /// This route's rate over its ceiling's, measured right after it at the same connection
    /// count (the machine's speed drifts within minutes; the neighbouring run drifts least).
    next_ratio: Option<f64>,
    note: String,
}

/// Builds each request of a target: (method, path, JSON body). `None` means the target has no
/// fresh input left (every seeded user used).
type Make = Arc<dyn Fn(usize) -> Option<(reqwest::Method, String, Option<String>)> + Send + Sync>;

/// A JSON object of string fields, as text: the generator shares the two cores with the
/// servers, so it builds no `serde_json::Value` per request. (Measured: no change in the
/// ratios. The generator's 50 µs per `recovery_codes` request, against 28 for the ceiling's
/// GET, is now the HTTP client and its runtime, with a POST to send and a larger answer to read.)
fn body(fields: &[(&str, &str)]) -> String {
    let mut b = String::with_capacity(96);
    b.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            b.push(',');
        }
        // Serialising a `&str` cannot fail.
        b.push_str(&serde_json::to_string(k).unwrap_or_default());
        b.push(':');
        b.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    b.push('}');
    b
}

/// `Authorization: Basic …` for a project, built once per target instead of once per request.
fn basic(id: &str, secret: &str) -> anyhow::Result<reqwest::header::HeaderValue> {
    let token = data_encoding::BASE64.encode(format!("{id}:{secret}").as_bytes());
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))?;
    v.set_sensitive(true);
    Ok(v)
}

struct Target {
    name: String,
    base: String,
    auth: Option<reqwest::header::HeaderValue>,
    expect: u16,
    make: Make,
    baseline: Option<String>,
}

async fn drive(
    t: &Target,
    connections: usize,
    duration: Duration,
    server: &Proc,
    postgres: bool,
) -> anyhow::Result<Row> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    if let Some(cg) = &server.1 {
        cg.start(server.0.id())?;
    }
    let (server_cpu, db_cpu) = (server.cpu_micros(), postgres.then(postgres_cpu_micros));
    let generator_cpu = generator_cpu_micros();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, next, make) = (client.clone(), next.clone(), t.make.clone());
        let (base, auth, expect) = (t.base.clone(), t.auth.clone(), t.expect);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let (mut errors, mut ran_out) = (0u64, false);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((method, path, body)) = make(i) else {
                    ran_out = true;
                    break;
                };
                let mut req = client.request(method, format!("{base}{path}"));
                if let Some(a) = &auth {
                    req = req.header(reqwest::header::AUTHORIZATION, a.clone());
                }
                if let Some(b) = body {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b);
                }
                let sent = Instant::now();
                let ok = match req.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        status == expect
                    }
                    Err(_) => false,
                };
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                if let Some(h) = h.as_mut() {
                    let _ = h.record(micros.max(1));
                }
                errors += u64::from(!ok);
            }
            (h, errors, ran_out, Instant::now())
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut errors, mut ran_out, mut last) = (0, false, started);
    for task in tasks {
        let (h, e, out, finished) = task.await?;
        if let Some(h) = h {
            all.add(h)?;
        }
        errors += e;
        ran_out |= out;
        last = last.max(finished);
    }
    let elapsed = last.duration_since(started).as_secs_f64();
    let requests = all.len();
    let instructions = match &server.1 {
        Some(cg) => Some(cg.stop(server.0.id(), &format!("{} c={connections}", t.name))?),
        None => None,
    };
    let per_request = |micros: u64| micros as f64 / requests.max(1) as f64;
    let server_cpu_us = per_request(server.cpu_micros().saturating_sub(server_cpu));
    let db_cpu_us = db_cpu.map(|before| per_request(postgres_cpu_micros().saturating_sub(before)));
    let generator_cpu_us = per_request(generator_cpu_micros().saturating_sub(generator_cpu));
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        route: t.name.clone(),
        connections,
        rps: requests as f64 / elapsed.max(0.001),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        errors,
        requests,
        rss_mb: server.rss_mb().0,
        server_cpu_us,
        db_cpu_us,
        generator_cpu_us,
        instructions_per_request: instructions.map(|i| i as f64 / requests.max(1) as f64),
        baseline: t.baseline.clone(),
        next_ratio: None,
        note: if ran_out {
            format!("seeded users used up after {elapsed:.1} s")
        } else {
            String::new()
        },
    })
}

/// One line on stderr per measured route, as it finishes.
fn progress(row: &Row) {
    let db = row
        .db_cpu_us
        .map(|c| format!("  postgres {c:>4.0} µs"))
        .unwrap_or_default();
    let instructions = row
        .instructions_per_request
        .map(|i| format!("  server instructions/req {i:.0}"))
        .unwrap_or_default();
    eprintln!(
        "xtask: {:<24} c={:<3} {:>8.0} req/s  p99 {:>7.2} ms  errors {}  cpu/req: server {:>4.0} µs{db}  generator {:>4.0} µs{instructions}",
        row.route, row.connections, row.rps, row.p99_ms, row.errors, row.server_cpu_us, row.generator_cpu_us
    );
}

fn code(secret: &[u8], at: i64, offset: i64) -> String {
    let step = u64::try_from(at.div_euclid(30) + offset).unwrap_or(0);
    domain::totp::code_at_step(secret, step, 30, 6).unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The bench's own key ring, handed to Latch through `LATCH__KEYS__*`, so the seeding can seal
/// secrets and recovery codes exactly as Latch would.
struct Ring {
    key: String,
    ring: domain::crypto::KeyRing,
}

const RING_ID: &str = "bench";

fn ring() -> anyhow::Result<Ring> {
    let key = domain::crypto::KeyRing::generate_key()?;
    let ring = domain::crypto::KeyRing::from_config(RING_ID, [(RING_ID, key.as_str())])?;
    Ok(Ring { key, ring })
}

/// One user with a verified TOTP (never used, so any code of the window works) and its ten
/// recovery codes, sealed under the bench ring.
fn seeded_user(
    ring: &domain::crypto::KeyRing,
    i: usize,
    now: i64,
) -> anyhow::Result<(NewUser, NewTotp, Seeded)> {
    let env = Environment::Test;
    let user_id = ids::mint(Kind::User, env);
    let user = NewUser {
        id: user_id.clone(),
        external_id: None,
        status: UserStatus::Active,
        name: Name::default(),
        email: Some(Email {
            id: ids::mint(Kind::Email, env),
            email: format!("bench{i}@example.com"),
            verified: false,
        }),
        phone_number: None,
        trusted_metadata: Default::default(),
        untrusted_metadata: Default::default(),
        roles: vec!["stytch_user".into()],
        created_at: now,
    };
    let totp_id = ids::mint(Kind::Totp, env);
    let secret = TotpSecret::generate()?;
    let (codes, shown) = domain::recovery::issue(ring, env)?;
    let totp = NewTotp {
        id: totp_id.clone(),
        user_id: user_id.clone(),
        secret: ring.seal(secret.as_bytes(), &totp_id)?,
        expires_at: now + 86_400,
        created_at: now,
        recovery_codes: codes,
    };
    let seeded = Seeded {
        id: user_id,
        secret: secret.as_bytes().to_vec(),
        recovery: shown,
    };
    Ok((user, totp, seeded))
}

/// Seeds `users` users straight through `store`, in bulk (issue 8 allows it): the rows are
/// the ones Latch itself writes, sealed under the same ring Latch is given.
async fn seed(db_url: &str, project_id: &str, ring: &Ring, users: usize) -> anyhow::Result<Vec<Seeded>> {
    let started = Instant::now();
    let db = store::Db::connect(db_url, &store::PoolSettings::default()).await?;
    let now = now();
    let mut seeded = Vec::with_capacity(users);
    let mut batch = Vec::with_capacity(5000);
    for i in 0..users {
        let (u, t, s) = seeded_user(&ring.ring, i, now)?;
        batch.push((u, t));
        seeded.push(s);
        if batch.len() == batch.capacity() || i + 1 == users {
            db.seed_verified_users(project_id, &batch)
                .await
                .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
            batch.clear();
        }
    }
    // Bulk-loaded tables need fresh statistics before the planner sees them (Latch's
    // prepared statements would otherwise keep plans made for empty tables).
    db.analyze().await?;
    db.close().await?;
    eprintln!(
        "xtask: seeded {} users with verified TOTPs through store in {:.1} s",
        seeded.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(seeded)
}

/// The machine's load: 1-minute load average and core count.
fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!(
        "loadavg {} on {cores} cores",
        avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

pub(crate) fn bench(args: &[String]) -> anyhow::Result<()> {
    let o = opts(args)?;
    if o.bin_dir.is_none()
        && !run(cargo().current_dir(root()).args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "latch",
            "--bin",
            "latch-baseline",
        ]))?
    {
        bail!("release build failed");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench_run(&o))
}

async fn bench_run(o: &Opts) -> anyhow::Result<()> {
    let release = o.bin_dir.clone().unwrap_or_else(|| target_dir().join("release"));
    let work = tempfile_dir()?;
    let load_before = load();
    let admin = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let pg_db = match &admin {
        Some(url) => {
            let name = format!("latch_bench_{}", std::process::id());
            psql(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            psql(url, &format!("CREATE DATABASE {name}"))?;
            Some((url.clone(), name.clone(), with_database(url, &name)?))
        }
        None => None,
    };
    let sqlite_url = format!("sqlite://{}/latch.db", work.display());
    let latch_db = if o.backend == "postgres" {
        pg_db.as_ref().map(|(_, _, u)| u.clone()).context("postgres")?
    } else {
        sqlite_url.clone()
    };
    let callgrind = if o.callgrind {
        Some(Callgrind::new(target_dir().join("bench").join("callgrind"))?)
    } else {
        None
    };
    let result = measure(
        o,
        &release,
        callgrind.as_ref(),
        &work,
        &latch_db,
        pg_db.as_ref().map(|p| p.2.clone()),
    )
    .await;
    if let Some((url, name, _)) = &pg_db {
        let _ = psql(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
    let _ = std::fs::remove_dir_all(&work);
    let (rows, limiter) = result?;
    report(o, &rows, &limiter, &load_before, &load())
}

/// `url` naming the database `name` instead of its own; the query (`?host=/var/run/postgresql`
/// for a Unix socket, `?sslmode=…`) stays as it was.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut u = reqwest::Url::parse(url).context("DATABASE_URL is not a URL")?;
    if u.path().trim_start_matches('/').is_empty() {
        bail!("DATABASE_URL names no database");
    }
    u.set_path(&format!("/{name}"));
    Ok(u.into())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("latch-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn latch_env(cmd: &mut Command, work: &Path, db: &str, ring: &Ring) {
    cmd.current_dir(work)
        .env("LATCH_ENV", "local")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("LATCH__DATABASE__URL", db)
        .env("LATCH__KEYS__ACTIVE", RING_ID)
        .env(
            format!("LATCH__KEYS__RING__{}", RING_ID.to_uppercase()),
            &ring.key,
        )
        .env("LATCH__BOOTSTRAP__FIRST_PROJECT", "false")
        .env("LATCH__LOG__LEVEL", "warn")
        // The bench measures cost, not limits: every bucket is raised out of the way.
        .env("LATCH__RATELIMIT__PROJECT_ROUTE__RATE", "1000000")
        .env("LATCH__RATELIMIT__PROJECT_ROUTE__BURST", "1000000")
        .env("LATCH__RATELIMIT__USER_ATTEMPTS__RATE", "1000000")
        .env("LATCH__RATELIMIT__USER_ATTEMPTS__PER_SECS", "1")
        .env("LATCH__RATELIMIT__USER_ATTEMPTS__BURST", "1000000")
        .env("LATCH__RATELIMIT__AUTH_FAILURES__BURST", "1000000")
        // Room for the wrong-code route: users stay under the lock threshold.
        .env("LATCH__LOCK__MAX_FAILURES", "100");
}

type Measured = (Vec<Row>, Vec<(String, String)>);

async fn measure(
    o: &Opts,
    release: &Path,
    callgrind: Option<&Callgrind>,
    work: &Path,
    latch_db: &str,
    pg_url: Option<String>,
) -> anyhow::Result<Measured> {
    let latch = release.join("latch");
    let ring = ring()?;
    let mut create = Command::new(&latch);
    latch_env(&mut create, work, latch_db, &ring);
    let out = create
        .args(["project", "create", "--name", "Bench", "--json"])
        .output()?;
    if !out.status.success() {
        bail!("latch project create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let p: Value = serde_json::from_slice(&out.stdout)?;
    let auth = (
        p["project_id"].as_str().unwrap_or("").to_owned(),
        p["secret"].as_str().unwrap_or("").to_owned(),
    );
    let users = Arc::new(seed(latch_db, &auth.0, &ring, o.users).await?);
    let auth = basic(&auth.0, &auth.1)?;
    let mut rows = ceilings(o, release, callgrind, work, pg_url.as_deref(), "before").await?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let server = Proc::spawn(
        &latch,
        callgrind,
        |c| latch_env(c, work, latch_db, &ring),
        &["serve", "--listen", &listen],
    )?;
    crate::sdk::wait_until_up(port)?;
    let base = format!("http://127.0.0.1:{port}");
    let n = users.len();
    let pk = format!("pk {}", o.backend);

    let mut targets = vec![Target {
        name: "healthz".into(),
        base: base.clone(),
        auth: None,
        expect: 200,
        make: Arc::new(|_| Some((reqwest::Method::GET, "/healthz".into(), None))),
        baseline: Some("noop".into()),
    }];
    let u = users.clone();
    targets.push(Target {
        name: "users get".into(),
        base: base.clone(),
        auth: Some(auth.clone()),
        expect: 200,
        make: Arc::new(move |i| Some((reqwest::Method::GET, format!("/v1/users/{}", u[i % n].id), None))),
        baseline: Some(pk.clone()),
    });
    let u = users.clone();
    targets.push(Target {
        name: "recovery_codes".into(),
        base: base.clone(),
        auth: Some(auth.clone()),
        expect: 200,
        make: Arc::new(move |i| {
            Some((
                reqwest::Method::POST,
                "/v1/totps/recovery_codes".into(),
                Some(body(&[("user_id", &u[i % n].id)])),
            ))
        }),
        baseline: Some(pk.clone()),
    });
    // Success path: one fresh user per request (each step accepts one code per user); the
    // seeded TOTPs were never used, so the current step's code is fresh.
    let u = users.clone();
    let fresh = AtomicUsize::new(0);
    targets.push(Target {
        name: "authenticate".into(),
        base: base.clone(),
        auth: Some(auth.clone()),
        expect: 200,
        make: Arc::new(move |_| {
            let s = u.get(fresh.fetch_add(1, Ordering::Relaxed))?;
            Some((
                reqwest::Method::POST,
                "/v1/totps/authenticate".into(),
                Some(body(&[
                    ("user_id", &s.id),
                    ("totp_code", &code(&s.secret, now(), 0)),
                ])),
            ))
        }),
        baseline: Some(pk.clone()),
    });
    let u = users.clone();
    targets.push(Target {
        name: "authenticate wrong code".into(),
        base: base.clone(),
        auth: Some(auth.clone()),
        expect: 401,
        make: Arc::new(move |i| {
            // 90 failures per user at most (the bench sets the lock at 100).
            if i >= n * 90 {
                return None;
            }
            let s = &u[i % n];
            let right: Vec<String> = (-1..=1).map(|d| code(&s.secret, now(), d)).collect();
            let wrong = (0..1000u32)
                .map(|k| format!("{:06}", (i as u32).wrapping_mul(7919).wrapping_add(k) % 1_000_000))
                .find(|c| !right.contains(c))
                .unwrap_or_else(|| "000000".into());
            Some((
                reqwest::Method::POST,
                "/v1/totps/authenticate".into(),
                Some(body(&[("user_id", &s.id), ("totp_code", &wrong)])),
            ))
        }),
        baseline: Some(pk.clone()),
    });
    // Recover: each request spends a fresh code (user i % n, its code i / n).
    let u = users.clone();
    let spent = AtomicUsize::new(0);
    targets.push(Target {
        name: "recover".into(),
        base: base.clone(),
        auth: Some(auth.clone()),
        expect: 200,
        make: Arc::new(move |_| {
            let i = spent.fetch_add(1, Ordering::Relaxed);
            let s = u.get(i % n)?;
            let c = s.recovery.get(i / n)?;
            Some((
                reqwest::Method::POST,
                "/v1/totps/recover".into(),
                Some(body(&[("user_id", &s.id), ("recovery_code", c)])),
            ))
        }),
        baseline: Some(pk.clone()),
    });

    if let Some(only) = &o.routes {
        targets.retain(|t| only.contains(&t.name));
    }
    // Each route's ceiling runs again right after it, served by a `latch-baseline` that stays
    // up beside Latch (idle while Latch is measured, and the other way round).
    let (name, db) = match pg_url.as_deref() {
        Some(pg) if o.backend == "postgres" => ("pk postgres".to_owned(), pg.to_owned()),
        _ => ("pk sqlite".to_owned(), sqlite_ceiling(work)),
    };
    let (next, next_targets) = ceiling(release, callgrind, &name, &db, true)?;
    for c in &o.connections {
        for t in &targets {
            let mut row = drive(t, *c, o.duration, &server, o.backend == "postgres").await?;
            progress(&row);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ct = next_targets
                .iter()
                .find(|ct| Some(&ct.name) == t.baseline.as_ref());
            let ceiling = match ct {
                Some(ct) => {
                    let mut ceiling = drive(ct, *c, o.duration, &next, db.starts_with("postgres")).await?;
                    ceiling.note = format!("ceiling, measured right after {}", t.name);
                    progress(&ceiling);
                    row.next_ratio = Some(row.rps / ceiling.rps.max(0.001));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Some(ceiling)
                }
                None => None,
            };
            rows.push(row);
            rows.extend(ceiling);
        }
    }
    drop(next);
    let (_, peak) = server.rss_mb();
    drop(server);

    // The ceilings again: the machine's speed drifts during a run, so each ratio is taken
    // against the mean of all the ceiling's runs as well as against the run right after it.
    rows.extend(ceilings(o, release, callgrind, work, pg_url.as_deref(), "after").await?);
    let mut extra = vec![("latch peak RSS (MB)".to_owned(), format!("{peak:.1}"))];
    extra.extend(limiter_cost().await);
    Ok((rows, extra))
}

/// The ceilings, through the same actix-web + sea-orm stack: one primary-key lookup (Postgres
/// when given, and SQLite), and a handler with no I/O.
async fn ceilings(
    o: &Opts,
    release: &Path,
    callgrind: Option<&Callgrind>,
    work: &Path,
    pg_url: Option<&str>,
    phase: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut baselines: Vec<(String, String)> = Vec::new();
    if let Some(pg) = pg_url {
        baselines.push(("pk postgres".into(), pg.to_owned()));
    }
    baselines.push(("pk sqlite".into(), sqlite_ceiling(work)));
    for (i, (name, db)) in baselines.iter().enumerate() {
        let (b, ts) = ceiling(release, callgrind, name, db, i == 0)?;
        for c in &o.connections {
            for t in &ts {
                let mut row = drive(t, *c, o.duration, &b, db.starts_with("postgres")).await?;
                row.note = format!("ceiling, measured {phase} Latch's routes");
                progress(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// The SQLite database of the primary-key ceiling.
fn sqlite_ceiling(work: &Path) -> String {
    format!("sqlite://{}/baseline.db", work.display())
}

/// A running `latch-baseline` on `db` and its targets: the primary-key lookup named `name`,
/// and with `noop` the handler with no I/O.
fn ceiling(
    release: &Path,
    callgrind: Option<&Callgrind>,
    name: &str,
    db: &str,
    noop: bool,
) -> anyhow::Result<(Proc, Vec<Target>)> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let b = Proc::spawn(
        &release.join("latch-baseline"),
        callgrind,
        |c| {
            c.stderr(Stdio::null());
        },
        &["--database", db, "--listen", &listen],
    )?;
    crate::sdk::wait_until_up(port)?;
    let base = format!("http://127.0.0.1:{port}");
    let mut ts = vec![Target {
        name: name.to_owned(),
        base: base.clone(),
        auth: None,
        expect: 200,
        make: Arc::new(|i| Some((reqwest::Method::GET, format!("/pk/k{}", i % 10_000), None))),
        baseline: None,
    }];
    if noop {
        ts.push(Target {
            name: "noop".into(),
            base,
            auth: None,
            expect: 200,
            make: Arc::new(|_| Some((reqwest::Method::GET, "/noop".into(), None))),
            baseline: None,
        });
    }
    Ok((b, ts))
}

/// The cost of one rate-limiter check: in process (governor), and in Redis (one EVALSHA round
/// trip), sequential and with 64 concurrent callers.
async fn limiter_cost() -> Vec<(String, String)> {
    use ratelimit::{InProcess, Key, Quota, RateLimiter, RedisLimiter};
    let q = Quota {
        rate: 1_000_000,
        per: Duration::from_secs(1),
        burst: 1_000_000,
    };
    let keys: Vec<Key> = (0..1000)
        .map(|i| Key::new("project-bench", "route", &format!("k{i}")))
        .collect();
    let local = InProcess::new();
    let n = 1_000_000;
    let started = Instant::now();
    for i in 0..n {
        let _ = local.decide(&keys[i % keys.len()], &q);
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    let mut out = vec![(
        "limiter check, in process (governor)".to_owned(),
        format!("{ns:.0} ns"),
    )];
    let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        out.push((
            "limiter check, Redis".into(),
            "not measured (REDIS_URL unset)".into(),
        ));
        return out;
    };
    let prefix = format!("latch:rl:bench-{}:", std::process::id());
    let Ok(redis) = RedisLimiter::connect(&url, &prefix, Duration::from_secs(2)).await else {
        out.push(("limiter check, Redis".into(), "Redis did not answer".into()));
        return out;
    };
    let n = 5000;
    let started = Instant::now();
    for i in 0..n {
        let _ = redis.check(&keys[i % keys.len()], &q).await;
    }
    let us = started.elapsed().as_micros() as f64 / n as f64;
    out.push((
        "limiter check, Redis, one caller".into(),
        format!("{us:.0} µs per check"),
    ));
    let redis = Arc::new(redis);
    let keys = Arc::new(keys);
    let count = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (redis, keys, count) = (redis.clone(), keys.clone(), count.clone());
            tokio::spawn(async move {
                let mut i = t;
                while Instant::now() < deadline {
                    let _ = redis.check(&keys[i % keys.len()], &q).await;
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 64;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let per_sec = count.load(Ordering::Relaxed) as f64 / 3.0;
    out.push((
        "limiter check, Redis, 64 callers".into(),
        format!(
            "{per_sec:.0} checks/s ({:.0} µs each amortised)",
            1e6 / per_sec.max(1.0)
        ),
    ));
    // Leave nothing behind in a shared Redis.
    if let Ok(client) = redis::Client::open(url.as_str())
        && let Ok(mut c) = client.get_connection()
        && let Ok(keys) = redis::Commands::keys::<_, Vec<String>>(&mut c, format!("{prefix}*"))
        && !keys.is_empty()
    {
        let _: Result<(), _> = redis::Commands::del(&mut c, keys);
    }
    out
}

/// A table cell: the number with `decimals` places, or `—` where it was not measured.
fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}")).unwrap_or_else(|| "—".into())
}

fn report(
    o: &Opts,
    rows: &[Row],
    extra: &[(String, String)],
    before: &str,
    after: &str,
) -> anyhow::Result<()> {
    // The mean of the ceiling's runs (before, between and after Latch's routes).
    let baseline_rps = |name: &str, c: usize| {
        let runs: Vec<f64> = rows
            .iter()
            .filter(|r| r.route == name && r.connections == c)
            .map(|r| r.rps)
            .collect();
        (!runs.is_empty()).then(|| runs.iter().sum::<f64>() / runs.len() as f64)
    };
    let mut md = format!(
        "# cargo xtask bench\n\nbackend {}, {} s per route, connections {:?}, {} seeded users; \
         the load generator shares the machine with the server.\n\nmachine load before: {before}; after: {after}\n\n\
         {}\
         | route | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | server RSS MB | server CPU µs/req | Postgres CPU µs/req | generator CPU µs/req | server instructions/req | × baseline | × ceiling right after | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        o.backend,
        o.duration.as_secs(),
        o.connections,
        o.users,
        if o.callgrind {
            "The servers ran under callgrind (`--callgrind`): their rates, latencies and CPU times are \
             valgrind's; compare the instructions per request, which do not depend on the machine's load. \
             Dumps: `target/bench/callgrind/`.\n\n"
        } else {
            ""
        }
    );
    let mut json_rows = Vec::new();
    for r in rows {
        let ratio = r
            .baseline
            .as_deref()
            .and_then(|b| baseline_rps(b, r.connections).map(|rps| (b, r.rps / rps)));
        let ratio_text = ratio
            .map(|(b, x)| format!("{x:.2} × {b}"))
            .unwrap_or_else(|| "—".into());
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.0} | {} | {:.0} | {} | {} | {} | {} |\n",
            r.route,
            r.connections,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.errors,
            r.rss_mb,
            r.server_cpu_us,
            cell(r.db_cpu_us, 0),
            r.generator_cpu_us,
            cell(r.instructions_per_request, 0),
            ratio_text,
            cell(r.next_ratio, 2),
            r.note
        ));
        json_rows.push(json!({
            "route": r.route, "connections": r.connections, "requests": r.requests,
            "requests_per_sec": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "p999_ms": r.p999_ms,
            "errors": r.errors, "server_rss_mb": r.rss_mb,
            "server_cpu_us_per_request": r.server_cpu_us, "postgres_cpu_us_per_request": r.db_cpu_us,
            "generator_cpu_us_per_request": r.generator_cpu_us,
            "server_instructions_per_request": r.instructions_per_request,
            "baseline": r.baseline, "ratio_to_baseline": ratio.map(|(_, x)| x),
            "ratio_to_ceiling_right_after": r.next_ratio, "note": r.note,
        }));
    }
    md.push('\n');
    for (k, v) in extra {
        md.push_str(&format!("- {k}: {v}\n"));
    }
    println!("\n{md}");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bench.md"), &md)?;
    let doc = json!({
        "backend": o.backend, "duration_secs": o.duration.as_secs(), "connections": o.connections,
        "users": o.users, "load_before": before, "load_after": after, "rows": json_rows,
        "extra": extra.iter().map(|(k, v)| json!({"what": k, "value": v})).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(&doc)?)?;
    eprintln!("xtask: wrote {} and bench.json", dir.join("bench.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{body, with_database};

    #[test]
    fn a_request_body_is_the_json_object_of_its_fields() {
        let b = body(&[("user_id", "user-test-1"), ("recovery_code", "a\"b\\c")]);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user_id": "user-test-1", "recovery_code": "a\"b\\c"})
        );
        assert_eq!(body(&[]), "{}");
    }

    #[test]
    fn the_bench_database_replaces_only_the_database_name() {
        let pg = |u: &str| with_database(u, "latch_bench_1").unwrap();
        assert_eq!(
            pg("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/latch_bench_1"
        );
        // A Unix socket is a query with slashes in it; it stays, the database changes.
        assert_eq!(
            pg("postgres://postgres@localhost/test?host=/var/run/postgresql"),
            "postgres://postgres@localhost/latch_bench_1?host=/var/run/postgresql"
        );
        assert_eq!(
            pg("postgres://u:p@db/app?sslmode=require&application_name=x"),
            "postgres://u:p@db/latch_bench_1?sslmode=require&application_name=x"
        );
        assert!(with_database("postgres://postgres@127.0.0.1:5432", "x").is_err());
        assert!(with_database("postgres://h?host=/tmp", "x").is_err());
    }
}
