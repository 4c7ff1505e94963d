//! One round of sequence dispatch: enrol by rule, let leads leave (a reply, a status), note the
//! steps whose sends settled, plan each enrolment's next step, and record the steps that are due.
//!
//! Every part is idempotent, so a dispatcher killed half-way, or two that overlap, neither skip
//! nor repeat a step. Enrolment rows are keyed by `(sequence, lead)`. A step's send is recorded
//! under [`sequence_send_key`], which [`Db::record_send`] turns into the same row on a re-run,
//! and only then noted on the enrolment (`pending_id`), with a condition that the enrolment still
//! waits for that step. An enrolment moves to its next step only once the step's send settled as
//! sent, so a device that is offline for a day never gets two steps bunched together.
//!
//! The round takes `now` as an argument (the scheduler passes its tick), so tests and the
//! benchmark drive weeks of a sequence on a virtual clock through the code that runs in
//! production.

use crate::db::outbound::NewSend;
use crate::link::{Attachment, Jid, USER_SERVER};
use crate::text::{self, Message, Variables};
use crate::types::{DeviceId, SequenceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::super::on_db;
use super::super::webhooks::account_deliveries_in;
use super::model::DelayFrom;
use super::window::SendWindow;
use crate::db::BeginWrite;
use crate::webhooks::{self, EventKind};

/// What one round of dispatch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SequenceDispatch {
    /// Leads enrolled by their sequence's rule.
    pub enrolled: u64,
    /// Enrolments that left (a reply, a lead status).
    pub exited: u64,
    /// Steps whose sends settled as sent.
    pub stepped: u64,
    /// Enrolments that completed their sequence.
    pub completed: u64,
    /// Steps whose sends failed.
    pub failed: u64,
    /// Next steps given their due time.
    pub planned: u64,
    /// Step sends recorded for the holders.
    pub queued: u64,
}

/// Sends recorded ahead of a device's pace when pacing is off (as campaigns do).
const UNPACED_BACKLOG: i64 = 500;
/// Groups of enrolments planned per round; the next round plans the rest.
const PLAN_GROUPS: i64 = 1_000;

/// The idempotency key of a step's send: `sequence:{sequence}:{step}:{lead}`, with the attempt
/// appended once "retry failed" sends it again.
pub fn sequence_send_key(sequence: SequenceId, step: i64, lead: i64, attempt: i64) -> String {
    if attempt <= 1 {
        format!("sequence:{sequence}:{step}:{lead}")
    } else {
        format!("sequence:{sequence}:{step}:{lead}:{attempt}")
    }
}

/// An enrolment whose step send settled, with what moving it on needs.
#[derive(sqlx::FromRow)]
struct Settling {
    id: i64,
    sequence: SequenceId,
    owner: UserId,
    name: String,
    step: i64,
    lead: i64,
    device: DeviceId,
    phone: String,
    send: i64,
    status: String,
    message_id: Option<String>,
    sent_at: Option<Timestamp>,
    reason: Option<String>,
    /// When the step's send was recorded.
    recorded: Option<Timestamp>,
    /// Steps in the sequence.
    steps: i64,
    next_sequence: Option<SequenceId>,
}

impl Settling {
    /// The event bodies' view of it.
    fn progress(&self) -> webhooks::SequenceProgress {
        webhooks::SequenceProgress {
            sequence: (self.sequence.0, self.name.clone()),
            step: (self.step, self.steps),
            lead: (self.lead, self.phone.clone()),
            device: self.device.0,
            send: (self.send, self.message_id.clone()),
            sent_at: self.sent_at,
            next_sequence: self.next_sequence.map(|s| s.0),
        }
    }
}

