//! What administrators do to accounts (list, disable, enable, set a temporary password, delete)
//! and the log of it.
//!
//! A disabled account stops at once everywhere: its sessions are deleted, the caller lookups of
//! sessions and tokens skip it (`u.disabled_at IS NULL`), and the send path takes no send of it
//! ([`Db::next_send`], [`Db::begin_send`]). Its devices stay held, so what their contacts write
//! is still stored; enabling the account lets its queued sends go.

use crate::types::{Email, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;
use crate::db::BeginWrite;

/// Days of sends an account's summary counts.
pub const SENDS_DAYS: i64 = 30;

/// An account as administrators see it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AccountSummary {
    /// The account's id.
    pub id: UserId,
    /// Its login email.
    pub email: Email,
    /// Whether it is an administrator.
    pub is_admin: bool,
    /// When it was made.
    pub created_at: Timestamp,
    /// When an administrator disabled it; `null` while it is enabled.
    pub disabled_at: Option<Timestamp>,
    /// Whether it must change a temporary password before doing anything else.
    pub must_change_password: bool,
    /// Its devices.
    pub devices: i64,
    /// Of those, how many are online now.
    pub devices_online: i64,
    /// Messages it sent in the last 30 days, as the analytics roll-up counted them (up to a minute
    /// behind).
    pub sends_30d: i64,
    /// When it last logged in or used an API token.
    pub last_active_at: Option<Timestamp>,
}

/// What an administrator did.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AdminAction {
    /// The entry's id.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// The administrator's email, as it was then.
    pub actor_email: String,
    /// What: `disable`, `enable`, `temporary_password`, `delete` or `replay_dead_letter`.
    pub action: String,
    /// The account acted on, if any (it may since have been deleted).
    pub target_id: Option<i64>,
    /// Its email, as it was then.
    pub target_email: Option<String>,
    /// More about it, for people.
    pub detail: String,
}

/// A worker of the fleet, as administrators see it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct FleetWorker {
    /// The worker's name.
    pub id: String,
    /// How many sessions it may hold.
    pub capacity: i64,
    /// How many it holds now (unexpired leases).
    pub sessions: i64,
    /// Its last heartbeat.
    pub heartbeat_at: Timestamp,
    /// When it started.
    pub started_at: Timestamp,
}

/// Accounts with their devices, their sends since `$2` (a day's start) and their last activity;
/// the caller adds `WHERE` with `$1` and anything after.
const SUMMARIES: &str = "SELECT u.id, u.email, u.is_admin, u.created_at, u.disabled_at, u.must_change_password, \
     (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id) AS devices, \
     (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id AND d.status = 'online') AS devices_online, \
     (SELECT CAST(COALESCE(SUM(a.sent), 0) AS BIGINT) FROM analytics_user_daily a \
         WHERE a.user_id = u.id AND a.day >= $2) AS sends_30d, \
     (SELECT MAX(t) FROM (SELECT MAX(s.created_at) AS t FROM sessions s WHERE s.user_id = u.id \
         UNION ALL SELECT MAX(k.last_used_at) FROM api_tokens k WHERE k.user_id = u.id) AS seen) \
         AS last_active_at \
     FROM users u";

/// The start of the UTC day [`SENDS_DAYS`] ago, from which an account's sends are counted.
fn sends_since() -> i64 {
    let since = Timestamp::now().plus_secs(-SENDS_DAYS * 86_400).millis();
    since - since.rem_euclid(super::analytics::DAY_MS)
}

