//! Sending and checking numbers through the routes kept from the REST API wafleet grew out of:
//! `POST /send/message`, `/send/image`, `/send/video`, `/send/audio`, `/send/file`,
//! `/send/sticker`, `GET /user/check`. The device is named by the
//! `X-Device-Id` header, a `device_id` query parameter or a `device_id` field. Sends are queued:
//! `results.message_id` is the WhatsApp message id the send goes out under (chosen now, so it
//! matches the `message.ack` webhooks to come), `results.send_id` wafleet's id for the send
//! (follow it at `GET /api/messages/{id}`). Media bodies may be as large as `MAX_MEDIA_BYTES`.

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::OutboundMessage;
use wafleet_core::link::{Jid, MessageKind};
use wafleet_core::types::PhoneNumber;

use crate::AppState;
use crate::compat::{TokenUser, target_device, upstream_statuses};
use crate::compat_message::{MessageActionResults, done};
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Multipart, Query};
use crate::sends::{Draft, FormFile, Payload, accept, idempotency_key, phone_number, read_form};
use crate::sessions::ask_session;

pub(crate) fn router(max_media_bytes: usize) -> OpenApiRouter<AppState> {
    // Media take a limit of their own: the general one is sized for JSON and forms.
    let media = OpenApiRouter::new()
        .routes(routes!(send_image))
        .routes(routes!(send_video))
        .routes(routes!(send_audio))
        .routes(routes!(send_document))
        .routes(routes!(send_sticker))
        .route_layer(DefaultBodyLimit::max(max_media_bytes));
    OpenApiRouter::new()
        .routes(routes!(send_message))
        .routes(routes!(chat_presence))
        .routes(routes!(user_check))
        .merge(media)
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// `results` of the send routes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendResults {
    /// The WhatsApp message id the send goes out under: the id `message.ack` webhooks carry.
    #[schema(example = "3EB0B430B6F8F1D0E053AC")]
    pub message_id: String,
    /// wafleet's id for the send (`GET /api/messages/{send_id}`).
    pub send_id: String,
    /// `queued` for a new send; the current status for a repeated `Idempotency-Key`.
    pub status: String,
}

impl SendResults {
    /// The results for `message`, going out under the WhatsApp id `wa_id`.
    pub(crate) fn new(message: &OutboundMessage, wa_id: String) -> Self {
        SendResults {
            message_id: wa_id,
            send_id: message.id.to_string(),
            status: message.status.as_str().into(),
        }
    }
}

/// Body of `POST /send/message`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendMessageBody {
    /// Phone number with country code, or `number@s.whatsapp.net`.
    pub phone: String,
    /// The text.
    pub message: String,
    /// The device to send from (instead of the `X-Device-Id` header).
    pub device_id: Option<String>,
    /// Mark it "Forwarded", as WhatsApp marks a message passed on.
    #[serde(default)]
    pub is_forwarded: bool,
}

/// The request's parts, for resolving the device after the body is read.
pub(crate) struct RequestParts(pub(crate) Parts);

impl FromRequestParts<AppState> for RequestParts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(RequestParts(parts.clone()))
    }
}

/// Send a text message (compatible route).
#[utoipa::path(post, path = "/send/message", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body = SendMessageBody,
    responses((status = 200, body = Envelope<SendResults>), (status = 400, description = "Several devices and none named"), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, or a missing or bad field: phone, message"),
              (status = 409, description = "Device not linked, or the key was used for another send")),
    security(("bearer" = [])))]
async fn send_message(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Json(body): Json<SendMessageBody>,
) -> ApiResult<impl IntoResponse> {
    let device = target_device(&parts, &state, &user, body.device_id.as_deref()).await?;
    let key = idempotency_key(&headers)?;
    let draft = Draft {
        forwarded: body.is_forwarded,
        ..Draft::new(Some(body.message), None)
    };
    let (message, _) = accept(&state, user.id, device, key, &body.phone, draft).await?;
    let wa_id = state.db.choose_wa_message_id(message.id).await?;
    Ok(ok("Message queued", SendResults::new(&message, wa_id)))
}

