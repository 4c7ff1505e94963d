//! Client failures → [`LinkError`] classes, which decide what wafleet does next.

use wafleet_core::link::LinkError;
use whatsapp_rust::ClientError;
use whatsapp_rust::IqError;
use whatsapp_rust::send::SendError;

/// Classifies a failed send while `doing` something. Nothing left for WhatsApp when the client
/// refuses before writing the stanza, so those failures may be retried; only the device's own
/// state (not logged in) is a device failure.
pub(crate) fn classify_send(doing: &str, error: &SendError) -> LinkError {
    let message = format!("{doing}: {error}");
    match error {
        SendError::NotLoggedIn => LinkError::Device(message),
        SendError::Client(client) => classify_client(message, client),
        SendError::Iq(iq) => classify_iq(message, iq),
        SendError::InvalidRequest(_) => LinkError::Invalid(message),
        _ => LinkError::Transient(message),
    }
}

/// Classifies a client failure by its kind.
pub(crate) fn classify_client(message: String, error: &ClientError) -> LinkError {
    match error {
        ClientError::NotLoggedIn => LinkError::Device(message),
        ClientError::Iq(iq) => classify_iq(message, iq),
        _ => LinkError::Transient(message),
    }
}

/// Classifies a failed IQ by the server's code.
pub(crate) fn classify_iq(message: String, error: &IqError) -> LinkError {
    match error {
        IqError::ServerError { code, .. } => match code {
            400 | 406 => LinkError::Invalid(message),
            401 | 403 => LinkError::Device(message),
            404 | 463 => LinkError::Recipient(message),
            _ => LinkError::Transient(message),
        },
        _ => LinkError::Transient(message),
    }
}

/// Classifies WhatsApp's refusal of a sent message by its code (the `error` of its `<ack>`).
pub(crate) fn classify_nack(code: &str) -> LinkError {
    match code {
        // 463: no privacy token for a new chat, or the account may not start new chats now.
        "463" => LinkError::Recipient(
            "463 WhatsApp refused the message to a new chat (privacy token missing, or new chats restricted)".into(),
        ),
        // 475: the account's monthly cap on messages to new chats is used up.
        "475" => LinkError::Restricted("475 the monthly cap on messages to new chats is used up".into()),
        "404" => LinkError::Recipient("404 the recipient has no WhatsApp account".into()),
        "400" | "479" => LinkError::Invalid(format!("{code} WhatsApp refused the message as malformed")),
        "401" | "403" => LinkError::Device(format!("{code} WhatsApp refused the device")),
        other => LinkError::Transient(format!("{other} WhatsApp refused the message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_cause() {
        assert!(matches!(
            classify_send("send", &SendError::NotLoggedIn),
            LinkError::Device(_)
        ));
        assert!(matches!(
            classify_send("send", &SendError::Client(ClientError::NotConnected)),
            LinkError::Transient(_)
        ));
        let refused = IqError::ServerError {
            code: 463,
            text: "nope".into(),
            error_type: None,
            backoff: None,
        };
        assert!(matches!(classify_iq("send".into(), &refused), LinkError::Recipient(_)));
        let unlinked = IqError::ServerError {
            code: 401,
            text: "".into(),
            error_type: None,
            backoff: None,
        };
        assert!(matches!(classify_iq("logout".into(), &unlinked), LinkError::Device(_)));
        assert!(matches!(
            classify_iq("check".into(), &IqError::Timeout),
            LinkError::Transient(_)
        ));
        assert!(matches!(classify_nack("463"), LinkError::Recipient(r) if r.contains("463")));
        assert!(matches!(classify_nack("500"), LinkError::Transient(_)));
    }
}
