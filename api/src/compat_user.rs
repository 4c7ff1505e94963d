//! The upstream REST API's `user` routes: `GET /user/my/contacts`, answered from what wafleet
//! stores; `GET /user/info`, `GET /user/avatar`, `GET /user/business-profile` and
//! `GET /user/my/privacy`, asked of WhatsApp through the device's live session; and
//! `POST /user/avatar`, which changes the account's picture through it.
//! (`GET /user/check` asks WhatsApp too, with the sends in `compat_send`.)

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::Contact;
use wafleet_core::link::{BusinessProfile, Jid, PrivacySettings, ProfilePicture, USER_SERVER, UserInfo};

use crate::AppState;
use crate::compat::{Caller, upstream_statuses};
use crate::compat_message::{MessageActionResults, done};
use crate::compat_send::{PhoneQuery, query_phone};
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Multipart, Query};
use crate::sessions::{ask_session, ask_session_for};

pub(crate) fn router(max_media_bytes: usize) -> OpenApiRouter<AppState> {
    // A new picture is a media upload, with the media routes' limit.
    let media = OpenApiRouter::new()
        .routes(routes!(change_avatar))
        .route_layer(DefaultBodyLimit::max(max_media_bytes));
    OpenApiRouter::new()
        .routes(routes!(my_contacts))
        .routes(routes!(user_info))
        .routes(routes!(my_privacy))
        .routes(routes!(avatar))
        .routes(routes!(business_profile))
        .routes(routes!(push_name))
        .routes(routes!(presence))
        .merge(media)
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// `results` of `GET /user/my/contacts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactList {
    /// By name, then JID.
    pub data: Vec<Contact>,
}

/// The people the device knows (upstream `userMyContacts`): its phone's address book, with the
/// names saved there, and everyone it has a personal chat with, under their own push name when
/// the phone saved none.
#[utoipa::path(get, path = "/user/my/contacts", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 200, body = Envelope<ContactList>),
              (status = 400, description = "Several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn my_contacts(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<Response> {
    let data = state.db.contacts(user.id, device).await?;
    Ok(ok("Success get list contacts", ContactList { data }).into_response())
}

/// `results` of `GET /user/info`: what WhatsApp shows of the number's account. Upstream's
/// fields are strings: empty when the account shows nothing there.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfoResults {
    /// A business account's verified name.
    pub verified_name: String,
    /// Its "About" text.
    pub status: String,
    /// The id of its profile picture (it changes with the picture).
    pub picture_id: String,
    /// Its devices: the phone (`Device` 0) and its linked companions.
    pub devices: Vec<UserDevice>,
}

/// One device of an account, as upstream writes a device JID.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct UserDevice {
    /// The account's number (digits).
    pub user: String,
    /// Always 0 on personal accounts.
    pub agent: u8,
    /// The device number: 0 is the phone.
    pub device: String,
    /// `s.whatsapp.net`.
    pub server: String,
    /// Addressed as a device (always true in a device list).
    #[serde(rename = "AD")]
    pub ad: bool,
}

impl UserInfoResults {
    fn from_link(info: UserInfo) -> Self {
        let user = info.jid.user().to_owned();
        UserInfoResults {
            verified_name: info.verified_name.unwrap_or_default(),
            status: info.about.unwrap_or_default(),
            picture_id: info.picture_id.unwrap_or_default(),
            devices: info
                .devices
                .into_iter()
                .map(|device| UserDevice {
                    user: user.clone(),
                    agent: 0,
                    device: device.to_string(),
                    server: USER_SERVER.to_owned(),
                    ad: true,
                })
                .collect(),
        }
    }
}

