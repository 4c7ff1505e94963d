//! Parsing a campaign's fields at the edge: each error names its field and how to fix it.

use base64::Engine;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use wafleet_core::db::{CampaignChanges, CampaignStatus, Distribution, NewCampaign};
use wafleet_core::types::{DeviceId, TemplateId, Timestamp};

use crate::error::{ApiError, ApiResult};

/// Longest title.
const MAX_TITLE: usize = 200;
/// Longest niche.
const MAX_NICHE: usize = 100;
/// Most target devices of one campaign.
const MAX_DEVICES: usize = 200;
/// Largest per-device cap of a pooled campaign.
const MAX_PER_DEVICE_CAP: i64 = 1_000_000;

/// A campaign's fields as a client sends them; on an update, omitted ones stay as they are.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct CampaignBody {
    /// A name for people.
    #[schema(example = "March promo")]
    pub title: Option<String>,
    /// Leads of the target devices with this niche receive it.
    #[schema(example = "bakery")]
    pub niche: Option<String>,
    /// The text, or the image's caption. Choices (`{Hi|Hello}`, nested too) and variables
    /// (`{name}`, `{first_name}`, `{phone}`, `{niche}`, `{greeting}`) are filled per recipient; a
    /// mistake in them is refused (422) naming it and its character position.
    #[schema(example = "{Hi|Hello} {first_name}, fresh bread today!")]
    pub message: Option<String>,
    /// One of your templates whose text (when `message` is not given) and image (when
    /// `image_base64` is not given) the campaign copies, on creation and on an update alike; on
    /// an update, a template without an image removes the campaign's.
    pub template_id: Option<TemplateId>,
    /// An image (JPEG, PNG, WebP or GIF), base64-encoded; sent as a JPEG of at most 1200 px.
    /// On an update, `""` removes it.
    pub image_base64: Option<String>,
    /// When it goes out: RFC 3339 with an offset (`2026-03-14T09:00:00+08:00`), or a local time
    /// (`2026-03-14T09:00`) in `time_zone`.
    #[schema(example = "2026-03-14T09:00")]
    pub send_at: Option<String>,
    /// IANA time zone, e.g. `Asia/Kuala_Lumpur` (default UTC).
    pub time_zone: Option<String>,
    /// The devices it goes out from (yours).
    pub device_ids: Option<Vec<DeviceId>>,
    /// `per_device` (default): each device sends to its own leads of the niche. `pool`: the
    /// leads of the niche on all the chosen devices form one pool, each number once, dealt
    /// round-robin over the devices; still paced per device. On an update, giving it sets
    /// `per_device_cap` too (absent: no cap).
    #[schema(example = "pool")]
    pub distribution: Option<String>,
    /// With `distribution: "pool"`, at most this many recipients per device (1 to 1,000,000);
    /// the numbers beyond devices × cap are left out and counted in the campaign's `left_out`.
    #[schema(example = 200)]
    pub per_device_cap: Option<i64>,
    /// On creation `draft` or `scheduled` (default); on an update also `paused`, `running`
    /// (resume) or `cancelled`.
    pub status: Option<String>,
}

fn text(name: &str, value: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::Invalid(format!("{name}: must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ApiError::Invalid(format!("{name}: at most {max} characters")));
    }
    Ok(value.to_owned())
}

fn time_zone(value: &str) -> ApiResult<Tz> {
    value.trim().parse::<Tz>().map_err(|_| {
        ApiError::Invalid(format!(
            "time_zone: unknown time zone `{}`; use an IANA name such as Asia/Kuala_Lumpur or UTC",
            value.trim()
        ))
    })
}

/// `send_at` as UTC: an RFC 3339 instant, or a local time in `tz`.
pub fn send_at(value: &str, tz: Tz) -> ApiResult<Timestamp> {
    let value = value.trim();
    let instant = if let Ok(at) = chrono::DateTime::parse_from_rfc3339(value) {
        at.timestamp_millis()
    } else {
        let local = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
            .map_err(|_| {
                ApiError::Invalid(format!(
                    "send_at: `{value}` is not a time; use 2026-03-14T09:00 (in time_zone) or RFC 3339"
                ))
            })?;
        tz.from_local_datetime(&local)
            .earliest()
            .ok_or_else(|| ApiError::Invalid(format!("send_at: {value} does not exist in {tz} (a clock change)")))?
            .timestamp_millis()
    };
    let year = Timestamp(instant).to_datetime().format("%Y").to_string();
    if !("2000".."2200").contains(&year.as_str()) {
        return Err(ApiError::Invalid(
            "send_at: must be between the years 2000 and 2199".into(),
        ));
    }
    Ok(Timestamp(instant))
}

/// The image's bytes, still to be compressed: decoding is the one expensive step, so the handler
/// does it once every cheap check has passed. Its header is checked here (`""`: no image).
pub(crate) fn image(value: &str) -> ApiResult<Option<Vec<u8>>> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| ApiError::Invalid("image_base64: not valid base64".into()))?;
    wafleet_core::media::dimensions(&bytes).map_err(|e| ApiError::Invalid(format!("image: {e}")))?;
    Ok(Some(bytes))
}

fn devices(value: &[DeviceId]) -> ApiResult<Vec<DeviceId>> {
    if value.is_empty() {
        return Err(ApiError::Invalid("device_ids: choose at least one device".into()));
    }
    if value.len() > MAX_DEVICES {
        return Err(ApiError::Invalid(format!("device_ids: at most {MAX_DEVICES} devices")));
    }
    let mut unique = value.to_vec();
    unique.sort();
    unique.dedup();
    Ok(unique)
}

