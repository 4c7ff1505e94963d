//! What a sequence is: its steps, window, enrolment rule and exits, and where each enrolment stands.

use crate::db::LeadStatus;
use crate::types::text_enum::text_enum;
use crate::types::{CampaignId, DeviceId, SequenceId, Timestamp};

use super::window::{self, SendWindow, WEEKDAY_NAMES};

text_enum! {
    /// Where a sequence stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum SequenceStatus ("sequence status") {
        /// Enrols and sends.
        Active = "active",
        /// Records no new step sends and enrols nobody by its rule until resumed.
        Paused = "paused",
        /// Stopped for good; its report stays.
        Archived = "archived",
    }
}

text_enum! {
    /// Where one lead stands in a sequence.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum EnrolmentStatus ("enrolment status") {
        /// Waiting for its next step, or its send is on its way.
        Active = "active",
        /// Every step went out.
        Completed = "completed",
        /// Left before the end; `exit_reason` says why.
        Exited = "exited",
        /// A step's send failed; "retry failed" sends it again.
        Failed = "failed",
    }
}

text_enum! {
    /// What a step's delay counts from.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum DelayFrom ("delay start") {
        /// The lead's enrolment.
        Enrolment = "enrolment",
        /// The previous step's send (for the first step: the enrolment).
        Previous = "previous",
    }
}

text_enum! {
    /// What became of a step's send, as a report's cell counts it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum StepOutcome ("step outcome") {
        /// Recorded, not yet handed to WhatsApp.
        Queued = "queued",
        /// WhatsApp accepted it (delivered and read ones included).
        Sent = "sent",
        /// It reached the phone (read ones included).
        Delivered = "delivered",
        /// It was opened.
        Read = "read",
        /// The lead replied after this step.
        Replied = "replied",
        /// It failed.
        Failed = "failed",
    }
}

impl StepOutcome {
    /// The send statuses it counts, comma-separated (none for `replied`, which is the lead's).
    pub(crate) fn send_statuses(self) -> &'static str {
        match self {
            StepOutcome::Queued => "queued,sending",
            StepOutcome::Sent => "sent,delivered,read",
            StepOutcome::Delivered => "delivered,read",
            StepOutcome::Read => "read",
            StepOutcome::Failed => "failed",
            StepOutcome::Replied => "",
        }
    }
}

/// Which of a sequence's enrolments to list: a report's cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrolmentFilter {
    /// Only in this status.
    pub status: Option<EnrolmentStatus>,
    /// Only waiting for this step.
    pub waiting_for: Option<i64>,
    /// Only those that left for this reason (`replied`, `status:lost`, `by_hand`…).
    pub exit_reason: Option<String>,
    /// Only those whose send of this step came to this.
    pub step_outcome: Option<(i64, StepOutcome)>,
}

/// One message of a sequence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SequenceStep {
    /// 1 for the first step.
    pub position: i64,
    /// The text, or the image's caption; choices and variables are filled per lead.
    pub message: String,
    /// Whether an image goes with it.
    pub has_image: bool,
    /// Calendar days of delay, in the sequence's time zone.
    pub delay_days: i64,
    /// Hours of delay after the days.
    pub delay_hours: i64,
    /// What the delay counts from.
    pub delay_from: DelayFrom,
}

/// When steps may go: local times and days in the sequence's time zone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WindowSpec {
    /// Opens at, `HH:MM` local.
    pub start: String,
    /// Closes at (exclusive), `HH:MM` local, up to `24:00`.
    pub end: String,
    /// The days it opens: `mon` … `sun`.
    pub weekdays: Vec<String>,
}

impl WindowSpec {
    /// The window as stored: minutes and day bits.
    pub fn minutes(&self) -> Result<(u32, u32, u8), String> {
        let start = window::parse_clock(&self.start)
            .ok_or_else(|| format!("window.start: `{}` is not a time such as 09:00", self.start))?;
        let end = window::parse_clock(&self.end)
            .ok_or_else(|| format!("window.end: `{}` is not a time such as 18:00", self.end))?;
        let mut days = 0u8;
        for name in &self.weekdays {
            let index = WEEKDAY_NAMES
                .iter()
                .position(|d| name.trim().eq_ignore_ascii_case(d))
                .ok_or_else(|| {
                    format!("window.weekdays: unknown day `{name}`; use mon, tue, wed, thu, fri, sat, sun")
                })?;
            days |= 1 << index;
        }
        Ok((start, end, days))
    }

