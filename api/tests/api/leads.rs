//! Leads over the JSON API: CRUD, validation, isolation between users, search and filters.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, body, expect_error};

/// Adds a lead and returns it.
pub async fn add_lead(session: &Session, device: i64, fields: Value) -> Value {
    let mut lead = json!({"device_id": device});
    lead.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let response = session.post("/api/leads", lead).await;
    let (status, body) = (response.status(), body(response).await);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["results"].clone()
}

/// The leads `GET path` lists (one page).
pub async fn listed(session: &Session, path: &str) -> Vec<Value> {
    let response = session.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    body(response).await["results"]["leads"].as_array().unwrap().clone()
}

/// The names of the leads `GET path` lists.
pub async fn names(session: &Session, path: &str) -> Vec<String> {
    listed(session, path)
        .await
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn lead_lifecycle(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let lead = add_lead(
        &ana,
        device,
        json!({"name": " Aminah ", "phone": "012-345 6789", "niche": "bakery", "notes": "met at the fair"}),
    )
    .await;
    assert_eq!(lead["name"], "Aminah", "names are trimmed");
    assert_eq!(
        lead["phone"], "+60123456789",
        "numbers are stored E.164 (DEFAULT_COUNTRY MY)"
    );
    assert_eq!(lead["status"], "new", "status defaults to new");
    assert_eq!(lead["device_id"], device);
    assert!(lead["journey"].is_null());
    let id = lead["id"].as_i64().unwrap();
    let path = format!("/api/leads/{id}");

    assert_eq!(body(ana.get(&path).await).await["results"]["niche"], "bakery");
    let updated = body(
        ana.put(&path, json!({"status": "Interested", "niche": "", "journey": "demo"}))
            .await,
    )
    .await["results"]
        .clone();
    assert_eq!(updated["status"], "interested");
    assert!(updated["niche"].is_null(), "an empty niche clears it");
    assert_eq!(updated["journey"], "demo");
    assert_eq!(updated["name"], "Aminah", "omitted fields are kept");
    assert_eq!(updated["notes"], "met at the fair");
    assert!(
        updated["whatsapp_name"].is_null(),
        "the device knows no name for the number"
    );
    let listed = listed(&ana, &format!("/api/devices/{device}/leads")).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["journey"], "demo");

    // The device's phone saves the number under a name of its own: the lead shows it.
    let jid = wafleet_core::link::Jid("60123456789@s.whatsapp.net".into());
    app.db
        .set_contact_name(wafleet_core::types::DeviceId(device), &jid, "Aminah (fair)")
        .await
        .unwrap();
    assert_eq!(
        body(ana.get(&path).await).await["results"]["whatsapp_name"],
        "Aminah (fair)"
    );
    let listed = self::listed(&ana, &format!("/api/devices/{device}/leads")).await;
    assert_eq!(listed[0]["whatsapp_name"], "Aminah (fair)");

    assert_eq!(ana.delete(&path).await.status(), StatusCode::OK);
    expect_error(ana.get(&path).await, StatusCode::NOT_FOUND, "lead not found").await;
    expect_error(ana.delete(&path).await, StatusCode::NOT_FOUND, "lead not found").await;
    assert!(names(&ana, &format!("/api/devices/{device}/leads")).await.is_empty());

    // Deleting the device takes its leads along.
    let kept = add_lead(&ana, device, json!({"name": "Bo", "phone": "+60198765432"})).await;
    assert_eq!(
        ana.delete(&format!("/api/devices/{device}")).await.status(),
        StatusCode::OK
    );
    let gone = format!("/api/leads/{}", kept["id"]);
    expect_error(ana.get(&gone).await, StatusCode::NOT_FOUND, "lead not found").await;
}

