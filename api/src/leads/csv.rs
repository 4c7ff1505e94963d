//! The CSV form of leads: columns `name, phone, niche, journey, status, notes`, a header line
//! first (names in any case, in any order, unknown columns ignored). What [`write`] produces,
//! [`read`] takes back unchanged.
//!
//! Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` as a formula, so [`write`] puts
//! a `'` before such text (OWASP's advice against CSV injection) and [`read`] removes it again.

use std::collections::HashMap;

use serde::Serialize;
use wafleet_core::db::{Lead, NewLead};
use wafleet_core::types::{Country, PhoneNumber};

use super::fields::RawLead;

/// The columns, in the order [`write`] puts them.
pub(crate) const COLUMNS: [&str; 6] = ["name", "phone", "niche", "journey", "status", "notes"];
/// Columns a file must have.
const REQUIRED: [&str; 2] = ["name", "phone"];
/// Characters that make a spreadsheet read a cell as a formula.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Why one row (or, as row 1, the header) cannot be imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// Line of the file where the row starts (the header is line 1).
    #[schema(example = 3)]
    pub row: u64,
    /// The column at fault, when there is one.
    #[schema(example = "phone")]
    pub column: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl RowError {
    fn new(row: u64, column: Option<&str>, message: impl Into<String>) -> Self {
        RowError {
            row,
            column: column.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// A valid row.
#[derive(Debug)]
pub(crate) struct ParsedRow {
    /// Line of the file where it starts.
    pub row: u64,
    /// The lead it describes.
    pub lead: NewLead,
}

/// A file whose rows are all valid.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The rows, in file order.
    pub rows: Vec<ParsedRow>,
    /// Header names that are not lead columns (left out of the import).
    pub ignored_columns: Vec<String>,
}

/// Why a file is refused as a whole.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// These rows (or the header) are wrong.
    Rows(Vec<RowError>),
    /// More data rows than the cap.
    TooManyRows(usize),
}

/// A file's header and data records, before their cells are checked.
struct Table {
    /// Where each known column is.
    positions: HashMap<&'static str, usize>,
    /// Header names that are not lead columns.
    ignored_columns: Vec<String>,
    /// How many columns the header names.
    width: usize,
    /// Each record with the line it starts on; rows of empty cells are left out.
    records: Vec<(u64, ::csv::ByteRecord)>,
    /// A row that cannot be read as CSV (the rows after it are not read).
    unreadable: Option<RowError>,
}

/// Reads the header (which must name the `required` columns) and every record of `bytes`,
/// refusing at once a file of more than `max_rows` records.
fn table(bytes: &[u8], required: &[&str], max_rows: usize) -> Result<Table, Refusal> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // Excel's UTF-8 mark
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter(bytes))
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        _ => {
            return Err(header_error(
                None,
                "the file is empty: the first line must name the columns",
            ));
        }
    };
    let (positions, ignored_columns) = columns(&header, required)?;
    let mut table = Table {
        positions,
        ignored_columns,
        width: header.len(),
        records: Vec::new(),
        unreadable: None,
    };
    // Every record is read before any is validated, so an oversized file is refused at once.
    for record in records {
        match record {
            Ok(record) if record.iter().all(|cell| cell.iter().all(u8::is_ascii_whitespace)) => {
                // spreadsheets leave rows of empty cells at the end
            }
            Ok(_) if table.records.len() == max_rows => return Err(Refusal::TooManyRows(max_rows)),
            Ok(record) => {
                let row = record.position().map_or(0, |p| start_line(bytes, p));
                table.records.push((row, record));
            }
            Err(e) => {
                let row = e.position().map_or(0, |p| p.line());
                table.unreadable = Some(RowError::new(row, None, format!("this row cannot be read as CSV: {e}")));
                break;
            }
        }
    }
    Ok(table)
}

