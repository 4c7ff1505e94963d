//! What the read tools answer, through the same storage calls and checks as the REST routes:
//! every read goes through the caller's own devices, so another user's id is "not found".

use std::collections::HashMap;

use serde::Serialize;
use wafleet_core::db::{
    Analytics, Caller, Campaign, CampaignReport, ChatCursor, Device, Lead, MessageCursor, OutboundMessage,
};
use wafleet_core::link::Jid;
use wafleet_core::types::{CampaignId, DeviceId, LeadId, PhoneNumber};

use super::args::*;
use crate::AppState;
use crate::campaigns::fields::send_at;
use crate::chat_view::{ChatPage, MAX_JID_CHARS, MessagePage, cursor, page_limit, split_page};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::leads::{LeadPage, LeadQuery};

/// Most numbers one check takes.
const MAX_CHECK: usize = 100;
/// Leads per page unless asked otherwise.
const DEFAULT_LEADS: i64 = 50;

/// The caller's devices.
pub(super) async fn devices(state: &AppState, caller: &Caller) -> ApiResult<Vec<Device>> {
    Ok(state.db.list_devices(caller.user.id).await?)
}

/// A page of a device's chats.
pub(super) async fn chats(state: &AppState, caller: &Caller, args: ListChats) -> ApiResult<ChatPage> {
    let (user, device) = (caller.user.id, DeviceId(args.device_id));
    let limit = page_limit(args.limit)?;
    let after = args.cursor.as_deref().map(cursor::decode_chat).transpose()?;
    state.db.device(user, device).await.or_not_found("device")?;
    let mut chats = state
        .db
        .chat_page(user, device, args.search.as_deref(), after.as_ref(), limit + 1)
        .await?;
    let next_cursor = split_page(&mut chats, limit, |c| {
        cursor::encode_chat(&ChatCursor {
            last_message_at: c.last_message_at,
            jid: c.jid.clone(),
        })
    });
    Ok(ChatPage { chats, next_cursor })
}

/// A page of a chat's messages, newest first.
pub(super) async fn messages(state: &AppState, caller: &Caller, args: ReadChat) -> ApiResult<MessagePage> {
    let (user, device) = (caller.user.id, DeviceId(args.device_id));
    let limit = page_limit(args.limit)?;
    let before = args.before.as_deref().map(cursor::decode_message).transpose()?;
    let jid = chat_jid(state, &args.chat)?;
    chat_page(state, user, device, &jid, before.as_ref(), limit).await
}

/// A chat and a page of its messages; "device not found" before "chat not found", as on REST.
pub(super) async fn chat_page(
    state: &AppState,
    user: wafleet_core::types::UserId,
    device: DeviceId,
    jid: &str,
    before: Option<&MessageCursor>,
    limit: i64,
) -> ApiResult<MessagePage> {
    let chat = match state.db.chat(user, device, jid).await {
        Ok(chat) => chat,
        Err(wafleet_core::Error::NotFound) => {
            state.db.device(user, device).await.or_not_found("device")?;
            return Err(ApiError::NotFound("chat"));
        }
        Err(e) => return Err(ApiError::from_core(e, "chat")),
    };
    let mut messages = state.db.message_page(user, device, jid, before, limit + 1).await?;
    let next_before = split_page(&mut messages, limit, |m| {
        cursor::encode_message(&MessageCursor {
            sent_at: m.sent_at,
            id: m.id.clone(),
        })
    });
    Ok(MessagePage {
        chat,
        messages,
        next_before,
    })
}

/// A chat named by its JID or by the contact's phone number.
pub(super) fn chat_jid(state: &AppState, raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    if raw.contains('@') {
        if raw.len() > MAX_JID_CHARS {
            return Err(ApiError::Invalid(format!("chat: at most {MAX_JID_CHARS} characters")));
        }
        return Ok(raw.to_owned());
    }
    let phone = PhoneNumber::parse(raw, state.settings.default_country).map_err(|e| {
        ApiError::Invalid(format!(
            "chat: give the chat's jid from list_chats (e.g. 60123456789@s.whatsapp.net) or a phone number: {e}"
        ))
    })?;
    Ok(Jid::for_phone(&phone).0)
}

/// The answer for one number of a check.
#[derive(Debug, Serialize)]
pub(super) struct Checked {
    /// The number as given.
    input: String,
    /// `on_whatsapp`, `not_on_whatsapp` or `invalid`.
    result: &'static str,
    /// The number it names (E.164).
    phone: Option<PhoneNumber>,
    /// The account's JID when it has one.
    jid: Option<Jid>,
    /// Why it is invalid.
    reason: Option<String>,
}

