//! The upstream REST API's actions on one message: `POST /message/{message_id}/read`,
//! `…/reaction`, `…/revoke`, `…/update`, `…/star`, `…/unstar` and `…/delete` (for the account
//! alone), through the live session of the device named by `X-Device-Id` (or the only one), on a
//! message wafleet stored for it; and `…/forward`, a send. They go out at once rather than at the
//! device's pace: none starts a chat, and each is harmless if repeated (a read receipt, the same
//! reaction, the same deletion, the same edit, the same star), which is also why one is asked of
//! the holder again if its worker died while asking.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{ChatMessage, User};
use wafleet_core::link::{ChatSetting, Jid, MessageRef};
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::compat::{Caller, upstream_statuses};
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::sends::phone_number;
use crate::sessions::{ask_session, ask_session_for};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read_message))
        .routes(routes!(react_to_message))
        .routes(routes!(revoke_message))
        .routes(routes!(update_message))
        .routes(routes!(forward_message))
        .routes(routes!(star_message))
        .routes(routes!(unstar_message))
        .routes(routes!(delete_message))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// Body of the message actions: the chat the message is in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MessageChat {
    /// The chat: the other person's number with its country code, or their JID
    /// (`6289685028129@s.whatsapp.net`, or `…@lid`).
    pub phone: String,
}

/// `results` of the message actions and of `POST /send/chat-presence`, in the shape of the send
/// routes' (the upstream `SendResponse`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageActionResults {
    /// The message acted on; for a reaction, the reaction's own id; empty for a typing
    /// indicator, which is not a message.
    pub message_id: String,
    /// What was done, for people.
    pub status: String,
}

/// The JID of the personal chat `raw` (the request's `field`) names: a number, or a phone-number
/// or LID JID.
pub(crate) fn chat_jid(raw: &str, field: &str, state: &AppState) -> ApiResult<Jid> {
    let jid = Jid(raw.trim().to_owned());
    if jid.is_lid() {
        return Ok(Jid::for_lid(jid.user()));
    }
    Ok(Jid::for_phone(&phone_number(raw, field, state)?))
}

/// Mark a received message as read (upstream `readMessage`): its sender sees the blue ticks,
/// and the chat has no unread messages in wafleet any more. Sent through the device's live
/// session, so the device must be online.
#[utoipa::path(post, path = "/message/{message_id}/read", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message the device received")),
    request_body = MessageChat,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message of another chat, or one the account sent"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn read_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<MessageChat>,
) -> ApiResult<Response> {
    let message = message_in_chat(&state, &user, device, &id, &body.phone).await?;
    if message.from_me {
        return Err(ApiError::Invalid(format!(
            "message_id: {} was sent by this account; only received messages are marked read",
            message.id
        )));
    }
    let question = serde_json::json!({ "chat": message.chat_jid, "ids": [message.id] });
    ask_session(&state, user.id, device, "mark_read", question, "marking messages read").await?;
    state.db.clear_unread(device, &message.chat_jid).await?;
    state.invalidations.device_changed(device).await;
    Ok(done(message.id, "Mark as read success"))
}

/// Body of `POST /message/{message_id}/reaction`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Reaction {
    /// The chat, as for the other message actions.
    pub phone: String,
    /// The emoji; empty to take the account's reaction back.
    #[serde(default)]
    pub emoji: String,
}

/// React to a message of a chat, received or sent (upstream `reactMessage`); an empty emoji
/// takes the reaction back. `results.message_id` is the reaction's own WhatsApp id.
#[utoipa::path(post, path = "/message/{message_id}/reaction", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message stored for the device")),
    request_body = Reaction,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message of another chat; more than one emoji's worth of text"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn react_to_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<Reaction>,
) -> ApiResult<Response> {
    let emoji = body.emoji.trim();
    // An emoji is a handful of code points at most (flags, skin tones, families).
    if emoji.chars().count() > 16 {
        return Err(ApiError::Invalid(
            "emoji: give one emoji (or nothing, to take the reaction back)".into(),
        ));
    }
    let message = message_in_chat(&state, &user, device, &id, &body.phone).await?;
    let target = MessageRef {
        id: message.id.clone(),
        from_me: message.from_me,
    };
    let question = serde_json::json!({ "chat": message.chat_jid, "target": target, "emoji": emoji });
    let reaction: String = ask_session_for(&state, user.id, device, "react", question, "reacting").await?;
    let status = if emoji.is_empty() {
        "Reaction removed"
    } else {
        "Reaction sent"
    };
    Ok(done(reaction, status))
}

/// Delete one of the account's own messages for everyone (upstream `revokeMessage`), as the
/// phone's "Delete for everyone" does; the message stays in wafleet's record of the chat.
#[utoipa::path(post, path = "/message/{message_id}/revoke", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message the account sent")),
    request_body = MessageChat,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message of another chat, or one the account did not send"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn revoke_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<MessageChat>,
) -> ApiResult<Response> {
    let message = own_message_in_chat(&state, &user, device, &id, &body.phone, "deleted for everyone").await?;
    let question = serde_json::json!({ "chat": message.chat_jid, "id": message.id });
    ask_session(&state, user.id, device, "revoke", question, "deleting for everyone").await?;
    Ok(done(message.id, "Revoke success"))
}

