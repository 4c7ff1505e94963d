//! A device's own webhook: its events go there instead of to its owner's webhook, signed with
//! its own secret and filtered by its own events (the REST API wafleet grew out of calls it the
//! device-specific webhook). Only the owner reads or changes it.

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::Webhook;
use crate::db::on_db;

/// A device's webhook, secret included (only its owner's requests and the deliverer read it).
#[derive(Clone, sqlx::FromRow)]
pub struct DeviceWebhook {
    /// The device.
    pub device_id: DeviceId,
    /// Where its events are POSTed.
    pub url: String,
    /// Signs each body.
    pub secret: String,
    /// Event names, comma-separated; empty for all.
    pub events: String,
    /// When it was first set.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for DeviceWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWebhook")
            .field("device_id", &self.device_id)
            .field("url", &self.url)
            .field("secret", &"…")
            .field("events", &self.events)
            .finish()
    }
}

impl DeviceWebhook {
    /// As the deliverer uses any webhook: a device's is always on while it is set.
    pub fn into_webhook(self) -> Webhook {
        Webhook {
            url: self.url,
            secret: self.secret,
            events: self.events,
            enabled: true,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Columns of [`DeviceWebhook`].
const COLUMNS: &str = "device_id, url, secret, events, created_at, updated_at";

impl Db {
    /// The webhook of `user`'s `device`, if it has one; [`Error::NotFound`] when the device is
    /// not theirs.
    #[tracing::instrument(skip(self))]
    pub async fn device_webhook(&self, user: UserId, device: DeviceId) -> Result<Option<DeviceWebhook>> {
        self.device(user, device).await?;
        self.device_webhook_of(device).await
    }

    /// The webhook of `device`, whoever owns it (for the deliverer).
    #[tracing::instrument(skip(self))]
    pub(crate) async fn device_webhook_of(&self, device: DeviceId) -> Result<Option<DeviceWebhook>> {
        let sql = format!("SELECT {COLUMNS} FROM device_webhooks WHERE device_id = $1");
        Ok(
            on_db!(self, pool => sqlx::query_as::<_, DeviceWebhook>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(device)
            .fetch_optional(pool)
            .await)?,
        )
    }

    /// Sets the webhook of `user`'s `device` (all of it); [`Error::NotFound`] when the device is
    /// not theirs.
    #[tracing::instrument(skip(self, secret))]
    pub async fn put_device_webhook(
        &self,
        user: UserId,
        device: DeviceId,
        url: &str,
        secret: &str,
        events: &str,
    ) -> Result<DeviceWebhook> {
        let sql = format!(
            "INSERT INTO device_webhooks (device_id, url, secret, events, created_at, updated_at) \
             SELECT id, $3, $4, $5, $6, $6 FROM devices WHERE id = $1 AND user_id = $2 \
             ON CONFLICT (device_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
             events = excluded.events, updated_at = excluded.updated_at RETURNING {COLUMNS}"
        );
        let set = on_db!(self, pool => sqlx::query_as::<_, DeviceWebhook>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(device)
            .bind(user)
            .bind(url)
            .bind(secret)
            .bind(events)
            .bind(Timestamp::now())
            .fetch_optional(pool)
            .await)?;
        set.ok_or(Error::NotFound)
    }

    /// Removes the webhook of `user`'s `device`: its events go to the owner's webhook again.
    /// Returns whether it had one; [`Error::NotFound`] when the device is not theirs.
    #[tracing::instrument(skip(self))]
    pub async fn delete_device_webhook(&self, user: UserId, device: DeviceId) -> Result<bool> {
        self.device(user, device).await?;
        let removed = on_db!(self, pool => sqlx::query("DELETE FROM device_webhooks WHERE device_id = $1")
            .bind(device)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(removed > 0)
    }
}
