//! The files of received messages (pictures, videos, voice notes, documents, stickers), as the
//! device's worker fetched and kept them: the file itself for the chat viewer and API clients
//! (`GET /api/devices/{id}/media/{message_id}`), and the upstream REST API's
//! `GET /message/{message_id}/download`, which says where that file is.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::MessageMedia;
use wafleet_core::media_store::MediaStore;
use wafleet_core::types::{DeviceId, UserId};

use crate::AppState;
use crate::compat::{Caller, upstream_statuses};
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Path, Query};
use crate::session::CurrentUser;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(message_file))
}

pub(crate) fn compat_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(download_message_media))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// Types a browser may show in the page rather than save: pictures (not SVG, which can hold
/// scripts), videos and sounds. Anything else is served as a download of unknown type.
fn shown_inline(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    (essence.starts_with("image/") && !essence.contains("svg"))
        || essence.starts_with("video/")
        || essence.starts_with("audio/")
}

/// The file of message `message_id` of `user`'s `device`: its record, and its bytes once kept
/// (its picture's thumbnail instead, with `true`, when `thumbnail` asks and there is one).
/// 404 when the message is not theirs or carries no file; 410 when the file was not kept (gone
/// from WhatsApp, too large, removed by retention: the message says which); 409 while it is
/// being fetched.
async fn kept_file(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    message_id: &str,
    thumbnail: bool,
) -> ApiResult<(MessageMedia, bytes::Bytes, bool)> {
    let media = state
        .db
        .message_media(user, device, message_id.trim())
        .await
        .or_not_found("message with a file")?;
    let gone = |why: String| ApiError::Gone(format!("the file of message {}: {why}", media.message_id));
    match media.state.as_str() {
        "pending" => {
            return Err(ApiError::Conflict(format!(
                "the file of message {} is still being fetched from WhatsApp; try again in a minute",
                media.message_id
            )));
        }
        "failed" => return Err(gone(media.error.clone().unwrap_or_else(|| "not kept".into()))),
        "expired" => return Err(gone("removed by your media retention".into())),
        _ => {}
    }
    let key = media.stored_key.clone().unwrap_or_default();
    let store = state.media().map_err(ApiError::Internal)?;
    if thumbnail
        && MediaStore::has_thumbnail(&media.mime)
        && let Some(small) = store.thumbnail(&key).await.map_err(ApiError::Internal)?
    {
        return Ok((media, small, true));
    }
    match store.get(&key).await {
        Ok(Some(bytes)) => Ok((media, bytes, false)),
        Ok(None) => Err(gone("the file is missing from the media directory".into())),
        Err(err) => Err(ApiError::Internal(err)),
    }
}

/// Query of `GET /api/devices/{id}/media/{message_id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// `true` to save the file rather than show it.
    #[serde(default)]
    pub download: bool,
    /// `true` for a picture's thumbnail (a JPEG of at most 320 px a side), as the chat viewer
    /// shows it; the file itself when it has none (not a picture, or made before thumbnails).
    #[serde(default)]
    pub thumbnail: bool,
}

/// The file a received message carries (a picture, video, voice note, document or sticker), as
/// wafleet kept it. Pictures, videos and sounds are shown in the page; anything else, and any
/// file with `download=true`, is saved under its name.
#[utoipa::path(get, path = "/api/devices/{id}/media/{message_id}", tag = "chats",
    params(("id" = i64, Path, description = "Device id"),
           ("message_id" = String, Path, description = "WhatsApp's id of the message"), FileQuery),
    responses((status = 200, description = "The file, with its type", content_type = "application/octet-stream"),
              (status = 401, description = "Not logged in"),
              (status = 404, description = "No such device or message of yours, or the message carries no file"),
              (status = 409, description = "The file is still being fetched from WhatsApp"),
              (status = 410, description = "The file was not kept: gone from WhatsApp, too large, or removed by retention")))]
async fn message_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((device, message_id)): Path<(i64, String)>,
    Query(query): Query<FileQuery>,
) -> ApiResult<Response> {
    let thumbnail = query.thumbnail && !query.download;
    let (media, bytes, small) = kept_file(&state, user.id, DeviceId(device), &message_id, thumbnail).await?;
    let inline = shown_inline(&media.mime) && !query.download;
    let mut headers = HeaderMap::new();
    let mime = if small {
        "image/jpeg"
    } else if inline {
        media.mime.as_str()
    } else {
        "application/octet-stream"
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let name = file_name(&media);
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        name.replace(['"', '\\'], "_")
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A file is the sender's: it may not run anything in wafleet's origin.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    Ok((headers, bytes).into_response())
}

/// A name to save the file under: the sender's (documents), else the message id and an
/// extension for its type. Only characters safe in a header and a file name are kept.
fn file_name(media: &MessageMedia) -> String {
    let given = media.file_name.as_deref().unwrap_or_default();
    let safe: String = given
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| !"/\\\"".contains(*c))
        .collect();
    if !safe.trim().is_empty() {
        return safe.trim().to_owned();
    }
    let essence = media.mime.split(';').next().unwrap_or_default().trim();
    let extension = match essence {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    let id: String = media.message_id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{}-{id}.{extension}", media.kind)
}

/// Query of `GET /message/{message_id}/download`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The chat the message is in: the other person's number or JID.
    pub phone: String,
}

/// `results` of `GET /message/{message_id}/download`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DownloadResults {
    /// What was done, for people.
    pub status: String,
    /// The message.
    pub message_id: String,
    /// `image`, `video`, `audio`, `document` or `sticker`.
    pub media_type: String,
    /// The file's name.
    pub filename: String,
    /// Where wafleet keeps it, under its media directory (`MEDIA_DIR`).
    pub file_path: String,
    /// Where to download it (with the same credentials as this call).
    pub file_url: String,
    /// Its size in bytes.
    pub file_size: i64,
}

/// Where the file a received message carries is (upstream `downloadMessageMedia`). wafleet
/// fetches every received file soon after its message arrives, so this answers at once;
/// `file_url` serves the file.
#[utoipa::path(get, path = "/message/{message_id}/download", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("message_id" = String, Path, description = "WhatsApp's id of a message the device received"),
           DownloadQuery),
    responses((status = 200, body = Envelope<DownloadResults>),
              (status = 400, description = "Several devices and none named; no or a bad phone; a message of another chat"),
              (status = 404, description = "No such device or message of yours, the message carries no file, or the file was not kept"),
              (status = 409, description = "The file is still being fetched from WhatsApp")),
    security(("bearer" = [])))]
async fn download_message_media(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Path(message_id): Path<String>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let message = crate::compat_message::message_in_chat(&state, &user, device, &message_id, &query.phone).await?;
    let (media, bytes, _) = match kept_file(&state, user.id, device, &message.id, false).await {
        // The upstream documents 404 for media it cannot give.
        Err(ApiError::Gone(why)) => return Err(ApiError::Missing(why)),
        other => other?,
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.settings.cookie_secure { "https" } else { "http" };
    let results = DownloadResults {
        status: "Media downloaded successfully".into(),
        file_url: format!(
            "{scheme}://{host}{}?download=true",
            wafleet_core::media_store::served_at(device, &media.message_id)
        ),
        file_path: format!("media/{}", media.stored_key.clone().unwrap_or_default()),
        filename: file_name(&media),
        media_type: media.kind.clone(),
        file_size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        message_id: media.message_id,
    };
    Ok(ok("Media downloaded successfully", results).into_response())
}