/// Parses and validates every row of `bytes`; national numbers are read in `country`. Refuses
/// the file with every row error found, including numbers repeated within the file.
pub(crate) fn read(bytes: &[u8], country: Country, max_rows: usize) -> Result<Parsed, Refusal> {
    let Table {
        positions,
        ignored_columns,
        width,
        records: records_read,
        unreadable,
    } = table(bytes, &REQUIRED, max_rows)?;
    let mut errors: Vec<RowError> = unreadable.into_iter().collect();
    let mut rows = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (row, record) in records_read {
        match parse_row(&record, &positions, width, row, country) {
            Ok(lead) => match seen.get(lead.phone.as_str()) {
                Some(first) => errors.push(RowError::new(
                    row,
                    Some("phone"),
                    format!(
                        "{} is already on row {first} of this file: keep one of the two",
                        lead.phone
                    ),
                )),
                None => {
                    seen.insert(lead.phone.as_str().to_owned(), row);
                    rows.push(ParsedRow { row, lead });
                }
            },
            Err(mut row_errors) => errors.append(&mut row_errors),
        }
    }
    errors.sort_by_key(|e| e.row);
    if !errors.is_empty() {
        return Err(Refusal::Rows(errors));
    }
    if rows.is_empty() {
        return Err(header_error(None, "the file has no leads below its header line"));
    }
    Ok(Parsed { rows, ignored_columns })
}

/// The numbers of a file with a `phone` column (other columns are left out), each with the
/// line it is on, in file order, a number repeated in the file once; national numbers are read
/// in `country`. Refuses the file with every number that cannot be read.
pub(crate) fn read_phones(bytes: &[u8], country: Country, max_rows: usize) -> Result<Vec<(u64, PhoneNumber)>, Refusal> {
    let table = table(bytes, &["phone"], max_rows)?;
    let at = table.positions["phone"];
    let mut errors: Vec<RowError> = table.unreadable.into_iter().collect();
    let (mut phones, mut seen) = (Vec::new(), std::collections::HashSet::new());
    for (row, record) in table.records {
        let cell = std::str::from_utf8(record.get(at).unwrap_or_default());
        match cell
            .map_err(|_| "is not UTF-8 text: save the file as CSV UTF-8".to_owned())
            .and_then(|text| {
                if text.contains('\0') {
                    Err(crate::text::NUL_REFUSED.to_owned())
                } else {
                    super::fields::phone(text, country)
                }
            }) {
            Ok(phone) => {
                if seen.insert(phone.as_str().to_owned()) {
                    phones.push((row, phone));
                }
            }
            Err(message) => errors.push(RowError::new(row, Some("phone"), message)),
        }
    }
    errors.sort_by_key(|e| e.row);
    if !errors.is_empty() {
        return Err(Refusal::Rows(errors));
    }
    if phones.is_empty() {
        return Err(header_error(None, "the file has no numbers below its header line"));
    }
    Ok(phones)
}

/// The line a record starts on. The reader's position of a record that follows blank lines
/// points at the first of them, which it skipped; a person counts from the record's first cell.
fn start_line(bytes: &[u8], position: &::csv::Position) -> u64 {
    let rest = bytes.get(position.byte() as usize..).unwrap_or_default();
    let skipped = rest
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .filter(|&&b| b == b'\n')
        .count();
    position.line() + skipped as u64
}

/// The most frequent of `,`, `;` and tab on the first line (spreadsheets in many locales use `;`).
fn delimiter(bytes: &[u8]) -> u8 {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let count = |d: u8| first_line.iter().filter(|&&b| b == d).count();
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&d| (count(d), d == b','))
        .unwrap_or(b',')
}

fn header_error(column: Option<&str>, message: impl Into<String>) -> Refusal {
    Refusal::Rows(vec![RowError::new(1, column, message)])
}