/// What WhatsApp shows of a number's account (upstream `userInfo`): its About text, profile
/// picture id, verified business name and devices, asked through the device's live session.
#[utoipa::path(get, path = "/user/info", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("phone" = String, Query, description = "Phone number with country code (`6289685028129`, `+6289685028129` or `6289685028129@s.whatsapp.net`)")),
    responses((status = 200, body = Envelope<UserInfoResults>),
              (status = 400, description = "Several devices and none named, no or not a phone number, or a number without WhatsApp"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn user_info(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Query(query): Query<PhoneQuery>,
) -> ApiResult<Response> {
    let phone = query_phone(query.phone.as_deref(), "look up", &state)?;
    let question = serde_json::json!({ "phone": phone });
    let info: Option<UserInfo> =
        ask_session_for(&state, user.id, device, "user_info", question, "reading a profile").await?;
    let info = info.ok_or_else(|| ApiError::Invalid(format!("phone: {phone} is not on WhatsApp")))?;
    Ok(ok("Success", UserInfoResults::from_link(info)).into_response())
}

/// `results` of `GET /user/my/privacy`: who may see or do what, as WhatsApp reports the
/// account's settings (`all`, `contacts`, `contact_blacklist`, `none`, …); `null` for a setting
/// it did not report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrivacyResults {
    /// Who may add the account to groups.
    pub group_add: Option<String>,
    /// Who sees when it was last online.
    pub last_seen: Option<String>,
    /// Who sees its status updates.
    pub status: Option<String>,
    /// Who sees its profile photo.
    pub profile: Option<String>,
    /// Whether it sends read receipts (`all`) or not (`none`).
    pub read_receipts: Option<String>,
}

/// The account's privacy settings (upstream `userMyPrivacy`), asked through the device's live
/// session.
#[utoipa::path(get, path = "/user/my/privacy", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 200, body = Envelope<PrivacyResults>),
              (status = 400, description = "Several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn my_privacy(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<Response> {
    let question = serde_json::json!({});
    let mut settings: PrivacySettings = ask_session_for(
        &state,
        user.id,
        device,
        "privacy",
        question,
        "reading the privacy settings",
    )
    .await?;
    let results = PrivacyResults {
        group_add: settings.remove("groupadd"),
        last_seen: settings.remove("last"),
        status: settings.remove("status"),
        profile: settings.remove("profile"),
        read_receipts: settings.remove("readreceipts"),
    };
    Ok(ok("Success get privacy", results).into_response())
}

/// Query of `GET /user/avatar`.
#[derive(Debug, Deserialize)]
struct AvatarQuery {
    phone: Option<String>,
    #[serde(default)]
    is_preview: bool,
    #[serde(default)]
    is_community: bool,
}

/// `results` of `GET /user/avatar`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AvatarResults {
    /// Where to download the picture (a signed, expiring address on WhatsApp's servers).
    pub url: String,
    /// The picture's id (it changes with the picture).
    pub id: String,
    /// `image` (the full picture) or `preview`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Where a number's profile picture is (upstream `userAvatar`), asked through the device's live
/// session: the full picture, or its preview with `is_preview=true`.
#[utoipa::path(get, path = "/user/avatar", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("phone" = String, Query, description = "Phone number with country code (`6289685028129`, `+6289685028129` or `6289685028129@s.whatsapp.net`)"),
           ("is_preview" = Option<bool>, Query, description = "The small preview rather than the full picture"),
           ("is_community" = Option<bool>, Query, description = "Communities are groups: refused")),
    responses((status = 200, body = Envelope<AvatarResults>),
              (status = 400, description = "Several devices and none named, no or not a phone number, or a community"),
              (status = 404, description = "No such device of yours, or no device at all; or the number shows no profile picture"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn avatar(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Query(query): Query<AvatarQuery>,
) -> ApiResult<Response> {
    if query.is_community {
        return Err(ApiError::Invalid(
            "is_community: communities are groups, and wafleet works with personal chats only".into(),
        ));
    }
    let phone = query_phone(query.phone.as_deref(), "look up", &state)?;
    let question = serde_json::json!({ "phone": phone, "preview": query.is_preview });
    let picture: Option<ProfilePicture> = ask_session_for(
        &state,
        user.id,
        device,
        "profile_picture",
        question,
        "reading a profile picture",
    )
    .await?;
    // None set, hidden from this account, or no account at all: WhatsApp does not tell them apart.
    let picture = picture.ok_or(ApiError::NotFound("profile picture"))?;
    let kind = if picture.preview { "preview" } else { "image" };
    let results = AvatarResults {
        url: picture.url,
        id: picture.id,
        kind: kind.to_owned(),
    };
    Ok(ok("Success get avatar", results).into_response())
}

/// Makes the uploaded `avatar` the account's profile picture (upstream `userChangeAvatar`),
/// through the device's live session. Any image wafleet reads will do: the largest square in its
/// middle becomes a JPEG of at most 640 px on a side, as WhatsApp shows profile pictures.
#[utoipa::path(post, path = "/user/avatar", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    request_body(content_type = "multipart/form-data", description = "avatar: the picture (a JPEG, PNG, WebP or GIF file)"),
    responses((status = 200, description = "The account's picture changed"),
              (status = 400, description = "Several devices and none named, an unreadable form, or no or not an image in `avatar`"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Device not online"),
              (status = 413, description = "The body is larger than `MAX_MEDIA_BYTES` (20 MiB by default)"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn change_avatar(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Multipart(form): Multipart,
) -> ApiResult<Response> {
    use base64::Engine;
    let (_, avatar) = crate::sends::read_form(form, "avatar", state.settings.max_media_bytes).await?;
    let avatar = avatar
        .map(|file| file.bytes)
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| ApiError::Invalid("avatar: attach the picture as a file in the `avatar` field".into()))?;
    let jpeg = wafleet_core::media::profile_picture_off_runtime(avatar)
        .await
        .map_err(|e| ApiError::Invalid(format!("avatar: {e}")))?;
    let question = serde_json::json!({ "jpeg": base64::engine::general_purpose::STANDARD.encode(jpeg) });
    ask_session(
        &state,
        user.id,
        device,
        "set_profile_picture",
        question,
        "changing the profile picture",
    )
    .await?;
    Ok(ok("Success change avatar", ()).into_response())
}

/// Body of `POST /user/pushname`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PushNameBody {
    /// The name WhatsApp shows people who have not saved the number.
    pub push_name: Option<String>,
}

/// Longest push name accepted, in characters (WhatsApp's own limit).
const MAX_PUSH_NAME_CHARS: usize = 25;

/// Makes `push_name` the account's push name, through the device's live session (compatible
/// route): the name WhatsApp shows people who have not saved the number, sent as WhatsApp Web
/// sends it (a presence with the name, and the setting for the account's other devices).
#[utoipa::path(post, path = "/user/pushname", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    request_body = PushNameBody,
    responses((status = 200, description = "The account's push name changed"),
              (status = 400, description = "Several devices and none named, or no or a too long push_name"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn push_name(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Json(body): Json<PushNameBody>,
) -> ApiResult<Response> {
    let name = body.push_name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::Invalid(
            "push_name: give the name to show, e.g. \"Kedai Aisyah\"".into(),
        ));
    }
    if name.chars().count() > MAX_PUSH_NAME_CHARS {
        return Err(ApiError::Invalid(format!(
            "push_name: at most {MAX_PUSH_NAME_CHARS} characters, as WhatsApp allows"
        )));
    }
    let question = serde_json::json!({ "name": name });
    ask_session(&state, user.id, device, "push_name", question, "setting the push name").await?;
    Ok(ok("Success update push name", ()).into_response())
}

/// Body of `POST /send/presence`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PresenceBody {
    /// `available` (online) or `unavailable` (offline).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Shows the account online (`available`) or offline (`unavailable`) to the people who may see it,
/// through the device's live session (compatible route). WhatsApp takes presence only from an
/// account whose push name it knows: until the phone's name has reached the device, set one with
/// `POST /user/pushname` (else `400`).
#[utoipa::path(post, path = "/send/presence", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    request_body = PresenceBody,
    responses((status = 200, body = Envelope<MessageActionResults>),
              (status = 400, description = "Several devices and none named, a missing or unknown type, or no push name yet"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn presence(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Json(body): Json<PresenceBody>,
) -> ApiResult<Response> {
    let kind = body.kind.as_deref().map(str::trim).unwrap_or_default();
    let available = match kind {
        "available" => true,
        "unavailable" => false,
        other => {
            return Err(ApiError::Invalid(format!(
                "type: `{other}` is neither `available` nor `unavailable`"
            )));
        }
    };
    let question = serde_json::json!({ "available": available });
    match ask_session(&state, user.id, device, "presence", question, "showing presence").await {
        Err(ApiError::Unavailable(reason)) if reason.contains(wafleet_core::link::NO_PUSH_NAME) => {
            Err(ApiError::Invalid(format!(
                "type: {NO_PUSH_NAME}: set it with POST /user/pushname first",
                NO_PUSH_NAME = wafleet_core::link::NO_PUSH_NAME
            )))
        }
        Err(other) => Err(other),
        Ok(_) => Ok(done(String::new(), &format!("Send presence {kind} success"))),
    }
}

/// `results` of `GET /user/business-profile`, in upstream's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BusinessProfileResults {
    /// The business account's JID.
    pub jid: String,
    /// Its email address.
    pub email: Option<String>,
    /// Its street address.
    pub address: Option<String>,
    /// Its categories.
    pub categories: Vec<BusinessCategoryResult>,
    /// `website` (the first) and `description`.
    pub profile_options: std::collections::BTreeMap<String, String>,
    /// The time zone of its hours.
    pub business_hours_timezone: Option<String>,
    /// Its hours, a day each.
    pub business_hours: Vec<BusinessHoursResult>,
}

/// A business category.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BusinessCategoryResult {
    /// WhatsApp's id of the category.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A business's hours on one day.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BusinessHoursResult {
    /// `monday` … `sunday`.
    pub day_of_week: String,
    /// `open_24h`, `specific_hours` or `appointment_only`.
    pub mode: String,
    /// Opens (`09:00`), with `specific_hours`.
    pub open_time: Option<String>,
    /// Closes (`18:00`).
    pub close_time: Option<String>,
}

impl BusinessProfileResults {
    fn from_link(jid: String, profile: BusinessProfile) -> Self {
        let clock = |minute: u32| format!("{:02}:{:02}", minute / 60, minute % 60);
        let day_name = |day: &str| {
            let full = match day {
                "sun" => "sunday",
                "mon" => "monday",
                "tue" => "tuesday",
                "wed" => "wednesday",
                "thu" => "thursday",
                "fri" => "friday",
                "sat" => "saturday",
                other => other,
            };
            full.to_owned()
        };
        let mut profile_options = std::collections::BTreeMap::new();
        if let Some(website) = profile.websites.first() {
            profile_options.insert("website".to_owned(), website.clone());
        }
        if !profile.description.is_empty() {
            profile_options.insert("description".to_owned(), profile.description.clone());
        }
        BusinessProfileResults {
            jid,
            email: profile.email,
            address: profile.address,
            categories: profile
                .categories
                .into_iter()
                .map(|category| BusinessCategoryResult {
                    id: category.id,
                    name: category.name,
                })
                .collect(),
            profile_options,
            business_hours_timezone: profile.hours_timezone,
            business_hours: profile
                .hours
                .into_iter()
                .map(|day| BusinessHoursResult {
                    day_of_week: day_name(&day.day),
                    mode: day.mode,
                    open_time: day.open_minute.map(clock),
                    close_time: day.close_minute.map(clock),
                })
                .collect(),
        }
    }
}

/// A business account's public profile (upstream `userBusinessProfile`), asked through the
/// device's live session.
#[utoipa::path(get, path = "/user/business-profile", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name"),
           ("phone" = String, Query, description = "Phone number with country code of the business account")),
    responses((status = 200, body = Envelope<BusinessProfileResults>),
              (status = 400, description = "Several devices and none named, or no or not a phone number"),
              (status = 404, description = "No such device of yours, or no device at all; or the number is no business account"),
              (status = 409, description = "Device not online"),
              (status = 503, description = "WhatsApp or the device's worker did not answer in time")),
    security(("bearer" = [])))]
async fn business_profile(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Query(query): Query<PhoneQuery>,
) -> ApiResult<Response> {
    let phone = query_phone(query.phone.as_deref(), "look up", &state)?;
    let question = serde_json::json!({ "phone": phone });
    let profile: Option<BusinessProfile> = ask_session_for(
        &state,
        user.id,
        device,
        "business_profile",
        question,
        "reading a business profile",
    )
    .await?;
    let profile = profile.ok_or(ApiError::NotFound("business profile"))?;
    let jid = Jid::for_phone(&phone).0;
    Ok(ok(
        "Success get business profile",
        BusinessProfileResults::from_link(jid, profile),
    )
    .into_response())
}
