//! Resources: a chat's transcript and a lead, reached by URI templates (there are too many to
//! list). Read through the caller's own devices like every tool.

use rmcp::ErrorData;
use rmcp::model::{ReadResourceResult, ResourceContents, ResourceTemplate};
use wafleet_core::db::Caller;
use wafleet_core::types::{DeviceId, LeadId, UserId};

use super::reads;
use crate::AppState;
use crate::error::{ApiError, ApiResult, OrNotFound};

/// Messages a transcript holds at most (the newest).
const TRANSCRIPT_MESSAGES: i64 = 200;
/// Template of a chat transcript's URI.
const CHAT_TEMPLATE: &str = "wafleet://devices/{device_id}/chats/{chat}";
/// Template of a lead's URI.
const LEAD_TEMPLATE: &str = "wafleet://leads/{lead_id}";

/// The resource templates.
pub(super) fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(CHAT_TEMPLATE, "chat_transcript")
            .with_title("Chat transcript")
            .with_description(
                "The newest 200 messages of a personal chat, oldest first, one per line with time and \
                 sender. `chat` is the chat's jid from list_chats or the contact's phone number.",
            )
            .with_mime_type("text/plain"),
        ResourceTemplate::new(LEAD_TEMPLATE, "lead")
            .with_title("Lead")
            .with_description("A lead (contact) with status, niche, journey and notes, as JSON.")
            .with_mime_type("application/json"),
    ]
}

/// Reads the resource at `uri`.
pub(super) async fn read(state: &AppState, caller: &Caller, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let user = caller.user.id;
    let path = uri.strip_prefix("wafleet://").ok_or_else(|| unknown(uri))?;
    let parts: Vec<&str> = path.split('/').collect();
    let contents = match parts.as_slice() {
        ["devices", device, "chats", chat] => {
            let device = device.parse().map(DeviceId).map_err(|_| unknown(uri))?;
            let chat = percent_decode(chat);
            let text = transcript(state, user, device, &chat)
                .await
                .map_err(|e| failed(e, uri))?;
            ResourceContents::text(text, uri).with_mime_type("text/plain")
        }
        ["leads", lead] => {
            let lead = lead.parse().map(LeadId).map_err(|_| unknown(uri))?;
            let lead = state
                .db
                .lead(user, lead)
                .await
                .or_not_found("lead")
                .map_err(|e| failed(e, uri))?;
            let json = serde_json::to_string_pretty(&lead).map_err(|e| failed(ApiError::Internal(e.into()), uri))?;
            ResourceContents::text(json, uri).with_mime_type("application/json")
        }
        _ => return Err(unknown(uri)),
    };
    Ok(ReadResourceResult::new(vec![contents]))
}

/// A chat's newest messages as text, oldest first: `[time] sender: text`.
pub(super) async fn transcript(state: &AppState, user: UserId, device: DeviceId, chat: &str) -> ApiResult<String> {
    let jid = reads::chat_jid(state, chat)?;
    let page = reads::chat_page(state, user, device, &jid, None, TRANSCRIPT_MESSAGES).await?;
    let contact = page.chat.name.clone().unwrap_or_else(|| page.chat.jid.clone());
    let mut lines = vec![format!("Chat with {contact} ({})", page.chat.jid)];
    if page.next_before.is_some() {
        lines.push(format!(
            "(older messages omitted; the newest {TRANSCRIPT_MESSAGES} follow)"
        ));
    }
    for message in page.messages.iter().rev() {
        let who = if message.from_me { "You" } else { contact.as_str() };
        let body = match (&message.body, message.kind.as_str()) {
            (Some(body), "text") => body.clone(),
            (Some(body), kind) => format!("[{kind}] {body}"),
            (None, kind) => format!("[{kind}]"),
        };
        let at = message.sent_at.to_datetime().format("%Y-%m-%d %H:%M UTC");
        lines.push(format!("[{at}] {who}: {body}"));
    }
    Ok(lines.join("\n"))
}

/// Decodes `%XX` escapes (a client may encode the `@` of a JID).
fn percent_decode(raw: &str) -> String {
    form_urlencoded::parse(format!("x={}", raw.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn unknown(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("unknown resource `{uri}`: use {CHAT_TEMPLATE} or {LEAD_TEMPLATE}"),
        None,
    )
}

fn failed(err: ApiError, uri: &str) -> ErrorData {
    match err {
        ApiError::NotFound(what) => {
            ErrorData::resource_not_found(format!("{what} not found (or not yours): {uri}"), None)
        }
        ApiError::Internal(cause) => {
            tracing::error!(error = ?cause, "reading an MCP resource failed");
            ErrorData::internal_error("internal error: the server logged the cause", None)
        }
        other => ErrorData::invalid_params(other.to_string(), None),
    }
}
