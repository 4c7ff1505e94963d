//! Analytics over the JSON API: sends seeded the way the holder records them (record, begin,
//! finish, receipts, replies through the ingest), roll-ups refreshed as the scheduler's job does,
//! then exact counts, percentages, the per-day series, the device filter, isolation, refused
//! input and a refresh that changes nothing when run again.

use chrono::{Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::Db;
use wafleet_core::db::{DeviceStatus, Fence, NewSend};
use wafleet_core::link::{Jid, ReceiptKind};
use wafleet_core::types::{Email, Timestamp, UserId};

use crate::chat_view::{hold, jid, store, text};
use crate::helpers::{Session, TestApp, body, expect_error};

const DAY_MS: i64 = 86_400_000;

/// How far a send got.
#[derive(Clone, Copy)]
pub enum Outcome {
    Failed,
    Sent,
    Delivered,
    Read,
}

pub async fn user_id(app: &TestApp, email: &str) -> UserId {
    app.db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("registered")
        .id
}

/// Sends to `to` from the held device as the holder would, up to `outcome`; returns the send's id.
pub async fn send(app: &TestApp, user: UserId, fence: Fence, to: &str, outcome: Outcome) -> i64 {
    let new = NewSend {
        user,
        device: fence.device,
        idempotency_key: format!("k-{}-{to}", fence.device),
        to: jid(to),
        body: Some("Hello".into()),
        media: None,
        structured: None,
        forwarded: false,
    };
    let (message, _) = app.db.record_send(&new).await.unwrap();
    if let Outcome::Failed = outcome {
        app.db.fail_send(message.id, "not on WhatsApp").await.unwrap();
        return message.id;
    }
    let wa_id = format!("wa-{}", message.id);
    app.db
        .begin_send(fence, message.id, &wa_id)
        .await
        .unwrap()
        .expect("begun");
    app.db.finish_send(message.id, &wa_id, None).await.unwrap();
    let receipts: &[ReceiptKind] = match outcome {
        Outcome::Delivered => &[ReceiptKind::Delivered],
        Outcome::Read => &[ReceiptKind::Delivered, ReceiptKind::Read],
        _ => &[],
    };
    for kind in receipts {
        app.db
            .apply_receipt(fence, &jid(to), *kind, std::slice::from_ref(&wa_id))
            .await
            .unwrap();
    }
    message.id
}

/// The contact `from` writes to the device at `at` (milliseconds).
pub async fn reply(app: &TestApp, fence: Fence, from: &str, at: i64) {
    let id = format!("in-{from}-{at}");
    store(app, fence, vec![text(&id, from, false, None, "Yes please", at)]).await;
}

/// Moves a send `days` days into the past, as if it had gone out then.
async fn backdate(db: &Db, id: i64, days: i64) {
    const SQL: &str = "UPDATE outbound_messages SET sent_at = sent_at - $2, created_at = created_at - $2 WHERE id = $1";
    let shift = days * DAY_MS;
    wafleet_core::testing::execute(db, SQL, &[id.into(), shift.into()]).await;
}

/// Every roll-up row, to compare two refreshes.
async fn rollup_rows(db: &Db) -> Vec<(i64, i64, i64, i64, i64, i64, i64)> {
    const SQL: &str = "SELECT device_id, day, sent, delivered, read, replied, failed FROM analytics_daily \
                       ORDER BY device_id, day";
    match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
    }
    .unwrap()
}

pub async fn results(session: &Session, path: &str) -> Value {
    let response = session.get(path).await;
    let status = response.status();
    let body = body(response).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["results"].clone()
}

/// `[sent, delivered, not_delivered, read, not_read, replied, failed]` of a counts object.
fn counts(v: &Value) -> [i64; 7] {
    [
        "sent",
        "delivered",
        "not_delivered",
        "read",
        "not_read",
        "replied",
        "failed",
    ]
    .map(|k| v[k].as_i64().unwrap())
}

fn day(offset: u64) -> String {
    (Utc::now().date_naive() - Days::new(offset))
        .format("%Y-%m-%d")
        .to_string()
}

