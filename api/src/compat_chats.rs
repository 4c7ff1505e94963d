//! The upstream REST API's chat reading: `GET /chats` and `GET /chat/{chat_jid}/messages`, in
//! numbered pages with a total and the upstream's filters, for the device named by `X-Device-Id`
//! (or the only one). Personal chats only, as wafleet stores them; none is ever archived.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{ChatMessage, ChatSummary, MessageFilter};
use wafleet_core::types::Timestamp;

use crate::AppState;
use crate::compat::{Caller, UpstreamReply, upstream_ok, upstream_statuses};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Path, Query};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_chats))
        .routes(routes!(chat_messages))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// The largest page either route gives.
const MAX_LIMIT: i64 = 100;

/// `limit` and `offset` checked: 1 to 100 from 0 on, `default` when no limit is given.
fn page(limit: Option<i64>, offset: Option<i64>, default: i64) -> ApiResult<(i64, i64)> {
    // Refused with 422, which the upstream status layer answers with its 400.
    let limit = crate::extract::limit(limit, default, MAX_LIMIT)?;
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest(format!(
            "offset: {offset} is negative; give 0 or more"
        )));
    }
    Ok((limit, offset))
}

/// A page's position, as the upstream reports it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pagination {
    /// The page's size.
    pub limit: i64,
    /// How many were skipped.
    pub offset: i64,
    /// How many there are in all.
    pub total: i64,
}

/// A chat in the upstream API's words.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamChat {
    /// The other person's JID.
    pub jid: String,
    /// Their saved name, else their push name; empty when unknown.
    pub name: String,
    /// When the last message was sent.
    pub last_message_time: Timestamp,
    /// Disappearing messages: wafleet does not track them, so 0.
    pub ephemeral_expiration: i64,
    /// When the first stored message was sent.
    pub created_at: Timestamp,
    /// When the last message was sent.
    pub updated_at: Timestamp,
    /// Always false: wafleet keeps no archive state.
    pub archived: bool,
}

impl From<ChatSummary> for UpstreamChat {
    fn from(chat: ChatSummary) -> Self {
        UpstreamChat {
            jid: chat.jid,
            name: chat.name.unwrap_or_default(),
            last_message_time: chat.last_message_at,
            ephemeral_expiration: 0,
            created_at: chat.first_message_at,
            updated_at: chat.last_message_at,
            archived: false,
        }
    }
}

/// A page of chats.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatList {
    /// The chats, most recent first.
    pub data: Vec<UpstreamChat>,
    /// Where the page is.
    pub pagination: Pagination,
}

/// Query of upstream `listChats`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct ChatQuery {
    /// How many (1 to 100; default 25).
    limit: Option<i64>,
    /// How many to skip (default 0).
    offset: Option<i64>,
    /// Only chats whose name contains this (any case).
    search: Option<String>,
    /// Only chats with a media message.
    has_media: Option<bool>,
    /// `true`: archived chats only (wafleet has none); `false` or left out: all.
    archived: Option<bool>,
}

/// The device's personal chats, most recent first (upstream `listChats`).
#[utoipa::path(get, path = "/chats", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"), ChatQuery),
    responses((status = 200, body = UpstreamReply<ChatList>),
              (status = 400, description = "Several devices and none named, or a bad limit or offset"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn list_chats(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Query(query): Query<ChatQuery>,
) -> ApiResult<Response> {
    let (limit, offset) = page(query.limit, query.offset, 25)?;
    let (chats, total) = if query.archived == Some(true) {
        (Vec::new(), 0)
    } else {
        let search = query.search.as_deref();
        let with_media = query.has_media.unwrap_or(false);
        state
            .db
            .chats_by_offset(user.id, device, search, with_media, limit, offset)
            .await?
    };
    let list = ChatList {
        data: chats.into_iter().map(UpstreamChat::from).collect(),
        pagination: Pagination { limit, offset, total },
    };
    Ok(upstream_ok("Success get chat list", list))
}

/// A reaction: wafleet stores none, so the lists are empty.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
}

/// A message in the upstream API's words.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamMessage {
    /// WhatsApp's message id.
    pub id: String,
    /// The chat.
    pub chat_jid: String,
    /// Who sent it.
    pub sender_jid: String,
    /// The sender for people: the device's name for the account's own messages, else the chat's
    /// name, else the number.
    pub sender_display_name: String,
    /// Its text (a media message's caption); empty without.
    pub content: String,
    /// When it was sent.
    pub timestamp: Timestamp,
    /// Whether the account sent it.
    pub is_from_me: bool,
    /// `image`, `video`, `audio`, `document`, `sticker` or `other`; `null` for text.
    pub media_type: Option<String>,
    /// Reactions: wafleet does not store them, so empty.
    pub reactions: Vec<Reaction>,
    /// The file's name, as the sender gave it (documents).
    pub filename: Option<String>,
    /// Where wafleet serves the file of a received message once it has kept it (a path on this
    /// server, answered with the same credentials); `null` before, or without one.
    pub url: Option<String>,
    /// The file's size in bytes.
    pub file_length: Option<i64>,
    /// When wafleet stored it.
    pub created_at: Timestamp,
    /// When wafleet stored it.
    pub updated_at: Timestamp,
}

