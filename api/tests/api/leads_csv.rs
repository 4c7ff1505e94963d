//! CSV import (all-or-report) and export of leads.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, body, expect_error, spawn_app_with};
use crate::leads::{add_lead, listed, names};

/// A file with two bad rows (lines 3 and 5) among good ones.
pub const TWO_BAD_ROWS: &str = "Name,Phone,Niche,Status,Notes\n\
    Aminah,012-345 6789,bakery,new,met at the fair\n\
    Bo,12ab,bakery,new,\n\
    Chong,+60 17-111 2222,florist,replied,\"likes roses, red\"\n\
    Dewi,+6281398765432,florist,hot,\n";

/// The same file with both rows fixed.
pub const FIXED: &str = "Name,Phone,Niche,Status,Notes\n\
    Aminah,012-345 6789,bakery,new,met at the fair\n\
    Bo,+60198765432,bakery,new,\n\
    Chong,+60 17-111 2222,florist,replied,\"likes roses, red\"\n\
    Dewi,+6281398765432,florist,lost,\n";

/// Posts `csv` as a `text/csv` body.
async fn import_raw(session: &Session, device: i64, csv: &str) -> Response {
    session
        .client
        .post(session.url(&format!("/api/devices/{device}/leads/import")))
        .header("X-CSRF-Token", &session.csrf)
        .header("Content-Type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap()
}

/// Uploads `csv` as the `file` field of a multipart form, as a browser does.
async fn import_form(session: &Session, device: i64, csv: &str, csrf: Option<&str>) -> Response {
    let boundary = "----wafleet-test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"leads.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    let mut request = session
        .client
        .post(session.url(&format!("/api/devices/{device}/leads/import")))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(form);
    if let Some(token) = csrf {
        request = request.header("X-CSRF-Token", token);
    }
    request.send().await.unwrap()
}

/// The `(row, column)` of each error of a refused import.
async fn refused_rows(response: Response) -> Vec<(i64, String)> {
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = body(response).await;
    assert!(
        body["message"].as_str().unwrap().contains("nothing was imported"),
        "{body}"
    );
    body["results"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["column"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn import_is_all_or_report(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let list = format!("/api/devices/{device}/leads");

    let response = import_form(&ana, device, TWO_BAD_ROWS, Some(&ana.csrf)).await;
    let body = body(response).await;
    assert_eq!(body["results"]["error_count"], 2, "{body}");
    let errors = body["results"]["errors"].as_array().unwrap();
    assert_eq!(
        (errors[0]["row"].as_i64(), errors[0]["column"].as_str()),
        (Some(3), Some("phone"))
    );
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("`12ab` is not a phone number")
    );
    assert_eq!(
        (errors[1]["row"].as_i64(), errors[1]["column"].as_str()),
        (Some(5), Some("status"))
    );
    assert!(errors[1]["message"].as_str().unwrap().contains("unknown status `hot`"));
    assert!(names(&ana, &list).await.is_empty(), "nothing was stored");
    assert_eq!(
        refused_rows(import_raw(&ana, device, TWO_BAD_ROWS).await).await,
        [(3, "phone".to_owned()), (5, "status".to_owned())],
        "a raw CSV body is read the same way"
    );

    let response = import_form(&ana, device, FIXED, Some(&ana.csrf)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(crate::helpers::body(response).await["results"]["imported"], 4);
    let stored = listed(&ana, &list).await;
    assert_eq!(stored.len(), 4);
    let chong = stored.iter().find(|l| l["name"] == "Chong").unwrap();
    assert_eq!(chong["phone"], "+60171112222");
    assert_eq!(chong["notes"], "likes roses, red");
    assert_eq!(chong["status"], "replied");

    // The same file again clashes with every stored number: all reported, nothing added.
    let again = refused_rows(import_raw(&ana, device, FIXED).await).await;
    assert_eq!(again.iter().map(|(row, _)| *row).collect::<Vec<_>>(), [2, 3, 4, 5]);
    let partly_new = "name,phone\nEko,+60133334444\nAminah again,+60123456789\n";
    assert_eq!(
        refused_rows(import_raw(&ana, device, partly_new).await).await,
        [(3, "phone".to_owned())]
    );
    let repeated = "name,phone\nEko,+60133334444\nEko twin,0133334444\n";
    assert_eq!(
        refused_rows(import_raw(&ana, device, repeated).await).await,
        [(3, "phone".to_owned())]
    );
    let no_phone = "name,mobile\nEko,+60133334444\n";
    assert_eq!(
        refused_rows(import_raw(&ana, device, no_phone).await).await,
        [(1, "phone".to_owned())]
    );
    assert_eq!(listed(&ana, &list).await.len(), 4, "refused files stored nothing");

    // More rows than the cap (50,000) are refused whole, before any row is checked.
    let huge = format!("name,phone\n{}", "A,+60123456789\n".repeat(50_001));
    expect_error(
        import_raw(&ana, device, &huge).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "more than 50000 leads: split it",
    )
    .await;

    // Wrong content types and forms without a file are told what to send.
    let json = ana.post(&format!("{list}/import"), json!({"name": "x"})).await;
    expect_error(json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "multipart/form-data").await;
    // A browser session must carry the CSRF token with an upload.
    expect_error(
        import_form(&ana, device, partly_new, None).await,
        StatusCode::FORBIDDEN,
        "CSRF",
    )
    .await;
    assert_eq!(listed(&ana, &list).await.len(), 4);
}

async fn import_limits(backend: crate::helpers::Backend) {
    let app = spawn_app_with(backend, |s| s.max_body_bytes = 4096).await;
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let mut big = String::from("name,phone\n");
    for i in 0..200 {
        big.push_str(&format!("Lead {i},+6012{:07}\n", 3_000_000 + i));
    }
    expect_error(
        import_raw(&ana, device, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "4096 bytes",
    )
    .await;
    expect_error(
        import_form(&ana, device, &big, Some(&ana.csrf)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "4096 bytes",
    )
    .await;
    assert!(names(&ana, &format!("/api/devices/{device}/leads")).await.is_empty());
}

async fn export_reimports_unchanged(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let source = ana.add_device("Sales", None).await;
    let target = ana.add_device("Backup", None).await;
    let tricky = [
        json!({"name": "=HYPERLINK(\"http://example.com\")", "phone": "+60123456789", "niche": "bakery, cakes"}),
        json!({"name": "Siti \"Boss\" Nurhaliza", "phone": "+60198765432", "status": "converted",
               "notes": "two\nlines, and 'quotes'", "journey": "vip"}),
        json!({"name": "Zoë Øster", "phone": "+442079460958", "notes": "-5 kg, @home", "status": "lost"}),
    ];
    for lead in tricky {
        add_lead(&ana, source, lead).await;
    }
    let response = ana.get(&format!("/api/devices/{source}/leads/export")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    let disposition = header("content-disposition");
    assert!(
        disposition.starts_with(&format!("attachment; filename=\"leads-device-{source}-"))
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let csv = response.text().await.unwrap();
    assert!(csv.starts_with("name,phone,niche,journey,status,notes\n"), "{csv}");
    assert!(
        csv.contains("\"'=HYPERLINK"),
        "a formula is never run by a spreadsheet: {csv}"
    );

    let imported = import_raw(&ana, target, &csv).await;
    assert_eq!(
        imported.status(),
        StatusCode::CREATED,
        "{}",
        imported.text().await.unwrap()
    );
    let fields = |lead: &Value| ["name", "phone", "niche", "journey", "status", "notes"].map(|f| lead[f].clone());
    let before: Vec<_> = listed(&ana, &format!("/api/devices/{source}/leads"))
        .await
        .iter()
        .map(fields)
        .collect();
    let after: Vec<_> = listed(&ana, &format!("/api/devices/{target}/leads"))
        .await
        .iter()
        .map(fields)
        .collect();
    assert_eq!(before, after, "the export imports back unchanged");

    // Export follows the filters.
    let lost = ana
        .get(&format!("/api/devices/{source}/leads/export?status=lost"))
        .await;
    let lost = lost.text().await.unwrap();
    assert_eq!(lost.lines().count(), 2, "{lost}");
    assert!(lost.contains("Zoë Øster"));
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => import_is_all_or_report, export_reimports_unchanged; import_limits);