/// Which numbers are on WhatsApp, asked of the device's live session.
pub(super) async fn check(state: &AppState, caller: &Caller, args: CheckNumbers) -> ApiResult<Vec<Checked>> {
    let (user, device) = (caller.user.id, DeviceId(args.device_id));
    state.db.device(user, device).await.or_not_found("device")?;
    if args.numbers.is_empty() || args.numbers.len() > MAX_CHECK {
        return Err(ApiError::Invalid(format!("numbers: give 1 to {MAX_CHECK} numbers")));
    }
    let parsed: Vec<(String, Result<PhoneNumber, String>)> = args
        .numbers
        .into_iter()
        .map(|input| {
            let phone = PhoneNumber::parse(input.trim(), state.settings.default_country).map_err(|e| e.to_string());
            (input, phone)
        })
        .collect();
    let mut distinct: Vec<PhoneNumber> = parsed.iter().filter_map(|(_, p)| p.clone().ok()).collect();
    distinct.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    distinct.dedup();
    let answers: HashMap<PhoneNumber, Option<Jid>> = if distinct.is_empty() {
        HashMap::new()
    } else {
        crate::sessions::run_check(state, user, device, &distinct)
            .await?
            .into_iter()
            .map(|c| (c.phone, c.jid))
            .collect()
    };
    Ok(parsed
        .into_iter()
        .map(|(input, phone)| match phone {
            Ok(phone) => {
                let jid = answers.get(&phone).cloned().flatten();
                Checked {
                    input,
                    result: if jid.is_some() {
                        "on_whatsapp"
                    } else {
                        "not_on_whatsapp"
                    },
                    phone: Some(phone),
                    jid,
                    reason: None,
                }
            }
            Err(reason) => Checked {
                input,
                result: "invalid",
                phone: None,
                jid: None,
                reason: Some(reason),
            },
        })
        .collect())
}

/// One of the caller's sends.
pub(super) async fn send_status(state: &AppState, caller: &Caller, args: SendStatus) -> ApiResult<OutboundMessage> {
    state
        .db
        .outbound_message(caller.user.id, args.message_id)
        .await
        .or_not_found("message")
}

/// A page of a device's leads.
pub(super) async fn leads(state: &AppState, caller: &Caller, args: FindLeads) -> ApiResult<LeadPage> {
    let limit = args.limit.unwrap_or(DEFAULT_LEADS);
    if !(1..=crate::leads::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit: must be 1 to {}",
            crate::leads::MAX_LIMIT
        )));
    }
    let filter = LeadQuery {
        q: args.search,
        niche: args.niche,
        status: args.status,
        journey: args.journey,
    }
    .filter()?;
    let mut leads = state
        .db
        .list_leads(
            caller.user.id,
            DeviceId(args.device_id),
            &filter,
            args.cursor.map(LeadId),
            limit + 1,
        )
        .await
        .or_not_found("device")?;
    let next_cursor = split_page(&mut leads, limit, |lead| lead.id.0);
    Ok(LeadPage { leads, next_cursor })
}

/// One of the caller's leads.
pub(super) async fn lead(state: &AppState, caller: &Caller, args: LeadRef) -> ApiResult<Lead> {
    state
        .db
        .lead(caller.user.id, LeadId(args.lead_id))
        .await
        .or_not_found("lead")
}

/// The caller's campaigns of a year.
pub(super) async fn campaigns(state: &AppState, caller: &Caller, args: ListCampaigns) -> ApiResult<Vec<Campaign>> {
    let year = crate::campaigns::YearQuery { year: args.year }.year()?;
    let edge = |y: i32| send_at(&format!("{y}-01-01T00:00:00Z"), chrono_tz::Tz::UTC);
    Ok(state
        .db
        .list_campaigns(caller.user.id, edge(year)?, edge(year + 1)?)
        .await?)
}

/// One of the caller's campaigns' report.
pub(super) async fn report(state: &AppState, caller: &Caller, args: CampaignRef) -> ApiResult<CampaignReport> {
    state
        .db
        .campaign_report(caller.user.id, CampaignId(args.campaign_id))
        .await
        .or_not_found("campaign")
}

/// Analytics of a range of days.
pub(super) async fn analytics(state: &AppState, caller: &Caller, args: AnalyticsRange) -> ApiResult<Analytics> {
    let start = crate::analytics::parse_date("start", Some(&args.start))?;
    let end = crate::analytics::parse_date("end", Some(&args.end))?;
    if end < start {
        return Err(ApiError::Invalid(format!(
            "end: {end} is before start {start}; give the earlier day as start"
        )));
    }
    let days = (end - start).num_days() + 1;
    if days > crate::analytics::MAX_DAYS {
        return Err(ApiError::Invalid(format!(
            "end: the range is {days} days; at most {} days at once",
            crate::analytics::MAX_DAYS
        )));
    }
    let device = args.device_id.map(DeviceId);
    if let Some(device) = device {
        state.db.device(caller.user.id, device).await.or_not_found("device")?;
    }
    Ok(state.db.analytics(caller.user.id, device, start, end).await?)
}
