//! Leads: the people a device's owner keeps in touch with, one per number per device.
//!
//! Every query reaches a lead through its device's owner, so another user's lead or device is
//! indistinguishable from one that does not exist. The `(device_id, phone)` key, not a lookup
//! before inserting, keeps numbers unique per device.

mod model;

pub use model::{Lead, LeadChanges, LeadFilter, LeadStatus, NewLead};

use crate::types::{DeviceId, LeadId, PhoneNumber, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;
use crate::db::BeginWrite;

/// The columns of [`Lead`], as a literal so queries stay `&'static str`.
macro_rules! lead_columns {
    () => {
        "id, device_id, name, phone, niche, journey, status, notes, created_at, updated_at, COALESCE( \
            (SELECT n.name FROM contact_names n WHERE n.device_id = leads.device_id \
                AND n.jid = SUBSTR(leads.phone, 2) || '@s.whatsapp.net'), \
            (SELECT c.name FROM chats c WHERE c.device_id = leads.device_id \
                AND c.jid = SUBSTR(leads.phone, 2) || '@s.whatsapp.net')) AS whatsapp_name"
    };
}

/// The conditions of a [`LeadFilter`] on a device: `$1` device, `$2` niche, `$3` status,
/// `$4` journey, `$5` name/notes pattern, `$6` phone pattern. `LOWER` on both sides keeps each
/// backend consistent with itself (SQLite folds ASCII letters only).
macro_rules! lead_filter {
    () => {
        "device_id = $1 AND ($2 IS NULL OR niche = $2) AND ($3 IS NULL OR status = $3) \
         AND ($4 IS NULL OR journey = $4) \
         AND ($5 IS NULL OR LOWER(name) LIKE LOWER($5) ESCAPE '\\' \
              OR LOWER(COALESCE(notes, '')) LIKE LOWER($5) ESCAPE '\\' OR phone LIKE $6 ESCAPE '\\')"
    };
}

/// Binds a [`LeadFilter`]'s parameters `$1`..`$6` (see `lead_filter!`).
macro_rules! bind_filter {
    ($query:expr, $device:expr, $filter:expr) => {
        $query
            .bind($device)
            .bind($filter.niche.as_deref())
            .bind($filter.status.map(LeadStatus::as_str))
            .bind($filter.journey.as_deref())
            .bind($filter.text_pattern())
            .bind($filter.phone_pattern())
    };
}

/// Rows per `INSERT` of an import: 9 parameters each stays far below both backends' limits.
const IMPORT_CHUNK: usize = 500;

/// The scope every lead query goes through: leads of the caller's own devices.
macro_rules! owned_leads {
    () => {
        "device_id IN (SELECT id FROM devices WHERE user_id = $2)"
    };
}

fn phone_taken(err: sqlx::Error, phone: &PhoneNumber) -> Error {
    insert_failed(err, format!("this device already has a lead with the number {phone}"))
}

/// A clash with the `(device_id, phone)` key is a conflict; a device deleted while its leads were
/// being written (the foreign key) is gone like any other missing device.
fn insert_failed(err: sqlx::Error, conflict: impl Into<String>) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Error::NotFound,
        _ => Error::on_unique_violation(err, conflict),
    }
}

impl Db {
    /// Adds a lead to one of the user's devices; [`Error::NotFound`] if the device is not theirs,
    /// [`Error::Conflict`] if the device already has a lead with this number.
    #[tracing::instrument(skip(self, lead))]
    pub async fn create_lead(&self, user: UserId, device: DeviceId, lead: &NewLead) -> Result<Lead> {
        // Inserting from the owner's device row scopes the write in the same statement.
        let sql = concat!(
            "INSERT INTO leads (device_id, name, phone, niche, journey, status, notes, created_at, updated_at) \
             SELECT id, $3, $4, $5, $6, $7, $8, $9, $9 FROM devices WHERE id = $1 AND user_id = $2 RETURNING ",
            lead_columns!()
        );
        on_db!(self, pool => sqlx::query_as::<_, Lead>(sql)
            .bind(device)
            .bind(user)
            .bind(&lead.name)
            .bind(&lead.phone)
            .bind(lead.niche.as_deref())
            .bind(lead.journey.as_deref())
            .bind(lead.status.as_str())
            .bind(lead.notes.as_deref())
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)
        .map_err(|e| phone_taken(e, &lead.phone))
    }

