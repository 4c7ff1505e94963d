//! Pacing policies: how fast a device may send, across all its campaigns and single sends.
//!
//! The policy is stored per device (a device without a row follows [`Pacing::default`]); the
//! worker holding the device enforces it, and records an automatic pause here when the device's
//! sends fail in a burst or go unreplied too often, so the pause is visible and outlives a change
//! of holder.

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

/// A device's pacing policy.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Pacing {
    /// Off: sends go out as fast as the worker can (risks a ban; for numbers whose recipients
    /// all know them).
    pub enabled: bool,
    /// Most sends in any minute.
    pub per_minute: i64,
    /// A random extra wait of up to this many milliseconds before each send, so sends do not
    /// come at machine-regular intervals.
    pub jitter_ms: i64,
    /// Most sends per UTC day once warmed up.
    pub daily_cap: i64,
    /// A newly added number ramps its daily cap up over this many days (0: no warm-up).
    pub warmup_days: i64,
    /// Its daily cap on the first day of the warm-up.
    pub warmup_first_day: i64,
    /// This many recipient refusals (e.g. 463) or device errors within ten minutes pause the
    /// device's sends (0: never).
    pub error_burst: i64,
    /// How long such a pause lasts.
    pub pause_minutes: i64,
    /// Sends pause while more than this share (percent) of the last 90 days' sends is unreplied…
    pub unreplied_max_percent: i64,
    /// …once at least this many were sent in that time.
    pub unreplied_min_sends: i64,
}

impl Default for Pacing {
    /// Below the thresholds WhatsApp communities report for messages to strangers (more than
    /// about five a minute, or most of them unanswered, gets numbers banned).
    fn default() -> Self {
        Pacing {
            enabled: true,
            per_minute: 3,
            jitter_ms: 8_000,
            daily_cap: 200,
            warmup_days: 14,
            warmup_first_day: 20,
            error_burst: 5,
            pause_minutes: 30,
            unreplied_max_percent: 65,
            unreplied_min_sends: 15,
        }
    }
}

impl Pacing {
    /// Checks the numbers; the message names the field.
    pub fn check(&self) -> std::result::Result<(), String> {
        let ranges = [
            ("per_minute", self.per_minute, 1, 600),
            ("jitter_ms", self.jitter_ms, 0, 600_000),
            ("daily_cap", self.daily_cap, 1, 100_000),
            ("warmup_days", self.warmup_days, 0, 365),
            ("warmup_first_day", self.warmup_first_day, 1, 100_000),
            ("error_burst", self.error_burst, 0, 1_000),
            ("pause_minutes", self.pause_minutes, 1, 10_080),
            ("unreplied_max_percent", self.unreplied_max_percent, 1, 100),
            ("unreplied_min_sends", self.unreplied_min_sends, 1, 100_000),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!("{name}: must be {low} to {high}, not {value}"));
            }
        }
        Ok(())
    }
}

/// A device's policy and any automatic pause in force.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DevicePacing {
    /// The policy.
    pub policy: Pacing,
    /// Sends are paused until then.
    pub paused_until: Option<Timestamp>,
    /// Why.
    pub pause_reason: Option<String>,
}

/// What the holder needs to pace a device it just took on.
#[derive(Clone, Debug, Default)]
pub struct SendStats {
    /// Sends WhatsApp accepted since the start of the UTC day.
    pub sent_today: i64,
    /// The latest of them.
    pub last_sent_at: Option<Timestamp>,
    /// When the device was added (the warm-up counts from it).
    pub device_added_at: Timestamp,
    /// Sends since the window's start…
    pub recent_sent: i64,
    /// …and how many of them nobody answered.
    pub recent_unreplied: i64,
}

type PacingRow = (
    bool,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<Timestamp>,
    Option<String>,
);

impl Db {
    /// A device's pacing (the defaults when none is stored). Not scoped: for workers and the
    /// scheduler; the API goes through [`Db::pacing_of`].
    #[tracing::instrument(skip(self))]
    pub async fn device_pacing(&self, device: DeviceId) -> Result<DevicePacing> {
        let row: Option<PacingRow> = on_db!(self, pool => sqlx::query_as(
            "SELECT enabled, per_minute, jitter_ms, daily_cap, warmup_days, warmup_first_day, error_burst, \
             pause_minutes, unreplied_max_percent, unreplied_min_sends, paused_until, pause_reason \
             FROM device_pacing WHERE device_id = $1")
            .bind(device)
            .fetch_optional(pool)
            .await)?;
        Ok(match row {
            None => DevicePacing {
                policy: Pacing::default(),
                paused_until: None,
                pause_reason: None,
            },
            Some(r) => DevicePacing {
                policy: Pacing {
                    enabled: r.0,
                    per_minute: r.1,
                    jitter_ms: r.2,
                    daily_cap: r.3,
                    warmup_days: r.4,
                    warmup_first_day: r.5,
                    error_burst: r.6,
                    pause_minutes: r.7,
                    unreplied_max_percent: r.8,
                    unreplied_min_sends: r.9,
                },
                paused_until: r.10,
                pause_reason: r.11,
            },
        })
    }

