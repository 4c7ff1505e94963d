//! The upstream REST API's chats: `GET /chats` and `GET /chat/{chat_jid}/messages`, in numbered
//! pages with a total and the upstream's filters, and the account's settings of a chat
//! (`POST /chat/{chat_jid}/pin`, `…/archive`, `…/disappearing`) through the live session, for the
//! device named by `X-Device-Id` (or the only one). Personal chats only, as wafleet stores them.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{ChatFilter, ChatMessage, ChatSummary, MessageFilter, User};
use wafleet_core::link::{ChatSetting, DISAPPEARING_TIMERS};
use wafleet_core::types::{DeviceId, Timestamp};

use crate::AppState;
use crate::compat::{Caller, UpstreamReply, upstream_ok, upstream_statuses};
use crate::compat_message::set_chat_setting;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::sessions::ask_session;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_chats))
        .routes(routes!(chat_messages))
        .routes(routes!(pin_chat))
        .routes(routes!(archive_chat))
        .routes(routes!(set_disappearing))
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
    /// The chat's disappearing-messages timer in seconds as the account last set it through
    /// wafleet (0: off).
    pub ephemeral_expiration: i64,
    /// When the first stored message was sent.
    pub created_at: Timestamp,
    /// When the last message was sent.
    pub updated_at: Timestamp,
    /// Archived by the account through wafleet (hidden from its main chat list).
    pub archived: bool,
}

