//! Opaque page cursors: a position in newest-first order (an instant and a tie-breaking key),
//! base64url-encoded so clients pass them back without reading them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use wafleet_core::db::{ChatCursor, MessageCursor};
use wafleet_core::types::Timestamp;

use crate::error::ApiError;

/// Longest cursor accepted (a JID or message id is well under this).
const MAX_CURSOR_CHARS: usize = 512;

fn encode(at: Timestamp, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{key}", at.millis()))
}

/// The instant and key of `raw`, or a 400 naming the parameter.
fn decode(param: &str, raw: &str) -> Result<(Timestamp, String), ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "{param}: not a cursor from this API; pass the value of a previous page, or omit it for the first page"
        ))
    };
    if raw.len() > MAX_CURSOR_CHARS {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, key) = text.split_once(':').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if key.is_empty() {
        return Err(bad());
    }
    Ok((Timestamp(at), key.to_owned()))
}

/// The cursor that continues a chat page after `cursor`.
pub(crate) fn encode_chat(cursor: &ChatCursor) -> String {
    encode(cursor.last_message_at, &cursor.jid)
}

/// Parses the `cursor` parameter of the chat list.
pub(crate) fn decode_chat(raw: &str) -> Result<ChatCursor, ApiError> {
    let (last_message_at, jid) = decode("cursor", raw)?;
    Ok(ChatCursor { last_message_at, jid })
}

/// The cursor that continues a message page before `cursor`.
pub(crate) fn encode_message(cursor: &MessageCursor) -> String {
    encode(cursor.sent_at, &cursor.id)
}

/// Parses the `before` parameter of the message list.
pub(crate) fn decode_message(raw: &str) -> Result<MessageCursor, ApiError> {
    let (sent_at, id) = decode("before", raw)?;
    Ok(MessageCursor { sent_at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_anything_else() {
        let chat = ChatCursor {
            last_message_at: Timestamp(1_700_000_000_123),
            jid: "60123456789@s.whatsapp.net".into(),
        };
        assert_eq!(decode_chat(&encode_chat(&chat)).unwrap(), chat);
        let message = MessageCursor {
            sent_at: Timestamp(-5),
            id: "3EB0:with:colons".into(),
        };
        assert_eq!(decode_message(&encode_message(&message)).unwrap(), message);
        for bad in ["", "!!", "bm9jb2xvbg", "YWJjOmRlZg", "MTIzOg", &"A".repeat(600)] {
            assert!(matches!(decode_chat(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}