    /// One of the user's devices' pacing.
    #[tracing::instrument(skip(self))]
    pub async fn pacing_of(&self, user: UserId, device: DeviceId) -> Result<DevicePacing> {
        self.device(user, device).await?;
        self.device_pacing(device).await
    }

    /// Stores the pacing of one of the user's devices and lifts any automatic pause (the owner
    /// has looked at it).
    #[tracing::instrument(skip(self, policy))]
    pub async fn set_pacing(&self, user: UserId, device: DeviceId, policy: &Pacing) -> Result<DevicePacing> {
        self.device(user, device).await?;
        self.write_pacing(device, policy, None, None).await?;
        self.device_pacing(device).await
    }

    /// Pauses a device's sends until `until` (set by its holder).
    #[tracing::instrument(skip(self))]
    pub async fn pause_device_sends(&self, device: DeviceId, until: Timestamp, reason: &str) -> Result<()> {
        let current = self.device_pacing(device).await?;
        self.write_pacing(device, &current.policy, Some(until), Some(reason))
            .await
    }

    async fn write_pacing(
        &self,
        device: DeviceId,
        p: &Pacing,
        until: Option<Timestamp>,
        reason: Option<&str>,
    ) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO device_pacing (device_id, enabled, per_minute, jitter_ms, daily_cap, warmup_days, \
             warmup_first_day, error_burst, pause_minutes, unreplied_max_percent, unreplied_min_sends, \
             paused_until, pause_reason, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (device_id) DO UPDATE SET enabled = $2, per_minute = $3, jitter_ms = $4, daily_cap = $5, \
             warmup_days = $6, warmup_first_day = $7, error_burst = $8, pause_minutes = $9, \
             unreplied_max_percent = $10, unreplied_min_sends = $11, paused_until = $12, pause_reason = $13, \
             updated_at = $14")
            .bind(device)
            .bind(p.enabled)
            .bind(p.per_minute)
            .bind(p.jitter_ms)
            .bind(p.daily_cap)
            .bind(p.warmup_days)
            .bind(p.warmup_first_day)
            .bind(p.error_burst)
            .bind(p.pause_minutes)
            .bind(p.unreplied_max_percent)
            .bind(p.unreplied_min_sends)
            .bind(until)
            .bind(reason)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Counts the holder paces a device by: sends since `day_start`, sends since `week_start` and
    /// how many of those no inbound message answered.
    #[tracing::instrument(skip(self))]
    pub async fn send_stats(&self, device: DeviceId, day_start: Timestamp, week_start: Timestamp) -> Result<SendStats> {
        let (sent_today, last): (i64, Option<Timestamp>) = on_db!(self, pool => sqlx::query_as(
            "SELECT COUNT(*), MAX(sent_at) FROM outbound_messages WHERE device_id = $1 AND sent_at >= $2")
            .bind(device)
            .bind(day_start)
            .fetch_one(pool)
            .await)?;
        let (recent, unreplied): (i64, Option<i64>) = on_db!(self, pool => sqlx::query_as(
            "SELECT COUNT(*), SUM(CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.device_id = o.device_id \
               AND m.chat_jid = o.recipient AND m.from_me = FALSE AND m.history = FALSE AND m.sent_at + 1000 > o.sent_at) THEN 0 ELSE 1 END) \
             FROM outbound_messages o WHERE o.device_id = $1 AND o.sent_at >= $2")
            .bind(device)
            .bind(week_start)
            .fetch_one(pool)
            .await)?;
        let added: Option<Timestamp> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT created_at FROM devices WHERE id = $1")
            .bind(device)
            .fetch_optional(pool)
            .await)?;
        Ok(SendStats {
            sent_today,
            last_sent_at: last,
            device_added_at: added.unwrap_or_default(),
            recent_sent: recent,
            recent_unreplied: unreplied.unwrap_or(0),
        })
    }
}
