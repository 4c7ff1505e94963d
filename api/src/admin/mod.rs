//! What administrators of the installation see and do: accounts (search, disable, enable, a
//! temporary password, delete), the fleet (workers, unheld devices, the send backlog), jobs the
//! queues gave up on (and replaying them), and the log of every administrator action.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::auth;
use wafleet_core::cache::Topic;
use wafleet_core::db::{AccountSummary, AdminAction, DeadLetter, FleetWorker, User};
use wafleet_core::queue::{SendJob, WEBHOOKS_QUEUE, WebhookJob, sends_queue};
use wafleet_core::types::UserId;

use crate::AppState;
use crate::envelope::{Envelope, Reply, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::session::CurrentUser;

mod page;

pub(crate) use page::router as page_router;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dead_letters))
        .routes(routes!(replay_dead_letter))
        .routes(routes!(accounts))
        .routes(routes!(disable_account))
        .routes(routes!(enable_account))
        .routes(routes!(temporary_password))
        .routes(routes!(delete_account))
        .routes(routes!(fleet))
        .routes(routes!(actions))
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct DeadLetterQuery {
    /// Only queues whose name starts with this (e.g. `sends`).
    queue: Option<String>,
    /// How many, newest first (1 to 500; default 100).
    limit: Option<i64>,
}

/// Jobs that failed for good (retries spent or a permanent error), newest first. Administrators only.
#[utoipa::path(get, path = "/api/admin/dead-letters", tag = "admin", params(DeadLetterQuery),
    responses((status = 200, body = Envelope<Vec<DeadLetter>>), (status = 403, description = "Not an administrator"),
              (status = 422, description = "Bad limit")))]
async fn dead_letters(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<DeadLetterQuery>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "see the queues' dead letters")?;
    let limit = crate::extract::limit(query.limit, 100, 500)?;
    let letters = state.db.dead_letters(query.queue.as_deref(), limit).await?;
    Ok(ok(format!("{} dead letters", letters.len()), letters))
}

/// Refuses (403) anyone but an administrator, saying what they tried.
fn admin_only(user: &User, what: &str) -> ApiResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("only administrators may {what}")))
    }
}

/// Queue a dead letter's job again, from its first attempt. A webhook delivery goes back to the
/// webhooks queue; a send's job (a wake-up of the device's holder) goes to the worker holding the
/// device now. Administrators only; logged.
#[utoipa::path(post, path = "/api/admin/dead-letters/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses((status = 200, body = Envelope<DeadLetter>), (status = 403, description = "Not an administrator"),
              (status = 404, description = "No such dead letter"),
              (status = 409, description = "Already replayed, or no worker holds the send's device now")))]
async fn replay_dead_letter(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "replay dead letters")?;
    let letter = state.db.dead_letter(id).await.or_not_found("dead letter")?;
    if letter.replayed_at.is_some() {
        return Err(ApiError::Conflict(format!("dead letter {id} was already replayed")));
    }
    let Some(queues) = &state.queues else {
        return Err(ApiError::Conflict(
            "this process has no job queues: replay from an API process that has them".into(),
        ));
    };
    if letter.queue == WEBHOOKS_QUEUE {
        queues.replay::<WebhookJob>(WEBHOOKS_QUEUE, id).await?;
    } else if letter.queue.starts_with("sends.") {
        let job: SendJob = serde_json::from_str(&letter.job)
            .map_err(|e| ApiError::Conflict(format!("dead letter {id} does not hold a send job: {e}")))?;
        let Some(holder) = state.db.device_holder(job.device).await? else {
            return Err(ApiError::Conflict(format!(
                "no worker holds device {} now; its queued sends go out once one does",
                job.device
            )));
        };
        queues.replay::<SendJob>(&sends_queue(&holder), id).await?;
    } else {
        return Err(ApiError::Conflict(format!(
            "dead letters of queue `{}` cannot be replayed",
            letter.queue
        )));
    }
    let detail = format!("dead letter {id} of queue {}", letter.queue);
    state.db.log_admin_action(&user, "replay_dead_letter", &detail).await?;
    tracing::info!(admin = %user.id, letter = id, queue = letter.queue, "dead letter replayed");
    let letter = state.db.dead_letter(id).await.or_not_found("dead letter")?;
    Ok(ok("queued again", letter))
}

