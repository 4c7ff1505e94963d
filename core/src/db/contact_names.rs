//! Names the account's phone has saved for its contacts, as its session reports them. A chat
//! shows the saved name when there is one, and the contact's own push name otherwise.

use crate::link::Jid;
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

impl Db {
    /// Stores the name `device`'s phone has saved for `jid`; an empty name forgets it (the
    /// contact left the address book).
    #[tracing::instrument(skip(self))]
    pub async fn set_contact_name(&self, device: DeviceId, jid: &Jid, name: &str) -> Result<()> {
        let (jid, name) = (super::chats::storable(&jid.0), super::chats::storable(name.trim()));
        let name: &str = &name;
        if name.is_empty() {
            on_db!(self, pool => sqlx::query("DELETE FROM contact_names WHERE device_id = $1 AND jid = $2")
                .bind(device)
                .bind(&*jid)
                .execute(pool)
                .await
                .map(drop))?;
            return Ok(());
        }
        on_db!(self, pool => sqlx::query(
            "INSERT INTO contact_names (device_id, jid, name, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (device_id, jid) DO UPDATE SET name = $3, updated_at = $4")
            .bind(device)
            .bind(&*jid)
            .bind(name)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}

/// Someone `Db::contacts` lists.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Contact {
    /// Their JID (`…@s.whatsapp.net`, or `…@lid` while their number is unknown).
    pub jid: String,
    /// The name the phone saved for them, else their own push name; empty when neither is known.
    pub name: String,
}

impl Db {
    /// The people `user`'s `device` knows, by name then JID: its phone's address book (saved
    /// names) and everyone it has a personal chat with (their push name when not saved).
    #[tracing::instrument(skip(self))]
    pub async fn contacts(&self, user: UserId, device: DeviceId) -> Result<Vec<Contact>> {
        const SQL: &str = "SELECT n.jid AS jid, n.name AS name FROM contact_names n JOIN devices d ON d.id = n.device_id \
             WHERE n.device_id = $1 AND d.user_id = $2 \
             UNION ALL \
             SELECT c.jid, COALESCE(c.name, '') AS name FROM chats c JOIN devices d ON d.id = c.device_id \
             WHERE c.device_id = $1 AND d.user_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM contact_names n WHERE n.device_id = c.device_id AND n.jid = c.jid) \
             ORDER BY name, jid";
        Ok(on_db!(self, pool => sqlx::query_as::<_, Contact>(SQL)
            .bind(device)
            .bind(user)
            .fetch_all(pool)
            .await)?)
    }
}
