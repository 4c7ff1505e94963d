//! Webhooks: the events a user's URL receives, their JSON bodies and their signature.
//!
//! Bodies follow the webhook payloads of the REST API wafleet grew out of, so receivers written
//! for it keep working: `{"event", "device_id", "timestamp", "payload"}`, the signature
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the exact body>`, `message`, `message.ack` and
//! `call.offer` shaped as there. wafleet adds `session_id` (its device id), the `device.connected`,
//! `device.disconnected`, `campaign.finished`, `sequence.step_sent`, `sequence.completed` and
//! `webhook.test` events, and a delivery id header that stays the same across retries and replays.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::link::{IncomingCall, IncomingMessage, Jid, ReceiptKind};
use crate::types::{DeviceId, Timestamp};

/// Header carrying `sha256=<hex HMAC-SHA256 of the body under the user's secret>`.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// Header carrying the delivery's id: the same on every attempt and replay, for de-duplication.
pub const DELIVERY_HEADER: &str = "X-Webhook-Delivery";
/// Header carrying the event's name.
pub const EVENT_HEADER: &str = "X-Webhook-Event";
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Shortest secret a user may choose.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret a user may choose.
pub const MAX_SECRET_LEN: usize = 256;

/// What a webhook can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub enum EventKind {
    /// A personal message arrived (or was written from the account's phone).
    #[serde(rename = "message")]
    Message,
    /// A message this account sent was delivered or read.
    #[serde(rename = "message.ack")]
    MessageAck,
    /// A device's session came online.
    #[serde(rename = "device.connected")]
    DeviceConnected,
    /// A device's session that was online went away (dropped, logged out, banned).
    #[serde(rename = "device.disconnected")]
    DeviceDisconnected,
    /// A campaign's last send settled.
    #[serde(rename = "campaign.finished")]
    CampaignFinished,
    /// A call is ringing on a device's account.
    #[serde(rename = "call.offer")]
    CallOffer,
    /// A sequence's step went out to a lead.
    #[serde(rename = "sequence.step_sent")]
    SequenceStepSent,
    /// A lead had every step of a sequence.
    #[serde(rename = "sequence.completed")]
    SequenceCompleted,
}

impl EventKind {
    /// Every event, in the order the dashboard lists them.
    pub const ALL: [EventKind; 8] = [
        EventKind::Message,
        EventKind::MessageAck,
        EventKind::CallOffer,
        EventKind::DeviceConnected,
        EventKind::DeviceDisconnected,
        EventKind::CampaignFinished,
        EventKind::SequenceStepSent,
        EventKind::SequenceCompleted,
    ];

    /// The event's name in bodies and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::MessageAck => "message.ack",
            EventKind::DeviceConnected => "device.connected",
            EventKind::DeviceDisconnected => "device.disconnected",
            EventKind::CampaignFinished => "campaign.finished",
            EventKind::CallOffer => "call.offer",
            EventKind::SequenceStepSent => "sequence.step_sent",
            EventKind::SequenceCompleted => "sequence.completed",
        }
    }

    /// Parses a name, in any case (as the REST API wafleet grew out of does).
    pub fn parse(name: &str) -> Option<EventKind> {
        let name = name.trim().to_ascii_lowercase();
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The events a user subscribed to, as stored: names separated by commas; empty means all.
pub fn wants(events: &str, kind: EventKind) -> bool {
    events.trim().is_empty() || events.split(',').any(|name| EventKind::parse(name) == Some(kind))
}

/// Checks a list of event names from a user; returns it normalised (sorted, no repeats).
pub fn parse_events(names: &[String]) -> Result<Vec<EventKind>, String> {
    let mut kinds = Vec::new();
    for name in names {
        let kind = EventKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("events: unknown event `{name}`; give any of {}", known.join(", "))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.sort_by_key(|k| EventKind::ALL.iter().position(|a| a == k));
    Ok(kinds)
}

/// Checks a webhook URL: absolute `http` or `https` with a host, no credentials, no fragment.
/// Returns it as given (trimmed), so what the user typed is what is shown.
pub fn parse_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("url: give the address wafleet should POST events to, e.g. https://example.com/hooks".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!("url: at most {MAX_URL_LEN} characters"));
    }
    let url =
        url::Url::parse(raw).map_err(|e| format!("url: not a valid URL ({e}); e.g. https://example.com/hooks"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url: must start with http:// or https:// (got {}:)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url: names no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url: must not carry a user name or password; use the secret to authenticate".into());
    }
    if url.fragment().is_some() {
        return Err("url: must not have a #fragment (it is never sent to the server)".into());
    }
    Ok(raw.to_owned())
}

/// Checks a secret a user chose.
pub fn parse_secret(raw: &str) -> Result<String, String> {
    let len = raw.chars().count();
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&len) || raw.trim() != raw {
        return Err(format!(
            "secret: give {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters without surrounding spaces, \
             or leave it out to have one generated"
        ));
    }
    Ok(raw.to_owned())
}

