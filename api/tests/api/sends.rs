//! Sends through the API: owner-only, idempotent, and the compatible `/send/*` and `/user/check`
//! routes with their request and response shapes. No worker runs here: sends stay queued, which
//! is what these tests look at (tests/pairing.rs follows them out through the simulator).

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::actions::linked;
use crate::helpers::{TestApp, body, expect_error};

fn png() -> Vec<u8> {
    let image = image::RgbImage::from_pixel(32, 16, image::Rgb([200, 30, 30]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

async fn sends_are_owner_only_and_idempotent(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;

    // Not linked yet: nothing to send from.
    let response = ana
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "+60191000001", "text": "hi"}),
        )
        .await;
    expect_error(response, StatusCode::CONFLICT, "not linked").await;
    linked(&app, device).await;

    let response = ana
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "0191000001", "text": "hi"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let sent = body(response).await;
    let id = sent["results"]["id"].as_i64().unwrap();
    assert_eq!(
        sent["results"]["to"], "60191000001@s.whatsapp.net",
        "national numbers use the default country"
    );
    assert_eq!(sent["results"]["status"], "queued");
    assert!(
        sent["results"]["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("wafleet-")
    );

    // Another user can neither send from the device nor see the send.
    let response = bo
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "+60191000001", "text": "hi"}),
        )
        .await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    expect_error(
        bo.get(&format!("/api/messages/{id}")).await,
        StatusCode::NOT_FOUND,
        "message",
    )
    .await;
    let mine = body(ana.get(&format!("/api/messages/{id}")).await).await;
    assert_eq!(mine["results"]["id"].as_i64(), Some(id));

    // Keys are per user: Bo's key never meets Ana's.
    let keyed = |session: &crate::helpers::Session, text: &str| {
        session
            .client
            .post(session.url(&format!("/api/devices/{device}/send")))
            .header("X-CSRF-Token", &session.csrf)
            .header("Idempotency-Key", "invoice-42")
            .json(&json!({"to": "+60191000001", "text": text}))
            .send()
    };
    assert_eq!(keyed(&ana, "invoice").await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(keyed(&ana, "invoice").await.unwrap().status(), StatusCode::OK);
    expect_error(
        keyed(&ana, "changed").await.unwrap(),
        StatusCode::CONFLICT,
        "Idempotency-Key",
    )
    .await;
    let (count,): (i64,) = match &app.db {
        wafleet_core::Db::Sqlite(pool) => {
            sqlx::query_as("SELECT COUNT(*) FROM outbound_messages")
                .fetch_one(pool)
                .await
        }
        wafleet_core::Db::Postgres(pool) => {
            sqlx::query_as("SELECT COUNT(*) FROM outbound_messages")
                .fetch_one(pool)
                .await
        }
    }
    .unwrap();
    assert_eq!(count, 2, "bad and repeated requests recorded nothing");

    // Dead letters are for administrators (the first account registered is one).
    app.db
        .insert_dead_letter("sends.w1", r#"{"message":1}"#, "device problem: banned", 1)
        .await
        .unwrap();
    let letters = body(ana.get("/api/admin/dead-letters?queue=sends").await).await;
    assert_eq!(letters["results"][0]["error"], "device problem: banned");
    expect_error(
        bo.get("/api/admin/dead-letters").await,
        StatusCode::FORBIDDEN,
        "administrators",
    )
    .await;
    expect_error(
        ana.get("/api/admin/dead-letters?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    )
    .await;
}

async fn compatible_send_routes_keep_their_shapes(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let token = body(ana.post("/api/tokens", json!({"name": "gowa"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();

    // A cookie is not enough for these routes.
    let response = ana
        .post("/send/message", json!({"phone": "60191000001", "message": "hi"}))
        .await;
    expect_error(response, StatusCode::UNAUTHORIZED, "API token").await;

    let response = client
        .post(app.url("/send/message"))
        .bearer_auth(&token)
        .json(&json!({"phone": "60191000001@s.whatsapp.net", "message": "selamat malam", "device_id": device.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let sent = body(response).await;
    assert_eq!(sent["code"], "SUCCESS");
    assert_eq!(sent["results"]["status"], "queued");
    let id: i64 = sent["results"]["send_id"].as_str().unwrap().parse().unwrap();

    let send_image = |form: Form| {
        client
            .post(app.url("/send/image"))
            .bearer_auth(&token)
            .header("X-Device-Id", device.to_string())
            .multipart(form)
            .send()
    };
    let form = Form::new()
        .text("phone", "60191000002")
        .text("caption", "our menu")
        .part(
            "image",
            Part::bytes(png()).file_name("menu.png").mime_str("image/png").unwrap(),
        );
    let response = send_image(form).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let image = body(response).await;
    assert_ne!(image["results"]["send_id"].as_str().unwrap(), id.to_string());

    let form = Form::new()
        .text("phone", "60191000002")
        .text("image_url", "http://169.254.169.254/");
    let response = send_image(form).await.unwrap();
    expect_error(
        response,
        StatusCode::BAD_REQUEST,
        "image_url: its host is not a public address",
    )
    .await;
    let form = Form::new().text("phone", "60191000002").part(
        "image",
        Part::bytes(b"GIF89a-but-not-really".to_vec()).file_name("x.gif"),
    );
    let response = send_image(form).await.unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "image:").await;

    // Checking a number needs the device's live session; no worker runs here.
    let response = client
        .get(app.url("/user/check?phone=60191000001"))
        .bearer_auth(&token)
        .header("X-Device-Id", device.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status() == StatusCode::SERVICE_UNAVAILABLE,
        "no worker answers: {}",
        response.status()
    );
    let response = client
        .get(app.url("/user/check"))
        .bearer_auth(&token)
        .header("X-Device-Id", device.to_string())
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "phone").await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => sends_are_owner_only_and_idempotent, compatible_send_routes_keep_their_shapes);