/// Ana: "Shop" (online) sends five today (read + replied, read, delivered, sent, failed) and two
/// two days ago (delivered + replied, sent); "Stall" sends one read today. Ben sends one, replied.
pub struct Seeded {
    pub ana: Session,
    pub shop: i64,
    pub stall: i64,
    pub ben: Session,
    pub ben_device: i64,
    pub ben_fence: Fence,
    pub shop_fence: Fence,
    /// Shop's send of today that was delivered and not read.
    pub unread: i64,
}

pub async fn seed(app: &TestApp) -> Seeded {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", None).await;
    let stall = ana.add_device("Stall", None).await;
    let ben = app.session("ben@example.com").await;
    let ben_device = ben.add_device("Ben's", None).await;
    let ana_id = user_id(app, "ana@example.com").await;
    let ben_id = user_id(app, "ben@example.com").await;
    let shop_fence = hold(app, "ana@example.com", shop).await;
    let stall_fence = hold(app, "ana@example.com", stall).await;
    let ben_fence = hold(app, "ben@example.com", ben_device).await;
    app.db
        .set_device_status(shop_fence, DeviceStatus::Online)
        .await
        .unwrap();

    let now = Timestamp::now().millis();
    send(app, ana_id, shop_fence, "60111000001", Outcome::Read).await;
    reply(app, shop_fence, "60111000001", now + 1000).await;
    send(app, ana_id, shop_fence, "60111000002", Outcome::Read).await;
    let unread = send(app, ana_id, shop_fence, "60111000003", Outcome::Delivered).await;
    send(app, ana_id, shop_fence, "60111000004", Outcome::Sent).await;
    send(app, ana_id, shop_fence, "60111000009", Outcome::Failed).await;
    for (to, outcome) in [("60111000005", Outcome::Delivered), ("60111000006", Outcome::Sent)] {
        let id = send(app, ana_id, shop_fence, to, outcome).await;
        backdate(&app.db, id, 2).await;
    }
    // A reply before a send is no reply to it: only the later one counts.
    reply(app, shop_fence, "60111000006", now - 3 * DAY_MS).await;
    reply(app, shop_fence, "60111000005", now - 2 * DAY_MS + 60_000).await;
    send(app, ana_id, stall_fence, "60111000007", Outcome::Read).await;

    send(app, ben_id, ben_fence, "60111000001", Outcome::Sent).await;
    reply(app, ben_fence, "60111000001", now + 2000).await;
    Seeded {
        ana,
        shop,
        stall,
        ben,
        ben_device,
        ben_fence,
        shop_fence,
        unread,
    }
}

async fn counts_percentages_and_series(app: TestApp) {
    let s = seed(&app).await;
    let before = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(counts(&before["totals"]), [0; 7], "nothing before the first roll-up");
    assert!(before["updated_at"].is_null());

    app.refresh_analytics().await;
    let week = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(
        (week["start"].as_str(), week["end"].as_str()),
        (Some(&*day(6)), Some(&*day(0)))
    );
    assert_eq!(counts(&week["totals"]), [7, 5, 2, 3, 2, 2, 1]);
    assert_eq!(
        week["percent"],
        json!({"delivered": 71.4, "not_delivered": 28.6, "read": 60.0, "not_read": 40.0,
               "replied": 28.6, "failed": 12.5})
    );
    assert_eq!(week["devices"], json!({"total": 2, "active": 1, "inactive": 1}));
    assert!(week["updated_at"].is_string());
    let series = week["series"].as_array().unwrap();
    assert_eq!(series.len(), 7);
    let dates: Vec<&str> = series.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates.first(), Some(&&*day(6)));
    assert_eq!(counts(&series[6]["counts"]), [5, 4, 1, 3, 1, 1, 1]);
    assert_eq!(counts(&series[4]["counts"]), [2, 1, 1, 0, 1, 1, 0]);
    for quiet in [0, 1, 2, 3, 5] {
        assert_eq!(counts(&series[quiet]["counts"]), [0; 7], "day {quiet}");
    }

    let today = results(&s.ana, "/api/analytics/1").await;
    assert_eq!(counts(&today["totals"]), [5, 4, 1, 3, 1, 1, 1]);
    assert_eq!(today["series"].as_array().unwrap().len(), 1);

    let stall = results(&s.ana, &format!("/api/analytics/30?device={}", s.stall)).await;
    assert_eq!(counts(&stall["totals"]), [1, 1, 0, 1, 0, 0, 0]);
    assert_eq!(stall["devices"], json!({"total": 1, "active": 0, "inactive": 1}));
    assert_eq!(stall["device"], json!(s.stall));
    assert_eq!(stall["series"].as_array().unwrap().len(), 30);

    let two_days_ago = format!("/api/analytics/custom?start={0}&end={0}&device={1}", day(2), s.shop);
    let custom = results(&s.ana, &two_days_ago).await;
    assert_eq!(counts(&custom["totals"]), [2, 1, 1, 0, 1, 1, 0]);
    assert_eq!(custom["percent"]["delivered"], json!(50.0));
    assert_eq!(custom["percent"]["read"], json!(0.0));

    let empty = results(&s.ana, &format!("/api/analytics/custom?start={0}&end={0}", day(1))).await;
    assert_eq!(empty["percent"]["delivered"], json!(0.0), "no sends: 0, not NaN");
}

