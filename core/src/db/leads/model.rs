//! What a lead is: its fields, its status, the changes and filters applied to it.

use crate::types::text_enum::text_enum;
use crate::types::{DeviceId, LeadId, PhoneNumber, Timestamp};

text_enum! {
    /// Where a lead stands in the sales funnel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum LeadStatus ("status") {
        /// Added, not contacted yet.
        New = "new",
        /// We wrote to them.
        Contacted = "contacted",
        /// They answered.
        Replied = "replied",
        /// They asked for more (a quote, a call, a demo).
        Interested = "interested",
        /// They bought or signed up.
        Converted = "converted",
        /// Not interested, wrong number, or asked not to be contacted.
        Lost = "lost",
    }
}

/// A lead as its owner sees it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Lead {
    /// Row id.
    pub id: LeadId,
    /// The device whose contact this is.
    pub device_id: DeviceId,
    /// The person's name.
    pub name: String,
    /// Their number, E.164; unique among the device's leads.
    pub phone: PhoneNumber,
    /// The market they belong to (the owner's label); campaigns select by it.
    pub niche: Option<String>,
    /// The follow-up sequence or stage they are in (the owner's label).
    pub journey: Option<String>,
    /// Where they stand in the funnel.
    pub status: LeadStatus,
    /// Free notes.
    pub notes: Option<String>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// The name WhatsApp shows for the number on the device: the one its phone saved for the
    /// contact, else the one the contact gave themselves; `None` while the device knows neither.
    pub whatsapp_name: Option<String>,
}

/// A lead to add, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLead {
    /// The person's name.
    pub name: String,
    /// Their number.
    pub phone: PhoneNumber,
    /// Market label.
    pub niche: Option<String>,
    /// Follow-up label.
    pub journey: Option<String>,
    /// Funnel status.
    pub status: LeadStatus,
    /// Free notes.
    pub notes: Option<String>,
}

/// A change to a lead: `None` keeps a field; for the optional labels `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct LeadChanges {
    /// New name.
    pub name: Option<String>,
    /// New number.
    pub phone: Option<PhoneNumber>,
    /// New niche, or cleared.
    pub niche: Option<Option<String>>,
    /// New journey, or cleared.
    pub journey: Option<Option<String>>,
    /// New status.
    pub status: Option<LeadStatus>,
    /// New notes, or cleared.
    pub notes: Option<Option<String>>,
}

/// Which of a device's leads to list or export; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct LeadFilter {
    /// Case-insensitive substring of the name or notes, or digits within the phone number.
    pub q: Option<String>,
    /// Exact niche.
    pub niche: Option<String>,
    /// Exact status.
    pub status: Option<LeadStatus>,
    /// Exact journey.
    pub journey: Option<String>,
}

impl LeadFilter {
    /// The `LIKE` pattern for name and notes.
    pub(super) fn text_pattern(&self) -> Option<String> {
        let q = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty())?;
        Some(crate::db::like_containing(q))
    }

    /// The `LIKE` pattern for the phone: the digits of a query that looks like (part of) a number.
    /// Leading zeros (a national trunk prefix, as in `012…`) are dropped, since stored numbers are
    /// international (`+6012…`).
    pub(super) fn phone_pattern(&self) -> Option<String> {
        let q = self.q.as_deref()?.trim();
        let looks_like_phone = q.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        let significant = match digits.trim_start_matches('0') {
            "" => digits.as_str(),
            rest => rest,
        };
        (looks_like_phone && !digits.is_empty()).then(|| format!("%{significant}%"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses_any_case_and_names_the_choices() {
        assert_eq!(" Interested ".parse::<LeadStatus>(), Ok(LeadStatus::Interested));
        let err = "hot".parse::<LeadStatus>().unwrap_err();
        assert!(err.contains("`hot`") && err.contains("new, contacted, replied, interested, converted, lost"));
        for status in LeadStatus::ALL {
            assert_eq!(status.as_str().parse::<LeadStatus>(), Ok(status));
        }
    }

    #[test]
    fn search_patterns_escape_wildcards_and_match_phone_digits() {
        let filter = |q: &str| LeadFilter {
            q: Some(q.into()),
            ..Default::default()
        };
        assert_eq!(filter("50%_off").text_pattern().as_deref(), Some("%50\\%\\_off%"));
        assert_eq!(filter("012-345").phone_pattern().as_deref(), Some("%12345%"));
        assert_eq!(filter("ana 1").phone_pattern(), None, "words are not a number");
        assert_eq!(filter("  ").text_pattern(), None);
    }
}