/// Query of the account list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct AccountQuery {
    /// Only accounts whose email contains this (any case).
    search: Option<String>,
    /// How many, oldest first (1 to 500; default 100).
    limit: Option<i64>,
}

/// Every account (or those whose email contains `search`), with its devices, sends of the last 30
/// days and last activity. Administrators only.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(AccountQuery),
    responses((status = 200, body = Envelope<Vec<AccountSummary>>), (status = 403, description = "Not an administrator"),
              (status = 422, description = "Bad limit")))]
async fn accounts(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<AccountQuery>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "list accounts")?;
    let limit = crate::extract::limit(query.limit, 100, 500)?;
    let found = state
        .db
        .account_summaries(query.search.as_deref().unwrap_or(""), limit)
        .await?;
    Ok(ok(format!("{} accounts", found.len()), found))
}

/// The account `id` as an administrator may act on it: it exists and is not the caller's own.
async fn other_account(state: &AppState, admin: &User, id: UserId, what: &str) -> ApiResult<User> {
    let account = state.db.user_by_id(id).await?.ok_or(ApiError::NotFound("account"))?;
    if account.id == admin.id {
        return Err(ApiError::Conflict(format!(
            "you cannot {what} your own account; ask another administrator"
        )));
    }
    Ok(account)
}

/// Announces that credentials changed, so every API process stops taking the account's sessions
/// and tokens at once, and answers with the account as the list shows it.
async fn changed(state: &AppState, account: &User, message: String) -> ApiResult<Reply<AccountSummary>> {
    state.invalidations.changed(&[Topic::Callers]).await;
    let summary = state.db.account_summary(account.id).await.or_not_found("account")?;
    Ok(ok(message, summary))
}

/// Disable an account: its sessions end, its API tokens stop working and its devices send nothing
/// more, at once; everything stored is kept and its devices stay connected (what their contacts
/// write is still stored). Administrators only, not their own account; logged.
#[utoipa::path(post, path = "/api/admin/users/{id}/disable", tag = "admin",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = Envelope<AccountSummary>), (status = 403, description = "Not an administrator"),
              (status = 404, description = "No such account"), (status = 409, description = "Your own account")))]
async fn disable_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<UserId>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "disable accounts")?;
    let account = other_account(&state, &user, id, "disable").await?;
    state
        .db
        .set_user_disabled(&user, id, true)
        .await
        .or_not_found("account")?;
    tracing::info!(admin = %user.id, account = %id, "account disabled");
    changed(&state, &account, format!("account {} is disabled", account.email)).await
}

/// Enable a disabled account again: it may log in, its tokens work and its queued sends go.
/// Administrators only; logged.
#[utoipa::path(post, path = "/api/admin/users/{id}/enable", tag = "admin",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = Envelope<AccountSummary>), (status = 403, description = "Not an administrator"),
              (status = 404, description = "No such account"), (status = 409, description = "Your own account")))]
async fn enable_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<UserId>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "enable accounts")?;
    let account = other_account(&state, &user, id, "enable").await?;
    state
        .db
        .set_user_disabled(&user, id, false)
        .await
        .or_not_found("account")?;
    tracing::info!(admin = %user.id, account = %id, "account enabled");
    changed(&state, &account, format!("account {} is enabled", account.email)).await
}

/// A temporary password for an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TemporaryPassword {
    /// The password to give the account's owner (8 to 256 characters). They must choose a new one
    /// when they next log in.
    pub password: String,
}

/// Set a temporary password on an account (someone who forgot theirs): its sessions end, and
/// after the next login nothing but changing the password is allowed until it is changed. API
/// tokens keep working. Administrators only, not their own account; logged.
#[utoipa::path(post, path = "/api/admin/users/{id}/temporary-password", tag = "admin",
    params(("id" = i64, Path, description = "Account id")), request_body = TemporaryPassword,
    responses((status = 200, body = Envelope<AccountSummary>), (status = 403, description = "Not an administrator"),
              (status = 404, description = "No such account"), (status = 409, description = "Your own account"),
              (status = 422, description = "The password is too short or too long")))]