async fn rollup_is_idempotent_and_follows_changes(app: TestApp) {
    let s = seed(&app).await;
    app.refresh_analytics().await;
    let rows = rollup_rows(&app.db).await;
    let first = results(&s.ana, "/api/analytics/90").await;
    app.refresh_analytics().await;
    assert_eq!(rollup_rows(&app.db).await, rows, "a second run changes nothing");
    let second = results(&s.ana, "/api/analytics/90").await;
    assert_eq!(first["totals"], second["totals"]);
    assert_eq!(first["series"], second["series"]);

    // Changes after a refresh reach the next one: a read receipt, and a late reply to a send of
    // two days ago.
    let read = [format!("wa-{}", s.unread)];
    app.db
        .apply_receipt(
            s.shop_fence,
            &Jid("60111000003@s.whatsapp.net".into()),
            ReceiptKind::Read,
            &read,
        )
        .await
        .unwrap();
    reply(&app, s.shop_fence, "60111000006", Timestamp::now().millis()).await;
    app.refresh_analytics().await;
    let after = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(counts(&after["totals"]), [7, 5, 2, 4, 1, 3, 1]);
    let series = after["series"].as_array().unwrap();
    assert_eq!(counts(&series[4]["counts"]), [2, 1, 1, 0, 1, 2, 0]);
}