/// A page of a chat's messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageList {
    /// The messages, newest first.
    pub data: Vec<UpstreamMessage>,
    /// Where the page is.
    pub pagination: Pagination,
    /// The chat.
    pub chat_info: UpstreamChat,
}

/// Query of upstream `getChatMessages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct MessageQuery {
    /// How many (1 to 100; default 50).
    limit: Option<i64>,
    /// How many to skip (default 0).
    offset: Option<i64>,
    /// Only messages sent at or after this time (RFC 3339).
    start_time: Option<String>,
    /// Only messages sent at or before this time (RFC 3339).
    end_time: Option<String>,
    /// Only messages with media (whoever sent them).
    media_only: Option<bool>,
    /// Only the account's own messages (`true`) or only the contact's (`false`).
    is_from_me: Option<bool>,
    /// Only messages whose text contains this (any case).
    search: Option<String>,
}

/// A time from the query, or a 400 naming the parameter.
fn time(name: &str, raw: Option<&str>) -> ApiResult<Option<Timestamp>> {
    raw.filter(|r| !r.trim().is_empty())
        .map(|r| {
            serde_json::from_value::<Timestamp>(serde_json::Value::String(r.trim().to_owned())).map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name}: `{r}` is not a time; give RFC 3339, e.g. 2024-01-15T10:30:00Z"
                ))
            })
        })
        .transpose()
}

/// One chat's messages, newest first (upstream `getChatMessages`).
#[utoipa::path(get, path = "/chat/{chat_jid}/messages", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("chat_jid" = String, Path, description = "The chat's JID (or the LID the person wrote from)"), MessageQuery),
    responses((status = 200, body = UpstreamReply<MessageList>),
              (status = 400, description = "Several devices and none named, a bad limit or offset, or a bad time"),
              (status = 404, description = "No such device of yours, or no such chat")),
    security(("bearer" = [])))]
async fn chat_messages(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(jid): Path<String>,
    Query(query): Query<MessageQuery>,
) -> ApiResult<Response> {
    let (limit, offset) = page(query.limit, query.offset, 50)?;
    let filter = MessageFilter {
        from: time("start_time", query.start_time.as_deref())?,
        until: time("end_time", query.end_time.as_deref())?,
        media_only: query.media_only.unwrap_or(false),
        from_me: query.is_from_me,
        search: query.search,
    };
    let chat = state
        .db
        .chat_summary(user.id, device, jid.trim())
        .await
        .or_not_found("chat")?;
    let own_name = state.db.device(user.id, device).await.or_not_found("device")?.name;
    let (messages, total) = state
        .db
        .messages_by_offset(user.id, device, &chat.jid, &filter, limit, offset)
        .await?;
    let contact = chat
        .name
        .clone()
        .unwrap_or_else(|| chat.jid.split('@').next().unwrap_or_default().to_owned());
    let data = messages
        .into_iter()
        .map(|m: ChatMessage| UpstreamMessage {
            sender_display_name: if m.from_me { own_name.clone() } else { contact.clone() },
            content: m.body.unwrap_or_default(),
            timestamp: m.sent_at,
            is_from_me: m.from_me,
            media_type: (m.kind != "text").then_some(m.kind),
            reactions: Vec::new(),
            filename: m.media_file_name,
            // Where wafleet serves the file it kept (with the caller's credentials).
            url: (m.media_state.as_deref() == Some("stored"))
                .then(|| wafleet_core::media_store::served_at(device, &m.id)),
            file_length: m.media_size,
            created_at: m.received_at,
            updated_at: m.received_at,
            id: m.id,
            chat_jid: m.chat_jid,
            sender_jid: m.sender_jid,
        })
        .collect();
    let list = MessageList {
        data,
        pagination: Pagination { limit, offset, total },
        chat_info: chat.into(),
    };
    Ok(upstream_ok("Success get chat messages", list))
}
