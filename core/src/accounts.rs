//! Account rules that are not tied to HTTP.

use anyhow::Context;

use crate::db::NewUserRole;
use crate::types::Email;
use crate::{Db, Settings, auth};

/// Creates the administrator named by `ADMIN_EMAIL`/`ADMIN_PASSWORD` when that account does not
/// exist, or makes the existing account an administrator. The password of an existing account is
/// never changed from the environment.
pub async fn ensure_admin(db: &Db, settings: &Settings) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&settings.admin_email, &settings.admin_password) else {
        return Ok(());
    };
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("ADMIN_EMAIL: {e}"))?;
    auth::validate_password(password.expose()).map_err(|e| anyhow::anyhow!("ADMIN_PASSWORD: {e}"))?;
    if let Some(existing) = db.user_by_email(&email).await.context("looking up ADMIN_EMAIL")? {
        if !existing.is_admin {
            db.make_admin(existing.id).await.context("promoting ADMIN_EMAIL")?;
            tracing::info!(user = %existing.id, "ADMIN_EMAIL account made administrator");
        }
        return Ok(());
    }
    let hash = auth::hash_password(password.expose())?;
    let user = db
        .create_user(&email, &hash, NewUserRole::Admin)
        .await
        .context("creating ADMIN_EMAIL account")?;
    tracing::info!(user = %user.id, "administrator created from ADMIN_EMAIL");
    Ok(())
}
