//! Outbound sends: accepted, recorded under an idempotency key, queued for the device's holder,
//! answered at once with the send's id; `GET /api/messages/{id}` follows it.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{Device, DeviceStatus, NewSend, OutboundMessage};
use wafleet_core::link::{Attachment, Jid, MessageKind, Structured, USER_SERVER};
use wafleet_core::queue::{SendJob, sends_queue};
use wafleet_core::types::{DeviceId, PhoneNumber, Timestamp, UserId};

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::{CurrentCaller, CurrentUser};

/// Longest text WhatsApp carries in one message.
const MAX_TEXT_CHARS: usize = 65_536;
/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 200;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_from_device))
        .routes(routes!(send_status))
}

/// A message to send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendRequest {
    /// The recipient: a phone number (`+60123456789`, or national with the default country) or a
    /// personal JID (`60123456789@s.whatsapp.net`).
    pub to: String,
    /// Text, or the caption when `image_base64` is given.
    pub text: Option<String>,
    /// An image (JPEG, PNG, WebP or GIF), base64-encoded. It is sent as a JPEG of at most
    /// 1200 px on the longest side.
    pub image_base64: Option<String>,
}

/// Send a text or image from a device. Answers 202 with the send's id at once; repeating a
/// request with the same `Idempotency-Key` answers 200 with the same send and never sends twice.
#[utoipa::path(post, path = "/api/devices/{id}/send", tag = "messages",
    params(("id" = i64, Path, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send (max 200 characters)")),
    request_body = SendRequest,
    responses((status = 202, body = Envelope<OutboundMessage>, description = "Queued"),
              (status = 200, body = Envelope<OutboundMessage>, description = "Already accepted under this key"),
              (status = 404, description = "No such device of yours"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 422, description = "Bad recipient, text or image")))]
async fn send_from_device(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    headers: HeaderMap,
    Json(body): Json<SendRequest>,
) -> ApiResult<Response> {
    let image = decode_image(body.image_base64.as_deref())?;
    let (message, created) = accept(
        &state,
        user.id,
        device,
        idempotency_key(&headers)?,
        &body.to,
        Draft::new(body.text, image.map(Payload::Image)),
    )
    .await?;
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let mut response = (status, axum::Json(envelope_of(message))).into_response();
    if !created {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn envelope_of(message: OutboundMessage) -> Envelope<OutboundMessage> {
    Envelope {
        code: "SUCCESS".into(),
        message: format!("message {}", message.status.as_str()),
        results: message,
    }
}

/// Where one of your sends stands: queued, sending, sent, delivered, read, or failed with a reason.
/// While it is queued and something holds it back, `waiting_reason` says what (the device's pace,
/// its daily cap with the warm-up day of a new number, a pause after refusals, a retry, or the
/// device not online) and `next_attempt_at` when it should move (`null` while that waits on the
/// device coming back online).
#[utoipa::path(get, path = "/api/messages/{id}", tag = "messages", params(("id" = i64, Path, description = "Send id")),
    responses((status = 200, body = Envelope<OutboundMessage>), (status = 404, description = "No such send of yours")))]
async fn send_status(
    State(state): State<AppState>,
    CurrentCaller(caller): CurrentCaller,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    let mut message = state
        .db
        .outbound_message(caller.user.id, id)
        .await
        .or_not_found("message")?;
    // A token limited to other devices does not see this device's sends.
    if !caller.reaches(message.device_id) {
        return Err(ApiError::NotFound("message"));
    }
    state.db.explain_waiting(&mut message, Timestamp::now()).await?;
    Ok(ok(format!("message {}", message.status.as_str()), message))
}

/// The `Idempotency-Key` header, or a fresh key when there is none.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<String> {
    match headers.get("idempotency-key") {
        None => Ok(format!("wafleet-{:032x}", rand::random::<u128>())),
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
                    ))
                })?;
            Ok(key.to_owned())
        }
    }
}

/// Parses a recipient: a phone number, or the JID of a person (never a group or broadcast).
pub(crate) fn recipient(raw: &str, state: &AppState) -> ApiResult<Jid> {
    phone_number(raw, "to", state).map(|phone| Jid::for_phone(&phone))
}

/// Parses a phone number given as a number (`+60123456789`, or national with the default
/// country) or as a person's JID (`60123456789@s.whatsapp.net`); `field` names it in refusals.
pub(crate) fn phone_number(raw: &str, field: &str, state: &AppState) -> ApiResult<PhoneNumber> {
    let raw = raw.trim();
    let number = match raw.split_once('@') {
        Some((user, USER_SERVER)) => format!("+{}", user.split(':').next().unwrap_or(user)),
        Some(_) => {
            return Err(ApiError::Invalid(format!(
                "{field}: `{raw}` is not a person's chat; wafleet sends to personal chats only (no groups or broadcasts)"
            )));
        }
        None => raw.to_owned(),
    };
    PhoneNumber::parse(&number, state.settings.default_country).map_err(|e| ApiError::Invalid(format!("{field}: {e}")))
}

