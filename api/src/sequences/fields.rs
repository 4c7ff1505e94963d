//! Parsing a sequence's fields at the edge: each error names its field and how to fix it.

use wafleet_core::db::window::{ALL_WEEKDAYS, SendWindow};
use wafleet_core::db::{DelayFrom, EnrolRule, LeadStatus, NewSequence, NewStep, SequenceStatus, WindowSpec};
use wafleet_core::types::{DeviceId, SequenceId, TemplateId};

use crate::error::{ApiError, ApiResult};

/// Longest name.
const MAX_NAME: usize = 200;
/// Most steps in one sequence.
pub(crate) const MAX_STEPS: usize = 50;
/// Most target devices of one sequence.
const MAX_DEVICES: usize = 200;
/// Longest delay of a step, in days.
const MAX_DELAY_DAYS: u32 = 365;

/// One step as a client sends it.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// The text, or the image's caption, with choices (`{Hi|Hello}`) and variables
    /// (`{first_name}`); a mistake is refused (422) naming it and its position.
    #[schema(example = "{Hi|Hello} {first_name}, did you see our offer?")]
    pub message: Option<String>,
    /// One of your templates whose text (when `message` is not given) and image (when
    /// `image_base64` is not given) the step copies.
    pub template_id: Option<TemplateId>,
    /// An image (JPEG, PNG, WebP or GIF), base64-encoded; sent as a JPEG of at most 1200 px.
    pub image_base64: Option<String>,
    /// On a replacement: the step (its position before the change, from 1) whose image this
    /// step keeps when it gives neither `image_base64` nor a template with an image.
    pub keep_image_of: Option<i64>,
    /// Calendar days to wait, in the sequence's time zone (default 0).
    #[serde(default)]
    pub delay_days: u32,
    /// Hours to wait after the days (default 0).
    #[serde(default)]
    pub delay_hours: u32,
    /// `previous` (default: after the previous step went out) or `enrolment`.
    pub delay_from: Option<DelayFrom>,
}

/// A sequence as a client sends it. On an update, a body with only `status` pauses, resumes or
/// archives it; any other field replaces the whole definition (send every field, as on creation).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceBody {
    /// A name for people, unique among your sequences.
    #[schema(example = "Cold leads")]
    pub name: Option<String>,
    /// IANA time zone its window and delays are read in (default UTC).
    #[schema(example = "America/New_York")]
    pub time_zone: Option<String>,
    /// When steps may go (default 09:00-18:00, Monday to Friday).
    pub window: Option<WindowSpec>,
    /// A lead who writes back leaves the sequence (default true).
    pub stop_on_reply: Option<bool>,
    /// Lead statuses that end a lead's enrolment, e.g. `["converted", "lost"]`.
    pub stop_statuses: Option<Vec<LeadStatus>>,
    /// Leads of its devices it enrols by itself, now and as they come to match.
    pub enrol_rule: Option<EnrolRule>,
    /// One of your sequences a lead who completes this one moves to.
    pub next_sequence_id: Option<SequenceId>,
    /// One of your sequences a lead who replies moves to.
    pub on_reply_sequence_id: Option<SequenceId>,
    /// `active` (default), `paused` or, on an update, `archived` (for good).
    pub status: Option<SequenceStatus>,
    /// The devices it goes out from (yours); each sends to its own leads.
    pub device_ids: Option<Vec<DeviceId>>,
    /// The steps, in order (1 to 50).
    pub steps: Option<Vec<StepBody>>,
}

/// A step whose text came from the body or a template, and its image to compress (if new).
pub(crate) struct ParsedStep {
    pub step: NewStep,
    /// Uncompressed bytes of a new image, to compress once every check passed.
    pub new_image: Option<Vec<u8>>,
}

fn name(value: &str) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::Invalid("name: must not be empty".into()));
    }
    if value.chars().count() > MAX_NAME {
        return Err(ApiError::Invalid(format!("name: at most {MAX_NAME} characters")));
    }
    Ok(value.to_owned())
}

