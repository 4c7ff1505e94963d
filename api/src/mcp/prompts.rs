//! Prompts: "summarise this chat" and "draft a follow-up", each carrying the chat's transcript.

use rmcp::ErrorData;
use rmcp::model::{GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role};
use wafleet_core::db::Caller;
use wafleet_core::types::DeviceId;

use super::resources::transcript;
use crate::AppState;
use crate::error::ApiError;

/// The prompts and their arguments.
pub(super) fn list() -> Vec<Prompt> {
    let chat_args = || {
        vec![
            PromptArgument::new("device_id")
                .with_description("The device the chat is on (an id from list_devices)")
                .with_required(true),
            PromptArgument::new("chat")
                .with_description("The chat's jid from list_chats, or the contact's phone number")
                .with_required(true),
        ]
    };
    let mut follow_up = chat_args();
    follow_up.push(
        PromptArgument::new("goal")
            .with_description("What the follow-up should achieve, e.g. \"book a tasting\"")
            .with_required(false),
    );
    vec![
        Prompt::new(
            "summarise_chat",
            Some("Summarise a WhatsApp chat: who the contact is, what they want, what was agreed, what is open"),
            Some(chat_args()),
        )
        .with_title("Summarise this chat"),
        Prompt::new(
            "draft_follow_up",
            Some("Draft a follow-up message for a chat, to be approved before it is sent"),
            Some(follow_up),
        )
        .with_title("Draft a follow-up"),
    ]
}

/// The prompt `name` with its arguments filled in.
pub(super) async fn get(
    state: &AppState,
    caller: &Caller,
    name: &str,
    arguments: Option<&JsonObject>,
) -> Result<GetPromptResult, ErrorData> {
    let arg = |key: &str| {
        arguments
            .and_then(|a| a.get(key))
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
    };
    let instructions = match name {
        "summarise_chat" => "Summarise this WhatsApp conversation for a salesperson in a few bullet points: \
             who the contact is, what they asked for or want, what was promised or agreed, open \
             questions, and the next step with its date if one was mentioned."
            .to_owned(),
        "draft_follow_up" => {
            let goal = arg("goal").filter(|g| !g.trim().is_empty());
            format!(
                "Draft one short, friendly WhatsApp follow-up message to this contact, in the language \
                 and tone of the conversation{}. Refer to what was said; do not invent prices or \
                 promises. Show the draft and wait for approval before sending it with send_text \
                 (with a new idempotency_key).",
                goal.map(|g| format!(", aiming to {g}")).unwrap_or_default()
            )
        }
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt `{other}`: use summarise_chat or draft_follow_up"),
                None,
            ));
        }
    };
    let device = arg("device_id")
        .and_then(|d| d.trim().parse::<i64>().ok())
        .map(DeviceId)
        .ok_or_else(|| ErrorData::invalid_params("device_id: required, a device id from list_devices", None))?;
    let chat = arg("chat")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ErrorData::invalid_params("chat: required, a jid from list_chats or a phone number", None))?;
    let text = transcript(state, caller.user.id, device, &chat)
        .await
        .map_err(|err| match err {
            ApiError::NotFound(what) => ErrorData::invalid_params(format!("{what} not found (or not yours)"), None),
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "building an MCP prompt failed");
                ErrorData::internal_error("internal error: the server logged the cause", None)
            }
            other => ErrorData::invalid_params(other.to_string(), None),
        })?;
    Ok(GetPromptResult::new(vec![PromptMessage::new_text(
        Role::User,
        format!("{instructions}\n\n{text}"),
    )]))
}
