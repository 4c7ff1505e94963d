//! What a device's owner asked of its session, and what the worker holding it reports back.
//!
//! The API writes the desired state and bumps `generation`; the worker reconciles the live session
//! toward it and writes pairing material, status and errors. Neither side calls the other, so the
//! API stays stateless and a device can move between workers.

use crate::link::{IncomingCall, Jid};
use crate::types::text_enum::text_enum;
use crate::types::{DeviceId, PhoneNumber, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::leases::fenced;
use super::on_db;
use super::webhooks::{status_before_in, status_changed_in};
use super::{DeviceStatus, Fence};
use crate::db::BeginWrite;

text_enum! {
    /// What the owner wants the session to be.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum Desired ("desired state") {
        /// No session (never linked, or logged out).
        Unlinked = "unlinked",
        /// Link by QR code.
        PairQr = "pair_qr",
        /// Link by phone pair code.
        PairCode = "pair_code",
        /// Stay connected with the stored credentials.
        Connected = "connected",
    }
}

/// One device's desired session, as a worker reads it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionTarget {
    /// The device.
    pub device_id: DeviceId,
    /// What to reconcile toward.
    pub desired: Desired,
    /// The number to pair by code.
    pub pair_phone: Option<String>,
    /// Rises on every request; a worker holding an older generation reopens the session.
    pub generation: i64,
}

