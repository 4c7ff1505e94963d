//! Message variations through the API: mistakes refused with their position, previews, saved
//! templates (isolated per user), and campaigns whose recipients each get a text of their own,
//! the same on every re-run of dispatch.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::text::{Message, Variables, seed};
use wafleet_core::types::Timestamp;

use crate::campaigns::{exec, plan};
use crate::helpers::{Session, TestApp, body, expect_error};
use crate::leads::add_lead;

fn campaign(device: i64, message: &str) -> Value {
    json!({"title": "Promo", "niche": "bakery", "message": message, "send_at": "2025-01-01T00:00:00Z",
           "device_ids": [device]})
}

/// The recipients of campaign `id`, in the order they are sent.
async fn recipients(session: &Session, id: i64) -> Vec<Value> {
    let response = session.get(&format!("/api/campaigns/{id}/recipients?limit=500")).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await["results"].as_array().unwrap().clone()
}

async fn message_mistakes_are_refused_with_their_position(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Shop", None).await;
    let cases = [
        (
            "Hi there {Hello|Hey",
            "message: Unbalanced braces: `{` at position 10 is never closed",
        ),
        ("Hi} there", "message: Unbalanced braces: `}` at position 3 has no `{`"),
        ("{Hi||Hello}", "message: Empty option at position 5"),
        (
            "Hi {frist_name}",
            "message: Unknown variable `{frist_name}` at position 4",
        ),
        ("{}", "message: Empty braces at position 1"),
    ];
    for (message, needle) in cases {
        expect_error(
            ana.post("/api/campaigns", campaign(device, message)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
        expect_error(
            ana.post("/api/templates", json!({"name": "t", "message": message}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
        expect_error(
            ana.post("/api/templates/preview", json!({"message": message})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
    assert!(
        body(ana.get("/api/campaigns?year=2025").await).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        body(ana.get("/api/templates").await).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An edit is checked too, and a refused one changes nothing; escaped braces are text.
    let planned = plan(&ana, campaign(device, r"{Hi|Hello} {first_name}, use code \{SPRING\}")).await;
    let path = format!("/api/campaigns/{}", planned["id"]);
    expect_error(
        ana.put(&path, json!({"message": "{Hi|Hello"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "position 1 is never closed",
    )
    .await;
    let kept = body(ana.get(&path).await).await;
    assert_eq!(
        kept["results"]["message"],
        r"{Hi|Hello} {first_name}, use code \{SPRING\}"
    );
}

async fn previews_render_several_variations(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Shop", None).await;
    let lead = add_lead(
        &ana,
        device,
        json!({"name": "Siti Aminah", "phone": "+60123000001", "niche": "cafe"}),
    )
    .await;

    let message = "{Hi|Hello|Hey} {first_name} of {niche} ({phone}) {greeting}";
    let preview = body(ana.post("/api/templates/preview", json!({"message": message})).await).await;
    let renders = preview["results"]["renders"].as_array().unwrap();
    assert_eq!(renders.len(), 3, "{preview}");
    assert_eq!(preview["results"]["variations"], 3);
    let mut openings: Vec<&str> = renders
        .iter()
        .map(|r| r.as_str().unwrap().split(' ').next().unwrap())
        .collect();
    openings.sort();
    assert_eq!(openings, ["Hello", "Hey", "Hi"], "three different renders");
    assert!(
        renders[0]
            .as_str()
            .unwrap()
            .contains("Alex of bakery (+60123456789) Good "),
        "{preview}"
    );

    let theirs = body(
        ana.post(
            "/api/templates/preview",
            json!({"message": message, "lead_id": lead["id"], "count": 1, "time_zone": "Asia/Kuala_Lumpur"}),
        )
        .await,
    )
    .await;
    let text = theirs["results"]["renders"][0].as_str().unwrap();
    assert!(text.contains("Siti of cafe (+60123000001) Good "), "{text}");
    let one = body(
        ana.post("/api/templates/preview", json!({"message": "Just this", "count": 5}))
            .await,
    )
    .await;
    assert_eq!(one["results"]["renders"], json!(["Just this"]));

    expect_error(
        bo.post(
            "/api/templates/preview",
            json!({"message": message, "lead_id": lead["id"]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "lead not found",
    )
    .await;
    expect_error(
        ana.post("/api/templates/preview", json!({"message": "x", "count": 0}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "count: must be 1 to 20",
    )
    .await;
    expect_error(
        ana.post(
            "/api/templates/preview",
            json!({"message": "x", "time_zone": "Mars/Olympus"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "time_zone: unknown time zone",
    )
    .await;
}

async fn templates_are_saved_per_user(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Shop", None).await;
    let saved = ana
        .post(
            "/api/templates",
            json!({"name": "Spring", "message": "{Hi|Hello} {first_name}!"}),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::CREATED);
    let template = body(saved).await["results"].clone();
    assert_eq!(template["has_image"], false);
    let path = format!("/api/templates/{}", template["id"]);
    expect_error(
        ana.post("/api/templates", json!({"name": "Spring", "message": "Hi"}))
            .await,
        StatusCode::CONFLICT,
        "already have a template named `Spring`",
    )
    .await;
    expect_error(
        ana.post("/api/templates", json!({"message": "Hi"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name: required",
    )
    .await;
    let edited = body(ana.put(&path, json!({"message": "{Hey|Yo} {first_name}!"})).await).await;
    assert_eq!(edited["results"]["message"], "{Hey|Yo} {first_name}!");
    assert_eq!(edited["results"]["name"], "Spring");
    let listed = body(ana.get("/api/templates").await).await["results"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Another user's template answers 404 everywhere and changes nothing.
    expect_error(bo.get(&path).await, StatusCode::NOT_FOUND, "template not found").await;
    expect_error(
        bo.put(&path, json!({"name": "stolen"})).await,
        StatusCode::NOT_FOUND,
        "template not found",
    )
    .await;
    expect_error(bo.delete(&path).await, StatusCode::NOT_FOUND, "template not found").await;
    assert!(
        body(bo.get("/api/templates").await).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let bos_device = bo.add_device("Bo's", None).await;
    let mut borrowed = campaign(bos_device, "x");
    borrowed.as_object_mut().unwrap().remove("message");
    borrowed["template_id"] = template["id"].clone();
    expect_error(
        bo.post("/api/campaigns", borrowed).await,
        StatusCode::NOT_FOUND,
        "template not found",
    )
    .await;
    assert_eq!(body(ana.get(&path).await).await["results"]["name"], "Spring");

    // A campaign copies its owner's template.
    let mut from_template = campaign(device, "x");
    from_template.as_object_mut().unwrap().remove("message");
    from_template["template_id"] = template["id"].clone();
    let planned = plan(&ana, from_template).await;
    assert_eq!(planned["message"], "{Hey|Yo} {first_name}!");

    assert_eq!(ana.delete(&path).await.status(), StatusCode::OK);
    expect_error(ana.get(&path).await, StatusCode::NOT_FOUND, "template not found").await;
    let kept = body(ana.get(&format!("/api/campaigns/{}", planned["id"])).await).await;
    assert_eq!(
        kept["results"]["message"], "{Hey|Yo} {first_name}!",
        "the campaign keeps its copy"
    );
}

async fn each_recipient_gets_its_own_text_once(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Shop", None).await;
    // Six: the device's default pace records that many ahead in one round.
    let names = ["Ana Lim", "Bo Tan", "Chen Wei", "Dina Ali", "Eve Ng", "Farid Omar"];
    let mut leads = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let lead = add_lead(
            &ana,
            device,
            json!({"name": name, "phone": format!("+6012300{n:04}"), "niche": "bakery"}),
        )
        .await;
        leads.push((
            lead["id"].as_i64().unwrap(),
            name.to_string(),
            lead["phone"].as_str().unwrap().to_owned(),
        ));
    }
    let text = "{Hi|Hello|Hey|Greetings} {first_name}, {fresh bread|warm buns|{hot|iced} coffee} today";
    let planned = plan(&ana, campaign(device, text)).await;
    let id = planned["id"].as_i64().unwrap();
    let first = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!(first.queued, names.len() as u64, "{first:?}");

    let message = Message::parse(text).unwrap();
    let listed = recipients(&ana, id).await;
    assert_eq!(listed.len(), names.len());
    let mut openings = std::collections::HashSet::new();
    for recipient in &listed {
        let lead = recipient["lead_id"].as_i64().unwrap();
        let (_, name, phone) = leads.iter().find(|l| l.0 == lead).unwrap();
        let variables = Variables {
            name: name.clone(),
            phone: phone.clone(),
            niche: "bakery".into(),
            local_hour: 0,
        };
        let expected = message.render(&variables, seed(&[id, lead]));
        let sent = recipient["text"].as_str().unwrap();
        assert_eq!(sent, expected, "rendered from the campaign and lead ids");
        assert!(sent.contains(name.split(' ').next().unwrap()), "{sent}");
        assert_eq!(recipient["status"], "queued");
        openings.insert(sent.split(' ').next().unwrap().to_owned());
    }
    assert!(openings.len() >= 2, "different options across recipients: {openings:?}");

    // The text is what the send carries.
    let stored: Vec<(String,)> = match &app.db {
        wafleet_core::Db::Sqlite(pool) => {
            sqlx::query_as("SELECT body FROM outbound_messages ORDER BY id")
                .fetch_all(pool)
                .await
        }
        wafleet_core::Db::Postgres(pool) => {
            sqlx::query_as("SELECT body FROM outbound_messages ORDER BY id")
                .fetch_all(pool)
                .await
        }
    }
    .unwrap();
    let texts: Vec<&str> = listed.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(stored.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), texts);

    // A dispatcher that died after recording the sends but before linking them, and a lead
    // renamed meanwhile: the re-run finds the same sends, with the same texts, and sends nothing twice.
    exec(&app.db, "UPDATE campaign_recipients SET outbound_id = NULL").await;
    exec(&app.db, "UPDATE leads SET name = 'Renamed Person'").await;
    let again = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!(again.queued, names.len() as u64, "{again:?}");
    let relisted = recipients(&ana, id).await;
    assert_eq!(
        relisted.iter().map(|r| r["text"].as_str().unwrap()).collect::<Vec<_>>(),
        texts,
        "same texts"
    );
    assert!(relisted.iter().all(|r| r["status"] == "queued"), "{relisted:?}");
    let sends: Vec<(i64,)> = match &app.db {
        wafleet_core::Db::Sqlite(pool) => {
            sqlx::query_as("SELECT COUNT(*) FROM outbound_messages")
                .fetch_all(pool)
                .await
        }
        wafleet_core::Db::Postgres(pool) => {
            sqlx::query_as("SELECT COUNT(*) FROM outbound_messages")
                .fetch_all(pool)
                .await
        }
    }
    .unwrap();
    assert_eq!(sends[0].0, names.len() as i64, "no send recorded twice");
    let quiet = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!(quiet.queued, 0, "{quiet:?}");

    // Pages follow the cursor; another user's campaign is not found.
    let page = body(ana.get(&format!("/api/campaigns/{id}/recipients?limit=3")).await).await["results"].clone();
    assert_eq!(page.as_array().unwrap().len(), 3);
    let after = page[2]["id"].as_i64().unwrap();
    let rest = body(ana.get(&format!("/api/campaigns/{id}/recipients?after={after}")).await).await["results"].clone();
    assert_eq!(rest.as_array().unwrap().len(), names.len() - 3);
    expect_error(
        ana.get(&format!("/api/campaigns/{id}/recipients?limit=0")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit: must be 1 to 500",
    )
    .await;
    let bo = app.session("bo@example.com").await;
    expect_error(
        bo.get(&format!("/api/campaigns/{id}/recipients")).await,
        StatusCode::NOT_FOUND,
        "campaign not found",
    )
    .await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => message_mistakes_are_refused_with_their_position, previews_render_several_variations, templates_are_saved_per_user, each_recipient_gets_its_own_text_once);
