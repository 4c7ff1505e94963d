//! What a campaign is: its fields, its status and the moves between statuses its owner may make.

use crate::types::text_enum::text_enum;
use crate::types::{CampaignId, DeviceId, Timestamp};

text_enum! {
    /// Where a campaign stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum CampaignStatus ("status") {
        /// Being written; never sent.
        Draft = "draft",
        /// Goes out at its send time.
        Scheduled = "scheduled",
        /// Its recipients are being sent to.
        Running = "running",
        /// No new sends are queued until it is resumed.
        Paused = "paused",
        /// Every recipient has a final status.
        Finished = "finished",
        /// Stopped for good.
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// Which leads a campaign's devices send to.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum Distribution ("distribution") {
        /// Each device to its own leads of the niche.
        #[default]
        PerDevice = "per_device",
        /// One pool: the leads of the niche on all the campaign's devices, each number once,
        /// dealt round-robin over the devices (at most `per_device_cap` to each).
        Pool = "pool",
    }
}

impl CampaignStatus {
    /// Whether its content (text, image, devices, time) may still change: not once sending began.
    pub fn editable(self) -> bool {
        matches!(self, CampaignStatus::Draft | CampaignStatus::Scheduled)
    }

    /// The status a request for `wanted` leads to from `self`; `expanded` says whether its
    /// recipients were listed already (a resumed campaign that never started waits for its time).
    pub fn move_to(self, wanted: CampaignStatus, expanded: bool) -> Result<CampaignStatus, String> {
        use CampaignStatus::*;
        let next = match (self, wanted) {
            (from, to) if from == to => return Ok(from),
            (Finished | Cancelled, _) => {
                return Err(format!("the campaign is {} and can no longer change", self.as_str()));
            }
            (_, Finished) => return Err("a campaign finishes by itself once every recipient is done".into()),
            (_, Cancelled) => Cancelled,
            (Draft, Scheduled) | (Scheduled, Draft) => wanted,
            (Scheduled | Running, Paused) => Paused,
            (Paused, Running | Scheduled) if expanded => Running,
            (Paused, Running | Scheduled) => Scheduled,
            _ => {
                return Err(format!(
                    "a {} campaign cannot become {}",
                    self.as_str(),
                    wanted.as_str()
                ));
            }
        };
        Ok(next)
    }
}

/// A campaign as its owner sees it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Campaign {
    /// Row id.
    pub id: CampaignId,
    /// A name for people.
    pub title: String,
    /// Leads of the target devices with this niche receive it.
    pub niche: String,
    /// The text, or the image's caption.
    pub message: String,
    /// Whether an image goes with it.
    pub has_image: bool,
    /// When it goes out (UTC).
    pub send_at: Timestamp,
    /// The IANA time zone it was planned in; the calendar shows its day there.
    pub time_zone: String,
    /// Where it stands.
    pub status: CampaignStatus,
    /// When.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Whether each device sends to its own leads or all draw from one pool.
    pub distribution: Distribution,
    /// With a pool, at most this many recipients per device (`null`: no cap).
    pub per_device_cap: Option<i64>,
    /// With a pool and a cap, the numbers the cap left without a device, counted when the
    /// campaign started (`null` before it starts).
    pub left_out: Option<i64>,
    /// The devices it goes out from.
    #[sqlx(skip)]
    pub device_ids: Vec<DeviceId>,
}

/// A campaign to create, already checked.
#[derive(Clone, Debug)]
pub struct NewCampaign {
    /// A name for people.
    pub title: String,
    /// Which leads.
    pub niche: String,
    /// The text or caption.
    pub message: String,
    /// A compressed JPEG.
    pub image: Option<Vec<u8>>,
    /// When (UTC).
    pub send_at: Timestamp,
    /// IANA name.
    pub time_zone: String,
    /// `draft` or `scheduled`.
    pub status: CampaignStatus,
    /// Target devices (owned by the creator; checked by the caller and again by the insert).
    pub devices: Vec<DeviceId>,
    /// Own leads per device, or one pool.
    pub distribution: Distribution,
    /// With a pool, at most this many recipients per device.
    pub per_device_cap: Option<i64>,
}

/// Changes to a campaign; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct CampaignChanges {
    /// New title.
    pub title: Option<String>,
    /// New niche.
    pub niche: Option<String>,
    /// New text.
    pub message: Option<String>,
    /// `Some(None)` removes the image.
    pub image: Option<Option<Vec<u8>>>,
    /// New time.
    pub send_at: Option<Timestamp>,
    /// New time zone.
    pub time_zone: Option<String>,
    /// New target devices.
    pub devices: Option<Vec<DeviceId>>,
    /// A new distribution with its cap (set together: `(Pool, None)` is a pool without a cap).
    pub distribution: Option<(Distribution, Option<i64>)>,
    /// Requested status.
    pub status: Option<CampaignStatus>,
}

impl CampaignChanges {
    /// Whether any content (not only the status) changes.
    pub fn touches_content(&self) -> bool {
        self.title.is_some()
            || self.niche.is_some()
            || self.message.is_some()
            || self.image.is_some()
            || self.send_at.is_some()
            || self.time_zone.is_some()
            || self.devices.is_some()
            || self.distribution.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus::*;

    #[test]
    fn owners_move_campaigns_only_along_allowed_paths() {
        assert_eq!(Draft.move_to(Scheduled, false), Ok(Scheduled));
        assert_eq!(Scheduled.move_to(Paused, false), Ok(Paused));
        assert_eq!(
            Paused.move_to(Running, false),
            Ok(Scheduled),
            "never started: waits for its time"
        );
        assert_eq!(Paused.move_to(Running, true), Ok(Running), "resumed");
        assert_eq!(Running.move_to(Cancelled, true), Ok(Cancelled));
        assert!(Draft.move_to(Running, false).is_err());
        assert!(Running.move_to(Finished, true).is_err());
        assert!(Finished.move_to(Scheduled, true).is_err());
        assert!(Cancelled.move_to(Running, true).is_err());
    }
}
