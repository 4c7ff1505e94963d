//! Numbers pasted one per line, in any common format (`+60 12-345 6789`, `012-345 6789`,
//! `60123456789`, a personal JID). Each non-blank line is parsed on its own, so every bad line can
//! be reported with its line number, as the leads CSV import does.

use serde::Serialize;
use wafleet_core::types::{Country, PhoneNumber};

use crate::error::{ApiError, ApiResult};

/// A non-blank pasted line and what it parsed to.
#[derive(Debug)]
pub(crate) struct Line {
    /// 1-based, counting blank lines too, as the user sees it in the text box.
    pub line: usize,
    /// The line as pasted, trimmed.
    pub input: String,
    /// The number, or why the line is not one.
    pub parsed: Result<PhoneNumber, String>,
}

/// A line that is not a usable number.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LineError {
    /// The line number in the pasted text (1-based).
    pub line: usize,
    /// The line as pasted.
    pub input: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A line dropped because an earlier line has the same number.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Duplicate {
    /// The line dropped.
    pub line: usize,
    /// The earlier line kept.
    pub first_line: usize,
    /// The number both lines name.
    pub phone: PhoneNumber,
}

/// Splits `text` into its non-blank lines, each parsed as a phone number (a trailing `,` or `;`
/// from a spreadsheet copy is ignored). Refuses more than `max` lines with 422.
pub(crate) fn parse(text: &str, country: Country, max: usize) -> ApiResult<Vec<Line>> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().trim_end_matches([',', ';']).trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(ApiError::Invalid(
            "numbers: paste at least one number, one per line".into(),
        ));
    }
    if lines.len() > max {
        return Err(ApiError::Invalid(format!(
            "numbers: {} lines is more than the {max} one request takes; split the list",
            lines.len()
        )));
    }
    Ok(lines
        .into_iter()
        .map(|(line, input)| Line {
            line,
            input: input.to_owned(),
            parsed: number(input, country),
        })
        .collect())
}

/// One line as a number: a phone number, or a personal JID (`60123456789@s.whatsapp.net`).
fn number(input: &str, country: Country) -> Result<PhoneNumber, String> {
    let raw = match input.split_once('@') {
        Some((user, wafleet_core::link::USER_SERVER)) => format!("+{}", user.split(':').next().unwrap_or(user)),
        Some(_) => {
            return Err(format!(
                "`{input}` is not a person's chat (groups and broadcasts are not allowed)"
            ));
        }
        None => input.to_owned(),
    };
    PhoneNumber::parse(&raw, country).map_err(|e| e.to_string())
}

/// The lines that are not numbers.
pub(crate) fn errors(lines: &[Line]) -> Vec<LineError> {
    lines
        .iter()
        .filter_map(|l| {
            l.parsed.as_ref().err().map(|e| LineError {
                line: l.line,
                input: l.input.clone(),
                message: e.clone(),
            })
        })
        .collect()
}

/// The distinct numbers of `lines` in the order first pasted, and the lines dropped as repeats.
/// Lines that are not numbers are skipped.
pub(crate) fn distinct(lines: &[Line]) -> (Vec<PhoneNumber>, Vec<Duplicate>) {
    let mut first: std::collections::HashMap<&PhoneNumber, usize> = std::collections::HashMap::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for line in lines {
        let Ok(phone) = &line.parsed else { continue };
        match first.get(phone) {
            Some(&first_line) => dropped.push(Duplicate {
                line: line.line,
                first_line,
                phone: phone.clone(),
            }),
            None => {
                first.insert(phone, line.line);
                kept.push(phone.clone());
            }
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn my() -> Country {
        "MY".parse().unwrap()
    }

    #[test]
    fn common_formats_parse_and_blank_lines_keep_their_numbers() {
        let text = "+60 12-345 6789\n\n012-345 6789,\n60191000001@s.whatsapp.net\nnot a number\n120363@g.us\n";
        let lines = parse(text, my(), 10).unwrap();
        let numbers: Vec<_> = lines.iter().map(|l| l.line).collect();
        assert_eq!(numbers, [1, 3, 4, 5, 6], "blank line 2 is skipped but counted");
        assert_eq!(lines[0].parsed.as_ref().unwrap().as_str(), "+60123456789");
        assert_eq!(lines[1].parsed.as_ref().unwrap().as_str(), "+60123456789");
        assert_eq!(lines[2].parsed.as_ref().unwrap().as_str(), "+60191000001");
        let errors = errors(&lines);
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [5, 6]);
        assert!(errors[1].message.contains("person"), "{}", errors[1].message);
        let (kept, dropped) = distinct(&lines);
        assert_eq!(kept.len(), 2);
        assert_eq!((dropped[0].line, dropped[0].first_line), (3, 1));
    }

    #[test]
    fn empty_and_oversized_pastes_are_refused() {
        assert!(matches!(parse(" \n\n", my(), 5), Err(ApiError::Invalid(_))));
        let many = "+60123456789\n".repeat(6);
        let Err(ApiError::Invalid(message)) = parse(&many, my(), 5) else {
            panic!("six lines over a limit of five")
        };
        assert!(message.contains("6 lines") && message.contains('5'), "{message}");
    }
}