/// The `X-Hub-Signature-256` value for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `header` is the signature of `body` under `secret` (compared in constant time).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    crate::auth::constant_time_eq(&signature(secret, body), header)
}

/// The device an event is about, as the body names it.
#[derive(Clone, Debug)]
pub struct DeviceRef {
    /// wafleet's id (the body's `session_id`).
    pub id: DeviceId,
    /// Its name on the dashboard.
    pub name: String,
    /// Its WhatsApp JID once linked (the body's `device_id`, as the REST API wafleet grew out of names it).
    pub jid: Option<String>,
}

/// The envelope every body shares.
fn envelope(event: &str, device: Option<&DeviceRef>, at: Timestamp, payload: Value) -> String {
    let mut body = json!({ "event": event, "timestamp": at, "payload": payload });
    if let Some(device) = device {
        body["device_id"] = json!(device.jid.clone().unwrap_or_default());
        body["session_id"] = json!(device.id.0.to_string());
    }
    body.to_string()
}

/// `message`: a personal message stored for the first time.
pub fn message_body(device: &DeviceRef, m: &IncomingMessage, at: Timestamp) -> String {
    let mut payload = json!({
        "id": m.id,
        "chat_id": m.chat.0,
        "from": m.sender.0,
        "timestamp": m.sent_at,
        "is_from_me": m.from_me,
        "kind": m.kind.as_str(),
    });
    if let Some(name) = &m.push_name {
        payload["from_name"] = json!(name);
    }
    // The sender's LID, when known, as the upstream's payload carries it; `chat_lid` when the
    // message came from a LID wafleet has addressed by number.
    let lid = [Some(&m.sender), m.sender_alt.as_ref()]
        .into_iter()
        .flatten()
        .find(|jid| jid.is_lid());
    if let Some(lid) = lid {
        payload["from_lid"] = json!(lid.0);
        if !m.from_me && m.chat.is_phone() {
            payload["chat_lid"] = json!(lid.0);
        }
    }
    if let Some(text) = &m.text {
        payload["body"] = json!(text);
    }
    // The file, under its kind as the upstream's payload has it (`image`, `video`, `audio`,
    // `document`, `sticker`): where wafleet serves it once its worker fetched it (409 until
    // then, a moment after this event), with the caption and name the upstream gives.
    if let Some(media) = &m.media {
        let mut file = json!({
            "url": crate::media_store::served_at(device.id, &m.id),
            "mime_type": media.mime,
            "file_size": media.size,
        });
        if let Some(text) = &m.text {
            file["caption"] = json!(text);
        }
        if let Some(name) = &media.file_name {
            file["filename"] = json!(name);
        }
        payload[m.kind.as_str()] = file;
    }
    envelope(EventKind::Message.as_str(), Some(device), at, payload)
}

