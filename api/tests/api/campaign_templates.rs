//! Campaigns started from a template: `template_id` copies the template's text and image on
//! creation and on an update alike, a field given beside it wins, and another user's template
//! is not found and changes nothing.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::campaigns::plan;
use crate::helpers::{Session, TestApp, body, expect_error};

/// A small PNG, base64-encoded, as a client sends an image.
fn png_base64() -> String {
    let image = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Saves a template and returns its id.
async fn template(session: &Session, fields: Value) -> i64 {
    let response = session.post("/api/templates", fields).await;
    let (status, body) = (response.status(), body(response).await);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["results"]["id"].as_i64().unwrap()
}

/// The campaign at `path`, after `change`; panics unless the update is accepted.
async fn update(session: &Session, path: &str, change: Value) -> Value {
    let response = session.put(path, change).await;
    let (status, body) = (response.status(), body(response).await);
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].clone()
}

async fn a_campaign_takes_a_template_when_created_or_updated(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Shop", None).await;
    let pictured = template(
        &ana,
        json!({"name": "With photo", "message": "{Hi|Hello} {first_name}, see our cakes!",
               "image_base64": png_base64()}),
    )
    .await;
    let plain = template(&ana, json!({"name": "Plain", "message": "Open on Sunday"})).await;

    // Created from the pictured template: its text and its image.
    let created = plan(
        &ana,
        json!({"title": "Cakes", "niche": "bakery", "send_at": "2026-03-14T09:00", "status": "draft",
               "device_ids": [device], "template_id": pictured}),
    )
    .await;
    assert_eq!(created["message"], "{Hi|Hello} {first_name}, see our cakes!");
    assert_eq!(created["has_image"], true);
    let path = format!("/api/campaigns/{}", created["id"]);

    // Updated to the plain one: its text, and no image since it has none.
    let updated = update(&ana, &path, json!({"template_id": plain})).await;
    assert_eq!(updated["message"], "Open on Sunday");
    assert_eq!(updated["has_image"], false);
    assert_eq!(updated["title"], "Cakes", "other fields stay");

    // Back to the pictured one, with a text of the user's own: the text given wins, the image
    // comes from the template.
    let updated = update(
        &ana,
        &path,
        json!({"template_id": pictured, "message": "{Hey|Yo} {first_name}, cakes!"}),
    )
    .await;
    assert_eq!(updated["message"], "{Hey|Yo} {first_name}, cakes!");
    assert_eq!(updated["has_image"], true);

    // An image given beside the template wins too: `""` removes it.
    let updated = update(&ana, &path, json!({"template_id": pictured, "image_base64": ""})).await;
    assert_eq!(updated["message"], "{Hi|Hello} {first_name}, see our cakes!");
    assert_eq!(updated["has_image"], false);

    // Another user's template, on creation and on an update: 404, and nothing changes.
    let bo = app.session("bo@example.com").await;
    let bos = template(&bo, json!({"name": "Bo's", "message": "Bo's text"})).await;
    expect_error(
        ana.put(&path, json!({"template_id": bos})).await,
        StatusCode::NOT_FOUND,
        "template not found",
    )
    .await;
    expect_error(
        ana.post(
            "/api/campaigns",
            json!({"title": "x", "niche": "bakery", "send_at": "2026-03-14T09:00",
                   "device_ids": [device], "template_id": bos}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "template not found",
    )
    .await;
    let kept = body(ana.get(&path).await).await["results"].clone();
    assert_eq!(kept["message"], "{Hi|Hello} {first_name}, see our cakes!");
    assert_eq!(kept["has_image"], false);

    // A running campaign's content is fixed, whether it comes from a template or not.
    update(&ana, &path, json!({"status": "scheduled"})).await;
    update(&ana, &path, json!({"status": "paused"})).await;
    let refused = ana.put(&path, json!({"template_id": plain})).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT, "{}", body(refused).await);
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => a_campaign_takes_a_template_when_created_or_updated);
