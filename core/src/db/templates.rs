//! Message templates: a user's saved texts (with an optional image) to start campaigns from.
//!
//! Every query goes through the owner, so another user's template is indistinguishable from one
//! that does not exist. The text is checked by the caller ([`crate::text::Message::parse`]).

use crate::types::{TemplateId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;

/// The columns of [`MessageTemplate`], as a literal so queries stay `&'static str`.
macro_rules! template_columns {
    () => {
        "id, name, message, image IS NOT NULL AS has_image, created_at, updated_at"
    };
}

/// A saved message as its owner sees it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct MessageTemplate {
    /// Row id.
    pub id: TemplateId,
    /// A name for people, unique among the owner's templates.
    pub name: String,
    /// The text, or the image's caption; choices and variables are filled per recipient.
    pub message: String,
    /// Whether an image goes with it.
    pub has_image: bool,
    /// When.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A template to save, already checked.
#[derive(Clone, Debug)]
pub struct NewTemplate {
    /// A name for people.
    pub name: String,
    /// The text or caption.
    pub message: String,
    /// A compressed JPEG.
    pub image: Option<Vec<u8>>,
}

/// Changes to a template; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct TemplateChanges {
    /// New name.
    pub name: Option<String>,
    /// New text.
    pub message: Option<String>,
    /// `Some(None)` removes the image.
    pub image: Option<Option<Vec<u8>>>,
}

/// The conflict of a name already taken.
fn name_taken(name: &str) -> String {
    format!("name: you already have a template named `{name}`; choose another name")
}

impl Db {
    /// Saves a template for `user`; a name they already use is a conflict.
    #[tracing::instrument(skip(self, new))]
    pub async fn create_template(&self, user: UserId, new: &NewTemplate) -> Result<MessageTemplate> {
        let now = Timestamp::now();
        let id: TemplateId = on_db!(self, pool => sqlx::query_scalar(
            "INSERT INTO message_templates (user_id, name, message, image, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id")
            .bind(user)
            .bind(&new.name)
            .bind(&new.message)
            .bind(new.image.as_deref())
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(|e| Error::on_unique_violation(e, name_taken(&new.name))))?;
        self.template(user, id).await
    }

    /// One of the user's templates.
    #[tracing::instrument(skip(self))]
    pub async fn template(&self, user: UserId, id: TemplateId) -> Result<MessageTemplate> {
        let sql = concat!(
            "SELECT ",
            template_columns!(),
            " FROM message_templates WHERE id = $1 AND user_id = $2"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, MessageTemplate>(sql).bind(id).bind(user).fetch_one(pool).await)?)
    }

    /// The text and image of one of the user's templates, to copy into a campaign.
    #[tracing::instrument(skip(self))]
    pub async fn template_content(&self, user: UserId, id: TemplateId) -> Result<(String, Option<Vec<u8>>)> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT message, image FROM message_templates WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_one(pool)
            .await)?)
    }

    /// The user's templates, by name.
    #[tracing::instrument(skip(self))]
    pub async fn list_templates(&self, user: UserId) -> Result<Vec<MessageTemplate>> {
        let sql = concat!(
            "SELECT ",
            template_columns!(),
            " FROM message_templates WHERE user_id = $1 ORDER BY name, id"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, MessageTemplate>(sql).bind(user).fetch_all(pool).await)?)
    }

    /// Applies `changes` to one of the user's templates.
    #[tracing::instrument(skip(self, changes))]
    pub async fn update_template(
        &self,
        user: UserId,
        id: TemplateId,
        changes: &TemplateChanges,
    ) -> Result<MessageTemplate> {
        let now = Timestamp::now();
        let done = on_db!(self, pool => sqlx::query(
            "UPDATE message_templates SET name = COALESCE($3, name), message = COALESCE($4, message), \
             image = CASE WHEN $5 THEN $6 ELSE image END, updated_at = $7 WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .bind(changes.name.as_deref())
            .bind(changes.message.as_deref())
            .bind(changes.image.is_some())
            .bind(changes.image.clone().flatten())
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| Error::on_unique_violation(e, name_taken(changes.name.as_deref().unwrap_or_default()))))?;
        if done == 0 {
            return Err(Error::NotFound);
        }
        self.template(user, id).await
    }

    /// Deletes one of the user's templates (campaigns made from it keep their copy of the text).
    #[tracing::instrument(skip(self))]
    pub async fn delete_template(&self, user: UserId, id: TemplateId) -> Result<()> {
        let done = on_db!(self, pool => sqlx::query("DELETE FROM message_templates WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }
}