/// `message.ack`: receipts for messages this account sent.
pub fn receipt_body(device: &DeviceRef, chat: &Jid, kind: ReceiptKind, ids: &[String], at: Timestamp) -> String {
    let (name, description) = match kind {
        ReceiptKind::Delivered => (
            "delivered",
            "means the message was delivered to the device (but the user might not have noticed).",
        ),
        ReceiptKind::Read => ("read", "the user opened the chat and saw the message."),
    };
    let payload = json!({
        "ids": ids,
        "chat_id": chat.0,
        "from": chat.0,
        "receipt_type": name,
        "receipt_type_description": description,
    });
    envelope(EventKind::MessageAck.as_str(), Some(device), at, payload)
}

/// `device.connected` / `device.disconnected`.
pub fn device_body(device: &DeviceRef, kind: EventKind, status: &str, at: Timestamp) -> String {
    let payload = json!({ "id": device.id, "name": device.name, "jid": device.jid, "status": status });
    envelope(kind.as_str(), Some(device), at, payload)
}

/// `call.offer`, shaped as the upstream's: the call's id (which `POST /call/reject` names with
/// `payload.from`), the caller, the name they gave themselves, their platform and version.
/// `auto_rejected` is always false: wafleet rejects a call only when asked.
pub fn call_body(device: &DeviceRef, call: &IncomingCall, at: Timestamp) -> String {
    let mut payload = json!({
        "call_id": call.id,
        "from": call.from.0,
        "auto_rejected": false,
        "is_video": call.video,
    });
    for (key, value) in [
        ("sender_display_name", &call.name),
        ("remote_platform", &call.platform),
        ("remote_version", &call.version),
    ] {
        if let Some(value) = value {
            payload[key] = json!(value);
        }
    }
    envelope(EventKind::CallOffer.as_str(), Some(device), at, payload)
}

/// `campaign.finished`.
pub fn campaign_body(id: i64, title: &str, niche: &str, at: Timestamp) -> String {
    let payload = json!({ "id": id, "title": title, "niche": niche, "finished_at": at });
    envelope(EventKind::CampaignFinished.as_str(), None, at, payload)
}

/// Where a lead stands in a sequence, for `sequence.step_sent` and `sequence.completed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceProgress {
    /// The sequence's id and name.
    pub sequence: (i64, String),
    /// The step that went out (1 for the first), and how many the sequence has.
    pub step: (i64, i64),
    /// The lead's id and number (E.164).
    pub lead: (i64, String),
    /// The device it went out from.
    pub device: i64,
    /// The send's wafleet id and WhatsApp's message id.
    pub send: (i64, Option<String>),
    /// When WhatsApp accepted the step.
    pub sent_at: Option<Timestamp>,
    /// The sequence the lead moves to after the last step, if any.
    pub next_sequence: Option<i64>,
}

/// `sequence.step_sent`: which step of which sequence went to which lead, and the message.
pub fn sequence_step_body(p: &SequenceProgress, at: Timestamp) -> String {
    let payload = json!({
        "sequence_id": p.sequence.0,
        "sequence_name": p.sequence.1,
        "step": p.step.0,
        "steps": p.step.1,
        "lead_id": p.lead.0,
        "phone": p.lead.1,
        "device": p.device,
        "send_id": p.send.0,
        "message_id": p.send.1,
        "sent_at": p.sent_at,
    });
    envelope(EventKind::SequenceStepSent.as_str(), None, at, payload)
}

/// `sequence.completed`: a lead had the last step; `next_sequence_id` is where they move.
pub fn sequence_completed_body(p: &SequenceProgress, at: Timestamp) -> String {
    let payload = json!({
        "sequence_id": p.sequence.0,
        "sequence_name": p.sequence.1,
        "steps": p.step.1,
        "lead_id": p.lead.0,
        "phone": p.lead.1,
        "device": p.device,
        "next_sequence_id": p.next_sequence,
        "completed_at": at,
    });
    envelope(EventKind::SequenceCompleted.as_str(), None, at, payload)
}

/// Name of the test event (sent whatever the user subscribed to).
pub const TEST_EVENT: &str = "webhook.test";

