//! Follow-up sequences: ordered steps sent to each enrolled lead, each a delay after enrolment or
//! after the previous step, inside a send window of the sequence's time zone.
//!
//! Built on the guarantees campaigns have: an enrolment is one row per `(sequence, lead)`, so no
//! lead is enrolled twice; only its next step is written down (`next_step`, `due_at`), so a
//! sequence's future is never materialised; each step is a paced send recorded under the key
//! `sequence:{sequence}:{step}:{lead}`, so a dispatcher that dies between recording a send and
//! noting it finds the same send on its next round ([`dispatch`]). Every query goes through the
//! owner, so another user's sequence answers exactly like a missing one.

mod dispatch;
mod model;
mod report;
pub mod window;

pub use dispatch::{SequenceDispatch, sequence_send_key};
pub use model::{
    DelayFrom, EnrolRule, Enrolment, EnrolmentFilter, EnrolmentStatus, NewSequence, NewStep, Sequence, SequenceStatus,
    SequenceStep, StepOutcome, WindowSpec,
};
pub use report::{SequenceReport, StepReport};

use crate::db::{BeginWrite, LeadStatus};
use crate::types::{CampaignId, DeviceId, SequenceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;

/// Most enrolments listed in one page.
pub const ENROLMENTS_PAGE_MAX: i64 = 500;

/// A sequence's row as stored.
#[derive(sqlx::FromRow)]
struct SequenceRow {
    id: SequenceId,
    name: String,
    time_zone: String,
    window_start: i64,
    window_end: i64,
    weekdays: i64,
    stop_on_reply: bool,
    stop_statuses: String,
    enrol_rule: bool,
    enrol_niche: Option<String>,
    enrol_status: Option<String>,
    enrol_journey: Option<String>,
    enrol_campaign_id: Option<CampaignId>,
    next_sequence_id: Option<SequenceId>,
    on_reply_sequence_id: Option<SequenceId>,
    status: SequenceStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// Its columns.
const SEQUENCE_COLUMNS: &str = "id, name, time_zone, window_start, window_end, weekdays, stop_on_reply, \
     stop_statuses, enrol_rule, enrol_niche, enrol_status, enrol_journey, enrol_campaign_id, next_sequence_id, \
     on_reply_sequence_id, status, created_at, updated_at";

/// A step's row: position, message, has image, days, hours, from.
type StepRow = (i64, String, bool, i64, i64, DelayFrom);

fn sequence_from(row: SequenceRow, device_ids: Vec<DeviceId>, steps: Vec<StepRow>) -> Sequence {
    let as_u32 = |v: i64| u32::try_from(v).unwrap_or_default();
    Sequence {
        id: row.id,
        name: row.name,
        time_zone: row.time_zone,
        window: WindowSpec::from_minutes(
            as_u32(row.window_start),
            as_u32(row.window_end),
            u8::try_from(row.weekdays).unwrap_or_default(),
        ),
        stop_on_reply: row.stop_on_reply,
        stop_statuses: row
            .stop_statuses
            .split(',')
            .filter_map(|s| s.parse::<LeadStatus>().ok())
            .collect(),
        enrol_rule: row.enrol_rule.then(|| EnrolRule {
            niche: row.enrol_niche,
            status: row.enrol_status.and_then(|s| s.parse().ok()),
            journey: row.enrol_journey,
            replied_to_campaign: row.enrol_campaign_id,
        }),
        next_sequence_id: row.next_sequence_id,
        on_reply_sequence_id: row.on_reply_sequence_id,
        status: row.status,
        device_ids,
        steps: steps
            .into_iter()
            .map(|s| SequenceStep {
                position: s.0,
                message: s.1,
                has_image: s.2,
                delay_days: s.3,
                delay_hours: s.4,
                delay_from: s.5,
            })
            .collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Writes a sequence's definition over its row `id` of `user`: its fields, devices (only the
/// user's) and steps. One function for creating and
/// replacing, in the caller's transaction.
async fn write_definition<D>(
    tx: &mut sqlx::Transaction<'static, D>,
    user: UserId,
    id: SequenceId,
    new: &NewSequence,
    now: Timestamp,
) -> Result<()>
where
    D: sqlx::Database,
    for<'e> &'e mut D::Connection: sqlx::Executor<'e, Database = D>,
    <D as sqlx::Database>::Arguments: sqlx::IntoArguments<D>,
    for<'q> SequenceId: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> UserId: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> DeviceId: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Timestamp: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<SequenceId>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<CampaignId>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> bool: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> &'q str: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> Option<&'q [u8]>: sqlx::Encode<'q, D> + sqlx::Type<D>,
{
    let rule = new.enrol_rule.clone().unwrap_or_default();
    sqlx::query(
        "UPDATE sequences SET name = $3, time_zone = $4, window_start = $5, window_end = $6, weekdays = $7, \
         stop_on_reply = $8, stop_statuses = $9, enrol_rule = $10, enrol_niche = $11, enrol_status = $12, \
         enrol_journey = $13, next_sequence_id = $14, on_reply_sequence_id = $15, status = $16, updated_at = $17, \
         enrol_campaign_id = $18 WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user)
    .bind(new.name.as_str())
    .bind(new.time_zone.as_str())
    .bind(i64::from(new.window.0))
    .bind(i64::from(new.window.1))
    .bind(i64::from(new.window.2))
    .bind(new.stop_on_reply)
    .bind(stop_statuses_text(&new.stop_statuses))
    .bind(new.enrol_rule.is_some())
    .bind(rule.niche.as_deref())
    .bind(rule.status.map(LeadStatus::as_str))
    .bind(rule.journey.as_deref())
    .bind(new.next_sequence_id)
    .bind(new.on_reply_sequence_id)
    .bind(new.status.as_str())
    .bind(now)
    .bind(rule.replied_to_campaign)
    .execute(&mut **tx)
    .await
    .map_err(|e| Error::on_unique_violation(e, name_taken(&new.name)))?;
    sqlx::query("DELETE FROM sequence_devices WHERE sequence_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let mut devices = new.devices.clone();
    devices.sort_unstable();
    devices.dedup();
    // Another user's device is never linked (the caller checked first, to say so).
    for device in devices {
        sqlx::query(
            "INSERT INTO sequence_devices (sequence_id, device_id) SELECT $1, id FROM devices WHERE id = $2 AND user_id = $3",
        )
        .bind(id)
        .bind(device)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("DELETE FROM sequence_steps WHERE sequence_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for (index, step) in new.steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO sequence_steps (sequence_id, position, message, image, delay_days, delay_hours, delay_from) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(index as i64 + 1)
        .bind(step.message.as_str())
        .bind(step.image.as_deref())
        .bind(i64::from(step.delay_days))
        .bind(i64::from(step.delay_hours))
        .bind(step.delay_from.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The conflict of a name already taken.
fn name_taken(name: &str) -> String {
    format!("name: you already have a sequence named `{name}`; choose another name")
}

fn stop_statuses_text(statuses: &[LeadStatus]) -> String {
    statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

impl Db {
    /// Saves a sequence for `user`. [`Error::NotFound`] if a device or a sequence it moves leads
    /// to is not theirs; a name they already use is a conflict.
    #[tracing::instrument(skip(self, new), fields(steps = new.steps.len()))]
    pub async fn create_sequence(&self, user: UserId, new: &NewSequence) -> Result<Sequence> {
        self.check_sequence_targets(user, None, new).await?;
        let now = Timestamp::now();
        let id: SequenceId = on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The row first, then its definition, written as an update replaces it.
            let id: SequenceId = sqlx::query_scalar(
                "INSERT INTO sequences (user_id, name, time_zone, window_start, window_end, weekdays, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id")
                .bind(user)
                .bind(&new.name)
                .bind(&new.time_zone)
                .bind(i64::from(new.window.0))
                .bind(i64::from(new.window.1))
                .bind(i64::from(new.window.2))
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| Error::on_unique_violation(e, name_taken(&new.name)))?;
            write_definition(&mut tx, user, id, new, now).await?;
            tx.commit().await?;
            Ok::<_, Error>(id)
        })?;
        self.sequence(user, id).await
    }

    /// Replaces the definition of one of the user's sequences (not archived) with `new`: its
    /// steps, window, exits, chains, rule and devices. Leads keep their place: an enrolment
    /// waiting for step 3 still waits for step 3 (completing if there is none), and its next
    /// step is planned again under the new window and delays.
    #[tracing::instrument(skip(self, new), fields(steps = new.steps.len()))]
    pub async fn update_sequence(&self, user: UserId, id: SequenceId, new: &NewSequence) -> Result<Sequence> {
        let current = self.sequence(user, id).await?;
        if current.status == SequenceStatus::Archived {
            return Err(Error::Conflict(
                "the sequence is archived and can no longer change".into(),
            ));
        }
        self.check_sequence_targets(user, Some(id), new).await?;
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            write_definition(&mut tx, user, id, new, now).await?;
            // Waiting leads are planned again under the new delays and window.
            sqlx::query(
                "UPDATE sequence_enrolments SET due_at = NULL, updated_at = $2 \
                 WHERE sequence_id = $1 AND status = 'active' AND pending_id IS NULL")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        })?;
        self.sequence(user, id).await
    }

    /// [`Error::NotFound`] unless each of `new`'s devices and the sequences it moves leads to are
    /// the user's (and not `own` itself).
    async fn check_sequence_targets(&self, user: UserId, own: Option<SequenceId>, new: &NewSequence) -> Result<()> {
        let (next, on_reply) = (new.next_sequence_id, new.on_reply_sequence_id);
        for device in &new.devices {
            let found: Option<DeviceId> = on_db!(self, pool => sqlx::query_scalar(
                "SELECT id FROM devices WHERE id = $1 AND user_id = $2")
                .bind(*device)
                .bind(user)
                .fetch_optional(pool)
                .await)?;
            if found.is_none() {
                return Err(Error::NotFound);
            }
        }
        for target in [next, on_reply].into_iter().flatten() {
            if Some(target) == own {
                return Err(Error::Invalid("a sequence cannot move its leads into itself".into()));
            }
            let found: Option<SequenceId> = on_db!(self, pool => sqlx::query_scalar(
                "SELECT id FROM sequences WHERE id = $1 AND user_id = $2")
                .bind(target)
                .bind(user)
                .fetch_optional(pool)
                .await)?;
            if found.is_none() {
                return Err(Error::NotFound);
            }
        }
        if let Some(campaign) = new.enrol_rule.as_ref().and_then(|r| r.replied_to_campaign) {
            let found: Option<CampaignId> = on_db!(self, pool => sqlx::query_scalar(
                "SELECT id FROM campaigns WHERE id = $1 AND user_id = $2")
                .bind(campaign)
                .bind(user)
                .fetch_optional(pool)
                .await)?;
            if found.is_none() {
                return Err(Error::NotFound);
            }
        }
        Ok(())
    }

    /// One of the user's sequences.
    #[tracing::instrument(skip(self))]
    pub async fn sequence(&self, user: UserId, id: SequenceId) -> Result<Sequence> {
        let sql = format!("SELECT {SEQUENCE_COLUMNS} FROM sequences WHERE id = $1 AND user_id = $2");
        let row: SequenceRow = on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id)
            .bind(user)
            .fetch_one(pool)
            .await)?;
        let devices = self.sequence_devices(id).await?;
        let steps = self.sequence_step_rows(id).await?;
        Ok(sequence_from(row, devices, steps))
    }

    /// The user's sequences, by name.
    #[tracing::instrument(skip(self))]
    pub async fn list_sequences(&self, user: UserId) -> Result<Vec<Sequence>> {
        let sql = format!("SELECT {SEQUENCE_COLUMNS} FROM sequences WHERE user_id = $1 ORDER BY name, id");
        let rows: Vec<SequenceRow> = on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user)
            .fetch_all(pool)
            .await)?;
        let mut sequences = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id;
            sequences.push(sequence_from(
                row,
                self.sequence_devices(id).await?,
                self.sequence_step_rows(id).await?,
            ));
        }
        Ok(sequences)
    }

    async fn sequence_devices(&self, id: SequenceId) -> Result<Vec<DeviceId>> {
        Ok(on_db!(self, pool => sqlx::query_scalar(
            "SELECT device_id FROM sequence_devices WHERE sequence_id = $1 ORDER BY device_id")
            .bind(id)
            .fetch_all(pool)
            .await)?)
    }

    async fn sequence_step_rows(&self, id: SequenceId) -> Result<Vec<StepRow>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT position, message, image IS NOT NULL, delay_days, delay_hours, delay_from FROM sequence_steps \
             WHERE sequence_id = $1 ORDER BY position")
            .bind(id)
            .fetch_all(pool)
            .await)?)
    }

    /// The image of step `position` of one of the user's sequences, if it has one: what an edit
    /// keeps when the step gives no new image.
    #[tracing::instrument(skip(self))]
    pub async fn sequence_step_image(&self, user: UserId, id: SequenceId, position: i64) -> Result<Option<Vec<u8>>> {
        let image: Option<Option<Vec<u8>>> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT st.image FROM sequence_steps st JOIN sequences s ON s.id = st.sequence_id \
             WHERE st.sequence_id = $1 AND s.user_id = $2 AND st.position = $3")
            .bind(id)
            .bind(user)
            .bind(position)
            .fetch_optional(pool)
            .await)?;
        Ok(image.flatten())
    }

    /// Pauses, resumes or archives one of the user's sequences. Archiving is for good: its
    /// active enrolments exit (`archived`), and an archived sequence cannot change again.
    #[tracing::instrument(skip(self))]
    pub async fn set_sequence_status(&self, user: UserId, id: SequenceId, status: SequenceStatus) -> Result<Sequence> {
        let current = self.sequence(user, id).await?;
        if current.status == SequenceStatus::Archived && status != SequenceStatus::Archived {
            return Err(Error::Conflict(
                "the sequence is archived and can no longer change".into(),
            ));
        }
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE sequences SET status = $3, updated_at = $4 WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .bind(status.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if status == SequenceStatus::Archived {
                sqlx::query(
                    "UPDATE sequence_enrolments SET status = 'exited', exit_reason = 'archived', due_at = NULL, \
                     updated_at = $2 WHERE sequence_id = $1 AND status IN ('active', 'failed')")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, Error>(())
        })?;
        self.sequence(user, id).await
    }

    /// Deletes one of the user's sequences with its enrolments; sends already recorded stay.
    #[tracing::instrument(skip(self))]
    pub async fn delete_sequence(&self, user: UserId, id: SequenceId) -> Result<()> {
        let deleted = on_db!(self, pool => sqlx::query("DELETE FROM sequences WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if deleted == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Enrols leads of the sequence's devices by hand, CSV or the API (`source`). Leads already
    /// enrolled, not on one of its devices or not the user's are skipped. Returns how many were
    /// enrolled.
    #[tracing::instrument(skip(self, leads))]
    pub async fn enrol_leads(&self, user: UserId, id: SequenceId, leads: &[i64], source: &str) -> Result<u64> {
        let sequence = self.sequence(user, id).await?;
        if sequence.status == SequenceStatus::Archived {
            return Err(Error::Conflict("the sequence is archived; it enrols nobody".into()));
        }
        let now = Timestamp::now();
        let mut enrolled = 0;
        for chunk in leads.chunks(500) {
            enrolled += on_db!(self, pool => {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO sequence_enrolments (sequence_id, device_id, lead_id, phone, source, enrolled_at, updated_at) \
                     SELECT s.id, l.device_id, l.id, l.phone, ");
                query.push_bind(source).push(", ").push_bind(now).push(", ").push_bind(now).push(
                    " FROM sequences s JOIN sequence_devices d ON d.sequence_id = s.id \
                     JOIN leads l ON l.device_id = d.device_id WHERE s.id = ");
                query.push_bind(id).push(" AND s.user_id = ").push_bind(user).push(" AND l.id IN (");
                let mut list = query.separated(", ");
                for lead in chunk {
                    list.push_bind(*lead);
                }
                query.push(") ON CONFLICT (sequence_id, lead_id) DO NOTHING");
                query.build().execute(pool).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(enrolled)
    }

    /// The leads of one of the user's sequence's devices that have one of `phones` (E.164): their
    /// ids and numbers. A number may be a lead of several of its devices.
    #[tracing::instrument(skip(self, phones), fields(phones = phones.len()))]
    pub async fn sequence_leads_with_phones(
        &self,
        user: UserId,
        id: SequenceId,
        phones: &[&str],
    ) -> Result<Vec<(i64, String)>> {
        self.sequence(user, id).await?;
        let mut found = Vec::new();
        for chunk in phones.chunks(500) {
            let rows: Vec<(i64, String)> = on_db!(self, pool => {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT l.id, l.phone FROM leads l JOIN sequence_devices d ON d.device_id = l.device_id \
                     JOIN devices v ON v.id = l.device_id AND v.user_id = ");
                query.push_bind(user).push(" WHERE d.sequence_id = ").push_bind(id).push(" AND l.phone IN (");
                let mut list = query.separated(", ");
                for phone in chunk {
                    list.push_bind(*phone);
                }
                query.push(")");
                query.build_query_as().fetch_all(pool).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Takes a lead out of one of the user's sequences by hand (`by_hand`). [`Error::NotFound`]
    /// unless it is enrolled and still active or failed.
    #[tracing::instrument(skip(self))]
    pub async fn exit_enrolment(&self, user: UserId, id: SequenceId, lead: i64) -> Result<()> {
        self.sequence(user, id).await?;
        let done = on_db!(self, pool => sqlx::query(
            "UPDATE sequence_enrolments SET status = 'exited', exit_reason = 'by_hand', due_at = NULL, updated_at = $3 \
             WHERE sequence_id = $1 AND lead_id = $2 AND status IN ('active', 'failed')")
            .bind(id)
            .bind(lead)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// The enrolments of one of the user's sequences after `after` that `filter` keeps, with
    /// their leads' names, at most `limit` (up to [`ENROLMENTS_PAGE_MAX`]).
    #[tracing::instrument(skip(self))]
    pub async fn sequence_enrolments(
        &self,
        user: UserId,
        id: SequenceId,
        filter: &EnrolmentFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Enrolment>> {
        self.sequence(user, id).await?;
        let (outcome_step, outcome) = filter.step_outcome.unzip();
        Ok(on_db!(self, pool => sqlx::query_as::<_, Enrolment>(
            "SELECT e.id, e.device_id, e.lead_id, l.name AS lead_name, e.phone, e.source, e.status, e.exit_reason, \
             e.next_step, e.due_at, e.enrolled_at FROM sequence_enrolments e \
             LEFT JOIN leads l ON l.id = e.lead_id AND l.device_id = e.device_id \
             WHERE e.sequence_id = $1 AND e.id > $2 \
             AND ($3 IS NULL OR e.status = $3) AND ($4 IS NULL OR e.next_step = $4) \
             AND ($5 IS NULL OR e.exit_reason = $5) \
             AND ($6 IS NULL OR ($7 = 'replied' AND e.exit_reason = 'replied' AND e.next_step - 1 = $6) \
              OR ($7 <> 'replied' AND EXISTS (SELECT 1 FROM sequence_sends ss JOIN outbound_messages o ON o.id = ss.outbound_id \
              WHERE ss.enrolment_id = e.id AND ss.step = $6 AND (',' || $8 || ',') LIKE ('%,' || o.status || ',%')))) \
             ORDER BY e.id LIMIT $9")
            .bind(id)
            .bind(after)
            .bind(filter.status.map(EnrolmentStatus::as_str))
            .bind(filter.waiting_for)
            .bind(filter.exit_reason.as_deref())
            .bind(outcome_step)
            .bind(outcome.map(StepOutcome::as_str))
            .bind(outcome.map_or("", StepOutcome::send_statuses))
            .bind(limit.clamp(1, ENROLMENTS_PAGE_MAX))
            .fetch_all(pool)
            .await)?)
    }

    /// Sends the failed steps of one of the user's sequences again, each under a new key.
    /// Returns how many enrolments go on.
    #[tracing::instrument(skip(self))]
    pub async fn retry_failed_enrolments(&self, user: UserId, id: SequenceId) -> Result<u64> {
        let sequence = self.sequence(user, id).await?;
        if sequence.status == SequenceStatus::Archived {
            return Err(Error::Conflict("the sequence is archived".into()));
        }
        Ok(on_db!(self, pool => sqlx::query(
            "UPDATE sequence_enrolments SET status = 'active', exit_reason = NULL, attempt = attempt + 1, \
             pending_id = NULL, due_at = NULL, updated_at = $2 WHERE sequence_id = $1 AND status = 'failed'")
            .bind(id)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?)
    }
}
