//! Questions for the worker holding a device's session, answered through the database so that the
//! API never needs to know which worker that is.

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;

/// A pending question, as the holder reads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeviceRequest {
    /// Row id.
    pub id: i64,
    /// The device asked.
    pub device_id: DeviceId,
    /// What is asked (`check_numbers`).
    pub kind: String,
    /// The question, JSON.
    pub payload: String,
}

/// Where a question stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Not answered yet.
    Pending,
    /// Answered; the JSON answer.
    Done(String),
    /// Could not be answered; why.
    Failed(String),
}

impl Db {
    /// Asks `kind` of `user`'s `device`; [`Error::NotFound`] if the device is not theirs.
    #[tracing::instrument(skip(self, payload))]
    pub async fn create_device_request(
        &self,
        user: UserId,
        device: DeviceId,
        kind: &str,
        payload: &str,
    ) -> Result<i64> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "INSERT INTO device_requests (device_id, kind, payload, created_at) \
             SELECT id, $3, $4, $5 FROM devices WHERE id = $1 AND user_id = $2 RETURNING id")
            .bind(device)
            .bind(user)
            .bind(kind)
            .bind(payload)
            .bind(Timestamp::now())
            .fetch_optional(pool)
            .await)?;
        row.map(|(id,)| id).ok_or(Error::NotFound)
    }

    /// Where request `id` stands.
    #[tracing::instrument(skip(self))]
    pub async fn device_request_outcome(&self, id: i64) -> Result<RequestOutcome> {
        let (state, result): (String, Option<String>) = on_db!(self, pool => sqlx::query_as(
            "SELECT state, result FROM device_requests WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await)?;
        Ok(match state.as_str() {
            "done" => RequestOutcome::Done(result.unwrap_or_default()),
            "failed" => RequestOutcome::Failed(result.unwrap_or_default()),
            _ => RequestOutcome::Pending,
        })
    }

    /// Every unanswered question, oldest first.
    #[tracing::instrument(skip(self))]
    pub async fn pending_device_requests(&self) -> Result<Vec<DeviceRequest>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, DeviceRequest>(
            "SELECT id, device_id, kind, payload FROM device_requests WHERE state = 'pending' ORDER BY id")
            .fetch_all(pool)
            .await)?)
    }

    /// Answers request `id` (once: a second answer is ignored).
    #[tracing::instrument(skip(self, result))]
    pub async fn finish_device_request(&self, id: i64, ok: bool, result: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE device_requests SET state = $2, result = $3, done_at = $4 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .bind(if ok { "done" } else { "failed" })
            .bind(result)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
