//! The operator's key: given (`--operator-key`), or on the embedded default generated at
//! the first start into `<data-dir>/operator.key` (mode 0600) and printed that once.

use crate::settings::{LogLocation, Settings};
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// The file the embedded default keeps its generated operator key in.
pub const OPERATOR_KEY_FILE: &str = "operator.key";

/// The operator key of this process.
pub fn operator_key(settings: &Settings) -> anyhow::Result<String> {
    if let Some(key) = &settings.operator_key {
        return Ok(key.clone());
    }
    if !matches!(settings.log_location(), LogLocation::Embedded(_)) {
        anyhow::bail!(
            "--operator-key (or DRONE_DELIVERY_OPERATOR_KEY) is required when the log is not embedded: every process must know the same key"
        );
    }
    let path = settings.data_dir.join(OPERATOR_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => Ok(key.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{} is empty; delete it to generate a new key",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(&path),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn generate(path: &Path) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = api::new_key("op");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{key}\n").as_bytes())?;
    file.sync_all()?;
    // Shown this once (it stays in the file, readable by this user only).
    eprintln!(
        "generated the operator key (kept in {}): {key}",
        path.display()
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = Settings::new(
            "127.0.0.1:0".parse().expect("address"),
            dir.path().to_path_buf(),
        );
        let first = operator_key(&settings).expect("generated");
        assert!(first.starts_with("dd_op_"));
        assert_eq!(operator_key(&settings).expect("read back"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(OPERATOR_KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_given_key_wins_and_kafka_needs_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::new(
            "127.0.0.1:0".parse().expect("address"),
            dir.path().to_path_buf(),
        );
        settings.log = Some(LogLocation::Kafka {
            brokers: "127.0.0.1:9092".into(),
        });
        assert!(operator_key(&settings).is_err());
        settings.operator_key = Some("given-operator-key".into());
        assert_eq!(
            operator_key(&settings).expect("given"),
            "given-operator-key"
        );
        assert!(!dir.path().join(OPERATOR_KEY_FILE).exists());
    }
}