/// Where each known column is, and the names of unknown ones; `required` ones must be there.
fn columns(
    header: &::csv::ByteRecord,
    required: &[&str],
) -> Result<(HashMap<&'static str, usize>, Vec<String>), Refusal> {
    let mut positions = HashMap::new();
    let mut ignored = Vec::new();
    for (index, cell) in header.iter().enumerate() {
        let name = std::str::from_utf8(cell)
            .map_err(|_| header_error(None, "the header is not UTF-8 text: save the file as CSV UTF-8"))?
            .trim()
            .to_lowercase();
        match COLUMNS.iter().find(|&&c| c == name) {
            Some(&column) if positions.insert(column, index).is_some() => {
                return Err(header_error(Some(column), format!("column `{column}` appears twice")));
            }
            Some(_) => {}
            None if name.is_empty() => {}
            None => ignored.push(name),
        }
    }
    let missing: Vec<RowError> = required
        .iter()
        .filter(|c| !positions.contains_key(*c))
        .map(|c| {
            let message = format!(
                "required column `{c}` is missing: the first line must name the columns, e.g. {}",
                COLUMNS.join(",")
            );
            RowError::new(1, Some(c), message)
        })
        .collect();
    if missing.is_empty() {
        Ok((positions, ignored))
    } else {
        Err(Refusal::Rows(missing))
    }
}

/// One data row as a lead, or every problem it has.
fn parse_row(
    record: &::csv::ByteRecord,
    positions: &HashMap<&'static str, usize>,
    width: usize,
    row: u64,
    country: Country,
) -> Result<NewLead, Vec<RowError>> {
    if record.len() > width {
        let message = format!(
            "this row has {} values but the header names {width} columns: put values that contain the separator in double quotes",
            record.len()
        );
        return Err(vec![RowError::new(row, None, message)]);
    }
    let mut cells = HashMap::new();
    for (&column, &index) in positions {
        let cell = record.get(index).unwrap_or_default();
        let text = std::str::from_utf8(cell).map_err(|_| {
            vec![RowError::new(
                row,
                Some(column),
                "is not UTF-8 text: save the file as CSV UTF-8",
            )]
        })?;
        if text.contains('\0') {
            return Err(vec![RowError::new(row, Some(column), crate::text::NUL_REFUSED)]);
        }
        cells.insert(column, text);
    }
    let cell = |column: &str| cells.get(column).copied().unwrap_or_default();
    let (name, niche, journey, notes) = (
        unguard(cell("name")),
        unguard(cell("niche")),
        unguard(cell("journey")),
        unguard(cell("notes")),
    );
    let raw = RawLead {
        name: &name,
        phone: cell("phone"),
        niche: &niche,
        journey: &journey,
        status: cell("status"),
        notes: &notes,
    };
    raw.parse(country).map_err(|errors| {
        errors
            .into_iter()
            .map(|(column, message)| RowError::new(row, Some(column), message))
            .collect()
    })
}

/// Whether a spreadsheet would run `text` as a formula once its guarding quotes are gone.
fn needs_guard(text: &str) -> bool {
    text.trim_start_matches('\'').starts_with(FORMULA_START)
}

/// `text` as a spreadsheet cell that is never run as a formula.
fn guard(text: &str) -> String {
    if needs_guard(text) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// Undoes [`guard`].
fn unguard(text: &str) -> String {
    match text.strip_prefix('\'') {
        Some(rest) if needs_guard(rest) => rest.to_owned(),
        _ => text.to_owned(),
    }
}

/// `leads` as a CSV file with a header line.
pub(crate) fn write(leads: &[Lead]) -> Result<Vec<u8>, ::csv::Error> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(COLUMNS)?;
    for lead in leads {
        let optional = |value: &Option<String>| value.as_deref().map(guard).unwrap_or_default();
        writer.write_record([
            guard(&lead.name),
            lead.phone.to_string(),
            optional(&lead.niche),
            optional(&lead.journey),
            lead.status.as_str().to_owned(),
            optional(&lead.notes),
        ])?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
#[path = "csv_tests.rs"]
mod tests;