impl SequenceBody {
    /// Whether the body only changes the status.
    pub fn only_status(&self) -> bool {
        self.status.is_some()
            && self.name.is_none()
            && self.time_zone.is_none()
            && self.window.is_none()
            && self.stop_on_reply.is_none()
            && self.stop_statuses.is_none()
            && self.enrol_rule.is_none()
            && self.next_sequence_id.is_none()
            && self.on_reply_sequence_id.is_none()
            && self.device_ids.is_none()
            && self.steps.is_none()
    }

    /// A checked definition; the steps' texts and images are given by the caller (templates
    /// resolved), as `steps`.
    pub(crate) fn into_new(self, steps: Vec<ParsedStep>) -> ApiResult<(NewSequence, Vec<Option<Vec<u8>>>)> {
        let time_zone = self.time_zone.as_deref().unwrap_or("UTC").trim().to_owned();
        let window = self.window.unwrap_or_else(|| WindowSpec {
            start: "09:00".into(),
            end: "18:00".into(),
            weekdays: ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec(),
        });
        let (start, end, days) = window.minutes().map_err(ApiError::Invalid)?;
        let days = if window.weekdays.is_empty() { ALL_WEEKDAYS } else { days };
        let checked = SendWindow::new(&time_zone, start, end, days).map_err(ApiError::Invalid)?;
        let devices = self.device_ids.unwrap_or_default();
        if devices.is_empty() {
            return Err(ApiError::Invalid("device_ids: choose at least one device".into()));
        }
        if devices.len() > MAX_DEVICES {
            return Err(ApiError::Invalid(format!("device_ids: at most {MAX_DEVICES} devices")));
        }
        let rule = self.enrol_rule.map(|mut rule| {
            rule.niche = rule.niche.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
            rule.journey = rule.journey.map(|j| j.trim().to_owned()).filter(|j| !j.is_empty());
            rule
        });
        let status = match self.status.unwrap_or(SequenceStatus::Active) {
            SequenceStatus::Archived => {
                return Err(ApiError::Invalid(
                    "status: a sequence is active or paused when written; archive it on its own".into(),
                ));
            }
            status => status,
        };
        let (steps, images): (Vec<NewStep>, Vec<Option<Vec<u8>>>) =
            steps.into_iter().map(|s| (s.step, s.new_image)).unzip();
        let new = NewSequence {
            name: name(
                self.name
                    .as_deref()
                    .ok_or_else(|| ApiError::Invalid("name: required".into()))?,
            )?,
            time_zone: checked.tz.name().to_owned(),
            window: (start, end, checked.weekdays),
            stop_on_reply: self.stop_on_reply.unwrap_or(true),
            stop_statuses: self.stop_statuses.unwrap_or_default(),
            enrol_rule: rule,
            next_sequence_id: self.next_sequence_id,
            on_reply_sequence_id: self.on_reply_sequence_id,
            status,
            devices,
            steps,
        };
        Ok((new, images))
    }
}

impl StepBody {
    /// Checks step `index` (from 0) whose text is `message` (from the body or its template).
    pub(crate) fn parse(&self, index: usize, message: &str, template_image: Option<Vec<u8>>) -> ApiResult<ParsedStep> {
        let field = |e: ApiError| match e {
            ApiError::Invalid(m) => ApiError::Invalid(format!("steps[{index}].{m}")),
            other => other,
        };
        let message = crate::templates::message(message).map_err(field)?.0;
        if self.delay_days > MAX_DELAY_DAYS || self.delay_hours > 24 * MAX_DELAY_DAYS {
            return Err(ApiError::Invalid(format!(
                "steps[{index}].delay_days: at most {MAX_DELAY_DAYS} days (and delay_hours at most {} hours)",
                24 * MAX_DELAY_DAYS
            )));
        }
        let new_image = self
            .image_base64
            .as_deref()
            .map(crate::campaigns::fields::image)
            .transpose()
            .map_err(field)?
            .flatten();
        Ok(ParsedStep {
            step: NewStep {
                message,
                image: if new_image.is_some() { None } else { template_image },
                delay_days: self.delay_days,
                delay_hours: self.delay_hours,
                delay_from: self.delay_from.unwrap_or(DelayFrom::Previous),
            },
            new_image,
        })
    }
}