/// `webhook.test`: what the dashboard's *Send test event* sends.
pub fn test_body(at: Timestamp) -> String {
    envelope(TEST_EVENT, None, at, json!({ "message": "test event from wafleet" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_accept_http_and_https_only() {
        assert!(parse_url("https://example.com/hooks?x=1").is_ok());
        assert!(parse_url(" http://127.0.0.1:9000/h ").is_ok());
        for bad in [
            "",
            "example.com/hooks",
            "ftp://example.com",
            "javascript:alert(1)",
            "https://u:p@example.com",
            "https://example.com/#x",
            "http://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify("Jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify("Jefe", b"what do ya want for nothing!", &sig));
    }

    #[test]
    fn a_message_from_a_lid_names_it_as_the_upstream_does() {
        let device = DeviceRef {
            id: DeviceId(7),
            name: "sales".into(),
            jid: None,
        };
        let mut m = IncomingMessage {
            id: "3EB0A".into(),
            chat: Jid("60111@s.whatsapp.net".into()),
            sender: Jid("60111@s.whatsapp.net".into()),
            sender_alt: Some(Jid("2511@lid".into())),
            from_me: false,
            push_name: None,
            kind: crate::link::MessageKind::Text,
            text: Some("hi".into()),
            sent_at: Timestamp(1),
            history: false,
            media: None,
        };
        let body =
            |m: &IncomingMessage| -> Value { serde_json::from_str(&message_body(&device, m, Timestamp(2))).unwrap() };
        // Addressed by number, its LID known.
        let known = body(&m);
        assert_eq!(known["payload"]["from"], "60111@s.whatsapp.net");
        assert_eq!(known["payload"]["from_lid"], "2511@lid");
        assert_eq!(known["payload"]["chat_lid"], "2511@lid");
        // Only the LID known: it is the sender, and the chat is the LID's own.
        m.chat = Jid("2511@lid".into());
        m.sender = Jid("2511@lid".into());
        m.sender_alt = None;
        let lid_only = body(&m);
        assert_eq!(lid_only["payload"]["from_lid"], "2511@lid");
        assert!(lid_only["payload"].get("chat_lid").is_none());
        // No LID at all.
        m.chat = Jid("60111@s.whatsapp.net".into());
        m.sender = m.chat.clone();
        assert!(body(&m)["payload"].get("from_lid").is_none());
    }

    #[test]
    fn a_file_is_named_under_its_kind_as_the_upstream_does() {
        let device = DeviceRef {
            id: DeviceId(7),
            name: "sales".into(),
            jid: None,
        };
        let document = IncomingMessage {
            id: "3EB0 B+1".into(),
            chat: Jid("60111@s.whatsapp.net".into()),
            sender: Jid("60111@s.whatsapp.net".into()),
            sender_alt: None,
            from_me: false,
            push_name: None,
            kind: crate::link::MessageKind::Document,
            text: Some("the prices".into()),
            sent_at: Timestamp(1),
            history: false,
            media: Some(crate::link::IncomingMedia {
                mime: "application/pdf".into(),
                size: 2048,
                file_name: Some("prices.pdf".into()),
                locator: "secret keys".into(),
            }),
        };
        let body: Value = serde_json::from_str(&message_body(&device, &document, Timestamp(2))).unwrap();
        assert_eq!(
            body["payload"]["document"],
            json!({
                "url": "/api/devices/7/media/3EB0%20B%2B1",
                "mime_type": "application/pdf",
                "file_size": 2048,
                "caption": "the prices",
                "filename": "prices.pdf",
            })
        );
        assert_eq!(body["payload"]["body"], "the prices");
        assert!(
            !body.to_string().contains("secret keys"),
            "the link's locator stays inside"
        );
    }

    #[test]
    fn event_filters() {
        assert!(wants("", EventKind::Message));
        assert!(wants("message.ack,DEVICE.CONNECTED", EventKind::DeviceConnected));
        assert!(!wants("message.ack", EventKind::Message));
        assert!(parse_events(&["nope".into()]).is_err());
        assert_eq!(
            parse_events(&["campaign.finished".into(), "message".into(), "message".into()]).unwrap(),
            vec![EventKind::Message, EventKind::CampaignFinished]
        );
    }
}
