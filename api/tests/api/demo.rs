//! Demo mode: users share one simulated network, but a number belongs to the first user who links
//! it. Another user can neither scan a QR code nor confirm a pair code as that number.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;
use wafleet_core::db::Desired;
use wafleet_core::link::{Jid, LinkError, SimulatedPhones};
use wafleet_core::types::{DeviceId, Email, PhoneNumber, Timestamp, UserId};

use crate::helpers::{Backend, Session, TestApp, expect_error, spawn_demo_app};

/// Simulated phones that record what they were asked to do.
#[derive(Default)]
struct Phones {
    scans: Mutex<Vec<(String, String)>>,
    confirmed: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SimulatedPhones for Phones {
    async fn scan_qr(&self, qr_code: &str, phone: &PhoneNumber) -> Result<(), LinkError> {
        self.scans.lock().unwrap().push((qr_code.into(), phone.to_string()));
        Ok(())
    }

    async fn confirm_pair_code(&self, code: &str) -> Result<(), LinkError> {
        self.confirmed.lock().unwrap().push(code.into());
        Ok(())
    }
}

const ANA: &str = "+60123456789";

async fn user(app: &TestApp, email: &str) -> UserId {
    app.db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A device of `email`'s showing a QR code (or pair code for `code_phone`), as a worker holding
/// it would.
async fn pairing(app: &TestApp, session: &Session, email: &str, code_phone: Option<&str>) -> (DeviceId, String) {
    let name = format!("Phone {}", rand_suffix());
    let device = DeviceId(session.add_device(&name, None).await);
    let owner = user(app, email).await;
    let phone = code_phone.map(|p| PhoneNumber::parse(p, app.settings.default_country).unwrap());
    let desired = if phone.is_some() {
        Desired::PairCode
    } else {
        Desired::PairQr
    };
    app.db
        .request_session(owner, device, desired, phone.as_ref())
        .await
        .unwrap();
    let fence = app
        .db
        .claim_leases(&format!("worker-{}", device.0), 1000, 600)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.device == device)
        .unwrap();
    let code = format!("CODE-{}", device.0);
    if code_phone.is_some() {
        app.db.set_pair_code(fence, &code).await.unwrap();
    } else {
        app.db
            .set_qr_code(fence, &code, Timestamp::now().plus_secs(60))
            .await
            .unwrap();
    }
    (device, code)
}

fn rand_suffix() -> u32 {
    rand::random()
}

async fn scan(session: &Session, device: DeviceId, phone: &str) -> reqwest::Response {
    session
        .post(
            &format!("/api/demo/devices/{}/scan", device.0),
            json!({ "phone": phone }),
        )
        .await
}

async fn a_demo_user_cannot_link_another_users_number(backend: Backend) {
    let phones = Arc::new(Phones::default());
    let app = spawn_demo_app(backend, phones.clone()).await;
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;

    // Ana links her number, as the simulated phone and then the worker do.
    let (device, qr) = pairing(&app, &ana, "ana@example.com", None).await;
    assert_eq!(scan(&ana, device, ANA).await.status(), StatusCode::OK);
    link(&app, device).await;

    // Bo cannot scan as Ana's number, by QR code or by pair code.
    let (bos, _) = pairing(&app, &bo, "bo@example.com", None).await;
    expect_error(
        scan(&bo, bos, ANA).await,
        StatusCode::CONFLICT,
        "linked by another account",
    )
    .await;
    let (by_code, _) = pairing(&app, &bo, "bo@example.com", Some(ANA)).await;
    let confirm = bo
        .post(&format!("/api/demo/devices/{}/confirm-code", by_code.0), json!({}))
        .await;
    expect_error(confirm, StatusCode::CONFLICT, "linked by another account").await;
    assert_eq!(
        *phones.scans.lock().unwrap(),
        [(qr, ANA.to_owned())],
        "only Ana's scan reached the phones"
    );
    assert!(phones.confirmed.lock().unwrap().is_empty());

    // A number of his own works; one he is still linking is his alone too.
    assert_eq!(scan(&bo, bos, "+60123450000").await.status(), StatusCode::OK);
    let (anas_second, _) = pairing(&app, &ana, "ana@example.com", None).await;
    expect_error(
        scan(&ana, anas_second, "+60123450000").await,
        StatusCode::CONFLICT,
        "linked by another account",
    )
    .await;
    // Ana may link her own number again, on another of her devices.
    assert_eq!(scan(&ana, anas_second, ANA).await.status(), StatusCode::OK);
}

/// Marks `device` linked as Ana's number, as the worker does once pairing succeeds.
async fn link(app: &TestApp, device: DeviceId) {
    let sql = "UPDATE devices SET jid = $1, status = 'online' WHERE id = $2";
    let jid = format!(
        "{}:7@s.whatsapp.net",
        Jid::for_phone(&PhoneNumber::parse(ANA, app.settings.default_country).unwrap()).user()
    );
    wafleet_core::testing::execute(&app.db, sql, &[jid.as_str().into(), device.0.into()]).await;
}

async fn a_restarted_demo_still_knows_linked_numbers(backend: Backend) {
    // A fresh process forgets the numbers being linked, but not those linked in the database.
    let app = spawn_demo_app(backend, Arc::new(Phones::default())).await;
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let (device, _) = pairing(&app, &ana, "ana@example.com", None).await;
    link(&app, device).await;
    let (bos, _) = pairing(&app, &bo, "bo@example.com", None).await;
    expect_error(
        scan(&bo, bos, "0123456789").await,
        StatusCode::CONFLICT,
        "linked by another account",
    )
    .await;
}

// These tests start a demo app of their own.
wafleet_core::testing::on_both_backends!(
    a_demo_user_cannot_link_another_users_number,
    a_restarted_demo_still_knows_linked_numbers
);
