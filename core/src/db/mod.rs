//! Storage through sqlx on SQLite (embedded default) and PostgreSQL (scale-out).
//!
//! Each query is written once in SQL both dialects accept (`$n` placeholders, `RETURNING`,
//! `ON CONFLICT`, times as `BIGINT` milliseconds) and run through [`on_db!`], which expands the
//! body once per backend so that each copy is type-checked against its own driver. Where the
//! dialects differ, a query matches on [`Db`] itself.

mod activity;
mod admin;
mod analytics;
mod api_tokens;
mod broadcasts;
mod campaigns;
mod chat_offsets;
mod chat_views;
mod chats;
mod contact_names;
mod cron_runs;
mod dead_letters;
mod device_requests;
mod device_sessions;
mod devices;
mod leads;
mod leases;
mod lids;
mod link_credentials;
mod liveness;
mod login_failures;
mod mcp_calls;
mod media;
mod outbound;
mod pacing;
mod rate_windows;
mod restrictions;
mod retention;
mod send_ids;
mod sequences;
mod sessions;
mod templates;
mod users;
pub(crate) mod webhooks;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::config::{DatabaseTarget, Settings};

pub use activity::{ActivityEntry, ActivityKind, NewActivity};
pub use admin::{AccountSummary, AdminAction, FleetWorker, SENDS_DAYS};
pub use analytics::{Analytics, AnalyticsCounts, AnalyticsDay, AnalyticsPercent, DeviceCounts};
pub use api_tokens::{ApiToken, Caller, TokenGrant};
pub use broadcasts::{Broadcast, NewBroadcast, broadcast_send_key};
pub use campaigns::send_key;
pub use campaigns::{
    CalendarDay, CalendarEntry, Campaign, CampaignChanges, CampaignRecipient, CampaignReport, CampaignStatus,
    DeviceReport, Dispatched, Distribution, NewCampaign, RECIPIENTS_PAGE_MAX, StatusCounts,
};
pub use chat_offsets::{ChatFilter, ChatSummary, MessageFilter};
pub use chat_views::{ChatCursor, ChatMessage, DeviceActivity, MessageCursor};
pub use chats::{BatchOutcome, Chat, IngestItem};
pub use contact_names::Contact;
pub use dead_letters::DeadLetter;
pub use device_requests::{DeviceRequest, RequestOutcome};
pub use device_sessions::{Desired, PairingView, SessionTarget};
pub use devices::{Device, DeviceChanges, DeviceStatus};
pub use leads::{Lead, LeadChanges, LeadFilter, LeadStatus, NewLead};
pub use leases::{Fence, Fleet};
pub use link_credentials::LINK_CREDENTIALS;
pub use liveness::LivenessLock;
pub use login_failures::LoginAttempt;
pub use mcp_calls::{McpCall, NewMcpCall};
pub use media::{DueMedia, MEDIA_ATTEMPTS, MessageMedia};
pub use outbound::{NewSend, NextSend, OutboundMessage, OutboundStatus, SendWork, Settled, Waiting};
pub use pacing::{DevicePacing, Pacing, SendStats};
pub use rate_windows::RateHit;
pub use retention::{Batches, MAX_KEEP_DAYS, Pruned, RetentionDays};
pub use sequences::{
    DelayFrom, ENROLMENTS_PAGE_MAX, EnrolRule, Enrolment, EnrolmentFilter, EnrolmentStatus, NewSequence, NewStep,
    Sequence, SequenceDispatch, SequenceReport, SequenceStatus, SequenceStep, StepOutcome, StepReport, WindowSpec,
    sequence_send_key, window,
};
pub use templates::{MessageTemplate, NewTemplate, TemplateChanges};
pub use users::{NewUserRole, User};
pub use webhooks::{Attempt, AttemptResult, Delivery, DeliveryStatus, DeviceWebhook, Webhook};

/// Runs `$body` with `$pool` bound to the backend's native pool.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// A `LIKE` pattern that matches `text` anywhere, with its wildcards (`%`, `_`) and backslashes
/// taken literally (for `LIKE … ESCAPE '\'`).
pub(crate) fn like_containing(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Begins a transaction that writes. SQLite's default transaction is deferred: it takes the write
/// lock at its first write, and if another connection committed after this one first read, that
/// upgrade fails at once with "database is locked" (the busy timeout cannot help: the snapshot it
/// read is stale). `BEGIN IMMEDIATE` takes the write lock up front, waiting up to the busy timeout,
/// so concurrent writers queue instead of failing. PostgreSQL's row locks need nothing of the kind.
pub(crate) trait BeginWrite {
    /// The pool's database.
    type Database: sqlx::Database;

    /// A transaction that may write.
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Self::Database>>;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;

    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;

    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.begin().await
    }
}

/// A connection pool to whichever database the settings chose. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    /// The embedded default: one SQLite file.
    Sqlite(SqlitePool),
    /// Scale-out: a PostgreSQL server shared by every process.
    Postgres(PgPool),
}

impl Db {
    /// Connects to the configured database, creating the SQLite file and its directory if needed.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Db> {
        match settings.database()? {
            DatabaseTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!(
                            "cannot create data directory {} (set DATA_DIR to a writable place)",
                            dir.display()
                        )
                    })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: a committed write survives power loss, not only a process crash; inbound
                    // messages are acknowledged to WhatsApp only after commit, so this is the promise.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(settings.database_max_connections)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
                Ok(Db::Sqlite(pool))
            }
            DatabaseTarget::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(settings.database_max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url.expose())
                    .await
                    .context(
                        "cannot connect to PostgreSQL at DATABASE_URL (is the server running and the URL right?)",
                    )?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// Applies pending migrations of this dialect. Safe to run from several processes at once:
    /// sqlx takes an advisory lock on PostgreSQL, and SQLite serialises writers.
    ///
    /// Versions the database knows but this binary does not are allowed: the embedded queue's
    /// own migrations share sqlx's bookkeeping table, and during a rolling upgrade processes of
    /// the previous release keep starting against a schema one step ahead (migrations only add).
    #[tracing::instrument(skip(self), fields(backend = self.backend_name()))]
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = self.migrator();
        match self {
            Db::Sqlite(pool) => migrator.run(pool).await,
            Db::Postgres(pool) => migrator.run(pool).await,
        }
        .context("applying database migrations")?;
        Ok(())
    }

    /// This dialect's embedded migrations, allowing versions the database knows and this binary
    /// does not (see [`Db::migrate`]).
    pub(crate) fn migrator(&self) -> sqlx::migrate::Migrator {
        let mut migrator = match self {
            Db::Sqlite(_) => sqlx::migrate!("../migrations/sqlite"),
            Db::Postgres(_) => sqlx::migrate!("../migrations/postgres"),
        };
        migrator.set_ignore_missing(true);
        migrator
    }

    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers (readiness probes).
    pub async fn ping(&self) -> crate::Result<()> {
        on_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Closes every pooled connection (at shutdown).
    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}
