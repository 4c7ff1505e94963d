//! Where the secrets come from: `WA_KEYS_SECRET` or `WA_KEYS_SECRET_FILE` (and their
//! `_PREVIOUS` twins during a rotation), or, in the embedded default only, a key file generated
//! on first start under `DATA_DIR`. Never from the database.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::Rng;
use zeroize::Zeroizing;

use super::KeyRing;
use crate::Settings;
use crate::config::Secret;

/// Name of the key file the embedded default generates under `DATA_DIR`.
pub const DEFAULT_FILE_NAME: &str = "wa-keys.secret";

/// A secret: 32 bytes, wiped from memory when dropped.
pub type SecretBytes = Zeroizing<[u8; 32]>;

/// 32 random bytes from the operating system's generator (through `rand`'s reseeded ChaCha).
pub fn random_secret() -> SecretBytes {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::rng().fill(secret.as_mut());
    secret
}

/// `secret` as the settings take it: base64 of the 32 bytes.
pub fn encode_secret(secret: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(secret))
}

/// Parses a secret given as base64 (padding optional, surrounding white space ignored);
/// `what` names the setting in the error.
pub fn parse_secret(text: &str, what: &str) -> anyhow::Result<SecretBytes> {
    let text = text.trim();
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .map_err(|_| {
                anyhow::anyhow!(
                    "{what} is not base64: give 32 random bytes in base64, e.g. from `wafleet keys generate`"
                )
            })?,
    );
    let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "{what} holds {} bytes, not 32: give 32 random bytes in base64, e.g. from `wafleet keys generate`",
            bytes.len()
        )
    })?;
    Ok(Zeroizing::new(secret))
}

/// Reads a secret file (its whole content is the base64 secret).
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<SecretBytes> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))?,
    );
    warn_if_readable_by_others(path);
    parse_secret(&text, &format!("{what} {}", path.display()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the key file can be read by other users of this machine: chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn one_of(secret: &Option<Secret>, file: &Option<PathBuf>, name: &str) -> anyhow::Result<Option<SecretBytes>> {
    match (secret, file) {
        (Some(_), Some(_)) => bail!("set only one of {name} and {name}_FILE"),
        (Some(secret), None) => parse_secret(secret.expose(), name).map(Some),
        (None, Some(path)) => read_secret_file(path, &format!("{name}_FILE")).map(Some),
        (None, None) => Ok(None),
    }
}

/// The ring the settings give, or `None` when neither `WA_KEYS_SECRET` nor
/// `WA_KEYS_SECRET_FILE` is set.
pub fn configured(settings: &Settings) -> anyhow::Result<Option<KeyRing>> {
    let current = one_of(
        &settings.wa_keys_secret,
        &settings.wa_keys_secret_file,
        "WA_KEYS_SECRET",
    )?;
    let previous = one_of(
        &settings.wa_keys_secret_previous,
        &settings.wa_keys_secret_previous_file,
        "WA_KEYS_SECRET_PREVIOUS",
    )?;
    match (current, previous) {
        (Some(current), previous) => Ok(Some(KeyRing::new(&current, previous.as_deref()))),
        (None, Some(_)) => bail!(
            "WA_KEYS_SECRET_PREVIOUS is set but WA_KEYS_SECRET is not: a rotation needs the new key as \
             WA_KEYS_SECRET (or WA_KEYS_SECRET_FILE) and the old one as WA_KEYS_SECRET_PREVIOUS"
        ),
        (None, None) => Ok(None),
    }
}

/// Refuses PostgreSQL (scale-out) without a configured key, before anything connects: only the
/// embedded default may generate its own key file, since scale-out processes on many machines
/// must all share one key.
pub fn require_for_scale_out(settings: &Settings) -> anyhow::Result<()> {
    if matches!(settings.database()?, crate::config::DatabaseTarget::Postgres(_)) && configured(settings)?.is_none() {
        bail!("{MISSING_IN_SCALE_OUT}");
    }
    Ok(())
}

/// The error of a session-holding process on PostgreSQL without a key.
pub(crate) const MISSING_IN_SCALE_OUT: &str = "WA_KEYS_SECRET is not set: with PostgreSQL every process that holds \
WhatsApp sessions needs the key that encrypts their keys in the database. Generate one once with `wafleet keys \
generate`, keep it in your secret store, and give the same value to every worker as WA_KEYS_SECRET (or a file \
holding it as WA_KEYS_SECRET_FILE); see docs/operations.md";

/// The key file of the embedded default: `<DATA_DIR>/wa-keys.secret`.
pub fn default_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join(DEFAULT_FILE_NAME)
}

/// Creates `path` with a new random secret, readable by its owner only; fails if it exists.
pub fn create_secret_file(path: &Path) -> anyhow::Result<SecretBytes> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let secret = random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    let text = encode_secret(&secret);
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    // The directory entry too, so the file survives a crash right after start-up.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_32_bytes_of_base64() {
        let secret = random_secret();
        let text = encode_secret(&secret);
        assert_eq!(*parse_secret(&format!(" {}\n", *text), "X").unwrap(), *secret);
        assert_eq!(
            *parse_secret(text.trim_end_matches('='), "X").unwrap(),
            *secret,
            "padding is optional"
        );
        let err = parse_secret("c2hvcnQ=", "WA_KEYS_SECRET").unwrap_err().to_string();
        assert!(err.contains("WA_KEYS_SECRET holds 5 bytes, not 32"), "{err}");
        let err = parse_secret("not base64!", "WA_KEYS_SECRET").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn generated_files_are_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(DEFAULT_FILE_NAME);
        let secret = create_secret_file(&path).unwrap();
        assert_eq!(*read_secret_file(&path, "key file").unwrap(), *secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(create_secret_file(&path).is_err(), "an existing key is never replaced");
    }

    #[test]
    fn previous_needs_current() {
        let mut settings = Settings::defaults();
        assert!(configured(&settings).unwrap().is_none());
        settings.wa_keys_secret_previous = Some(encode_secret(&random_secret()).as_str().into());
        assert!(configured(&settings).is_err());
        settings.wa_keys_secret = Some(encode_secret(&random_secret()).as_str().into());
        let ring = configured(&settings).unwrap().unwrap();
        assert!(ring.previous_id().is_some());
    }
}
