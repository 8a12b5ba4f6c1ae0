//! The official-SDK suites (tests/sdk): a `latch` binary on a fresh SQLite file and a free
//! port, two projects made with `latch project create --json`, then `node --test` (npm
//! `stytch@14`) and pytest (PyPI `stytch` 15), each against it.

use crate::{Counts, Outcome, root, run, run_counted, target_dir};
use anyhow::{Context, bail};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn project(latch: &Path, dir: &Path, name: &str) -> anyhow::Result<(String, String)> {
    let out = latch_cmd(latch, dir)
        .args(["project", "create", "--name", name, "--json"])
        .output()?;
    if !out.status.success() {
        bail!(
            "latch project create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("project create --json")?;
    Ok((
        v["project_id"].as_str().unwrap_or("").to_owned(),
        v["secret"].as_str().unwrap_or("").to_owned(),
    ))
}

fn latch_cmd(latch: &Path, dir: &Path) -> Command {
    let mut c = Command::new(latch);
    c.current_dir(dir)
        .env("LATCH_ENV", "test")
        .env_remove("DATABASE_URL")
        .env(
            "LATCH__DATABASE__URL",
            format!("sqlite://{}/latch.db", dir.display()),
        )
        .env("LATCH__KEYS__FILE", dir.join("keys.toml"))
        .env("LATCH__BOOTSTRAP__FIRST_PROJECT", "false")
        // Its own buckets when REDIS_URL shares a Redis with other runs.
        .env(
            "LATCH__RATELIMIT__PREFIX",
            format!("latch:rl:sdk-{}:", std::process::id()),
        )
        // The suites fetch JWKS and try wrong secrets far more often than an application.
        .env("LATCH__RATELIMIT__AUTH_FAILURES__BURST", "10000")
        .env("LATCH__RATELIMIT__JWKS__BURST", "10000");
    c
}

pub(crate) fn run_all(services: &[(&str, String)]) -> anyhow::Result<Vec<(&'static str, Outcome)>> {
    let mut results = Vec::new();
    let node = has("node") && has("npm");
    let python = has("python3");
    if !node {
        results.push((
            "Node SDK (npm stytch@14)",
            Outcome::Skipped("node/npm not found".into()),
        ));
    }
    if !python {
        results.push((
            "Python SDK (PyPI stytch 15)",
            Outcome::Skipped("python3 not found".into()),
        ));
    }
    if !node && !python {
        return Ok(results);
    }

    let mut build = crate::cargo();
    build
        .current_dir(root())
        // The feature set of `cargo test --workspace --all-targets`, so the binary that run built
        // is reused instead of the dependency tree being compiled a second time.
        .args(["build", "--workspace", "--all-targets"]);
    if !run(&mut build)? {
        bail!("building latch failed");
    }
    let latch = target_dir().join("debug/latch");
    let dir = std::env::temp_dir().join(format!("latch-sdk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let p1 = project(&latch, &dir, "SDK suite")?;
    let p2 = project(&latch, &dir, "SDK suite, second project")?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("latch.log"))?;
    let child = latch_cmd(&latch, &dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting latch")?;
    let server = Server { child };
    wait_until_up(port)?;
    eprintln!(
        "xtask: latch for the SDK suites at {base} (log: {})",
        dir.join("latch.log").display()
    );

    let mut env = vec![
        ("LATCH_BASE_URL", base.clone()),
        ("LATCH_PROJECT_ID", p1.0),
        ("LATCH_SECRET", p1.1),
        ("LATCH_PROJECT2_ID", p2.0),
        ("LATCH_SECRET2", p2.1),
        ("LATCH_BIN", latch.display().to_string()),
        ("CARGO", env!("CARGO").to_owned()),
    ];
    env.extend(services.iter().cloned());
    if node {
        let dir = root().join("tests/sdk/node");
        let installed = dir.join("node_modules/stytch/package.json").exists();
        let ready = installed
            || run(Command::new("npm")
                .current_dir(&dir)
                .args(["ci", "--no-audit", "--no-fund"]))?;
        let outcome = if ready {
            let (ok, counts) = run_counted(
                Command::new("node")
                    .current_dir(&dir)
                    .arg("--test")
                    .envs(env.iter().cloned()),
            )?;
            Outcome::of(ok, counts)
        } else {
            Outcome::Failed(Counts::default())
        };
        results.push(("Node SDK (npm stytch@14)", outcome));
    }
    if python {
        results.push((
            "Python SDK (PyPI stytch 15)",
            python_suite("tests/sdk/python", &env)?,
        ));
        results.push((
            "OpenAPI (spec validator, schemathesis, /docs in Chromium)",
            python_suite("tests/openapi", &env)?,
        ));
        results.push((
            "Deployment (compose, Dockerfile, container config, release packaging)",
            python_suite("tests/ops", &env)?,
        ));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}

/// A pytest suite with its own venv (created and filled from its requirements.txt when needed).
fn python_suite(dir: &str, env: &[(&str, String)]) -> anyhow::Result<Outcome> {
    let dir = root().join(dir);
    let venv = dir.join(".venv");
    let py = venv.join("bin/python");
    let ready = (py.exists() || run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?)
        && run(Command::new(&py)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
            .arg(dir.join("requirements.txt")))?;
    if !ready {
        return Ok(Outcome::Failed(Counts::default()));
    }
    let mut pytest = Command::new(&py);
    crate::without_cargo_run_env(&mut pytest);
    let (ok, counts) = run_counted(
        pytest
            .current_dir(&dir)
            .args(["-m", "pytest", "-q", "-rs"])
            .envs(env.iter().cloned()),
    )?;
    Ok(Outcome::of(ok, counts))
}

pub(crate) fn wait_until_up(port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("latch did not start listening on port {port} within 30 s")
}