/// Enrols, at `$1`, the leads that match the rule of sequence `$2` (if active) and are not in it
/// yet. One sequence at a time: with the sequence a parameter, the check for an enrolment
/// already there is one probe of the `(sequence_id, lead_id)` key per lead; joined across
/// sequences, PostgreSQL probed by `lead_id` alone, the whole index each time (35 s for 100,000
/// leads against 1 s).
const ENROL_BY_RULE: &str = "INSERT INTO sequence_enrolments (sequence_id, device_id, lead_id, phone, source, enrolled_at, updated_at) \
     SELECT s.id, l.device_id, l.id, l.phone, \
     CASE WHEN s.enrol_campaign_id IS NULL THEN 'rule' ELSE 'campaign_reply' END, $1, $1 FROM sequences s \
     JOIN sequence_devices d ON d.sequence_id = s.id \
     JOIN devices v ON v.id = d.device_id AND v.user_id = s.user_id \
     JOIN leads l ON l.device_id = d.device_id \
     WHERE s.id = $2 AND s.status = 'active' AND s.enrol_rule \
     AND (s.enrol_niche IS NULL OR l.niche = s.enrol_niche) \
     AND (s.enrol_status IS NULL OR l.status = s.enrol_status) \
     AND (s.enrol_journey IS NULL OR l.journey = s.enrol_journey) \
     AND (l.status <> 'lost' OR s.enrol_status = 'lost') \
     AND (',' || s.stop_statuses || ',') NOT LIKE ('%,' || l.status || ',%') \
     AND (s.enrol_campaign_id IS NULL OR EXISTS (SELECT 1 FROM campaign_recipients r \
      JOIN campaigns c ON c.id = r.campaign_id AND c.user_id = s.user_id \
      JOIN outbound_messages o ON o.id = r.outbound_id \
      WHERE r.campaign_id = s.enrol_campaign_id AND r.lead_id = l.id AND o.sent_at IS NOT NULL \
      AND EXISTS (SELECT 1 FROM messages m WHERE m.device_id = r.device_id AND m.chat_jid = o.recipient \
      AND m.from_me = FALSE AND m.history = FALSE AND m.sent_at + 1000 > o.sent_at))) \
     AND NOT EXISTS (SELECT 1 FROM sequence_enrolments e WHERE e.sequence_id = $2 AND e.lead_id = l.id)";

/// An enrolment that left: id, sequence, owner, lead, device, phone, the step and attempt it
/// waited for, and the sequence a reply moves it to.
type Leaving = (
    i64,
    SequenceId,
    UserId,
    i64,
    DeviceId,
    String,
    i64,
    i64,
    Option<SequenceId>,
);

/// What an exit returns, as [`Leaving`].
macro_rules! leaving_columns {
    () => {
        " RETURNING id, sequence_id, (SELECT s.user_id FROM sequences s WHERE s.id = sequence_enrolments.sequence_id), \
         lead_id, device_id, phone, next_step, attempt, \
         (SELECT s.on_reply_sequence_id FROM sequences s WHERE s.id = sequence_enrolments.sequence_id)"
    };
}

/// Ends the active enrolments whose lead is in a status their sequence stops on.
const EXIT_BY_STATUS: &str = concat!(
    "UPDATE sequence_enrolments SET status = 'exited', due_at = NULL, updated_at = $1, \
     exit_reason = 'status:' || (SELECT l.status FROM leads l WHERE l.id = sequence_enrolments.lead_id) \
     WHERE status = 'active' AND EXISTS (SELECT 1 FROM leads l JOIN sequences s ON s.id = sequence_enrolments.sequence_id \
     WHERE l.id = sequence_enrolments.lead_id AND l.device_id = sequence_enrolments.device_id \
     AND (',' || s.stop_statuses || ',') LIKE ('%,' || l.status || ',%'))",
    leaving_columns!()
);

/// Ends the active enrolments whose lead wrote after the first step, where that stops them.
const EXIT_BY_REPLY: &str = concat!(
    "UPDATE sequence_enrolments SET status = 'exited', exit_reason = 'replied', due_at = NULL, updated_at = $1 \
     WHERE status = 'active' AND first_sent_at IS NOT NULL \
     AND sequence_id IN (SELECT id FROM sequences WHERE stop_on_reply) \
     AND EXISTS (SELECT 1 FROM messages m WHERE m.device_id = sequence_enrolments.device_id \
     AND m.chat_jid = substr(sequence_enrolments.phone, 2) || '@s.whatsapp.net' AND NOT m.from_me \
     AND m.sent_at + 1000 > sequence_enrolments.first_sent_at)",
    leaving_columns!()
);

/// Fails a step's send (`$1` owner, `$2` key) that no holder has started, so a lead who left
/// gets nothing more.
const WITHDRAW_STEP_SEND: &str = "UPDATE outbound_messages SET status = 'failed', \
     reason = 'the lead left the sequence before this step went out', waiting_reason = NULL, updated_at = $3 \
     WHERE user_id = $1 AND idempotency_key = $2 AND status = 'queued'";

