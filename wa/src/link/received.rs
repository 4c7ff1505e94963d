//! Media of received messages: what a message says of it ([`locate`]), kept by wafleet as the
//! media's locator, and fetching it later through the client ([`download`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use wafleet_core::link::{IncomingMedia, LinkError};
use whatsapp_rust::Client;
use whatsapp_rust::download::{DownloadParams, MediaDownloadError};
use whatsapp_rust::wacore::download::{Downloadable, MediaType};
use whatsapp_rust::waproto::whatsapp as wa;

/// Everything a download needs, as the message gave it. Its JSON is the media's locator.
#[derive(serde::Serialize, serde::Deserialize)]
struct Locator {
    /// `image`, `video`, `audio`, `document` or `sticker`: which keys decrypt it.
    kind: String,
    /// The path on WhatsApp's media hosts.
    direct_path: String,
    /// The media key, base64.
    media_key: Option<String>,
    /// SHA-256 of the plaintext, base64.
    file_sha256: String,
    /// SHA-256 of the encrypted blob, base64.
    file_enc_sha256: Option<String>,
    /// Plaintext size.
    file_length: u64,
}

const KINDS: [(&str, MediaType); 5] = [
    ("image", MediaType::Image),
    ("video", MediaType::Video),
    ("audio", MediaType::Audio),
    ("document", MediaType::Document),
    ("sticker", MediaType::Sticker),
];

/// The client's media type for the kind of message named `kind` (`image`, `video`, …); `None`
/// for a kind that carries no file.
pub(crate) fn media_type(kind: &str) -> Option<MediaType> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t)
}

/// The media `m` carries (its picture, video, voice note, document or sticker), or `None` for
/// a message without media or whose media cannot be fetched (no path or hash).
pub(crate) fn locate(m: &wa::Message) -> Option<IncomingMedia> {
    let (downloadable, mime, file_name): (&dyn Downloadable, _, _) = if let Some(x) = m.image_message.as_option() {
        (x, x.mimetype.clone(), None)
    } else if let Some(x) = m.video_message.as_option() {
        (x, x.mimetype.clone(), None)
    } else if let Some(x) = m.audio_message.as_option() {
        (x, x.mimetype.clone(), None)
    } else if let Some(x) = m.document_message.as_option() {
        (x, x.mimetype.clone(), x.file_name.clone())
    } else if let Some(x) = m.sticker_message.as_option() {
        (x, x.mimetype.clone(), None)
    } else {
        return None;
    };
    let kind = KINDS.iter().find(|(_, t)| *t == downloadable.app_info())?.0;
    let size = downloadable.file_length().unwrap_or(0);
    let locator = Locator {
        kind: kind.to_owned(),
        direct_path: downloadable.direct_path()?.to_owned(),
        media_key: downloadable.media_key().map(|k| B64.encode(k)),
        file_sha256: B64.encode(downloadable.file_sha256()?),
        file_enc_sha256: downloadable.file_enc_sha256().map(|h| B64.encode(h)),
        file_length: size,
    };
    Some(IncomingMedia {
        mime: mime
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into()),
        size,
        file_name,
        locator: serde_json::to_string(&locator).ok()?,
    })
}

/// Fetches and decrypts `media` from WhatsApp's media hosts, checking it against its hashes.
pub(crate) async fn download(client: &Client, media: &IncomingMedia) -> Result<Vec<u8>, LinkError> {
    let invalid = |what: &str| LinkError::Invalid(format!("the media's locator {what}"));
    let locator: Locator = serde_json::from_str(&media.locator).map_err(|_| invalid("is not one this link wrote"))?;
    let media_type = media_type(&locator.kind).ok_or_else(|| invalid("names no known kind"))?;
    let decode = |b64: &str| B64.decode(b64).map_err(|_| invalid("holds a bad hash or key"));
    let params = DownloadParams {
        direct_path: locator.direct_path,
        media_key: locator.media_key.as_deref().map(decode).transpose()?,
        file_sha256: decode(&locator.file_sha256)?,
        file_enc_sha256: locator.file_enc_sha256.as_deref().map(decode).transpose()?,
        file_length: locator.file_length,
        media_type,
    };
    client.download_from_params(&params).await.map_err(|e| {
        // A reference the hosts rejected (expired, revoked, gone) will not come back.
        let gone = matches!(
            e.downcast_ref::<MediaDownloadError>(),
            Some(MediaDownloadError::ReferenceRejected(_) | MediaDownloadError::Other(_))
        );
        let text = format!("downloading the media: {e:#}");
        if gone {
            LinkError::Invalid(text)
        } else {
            LinkError::Transient(text)
        }
    })
}
