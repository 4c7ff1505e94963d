//! Sequences over the JSON API: bad input refused naming the field and how to fix it, pausing,
//! resuming and archiving, enrolling by hand once, and users isolated on every route.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, body, expect_error};

fn definition(device: i64) -> Value {
    json!({"name": "Cold", "device_ids": [device], "time_zone": "Europe/Madrid",
           "window": {"start": "10:00", "end": "17:30", "weekdays": ["mon", "wed"]},
           "steps": [{"message": "{Hi|Hello} {first_name}"}, {"message": "Again", "delay_days": 2, "delay_from": "enrolment"}]})
}

async fn create(session: &Session, definition: Value) -> Value {
    let response = session.post("/api/sequences", definition).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body(response).await["results"].clone()
}

async fn lead(session: &Session, device: i64, phone: &str) -> i64 {
    let response = session
        .post(
            "/api/leads",
            json!({"device_id": device, "name": "Lee", "phone": phone}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body(response).await["results"]["id"].as_i64().unwrap()
}

async fn sequences_are_checked_and_change_status(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    let sequence = create(&ana, definition(device)).await;
    assert_eq!(
        sequence["window"],
        json!({"start": "10:00", "end": "17:30", "weekdays": ["mon", "wed"]})
    );
    assert_eq!(sequence["steps"][1]["delay_from"], "enrolment");
    assert_eq!(sequence["steps"][0]["delay_from"], "previous", "the default");
    assert_eq!(sequence["stop_on_reply"], true, "the default");

    for (change, needle) in [
        (
            json!({"time_zone": "Mars/Base"}),
            "time_zone: unknown time zone `Mars/Base`",
        ),
        (
            json!({"window": {"start": "18:00", "end": "09:00", "weekdays": ["mon"]}}),
            "window: it must open before it closes",
        ),
        (
            json!({"window": {"start": "9", "end": "18:00", "weekdays": []}}),
            "window.start: `9` is not a time",
        ),
        (
            json!({"window": {"start": "09:00", "end": "18:00", "weekdays": ["someday"]}}),
            "unknown day `someday`",
        ),
        (json!({"steps": []}), "steps: give 1 to 50 steps"),
        (json!({"steps": [{"message": "Hi {frist_name}"}]}), "steps[0].message"),
        (json!({"steps": [{"delay_days": 1}]}), "steps[0].message: required"),
        (
            json!({"steps": [{"message": "ok", "delay_days": 400}]}),
            "steps[0].delay_days: at most 365",
        ),
        (json!({"device_ids": []}), "device_ids: choose at least one device"),
        (json!({"name": "Cold"}), "already have a sequence named `Cold`"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let mut bad = definition(device);
        bad["name"] = json!("Other");
        for (key, value) in change.as_object().unwrap() {
            bad[key] = value.clone();
        }
        let response = ana.post("/api/sequences", bad).await;
        let status = response.status();
        let answer = body(response).await;
        assert!(
            [
                StatusCode::UNPROCESSABLE_ENTITY,
                StatusCode::CONFLICT,
                StatusCode::BAD_REQUEST
            ]
            .contains(&status),
            "{change}: {status} {answer}"
        );
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{change}: {answer}"
        );
    }

    let path = format!("/api/sequences/{}", sequence["id"]);
    let paused = body(ana.put(&path, json!({"status": "paused"})).await).await;
    assert_eq!(paused["results"]["status"], "paused", "{paused}");
    assert_eq!(
        paused["results"]["steps"].as_array().unwrap().len(),
        2,
        "only the status changed"
    );
    let mut edited = definition(device);
    edited["steps"] = json!([{"message": "Only step"}]);
    let edited = body(ana.put(&path, edited).await).await;
    assert_eq!(edited["results"]["steps"][0]["message"], "Only step", "{edited}");
    assert_eq!(
        edited["results"]["status"], "active",
        "a full definition sets the status too"
    );

    // By hand: a lead is enrolled once, whatever the repeats.
    let first = lead(&ana, device, "+60123400071").await;
    let enrol = format!("{path}/enrolments");
    let once = body(ana.post(&enrol, json!({"lead_ids": [first, first]})).await).await;
    assert_eq!(once["results"], 1, "{once}");
    let again = body(ana.post(&enrol, json!({"lead_ids": [first]})).await).await;
    assert_eq!(again["results"], 0, "{again}");
    let listed = body(ana.get(&enrol).await).await;
    assert_eq!(listed["results"][0]["source"], "hand", "{listed}");
    expect_error(
        ana.post(&enrol, json!({"lead_ids": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "lead_ids",
    )
    .await;
    let out = ana.delete(&format!("{enrol}/{first}")).await;
    assert_eq!(out.status(), StatusCode::OK);
    let report = body(ana.get(&format!("{path}/report")).await).await;
    assert_eq!(report["results"]["exited"]["by_hand"], 1, "{report}");

    // Archived for good.
    let archived = body(ana.put(&path, json!({"status": "archived"})).await).await;
    assert_eq!(archived["results"]["status"], "archived");
    expect_error(
        ana.put(&path, json!({"status": "active"})).await,
        StatusCode::CONFLICT,
        "archived",
    )
    .await;
    expect_error(
        ana.post(&enrol, json!({"lead_ids": [first]})).await,
        StatusCode::CONFLICT,
        "archived",
    )
    .await;
}

async fn another_users_sequences_are_invisible(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    let bos_device = bo.add_device("Bo's phone", None).await;
    let anas_lead = lead(&ana, device, "+60123400071").await;
    let sequence = create(&ana, definition(device)).await;
    let path = format!("/api/sequences/{}", sequence["id"]);

    expect_error(bo.get(&path).await, StatusCode::NOT_FOUND, "sequence not found").await;
    expect_error(
        bo.put(&path, json!({"status": "paused"})).await,
        StatusCode::NOT_FOUND,
        "sequence not found",
    )
    .await;
    expect_error(
        bo.put(&path, definition(bos_device)).await,
        StatusCode::NOT_FOUND,
        "sequence not found",
    )
    .await;
    expect_error(bo.delete(&path).await, StatusCode::NOT_FOUND, "sequence not found").await;
    for sub in ["report", "enrolments", "preview"] {
        expect_error(
            bo.get(&format!("{path}/{sub}")).await,
            StatusCode::NOT_FOUND,
            "sequence not found",
        )
        .await;
    }
    expect_error(
        bo.post(&format!("{path}/retry"), json!({})).await,
        StatusCode::NOT_FOUND,
        "sequence not found",
    )
    .await;
    expect_error(
        bo.post(&format!("{path}/enrolments"), json!({"lead_ids": [anas_lead]}))
            .await,
        StatusCode::NOT_FOUND,
        "sequence not found",
    )
    .await;
    expect_error(
        bo.delete(&format!("{path}/enrolments/{anas_lead}")).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    // Bo can neither plant a sequence on Ana's device nor move his leads into her sequence.
    expect_error(
        bo.post("/api/sequences", definition(device)).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    let mut chained = definition(bos_device);
    chained["next_sequence_id"] = sequence["id"].clone();
    expect_error(
        bo.post("/api/sequences", chained).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    // Nor enrol those who answered her campaign.
    let campaign = ana
        .post(
            "/api/campaigns",
            json!({"title": "Promo", "niche": "promo", "message": "Offer", "send_at": "2030-01-01T09:00:00Z",
                   "time_zone": "UTC", "device_ids": [device], "status": "draft"}),
        )
        .await;
    assert_eq!(campaign.status(), StatusCode::CREATED);
    let campaign = body(campaign).await["results"]["id"].clone();
    let mut answered = definition(bos_device);
    answered["enrol_rule"] = json!({"replied_to_campaign": campaign});
    expect_error(
        bo.post("/api/sequences", answered).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    // His own sequence does not take Ana's lead.
    let own = create(&bo, definition(bos_device)).await;
    let taken = body(
        bo.post(
            &format!("/api/sequences/{}/enrolments", own["id"]),
            json!({"lead_ids": [anas_lead]}),
        )
        .await,
    )
    .await;
    assert_eq!(taken["results"], 0, "{taken}");
    let bos = body(bo.get("/api/sequences").await).await["results"].clone();
    assert_eq!(bos.as_array().unwrap().len(), 1, "{bos}");

    let still = body(ana.get(&path).await).await;
    assert_eq!(still["results"]["status"], "active", "Bo's attempts changed nothing");
}

/// Posts `csv` as a `text/csv` body to a sequence's enrolment import.
async fn enrol_csv(session: &Session, sequence: &Value, csv: &str) -> reqwest::Response {
    session
        .client
        .post(session.url(&format!("/api/sequences/{}/enrolments/import", sequence["id"])))
        .header("X-CSRF-Token", &session.csrf)
        .header("Content-Type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap()
}

/// A file of numbers enrols the leads that have them, once; numbers that are no lead are listed
/// back by line; a number that cannot be read refuses the file; another user's leads and
/// sequences are out of reach.
async fn leads_are_enrolled_from_a_file(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    let bos_device = bo.add_device("Bo's phone", None).await;
    lead(&ana, device, "+60123400071").await;
    lead(&ana, device, "+60123400072").await;
    lead(&bo, bos_device, "+60123400073").await;
    let sequence = create(&ana, definition(device)).await;

    // A leads export's columns; a national number read in the default country; Bo's lead's
    // number is no lead of Ana's device.
    let file = "name,phone,niche\nLee,+60123400071,cold\nLee,0123400072,\nBo's,+60123400073,\n";
    let response = enrol_csv(&ana, &sequence, file).await;
    assert_eq!(response.status(), StatusCode::OK);
    let done = body(response).await;
    assert_eq!(
        done["results"],
        json!({"enrolled": 2, "already_enrolled": 0, "not_leads_count": 1,
               "not_leads": [{"row": 4, "phone": "+60123400073"}]}),
        "{done}"
    );
    let again = body(enrol_csv(&ana, &sequence, file).await).await;
    assert_eq!(
        (&again["results"]["enrolled"], &again["results"]["already_enrolled"]),
        (&json!(0), &json!(2)),
        "{again}"
    );
    let listed = body(ana.get(&format!("/api/sequences/{}/enrolments", sequence["id"])).await).await;
    let sources: Vec<&str> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["csv", "csv"], "{listed}");

    let response = enrol_csv(&ana, &sequence, "phone\n+60123400071\nnot a number\n").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = body(response).await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .starts_with("nothing was enrolled: the file has 1 error"),
        "{refused}"
    );
    assert_eq!(refused["results"]["errors"][0]["row"], 3, "{refused}");
    assert_eq!(refused["results"]["errors"][0]["column"], "phone", "{refused}");
    let response = enrol_csv(&ana, &sequence, "name\nLee\n").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let no_column = body(response).await;
    assert!(
        no_column["results"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("required column `phone` is missing"),
        "{no_column}"
    );
    let still = body(ana.get(&format!("/api/sequences/{}/report", sequence["id"])).await).await;
    assert_eq!(
        still["results"]["enrolled"], 2,
        "refused files enrolled nobody: {still}"
    );
    expect_error(
        enrol_csv(&bo, &sequence, "phone\n+60123400071\n").await,
        StatusCode::NOT_FOUND,
        "sequence not found",
    )
    .await;
    let archived = ana
        .put(
            &format!("/api/sequences/{}", sequence["id"]),
            json!({"status": "archived"}),
        )
        .await;
    assert_eq!(archived.status(), StatusCode::OK);
    expect_error(
        enrol_csv(&ana, &sequence, "phone\n+60123400071\n").await,
        StatusCode::CONFLICT,
        "archived",
    )
    .await;
}

wafleet_core::testing::on_both_backends!(
    given crate::helpers::spawn_app =>
    sequences_are_checked_and_change_status,
    another_users_sequences_are_invisible,
    leads_are_enrolled_from_a_file
);