/// Star a message of a chat, received or sent (upstream `starMessage`), as the phone's "Star"
/// does: a change of the account's synced app state, which its phone and other devices show.
#[utoipa::path(post, path = "/message/{message_id}/star", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message stored for the device")),
    request_body = MessageChat,
    responses((status = 200, description = "Starred"),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message of another chat"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn star_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<MessageChat>,
) -> ApiResult<Response> {
    star(&state, &user, device, &id, &body.phone, true).await
}

/// Take the star off a message (upstream `unstarMessage`), as [`star_message`] puts it on.
#[utoipa::path(post, path = "/message/{message_id}/unstar", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message stored for the device")),
    request_body = MessageChat,
    responses((status = 200, description = "Unstarred"),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message of another chat"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn unstar_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<MessageChat>,
) -> ApiResult<Response> {
    star(&state, &user, device, &id, &body.phone, false).await
}

/// Stars (`starred`) or unstars message `id` of the chat `phone` names.
async fn star(
    state: &AppState,
    user: &User,
    device: DeviceId,
    id: &str,
    phone: &str,
    starred: bool,
) -> ApiResult<Response> {
    let message = message_in_chat(state, user, device, id, phone).await?;
    let setting = ChatSetting::Starred {
        message: MessageRef {
            id: message.id.clone(),
            from_me: message.from_me,
        },
        starred,
    };
    let (doing, done) = if starred {
        ("starring", "Starred message")
    } else {
        ("unstarring", "Unstarred message")
    };
    set_chat_setting(state, user, device, &message.chat_jid, &setting, doing).await?;
    Ok(ok(done, ()).into_response())
}

/// Body of `POST /message/{message_id}/delete`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeleteBody {
    /// The chat, as for the other message actions; left out, the message is found by its id
    /// alone.
    pub phone: Option<String>,
}

/// Delete a message for the account alone (upstream `deleteMessage`), as the phone's "Delete for
/// me" does: it goes from the account's phone and linked devices (a change of its synced app
/// state), and the other person keeps it. wafleet's record of the chat keeps it too.
#[utoipa::path(post, path = "/message/{message_id}/delete", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message stored for the device")),
    request_body = DeleteBody,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named; a bad phone; a message of another chat"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn delete_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<DeleteBody>,
) -> ApiResult<Response> {
    let message = match body.phone.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(phone) => message_in_chat(&state, &user, device, &id, phone).await?,
        None => stored_or_sent(&state, &user, device, &id).await?,
    };
    let setting = ChatSetting::DeletedForMe {
        message: MessageRef {
            id: message.id.clone(),
            from_me: message.from_me,
        },
        sent_at: Some(message.sent_at),
    };
    set_chat_setting(&state, &user, device, &message.chat_jid, &setting, "deleting for me").await?;
    Ok(done(message.id, "Delete message success"))
}

/// Asks the device's holder to make `setting` on `chat` through its live session; it records
/// what it keeps of it once WhatsApp took it.
pub(crate) async fn set_chat_setting(
    state: &AppState,
    user: &User,
    device: DeviceId,
    chat: &str,
    setting: &ChatSetting,
    doing: &str,
) -> ApiResult<()> {
    let question = serde_json::json!({ "chat": chat, "setting": setting });
    ask_session(state, user.id, device, "chat_setting", question, doing).await?;
    state.invalidations.device_changed(device).await;
    Ok(())
}

/// Body of `POST /message/{message_id}/update`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MessageEdit {
    /// The chat, as for the other message actions.
    pub phone: String,
    /// The new text.
    pub message: String,
}

/// Replace the text of one of the account's own messages (upstream `updateMessage`), as the
/// phone's "Edit" does; WhatsApp allows it for 15 minutes after sending and refuses it later.
/// wafleet's record of the message keeps the text it was sent with.
#[utoipa::path(post, path = "/message/{message_id}/update", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message the account sent")),
    request_body = MessageEdit,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named; no or a bad phone; no new text; a message of another chat, or one the account did not send"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn update_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    Json(body): Json<MessageEdit>,
) -> ApiResult<Response> {
    let text = body.message.trim();
    if text.is_empty() {
        return Err(ApiError::Invalid("message: give the new text".into()));
    }
    let message = own_message_in_chat(&state, &user, device, &id, &body.phone, "edited").await?;
    let question = serde_json::json!({ "chat": message.chat_jid, "id": message.id, "text": text });
    ask_session(&state, user.id, device, "edit", question, "editing").await?;
    Ok(done(message.id, "Update message success"))
}

/// Body of `POST /message/{message_id}/forward`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ForwardBody {
    /// Where to forward it: a number with its country code, or a person's JID.
    pub phone: Option<String>,
}

