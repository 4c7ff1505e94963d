//! The read-only WhatsApp view of a device: its personal chats (search, newest first, cursor
//! pages), the messages of a chat (newest first, "load older" pages) with ticks on the account's
//! own messages, a live stream of what arrives, and the page that shows them. Nothing here sends
//! or changes anything; every route reaches data through the caller's own devices, so another
//! user's device answers 404 like a missing one.

pub(crate) mod cursor;
mod live;
mod page;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::cache::Topic;
use wafleet_core::db::{Chat, ChatCursor, ChatMessage, MessageCursor};
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::envelope::{Envelope, cache_key, cached_ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Path, Query};
use crate::session::CurrentUser;

pub(crate) use page::router as page_router;

/// Chats or messages per page when the caller does not say.
const DEFAULT_LIMIT: i64 = 50;
/// Most chats or messages per page.
const MAX_LIMIT: i64 = 200;
/// Longest chat id (JID) accepted.
pub(crate) const MAX_JID_CHARS: usize = 128;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_chats))
        .routes(routes!(list_messages))
        .routes(routes!(live::device_events))
}

/// Search and position of a page of chats.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatQuery {
    /// Text within the name or last message, or digits within the number.
    pub q: Option<String>,
    /// `next_cursor` of the previous page; omit for the first page.
    pub cursor: Option<String>,
    /// Chats per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

/// A page of chats, most recent first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatPage {
    /// The chats.
    pub chats: Vec<Chat>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Position of a page of messages.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// `next_before` of the previous page (older messages follow); omit for the newest.
    pub before: Option<String>,
    /// Messages per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

/// A page of a chat's messages, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    /// The chat.
    pub chat: Chat,
    /// The messages, newest first.
    pub messages: Vec<ChatMessage>,
    /// Pass as `before` for older messages; `null` when these are the oldest.
    pub next_before: Option<String>,
}

/// `limit`, or the default; 422 outside 1..=MAX_LIMIT.
pub(crate) fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid(format!("limit: must be 1 to {MAX_LIMIT}")));
    }
    Ok(limit)
}

/// Cuts the one row fetched beyond `limit` (which tells that another page follows) and returns
/// the cursor of the last row kept when it did.
pub(crate) fn split_page<T, C>(rows: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> C) -> Option<C> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(cursor)
    } else {
        None
    }
}

/// List a device's personal chats, most recent first, with search (groups, broadcasts and status
/// never appear).
#[utoipa::path(get, path = "/api/devices/{id}/chats", tag = "chats",
    params(("id" = i64, Path, description = "Device id"), ChatQuery),
    responses((status = 200, body = Envelope<ChatPage>), (status = 400, description = "Malformed cursor or parameter"),
              (status = 404, description = "No such device of yours"), (status = 422, description = "Bad limit")))]
async fn list_chats(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    query: Query<ChatQuery>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query;
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(cursor::decode_chat).transpose()?;
    let what = cache_key(&[
        "chats",
        &user.id.to_string(),
        &limit.to_string(),
        query.cursor.as_deref().unwrap_or_default(),
        query.q.as_deref().unwrap_or_default(),
    ]);
    cached_ok(&state, Topic::Device(device), what, "chats", async {
        state.db.device(user.id, device).await.or_not_found("device")?;
        let mut chats = state
            .db
            .chat_page(user.id, device, query.q.as_deref(), after.as_ref(), limit + 1)
            .await?;
        let next_cursor = split_page(&mut chats, limit, |c| {
            cursor::encode_chat(&ChatCursor {
                last_message_at: c.last_message_at,
                jid: c.jid.clone(),
            })
        });
        Ok(ChatPage { chats, next_cursor })
    })
    .await
}

/// List the messages of one chat, newest first; `before` pages back to older ones. The account's
/// own messages carry their ticks in `status` (sent, delivered, read).
#[utoipa::path(get, path = "/api/devices/{id}/messages/{chat}", tag = "chats",
    params(("id" = i64, Path, description = "Device id"),
           ("chat" = String, Path, description = "The chat's JID, URL-encoded, e.g. `60123456789%40s.whatsapp.net`"),
           MessageQuery),
    responses((status = 200, body = Envelope<MessagePage>), (status = 400, description = "Malformed cursor or parameter"),
              (status = 404, description = "No such device of yours, or no such chat on it"),
              (status = 422, description = "Bad limit or chat id")))]
async fn list_messages(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((device, jid)): Path<(DeviceId, String)>,
    query: Query<MessageQuery>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query;
    let limit = page_limit(query.limit)?;
    let before = query.before.as_deref().map(cursor::decode_message).transpose()?;
    if jid.is_empty() || jid.len() > MAX_JID_CHARS || !jid.contains('@') {
        return Err(ApiError::Invalid(
            "chat: give the chat's JID, e.g. 60123456789@s.whatsapp.net".into(),
        ));
    }
    let what = cache_key(&[
        "messages",
        &user.id.to_string(),
        &limit.to_string(),
        &jid,
        query.before.as_deref().unwrap_or_default(),
    ]);
    cached_ok(&state, Topic::Device(device), what, "messages", async {
        let chat = match state.db.chat(user.id, device, &jid).await {
            Ok(chat) => chat,
            Err(wafleet_core::Error::NotFound) => {
                // Tell a missing device from a missing chat only to the device's owner.
                state.db.device(user.id, device).await.or_not_found("device")?;
                return Err(ApiError::NotFound("chat"));
            }
            Err(e) => return Err(ApiError::from_core(e, "chat")),
        };
        let mut messages = state
            .db
            .message_page(user.id, device, &chat.jid, before.as_ref(), limit + 1)
            .await?;
        let next_before = split_page(&mut messages, limit, |m| {
            cursor::encode_message(&MessageCursor {
                sent_at: m.sent_at,
                id: m.id.clone(),
            })
        });
        // The chat was read before its messages, to find them: a batch stored in between
        // would leave its unread count and last message behind the page it heads. Read after
        // the messages, it is at least as new as they are.
        let chat = match state.db.chat(user.id, device, &chat.jid).await {
            Ok(fresh) => fresh,
            Err(wafleet_core::Error::NotFound) => chat,
            Err(e) => return Err(ApiError::from_core(e, "chat")),
        };
        Ok(MessagePage {
            chat,
            messages,
            next_before,
        })
    })
    .await
}
