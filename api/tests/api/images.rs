//! Decompression bombs: a small file that claims a huge canvas is refused from its header on
//! every route that takes an image, at once and without stalling anything else.

use base64::Engine;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::actions::linked;
use crate::helpers::{Session, TestApp, expect_error};

/// A PNG of zeros claiming 16384×10000 grey pixels (164 megapixels, about 160 MB decoded) in a
/// file of a few hundred kilobytes.
fn bomb() -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let (width, height) = (16_384u32, 10_000u32);
    let pixels = vec![0u8; width as usize * height as usize];
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::NoFilter)
        .write_image(&pixels, width, height, image::ExtendedColorType::L8)
        .unwrap();
    assert!(out.len() < 700 * 1024, "a small file: {} bytes", out.len());
    out
}

const LIMIT: &str = "the most accepted is 40 megapixels";

fn campaign(device: i64, image: &str) -> Value {
    json!({"title": "Bomb", "niche": "bakery", "message": "hi", "send_at": "2030-01-01T09:00",
           "device_ids": [device], "image_base64": image})
}

async fn a_bomb_is_refused_on_every_route_that_takes_an_image(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let bomb = bomb();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bomb);

    let send = ana
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "+60191000001", "image_base64": b64}),
        )
        .await;
    expect_error(send, StatusCode::UNPROCESSABLE_ENTITY, LIMIT).await;
    let test_send = ana
        .post(
            &format!("/api/devices/{device}/actions/test-send"),
            json!({"to": "+60191000001", "image_base64": b64}),
        )
        .await;
    expect_error(test_send, StatusCode::UNPROCESSABLE_ENTITY, LIMIT).await;
    let broadcast = ana
        .post(
            &format!("/api/devices/{device}/broadcasts"),
            json!({"numbers": "+60191000001", "image_base64": b64}),
        )
        .await;
    expect_error(broadcast, StatusCode::UNPROCESSABLE_ENTITY, LIMIT).await;
    let create = ana.post("/api/campaigns", campaign(device, &b64)).await;
    expect_error(create, StatusCode::UNPROCESSABLE_ENTITY, LIMIT).await;
    let planned = ana.post("/api/campaigns", campaign(device, "")).await;
    assert_eq!(planned.status(), StatusCode::CREATED);
    let id = crate::helpers::body(planned).await["results"]["id"].as_i64().unwrap();
    let update = ana
        .put(&format!("/api/campaigns/{id}"), json!({"image_base64": b64}))
        .await;
    expect_error(update, StatusCode::UNPROCESSABLE_ENTITY, LIMIT).await;

    // The compatible multipart route, with an API token (400 there, as upstream answers).
    let token = crate::helpers::body(ana.post("/api/tokens", json!({"name": "rest"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = Form::new().text("phone", "60191000001").part(
        "image",
        Part::bytes(bomb).file_name("bomb.png").mime_str("image/png").unwrap(),
    );
    let compat = reqwest::Client::new()
        .post(app.url("/send/image"))
        .bearer_auth(&token)
        .header("X-Device-Id", device.to_string())
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(compat, StatusCode::BAD_REQUEST, LIMIT).await;

    let sends = crate::helpers::body(ana.get(&format!("/api/devices/{device}/broadcasts")).await).await;
    assert_eq!(sends["results"], json!([]), "no broadcast was recorded");
}

/// How many images this process compressed, from `/metrics`.
async fn compressed(app: &TestApp) -> u64 {
    let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("wafleet_images_total{outcome=\"compressed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

async fn a_campaign_checks_its_devices_before_its_image(app: TestApp) {
    // A user with no device: the image (a real one, within the budget) is never decoded for them.
    let eve = app.session("eve@example.com").await;
    let before = compressed(&app).await;
    let image = image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3]));
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let response = eve.post("/api/campaigns", campaign(424_242, &b64)).await;
    expect_error(response, StatusCode::NOT_FOUND, "device not found").await;
    assert_eq!(compressed(&app).await, before, "the image was not decoded");
    // Her own device: the same image is decoded, and counted.
    let device = eve.add_device("Mine", None).await;
    let response = eve.post("/api/campaigns", campaign(device, &b64)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(compressed(&app).await, before + 1);
}

async fn bombs_at_once_leave_the_server_answering(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bomb());
    let bombs = (0..6).map(|_| send_image(&ana, device, &b64));
    let probes = async {
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(client.get(app.url("/health")).send().await.unwrap().status());
        }
        statuses
    };
    let (refused, health) = tokio::join!(futures_util::future::join_all(bombs), probes);
    assert!(
        refused.iter().all(|s| *s == StatusCode::UNPROCESSABLE_ENTITY),
        "{refused:?}"
    );
    assert!(health.iter().all(|s| s.is_success()), "{health:?}");
}

async fn send_image(session: &Session, device: i64, b64: &str) -> StatusCode {
    session
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "+60191000001", "image_base64": b64}),
        )
        .await
        .status()
}

/// The figure in BENCHMARKS.md: `/health` latency while six clients post bombs without pause.
/// `cargo nextest run -p wafleet-api --run-ignored only -E 'test(health_under_bombs)' --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on purpose"]
async fn health_under_bombs() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bomb());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let bombers = (0..6).map(|_| async {
        let mut sent = 0;
        while std::time::Instant::now() < deadline {
            assert_eq!(send_image(&ana, device, &b64).await, StatusCode::UNPROCESSABLE_ENTITY);
            sent += 1;
        }
        sent
    });
    let probe = async {
        let client = reqwest::Client::new();
        let mut took = Vec::new();
        while std::time::Instant::now() < deadline {
            let started = std::time::Instant::now();
            assert!(
                client
                    .get(app.url("/health"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .is_success()
            );
            took.push(started.elapsed());
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        took
    };
    let (sent, mut took) = tokio::join!(futures_util::future::join_all(bombers), probe);
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "{} bombs refused by 6 clients in 20 s; /health x{}: p50 {:?}, p99 {:?}, max {:?}",
        sent.iter().sum::<usize>(),
        took.len(),
        at(0.5),
        at(0.99),
        took[took.len() - 1]
    );
    assert!(at(0.99) < std::time::Duration::from_millis(50), "p99 {:?}", at(0.99));
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => a_bomb_is_refused_on_every_route_that_takes_an_image, a_campaign_checks_its_devices_before_its_image, bombs_at_once_leave_the_server_answering);
