//! Names the account's phone has saved for its contacts, as its session reports them. A chat
//! shows the saved name when there is one, and the contact's own push name otherwise.

use crate::link::Jid;
use crate::types::{DeviceId, Timestamp};
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