/// Pairing progress, as the owner sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct PairingView {
    /// The QR payload to show, while pairing by QR.
    pub qr_code: Option<String>,
    /// When that QR code expires.
    pub qr_expires_at: Option<Timestamp>,
    /// The code to type on the phone, while pairing by code.
    pub pair_code: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Db {
    /// Records what `user` wants of `device`'s session; [`Error::NotFound`] if the device is not theirs.
    #[tracing::instrument(skip(self))]
    pub async fn request_session(
        &self,
        user: UserId,
        device: DeviceId,
        desired: Desired,
        pair_phone: Option<&PhoneNumber>,
    ) -> Result<()> {
        let status = match desired {
            Desired::Unlinked => DeviceStatus::Offline,
            Desired::PairQr | Desired::PairCode => DeviceStatus::Pairing,
            Desired::Connected => DeviceStatus::Connecting,
        };
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The owner logging a device out or pairing it again takes an online device offline:
            // webhooks hear of it here, in the change's own transaction, as they would from a worker.
            let before = status_before_in!(tx, device);
            let owned = sqlx::query("UPDATE devices SET status = $3, updated_at = $4 WHERE id = $1 AND user_id = $2")
                .bind(device)
                .bind(user)
                .bind(status.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if owned == 0 {
                return Err(Error::NotFound);
            }
            status_changed_in!(tx, device, before, status.as_str(), now);
            sqlx::query(
                "INSERT INTO device_sessions (device_id, desired, pair_phone, generation, updated_at) \
                 VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (device_id) DO UPDATE SET desired = excluded.desired, pair_phone = excluded.pair_phone, \
                   generation = device_sessions.generation + 1, qr_code = NULL, qr_expires_at = NULL, \
                   pair_code = NULL, last_error = NULL, updated_at = excluded.updated_at")
                .bind(device)
                .bind(desired.as_str())
                .bind(pair_phone)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            // A lease row makes the device claimable by workers.
            sqlx::query("INSERT INTO device_leases (device_id) VALUES ($1) ON CONFLICT (device_id) DO NOTHING")
                .bind(device)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every device's desired session.
    #[tracing::instrument(skip(self))]
    pub async fn session_targets(&self) -> Result<Vec<SessionTarget>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, SessionTarget>(
            "SELECT device_id, desired, pair_phone, generation FROM device_sessions ORDER BY device_id")
            .fetch_all(pool)
            .await)?)
    }

    /// The desired sessions of the devices `worker` holds leases on (its reconcile input).
    #[tracing::instrument(skip(self))]
    pub async fn held_session_targets(&self, worker: &str) -> Result<Vec<SessionTarget>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, SessionTarget>(
            "SELECT s.device_id, s.desired, s.pair_phone, s.generation FROM device_sessions s \
             JOIN device_leases l ON l.device_id = s.device_id WHERE l.holder = $1 ORDER BY s.device_id")
            .bind(worker)
            .fetch_all(pool)
            .await)?)
    }

    /// Pairing progress of one of `user`'s devices (empty when it was never asked to pair).
    #[tracing::instrument(skip(self))]
    pub async fn pairing_view(&self, user: UserId, device: DeviceId) -> Result<PairingView> {
        let row = on_db!(self, pool => sqlx::query_as::<_, PairingView>(
            "SELECT s.qr_code, s.qr_expires_at, s.pair_code, s.last_error FROM device_sessions s \
             JOIN devices d ON d.id = s.device_id WHERE s.device_id = $1 AND d.user_id = $2")
            .bind(device)
            .bind(user)
            .fetch_optional(pool)
            .await)?;
        Ok(row.unwrap_or_default())
    }

    /// What `user` last asked of `device`'s session (`None` when nothing ever was, or the device
    /// is not theirs). `Unlinked` also after WhatsApp ended the link for good.
    #[tracing::instrument(skip(self))]
    pub async fn desired_session(&self, user: UserId, device: DeviceId) -> Result<Option<Desired>> {
        let row: Option<String> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT s.desired FROM device_sessions s JOIN devices d ON d.id = s.device_id \
             WHERE s.device_id = $1 AND d.user_id = $2")
            .bind(device)
            .bind(user)
            .fetch_optional(pool)
            .await)?;
        row.map(Desired::try_from)
            .transpose()
            .map_err(|e| Error::Other(anyhow::anyhow!(e)))
    }

    /// The number `user`'s device is pairing by code with, if it is.
    #[tracing::instrument(skip(self))]
    pub async fn pair_phone(&self, user: UserId, device: DeviceId) -> Result<Option<String>> {
        let row: Option<Option<String>> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT s.pair_phone FROM device_sessions s JOIN devices d ON d.id = s.device_id \
             WHERE s.device_id = $1 AND d.user_id = $2 AND s.desired = 'pair_code'")
            .bind(device)
            .bind(user)
            .fetch_optional(pool)
            .await)?;
        Ok(row.flatten())
    }

    /// Whether a device of a user other than `user` is linked as `phone`'s WhatsApp account.
    #[tracing::instrument(skip(self))]
    pub async fn linked_by_another_user(&self, user: UserId, phone: &PhoneNumber) -> Result<bool> {
        // A linked device's JID is the number's, with or without a `:device` suffix.
        let jid = Jid::for_phone(phone);
        let with_device = format!("{}:%@{}", phone.digits(), crate::link::USER_SERVER);
        let found: Option<DeviceId> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT id FROM devices WHERE user_id <> $1 AND (jid = $2 OR jid LIKE $3) LIMIT 1")
            .bind(user)
            .bind(&jid.0)
            .bind(&with_device)
            .fetch_optional(pool)
            .await)?;
        Ok(found.is_some())
    }

    /// Pairing progress of every device of `user` that has any.
    #[tracing::instrument(skip(self))]
    pub async fn pairing_views(&self, user: UserId) -> Result<Vec<(DeviceId, PairingView)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            device_id: DeviceId,
            #[sqlx(flatten)]
            view: PairingView,
        }
        let rows = on_db!(self, pool => sqlx::query_as::<_, Row>(
            "SELECT s.device_id, s.qr_code, s.qr_expires_at, s.pair_code, s.last_error FROM device_sessions s \
             JOIN devices d ON d.id = s.device_id WHERE d.user_id = $1")
            .bind(user)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(|r| (r.device_id, r.view)).collect())
    }

    /// The holder shows a new QR code.
    #[tracing::instrument(skip(self, code))]
    pub async fn set_qr_code(&self, fence: Fence, code: &str, expires_at: Timestamp) -> Result<()> {
        fenced!(self, fence, tx => {
            sqlx::query("UPDATE device_sessions SET qr_code = $1, qr_expires_at = $2, updated_at = $3 WHERE device_id = $4")
                .bind(code)
                .bind(expires_at)
                .bind(Timestamp::now())
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// The holder shows the pair code.
    #[tracing::instrument(skip(self))]
    pub async fn set_pair_code(&self, fence: Fence, code: &str) -> Result<()> {
        fenced!(self, fence, tx => {
            sqlx::query("UPDATE device_sessions SET pair_code = $1, updated_at = $2 WHERE device_id = $3")
                .bind(code)
                .bind(Timestamp::now())
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// The holder reports the session's status; `online` also records `last_seen_at`.
    #[tracing::instrument(skip(self))]
    pub async fn set_device_status(&self, fence: Fence, status: DeviceStatus) -> Result<()> {
        let now = Timestamp::now();
        fenced!(self, fence, tx => {
            let before = status_before_in!(tx, fence.device);
            sqlx::query(
                "UPDATE devices SET status = $1, updated_at = $2, \
                   last_seen_at = CASE WHEN $1 = 'online' THEN $2 ELSE last_seen_at END WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
            status_changed_in!(tx, fence.device, before, status.as_str(), now);
        });
        Ok(())
    }

    /// A call rang on the device's account: `call.offer` for the webhook that wants it, if the
    /// worker still holds the device.
    #[tracing::instrument(skip(self, call), fields(call = %call.id))]
    pub async fn record_call(&self, fence: Fence, call: &IncomingCall) -> Result<()> {
        let now = Timestamp::now();
        fenced!(self, fence, tx => {
            let events = [(fence.device, super::webhooks::Event::Call(call))];
            super::webhooks::emit_in!(tx, &events, now);
        });
        Ok(())
    }

    /// Pairing succeeded: the device is linked to `jid` and should stay connected.
    #[tracing::instrument(skip(self))]
    pub async fn mark_paired(&self, fence: Fence, jid: &Jid) -> Result<()> {
        let now = Timestamp::now();
        fenced!(self, fence, tx => {
            let before = status_before_in!(tx, fence.device);
            sqlx::query("UPDATE devices SET jid = $1, status = 'online', last_seen_at = $2, updated_at = $2 WHERE id = $3")
                .bind(&jid.0)
                .bind(now)
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
            status_changed_in!(tx, fence.device, before, "online", now);
            // The generation stays: the holder already has the session that just paired.
            sqlx::query(
                "UPDATE device_sessions SET desired = 'connected', qr_code = NULL, qr_expires_at = NULL, \
                   pair_code = NULL, last_error = NULL, updated_at = $1 WHERE device_id = $2")
                .bind(now)
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// The session ended for good (logged out, banned, pairing failed): nothing is held until the
    /// owner asks again, and `reason` is shown to them.
    #[tracing::instrument(skip(self))]
    pub async fn mark_unlinked(&self, fence: Fence, status: DeviceStatus, reason: &str) -> Result<()> {
        let now = Timestamp::now();
        fenced!(self, fence, tx => {
            let before = status_before_in!(tx, fence.device);
            sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
            status_changed_in!(tx, fence.device, before, status.as_str(), now);
            sqlx::query(
                "UPDATE device_sessions SET desired = 'unlinked', qr_code = NULL, qr_expires_at = NULL, \
                   pair_code = NULL, last_error = $1, updated_at = $2 WHERE device_id = $3")
                .bind(reason)
                .bind(now)
                .bind(fence.device)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }
}