/// Forward a message the device stored, received or sent, to another personal chat (upstream
/// `forwardMessage`): a text, or a file wafleet keeps (with its caption), goes out marked
/// "Forwarded" through the same paced, idempotent path as any send. `results.message_id` is the
/// WhatsApp id it goes out under, `results.send_id` wafleet's. `duration` and `force_reupload`
/// are not applied (a kept file is always uploaded again).
#[utoipa::path(post, path = "/message/{message_id}/forward", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message stored for the device")),
    request_body = ForwardBody,
    responses((status = 200, body = Envelope<crate::compat_send::SendResults>),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message with nothing wafleet can forward (a file it does not keep, a location, contact card or poll)"),
              (status = 404, description = "No such device of yours, or no such message stored for it"),
              (status = 409, description = "Device not linked, or the key was used for another send")),
    security(("bearer" = [])))]
async fn forward_message(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Json(body): Json<ForwardBody>,
) -> ApiResult<Response> {
    use crate::sends::{Draft, Payload};
    use wafleet_core::link::{Attachment, MessageKind};
    let phone = body
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::Invalid("phone: give the number to forward the message to".into()))?;
    let message = stored_or_sent(&state, &user, device, &id).await?;
    let kind = MessageKind::from_name(&message.kind);
    let draft = match kind {
        MessageKind::Text => Draft::new(message.body.clone(), None),
        kind if MessageKind::MEDIA.contains(&kind) => {
            let file = state
                .db
                .message_media(user.id, device, &message.id)
                .await
                .or_not_found("message")?;
            let not_kept = || {
                ApiError::Invalid(format!(
                    "message_id: its {} is not kept ({}), so there is nothing to forward",
                    message.kind, file.state
                ))
            };
            let key = file
                .stored_key
                .as_deref()
                .filter(|_| file.state == "stored")
                .ok_or_else(not_kept)?;
            let bytes = state.media()?.get(key).await?.ok_or_else(not_kept)?;
            let caption = matches!(kind, MessageKind::Image | MessageKind::Video | MessageKind::Document)
                .then(|| message.body.clone())
                .flatten();
            let ready = Attachment {
                kind,
                bytes: bytes.to_vec(),
                mime: file.mime.clone(),
                file_name: file.file_name.clone(),
            };
            Draft::new(caption, Some(Payload::Ready(ready)))
        }
        _ => {
            return Err(ApiError::Invalid(format!(
                "message_id: a {} message cannot be forwarded: only texts and files wafleet keeps",
                message.kind
            )));
        }
    };
    let draft = Draft {
        forwarded: true,
        ..draft
    };
    let key = crate::sends::idempotency_key(&headers)?;
    let (sent, _) = crate::sends::accept(&state, user.id, device, key, phone, draft).await?;
    let wa_id = state.db.choose_wa_message_id(sent.id).await?;
    Ok(ok("Message forwarded", crate::compat_send::SendResults::new(&sent, wa_id)).into_response())
}

/// Message `id` of `user`'s `device`: one it received or that its phone sent, as stored, or one
/// wafleet sent from it; 404 when there is none.
async fn stored_or_sent(state: &AppState, user: &User, device: DeviceId, id: &str) -> ApiResult<ChatMessage> {
    let id = id.trim();
    match state.db.stored_message(user.id, device, id).await {
        Err(wafleet_core::Error::NotFound) => state.db.sent_message(user.id, device, id).await,
        found => found,
    }
    .or_not_found("message")
}

/// [`message_in_chat`], refused (400) unless the account wrote it: only its own messages are
/// `done_to` (deleted for everyone, edited).
async fn own_message_in_chat(
    state: &AppState,
    user: &User,
    device: DeviceId,
    id: &str,
    phone: &str,
    done_to: &str,
) -> ApiResult<ChatMessage> {
    let message = message_in_chat(state, user, device, id, phone).await?;
    if !message.from_me {
        return Err(ApiError::Invalid(format!(
            "message_id: {} was written by the other person; only the account's own messages are {done_to}",
            message.id
        )));
    }
    Ok(message)
}

/// Message `id` of `user`'s `device` (one it received or that its phone sent, as stored, or
/// one wafleet sent from it), checked to be in the chat `phone` names: 404 when there is no such
/// message, 400 when it is in another chat.
pub(crate) async fn message_in_chat(
    state: &AppState,
    user: &User,
    device: DeviceId,
    id: &str,
    phone: &str,
) -> ApiResult<ChatMessage> {
    let chat = chat_jid(phone, "phone", state)?;
    let message = stored_or_sent(state, user, device, id).await?;
    // The chat is named by the JID it is kept under, or by the LID the person wrote from.
    let same_chat = chat.0 == message.chat_jid
        || match state.db.chat_summary(user.id, device, &chat.0).await {
            Ok(kept) => kept.jid == message.chat_jid,
            Err(wafleet_core::Error::NotFound) => false,
            Err(err) => return Err(err.into()),
        };
    if !same_chat {
        return Err(ApiError::Invalid(format!(
            "phone: message {} is in the chat with {}, not {chat}",
            message.id, message.chat_jid
        )));
    }
    Ok(message)
}

/// 200 with what was done to message `message_id`.
pub(crate) fn done(message_id: String, status: &str) -> Response {
    let results = MessageActionResults {
        message_id,
        status: status.into(),
    };
    ok("Success", results).into_response()
}
