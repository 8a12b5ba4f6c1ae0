//! Building the key ring from settings, or, on a laptop, from a generated key file
//! (spec §5.18: `./data/keys.toml`, mode 0600, announced on stderr; never in production).

use crate::settings::Settings;
use anyhow::{Context, bail};
use domain::crypto::KeyRing;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Deserialize)]
struct KeyFile {
    active: String,
    ring: BTreeMap<String, String>,
}

/// A new key id: `k` and 10 random lower-case hex digits.
pub fn new_key_id() -> anyhow::Result<String> {
    let b = domain::random::bytes::<5>()?;
    Ok(format!("k{}", data_encoding::HEXLOWER.encode(&b)))
}

/// The ring from the configuration, else (outside production) from the key file, created if
/// missing.
pub fn load_ring(s: &Settings) -> anyhow::Result<KeyRing> {
    if !s.keys.ring.is_empty() {
        return KeyRing::from_config(
            &s.keys.active,
            s.keys.ring.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .context("keys: the configured key ring is unusable");
    }
    if s.is_production() {
        bail!("the production profile needs a configured key ring (keys.active, keys.ring.<id>)");
    }
    let path = Path::new(&s.keys.file);
    if !path.exists() {
        write_key_file(path)?;
        tracing::warn!(
            file = %path.display(),
            "generated a new key ring for this laptop install; back it up with the database (losing it loses every TOTP)"
        );
    }
    let f: KeyFile = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .with_context(|| format!("reading the key file {}", path.display()))?;
    KeyRing::from_config(&f.active, f.ring.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .with_context(|| format!("the key file {} is unusable", path.display()))
}

fn write_key_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let id = new_key_id()?;
    let key = KeyRing::generate_key()?;
    let text = format!(
        "# Latch key ring, generated on first start. It seals every TOTP secret and recovery code:\n\
         # back it up together with the database, and keep it private.\n\
         active = \"{id}\"\n\n[ring]\n{id} = \"{key}\"\n"
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => f
            .write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display())),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_laptop_gets_a_private_key_file_that_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/keys.toml");
        let mut s = Settings::load_from("local", None, Vec::new()).unwrap();
        s.keys.file = file.display().to_string();
        let first = load_ring(&s).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let second = load_ring(&s).unwrap();
        assert_eq!(first.active_id(), second.active_id());
        let sealed = first.seal(b"x", "row").unwrap();
        assert_eq!(second.open(&sealed, "row").unwrap(), b"x");
    }
}