    /// The window as shown.
    pub fn from_minutes(start: u32, end: u32, weekdays: u8) -> Self {
        WindowSpec {
            start: window::clock(start),
            end: window::clock(end),
            weekdays: (0..7)
                .filter(|i| weekdays & (1 << i) != 0)
                .map(|i| WEEKDAY_NAMES[i].to_owned())
                .collect(),
        }
    }
}

/// Which leads a sequence enrols by itself: those of its devices matching every given field.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EnrolRule {
    /// Leads of this niche.
    pub niche: Option<String>,
    /// Leads with this status.
    pub status: Option<LeadStatus>,
    /// Leads in this journey.
    pub journey: Option<String>,
    /// Leads who replied to this campaign of yours (after its send to them went out): they are
    /// enrolled as their replies come in.
    pub replied_to_campaign: Option<CampaignId>,
}

/// A sequence as its owner sees it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Sequence {
    /// Row id.
    pub id: SequenceId,
    /// A name for people, unique among the owner's sequences.
    pub name: String,
    /// The IANA time zone its window and delays are read in.
    pub time_zone: String,
    /// When its steps may go.
    pub window: WindowSpec,
    /// A lead who writes back leaves it (default).
    pub stop_on_reply: bool,
    /// A lead whose status becomes one of these leaves it.
    pub stop_statuses: Vec<LeadStatus>,
    /// Leads it enrols by itself, now and as they come to match; `null`: only those enrolled by
    /// hand, CSV or the API.
    pub enrol_rule: Option<EnrolRule>,
    /// A lead who completes it is enrolled there.
    pub next_sequence_id: Option<SequenceId>,
    /// A lead who replies (and so leaves it) is enrolled there.
    pub on_reply_sequence_id: Option<SequenceId>,
    /// Where it stands.
    pub status: SequenceStatus,
    /// The devices it goes out from.
    pub device_ids: Vec<DeviceId>,
    /// Its steps, in order.
    pub steps: Vec<SequenceStep>,
    /// When.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Sequence {
    /// Its send window.
    pub fn send_window(&self) -> Option<SendWindow> {
        let (start, end, days) = self.window.minutes().ok()?;
        SendWindow::new(&self.time_zone, start, end, days).ok()
    }
}

/// A step to save, already checked.
#[derive(Clone, Debug)]
pub struct NewStep {
    /// The text or caption.
    pub message: String,
    /// A compressed JPEG.
    pub image: Option<Vec<u8>>,
    /// Calendar days of delay.
    pub delay_days: u32,
    /// Hours after the days.
    pub delay_hours: u32,
    /// What the delay counts from.
    pub delay_from: DelayFrom,
}

/// A sequence to save, already checked (its window by [`SendWindow::new`], its texts by
/// [`crate::text::Message::parse`]).
#[derive(Clone, Debug)]
pub struct NewSequence {
    /// A name for people.
    pub name: String,
    /// IANA name.
    pub time_zone: String,
    /// Minutes and day bits.
    pub window: (u32, u32, u8),
    /// Leave on reply.
    pub stop_on_reply: bool,
    /// Leave on these lead statuses.
    pub stop_statuses: Vec<LeadStatus>,
    /// Enrol by itself.
    pub enrol_rule: Option<EnrolRule>,
    /// Move there at the end.
    pub next_sequence_id: Option<SequenceId>,
    /// Move there on a reply.
    pub on_reply_sequence_id: Option<SequenceId>,
    /// `active` or `paused`.
    pub status: SequenceStatus,
    /// Target devices (owned by the creator; checked by the insert).
    pub devices: Vec<DeviceId>,
    /// At least one.
    pub steps: Vec<NewStep>,
}

/// One lead in a sequence.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// Row id; the cursor of the next page.
    pub id: i64,
    /// The device its steps go out from.
    pub device_id: DeviceId,
    /// The lead (which may since have been deleted).
    pub lead_id: i64,
    /// The lead's name, while the lead exists.
    pub lead_name: Option<String>,
    /// The number, E.164.
    pub phone: String,
    /// How it was enrolled: `rule`, `campaign_reply` (the rule's campaign, answered), `hand`,
    /// `api`, `csv`, `chain` (completed the previous sequence) or `reply` (replied in another).
    pub source: String,
    /// Where it stands.
    pub status: EnrolmentStatus,
    /// Why it left: `replied`, `status:<lead status>`, `by_hand`, or why its step failed.
    pub exit_reason: Option<String>,
    /// The step it waits for (steps + 1 once completed).
    pub next_step: i64,
    /// When that step may go, once planned.
    pub due_at: Option<Timestamp>,
    /// When it was enrolled.
    pub enrolled_at: Timestamp,
}
