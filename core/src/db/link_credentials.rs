//! Opaque per-device credentials of links that keep their state as one value, sealed at rest
//! (they let their holder act as the device).

use crate::keys::{KeyColumn, KeyRing, RowKey, SealedColumn};
use crate::types::{DeviceId, Timestamp};
use crate::{Db, Result};

use super::on_db;

/// `link_credentials.data`, bound to its device and link name.
pub const LINK_CREDENTIALS: SealedColumn = SealedColumn::text("link_credentials", "data", &[KeyColumn::text("link")]);

impl Db {
    /// The credentials `link` stored for `device`, if any.
    #[tracing::instrument(skip(self, keys))]
    pub async fn link_credentials(&self, keys: &KeyRing, device: DeviceId, link: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT data FROM link_credentials WHERE device_id = $1 AND link = $2")
            .bind(device)
            .bind(link)
            .fetch_optional(pool)
            .await)?;
        let Some((stored,)) = row else { return Ok(None) };
        let key = [RowKey::Text(link)];
        keys.open_text(&LINK_CREDENTIALS.cell(device, &key), &stored)
            .map(Some)
            .map_err(|e| crate::Error::Other(anyhow::anyhow!("the stored credentials of device {device}: {e}")))
    }

    /// Stores (or replaces) `device`'s credentials for `link`.
    #[tracing::instrument(skip(self, keys, data))]
    pub async fn put_link_credentials(&self, keys: &KeyRing, device: DeviceId, link: &str, data: &str) -> Result<()> {
        let key = [RowKey::Text(link)];
        let sealed = keys.seal_text(&LINK_CREDENTIALS.cell(device, &key), data);
        on_db!(self, pool => sqlx::query(
            "INSERT INTO link_credentials (device_id, link, data, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (device_id) DO UPDATE SET link = excluded.link, data = excluded.data, updated_at = excluded.updated_at")
            .bind(device)
            .bind(link)
            .bind(sealed)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Forgets `device`'s credentials (logout).
    #[tracing::instrument(skip(self))]
    pub async fn delete_link_credentials(&self, device: DeviceId) -> Result<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM link_credentials WHERE device_id = $1")
            .bind(device)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
