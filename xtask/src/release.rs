//! `cargo xtask release [--profile NAME] [--out DIR]`: a `--locked` build of `latch`, packaged
//! as `latch-<version>-<commit>-<target>.tar.gz` with the binary, README, config files and a
//! changelog section made from the commits since the last tag, plus a SHA-256 checksum file
//! (`sha256sum -c` format). The default profile is `release`; `--profile dev` packages a debug
//! binary, which is how the tests check the packaging without paying for a release build.

use crate::{root, run, target_dir};
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn release(args: &[String]) -> anyhow::Result<()> {
    let flag = |name: &str| crate::flag(args, name);
    let profile = flag("--profile").unwrap_or_else(|| "release".into());
    let out = flag("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release-artifacts"));
    let mut build = crate::cargo();
    build
        .current_dir(root())
        .args(["build", "--locked", "--profile", &profile]);
    if profile == "dev" {
        // The feature set of `cargo test --workspace --all-targets`: a debug package (the
        // packaging test) reuses what the test build compiled instead of flipping the shared
        // dependencies to another feature set and back.
        build.args(["--workspace", "--all-targets"]);
    } else {
        build.args(["--bin", "latch"]);
    }
    if !run(&mut build)? {
        bail!("the {profile} build of latch failed");
    }
    let dir = if profile == "dev" {
        "debug"
    } else {
        profile.as_str()
    };
    let binary = target_dir().join(dir).join("latch");
    let artifacts = package(&binary, &out)?;
    println!("xtask: release artefacts in {}:", out.display());
    for a in artifacts {
        println!("  {}", a.display());
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("git").current_dir(root()).args(args))
}

/// The changelog section: every commit subject since the last tag (or since the start).
fn changelog(version: &str, commit: &str) -> anyhow::Result<String> {
    let last_tag = git(&["describe", "--tags", "--abbrev=0"]).ok();
    let range = match &last_tag {
        Some(tag) => format!("{tag}..HEAD"),
        None => "HEAD".to_owned(),
    };
    let log = git(&["log", "--no-merges", "--pretty=format:- %s (%h)", &range])?;
    let date = git(&["log", "-1", "--pretty=format:%cs"])?;
    let since = last_tag
        .map(|t| format!("since {t}"))
        .unwrap_or_else(|| "since the first commit (no tag yet)".into());
    Ok(format!(
        "# Changelog\n\n## {version} ({date}, commit {commit})\n\nChanges {since}:\n\n{log}\n"
    ))
}

/// Builds the tarball and its checksum from `binary`; returns their paths.
pub(crate) fn package(binary: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    // `latch 0.1.0 (0123456789ab)`: the version and commit the binary itself reports.
    let reported = output(Command::new(binary).arg("--version"))?;
    let (version, commit) = reported
        .strip_prefix("latch ")
        .and_then(|v| v.split_once(" ("))
        .map(|(v, c)| (v.to_owned(), c.trim_end_matches(')').to_owned()))
        .with_context(|| format!("unexpected `latch --version`: {reported:?}"))?;
    let host = output(Command::new("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    let name = format!("latch-{version}-{commit}-{host}");
    let stage = out.join(&name);
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("bin"))?;
    std::fs::create_dir_all(stage.join("config"))?;
    std::fs::copy(binary, stage.join("bin/latch")).context("copying the binary")?;
    std::fs::copy(root().join("README.md"), stage.join("README.md"))?;
    for f in ["default.toml", "local.toml", "production.toml"] {
        std::fs::copy(root().join("config").join(f), stage.join("config").join(f))?;
    }
    let notes = changelog(&version, &commit)?;
    std::fs::write(stage.join("CHANGELOG.md"), &notes)?;
    std::fs::write(out.join(format!("{name}.CHANGELOG.md")), &notes)?;

    // Reproducible: sorted names, fixed owner, mtimes from the commit.
    let mtime = git(&["log", "-1", "--pretty=format:%ct"])?;
    let tarball = out.join(format!("{name}.tar.gz"));
    if !run(Command::new("tar")
        .current_dir(out)
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg(format!("--mtime=@{mtime}"))
        .arg("-czf")
        .arg(&tarball)
        .arg(&name))?
    {
        bail!("tar failed");
    }
    std::fs::remove_dir_all(&stage)?;
    let digest = Sha256::digest(std::fs::read(&tarball)?);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let sum = out.join(format!("{name}.tar.gz.sha256"));
    std::fs::write(&sum, format!("{hex}  {name}.tar.gz\n"))?;
    Ok(vec![tarball, sum, out.join(format!("{name}.CHANGELOG.md"))])
}