/// A compatible route that sends a file: its kind, its form fields, and its word in answers.
struct FileRoute {
    kind: MessageKind,
    /// The file field (`image`, `video`, `audio`, `file`, `sticker`).
    field: &'static str,
    /// The field of its URL (`image_url`, …).
    url_field: &'static str,
    /// What it is called in answers (`Image`, `Video`, …).
    noun: &'static str,
}

/// Sends the file of a `multipart/form-data` request to a compatible media route: `phone`, the
/// file in `route.field` or its http(s) URL in `route.url_field`, and a `caption` where the kind
/// shows one (pictures, videos, documents). A URL is fetched before the send is accepted, from
/// public addresses only, within 30 s and up to `MAX_MEDIA_BYTES`.
async fn send_file(
    state: AppState,
    user: wafleet_core::db::User,
    parts: Parts,
    headers: HeaderMap,
    form: axum::extract::Multipart,
    route: FileRoute,
) -> ApiResult<axum::response::Response> {
    let (field, url_field) = (route.field, route.url_field);
    let (fields, file) = read_form(form, field, state.settings.max_media_bytes).await?;
    let device = target_device(&parts, &state, &user, fields.get("device_id").map(String::as_str)).await?;
    let phone = fields
        .get("phone")
        .ok_or_else(|| ApiError::Invalid("phone: give the recipient's number".into()))?;
    let url = fields.get(url_field).filter(|u| !u.trim().is_empty());
    let file = match (file, url) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Invalid(format!(
                "{url_field}: give the file in `{field}` or its URL in `{url_field}`, not both"
            )));
        }
        (Some(file), None) => file,
        (None, Some(url)) => FormFile {
            bytes: crate::media_url::fetch(&state, url_field, url).await?,
            file_name: url_file_name(url),
            content_type: None,
        },
        (None, None) => {
            return Err(ApiError::Invalid(format!(
                "{field}: attach the file in the `{field}` field, or give its URL in `{url_field}`"
            )));
        }
    };
    let upload = match route.kind {
        MessageKind::Image => Payload::Image(file.bytes),
        kind => Payload::File {
            kind,
            field,
            bytes: file.bytes,
            content_type: file.content_type,
            file_name: file.file_name,
        },
    };
    let has_caption = matches!(
        route.kind,
        MessageKind::Image | MessageKind::Video | MessageKind::Document
    );
    let caption = fields.get("caption").filter(|_| has_caption).cloned();
    let key = idempotency_key(&headers)?;
    let forwarded = match fields.get("is_forwarded").map(|v| v.trim()) {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "is_forwarded: `{other}` is neither true nor false"
            )));
        }
    };
    let draft = Draft {
        forwarded,
        ..Draft::new(caption, Some(upload))
    };
    let (message, _) = accept(&state, user.id, device, key, phone, draft).await?;
    let wa_id = state.db.choose_wa_message_id(message.id).await?;
    Ok(ok(format!("{} queued", route.noun), SendResults::new(&message, wa_id)).into_response())
}

/// The last segment of a URL's path, as the name of the file it serves.
fn url_file_name(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    let name = url.path_segments()?.next_back()?.to_owned();
    Some(name).filter(|n| !n.is_empty())
}

/// Send an image, `multipart/form-data` with `phone`, the image as a file in `image` or as an http(s)
/// URL in `image_url`, and an optional `caption` (compatible route). Images are always sent as
/// JPEG, at most 1200 px on the longest side. An `image_url` is fetched before the send is
/// accepted, from public addresses only, within 30 s and up to `MAX_MEDIA_BYTES`.
#[utoipa::path(post, path = "/send/image", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body(content_type = "multipart/form-data", description = "phone, caption, and image (a file) or image_url"),
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, an unreadable form, or a missing or bad field: phone, image, image_url (not http(s), an address that is not public, no answer in 30 s, not an image)"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 413, description = "The body, or the file at `image_url`, is larger than `MAX_MEDIA_BYTES` (20 MiB by default)")),
    security(("bearer" = [])))]
