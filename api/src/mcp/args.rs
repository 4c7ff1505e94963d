//! The tools' arguments. Their doc comments become the descriptions in the JSON schemas agents
//! read, so they say what to pass and where to find it. Unknown fields are refused by name.

use schemars::JsonSchema;
use serde::Deserialize;

/// A device's chats.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListChats {
    /// One of your devices (an id from list_devices).
    pub device_id: i64,
    /// Text within the contact's name or last message, or digits within the number.
    pub search: Option<String>,
    /// `next_cursor` of the previous page; leave out for the most recent chats.
    pub cursor: Option<String>,
    /// Chats per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

/// A chat's messages.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadChat {
    /// One of your devices (an id from list_devices).
    pub device_id: i64,
    /// The chat: its `jid` from list_chats (e.g. `60123456789@s.whatsapp.net`) or the contact's
    /// phone number.
    pub chat: String,
    /// `next_before` of the previous page, for older messages; leave out for the newest.
    pub before: Option<String>,
    /// Messages per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

/// Numbers to check.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckNumbers {
    /// One of your devices that is online (an id from list_devices).
    pub device_id: i64,
    /// 1 to 100 phone numbers, international (+60123456789) or national.
    pub numbers: Vec<String>,
}

/// A text to send.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendText {
    /// The device to send from (an id from list_devices).
    pub device_id: i64,
    /// The recipient's phone number, or a personal chat's jid.
    pub to: String,
    /// The message, at most 65,536 characters.
    pub text: String,
    /// Your key for this send, 1 to 200 characters: calling again with the same key (a retry)
    /// answers the same send and never sends twice. Use a new key for every new message.
    pub idempotency_key: String,
}

/// An image to send.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendImage {
    /// The device to send from (an id from list_devices).
    pub device_id: i64,
    /// The recipient's phone number, or a personal chat's jid.
    pub to: String,
    /// The image (JPEG, PNG, WebP or GIF), base64-encoded; sent as a JPEG of at most 1200 px.
    pub image_base64: String,
    /// A caption shown under the image.
    pub caption: Option<String>,
    /// Your key for this send, 1 to 200 characters: calling again with the same key (a retry)
    /// answers the same send and never sends twice. Use a new key for every new message.
    pub idempotency_key: String,
}

/// A send to look up.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendStatus {
    /// The send's `id`, as send_text or send_image answered it.
    pub message_id: i64,
}

/// A search of a device's leads.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindLeads {
    /// One of your devices (an id from list_devices).
    pub device_id: i64,
    /// Text within the name or notes, or digits within the number.
    pub search: Option<String>,
    /// Only this status: new, contacted, replied, interested, converted or lost.
    pub status: Option<String>,
    /// Only this niche (exact).
    pub niche: Option<String>,
    /// Only this journey (exact).
    pub journey: Option<String>,
    /// `next_cursor` of the previous page; leave out for the first.
    pub cursor: Option<i64>,
    /// Leads per page, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// One lead.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeadRef {
    /// The lead's id (from find_leads).
    pub lead_id: i64,
}

/// A lead to add.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLead {
    /// The device the lead belongs to (an id from list_devices).
    pub device_id: i64,
    /// The person's name.
    pub name: String,
    /// Their phone number; one lead per number per device.
    pub phone: String,
    /// A market label, e.g. `bakery` (campaigns pick leads by niche).
    pub niche: Option<String>,
    /// A follow-up label, e.g. `onboarding`.
    pub journey: Option<String>,
    /// new (default), contacted, replied, interested, converted or lost.
    pub status: Option<String>,
    /// Free notes.
    pub notes: Option<String>,
}

/// Changes to a lead; what is left out stays as it is.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateLead {
    /// The lead's id (from find_leads).
    pub lead_id: i64,
    /// New name.
    pub name: Option<String>,
    /// New phone number.
    pub phone: Option<String>,
    /// New niche, or "" to clear it.
    pub niche: Option<String>,
    /// New journey, or "" to clear it.
    pub journey: Option<String>,
    /// New status: new, contacted, replied, interested, converted or lost.
    pub status: Option<String>,
    /// New notes, or "" to clear them.
    pub notes: Option<String>,
}

/// Which campaigns.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListCampaigns {
    /// The year whose campaigns to list, by send time (default: this year).
    pub year: Option<i32>,
}

/// One campaign.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignRef {
    /// The campaign's id (from list_campaigns).
    pub campaign_id: i64,
}

/// A campaign to plan as a draft.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCampaignDraft {
    /// A name for people, e.g. "March promo".
    pub title: String,
    /// Leads of the chosen devices with this niche receive it (leads marked lost never do).
    pub niche: String,
    /// The message text. It may vary per recipient: `{Hi|Hello}` picks one option (choices nest),
    /// `{name}`, `{first_name}`, `{phone}`, `{niche}` and `{greeting}` are filled in for each
    /// lead, and `\{` is a literal brace; a mistake is refused naming its position.
    pub message: String,
    /// When it should go out once confirmed: RFC 3339 (`2026-03-14T09:00:00+08:00`) or a local
    /// time (`2026-03-14T09:00`) in `time_zone`.
    pub send_at: String,
    /// IANA time zone such as `Asia/Kuala_Lumpur` (default UTC).
    pub time_zone: Option<String>,
    /// The devices it goes out from (ids from list_devices).
    pub device_ids: Vec<i64>,
    /// `per_device` (default): each device sends to its own leads of the niche. `pool`: the
    /// niche's leads of all the chosen devices, each number once, dealt in turn over them.
    pub distribution: Option<String>,
    /// With `pool`, at most this many recipients per device (default: no limit).
    pub per_device_cap: Option<i64>,
}

/// A range of days.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnalyticsRange {
    /// First day, YYYY-MM-DD (UTC).
    pub start: String,
    /// Last day, YYYY-MM-DD (UTC), included; at most 366 days after start.
    pub end: String,
    /// Only this device (default: all of yours).
    pub device_id: Option<i64>,
}