    /// One of the user's leads.
    #[tracing::instrument(skip(self))]
    pub async fn lead(&self, user: UserId, id: LeadId) -> Result<Lead> {
        let sql = concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads WHERE id = $1 AND ",
            owned_leads!()
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, Lead>(sql).bind(id).bind(user).fetch_one(pool).await)?)
    }

    /// Applies `changes` to one of the user's leads.
    #[tracing::instrument(skip(self))]
    pub async fn update_lead(&self, user: UserId, id: LeadId, changes: &LeadChanges) -> Result<Lead> {
        let sql = concat!(
            "UPDATE leads SET name = COALESCE($3, name), phone = COALESCE($4, phone), \
               niche = CASE WHEN $5 THEN $6 ELSE niche END, journey = CASE WHEN $7 THEN $8 ELSE journey END, \
               status = COALESCE($9, status), notes = CASE WHEN $10 THEN $11 ELSE notes END, updated_at = $12 \
             WHERE id = $1 AND ",
            owned_leads!(),
            " RETURNING ",
            lead_columns!()
        );
        on_db!(self, pool => sqlx::query_as::<_, Lead>(sql)
            .bind(id)
            .bind(user)
            .bind(changes.name.as_deref())
            .bind(changes.phone.as_ref())
            .bind(changes.niche.is_some())
            .bind(changes.niche.clone().flatten())
            .bind(changes.journey.is_some())
            .bind(changes.journey.clone().flatten())
            .bind(changes.status.map(LeadStatus::as_str))
            .bind(changes.notes.is_some())
            .bind(changes.notes.clone().flatten())
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)
        .map_err(|e| match &changes.phone {
            Some(phone) => phone_taken(e, phone),
            None => e.into(),
        })
    }

    /// Deletes one of the user's leads.
    #[tracing::instrument(skip(self))]
    pub async fn delete_lead(&self, user: UserId, id: LeadId) -> Result<()> {
        let sql = concat!("DELETE FROM leads WHERE id = $1 AND ", owned_leads!());
        let done = on_db!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// A page of a device's leads matching `filter`, newest first: up to `limit` leads with ids
    /// below `before` (the cursor: the last id of the previous page). [`Error::NotFound`] if the
    /// device is not the user's.
    #[tracing::instrument(skip(self))]
    pub async fn list_leads(
        &self,
        user: UserId,
        device: DeviceId,
        filter: &LeadFilter,
        before: Option<LeadId>,
        limit: i64,
    ) -> Result<Vec<Lead>> {
        self.device(user, device).await?;
        let sql = concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads WHERE ",
            lead_filter!(),
            " AND ($7 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8"
        );
        Ok(
            on_db!(self, pool => bind_filter!(sqlx::query_as::<_, Lead>(sql), device, filter)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// Every lead of a device matching `filter`, oldest first (the order they were added in).
    #[tracing::instrument(skip(self))]
    pub async fn export_leads(&self, user: UserId, device: DeviceId, filter: &LeadFilter) -> Result<Vec<Lead>> {
        self.device(user, device).await?;
        let sql = concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads WHERE ",
            lead_filter!(),
            " ORDER BY id"
        );
        Ok(
            on_db!(self, pool => bind_filter!(sqlx::query_as::<_, Lead>(sql), device, filter)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// The numbers a device already has leads for (to report duplicates before an import).
    #[tracing::instrument(skip(self))]
    pub async fn lead_phones(&self, user: UserId, device: DeviceId) -> Result<Vec<PhoneNumber>> {
        self.device(user, device).await?;
        Ok(
            on_db!(self, pool => sqlx::query_scalar::<_, PhoneNumber>("SELECT phone FROM leads WHERE device_id = $1")
            .bind(device)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// Adds all of `leads` to one of the user's devices in one transaction: either every lead is
    /// stored or none is. A number the device already has fails the whole import with
    /// [`Error::Conflict`] (the caller checks first; the key catches a concurrent insert).
    #[tracing::instrument(skip(self, leads), fields(count = leads.len()))]
    pub async fn import_leads(&self, user: UserId, device: DeviceId, leads: &[NewLead]) -> Result<u64> {
        let now = Timestamp::now();
        let conflict = "another lead with one of these numbers was added meanwhile; nothing was imported";
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let owned: Option<DeviceId> = sqlx::query_scalar("SELECT id FROM devices WHERE id = $1 AND user_id = $2")
                .bind(device)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
            if owned.is_none() {
                return Err(Error::NotFound);
            }
            let mut stored = 0;
            for chunk in leads.chunks(IMPORT_CHUNK) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO leads (device_id, name, phone, niche, journey, status, notes, created_at, updated_at) ",
                );
                insert.push_values(chunk, |mut row, lead| {
                    row.push_bind(device)
                        .push_bind(lead.name.clone())
                        .push_bind(lead.phone.clone())
                        .push_bind(lead.niche.clone())
                        .push_bind(lead.journey.clone())
                        .push_bind(lead.status.as_str())
                        .push_bind(lead.notes.clone())
                        .push_bind(now)
                        .push_bind(now);
                });
                stored += insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| insert_failed(e, conflict))?
                    .rows_affected();
            }
            // Dropping `tx` on any error above rolls everything back.
            tx.commit().await?;
            Ok(stored)
        })
    }
}