/// What a send says, as the client gave it: its text (or caption), what it carries beside it, and
/// whether it goes out marked "Forwarded".
#[derive(Default)]
pub(crate) struct Draft {
    /// The text, or a file's caption.
    pub text: Option<String>,
    /// A file, or a contact card, location, link or poll.
    pub payload: Option<Payload>,
    /// Marked "Forwarded".
    pub forwarded: bool,
}

impl Draft {
    /// A draft of `text` and `payload`, not forwarded.
    pub(crate) fn new(text: Option<String>, payload: Option<Payload>) -> Self {
        Draft {
            text,
            payload,
            forwarded: false,
        }
    }
}

/// Validates a send, records it (or finds the one already recorded under `key`) and queues it
/// for the device's holder. Returns the send and whether it is new.
pub(crate) async fn accept(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    key: String,
    to: &str,
    draft: Draft,
) -> ApiResult<(OutboundMessage, bool)> {
    let Draft {
        text,
        payload,
        forwarded,
    } = draft;
    let current = state.db.device(user, device).await.or_not_found("device")?;
    let to = recipient(to, state)?;
    let text = match &payload {
        // What a person reads of it: the chat's text, and what a repeated key is compared by.
        Some(Payload::Structured(structured)) => Some(structured.summary()),
        _ => text_content(text, payload.is_some())?,
    };
    // Every cheap check passes before a file is read or an image decoded.
    ensure_linked(&current)?;
    let (media, structured) = match payload {
        Some(Payload::Structured(structured)) => (None, Some(structured)),
        Some(file) => (Some(file.prepare().await?), None),
        None => (None, None),
    };
    let new = NewSend {
        user,
        device,
        idempotency_key: key,
        to,
        body: text,
        media,
        structured,
        forwarded,
    };
    let (message, created) = state
        .db
        .record_send(&new)
        .await
        .map_err(|e| ApiError::from_core(e, "device"))?;
    if created {
        enqueue(state, &message).await;
    }
    Ok((message, created))
}

/// What a send carries beside its text, as the client gave it.
pub(crate) enum Payload {
    /// A contact card, location, link or poll, already checked (its summary is the send's text).
    Structured(Structured),
    /// A file as it goes out, already checked (one wafleet keeps, forwarded).
    Ready(Attachment),
    /// A picture in any format wafleet reads: sent as a JPEG ([`image_content`]).
    Image(Vec<u8>),
    /// A video, audio file, document or sticker, checked for its kind ([`Payload::prepare`]).
    File {
        /// Which.
        kind: MessageKind,
        /// The form field it came in, named in refusals.
        field: &'static str,
        /// The file.
        bytes: Vec<u8>,
        /// The type the client gave it, if any.
        content_type: Option<String>,
        /// The name the client gave it, if any.
        file_name: Option<String>,
    },
}

impl Payload {
    /// The file as it goes out, or why it cannot: a picture compressed to JPEG, a sticker made
    /// a 512 px WebP, a video or audio file checked to be a format WhatsApp plays, a document
    /// given its type and a plain name. Refusals name the field and say what to send instead.
    pub(crate) async fn prepare(self) -> ApiResult<Attachment> {
        let (kind, field, bytes, content_type, file_name) = match self {
            Payload::Image(bytes) => {
                let jpeg = image_content(Some(bytes)).await?.unwrap_or_default();
                return Ok(Attachment::jpeg(jpeg));
            }
            Payload::File {
                kind,
                field,
                bytes,
                content_type,
                file_name,
            } => (kind, field, bytes, content_type, file_name),
            Payload::Structured(structured) => {
                return Err(ApiError::Invalid(format!("a {} carries no file", structured.kind())));
            }
            Payload::Ready(file) => return Ok(file),
        };
        if bytes.is_empty() {
            return Err(ApiError::Invalid(format!("{field}: the file is empty")));
        }
        let refused = |e: wafleet_core::media::MediaError| ApiError::Invalid(format!("{field}: {e}"));
        let (bytes, mime) = match kind {
            MessageKind::Video => {
                let mime = wafleet_core::media::video_mime(&bytes).map_err(refused)?;
                (bytes, mime.to_owned())
            }
            MessageKind::Audio => {
                let mime = wafleet_core::media::audio_mime(&bytes).map_err(refused)?;
                (bytes, mime.to_owned())
            }
            MessageKind::Sticker => {
                let webp = wafleet_core::media::sticker_off_runtime(bytes).await.map_err(refused)?;
                (webp, "image/webp".to_owned())
            }
            _ => {
                let mime = document_mime(&bytes, content_type.as_deref(), file_name.as_deref());
                (bytes, mime)
            }
        };
        Ok(Attachment {
            kind,
            bytes,
            mime,
            file_name: (kind == MessageKind::Document).then(|| document_name(file_name.as_deref())),
        })
    }
}

