//! Devices: the WhatsApp numbers a user links. Every query is scoped by the owner's id, so a
//! device of another user is indistinguishable from one that does not exist.

use crate::types::text_enum::text_enum;
use crate::types::{DeviceId, PhoneNumber, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::{BeginWrite, on_db};

text_enum! {
    /// Where a device's WhatsApp session stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum DeviceStatus ("device status") {
        /// Not linked, or linked but no worker holds its session.
        Offline = "offline",
        /// Waiting for a QR scan or a pair code.
        Pairing = "pairing",
        /// A worker is connecting its session.
        Connecting = "connecting",
        /// Connected to WhatsApp.
        Online = "online",
        /// WhatsApp ended the link (from the phone, or remotely); must be paired again.
        LoggedOut = "logged_out",
        /// WhatsApp banned the number.
        Banned = "banned",
    }
}

/// A device as its owner sees it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Device {
    /// Row id; the only way devices are referenced.
    pub id: DeviceId,
    /// The owner's label, unique per owner.
    pub name: String,
    /// The number the owner expects to link, E.164.
    pub phone: Option<PhoneNumber>,
    /// The WhatsApp JID once linked.
    pub jid: Option<String>,
    /// Session state.
    pub status: DeviceStatus,
    /// Last time the session was seen connected.
    pub last_seen_at: Option<Timestamp>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A change to a device: `None` keeps a field as it is.
#[derive(Clone, Debug, Default)]
pub struct DeviceChanges {
    /// New name.
    pub name: Option<String>,
    /// New phone; `Some(None)` clears it.
    pub phone: Option<Option<PhoneNumber>>,
}

/// The columns of [`Device`], as a literal so queries stay `&'static str` (sqlx rejects built strings).
macro_rules! device_columns {
    () => {
        "id, name, phone, jid, status, last_seen_at, created_at, updated_at"
    };
}
const NAME_TAKEN: &str = "you already have a device with this name or phone number";

impl Db {
    /// Adds a device for `user`.
    #[tracing::instrument(skip(self))]
    pub async fn create_device(&self, user: UserId, name: &str, phone: Option<&PhoneNumber>) -> Result<Device> {
        let sql = concat!(
            "INSERT INTO devices (user_id, name, phone, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING ",
            device_columns!()
        );
        on_db!(self, pool => sqlx::query_as::<_, Device>(sql)
            .bind(user)
            .bind(name)
            .bind(phone)
            .bind(DeviceStatus::Offline.as_str())
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)
        .map_err(|e| Error::on_unique_violation(e, NAME_TAKEN))
    }

    /// The user's devices, oldest first.
    #[tracing::instrument(skip(self))]
    pub async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        let sql = concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE user_id = $1 ORDER BY id"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, Device>(sql).bind(user).fetch_all(pool).await)?)
    }

    /// One of the user's devices; [`Error::NotFound`] if it is not theirs.
    #[tracing::instrument(skip(self))]
    pub async fn device(&self, user: UserId, id: DeviceId) -> Result<Device> {
        let sql = concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE id = $1 AND user_id = $2"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, Device>(sql).bind(id).bind(user).fetch_one(pool).await)?)
    }

    /// Applies `changes` to one of the user's devices.
    #[tracing::instrument(skip(self))]
    pub async fn update_device(&self, user: UserId, id: DeviceId, changes: &DeviceChanges) -> Result<Device> {
        let sql = concat!(
            "UPDATE devices SET name = COALESCE($3, name), \
               phone = CASE WHEN $4 THEN $5 ELSE phone END, updated_at = $6 \
             WHERE id = $1 AND user_id = $2 RETURNING ",
            device_columns!()
        );
        on_db!(self, pool => sqlx::query_as::<_, Device>(sql)
            .bind(id)
            .bind(user)
            .bind(changes.name.as_deref())
            .bind(changes.phone.is_some())
            .bind(changes.phone.clone().flatten())
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)
        .map_err(|e| Error::on_unique_violation(e, NAME_TAKEN))
    }

    /// Deletes one of the user's devices (and, by cascade, everything stored for it), and recounts
    /// the user's analytics of all devices without it.
    #[tracing::instrument(skip(self))]
    pub async fn delete_device(&self, user: UserId, id: DeviceId) -> Result<()> {
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(Error::NotFound);
            }
            sqlx::query("DELETE FROM analytics_user_daily WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(super::analytics::USER_RECOUNT_SQL)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