async fn send_image(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Multipart(form): Multipart,
) -> ApiResult<axum::response::Response> {
    let route = FileRoute {
        kind: MessageKind::Image,
        field: "image",
        url_field: "image_url",
        noun: "Image",
    };
    send_file(state, user, parts, headers, form, route).await
}

/// Send a video, `multipart/form-data` with `phone`, the video as a file in `video` or as an
/// http(s) URL in `video_url`, and an optional `caption` (compatible route). The video is sent as
/// given: MP4 (H.264 with AAC sound, as every phone plays it); anything else is refused.
/// `compress`, `hd`, `gif_playback`, `duration` and `reply_message_id` are not applied.
#[utoipa::path(post, path = "/send/video", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body(content_type = "multipart/form-data", description = "phone, caption, and video (a file) or video_url"),
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, an unreadable form, or a missing or bad field: phone, video (empty, not an MP4 video), video_url (not http(s), an address that is not public, no answer in 30 s)"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 413, description = "The body, or the file at `video_url`, is larger than `MAX_MEDIA_BYTES` (20 MiB by default)")),
    security(("bearer" = [])))]
async fn send_video(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Multipart(form): Multipart,
) -> ApiResult<axum::response::Response> {
    let route = FileRoute {
        kind: MessageKind::Video,
        field: "video",
        url_field: "video_url",
        noun: "Video",
    };
    send_file(state, user, parts, headers, form, route).await
}

/// Send an audio file, `multipart/form-data` with `phone` and the file in `audio` or as an http(s)
/// URL in `audio_url` (compatible route). It is sent as given: OGG Opus, MP3, M4A, AAC or AMR;
/// anything else is refused. `ptt` (a voice note), `duration` and `reply_message_id` are not
/// applied.
#[utoipa::path(post, path = "/send/audio", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body(content_type = "multipart/form-data", description = "phone, and audio (a file) or audio_url"),
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, an unreadable form, or a missing or bad field: phone, audio (empty, not a format WhatsApp plays), audio_url (not http(s), an address that is not public, no answer in 30 s)"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 413, description = "The body, or the file at `audio_url`, is larger than `MAX_MEDIA_BYTES` (20 MiB by default)")),
    security(("bearer" = [])))]
async fn send_audio(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Multipart(form): Multipart,
) -> ApiResult<axum::response::Response> {
    let route = FileRoute {
        kind: MessageKind::Audio,
        field: "audio",
        url_field: "audio_url",
        noun: "Audio",
    };
    send_file(state, user, parts, headers, form, route).await
}

/// Send a document, `multipart/form-data` with `phone`, the file in `file` or as an http(s) URL in
/// `file_url`, and an optional `caption` (compatible route). Any file is sent as it is, under its
/// name (the URL's last segment for `file_url`) and type (the one given with it, else what its
/// content or name says). `duration` and `reply_message_id` are not applied.
#[utoipa::path(post, path = "/send/file", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body(content_type = "multipart/form-data", description = "phone, caption, and file (a file) or file_url"),
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, an unreadable form, or a missing or bad field: phone, file (empty), file_url (not http(s), an address that is not public, no answer in 30 s)"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 413, description = "The body, or the file at `file_url`, is larger than `MAX_MEDIA_BYTES` (20 MiB by default)")),
    security(("bearer" = [])))]
async fn send_document(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Multipart(form): Multipart,
) -> ApiResult<axum::response::Response> {
    let route = FileRoute {
        kind: MessageKind::Document,
        field: "file",
        url_field: "file_url",
        noun: "File",
    };
    send_file(state, user, parts, headers, form, route).await
}

