//! wa-rs failures → [`LinkError`] classes, which decide what wafleet does next.

use wa_rs::client::ClientError;
use wa_rs::request::IqError;
use wafleet_core::link::LinkError;

/// Classifies a wa-rs failure while `doing` something. Only failures that say the device itself
/// cannot act become [`LinkError::Device`]; unknown failures are transient (retried later).
pub(crate) fn classify(doing: &str, error: &anyhow::Error) -> LinkError {
    let message = format!("{doing}: {error:#}");
    for cause in error.chain() {
        if let Some(iq) = cause.downcast_ref::<IqError>() {
            return classify_iq(message, iq);
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return match client {
                ClientError::NotLoggedIn => LinkError::Device(message),
                _ => LinkError::Transient(message),
            };
        }
    }
    // wa-rs reports some refusals only as text.
    let lower = message.to_ascii_lowercase();
    if lower.contains("463") || lower.contains("not on whatsapp") || lower.contains("no devices") {
        LinkError::Recipient(message)
    } else if lower.contains("not logged in") || lower.contains("logged out") {
        LinkError::Device(message)
    } else {
        LinkError::Transient(message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_cause() {
        let not_logged_in = anyhow::Error::new(ClientError::NotLoggedIn).context("sending");
        assert!(matches!(classify("send", &not_logged_in), LinkError::Device(_)));
        let timeout = anyhow::Error::new(IqError::Timeout);
        assert!(matches!(classify("check", &timeout), LinkError::Transient(_)));
        let refused = anyhow::Error::new(IqError::ServerError {
            code: 463,
            text: "nope".into(),
        });
        assert!(matches!(classify("send", &refused), LinkError::Recipient(_)));
        let unlinked = anyhow::Error::new(IqError::ServerError {
            code: 401,
            text: "".into(),
        });
        assert!(matches!(classify("logout", &unlinked), LinkError::Device(_)));
        assert!(matches!(
            classify("send", &anyhow::anyhow!("boom")),
            LinkError::Transient(_)
        ));
    }
}
