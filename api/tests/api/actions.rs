//! The device actions API without a worker: validation, all-or-report broadcasts, idempotent
//! retries, and the activity log. Sends stay queued here; `tests/actions.rs` follows them out
//! through a worker and the simulator.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, body, expect_error};

/// Marks a device as linked and online, as pairing would.
pub async fn linked(app: &TestApp, device: i64) {
    let sql = "UPDATE devices SET jid = '60123456789@s.whatsapp.net', status = 'online' WHERE id = $1";
    wafleet_core::testing::execute(&app.db, sql, &[device.into()]).await;
}

/// How many rows `table` has.
pub async fn count(app: &TestApp, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = match &app.db {
        wafleet_core::Db::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await,
        wafleet_core::Db::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await,
    }
    .unwrap();
    n
}

/// Posts a broadcast with an optional `Idempotency-Key`.
async fn broadcast(session: &Session, device: i64, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = session
        .client
        .post(session.url(&format!("/api/devices/{device}/broadcasts")))
        .header("X-CSRF-Token", &session.csrf)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn test_sends_and_number_checks_are_validated_and_logged(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    let send = format!("/api/devices/{device}/actions/test-send");

    // Not linked: nothing to send from, nothing logged.
    let response = ana.post(&send, json!({"to": "+60191000001", "text": "hi"})).await;
    expect_error(response, StatusCode::CONFLICT, "not linked").await;
    linked(&app, device).await;
    let response = ana.post(&send, json!({"to": "not a number", "text": "hi"})).await;
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "to:").await;
    let response = ana
        .post(&send, json!({"to": "+60191000001", "image_base64": "%%%"}))
        .await;
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "image_base64").await;
    assert_eq!(
        count(&app, "device_activity").await,
        0,
        "refused actions are not logged"
    );

    let response = ana
        .post(&send, json!({"to": "0191000001", "text": "testing 1 2 3"}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let sent = body(response).await;
    assert_eq!(sent["results"]["to"], "60191000001@s.whatsapp.net");
    assert_eq!(sent["results"]["status"], "queued");
    let message = sent["results"]["id"].as_i64().unwrap();
    let status = body(ana.get(&format!("/api/messages/{message}")).await).await;
    assert_eq!(status["results"]["status"], "queued", "followed like any send");

    // Lines that are all invalid are answered without asking the device.
    let response = ana
        .post(
            &format!("/api/devices/{device}/actions/check"),
            json!({"numbers": "hello\n\n12\n"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let checked = body(response).await["results"].clone();
    assert_eq!(checked[0]["line"], 1);
    assert_eq!(checked[0]["result"], "invalid");
    assert!(checked[0]["reason"].as_str().unwrap().contains("hello"), "{checked}");
    assert_eq!(checked[1]["line"], 3, "blank lines are counted as the user sees them");
    // Valid lines need the device's worker, and none runs here.
    let response = ana
        .post(
            &format!("/api/devices/{device}/actions/check"),
            json!({"numbers": "+60191000001"}),
        )
        .await;
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "did not answer").await;
    let many: String = (0..101).map(|i| format!("+6019100{i:04}\n")).collect();
    let response = ana
        .post(
            &format!("/api/devices/{device}/actions/check"),
            json!({"numbers": many}),
        )
        .await;
    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "101 lines is more than the 100",
    )
    .await;
    let response = ana
        .post(
            &format!("/api/devices/{device}/actions/check"),
            json!({"numbers": " \n"}),
        )
        .await;
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "at least one number").await;

    // The log, newest first, in pages.
    let log = body(ana.get(&format!("/api/devices/{device}/activity")).await).await["results"].clone();
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    assert_eq!(entries[0]["kind"], "check_numbers");
    assert_eq!(entries[0]["result"], "0 on WhatsApp, 0 not, 2 invalid");
    assert_eq!(entries[1]["kind"], "test_send");
    assert_eq!(entries[1]["actor"], "ana@example.com");
    assert_eq!(entries[1]["via"], "dashboard");
    assert_eq!(entries[1]["ref_id"].as_i64(), Some(message));
    assert!(
        entries[1]["summary"].as_str().unwrap().contains("+60191000001"),
        "{log}"
    );
    assert!(log["next_cursor"].is_null());
    let first = body(ana.get(&format!("/api/devices/{device}/activity?limit=1")).await).await["results"].clone();
    assert_eq!(first["entries"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_i64().expect("an older page");
    let older = body(
        ana.get(&format!("/api/devices/{device}/activity?limit=1&cursor={cursor}"))
            .await,
    )
    .await["results"]
        .clone();
    assert_eq!(older["entries"][0]["kind"], "test_send");
    expect_error(
        ana.get(&format!("/api/devices/{device}/activity?limit=0")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    )
    .await;
    expect_error(
        ana.get(&format!("/api/devices/{device}/activity?cursor=abc")).await,
        StatusCode::BAD_REQUEST,
        "cursor",
    )
    .await;
}

async fn broadcasts_are_all_or_report_and_never_sent_twice(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;

    // Every bad line is reported by its number, and nothing is queued.
    let pasted = "+60191000001\nnot a number\n\n0191000002\n120363@g.us\n";
    let response = broadcast(&ana, device, None, json!({"numbers": pasted, "text": "Sale today"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = body(response).await;
    assert!(
        refused["message"].as_str().unwrap().contains("nothing was queued"),
        "{refused}"
    );
    assert_eq!(refused["results"]["error_count"], 2);
    let lines: Vec<i64> = refused["results"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [2, 5]);
    assert_eq!(refused["results"]["errors"][0]["input"], "not a number");
    assert_eq!(count(&app, "outbound_messages").await, 0);
    assert_eq!(count(&app, "broadcasts").await, 0);

    for (body, what) in [
        (json!({"numbers": "+60191000001"}), "give the text"),
        (json!({"numbers": "", "text": "x"}), "at least one number"),
        (
            json!({"numbers": "+60191000001", "text": "x", "image_base64": "aGVsbG8="}),
            "image:",
        ),
        (
            json!({"numbers": "+60191000001\n".repeat(1001), "text": "x"}),
            "more than the 1000",
        ),
    ] {
        expect_error(
            broadcast(&ana, device, None, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            what,
        )
        .await;
    }
    assert_eq!(count(&app, "outbound_messages").await, 0);

    // Fixed: repeats are dropped with a note, each recipient one send under a stable key.
    let fixed = json!({"numbers": "+60191000001\n0191000002\n+60 19-100 0001\n", "text": "Sale today"});
    let response = broadcast(&ana, device, Some("sale-1"), fixed.clone()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted = body(response).await;
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("to 2 numbers queued; 1 repeated number dropped"),
        "{accepted}"
    );
    let id = accepted["results"]["broadcast"]["id"].as_i64().unwrap();
    assert_eq!(accepted["results"]["duplicates"][0]["line"], 3);
    assert_eq!(accepted["results"]["duplicates"][0]["first_line"], 1);
    let progress = &accepted["results"]["broadcast"]["progress"];
    assert_eq!(
        (progress["total"].as_i64(), progress["queued"].as_i64()),
        (Some(2), Some(2))
    );
    let keys: Vec<(String,)> = match &app.db {
        wafleet_core::Db::Sqlite(pool) => {
            sqlx::query_as("SELECT idempotency_key FROM outbound_messages ORDER BY idempotency_key")
                .fetch_all(pool)
                .await
        }
        wafleet_core::Db::Postgres(pool) => {
            sqlx::query_as("SELECT idempotency_key FROM outbound_messages ORDER BY idempotency_key")
                .fetch_all(pool)
                .await
        }
    }
    .unwrap();
    assert_eq!(
        keys.into_iter().map(|k| k.0).collect::<Vec<_>>(),
        [
            format!("broadcast:{id}:+60191000001"),
            format!("broadcast:{id}:+60191000002")
        ]
    );

    // A retried request is the same broadcast and records nothing more.
    let response = broadcast(&ana, device, Some("sale-1"), fixed).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["results"]["broadcast"]["id"].as_i64(), Some(id));
    assert_eq!(count(&app, "outbound_messages").await, 2);
    let response = broadcast(
        &ana,
        device,
        Some("sale-1"),
        json!({"numbers": "+60191000001", "text": "another message"}),
    )
    .await;
    expect_error(response, StatusCode::CONFLICT, "Idempotency-Key").await;
    assert_eq!(count(&app, "outbound_messages").await, 2);

    // Progress, listed and by id; one activity entry for the accepted broadcast only.
    let listed = body(ana.get(&format!("/api/devices/{device}/broadcasts")).await).await;
    assert_eq!(listed["results"].as_array().unwrap().len(), 1);
    assert_eq!(listed["results"][0]["message"], "Sale today");
    let one = body(ana.get(&format!("/api/devices/{device}/broadcasts/{id}")).await).await;
    assert_eq!(one["results"]["progress"]["queued"], 2);
    expect_error(
        ana.get(&format!("/api/devices/{device}/broadcasts/{}", id + 1)).await,
        StatusCode::NOT_FOUND,
        "broadcast",
    )
    .await;
    let log = body(ana.get(&format!("/api/devices/{device}/activity")).await).await;
    let entries = log["results"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["kind"], "broadcast");
    assert_eq!(entries[0]["ref_id"].as_i64(), Some(id));
    assert_eq!(entries[0]["result"], "2 sends queued; 1 repeated number dropped");

    // Over an API token the log says so.
    let token = body(ana.post("/api/tokens", json!({"name": "cli"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = reqwest::Client::new()
        .post(app.url(&format!("/api/devices/{device}/broadcasts")))
        .bearer_auth(&token)
        .json(&json!({"numbers": "+60191000003", "text": "from a script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let log = body(ana.get(&format!("/api/devices/{device}/activity")).await).await;
    assert_eq!(log["results"]["entries"][0]["via"], "api");

    // The page opens, and the dashboard's card links to it.
    let page = ana.get(&format!("/device/{device}/actions")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Broadcast to a list"));
    let dashboard = ana.get("/dashboard").await.text().await.unwrap();
    assert!(
        dashboard.contains("actions-link"),
        "the device card links to the actions page"
    );

    // Every route is in the OpenAPI document.
    let spec = body(ana.get("/api/openapi.json").await).await;
    for path in [
        "/api/devices/{id}/actions/test-send",
        "/api/devices/{id}/actions/check",
        "/api/devices/{id}/broadcasts",
        "/api/devices/{id}/broadcasts/{broadcast}",
        "/api/devices/{id}/activity",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => test_sends_and_number_checks_are_validated_and_logged, broadcasts_are_all_or_report_and_never_sent_twice);