impl Db {
    /// Accounts whose email contains `search` (every account when empty), oldest first, at most
    /// `limit`, with their devices, recent sends and last activity.
    #[tracing::instrument(skip(self))]
    pub async fn account_summaries(&self, search: &str, limit: i64) -> Result<Vec<AccountSummary>> {
        let sql = format!("{SUMMARIES} WHERE u.email LIKE $1 ESCAPE '\\' ORDER BY u.id LIMIT $3");
        let pattern = super::like_containing(&search.trim().to_lowercase());
        Ok(
            on_db!(self, pool => sqlx::query_as::<_, AccountSummary>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&pattern)
            .bind(sends_since())
            .bind(limit)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// The account `user` as [`Db::account_summaries`] lists it; [`Error::NotFound`] when there is
    /// no such account.
    #[tracing::instrument(skip(self))]
    pub async fn account_summary(&self, user: UserId) -> Result<AccountSummary> {
        let sql = format!("{SUMMARIES} WHERE u.id = $1");
        Ok(
            on_db!(self, pool => sqlx::query_as::<_, AccountSummary>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user)
            .bind(sends_since())
            .fetch_one(pool)
            .await)?,
        )
    }

    /// Disables `user` (ending every session of theirs) or enables them again, and logs it as
    /// `actor`'s action; [`Error::NotFound`] when there is no such account. Disabling a disabled
    /// account keeps its first time.
    #[tracing::instrument(skip(self, actor))]
    pub async fn set_user_disabled(&self, actor: &crate::db::User, user: UserId, disabled: bool) -> Result<()> {
        let now = Timestamp::now();
        let (action, detail) = if disabled {
            ("disable", "sessions ended, tokens and sends stopped")
        } else {
            ("enable", "may log in again; queued sends resume")
        };
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let email: Option<String> = sqlx::query_scalar(
                "UPDATE users SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, $3) ELSE NULL END \
                 WHERE id = $1 RETURNING email")
                .bind(user)
                .bind(disabled)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(email) = email else {
                return Err(Error::NotFound);
            };
            if disabled {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user).execute(&mut *tx).await?;
            }
            log_in_tx(&mut tx, now, actor, action, Some((user, &email)), detail).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives `user` a temporary password (its argon2id hash) that must be changed at the next
    /// login, ends every session of theirs, and logs it as `actor`'s action.
    #[tracing::instrument(skip(self, actor, password_hash))]
    pub async fn set_temporary_password(
        &self,
        actor: &crate::db::User,
        user: UserId,
        password_hash: &str,
    ) -> Result<()> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let email: Option<String> = sqlx::query_scalar(
                "UPDATE users SET password_hash = $2, must_change_password = TRUE WHERE id = $1 RETURNING email")
                .bind(user)
                .bind(password_hash)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(email) = email else {
                return Err(Error::NotFound);
            };
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user).execute(&mut *tx).await?;
            let detail = "sessions ended; the password must be changed at the next login";
            log_in_tx(&mut tx, now, actor, "temporary_password", Some((user, &email)), detail).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes `user` and, by cascade, everything stored for them (devices and their sessions,
    /// chats, leads, campaigns, sends, tokens, webhooks), and logs it as `actor`'s action.
    /// Workers holding the devices lose their leases with the rows and close the sessions.
    #[tracing::instrument(skip(self, actor))]
    pub async fn delete_user(&self, actor: &crate::db::User, user: UserId) -> Result<()> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let devices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = $1")
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
            let email: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE id = $1 RETURNING email")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(email) = email else {
                return Err(Error::NotFound);
            };
            let detail = format!("deleted with its {devices} device(s) and everything stored for them");
            log_in_tx(&mut tx, now, actor, "delete", Some((user, &email)), &detail).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Logs an administrator's action that is not about one account.
    #[tracing::instrument(skip(self, actor))]
    pub async fn log_admin_action(&self, actor: &crate::db::User, action: &str, detail: &str) -> Result<()> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            log_in_tx(&mut tx, now, actor, action, None, detail).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The most recent administrator actions, newest first, at most `limit`.
    #[tracing::instrument(skip(self))]
    pub async fn admin_actions(&self, limit: i64) -> Result<Vec<AdminAction>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, AdminAction>(
            "SELECT id, at, actor_email, action, target_id, target_email, detail FROM admin_actions \
             ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// Workers that sent a heartbeat within `secs`, with the sessions each holds now.
    #[tracing::instrument(skip(self))]
    pub async fn fleet_workers(&self, secs: i64) -> Result<Vec<FleetWorker>> {
        let now = Timestamp::now();
        Ok(on_db!(self, pool => sqlx::query_as::<_, FleetWorker>(
            "SELECT w.id, w.capacity, w.heartbeat_at, w.started_at, \
             (SELECT COUNT(*) FROM device_leases l WHERE l.holder = w.id AND l.expires_at > $2) AS sessions \
             FROM fleet_workers w WHERE w.heartbeat_at >= $1 ORDER BY w.id")
            .bind(now.plus_secs(-secs))
            .bind(now)
            .fetch_all(pool)
            .await)?)
    }
}

/// Adds an entry to the administrator log in `tx`, the transaction of the action itself.
async fn log_in_tx<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    at: Timestamp,
    actor: &crate::db::User,
    action: &str,
    target: Option<(UserId, &str)>,
    detail: &str,
) -> sqlx::Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> UserId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO admin_actions (at, actor_id, actor_email, action, target_id, target_email, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at)
    .bind(actor.id)
    .bind(actor.email.to_string())
    .bind(action.to_owned())
    .bind(target.map(|(id, _)| id.0))
    .bind(target.map(|(_, email)| email.to_owned()))
    .bind(detail.to_owned())
    .execute(&mut **tx)
    .await
    .map(drop)
}
