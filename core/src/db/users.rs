//! User accounts.

use crate::types::{Email, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;
use crate::db::BeginWrite;

/// An account.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Login email, lower-cased.
    pub email: Email,
    /// argon2id PHC string; never serialised.
    #[serde(skip)]
    pub password_hash: String,
    /// Administrators may manage the instance.
    pub is_admin: bool,
    /// A temporary password set by an administrator: nothing but changing it is allowed until
    /// it is changed.
    pub must_change_password: bool,
    /// When an administrator disabled the account; a disabled account has no live session or
    /// token, so only administrators see it set.
    pub disabled_at: Option<Timestamp>,
    /// When the account was made.
    pub created_at: Timestamp,
}

/// Who becomes administrator when an account is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewUserRole {
    /// Always an administrator (the `ADMIN_EMAIL` account).
    Admin,
    /// Administrator only if it is the first account of the instance.
    FirstBecomesAdmin,
}

/// The columns of [`User`], as a literal so queries stay `&'static str`.
macro_rules! user_columns {
    () => {
        "id, email, password_hash, is_admin, must_change_password, disabled_at, created_at"
    };
}

impl Db {
    /// Creates an account; [`Error::Conflict`] if the email is taken.
    #[tracing::instrument(skip(self, password_hash))]
    pub async fn create_user(&self, email: &Email, password_hash: &str, role: NewUserRole) -> Result<User> {
        let sql = concat!(
            "INSERT INTO users (email, password_hash, is_admin, created_at) \
             SELECT $1, $2, ($3 OR NOT EXISTS (SELECT 1 FROM users)), $4 RETURNING ",
            user_columns!()
        );
        let now = Timestamp::now();
        on_db!(self, pool => sqlx::query_as::<_, User>(sql)
            .bind(email)
            .bind(password_hash)
            .bind(role == NewUserRole::Admin)
            .bind(now)
            .fetch_one(pool)
            .await)
        .map_err(|e| Error::on_unique_violation(e, "an account with this email already exists"))
    }

    /// The account with this email, if any.
    #[tracing::instrument(skip(self))]
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
        Ok(on_db!(self, pool => sqlx::query_as::<_, User>(sql).bind(email).fetch_optional(pool).await)?)
    }

    /// The account with this id, if any.
    #[tracing::instrument(skip(self))]
    pub async fn user_by_id(&self, user: UserId) -> Result<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        Ok(on_db!(self, pool => sqlx::query_as::<_, User>(sql).bind(user).fetch_optional(pool).await)?)
    }

    /// Replaces `user`'s password hash and ends every session of theirs except `keep` (the one
    /// that changed it), in one transaction; returns how many sessions were ended. A stolen
    /// session cookie stops working once the owner changes the password.
    #[tracing::instrument(skip(self, password_hash, keep))]
    pub async fn set_password(&self, user: UserId, password_hash: &str, keep: Option<&str>) -> Result<u64> {
        let keep = keep.unwrap_or("");
        on_db!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE users SET password_hash = $1, must_change_password = FALSE WHERE id = $2")
                .bind(password_hash)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
                .bind(user)
                .bind(keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ended)
        }.await)
        .map_err(Error::from)
    }

    /// Marks an existing account as administrator.
    #[tracing::instrument(skip(self))]
    pub async fn make_admin(&self, user: UserId) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE users SET is_admin = TRUE WHERE id = $1").bind(user).execute(pool).await.map(drop))?;
        Ok(())
    }
}
