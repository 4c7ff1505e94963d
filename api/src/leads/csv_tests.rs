use wafleet_core::db::LeadStatus;
use wafleet_core::types::{DeviceId, LeadId, Timestamp};

use super::*;

fn my() -> Country {
    "MY".parse().unwrap()
}

fn rows(refusal: Refusal) -> Vec<RowError> {
    match refusal {
        Refusal::Rows(rows) => rows,
        other => panic!("expected row errors, got {other:?}"),
    }
}

#[test]
fn header_in_any_case_and_order_with_unknown_columns_ignored() {
    let file = "\u{feff}Phone ; NAME;Status;Source\n012-345 6789;Aminah;Interested;fair\n";
    let parsed = read(file.as_bytes(), my(), 10).unwrap();
    assert_eq!(parsed.ignored_columns, ["source"]);
    let lead = &parsed.rows[0].lead;
    assert_eq!((lead.name.as_str(), lead.phone.as_str()), ("Aminah", "+60123456789"));
    assert_eq!(lead.status, LeadStatus::Interested);
    assert_eq!((lead.niche.as_deref(), lead.notes.as_deref()), (None, None));
}

#[test]
fn every_bad_row_is_reported_with_its_line_and_column() {
    let file = "name,phone,status\nAna,+60123456789,new\n\nBo,12ab,new\nCy,+60198765432,hot\nDi,+60 12-345 6789,\n,,\n";
    let errors = rows(read(file.as_bytes(), my(), 10).unwrap_err());
    let found: Vec<(u64, Option<&str>)> = errors.iter().map(|e| (e.row, e.column.as_deref())).collect();
    assert_eq!(
        found,
        [(4, Some("phone")), (5, Some("status")), (6, Some("phone"))],
        "rows are file lines (blank lines count); {errors:?}"
    );
    assert!(
        errors[0].message.contains("international form"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[1].message.contains("use one of new, contacted"),
        "{}",
        errors[1].message
    );
    assert!(
        errors[2].message.contains("row 2"),
        "a repeated number names the first row: {}",
        errors[2].message
    );
}

#[test]
fn missing_columns_and_empty_files_are_refused_at_the_header() {
    let errors = rows(read(b"Name,niche\nAna,cafe\n", my(), 10).unwrap_err());
    assert_eq!((errors[0].row, errors[0].column.as_deref()), (1, Some("phone")));
    assert!(errors[0].message.contains("required column `phone`"));
    assert_eq!(rows(read(b"", my(), 10).unwrap_err())[0].row, 1);
    assert!(
        rows(read(b"name,phone\n", my(), 10).unwrap_err())[0]
            .message
            .contains("no leads")
    );
    assert!(
        rows(read(b"name,phone,Phone\n", my(), 10).unwrap_err())[0]
            .message
            .contains("twice")
    );
    let wide = rows(read(b"name,phone\nAna,+60123456789,extra\n", my(), 10).unwrap_err());
    assert!(wide[0].message.contains("double quotes"), "{}", wide[0].message);
    let latin1 = rows(read(b"name,phone\nJos\xe9,+60123456789\n", my(), 10).unwrap_err());
    assert!(latin1[0].message.contains("UTF-8"));
}

#[test]
fn too_many_rows_is_refused_whole() {
    let file = "name,phone\nA,+60123456781\nB,+60123456782\nC,+60123456783\n";
    assert!(matches!(read(file.as_bytes(), my(), 2), Err(Refusal::TooManyRows(2))));
    assert_eq!(read(file.as_bytes(), my(), 3).unwrap().rows.len(), 3);
}

#[test]
fn written_files_read_back_unchanged_and_never_run_formulas() {
    let lead = |id, name: &str, phone: &str, notes: Option<&str>| Lead {
        id: LeadId(id),
        device_id: DeviceId(1),
        name: name.into(),
        phone: phone.parse().unwrap(),
        niche: Some("bakery, cakes".into()),
        journey: None,
        status: LeadStatus::Replied,
        notes: notes.map(str::to_owned),
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
        whatsapp_name: None,
    };
    let leads = [
        lead(
            1,
            "=HYPERLINK(\"http://evil\")",
            "+60123456789",
            Some("line one\nline \"two\""),
        ),
        lead(2, "'@already quoted", "+442079460958", Some("-5 kg")),
        lead(3, "Siti", "+60198765432", None),
    ];
    let file = write(&leads).unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(text.starts_with("name,phone,niche,journey,status,notes\n"));
    assert!(text.contains("\"'=HYPERLINK"), "formulas are quoted: {text}");
    assert!(text.contains("''@already quoted") && text.contains("'-5 kg"), "{text}");
    let back = read(&file, "US".parse().unwrap(), 10).unwrap();
    let again: Vec<&NewLead> = back.rows.iter().map(|r| &r.lead).collect();
    for (read, original) in again.iter().zip(&leads) {
        assert_eq!(read.name, original.name);
        assert_eq!(read.phone, original.phone);
        assert_eq!(read.niche, original.niche);
        assert_eq!(read.journey, original.journey);
        assert_eq!(read.status, original.status);
        assert_eq!(read.notes, original.notes);
    }
    assert_eq!(back.rows[1].row, 4, "a quoted line break moves later rows down");
}
