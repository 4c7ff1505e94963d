//! The compatible REST API as its existing clients call it: HTTP Basic on multipart posts, the QR
//! link `/app/login` hands out, pairing and reconnecting a device in each state, the number forms
//! `/user/check` takes, upstream's 400 for bad input, the WhatsApp message id of a send and media
//! bodies up to `MAX_MEDIA_BYTES`. No worker runs here; where one would act, the test plays it
//! through the database.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use wafleet_core::db::Desired;
use wafleet_core::types::{DeviceId, Email, Timestamp, UserId};

use crate::helpers::{Backend, Session, TestApp, body, expect_error, spawn_app_with};

/// Marks a device as linked and online, as pairing would.
async fn linked(app: &TestApp, device: i64) {
    exec(
        app,
        "UPDATE devices SET jid = '60123456789@s.whatsapp.net', status = 'online' WHERE id = $1",
        device,
    )
    .await;
}

/// `email`'s `device` as it is once linked and held by a worker: asked to stay connected (which
/// gives it a lease row a test can hold as its worker would), with a JID, and online.
async fn online(app: &TestApp, email: &str, device: i64) {
    app.db
        .request_session(user(app, email).await, DeviceId(device), Desired::Connected, None)
        .await
        .unwrap();
    linked(app, device).await;
}

async fn exec(app: &TestApp, sql: &'static str, device: i64) {
    wafleet_core::testing::execute(&app.db, sql, &[device.into()]).await;
}

