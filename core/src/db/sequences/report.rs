//! What became of a sequence: its leads by where they stand, and each step's sends.

use std::collections::BTreeMap;

use crate::types::{SequenceId, UserId};
use crate::{Db, Result};

use super::super::on_db;

/// One step's sends.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StepReport {
    /// 1 for the first step.
    pub position: i64,
    /// Recorded and not yet handed to WhatsApp.
    pub queued: i64,
    /// WhatsApp accepted them (delivered and read ones included).
    pub sent: i64,
    /// Reached the phone (read ones included).
    pub delivered: i64,
    /// Opened.
    pub read: i64,
    /// Leads who replied after this step (and so left, when the sequence stops on a reply).
    pub replied: i64,
    /// Failed sends of this step (each retry is counted as its own send).
    pub failed: i64,
}

/// A sequence's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SequenceReport {
    /// Leads ever enrolled.
    pub enrolled: i64,
    /// Still going: waiting for a step or with a step on its way.
    pub active: i64,
    /// Active and waiting for their next step's time.
    pub waiting: i64,
    /// Had every step.
    pub completed: i64,
    /// A step's send failed (retry failed sends it again).
    pub failed: i64,
    /// Left before the end, by reason (`replied`, `status:converted`, `by_hand`, `archived`).
    pub exited: BTreeMap<String, i64>,
    /// Each step's sends, in order.
    pub steps: Vec<StepReport>,
}

impl Db {
    /// The report of one of the user's sequences.
    #[tracing::instrument(skip(self))]
    pub async fn sequence_report(&self, user: UserId, id: SequenceId) -> Result<SequenceReport> {
        let sequence = self.sequence(user, id).await?;
        let by_status: Vec<(String, Option<String>, bool, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT status, exit_reason, pending_id IS NULL, COUNT(*) FROM sequence_enrolments \
             WHERE sequence_id = $1 GROUP BY status, exit_reason, pending_id IS NULL")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        let mut report = SequenceReport::default();
        for (status, reason, idle, count) in by_status {
            report.enrolled += count;
            match status.as_str() {
                "active" => {
                    report.active += count;
                    if idle {
                        report.waiting += count;
                    }
                }
                "completed" => report.completed += count,
                "failed" => report.failed += count,
                _ => {
                    *report
                        .exited
                        .entry(reason.unwrap_or_else(|| "unknown".into()))
                        .or_default() += count
                }
            }
        }
        let sends: Vec<(i64, i64, i64, i64, i64, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT ss.step, \
             SUM(CASE WHEN o.status IN ('queued', 'sending') THEN 1 ELSE 0 END), \
             SUM(CASE WHEN o.status IN ('sent', 'delivered', 'read') THEN 1 ELSE 0 END), \
             SUM(CASE WHEN o.status IN ('delivered', 'read') THEN 1 ELSE 0 END), \
             SUM(CASE WHEN o.status = 'read' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END) \
             FROM sequence_sends ss JOIN sequence_enrolments e ON e.id = ss.enrolment_id \
             JOIN outbound_messages o ON o.id = ss.outbound_id \
             WHERE e.sequence_id = $1 GROUP BY ss.step")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        let replied: Vec<(i64, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT next_step - 1, COUNT(*) FROM sequence_enrolments \
             WHERE sequence_id = $1 AND exit_reason = 'replied' GROUP BY next_step - 1")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        report.steps = sequence
            .steps
            .iter()
            .map(|step| {
                let mut line = StepReport {
                    position: step.position,
                    ..StepReport::default()
                };
                if let Some(s) = sends.iter().find(|s| s.0 == step.position) {
                    (line.queued, line.sent, line.delivered, line.read, line.failed) = (s.1, s.2, s.3, s.4, s.5);
                }
                line.replied = replied.iter().find(|r| r.0 == step.position).map_or(0, |r| r.1);
                line
            })
            .collect();
        Ok(report)
    }
}
