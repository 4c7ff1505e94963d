//! Opaque per-device credentials of links that keep their state as one value.

use crate::types::{DeviceId, Timestamp};
use crate::{Db, Result};

use super::on_db;

impl Db {
    /// The credentials `link` stored for `device`, if any.
    #[tracing::instrument(skip(self))]
    pub async fn link_credentials(&self, device: DeviceId, link: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT data FROM link_credentials WHERE device_id = $1 AND link = $2")
            .bind(device)
            .bind(link)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|(data,)| data))
    }

    /// Stores (or replaces) `device`'s credentials for `link`.
    #[tracing::instrument(skip(self, data))]
    pub async fn put_link_credentials(&self, device: DeviceId, link: &str, data: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO link_credentials (device_id, link, data, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (device_id) DO UPDATE SET link = excluded.link, data = excluded.data, updated_at = excluded.updated_at")
            .bind(device)
            .bind(link)
            .bind(data)
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