async fn user(app: &TestApp, email: &str) -> UserId {
    app.db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A new API token of `session`'s user, with every scope.
async fn token(session: &Session) -> String {
    body(session.post("/api/tokens", json!({"name": "gowa"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A PNG of `width`×`height` pixels of noise (which PNG cannot shrink: about 3 bytes a pixel).
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |_, _| image::Rgb(rand::random()));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

fn image_form(image: Vec<u8>) -> Form {
    Form::new()
        .text("phone", "60191000002")
        .text("caption", "our menu")
        .part(
            "image",
            Part::bytes(image).file_name("menu.png").mime_str("image/png").unwrap(),
        )
}

/// `POST /send/image` from `device` with HTTP Basic, the token as password (as GOWA clients send).
fn basic_image(client: &Client, app: &TestApp, token: &str, device: i64, form: Form) -> RequestBuilder {
    client
        .post(app.url("/send/image"))
        .basic_auth("admin", Some(token))
        .header("X-Device-Id", device.to_string())
        .multipart(form)
}

/// `POST /send/image` from `device` with the token as Bearer.
fn bearer_image(client: &Client, app: &TestApp, token: &str, device: i64, form: Form) -> RequestBuilder {
    client
        .post(app.url("/send/image"))
        .bearer_auth(token)
        .header("X-Device-Id", device.to_string())
        .multipart(form)
}

/// Plays the worker that picks up a pairing request for `device` and shows a QR code.
fn show_qr_when_asked(app: &TestApp, device: i64) -> tokio::task::JoinHandle<()> {
    let db = app.db.clone();
    tokio::spawn(async move {
        for _ in 0..200 {
            let fences = db.claim_leases("qr-worker", 1000, 600).await.unwrap();
            if let Some(fence) = fences.into_iter().find(|f| f.device == DeviceId(device)) {
                db.set_qr_code(fence, "2@compat-qr-payload", Timestamp::now().plus_secs(60))
                    .await
                    .unwrap();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("nobody asked device {device} to pair");
    })
}

async fn basic_credentials_need_no_csrf_and_open_the_qr_link(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let sending = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, sending).await;
    let token = token(&ana).await;
    let client = Client::new();

    // A multipart post with Basic credentials and no session cookie passes without a CSRF token.
    let response = basic_image(&client, &app, &token, sending, image_form(png(32, 16)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["code"], "SUCCESS");
    // With the session cookie it still needs the token: the cookie is what a forged post rides on.
    let response = basic_image(&ana.client, &app, &token, sending, image_form(png(32, 16)))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "CSRF").await;

    // The QR link works with the same Basic credentials, as a PNG.
    let pairing = ana.add_device("New", None).await;
    let worker = show_qr_when_asked(&app, pairing);
    let login = client
        .get(app.url("/app/login"))
        .basic_auth("admin", Some(&token))
        .header("X-Device-Id", pairing.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    worker.await.unwrap();
    let login = body(login).await;
    let link = login["results"]["qr_link"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&app.base), "{link}");
    let qr = client
        .get(&link)
        .basic_auth("admin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(qr.status(), StatusCode::OK);
    assert_eq!(qr.headers()["content-type"], "image/png");
    let bytes = qr.bytes().await.unwrap();
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).expect("a PNG");
    assert!(
        image.width() >= 240 && image.width() == image.height(),
        "{}",
        image.width()
    );
    expect_error(
        client.get(&link).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "API token",
    )
    .await;
}

async fn login_keeps_a_linked_online_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    online(&app, "ana@example.com", device).await;
    let before = app.db.session_targets().await.unwrap();
    let token = token(&ana).await;
    let client = Client::new();

    for path in ["/app/login", "/app/login-with-code?phone=60123456789"] {
        let response = client
            .get(app.url(path))
            .bearer_auth(&token)
            .header("X-Device-Id", device.to_string())
            .send()
            .await
            .unwrap();
        let refused = expect_error(response, StatusCode::BAD_REQUEST, "already logged in").await;
        assert_eq!(refused["code"], "ALREADY_LOGGED_IN", "{path}");
    }
    assert_eq!(
        app.db.session_targets().await.unwrap(),
        before,
        "the session was left alone"
    );
    let status = body(ana.get(&format!("/api/devices/{device}")).await).await["results"]["status"].clone();
    assert_eq!(status, "online");
}

async fn reconnect_needs_a_logged_in_device(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    online(&app, "ana@example.com", device).await;
    let token = token(&ana).await;
    let client = Client::new();
    let get = |path: &'static str| client.get(app.url(path)).bearer_auth(&token).send();

    // Linked: reconnecting is asked of its session.
    assert_eq!(body(get("/app/reconnect").await.unwrap()).await["code"], "SUCCESS");

    // Logged out (the device and its JID stay): there is nothing to reconnect with.
    assert_eq!(body(get("/app/logout").await.unwrap()).await["code"], "SUCCESS");
    expect_error(
        get("/app/reconnect").await.unwrap(),
        StatusCode::CONFLICT,
        "log in first",
    )
    .await;
    assert_eq!(app.db.session_targets().await.unwrap()[0].desired, Desired::Unlinked);
    // As the worker records the logout, and as when WhatsApp ends the link.
    exec(&app, "UPDATE devices SET status = 'logged_out' WHERE id = $1", device).await;
    expect_error(
        get("/app/reconnect").await.unwrap(),
        StatusCode::CONFLICT,
        "log in first",
    )
    .await;
    assert_eq!(app.db.session_targets().await.unwrap()[0].desired, Desired::Unlinked);
}

async fn compatible_routes_answer_bad_input_as_upstream(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let token = token(&ana).await;
    let client = Client::new();
    let check = |query: &str| {
        client
            .get(app.url(&format!("/user/check{query}")))
            .bearer_auth(&token)
            .header("X-Device-Id", device.to_string())
            .send()
    };

    // Every form of a number is taken; no worker runs here to answer the check itself.
    for phone in ["6289685028129@s.whatsapp.net", "6289685028129", "%2B6289685028129"] {
        let response = check(&format!("?phone={phone}")).await.unwrap();
        expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "did not answer").await;
    }

    // A missing or bad parameter: 400 in the envelope, naming it.
    for query in ["", "?phone=", "?phone=nope", "?phone=120363999@g.us"] {
        let response = check(query).await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/json", "{query}");
        expect_error(response, StatusCode::BAD_REQUEST, "phone").await;
    }
    let response = client
        .get(app.url("/app/login-with-code"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    expect_error(response, StatusCode::BAD_REQUEST, "phone").await;
    let response = client
        .post(app.url("/send/message"))
        .bearer_auth(&token)
        .json(&json!({"phone": "60191000001"}))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "missing field `message`").await;
    let response = bearer_image(&client, &app, &token, device, Form::new().text("phone", "60191000001"))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "image").await;

    // wafleet's own routes keep 422 for the same kind of mistake.
    let response = ana
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "nope", "text": "hi"}),
        )
        .await;
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "to").await;
}