/// The distribution and its cap, read together; `None` if neither is given.
fn distribution(value: Option<&str>, cap: Option<i64>) -> ApiResult<Option<(Distribution, Option<i64>)>> {
    let Some(value) = value else {
        return match cap {
            Some(_) => Err(ApiError::Invalid(
                "per_device_cap: only with distribution `pool`; send both".into(),
            )),
            None => Ok(None),
        };
    };
    let distribution: Distribution = value
        .parse()
        .map_err(|e| ApiError::Invalid(format!("distribution: {e}")))?;
    match (distribution, cap) {
        (Distribution::PerDevice, Some(_)) => Err(ApiError::Invalid(
            "per_device_cap: only with distribution `pool`; each device already sends to its own leads".into(),
        )),
        (_, Some(cap)) if !(1..=MAX_PER_DEVICE_CAP).contains(&cap) => Err(ApiError::Invalid(format!(
            "per_device_cap: {cap} is not between 1 and {MAX_PER_DEVICE_CAP}; leave it out for no cap"
        ))),
        _ => Ok(Some((distribution, cap))),
    }
}

fn status(value: &str) -> ApiResult<CampaignStatus> {
    value.parse().map_err(|e| ApiError::Invalid(format!("status: {e}")))
}

impl CampaignBody {
    /// A new campaign; every field but the image, time zone and status is required. Its image,
    /// if any, comes back beside it uncompressed (see [`image`]), and `image` of the campaign is
    /// left empty for the caller to fill.
    pub fn into_new(self) -> ApiResult<(NewCampaign, Option<Vec<u8>>)> {
        let required =
            |name: &str, v: &Option<String>| v.clone().ok_or_else(|| ApiError::Invalid(format!("{name}: required")));
        let tz = time_zone(self.time_zone.as_deref().unwrap_or("UTC"))?;
        let status = match self.status.as_deref() {
            None => CampaignStatus::Scheduled,
            Some(s) => match status(s)? {
                s @ (CampaignStatus::Draft | CampaignStatus::Scheduled) => s,
                _ => return Err(ApiError::Invalid("status: a new campaign is draft or scheduled".into())),
            },
        };
        let mut new = NewCampaign {
            title: text("title", &required("title", &self.title)?, MAX_TITLE)?,
            niche: text("niche", &required("niche", &self.niche)?, MAX_NICHE)?,
            message: crate::templates::message(&required("message", &self.message)?)?.0,
            image: None,
            send_at: send_at(&required("send_at", &self.send_at)?, tz)?,
            time_zone: tz.name().to_owned(),
            status,
            devices: devices(self.device_ids.as_deref().unwrap_or_default())?,
            distribution: Distribution::PerDevice,
            per_device_cap: None,
        };
        if let Some((distribution, cap)) = distribution(self.distribution.as_deref(), self.per_device_cap)? {
            new.distribution = distribution;
            new.per_device_cap = cap;
        }
        let image = self.image_base64.as_deref().map(image).transpose()?.flatten();
        Ok((new, image))
    }

    /// Changes to a campaign planned in `current_tz` (a local `send_at` is read in the new time
    /// zone when one is given). A new image comes back beside them uncompressed, as in
    /// [`CampaignBody::into_new`]; removing the image (`""`) is one of the changes.
    pub fn into_changes(self, current_tz: &str) -> ApiResult<(CampaignChanges, Option<Vec<u8>>)> {
        let tz = match &self.time_zone {
            Some(name) => Some(time_zone(name)?),
            None => None,
        };
        let at_tz = tz.unwrap_or_else(|| current_tz.parse().unwrap_or(Tz::UTC));
        let image = self.image_base64.as_deref().map(image).transpose()?;
        let changes = CampaignChanges {
            title: self.title.as_deref().map(|v| text("title", v, MAX_TITLE)).transpose()?,
            niche: self.niche.as_deref().map(|v| text("niche", v, MAX_NICHE)).transpose()?,
            message: self
                .message
                .as_deref()
                .map(|v| crate::templates::message(v).map(|m| m.0))
                .transpose()?,
            // `Some(None)` removes the image; a new one is set by the caller once compressed.
            image: matches!(image, Some(None)).then_some(None),
            send_at: self.send_at.as_deref().map(|v| send_at(v, at_tz)).transpose()?,
            time_zone: tz.map(|tz| tz.name().to_owned()),
            devices: self.device_ids.as_deref().map(devices).transpose()?,
            distribution: distribution(self.distribution.as_deref(), self.per_device_cap)?,
            status: self.status.as_deref().map(status).transpose()?,
        };
        Ok((changes, image.flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_send_times_are_read_in_the_campaigns_time_zone() {
        let kl: Tz = "Asia/Kuala_Lumpur".parse().unwrap();
        let at = send_at("2026-03-14T09:00", kl).unwrap();
        assert_eq!(at.to_string(), "2026-03-14T01:00:00.000Z");
        let same = send_at("2026-03-14T01:00:00Z", Tz::UTC).unwrap();
        assert_eq!(at, same);
        assert!(send_at("tomorrow", kl).is_err());
        assert!(send_at("1970-01-01T00:00", kl).is_err());
    }
}
