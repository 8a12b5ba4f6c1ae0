//! Developer tasks (the rust-analyzer xtask pattern): `cargo xtask test` runs every suite;
//! `cargo xtask codegen [--check]` writes (or checks) `openapi/openapi.json`.
//!
//! `cargo xtask test [--require-services] [--no-sdk]`:
//! 1. finds Postgres through `DATABASE_URL` (architecture §9) and says which it uses;
//! 2. runs `cargo test --workspace` (each Postgres test runs on SQLite too; without Postgres
//!    the Postgres half prints SKIPPED);
//! 3. runs the official-SDK suites (npm `stytch`, PyPI `stytch`) against a spawned `latch`,
//!    installing their packages first when missing;
//! 4. prints a summary. A suite without its server is reported as skipped with the reason,
//!    never as passed, and is an error with `CI=true` or `--require-services`.

mod bench;
mod callgrind;
mod codegen;
mod release;
mod sdk;
mod services;

use anyhow::{Context, bail};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("codegen") => codegen::generate(args.iter().any(|a| a == "--check")),
        Some("release") => release::release(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask test [--require-services] [--no-sdk] | cargo xtask codegen [--check]\n\
                 \x20      cargo xtask release [--profile release|dev] [--out DIR]\n\
                 \x20      cargo xtask bench [--backend postgres|sqlite] [--duration S] [--connections N[,N]] [--users N] [--routes R[,R]] [--bin-dir DIR] [--callgrind]"
            );
            std::process::exit(2);
        }
    }
}

/// The value after `--name` in `args`, if any.
pub(crate) fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The workspace root (xtask lives one level below it).
/// The workspace root: the parent of xtask's manifest directory as `cargo run` gives it now.
/// The compile-time value is only the fallback: the CI clones share one target dir, and cargo
/// reuses an xtask binary built from another clone's path, which may since be gone.
pub(crate) fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// Where cargo puts binaries for this workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// `cargo`, without the variables `cargo run` gave xtask itself (`CARGO_MANIFEST_DIR`, …):
/// some build scripts (ring's) rerun when those change, so a build started here would otherwise
/// recompile what a build started from a shell compiled, and back again.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    without_cargo_run_env(&mut c);
    c
}

/// Removes what `cargo run` set for xtask from a child's environment (also for children that
/// run cargo themselves, such as the deployment suite's `cargo xtask release`).
pub(crate) fn without_cargo_run_env(c: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            c.env_remove(name.as_ref());
        }
    }
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<bool> {
    eprintln!("xtask: $ {}", describe(cmd));
    Ok(cmd
        .status()
        .with_context(|| format!("running {}", describe(cmd)))?
        .success())
}

/// Test counts read from a runner's output.
#[derive(Default, Clone, Copy)]
pub(crate) struct Counts {
    pub passed: u64,
    pub failed: u64,
    /// Tests the runner skipped (pytest `1 skipped`, node `# skipped 1`): never passed.
    pub skipped: u64,
}

impl Counts {
    /// Reads the closing lines of cargo test (`test result: ok. 3 passed; 0 failed`), node's
    /// test runner (`# pass 3`, `# fail 0`) and pytest (`3 passed, 1 failed in 0.5s`).
    fn read(&mut self, line: &str) {
        let num = |s: &str| {
            s.trim()
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let part = part
                    .trim()
                    .trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ");
                if part.ends_with(" passed") {
                    self.passed += num(part);
                } else if part.ends_with(" failed") {
                    self.failed += num(part);
                }
            }
        } else if let Some(n) = line.strip_prefix("# pass ") {
            self.passed += num(n);
        } else if let Some(n) = line.strip_prefix("# fail ") {
            self.failed += num(n);
        } else if let Some(n) = line.strip_prefix("# skipped ") {
            self.skipped += num(n);
        } else if line.contains(" passed") && line.contains(" in ") && !line.starts_with(' ') {
            for part in line.split(" in ").next().unwrap_or("").split(',') {
                let part = part.trim().trim_matches('=').trim();
                if part.ends_with(" passed") {
                    self.passed += num(part);
                } else if part.ends_with(" failed") || part.ends_with(" error") || part.ends_with(" errors") {
                    self.failed += num(part);
                } else if part.ends_with(" skipped") {
                    self.skipped += num(part);
                }
            }
        }
    }
}

/// Runs a test command, passing its output through, and counts its tests.
pub(crate) fn run_counted(cmd: &mut Command) -> anyhow::Result<(bool, Counts)> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: $ {}", describe(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", describe(cmd)))?;
    let mut counts = Counts::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            counts.read(&line);
        }
    }
    Ok((child.wait()?.success(), counts))
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether something accepts TCP connections at the host:port of a URL.
fn reachable(url: &str, default_port: u16) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let hostport = rest
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let with_port = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

pub(crate) enum Outcome {
    Passed(Counts),
    Failed(Counts),
    Skipped(String),
}

impl Outcome {
    pub(crate) fn of(ok: bool, counts: Counts) -> Self {
        // A runner that exits 0 having run nothing has not passed.
        if ok && counts.passed > 0 && counts.failed == 0 {
            Outcome::Passed(counts)
        } else {
            Outcome::Failed(counts)
        }
    }
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let require = ci || args.iter().any(|a| a == "--require-services");
    let no_sdk = args.iter().any(|a| a == "--no-sdk");
    let mut results: Vec<(&str, Outcome)> = Vec::new();