async fn temporary_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<UserId>,
    Json(body): Json<TemporaryPassword>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "set temporary passwords")?;
    auth::validate_password(&body.password).map_err(|e| ApiError::Invalid(format!("password: {e}")))?;
    let account = other_account(&state, &user, id, "set a temporary password on").await?;
    let password = body.password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hashing task: {e}"))??;
    state
        .db
        .set_temporary_password(&user, id, &hash)
        .await
        .or_not_found("account")?;
    tracing::info!(admin = %user.id, account = %id, "temporary password set");
    let message = format!(
        "account {} has a temporary password, to be changed at the next login",
        account.email
    );
    changed(&state, &account, message).await
}

/// What deleting an account must repeat.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeleteAccount {
    /// The account's email, typed out: a deletion cannot be undone.
    pub confirm: String,
}

/// What was deleted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedAccount {
    /// The account's id.
    pub id: UserId,
    /// Its email.
    pub email: String,
}

/// Delete an account and everything stored for it (devices and their WhatsApp sessions, chats,
/// leads, campaigns, sends, tokens, webhooks), after the account's email is typed in `confirm`.
/// Cannot be undone. Administrators only, not their own account; logged.
#[utoipa::path(delete, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Account id")), request_body = DeleteAccount,
    responses((status = 200, body = Envelope<DeletedAccount>), (status = 403, description = "Not an administrator"),
              (status = 404, description = "No such account"), (status = 409, description = "Your own account"),
              (status = 422, description = "`confirm` is not the account's email")))]
async fn delete_account(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<UserId>,
    Json(body): Json<DeleteAccount>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "delete accounts")?;
    let account = other_account(&state, &user, id, "delete").await?;
    if !body.confirm.trim().eq_ignore_ascii_case(account.email.as_str()) {
        return Err(ApiError::Invalid(format!(
            "confirm: type the account's email, {}, to delete it and everything stored for it",
            account.email
        )));
    }
    state.db.delete_user(&user, id).await.or_not_found("account")?;
    state.invalidations.changed(&[Topic::Callers]).await;
    tracing::warn!(admin = %user.id, account = %id, "account deleted");
    let deleted = DeletedAccount {
        id,
        email: account.email.to_string(),
    };
    Ok(ok(
        format!("account {} and everything stored for it are deleted", account.email),
        deleted,
    ))
}

/// The fleet as administrators watch it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetView {
    /// Workers alive (a heartbeat within the lease time), with the sessions each holds.
    pub workers: Vec<FleetWorker>,
    /// Devices that want a session.
    pub devices_wanted: i64,
    /// Of those, devices no live worker holds now.
    pub devices_unheld: i64,
    /// Sends queued or under way across all workers.
    pub sends_queued: i64,
    /// Dead letters not yet replayed.
    pub dead_letters: i64,
}

/// Workers with their sessions and last heartbeat, devices no worker holds, the send backlog and
/// dead letters. Administrators only.
#[utoipa::path(get, path = "/api/admin/fleet", tag = "admin",
    responses((status = 200, body = Envelope<FleetView>), (status = 403, description = "Not an administrator")))]
async fn fleet(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "see the fleet")?;
    let live_secs = i64::try_from(state.settings.lease_ttl_secs).unwrap_or(i64::MAX);
    let workers = state.db.fleet_workers(live_secs).await?;
    let wanted = state.db.fleet(live_secs).await?.wanted;
    let view = FleetView {
        workers,
        devices_wanted: wanted,
        devices_unheld: state.db.unheld_devices().await?,
        sends_queued: state.db.queued_send_count().await?,
        dead_letters: state.db.open_dead_letters().await?,
    };
    Ok(ok("the fleet", view))
}

/// Query of the administrator log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct ActionQuery {
    /// How many, newest first (1 to 500; default 100).
    limit: Option<i64>,
}

/// What administrators did, newest first: who, what, to which account, when. Administrators only.
#[utoipa::path(get, path = "/api/admin/actions", tag = "admin", params(ActionQuery),
    responses((status = 200, body = Envelope<Vec<AdminAction>>), (status = 403, description = "Not an administrator"),
              (status = 422, description = "Bad limit")))]
async fn actions(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<ActionQuery>,
) -> ApiResult<impl IntoResponse> {
    admin_only(&user, "read the administrator log")?;
    let limit = crate::extract::limit(query.limit, 100, 500)?;
    let entries = state.db.admin_actions(limit).await?;
    Ok(ok(format!("{} actions", entries.len()), entries))
}
