//! The keys a database has seen (`seal_keys`) and the start-up checks built on them: a missing
//! or wrong key stops the process with an error that says what to set, before any row is read.

use anyhow::{Context, bail};

use super::{KeyId, KeyRing, SealedColumn, source};
use crate::db::on_db;
use crate::types::Timestamp;
use crate::{Db, Settings};

/// What each key's check value seals.
pub(crate) const CHECK_PLAINTEXT: &[u8] = b"wafleet: this key seals WhatsApp key material";

/// The associated data of key `id`'s check value.
pub(crate) fn check_aad(id: KeyId) -> Vec<u8> {
    format!("wafleet seal_keys check {id}").into_bytes()
}

/// A key that sealed values in this database.
#[derive(Clone, Debug)]
pub struct RegisteredKey {
    /// Its id.
    pub id: KeyId,
    /// When it first became the current key (ms).
    pub added_at: i64,
    /// When the sweep moved the last row off it (ms); `None` while rows may still use it.
    pub retired_at: Option<i64>,
    check_value: Vec<u8>,
}

/// Every key this database has seen, oldest first.
pub async fn registered(db: &Db) -> crate::Result<Vec<RegisteredKey>> {
    let rows: Vec<(i64, Vec<u8>, i64, Option<i64>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT key_id, check_value, added_at, retired_at FROM seal_keys ORDER BY added_at, key_id")
        .fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|(id, check_value, added_at, retired_at)| RegisteredKey {
            id: KeyId(u32::try_from(id).unwrap_or_default()),
            added_at,
            retired_at,
            check_value,
        })
        .collect())
}

/// The ring for a process that reads and writes key material (`serve`, `worker`): from the
/// settings, or, in the embedded default (SQLite) with nothing set, from the key file under
/// `DATA_DIR`, created on first start. Then checked against the database ([`startup`]).
pub async fn load(settings: &Settings, db: &Db, columns: &[&SealedColumn]) -> anyhow::Result<KeyRing> {
    let ring = match source::configured(settings)? {
        Some(ring) => ring,
        None if matches!(db, Db::Postgres(_)) => bail!("{}", source::MISSING_IN_SCALE_OUT),
        None => embedded_default(settings, db).await?,
    };
    startup(db, &ring, columns).await?;
    Ok(ring)
}

async fn embedded_default(settings: &Settings, db: &Db) -> anyhow::Result<KeyRing> {
    let path = source::default_file(settings);
    if path.exists() {
        let secret = source::read_secret_file(&path, "key file")?;
        return Ok(KeyRing::new(&secret, None));
    }
    let live: Vec<String> = registered(db)
        .await?
        .iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.id.to_string())
        .collect();
    if !live.is_empty() {
        bail!(
            "the WhatsApp keys in the database are encrypted with key {}, but no WA_KEYS_SECRET or \
             WA_KEYS_SECRET_FILE is set and the key file {} does not exist: restore the key file you backed \
             up there, or point WA_KEYS_SECRET_FILE at it",
            live.join(", "),
            path.display()
        );
    }
    let secret = source::create_secret_file(&path)?;
    let ring = KeyRing::new(&secret, None);
    tracing::warn!(
        path = %path.display(),
        key = %ring.current_id(),
        "GENERATED A NEW KEY for the WhatsApp keys in the database and saved it in this file. Back it up \
         now, and keep it apart from database backups: without it no linked device can connect again; \
         with it, a database backup is no longer protected"
    );
    Ok(ring)
}

/// Checks `ring` against the keys the database has seen, then records its current key:
/// - a configured key whose check value does not open is refused;
/// - a key that may still seal rows (not retired) but is not in the ring is a wrong or missing
///   key: refused, naming it;
/// - a database with plain-text rows from before encryption lets the ring read them until the
///   sweep has sealed them all.
pub async fn startup(db: &Db, ring: &KeyRing, columns: &[&SealedColumn]) -> anyhow::Result<()> {
    let known = registered(db).await.context("reading the registered keys")?;
    check(ring, &known)?;
    let done: Option<i64> = on_db!(db, pool => sqlx::query_scalar(
        "SELECT plaintext_done_at FROM seal_progress WHERE id = 1").fetch_one(pool).await)
    .context("reading seal_progress")?;
    if done.is_none() {
        if known.is_empty() && !super::reseal::any_rows(db, columns).await? {
            // A new database: nothing was ever written in plain text.
            mark_plaintext_done(db).await?;
        } else {
            ring.set_plaintext_readable(true);
            tracing::info!("rows written before encryption are read as they are and sealed in the background");
        }
    }
    let now = Timestamp::now().millis();
    let check_value = ring
        .check_value(ring.current_id())
        .expect("the current key is in the ring");
    on_db!(db, pool => sqlx::query(
        "INSERT INTO seal_keys (key_id, check_value, added_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key_id) DO UPDATE SET retired_at = NULL")
        .bind(i64::from(ring.current_id().0)).bind(check_value).bind(now)
        .execute(pool).await.map(drop))
    .context("registering the current key")?;
    // Again, in case another process registered a different key at the same moment.
    check(ring, &registered(db).await?)?;
    tracing::info!(key = %ring.current_id(), previous = ?ring.previous_id().map(|k| k.to_string()), "WhatsApp keys are sealed at rest");
    Ok(())
}

fn check(ring: &KeyRing, known: &[RegisteredKey]) -> anyhow::Result<()> {
    for key in known.iter().filter(|k| ring.has(k.id)) {
        if !ring.verifies(key.id, &key.check_value) {
            bail!(
                "the secret given for key {} does not open its check value in the database: the key file or \
                 secret was altered, or the database was",
                key.id
            );
        }
    }
    let missing: Vec<String> = known
        .iter()
        .filter(|k| k.retired_at.is_none() && !ring.has(k.id))
        .map(|k| k.id.to_string())
        .collect();
    if !missing.is_empty() {
        let previous = ring
            .previous_id()
            .map_or_else(String::new, |p| format!(" and WA_KEYS_SECRET_PREVIOUS is key {p}"));
        bail!(
            "wrong WA_KEYS_SECRET: the WhatsApp keys in the database are encrypted with key {}, but \
             WA_KEYS_SECRET is key {}{previous}. Set WA_KEYS_SECRET (or WA_KEYS_SECRET_FILE) to the secret \
             in use; while rotating, give the old secret as WA_KEYS_SECRET_PREVIOUS. `wafleet keys status` \
             lists the keys in use",
            missing.join(", "),
            ring.current_id()
        );
    }
    Ok(())
}

/// Records that no plain-text row is left.
pub(crate) async fn mark_plaintext_done(db: &Db) -> crate::Result<()> {
    on_db!(db, pool => sqlx::query(
        "UPDATE seal_progress SET plaintext_done_at = $1 WHERE id = 1 AND plaintext_done_at IS NULL")
        .bind(Timestamp::now().millis())
        .execute(pool).await.map(drop))?;
    Ok(())
}

/// Retires every key but `current`: no row uses them any more.
pub(crate) async fn retire_all_but(db: &Db, current: KeyId) -> crate::Result<u64> {
    let retired = on_db!(db, pool => sqlx::query(
        "UPDATE seal_keys SET retired_at = $1 WHERE key_id <> $2 AND retired_at IS NULL")
        .bind(Timestamp::now().millis()).bind(i64::from(current.0))
        .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(retired)
}