    let mut postgres = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let mut redis = std::env::var("REDIS_URL").ok().filter(|u| u.starts_with("redis"));
    for (name, url, port) in [("DATABASE_URL", &postgres, 5432), ("REDIS_URL", &redis, 6379)] {
        if let Some(url) = url {
            if !reachable(url, port) {
                bail!("{name} points at {}, which does not answer", redact(url));
            }
            eprintln!("xtask: {name}: {}", redact(url));
        }
    }
    // Architecture §9: the given servers, else testcontainers where a Docker engine answers.
    let provided = if (postgres.is_none() || redis.is_none()) && services::docker_engine() {
        services::containers(postgres.is_none(), redis.is_none())?
    } else {
        services::Provided::default()
    };
    postgres = postgres.or(provided.database_url.clone());
    redis = redis.or(provided.redis_url.clone());
    let mut child_env: Vec<(&str, String)> = Vec::new();
    match &postgres {
        Some(url) => child_env.push(("DATABASE_URL", url.clone())),
        None if require => bail!(
            "no Postgres: set DATABASE_URL or start a Docker engine (required with CI=true / --require-services)"
        ),
        None => eprintln!(
            "xtask: Postgres: none (no DATABASE_URL, no Docker engine); Postgres halves of the suites will be SKIPPED"
        ),
    }
    match &redis {
        Some(url) => child_env.push(("REDIS_URL", url.clone())),
        None if require => bail!(
            "no Redis: set REDIS_URL or start a Docker engine (required with CI=true / --require-services)"
        ),
        None => eprintln!(
            "xtask: Redis: none (no REDIS_URL, no Docker engine); Redis-backed tests will be SKIPPED"
        ),
    }
    if let Some(url) = &postgres {
        match services::sweep_postgres(url) {
            Ok(0) => {}
            Ok(n) => eprintln!("xtask: removed {n} test databases/schemas an earlier run left behind"),
            Err(e) => eprintln!("xtask: could not sweep Postgres for leftovers: {e}"),
        }
    }

    let mut cargo = crate::cargo();
    cargo
        .current_dir(root())
        .args(["test", "--workspace", "--all-targets"])
        .envs(child_env.iter().cloned());
    if require {
        cargo.env("LATCH_REQUIRE_SERVICES", "1");
    }
    let (ok, counts) = run_counted(&mut cargo)?;
    results.push(("rust (cargo test --workspace)", Outcome::of(ok, counts)));
    if postgres.is_none() {
        results.push((
            "rust on Postgres",
            Outcome::Skipped("no DATABASE_URL and no Docker engine".into()),
        ));
    }
    if redis.is_none() {
        results.push((
            "rust on Redis",
            Outcome::Skipped("no REDIS_URL and no Docker engine".into()),
        ));
    }

    if no_sdk {
        results.push(("official SDKs", Outcome::Skipped("--no-sdk".into())));
    } else {
        for (name, outcome) in sdk::run_all(&child_env)? {
            results.push((name, outcome));
        }
    }

    // Running twice leaves nothing behind: what the tests made is gone (and is removed here if
    // a crash left it); containers go when `provided` is dropped.
    let mut left = 0;
    if let Some(url) = &postgres {
        left += services::sweep_postgres(url).context("sweeping Postgres after the run")?;
    }
    if let Some(url) = &redis {
        left += services::sweep_redis(url).unwrap_or(0);
    }
    eprintln!("xtask: cleaned up after the run: {left} leftover databases/schemas/keys removed");
    drop(provided);

    println!("\nxtask: summary");
    let mut failed = false;
    let (mut total, mut skipped) = (Counts::default(), 0);
    for (name, outcome) in &results {
        let (label, c) = match outcome {
            Outcome::Passed(c) => ("passed", c),
            Outcome::Failed(c) => {
                failed = true;
                total.failed += c.failed.max(1);
                ("FAILED", c)
            }
            Outcome::Skipped(why) => {
                failed |= require;
                skipped += 1;
                println!("  SKIPPED  {name}: {why}");
                continue;
            }
        };
        total.passed += c.passed;
        total.skipped += c.skipped;
        // A suite that ran can still have skipped some of its tests: shown, never passed.
        let tests_skipped = if c.skipped > 0 {
            format!(", {} SKIPPED (see the SKIPPED lines above)", c.skipped)
        } else {
            String::new()
        };
        println!(
            "  {label:<8} {name}: {} passed, {} failed{tests_skipped}",
            c.passed, c.failed
        );
    }
    println!(
        "xtask: {} passed, {} failed, {skipped} suites skipped, {} tests skipped",
        total.passed, total.failed, total.skipped
    );
    if failed {
        bail!(
            "some suites failed{}",
            if require {
                " or were skipped while services are required"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn the_summary_counts_what_each_runner_says_it_skipped() {
        let mut c = Counts::default();
        for line in [
            "test result: ok. 33 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out",
            "# pass 87",
            "# fail 0",
            "# skipped 1",
            "2 passed, 1 skipped in 131.92s (0:02:11)",
            "==== 1 failed, 4 passed, 2 skipped in 3.1s ====",
        ] {
            c.read(line);
        }
        assert_eq!((c.passed, c.failed, c.skipped), (33 + 87 + 2 + 4, 1, 1 + 1 + 2));
    }
}
