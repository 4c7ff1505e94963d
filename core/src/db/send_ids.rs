//! The WhatsApp message id a send goes out under, chosen when a client needs it before the send
//! leaves (the compatible API answers it at once, to match the `message.ack` webhooks that come
//! later). The holder keeps an id chosen here: it begins a send under the id already recorded.

use crate::link::new_message_id;
use crate::{Db, Error, Result};

use super::on_db;

impl Db {
    /// The WhatsApp message id send `id` goes out under: the one already chosen (by an earlier
    /// call, or by the holder that began it), or a new one recorded now. [`Error::NotFound`] if
    /// there is no such send.
    #[tracing::instrument(skip(self))]
    pub async fn choose_wa_message_id(&self, id: i64) -> Result<String> {
        // One statement, so a holder beginning the send at the same moment and this call agree
        // on whichever id was recorded first.
        let chosen: Option<Option<String>> = on_db!(self, pool => sqlx::query_scalar(
            "UPDATE outbound_messages SET wa_message_id = COALESCE(wa_message_id, $2) WHERE id = $1 \
             RETURNING wa_message_id")
            .bind(id)
            .bind(new_message_id())
            .fetch_optional(pool)
            .await)?;
        chosen.flatten().ok_or(Error::NotFound)
    }
}