async fn lead_bad_input_changes_nothing(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let other = ana.add_device("Support", None).await;
    let lead = add_lead(&ana, device, json!({"name": "Aminah", "phone": "+60123456789"})).await;
    let new = |fields: Value| {
        let mut body = json!({"device_id": device});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };

    let bad = expect_error(
        ana.post("/api/leads", new(json!({"name": "Bo", "phone": "12ab"})))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone: `12ab` is not a phone number",
    )
    .await;
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("international form, e.g. +60123456789")
    );
    expect_error(
        ana.post("/api/leads", new(json!({"name": "Bo", "phone": "+60 1"})))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone: `+60 1`",
    )
    .await;
    expect_error(
        ana.post("/api/leads", new(json!({"name": "  ", "phone": "+60198765432"})))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name: is required",
    )
    .await;
    expect_error(
        ana.post(
            "/api/leads",
            new(json!({"name": "Bo", "phone": "+60198765432", "status": "hot"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "status: unknown status `hot`: use one of new, contacted",
    )
    .await;
    expect_error(
        ana.post(
            "/api/leads",
            new(json!({"name": "Bo", "phone": "+60198765432", "niche": "x".repeat(65)})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "niche: must be at most 64",
    )
    .await;
    expect_error(
        ana.post("/api/leads", new(json!({"name": "Bo"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing field `phone`",
    )
    .await;
    // The same number written another way is the same lead.
    expect_error(
        ana.post("/api/leads", new(json!({"name": "Twin", "phone": "012-345 6789"})))
            .await,
        StatusCode::CONFLICT,
        "already has a lead with the number +60123456789",
    )
    .await;
    let second = add_lead(&ana, device, json!({"name": "Bo", "phone": "+60198765432"})).await;
    expect_error(
        ana.put(&format!("/api/leads/{}", second["id"]), json!({"phone": "0123456789"}))
            .await,
        StatusCode::CONFLICT,
        "already has a lead",
    )
    .await;
    expect_error(
        ana.put(&format!("/api/leads/{}", second["id"]), json!({"phone": "nope"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone",
    )
    .await;
    // Another device may keep the same number.
    add_lead(&ana, other, json!({"name": "Aminah", "phone": "+60123456789"})).await;

    let list = format!("/api/devices/{device}/leads");
    expect_error(
        ana.get(&format!("{list}?status=hot")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown status",
    )
    .await;
    expect_error(
        ana.get(&format!("{list}?limit=0")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    )
    .await;
    expect_error(
        ana.get(&format!("{list}?limit=501")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    )
    .await;
    expect_error(
        ana.get(&format!("{list}?cursor=abc")).await,
        StatusCode::BAD_REQUEST,
        "cursor",
    )
    .await;
    expect_error(
        ana.get("/api/devices/999999/leads").await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        ana.post(
            "/api/leads",
            json!({"device_id": 999999, "name": "X", "phone": "+60133334444"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;

    let kept = body(ana.get(&format!("/api/leads/{}", lead["id"])).await).await;
    assert_eq!(kept["results"]["phone"], "+60123456789");
    assert_eq!(
        names(&ana, &list).await,
        ["Bo", "Aminah"],
        "only the two valid leads exist"
    );
}

async fn search_filter_and_pages(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let leads = [
        json!({"name": "Aminah Bakery", "phone": "+60123456789", "niche": "bakery", "status": "new", "journey": "intro"}),
        json!({"name": "Bo", "phone": "+60198765432", "niche": "bakery", "status": "replied", "notes": "wants 50% OFF"}),
        json!({"name": "Chong", "phone": "+60171112222", "niche": "florist", "status": "replied", "journey": "intro"}),
        json!({"name": "Dewi", "phone": "+6281398765432", "niche": "florist", "status": "lost"}),
    ];
    for lead in leads {
        add_lead(&ana, device, lead).await;
    }
    let list = format!("/api/devices/{device}/leads");
    assert_eq!(
        names(&ana, &list).await,
        ["Dewi", "Chong", "Bo", "Aminah Bakery"],
        "newest first"
    );
    let search = |query: &str| format!("{list}?{query}");
    assert_eq!(
        names(&ana, &search("q=BAKERY")).await,
        ["Aminah Bakery"],
        "names, any case"
    );
    assert_eq!(names(&ana, &search("q=50%25")).await, ["Bo"], "notes, and % is literal");
    assert_eq!(
        names(&ana, &search("q=012-345")).await,
        ["Aminah Bakery"],
        "national digits of a number"
    );
    assert_eq!(
        names(&ana, &search("q=%2B62")).await,
        ["Dewi"],
        "international digits of a number"
    );
    assert_eq!(names(&ana, &search("niche=bakery")).await, ["Bo", "Aminah Bakery"]);
    assert_eq!(names(&ana, &search("status=replied")).await, ["Chong", "Bo"]);
    assert_eq!(names(&ana, &search("journey=intro")).await, ["Chong", "Aminah Bakery"]);
    assert_eq!(names(&ana, &search("niche=florist&status=replied")).await, ["Chong"]);
    assert_eq!(
        names(&ana, &search("q=&niche=&status=&journey=")).await.len(),
        4,
        "blank filters (as a form sends them) are ignored"
    );
    assert!(names(&ana, &search("q=nobody")).await.is_empty());

    // Pages of two, following the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let query = cursor.map_or("limit=2".to_owned(), |c| format!("limit=2&cursor={c}"));
        let page = body(ana.get(&search(&query)).await).await["results"].clone();
        let leads = page["leads"].as_array().unwrap();
        assert!(leads.len() <= 2);
        seen.extend(leads.iter().map(|l| l["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["Dewi", "Chong", "Bo", "Aminah Bakery"],
        "every lead exactly once"
    );
}

async fn leads_are_documented(app: TestApp) {
    let spec = body(reqwest::get(app.url("/api/openapi.json")).await.unwrap()).await;
    for (path, method) in [
        ("/api/devices/{id}/leads", "get"),
        ("/api/leads", "post"),
        ("/api/leads/{id}", "get"),
        ("/api/leads/{id}", "put"),
        ("/api/leads/{id}", "delete"),
        ("/api/devices/{id}/leads/export", "get"),
        ("/api/devices/{id}/leads/import", "post"),
    ] {
        assert!(spec["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    let import = &spec["paths"]["/api/devices/{id}/leads/import"]["post"]["requestBody"]["content"];
    assert!(
        import["text/csv"].is_object() && import["multipart/form-data"].is_object(),
        "{import}"
    );
    let export = &spec["paths"]["/api/devices/{id}/leads/export"]["get"]["responses"]["200"]["content"];
    assert!(export["text/csv"].is_object(), "{export}");
    for schema in [
        "Lead",
        "LeadStatus",
        "LeadPage",
        "NewLeadBody",
        "LeadUpdate",
        "ImportReport",
        "ImportRefused",
        "RowError",
    ] {
        assert!(spec["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
    let statuses = &spec["components"]["schemas"]["LeadStatus"]["enum"];
    assert_eq!(
        statuses,
        &json!(["new", "contacted", "replied", "interested", "converted", "lost"])
    );
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => lead_lifecycle, lead_bad_input_changes_nothing, search_filter_and_pages, leads_are_documented);
