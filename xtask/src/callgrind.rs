//! `cargo xtask bench --callgrind`: the servers run under `valgrind --tool=callgrind` with
//! instrumentation off, and each measured route switches it on for exactly its own load, so a
//! route's instructions per request come out the same whatever else the machine is doing.
//! This VM has no hardware counters (`perf stat` says `cycles <not supported>`) and its speed
//! drifts by tens of percent within minutes, so instruction counts are how two builds are
//! compared here (issue 8). They count the server's user-space instructions only: the kernel
//! (loopback TCP, wake-ups) and Postgres are outside them.
//!
//! Each route's dump stays in `target/bench/callgrind/` for `callgrind_annotate`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Clone)]
pub(crate) struct Callgrind {
    dir: PathBuf,
}

impl Callgrind {
    /// Checks that valgrind is there and empties the dump folder.
    pub(crate) fn new(dir: PathBuf) -> anyhow::Result<Callgrind> {
        let found = Command::new("valgrind")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("--callgrind needs valgrind on PATH (Debian: apt-get install valgrind)");
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Callgrind { dir })
    }

    /// `bin` under callgrind, instrumentation off until a route switches it on. The binary's
    /// name prefixes the dump files (`<name>.<pid>.out.<n>`).
    pub(crate) fn command(&self, bin: &Path) -> Command {
        let name = bin.file_name().unwrap_or_default().to_string_lossy();
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--tool=callgrind",
            "--instr-atstart=no",
            "--quiet",
            &format!(
                "--callgrind-out-file={}",
                self.dir.join(format!("{name}.%p.out")).display()
            ),
        ])
        .arg(bin);
        cmd
    }

    /// Instrumentation on for `pid` (the counters are zero: off since start or since a dump).
    pub(crate) fn start(&self, pid: u32) -> anyhow::Result<()> {
        control(pid, &["-i", "on"])
    }

    /// Dumps `pid`'s counters under `label`, switches instrumentation off and returns the
    /// instructions counted since [`Callgrind::start`].
    pub(crate) fn stop(&self, pid: u32, label: &str) -> anyhow::Result<u64> {
        control(pid, &["-d", label])?;
        control(pid, &["-i", "off"])?;
        let dump = newest_dump(&self.dir, pid).context("callgrind wrote no dump")?;
        let text = std::fs::read_to_string(&dump)?;
        totals(&text).with_context(|| format!("no totals in {}", dump.display()))
    }
}

fn control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .context("callgrind_control")?;
    // It exits 0 even when it found no such process; it says so instead.
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || said.contains("not detected") {
        bail!("callgrind_control {} {pid}: {said}", args.join(" "));
    }
    Ok(())
}

/// The dump of `pid` with the highest number (`<name>.<pid>.out.<n>`).
fn newest_dump(dir: &Path, pid: u32) -> Option<PathBuf> {
    let infix = format!(".{pid}.out.");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (_, n) = name.split_once(&infix)?;
            Some((n.parse::<u64>().ok()?, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// The `totals:` line of a callgrind dump (its only event is `Ir`).
fn totals(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::{newest_dump, totals};

    #[test]
    fn a_dump_gives_its_instruction_total_and_the_newest_dump_wins() {
        let dump = "version: 1\ncmd: latch serve\npart: 2\nevents: Ir\nsummary: 1865367916\n\
                    fn=(1) main\n12 3\ntotals: 1865367916\n";
        assert_eq!(totals(dump), Some(1_865_367_916));
        assert_eq!(totals("events: Ir\n"), None);

        let dir = std::env::temp_dir().join(format!("latch-callgrind-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "latch.7.out",
            "latch.7.out.2",
            "latch.7.out.10",
            "latch.70.out.11",
            "base.8.out.12",
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        assert_eq!(newest_dump(&dir, 7), Some(dir.join("latch.7.out.10")));
        assert_eq!(newest_dump(&dir, 9), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