/// A document's MIME type: the one the client gave, unless it is none or the generic
/// `application/octet-stream`; else what the file's first bytes say; else what its name says.
fn document_mime(bytes: &[u8], given: Option<&str>, name: Option<&str>) -> String {
    let given = given
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "application/octet-stream" && m.parse::<mime::Mime>().is_ok());
    if let Some(given) = given {
        return given.to_owned();
    }
    wafleet_core::media::sniffed_mime(bytes)
        .map(str::to_owned)
        .or_else(|| name.and_then(|n| mime_guess::from_path(n).first_raw().map(str::to_owned)))
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// The name a document is shown with: the client's, without any folder part or control
/// characters, at most 200 characters; `file` when it gave none.
fn document_name(given: Option<&str>) -> String {
    let base = given.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".into()
    } else {
        clean.to_owned()
    }
}

/// Checks a message's text (`None` when blank); `has_image` says whether a file comes with it.
pub(crate) fn text_content(text: Option<String>, has_image: bool) -> ApiResult<Option<String>> {
    let text = text.filter(|t| !t.trim().is_empty());
    if let Some(text) = &text
        && text.chars().count() > MAX_TEXT_CHARS
    {
        return Err(ApiError::Invalid(format!("text: at most {MAX_TEXT_CHARS} characters")));
    }
    if text.is_none() && !has_image {
        return Err(ApiError::Invalid("give the text to send, or an image".into()));
    }
    Ok(text)
}

/// Compresses an image as every send's is, off the async runtime and within the pixel budget
/// (see [`wafleet_core::media`]). Call it after every cheap check of the request has passed.
pub(crate) async fn image_content(image: Option<Vec<u8>>) -> ApiResult<Option<Vec<u8>>> {
    match image {
        None => Ok(None),
        Some(bytes) => wafleet_core::media::compress_off_runtime(bytes)
            .await
            .map(Some)
            .map_err(|e| ApiError::Invalid(format!("image: {e}"))),
    }
}

/// Refuses sends from a device that is not linked to WhatsApp (409, saying what to do).
pub(crate) fn ensure_linked(device: &Device) -> ApiResult<()> {
    match device.status {
        DeviceStatus::LoggedOut | DeviceStatus::Banned | DeviceStatus::Pairing => Err(ApiError::Conflict(format!(
            "the device is {}: link it before sending",
            device.status.as_str().replace('_', " ")
        ))),
        _ if device.jid.is_none() => Err(ApiError::Conflict(
            "the device is not linked yet: pair it by QR code or pair code first".into(),
        )),
        _ => Ok(()),
    }
}

/// Decodes an `image_base64` field.
pub(crate) fn decode_image(b64: Option<&str>) -> ApiResult<Option<Vec<u8>>> {
    b64.map(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ApiError::Invalid("image_base64: not valid base64".into()))
    })
    .transpose()
}

/// Tells the device's holder about a new send. Best effort: the send is already recorded, and the
/// holder's sweep finds it if this push fails or no worker holds the device yet.
pub(crate) async fn enqueue(state: &AppState, message: &OutboundMessage) {
    let Some(queues) = &state.queues else {
        return;
    };
    let holder = match state.db.device_holder(message.device_id).await {
        Ok(Some(holder)) => holder,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = ?err, "finding the device's holder failed; the sweep will queue the send");
            return;
        }
    };
    let job = SendJob {
        message: message.id,
        device: message.device_id,
    };
    if let Err(err) = queues.push(&sends_queue(&holder), job).await {
        tracing::warn!(error = ?err, "queueing a send failed; the holder's sweep will find it");
    }
}

/// A file field of a multipart form.
pub(crate) struct FormFile {
    /// Its content.
    pub bytes: Vec<u8>,
    /// The file name the client gave.
    pub file_name: Option<String>,
    /// The content type the client gave.
    pub content_type: Option<String>,
}

/// Reads a multipart form into named text fields and the one file field `file_field`; `limit` is
/// the body limit, named when the form outgrows it.
pub(crate) async fn read_form(
    mut form: axum::extract::Multipart,
    file_field: &str,
    limit: usize,
) -> ApiResult<(std::collections::HashMap<String, String>, Option<FormFile>)> {
    let unreadable = |what: String, err: axum::extract::multipart::MultipartError| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("{what}: {}", err.body_text()))
        }
    };
    let mut fields = std::collections::HashMap::new();
    let mut file = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| unreadable("malformed multipart form".into(), e))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == file_field {
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field
                .bytes()
                .await
                .map_err(|e| unreadable(format!("reading `{name}`"), e))?;
            file = Some(FormFile {
                bytes: bytes.to_vec(),
                file_name,
                content_type,
            });
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| unreadable(format!("reading `{name}`"), e))?;
            crate::text::refuse_nul(&name, &text)?;
            fields.insert(name, text);
        }
    }
    Ok((fields, file))
}