async fn only_your_devices_are_counted(app: TestApp) {
    let s = seed(&app).await;
    app.refresh_analytics().await;
    let ben = results(&s.ben, "/api/analytics/7").await;
    assert_eq!(counts(&ben["totals"]), [1, 0, 1, 0, 0, 1, 0]);
    assert_eq!(ben["devices"]["total"], json!(1));
    let ana = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(ana["totals"]["sent"], json!(7), "Ben's send is not Ana's");

    for path in [
        format!("/api/analytics/7?device={}", s.ben_device),
        format!(
            "/api/analytics/custom?start={}&end={}&device={}",
            day(1),
            day(0),
            s.ben_device
        ),
        "/api/analytics/7?device=999999".to_owned(),
    ] {
        expect_error(s.ana.get(&path).await, StatusCode::NOT_FOUND, "device not found").await;
    }
    let anonymous = reqwest::get(app.url("/api/analytics/7")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The totals of all devices come from a roll-up per user: deleting a device takes its sends out of
/// them at once, as they leave the per-device figures, and the next roll-up keeps it that way.
async fn a_deleted_device_leaves_the_totals(app: TestApp) {
    let s = seed(&app).await;
    app.refresh_analytics().await;
    let before = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(counts(&before["totals"]), [7, 5, 2, 3, 2, 2, 1]);

    let deleted = s.ana.delete(&format!("/api/devices/{}", s.stall)).await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let after = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(
        counts(&after["totals"]),
        [6, 4, 2, 2, 2, 2, 1],
        "Stall's read send is gone"
    );
    assert_eq!(after["devices"], json!({"total": 1, "active": 1, "inactive": 0}));
    assert_eq!(counts(&after["series"][6]["counts"]), [4, 3, 1, 2, 1, 1, 1]);
    assert_eq!(
        counts(&after["series"][4]["counts"]),
        [2, 1, 1, 0, 1, 1, 0],
        "other days unchanged"
    );

    app.refresh_analytics().await;
    let again = results(&s.ana, "/api/analytics/7").await;
    assert_eq!(again["totals"], after["totals"]);
    let ben = results(&s.ben, "/api/analytics/7").await;
    assert_eq!(
        counts(&ben["totals"]),
        [1, 0, 1, 0, 0, 1, 0],
        "another user's figures untouched"
    );
}

async fn bad_input_is_refused(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let far = (Utc::now().date_naive() - Days::new(366))
        .format("%Y-%m-%d")
        .to_string();
    let cases = [
        ("/api/analytics/0".to_owned(), "days: must be a whole number from 1"),
        ("/api/analytics/367".to_owned(), "days: must be a whole number from 1"),
        ("/api/analytics/week".to_owned(), "/api/analytics/custom"),
        (
            "/api/analytics/7?device=shop".to_owned(),
            "device: `shop` is not a device id",
        ),
        ("/api/analytics/custom?end=2025-01-31".to_owned(), "start: required"),
        ("/api/analytics/custom?start=2025-01-01".to_owned(), "end: required"),
        (
            "/api/analytics/custom?start=2025-02-30&end=2025-03-01".to_owned(),
            "start: `2025-02-30` is not a day",
        ),
        (
            "/api/analytics/custom?start=2025-01-01&end=31/01/2025".to_owned(),
            "YYYY-MM-DD",
        ),
        (
            "/api/analytics/custom?start=2025-02-01&end=2025-01-01".to_owned(),
            "before start",
        ),
        (
            format!("/api/analytics/custom?start={far}&end={}", day(0)),
            "at most 366 days",
        ),
    ];
    for (path, needle) in cases {
        expect_error(ana.get(&path).await, StatusCode::UNPROCESSABLE_ENTITY, needle).await;
    }
    // 366 days is the most, and allowed.
    let year = results(
        &ana,
        &format!("/api/analytics/custom?start={}&end={}", day(365), day(0)),
    )
    .await;
    assert_eq!(year["series"].as_array().unwrap().len(), 366);
}

/// A small deterministic generator (xorshift64), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Counts of `user`'s sends (all devices, or `device`) whose UTC day is in `[start, end]`,
/// computed straight from `outbound_messages` and `messages` by the counting rule, without the
/// roll-ups: `[sent, delivered, not_delivered, read, not_read, replied, failed]`.
async fn counted_from_rows(db: &Db, user: UserId, device: Option<i64>, start: &str, end: &str) -> [i64; 7] {
    const SQL: &str = "\
SELECT
  COALESCE(SUM(CASE WHEN o.status IN ('sent', 'delivered', 'read') THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN o.status IN ('delivered', 'read') THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN o.status = 'read' THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN o.status IN ('sent', 'delivered', 'read') AND EXISTS (
      SELECT 1 FROM messages m WHERE m.device_id = o.device_id AND m.chat_jid = o.recipient
        AND m.from_me = FALSE AND m.sent_at >= o.sent_at) THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END), 0)
FROM outbound_messages o JOIN devices d ON d.id = o.device_id
WHERE d.user_id = $1 AND ($2 = 0 OR o.device_id = $2)
  AND COALESCE(o.sent_at, o.created_at) >= $3 AND COALESCE(o.sent_at, o.created_at) < $4";
    let midnight = |date: &str| {
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis()
    };
    let (from, until) = (midnight(start), midnight(end) + DAY_MS);
    let device = device.unwrap_or(0);
    let row: (i64, i64, i64, i64, i64) = match db {
        Db::Sqlite(pool) => {
            sqlx::query_as(SQL)
                .bind(user.0)
                .bind(device)
                .bind(from)
                .bind(until)
                .fetch_one(pool)
                .await
        }
        Db::Postgres(pool) => {
            sqlx::query_as(SQL)
                .bind(user.0)
                .bind(device)
                .bind(from)
                .bind(until)
                .fetch_one(pool)
                .await
        }
    }
    .unwrap();
    let (sent, delivered, read, replied, failed) = row;
    [
        sent,
        delivered,
        sent - delivered,
        read,
        delivered - read,
        replied,
        failed,
    ]
}

/// The sends of `device` as stored: (recipient number, sent_at), for sends that went out.
async fn sent_rows(db: &Db, device: i64) -> Vec<(String, i64)> {
    const SQL: &str = "SELECT recipient, sent_at FROM outbound_messages WHERE device_id = $1 AND sent_at IS NOT NULL";
    let rows: Vec<(String, i64)> = match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).bind(device).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).bind(device).fetch_all(pool).await,
    }
    .unwrap();
    rows.into_iter()
        .map(|(jid, at)| (jid.trim_end_matches("@s.whatsapp.net").to_owned(), at))
        .collect()
}