/// Send a sticker, `multipart/form-data` with `phone` and the picture (JPEG, PNG, WebP or GIF) in
/// `sticker` or as an http(s) URL in `sticker_url` (compatible route). It is sent as WhatsApp
/// shows stickers: a 512 x 512 px WebP, the picture fitted in the middle on a transparent
/// background (an animated GIF or WebP keeps its first frame). `duration` is not applied.
#[utoipa::path(post, path = "/send/sticker", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body(content_type = "multipart/form-data", description = "phone, and sticker (a picture) or sticker_url"),
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, an unreadable form, or a missing or bad field: phone, sticker (empty, not a picture, over 40 megapixels), sticker_url (not http(s), an address that is not public, no answer in 30 s)"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 413, description = "The body, or the file at `sticker_url`, is larger than `MAX_MEDIA_BYTES` (20 MiB by default)")),
    security(("bearer" = [])))]
async fn send_sticker(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Multipart(form): Multipart,
) -> ApiResult<axum::response::Response> {
    let route = FileRoute {
        kind: MessageKind::Sticker,
        field: "sticker",
        url_field: "sticker_url",
        noun: "Sticker",
    };
    send_file(state, user, parts, headers, form, route).await
}

/// Body of `POST /send/chat-presence`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatPresenceBody {
    /// The chat: the other person's number with its country code, or their JID.
    pub phone: String,
    /// `start` to show "typing…" in the chat, `stop` to stop.
    pub action: String,
}

/// Show or stop "typing…" in a personal chat, through the device's live session (compatible
/// route). WhatsApp shows it to the person for a few seconds unless renewed; `stop` ends it.
#[utoipa::path(post, path = "/send/chat-presence", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id")),
    request_body = ChatPresenceBody,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named, or a missing or bad field: phone, action"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn chat_presence(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    Json(body): Json<ChatPresenceBody>,
) -> ApiResult<impl IntoResponse> {
    let device = target_device(&parts, &state, &user, None).await?;
    let typing = match body.action.trim() {
        "start" => true,
        "stop" => false,
        other => {
            return Err(ApiError::Invalid(format!(
                "action: `{other}` is neither `start` nor `stop`"
            )));
        }
    };
    let chat = Jid::for_phone(&phone_number(&body.phone, "phone", &state)?);
    let question = serde_json::json!({ "chat": chat, "typing": typing });
    ask_session(&state, user.id, device, "chat_presence", question, "showing typing").await?;
    let status = format!("Send chat presence {} success", body.action.trim());
    Ok(done(String::new(), &status))
}

/// Query of `GET /user/check` and `GET /user/info`.
#[derive(Debug, Deserialize)]
pub(crate) struct PhoneQuery {
    pub phone: Option<String>,
}

/// The number of a `?phone=` query, as upstream takes it: with its country code, with or without
/// `+`, or as a JID (`6289685028129@s.whatsapp.net`). `doing` names what it is for (`check`).
pub(crate) fn query_phone(raw: Option<&str>, doing: &str, state: &AppState) -> ApiResult<PhoneNumber> {
    let raw = raw
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::Invalid(format!("phone: give the number to {doing}, e.g. ?phone=60123456789")))?;
    let international = if raw.starts_with('+') || raw.contains('@') {
        raw.to_owned()
    } else {
        format!("+{raw}")
    };
    phone_number(&international, "phone", state)
}

/// `results` of `GET /user/check`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserCheckResults {
    /// Whether the number has a WhatsApp account.
    pub is_on_whatsapp: bool,
}

/// Whether a number is on WhatsApp, asked through the device's live session (compatible route).
#[utoipa::path(get, path = "/user/check", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("phone" = String, Query, description = "Phone number with country code (`6289685028129`, `+6289685028129` or `6289685028129@s.whatsapp.net`)")),
    responses((status = 200, body = Envelope<UserCheckResults>), (status = 400, description = "Several devices and none named, or no or not a phone number"), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "The device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn user_check(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    Query(query): Query<PhoneQuery>,
) -> ApiResult<impl IntoResponse> {
    let device = target_device(&parts, &state, &user, None).await?;
    let phone = query_phone(query.phone.as_deref(), "check", &state)?;
    let checks = crate::sessions::run_check(&state, user.id, device, std::slice::from_ref(&phone)).await?;
    let is_on_whatsapp = checks.first().is_some_and(|c| c.jid.is_some());
    Ok(ok("Success check user", UserCheckResults { is_on_whatsapp }))
}
