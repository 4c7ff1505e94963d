//! The fields of a lead, parsed the same way from JSON and from CSV. Errors are messages for
//! people that say what to fix; callers add the field or column name.

use wafleet_core::db::{LeadStatus, NewLead};
use wafleet_core::types::{Country, PhoneError, PhoneNumber};

/// Longest name accepted.
pub(crate) const MAX_NAME_LEN: usize = 100;
/// Longest niche or journey label accepted.
pub(crate) const MAX_LABEL_LEN: usize = 64;
/// Longest notes accepted.
pub(crate) const MAX_NOTES_LEN: usize = 2000;

/// A required name, trimmed.
pub(crate) fn name(input: &str) -> Result<String, String> {
    let name = input.trim();
    if name.is_empty() {
        return Err("is required: write the person's name".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    Ok(name.to_owned())
}

/// A required phone number; national numbers are read in `country`.
pub(crate) fn phone(input: &str, country: Country) -> Result<PhoneNumber, String> {
    if input.trim().is_empty() {
        return Err("is required: write the number in international form, e.g. +60123456789".into());
    }
    PhoneNumber::parse(input, country).map_err(|e| match e {
        PhoneError::Unparseable(text) => {
            format!("`{text}` is not a phone number: write it in international form, e.g. +60123456789")
        }
        invalid @ PhoneError::Invalid(_) => invalid.to_string(),
    })
}

/// An optional label (niche, journey): empty means none.
pub(crate) fn label(input: &str) -> Result<Option<String>, String> {
    optional(input, MAX_LABEL_LEN)
}

/// Optional notes: empty means none.
pub(crate) fn notes(input: &str) -> Result<Option<String>, String> {
    optional(input, MAX_NOTES_LEN)
}

fn optional(input: &str, max: usize) -> Result<Option<String>, String> {
    let text = input.trim();
    if text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// A status; empty means `new`.
pub(crate) fn status(input: &str) -> Result<LeadStatus, String> {
    if input.trim().is_empty() {
        Ok(LeadStatus::New)
    } else {
        input.parse()
    }
}

/// The raw text of a lead's fields, from a JSON body or a CSV row.
#[derive(Debug, Default)]
pub(crate) struct RawLead<'a> {
    pub name: &'a str,
    pub phone: &'a str,
    pub niche: &'a str,
    pub journey: &'a str,
    pub status: &'a str,
    pub notes: &'a str,
}

impl RawLead<'_> {
    /// Parses every field, collecting each failure as `(field, message)`.
    pub(crate) fn parse(&self, country: Country) -> Result<NewLead, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let name = keep(&mut errors, "name", name(self.name));
        let phone = keep(&mut errors, "phone", phone(self.phone, country));
        let niche = keep(&mut errors, "niche", label(self.niche));
        let journey = keep(&mut errors, "journey", label(self.journey));
        let status = keep(&mut errors, "status", status(self.status));
        let notes = keep(&mut errors, "notes", notes(self.notes));
        match (name, phone, niche, journey, status, notes) {
            (Some(name), Some(phone), Some(niche), Some(journey), Some(status), Some(notes)) => Ok(NewLead {
                name,
                phone,
                niche,
                journey,
                status,
                notes,
            }),
            _ => Err(errors),
        }
    }
}

/// The value of `result`, or `None` with its error recorded against `field`.
fn keep<T>(errors: &mut Vec<(&'static str, String)>, field: &'static str, result: Result<T, String>) -> Option<T> {
    result.map_err(|message| errors.push((field, message))).ok()
}