impl From<ChatSummary> for UpstreamChat {
    fn from(chat: ChatSummary) -> Self {
        UpstreamChat {
            jid: chat.jid,
            name: chat.name.unwrap_or_default(),
            last_message_time: chat.last_message_at,
            ephemeral_expiration: chat.disappearing_secs,
            created_at: chat.first_message_at,
            updated_at: chat.last_message_at,
            archived: chat.archived,
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
    /// `true`: archived chats only; `false`: the others only; left out: all.
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
    let filter = ChatFilter {
        with_media: query.has_media.unwrap_or(false),
        archived: query.archived,
    };
    let (chats, total) = state
        .db
        .chats_by_offset(user.id, device, query.search.as_deref(), filter, limit, offset)
        .await?;
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

/// Body of `POST /chat/{chat_jid}/pin`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PinBody {
    /// Pin (`true`) or unpin (`false`).
    pub pinned: bool,
}

/// `results` of `POST /chat/{chat_jid}/pin`, `…/archive` and `…/disappearing`, in upstream's
/// shape: what was done, and the setting as it now stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatSettingResults {
    /// `success`.
    pub status: String,
    /// What was done, for people.
    pub message: String,
    /// The chat.
    pub chat_jid: String,
    /// Pinned now (pin only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    /// Archived now (archive only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    /// The timer now, in seconds (disappearing only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer_seconds: Option<u32>,
}

impl ChatSettingResults {
    /// Success on `chat_jid`, saying `message`, with none of the settings filled in.
    fn new(chat_jid: String, message: &str) -> Self {
        ChatSettingResults {
            status: "success".into(),
            message: message.into(),
            chat_jid,
            pinned: None,
            archived: None,
            timer_seconds: None,
        }
    }
}

/// Pin a chat to the top of the account's chat list, or unpin it (upstream `pinChat`), as the
/// phone's "Pin chat" does: a change of the account's synced app state, which its phone and
/// other devices show. `GET /chats` does not reorder pinned chats.
#[utoipa::path(post, path = "/chat/{chat_jid}/pin", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("chat_jid" = String, Path, description = "The chat's JID (or the LID the person wrote from)")),
    request_body = PinBody,
    responses((status = 200, body = UpstreamReply<ChatSettingResults>),
              (status = 400, description = "Several devices and none named, or no `pinned`"),
              (status = 404, description = "No such device of yours, or no such chat"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn pin_chat(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(jid): Path<String>,
    Json(body): Json<PinBody>,
) -> ApiResult<Response> {
    let (doing, done) = if body.pinned {
        ("pinning", "Chat pinned successfully")
    } else {
        ("unpinning", "Chat unpinned successfully")
    };
    let setting = ChatSetting::Pinned { pinned: body.pinned };
    let chat = change_chat(&state, &user, device, &jid, &setting, doing).await?;
    let results = ChatSettingResults {
        pinned: Some(body.pinned),
        ..ChatSettingResults::new(chat, done)
    };
    Ok(upstream_ok(done, results))
}

/// Makes `setting` on the device's chat `jid` (its JID, or the LID the person wrote from)
/// through the live session: 404 when the device has no such chat. Returns the chat's JID.
async fn change_chat(
    state: &AppState,
    user: &User,
    device: DeviceId,
    jid: &str,
    setting: &ChatSetting,
    doing: &str,
) -> ApiResult<String> {
    let chat = state
        .db
        .chat_summary(user.id, device, jid.trim())
        .await
        .or_not_found("chat")?;
    set_chat_setting(state, user, device, &chat.jid, setting, doing).await?;
    Ok(chat.jid)
}

/// Body of `POST /chat/{chat_jid}/archive`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ArchiveBody {
    /// Archive (`true`) or bring back (`false`).
    pub archived: bool,
}

/// Archive a chat, hiding it from the account's main chat list, or bring it back (upstream
/// `archiveChat`), as the phone's "Archive chat" does: a change of the account's synced app
/// state. `GET /chats?archived=true` lists the chats archived through wafleet.
#[utoipa::path(post, path = "/chat/{chat_jid}/archive", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("chat_jid" = String, Path, description = "The chat's JID (or the LID the person wrote from)")),
    request_body = ArchiveBody,
    responses((status = 200, body = UpstreamReply<ChatSettingResults>),
              (status = 400, description = "Several devices and none named, or no `archived`"),
              (status = 404, description = "No such device of yours, or no such chat"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn archive_chat(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(jid): Path<String>,
    Json(body): Json<ArchiveBody>,
) -> ApiResult<Response> {
    let (doing, done) = if body.archived {
        ("archiving", "Chat archived successfully")
    } else {
        ("unarchiving", "Chat unarchived successfully")
    };
    let setting = ChatSetting::Archived {
        archived: body.archived,
    };
    let chat = change_chat(&state, &user, device, &jid, &setting, doing).await?;
    let results = ChatSettingResults {
        archived: Some(body.archived),
        ..ChatSettingResults::new(chat, done)
    };
    Ok(upstream_ok(done, results))
}

/// Body of `POST /chat/{chat_jid}/disappearing`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DisappearingBody {
    /// The timer in seconds: 0 (off), 86400 (24 hours), 604800 (7 days) or 7776000 (90 days).
    pub timer_seconds: i64,
}

/// Set a chat's disappearing-messages timer, or turn it off (upstream `setDisappearingTimer`),
/// as the phone does: a message in the chat, after which both people's phones delete new
/// messages once the timer has run. Personal chats only; the chat need not have messages yet.
/// wafleet's own sends do not carry the timer, and wafleet's record keeps every message.
#[utoipa::path(post, path = "/chat/{chat_jid}/disappearing", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("chat_jid" = String, Path, description = "The chat's JID, the LID the person wrote from, or a number")),
    request_body = DisappearingBody,
    responses((status = 200, body = UpstreamReply<ChatSettingResults>),
              (status = 400, description = "Several devices and none named, a timer WhatsApp does not offer, or not a personal chat"),
              (status = 404, description = "No such device of yours"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn set_disappearing(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(jid): Path<String>,
    Json(body): Json<DisappearingBody>,
) -> ApiResult<Response> {
    let seconds = u32::try_from(body.timer_seconds)
        .ok()
        .filter(|s| DISAPPEARING_TIMERS.contains(s))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "timer_seconds: {} is not a timer WhatsApp offers; give 0 (off), 86400 (24 hours), \
                 604800 (7 days) or 7776000 (90 days)",
                body.timer_seconds
            ))
        })?;
    let chat = match state.db.chat_summary(user.id, device, jid.trim()).await {
        Ok(kept) => kept.jid,
        Err(wafleet_core::Error::NotFound) => crate::compat_message::chat_jid(&jid, "chat_jid", &state)?.0,
        Err(err) => return Err(err.into()),
    };
    let question = serde_json::json!({ "chat": chat, "seconds": seconds });
    ask_session(
        &state,
        user.id,
        device,
        "disappearing",
        question,
        "setting the disappearing timer",
    )
    .await?;
    state.invalidations.device_changed(device).await;
    let done = format!("Disappearing messages set to {seconds} seconds");
    let results = ChatSettingResults {
        timer_seconds: Some(seconds),
        ..ChatSettingResults::new(chat, &done)
    };
    Ok(upstream_ok(&done, results))
}