async fn compatible_sends_answer_the_whatsapp_message_id(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    online(&app, "ana@example.com", device).await;
    let token = token(&ana).await;
    let client = Client::new();
    let send = || {
        client
            .post(app.url("/send/message"))
            .bearer_auth(&token)
            .header("X-Device-Id", device.to_string())
            .header("Idempotency-Key", "order-7")
            .json(&json!({"phone": "6289685028129@s.whatsapp.net", "message": "selamat malam"}))
            .send()
    };
    let sent = body(send().await.unwrap()).await;
    let wa_id = sent["results"]["message_id"].as_str().unwrap().to_owned();
    assert!(
        wa_id.len() == 22 && wa_id.starts_with("3EB0") && wa_id.chars().all(|c| c.is_ascii_hexdigit()),
        "a WhatsApp message id: {wa_id}"
    );
    let send_id: i64 = sent["results"]["send_id"].as_str().unwrap().parse().unwrap();
    // A repeated request answers the same ids.
    let again = body(send().await.unwrap()).await;
    assert_eq!(again["results"]["message_id"], sent["results"]["message_id"]);
    assert_eq!(again["results"]["send_id"], sent["results"]["send_id"]);
    let status = body(
        client
            .get(app.url(&format!("/api/messages/{send_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status["results"]["wa_message_id"], Value::String(wa_id.clone()));

    // The holder sends under that id, not one of its own.
    let fence = app
        .db
        .claim_leases("send-worker", 1000, 600)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.device == DeviceId(device))
        .unwrap();
    let work = app
        .db
        .begin_send(fence, send_id, "3EB0FFFFFFFFFFFFFFFFFF")
        .await
        .unwrap()
        .expect("a queued send");
    assert_eq!(work.wa_message_id, wa_id);

    // The image route answers both ids too.
    let image = body(
        bearer_image(&client, &app, &token, device, image_form(png(32, 16)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(image["results"]["message_id"].as_str().unwrap().starts_with("3EB0"));
    assert_ne!(image["results"]["send_id"], sent["results"]["send_id"]);
}

async fn media_bodies_take_the_media_limit(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let token = token(&ana).await;
    let client = Client::new();
    let media_limit = app.settings.max_media_bytes;
    assert_eq!(media_limit, 20 << 20, "20 MiB by default, as upstream takes");

    // A photo of a few megabytes, over the general limit, is accepted.
    let photo = png(1200, 900);
    assert!(photo.len() > 3 * app.settings.max_body_bytes, "{} bytes", photo.len());
    let response = bearer_image(&client, &app, &token, device, image_form(photo))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Over the media limit: 413 in the envelope, naming it.
    let huge = vec![0u8; media_limit + 64 * 1024];
    let response = bearer_image(&client, &app, &token, device, image_form(huge))
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the limit is {media_limit} bytes"),
    )
    .await;

    // Other routes keep the general limit.
    let long = "a".repeat(app.settings.max_body_bytes + 1);
    let response = client
        .post(app.url("/send/message"))
        .bearer_auth(&token)
        .header("X-Device-Id", device.to_string())
        .json(&json!({"phone": "60191000001", "message": long}))
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the limit is {} bytes", app.settings.max_body_bytes),
    )
    .await;
}

/// A web server on loopback with a photo, a file over the media limit (without announcing its
/// length), a missing file and a redirect to the cloud metadata address; its address.
async fn media_server(photo: Vec<u8>, oversized: usize) -> std::net::SocketAddr {
    use axum::body::Body;
    use axum::response::Redirect;
    use axum::routing::get;
    let big = move || async move {
        let chunks = (0..oversized / 4096 + 1).map(|_| Ok::<_, std::io::Error>(vec![0u8; 4096]));
        Body::from_stream(futures_util::stream::iter(chunks))
    };
    let router = axum::Router::new()
        .route("/menu.png", get(move || async move { photo }))
        .route("/big.png", get(big))
        .route(
            "/inside",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// `image_url` is fetched, from hosts a webhook could reach only, within the media limit.
async fn images_are_fetched_from_a_url_with_care(backend: Backend) {
    let limit = 256 * 1024;
    let app = spawn_app_with(backend, |s| {
        // The test's server is on loopback, which an operator must allow.
        s.webhook_allowed_hosts = "127.0.0.1".parse().unwrap();
        s.max_media_bytes = limit;
    })
    .await;
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    linked(&app, device).await;
    let token = token(&ana).await;
    let client = Client::new();
    let server = media_server(png(40, 30), limit + 1).await;
    let send = |url: String| {
        let form = Form::new().text("phone", "60191000002").text("image_url", url);
        basic_image(&client, &app, &token, device, form).send()
    };

    let response = send(format!("http://{server}/menu.png")).await.unwrap();
    let status = response.status();
    let sent = body(response).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let send_id: i64 = sent["results"]["send_id"].as_str().unwrap().parse().unwrap();
    let sql = "SELECT image FROM outbound_messages WHERE id = $1";
    let image: Option<Option<Vec<u8>>> = wafleet_core::testing::fetch_optional(&app.db, sql, &[send_id.into()]).await;
    let image = image.flatten().expect("the image is stored with the send");
    let stored = image::load_from_memory(&image).unwrap();
    assert_eq!(
        (stored.width(), stored.height()),
        (40, 30),
        "the fetched picture, re-encoded"
    );

    let refusals = [
        (
            format!("http://{server}/big.png"),
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the limit is {limit} bytes"),
        ),
        (
            format!("http://{server}/missing.png"),
            StatusCode::BAD_REQUEST,
            "image_url: the server answered 404".into(),
        ),
        (
            format!("http://{server}/inside"),
            StatusCode::BAD_REQUEST,
            "image_url: its host is not a public address".into(),
        ),
        (
            "http://10.0.0.1/menu.png".into(),
            StatusCode::BAD_REQUEST,
            "image_url: its host is not a public address".into(),
        ),
        (
            format!("http://[::1]:{}/menu.png", server.port()),
            StatusCode::BAD_REQUEST,
            "not a public address".into(),
        ),
        (
            "file:///etc/passwd".into(),
            StatusCode::BAD_REQUEST,
            "give an http or https URL".into(),
        ),
        (
            "menu.png".into(),
            StatusCode::BAD_REQUEST,
            "image_url: not a valid URL".into(),
        ),
    ];
    for (url, status, message) in refusals {
        let response = send(url.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        expect_error(response, status, &message).await;
    }
    // A file and a URL at once is ambiguous.
    let both = image_form(png(8, 8)).text("image_url", format!("http://{server}/menu.png"));
    let response = basic_image(&client, &app, &token, device, both).send().await.unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "not both").await;
    let sends = crate::actions::count(&app, "outbound_messages").await;
    assert_eq!(sends, 1, "only the fetched photo became a send");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => basic_credentials_need_no_csrf_and_open_the_qr_link, login_keeps_a_linked_online_session, reconnect_needs_a_logged_in_device, compatible_routes_answer_bad_input_as_upstream, compatible_sends_answer_the_whatsapp_message_id, media_bodies_take_the_media_limit; images_are_fetched_from_a_url_with_care);
