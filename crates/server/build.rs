//! Records the git commit for `latch --version` (`LATCH_GIT_COMMIT` from the environment wins,
//! for builds without a `.git`, such as some container builds).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LATCH_GIT_COMMIT");
    // Only paths that exist: a missing one would make cargo rerun this script on every build.
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("LATCH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LATCH_GIT_COMMIT={commit}");
}