/// Moves each send `days` into the past, one statement per distinct number of days.
async fn backdate_all(db: &Db, moves: &[(i64, i64)]) {
    let mut by_days: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (id, days) in moves {
        by_days.entry(*days).or_default().push(*id);
    }
    for (days, ids) in by_days {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "UPDATE outbound_messages SET sent_at = sent_at - {shift}, created_at = created_at - {shift} WHERE id IN ({list})",
            shift = days * DAY_MS
        );
        // Only integers the test made go into the statement.
        let sql = sqlx::AssertSqlSafe(sql);
        match db {
            Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }
}

/// Three thousand sends over three devices and 45 days, with random outcomes and replies (some
/// before the send, which do not count): every window the API offers, for all devices and for
/// each, equals the counts computed straight from the stored rows.
async fn generated_sends_match_counts_from_the_stored_rows(app: TestApp) {
    const PER_DEVICE: u64 = 1_000;
    let ana = app.session("gen@example.com").await;
    let ana_id = user_id(&app, "gen@example.com").await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut devices = Vec::new();
    for name in ["North", "South", "East"] {
        let device = ana.add_device(name, None).await;
        let fence = hold(&app, "gen@example.com", device).await;
        let mut moves = Vec::new();
        for n in 0..PER_DEVICE {
            let outcome = match rng.below(10) {
                0 => Outcome::Failed,
                1 | 2 => Outcome::Sent,
                3..=5 => Outcome::Delivered,
                _ => Outcome::Read,
            };
            let to = format!("60{}{:07}", 13 + devices.len(), n);
            let id = send(&app, ana_id, fence, &to, outcome).await;
            moves.push((id, rng.below(45) as i64));
        }
        backdate_all(&app.db, &moves).await;
        let mut replies = Vec::new();
        for (number, at) in sent_rows(&app.db, device).await {
            let at = match rng.below(10) {
                0..=2 => at + 1_000 + rng.below(3_600_000) as i64,
                3 => at - 1_000 - rng.below(3 * DAY_MS as u64) as i64,
                _ => continue,
            };
            replies.push(text(&format!("r-{number}"), &number, false, None, "ok", at));
        }
        store(&app, fence, replies).await;
        devices.push(device);
    }
    app.refresh_analytics().await;

    let mut windows: Vec<(String, String, String)> = [1u64, 7, 30, 90]
        .iter()
        .map(|days| (format!("/api/analytics/{days}"), day(days - 1), day(0)))
        .collect();
    windows.push((
        format!("/api/analytics/custom?start={}&end={}", day(40), day(20)),
        day(40),
        day(20),
    ));
    let mut total = 0;
    for (path, start, end) in windows {
        for device in std::iter::once(None).chain(devices.iter().copied().map(Some)) {
            let url = match device {
                Some(id) => format!("{path}{}device={id}", if path.contains('?') { '&' } else { '?' }),
                None => path.clone(),
            };
            let answer = results(&ana, &url).await;
            let expected = counted_from_rows(&app.db, ana_id, device, &start, &end).await;
            assert_eq!(counts(&answer["totals"]), expected, "{url}");
            if path.ends_with("/90") && device.is_none() {
                total = expected[0] + expected[6];
            }
        }
    }
    assert_eq!(
        total,
        3 * PER_DEVICE as i64,
        "every generated send is in the 90-day window"
    );
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => generated_sends_match_counts_from_the_stored_rows, counts_percentages_and_series, rollup_is_idempotent_and_follows_changes, only_your_devices_are_counted, a_deleted_device_leaves_the_totals, bad_input_is_refused);