/// Enrols lead `$3` of device `$2` (number `$4`, source `$5`) into sequence `$1` (a chain),
/// unless it is archived or the lead is in it already.
const ENROL_INTO: &str = "INSERT INTO sequence_enrolments (sequence_id, device_id, lead_id, phone, source, enrolled_at, updated_at) \
     SELECT id, $2, $3, $4, $5, $6, $6 FROM sequences WHERE id = $1 AND status <> 'archived' \
     ON CONFLICT (sequence_id, lead_id) DO NOTHING";

/// Settled enrolments moved on per transaction.
const SETTLE_BATCH: usize = 500;

/// A due enrolment: id, lead, step, attempt, phone, lead name and niche (`None` once deleted).
type Due = (i64, i64, i64, i64, String, Option<String>, Option<String>);

/// A group of enrolments planned alike: sequence, step, time zone, window, delay, base times.
type PlanGroup = (
    SequenceId,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Timestamp,
    Option<Timestamp>,
);

impl Db {
    /// One round of dispatch at `now`; see the module's documentation.
    #[tracing::instrument(skip(self))]
    pub async fn dispatch_sequences(&self, now: Timestamp) -> Result<SequenceDispatch> {
        let mut done = SequenceDispatch {
            enrolled: self.enrol_by_rules(now).await?,
            exited: self.exit_leads(now).await?,
            ..SequenceDispatch::default()
        };
        self.settle_steps(now, &mut done).await?;
        done.planned = self.plan_steps(now).await?;
        let active: Vec<(SequenceId, UserId)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, user_id FROM sequences WHERE status = 'active' ORDER BY id")
            .fetch_all(pool)
            .await)?;
        for (sequence, user) in active {
            done.queued += self.queue_steps(sequence, user, now).await?;
        }
        Ok(done)
    }

    /// Enrols the leads that match an active sequence's rule and are not enrolled yet: those of
    /// its devices (still the owner's) with the rule's niche, status and journey, and, when it
    /// names a campaign, who wrote back after that campaign's send to them went out (the
    /// campaign report's reply rule); except leads marked lost (unless the rule asks for them)
    /// or in a status that would end the enrolment.
    ///
    /// The insert first goes without `ON CONFLICT` (which costs it most of its time: a
    /// speculative insertion per row); the `NOT EXISTS` keeps it from meeting a lead enrolled
    /// before. Only a lead enrolled meanwhile (by hand, or by a racing dispatcher) makes it fail on
    /// the key, and then it runs again with `ON CONFLICT DO NOTHING`.
    async fn enrol_by_rules(&self, now: Timestamp) -> Result<u64> {
        let sequences: Vec<SequenceId> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT id FROM sequences WHERE status = 'active' AND enrol_rule ORDER BY id")
            .fetch_all(pool)
            .await)?;
        let mut enrolled = 0;
        for sequence in sequences {
            let fast = on_db!(self, pool => sqlx::query(ENROL_BY_RULE)
                .bind(now)
                .bind(sequence)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()));
            enrolled += match fast {
                Ok(enrolled) => enrolled,
                Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                    let sql = format!("{ENROL_BY_RULE} ON CONFLICT (sequence_id, lead_id) DO NOTHING");
                    on_db!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(now)
                        .bind(sequence)
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected()))?
                }
                Err(err) => return Err(err.into()),
            };
        }
        Ok(enrolled)
    }

    /// Ends the active enrolments whose lead took a status that stops the sequence, or wrote
    /// back after its first step (when the sequence stops on a reply; the same rule as the
    /// analytics' replies: a message stamped in the send's second or later). A step send still
    /// queued for them is withdrawn, and a lead who replied moves to the sequence's reply chain.
    ///
    /// All in one transaction: a dispatcher killed half-way leaves every lead either still in
    /// the sequence (the next round finds them again) or out of it with nothing more to go.
    async fn exit_leads(&self, now: Timestamp) -> Result<u64> {
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut leaving: Vec<Leaving> = sqlx::query_as(EXIT_BY_STATUS).bind(now).fetch_all(&mut *tx).await?;
            let replied: Vec<Leaving> = sqlx::query_as(EXIT_BY_REPLY).bind(now).fetch_all(&mut *tx).await?;
            for (_, _, _, lead, device, phone, _, _, chain) in &replied {
                if let Some(chain) = chain {
                    sqlx::query(ENROL_INTO)
                        .bind(*chain)
                        .bind(*device)
                        .bind(*lead)
                        .bind(phone)
                        .bind("reply")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            leaving.extend(replied);
            // The step's send by its key: noted on the enrolment or not yet (a round that
            // recorded it and stopped before noting it).
            for (_, sequence, user, lead, _, _, step, attempt, _) in &leaving {
                sqlx::query(WITHDRAW_STEP_SEND)
                    .bind(*user)
                    .bind(sequence_send_key(*sequence, *step, *lead, *attempt))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, Error>(leaving.len() as u64)
        })
    }

    /// Moves on the enrolments whose step send settled: sent (or better) moves to the next step
    /// or completes the sequence (and enrols the lead in the next one); failed marks the
    /// enrolment failed with the send's reason. `sequence.step_sent` and `sequence.completed`
    /// are recorded for owners whose webhook wants them, in the transaction that moves the
    /// enrolment, so each fires once however many dispatchers run or die half-way.
    async fn settle_steps(&self, now: Timestamp, done: &mut SequenceDispatch) -> Result<()> {
        let settling: Vec<Settling> = on_db!(self, pool => sqlx::query_as(
            "SELECT e.id AS id, e.sequence_id AS sequence, s.user_id AS owner, s.name AS name, e.next_step AS step, \
             e.lead_id AS lead, e.device_id AS device, e.phone AS phone, o.id AS send, o.status AS status, \
             o.wa_message_id AS message_id, o.sent_at AS sent_at, o.reason AS reason, \
             (SELECT ss.recorded_at FROM sequence_sends ss WHERE ss.enrolment_id = e.id AND ss.step = e.next_step \
              AND ss.attempt = e.attempt) AS recorded, \
             (SELECT COUNT(*) FROM sequence_steps st WHERE st.sequence_id = e.sequence_id) AS steps, \
             s.next_sequence_id AS next_sequence \
             FROM sequence_enrolments e JOIN outbound_messages o ON o.id = e.pending_id \
             JOIN sequences s ON s.id = e.sequence_id \
             WHERE e.pending_id IS NOT NULL AND e.status = 'active' \
             AND o.status IN ('sent', 'delivered', 'read', 'failed') ORDER BY e.id")
            .fetch_all(pool)
            .await)?;
        for batch in settling.chunks(SETTLE_BATCH) {
            on_db!(self, pool => {
                let mut tx = pool.begin_write().await?;
                let mut events = Vec::new();
                for row in batch {
                    let (id, step, status) = (row.id, row.step, row.status.as_str());
                    if status == "failed" {
                        done.failed += sqlx::query(
                            "UPDATE sequence_enrolments SET status = 'failed', exit_reason = $3, pending_id = NULL, \
                             updated_at = $4 WHERE id = $1 AND next_step = $2 AND status = 'active' AND pending_id IS NOT NULL")
                            .bind(id)
                            .bind(step)
                            .bind(row.reason.as_deref().unwrap_or("the send failed"))
                            .bind(now)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        continue;
                    }
                    let last = step >= row.steps;
                    let moved = sqlx::query(
                        "UPDATE sequence_enrolments SET next_step = next_step + 1, attempt = 1, pending_id = NULL, due_at = NULL, \
                         last_step_at = $3, first_sent_at = COALESCE(first_sent_at, $4), updated_at = $5, \
                         status = CASE WHEN $6 THEN 'completed' ELSE status END \
                         WHERE id = $1 AND next_step = $2 AND status = 'active' AND pending_id IS NOT NULL")
                        .bind(id)
                        .bind(step)
                        .bind(row.recorded.unwrap_or(now))
                        .bind(row.sent_at.unwrap_or(now))
                        .bind(now)
                        .bind(last)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if moved == 0 {
                        continue;
                    }
                    done.stepped += 1;
                    let progress = row.progress();
                    events.push((row.owner, EventKind::SequenceStepSent, webhooks::sequence_step_body(&progress, now)));
                    if last {
                        done.completed += 1;
                        events.push((row.owner, EventKind::SequenceCompleted, webhooks::sequence_completed_body(&progress, now)));
                        if let Some(next) = row.next_sequence {
                            sqlx::query(ENROL_INTO)
                                .bind(next)
                                .bind(row.device)
                                .bind(row.lead)
                                .bind(&row.phone)
                                .bind("chain")
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                account_deliveries_in!(tx, &events, now);
                tx.commit().await?;
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }

    /// Gives the active enrolments without a due time one: the step's delay from the enrolment
    /// or the previous step, in the sequence's time zone, moved into its window. Enrolments with
    /// the same sequence, step and starting times are planned by one statement, so planning the
    /// 100,000 leads a rule enrolled in one round takes a handful.
    async fn plan_steps(&self, now: Timestamp) -> Result<u64> {
        let groups: Vec<PlanGroup> = on_db!(self, pool => sqlx::query_as(
            "SELECT g.sequence_id, g.next_step, s.time_zone, s.window_start, s.window_end, s.weekdays, \
             st.delay_days, st.delay_hours, st.delay_from, g.enrolled_at, g.last_step_at FROM \
             (SELECT DISTINCT sequence_id, next_step, enrolled_at, last_step_at FROM sequence_enrolments \
              WHERE status = 'active' AND due_at IS NULL AND pending_id IS NULL LIMIT $1) g \
             JOIN sequences s ON s.id = g.sequence_id \
             LEFT JOIN sequence_steps st ON st.sequence_id = g.sequence_id AND st.position = g.next_step")
            .bind(PLAN_GROUPS)
            .fetch_all(pool)
            .await)?;
        let mut planned = 0;
        for (sequence, step, time_zone, start, end, weekdays, days, hours, from, enrolled, last) in groups {
            let as_u32 = |v: i64| u32::try_from(v).unwrap_or_default();
            let due = match (
                days,
                hours,
                SendWindow::new(&time_zone, as_u32(start), as_u32(end), weekdays as u8),
            ) {
                (Some(days), Some(hours), Ok(send_window)) => {
                    let from = from.as_deref().and_then(|f| f.parse::<DelayFrom>().ok());
                    Some(send_window.step_due(
                        step,
                        from.unwrap_or(DelayFrom::Enrolment),
                        (as_u32(days), as_u32(hours)),
                        enrolled,
                        last,
                    ))
                }
                // The step is gone (the sequence was shortened): the lead has had every step.
                (None, _, _) | (_, None, _) => None,
                (_, _, Err(err)) => {
                    tracing::warn!(%sequence, %err, "a sequence's window cannot be read; its steps wait");
                    continue;
                }
            };
            planned += on_db!(self, pool => sqlx::query(
                "UPDATE sequence_enrolments SET due_at = $5, updated_at = $6, \
                 status = CASE WHEN $5 IS NULL THEN 'completed' ELSE status END \
                 WHERE sequence_id = $1 AND next_step = $2 AND enrolled_at = $3 AND COALESCE(last_step_at, -1) = $4 \
                 AND status = 'active' AND due_at IS NULL AND pending_id IS NULL")
                .bind(sequence)
                .bind(step)
                .bind(enrolled)
                .bind(last.map_or(-1, |l| l.0))
                .bind(due)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(planned)
    }

    /// Records the due steps of an active sequence, per device up to two minutes of its pace
    /// ahead of what is already waiting, each with its step's message rendered for the lead.
    /// Only inside the window: an enrolment found due after its window closed (the scheduler was
    /// down) is planned again for the next opening rather than sent at night.
    async fn queue_steps(&self, sequence: SequenceId, user: UserId, now: Timestamp) -> Result<u64> {
        let (time_zone, start, end, weekdays): (String, i64, i64, i64) = on_db!(self, pool => sqlx::query_as(
            "SELECT time_zone, window_start, window_end, weekdays FROM sequences WHERE id = $1")
            .bind(sequence)
            .fetch_one(pool)
            .await)?;
        let as_u32 = |v: i64| u32::try_from(v).unwrap_or_default();
        let Ok(send_window) = SendWindow::new(&time_zone, as_u32(start), as_u32(end), weekdays as u8) else {
            return Ok(0);
        };
        if !send_window.contains(now) {
            let reopens = send_window.next_open(now);
            on_db!(self, pool => sqlx::query(
                "UPDATE sequence_enrolments SET due_at = $3, updated_at = $2 WHERE sequence_id = $1 \
                 AND status = 'active' AND pending_id IS NULL AND due_at < $2")
                .bind(sequence)
                .bind(now)
                .bind(reopens)
                .execute(pool)
                .await
                .map(drop))?;
            return Ok(0);
        }
        let steps: Vec<(i64, String, Option<Vec<u8>>)> = on_db!(self, pool => sqlx::query_as(
            "SELECT position, message, image FROM sequence_steps WHERE sequence_id = $1 ORDER BY position")
            .bind(sequence)
            .fetch_all(pool)
            .await)?;
        let local_hour = Variables::hour_in(now, &time_zone);
        let devices: Vec<DeviceId> = self.sequence_devices(sequence).await?;
        let mut queued = 0;
        for device in devices {
            let pacing = self.device_pacing(device).await?.policy;
            let backlog = if pacing.enabled {
                pacing.per_minute * 2
            } else {
                UNPACED_BACKLOG
            };
            let waiting: i64 = on_db!(self, pool => sqlx::query_scalar(
                // From the device's waiting sends (few; each index's partial condition matches one
                // arm of the OR) to the enrolments that noted them, not through the sequence's
                // enrolments (100,000 of them).
                "SELECT COUNT(*) FROM outbound_messages o WHERE o.device_id = $2 \
                 AND (o.status = 'queued' OR o.status = 'sending') \
                 AND EXISTS (SELECT 1 FROM sequence_enrolments e WHERE e.pending_id = o.id AND e.sequence_id = $1)")
                .bind(sequence)
                .bind(device)
                .fetch_one(pool)
                .await)?;
            if waiting >= backlog {
                continue;
            }
            let due: Vec<Due> = on_db!(self, pool => sqlx::query_as(
                "SELECT e.id, e.lead_id, e.next_step, e.attempt, e.phone, l.name, l.niche FROM sequence_enrolments e \
                 LEFT JOIN leads l ON l.id = e.lead_id AND l.device_id = e.device_id \
                 WHERE e.sequence_id = $1 AND e.device_id = $2 AND e.status = 'active' AND e.pending_id IS NULL \
                 AND e.due_at IS NOT NULL AND e.due_at <= $3 ORDER BY e.due_at, e.id LIMIT $4")
                .bind(sequence)
                .bind(device)
                .bind(now)
                .bind(backlog - waiting)
                .fetch_all(pool)
                .await)?;
            for (enrolment, lead, step, attempt, phone, name, niche) in due {
                let Some((_, text, image)) = steps.iter().find(|(position, _, _)| *position == step) else {
                    continue;
                };
                // Texts are checked when saved; one that no longer parses goes out as written.
                let message = Message::parse(text).unwrap_or_else(|_| Message::literal(text));
                let variables = Variables {
                    name: name.unwrap_or_default(),
                    phone: phone.clone(),
                    niche: niche.unwrap_or_default(),
                    local_hour,
                };
                let send = NewSend {
                    user,
                    device,
                    idempotency_key: sequence_send_key(sequence, step, lead, attempt),
                    to: Jid(format!("{}@{USER_SERVER}", phone.trim_start_matches('+'))),
                    body: Some(message.render(&variables, text::seed(&[sequence.0, step, lead, attempt]))),
                    media: image.clone().map(Attachment::jpeg),
                    structured: None,
                    forwarded: false,
                };
                let outbound = match self.record_or_adopt(&send).await? {
                    Ok(id) => id,
                    Err(reason) => {
                        on_db!(self, pool => sqlx::query(
                            "UPDATE sequence_enrolments SET status = 'failed', exit_reason = $2, updated_at = $3 \
                             WHERE id = $1 AND pending_id IS NULL")
                            .bind(enrolment)
                            .bind(&reason)
                            .bind(now)
                            .execute(pool)
                            .await
                            .map(drop))?;
                        continue;
                    }
                };
                on_db!(self, pool => {
                    let mut tx = pool.begin_write().await?;
                    let noted = sqlx::query(
                        "UPDATE sequence_enrolments SET pending_id = $3, updated_at = $4 \
                         WHERE id = $1 AND next_step = $2 AND pending_id IS NULL AND status = 'active'")
                        .bind(enrolment)
                        .bind(step)
                        .bind(outbound)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if noted == 0 {
                        // The lead left (or moved on) between recording and noting: the send
                        // must not go. One another round noted already is left alone.
                        sqlx::query(
                            "UPDATE outbound_messages SET status = 'failed', \
                             reason = 'the lead left the sequence before this step went out', waiting_reason = NULL, \
                             updated_at = $4 WHERE id = $3 AND status = 'queued' AND NOT EXISTS (SELECT 1 FROM \
                             sequence_enrolments WHERE id = $1 AND next_step = $2 AND status = 'active' AND pending_id = $3)")
                            .bind(enrolment)
                            .bind(step)
                            .bind(outbound)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        sqlx::query(
                            "INSERT INTO sequence_sends (enrolment_id, step, attempt, outbound_id, recorded_at) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (enrolment_id, step, attempt) DO NOTHING")
                            .bind(enrolment)
                            .bind(step)
                            .bind(attempt)
                            .bind(outbound)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok::<_, Error>(())
                })?;
                queued += 1;
            }
        }
        Ok(queued)
    }
}
