//! The read-only WhatsApp view over the JSON API: chat pages with search, message pages with
//! ticks, the device's event stream, isolation between users and refused bad input. Data is
//! seeded the way the worker's ingest writes it, through a lease's fence.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wafleet_core::db::{Desired, Fence, IngestItem};
use wafleet_core::link::{IncomingMessage, Jid, MessageKind, ReceiptKind};
use wafleet_core::types::{DeviceId, Email, Timestamp};

use crate::helpers::{Backend, Session, TestApp, body, expect_error, spawn_app_with};

/// The JID of a Malaysian number given without `+`.
pub fn jid(number: &str) -> Jid {
    Jid(format!("{number}@s.whatsapp.net"))
}

/// A text message in `chat`; from the other person unless `from_me`.
pub fn text(id: &str, chat: &str, from_me: bool, name: Option<&str>, body: &str, sent_at: i64) -> IncomingMessage {
    IncomingMessage {
        id: id.into(),
        chat: jid(chat),
        sender: if from_me { jid("60123456789") } else { jid(chat) },
        sender_alt: None,
        from_me,
        push_name: name.map(str::to_owned),
        kind: MessageKind::Text,
        text: Some(body.into()),
        sent_at: Timestamp(sent_at),
        history: false,
        media: None,
    }
}

/// Makes `device` of `email` held by a (pretend) worker and returns the holder's fence.
pub async fn hold(app: &TestApp, email: &str, device: i64) -> Fence {
    let user = app
        .db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("registered")
        .id;
    app.db
        .request_session(user, DeviceId(device), Desired::Connected, None)
        .await
        .unwrap();
    let fences = app.db.claim_leases("test-worker", 100, 600).await.unwrap();
    *fences.iter().find(|f| f.device == DeviceId(device)).expect("claimed")
}

/// Stores `messages` in one batch, as the ingest does.
pub async fn store(app: &TestApp, fence: Fence, messages: Vec<IncomingMessage>) {
    let items: Vec<_> = messages.into_iter().map(|m| (fence, IngestItem::Message(m))).collect();
    let outcome = app.db.write_batch(&items).await.unwrap();
    assert!(outcome.accepted.iter().all(|ok| *ok));
    app.changed(fence.device).await;
}

/// `results` of a GET that must succeed.
async fn results(session: &Session, path: &str) -> Value {
    let response = session.get(path).await;
    let status = response.status();
    let body = body(response).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body["results"].clone()
}

/// Every chat JID of the listing at `path` (with `?`), page by page, and the page sizes.
async fn walk_chats(session: &Session, path: &str) -> (Vec<String>, Vec<usize>) {
    let (mut jids, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let page = results(session, &url).await;
        let chats = page["chats"].as_array().unwrap();
        sizes.push(chats.len());
        jids.extend(chats.iter().map(|c| c["jid"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (jids, sizes),
        }
        assert!(sizes.len() < 20, "pages never end");
    }
}

/// Seven chats: 6019100000N for N in 1..=7, the last message of N at N seconds, except that 3
/// and 4 tie (ordered by JID). Chat 2 holds the text "invoice".
async fn seven_chats(app: &TestApp, email: &str, device: i64) {
    let fence = hold(app, email, device).await;
    let mut messages = Vec::new();
    for n in 1..=7i64 {
        let at = if n == 4 { 3_000 } else { n * 1_000 };
        let words = if n == 2 { "about the invoice" } else { "hello" };
        let number = format!("6019100000{n}");
        let name = format!("Person {n}");
        messages.push(text(&format!("m{n}"), &number, false, Some(&name), words, at));
    }
    messages.push(text("m1b", "60191000001", false, None, "again", 500));
    store(app, fence, messages).await;
}

async fn chats_page_newest_first_and_search(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let base = format!("/api/devices/{device}/chats");
    let empty = results(&ana, &base).await;
    assert_eq!(empty["chats"], Value::Array(vec![]));
    assert!(empty["next_cursor"].is_null());

    seven_chats(&app, "ana@example.com", device).await;
    let number = |n: u32| format!("6019100000{n}@s.whatsapp.net");
    let newest_first: Vec<String> = [7, 6, 5, 3, 4, 2, 1].map(number).to_vec();
    for (limit, sizes) in [(3, vec![3, 3, 1]), (7, vec![7]), (6, vec![6, 1]), (1, vec![1; 7])] {
        let (jids, got) = walk_chats(&ana, &format!("{base}?limit={limit}")).await;
        assert_eq!(jids, newest_first, "limit {limit}: every chat once, newest first");
        assert_eq!(got, sizes, "limit {limit}");
    }

    let first = results(&ana, &format!("{base}?limit=1")).await["chats"][0].clone();
    assert_eq!(first["name"], "Person 7");
    assert_eq!(first["last_message_preview"], "hello");
    assert!(
        first["last_message_at"]
            .as_str()
            .unwrap()
            .starts_with("1970-01-01T00:00:07")
    );
    let oldest = results(&ana, &format!("{base}?q=Person%201")).await["chats"][0].clone();
    assert_eq!(oldest["unread_count"], 2, "both messages of chat 1 are unread");
    assert_eq!(
        oldest["last_message_preview"], "hello",
        "the newer message is the preview"
    );

    let search = async |q: &str| walk_chats(&ana, &format!("{base}?limit=2&q={q}")).await;
    assert_eq!(search("person%205").await.0, vec![number(5)], "names, any case");
    assert_eq!(search("INVOICE").await.0, vec![number(2)], "the last message");
    assert_eq!(
        search("019-1000006").await.0,
        vec![number(6)],
        "national digits match the number"
    );
    assert_eq!(
        search("%2B6019100000").await.0,
        newest_first,
        "searches page like the full list"
    );
    assert!(search("nobody").await.0.is_empty());
    assert!(search("%25").await.0.is_empty(), "LIKE wildcards match literally");
}

async fn messages_page_back_with_ticks(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let fence = hold(&app, "ana@example.com", device).await;
    let chat = "60191000001";
    store(
        &app,
        fence,
        vec![
            text("a1", chat, false, Some("Aminah"), "hi", 1_000),
            text("a2", chat, true, None, "hello Aminah", 2_000),
            text("a3", chat, true, None, "the price is 10", 3_000),
            text("a4", chat, false, None, "ok", 3_000),
            text("a5", chat, true, None, "thanks", 4_000),
            text("other", "60191000002", false, None, "not this chat", 5_000),
        ],
    )
    .await;
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    app.db
        .apply_receipt(fence, &jid(chat), ReceiptKind::Delivered, &ids(&["a3", "a5"]))
        .await
        .unwrap();
    app.db
        .apply_receipt(fence, &jid(chat), ReceiptKind::Read, &ids(&["a2"]))
        .await
        .unwrap();
    app.changed(fence.device).await;

    let base = format!("/api/devices/{device}/messages/{chat}%40s.whatsapp.net");
    let (mut seen, mut sizes, mut before) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let url = match &before {
            Some(b) => format!("{base}?limit=2&before={b}"),
            None => format!("{base}?limit=2"),
        };
        let page = results(&ana, &url).await;
        assert_eq!(page["chat"]["name"], "Aminah");
        let messages = page["messages"].as_array().unwrap().clone();
        sizes.push(messages.len());
        seen.extend(messages);
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    let order: Vec<&str> = seen.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["a5", "a4", "a3", "a2", "a1"], "newest first, ties by id");
    let status = |id: &str| seen.iter().find(|m| m["id"] == id).unwrap()["status"].clone();
    assert_eq!(status("a5"), "delivered");
    assert_eq!(status("a3"), "delivered");
    assert_eq!(status("a2"), "read");
    assert!(
        status("a1").is_null() && status("a4").is_null(),
        "no ticks on received messages"
    );
    let a2 = seen.iter().find(|m| m["id"] == "a2").unwrap();
    assert_eq!(a2["from_me"], true);
    assert_eq!(a2["sender_jid"], "60123456789@s.whatsapp.net");
    assert_eq!(a2["body"], "hello Aminah");
    assert_eq!(a2["kind"], "text");

    // Exactly one page's worth: no cursor.
    let all = results(&ana, &format!("{base}?limit=5")).await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 5);
    assert!(all["next_before"].is_null());
    // An unencoded `@` works too.
    let plain = results(&ana, &format!("/api/devices/{device}/messages/{chat}@s.whatsapp.net")).await;
    assert_eq!(plain["messages"].as_array().unwrap().len(), 5);
}

async fn chat_view_is_owner_only(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Sales", None).await;
    seven_chats(&app, "ana@example.com", device).await;
    let chat = format!("/api/devices/{device}/messages/60191000001%40s.whatsapp.net");
    for path in [
        format!("/api/devices/{device}/chats"),
        format!("/api/devices/{device}/chats?q=Person"),
        chat.clone(),
        format!("/api/devices/{device}/events"),
    ] {
        expect_error(bo.get(&path).await, StatusCode::NOT_FOUND, "device not found").await;
    }
    let page = bo.get(&format!("/device/{device}/whatsapp-web")).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let bo_device = bo.add_device("Bo's", None).await;
    let theirs = results(&bo, &format!("/api/devices/{bo_device}/chats")).await;
    assert_eq!(
        theirs["chats"].as_array().unwrap().len(),
        0,
        "Bo sees none of Ana's chats"
    );
    expect_error(
        bo.get(&format!(
            "/api/devices/{bo_device}/messages/60191000001%40s.whatsapp.net"
        ))
        .await,
        StatusCode::NOT_FOUND,
        "chat not found",
    )
    .await;
    assert_eq!(results(&ana, &chat).await["messages"].as_array().unwrap().len(), 2);
    let anonymous = reqwest::get(app.url(&format!("/api/devices/{device}/chats")))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn bad_paging_input_is_refused(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    seven_chats(&app, "ana@example.com", device).await;
    let chats = format!("/api/devices/{device}/chats");
    let messages = format!("/api/devices/{device}/messages/60191000001%40s.whatsapp.net");
    for (path, status, needle) in [
        (
            format!("{chats}?limit=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit: must be 1 to 200",
        ),
        (
            format!("{chats}?limit=201"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit: must be 1 to 200",
        ),
        (format!("{chats}?limit=ten"), StatusCode::BAD_REQUEST, "limit"),
        (
            format!("{chats}?cursor=garbage"),
            StatusCode::BAD_REQUEST,
            "cursor: not a cursor",
        ),
        (
            format!("{chats}?cursor=YWJjOmRlZg"),
            StatusCode::BAD_REQUEST,
            "cursor: not a cursor",
        ),
        (
            format!("{messages}?limit=-1"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit: must be 1 to 200",
        ),
        (
            format!("{messages}?before=%25%25"),
            StatusCode::BAD_REQUEST,
            "before: not a cursor",
        ),
        (
            format!("/api/devices/{device}/messages/60191000001"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "chat: give the chat's JID",
        ),
        (
            format!("/api/devices/{device}/messages/1%40s.whatsapp.net"),
            StatusCode::NOT_FOUND,
            "chat not found",
        ),
        ("/api/devices/abc/chats".into(), StatusCode::BAD_REQUEST, ""),
    ] {
        let response = ana.get(&path).await;
        assert_eq!(response.status(), status, "GET {path}");
        expect_error(response, status, needle).await;
    }
}

/// Reads the event stream until `done` holds for the text received so far (10 s at most).
async fn read_until(response: &mut reqwest::Response, seen: &mut String, done: impl Fn(&str) -> bool) {
    let wait = async {
        while !done(seen) {
            let chunk = response.chunk().await.unwrap().expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("stream never showed it; got:\n{seen}"));
}

async fn events_stream_status_and_new_messages(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let fence = hold(&app, "ana@example.com", device).await;
    store(
        &app,
        fence,
        vec![text("old", "60191000001", false, None, "before", 1_000)],
    )
    .await;

    let mut stream = ana.get(&format!("/api/devices/{device}/events")).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, |s| s.contains("event: status")).await;
    assert!(seen.contains(r#""online":false"#), "held but not connected yet: {seen}");

    let now = Timestamp::now().millis();
    store(
        &app,
        fence,
        vec![text("live-1", "60191000002", false, Some("Bo"), "just now", now)],
    )
    .await;
    read_until(&mut stream, &mut seen, |s| s.contains("live-1")).await;
    let event = seen.split("\n\n").find(|e| e.contains("live-1")).unwrap();
    assert!(event.contains("event: message") && event.contains("\nid: "), "{event}");
    let data: Value = serde_json::from_str(event.split("data: ").nth(1).unwrap().trim()).unwrap();
    assert_eq!(data["message"]["body"], "just now");
    assert_eq!(data["chat"]["name"], "Bo");
    assert_eq!(data["chat"]["unread_count"], 1);
    // The stream reaches back a few seconds before its start (clients drop what they show), but
    // sends each message once.
    assert!(seen.matches(r#""id":"old""#).count() <= 1, "{seen}");

    app.db
        .set_device_status(fence, wafleet_core::db::DeviceStatus::Online)
        .await
        .unwrap();
    read_until(&mut stream, &mut seen, |s| s.contains(r#""online":true"#)).await;
    assert_eq!(seen.matches("live-1").count(), 1, "each message once: {seen}");
}

/// A start far before the epoch (as from a client's arithmetic gone wrong) streams from the epoch,
/// rather than overflowing the look-back window and dropping the connection.
async fn events_from_long_before_the_epoch(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    for since in [i64::MIN, -9_223_372_036_854_775_807, -1] {
        let mut stream = ana.get(&format!("/api/devices/{device}/events?since={since}")).await;
        assert_eq!(stream.status(), StatusCode::OK);
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, |s| s.contains("event: status")).await;
    }
    let fence = hold(&app, "ana@example.com", device).await;
    store(
        &app,
        fence,
        vec![text("old", "60191000001", false, None, "before", 1_000)],
    )
    .await;
    let mut stream = ana
        .get(&format!("/api/devices/{device}/events?since={}", i64::MIN))
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, |s| s.contains(r#""id":"old""#)).await;
}

/// Chat pages, message pages and the device are served from the read cache until the device is
/// announced as changed (as the worker's batch writer and the API's own edits do), and the cache
/// never hands one user's page to another.
async fn reads_are_cached_until_the_device_changes(backend: Backend) {
    // A long TTL, so that only an announcement can make a page fresh here.
    let app = spawn_app_with(backend, |s| s.read_cache_ttl_secs = 600).await;
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let fence = hold(&app, "ana@example.com", device).await;
    // Not announced: nothing is cached yet, and on PostgreSQL the announcement's echo through
    // Redis could arrive after the first read below and drop the page it cached.
    let first = [(
        fence,
        IngestItem::Message(text("c1", "60191000001", false, Some("Aminah"), "hi", 1_000)),
    )];
    assert!(app.db.write_batch(&first).await.unwrap().accepted.iter().all(|ok| *ok));
    let chats = format!("/api/devices/{device}/chats");
    let messages = format!("/api/devices/{device}/messages/60191000001%40s.whatsapp.net");
    let chat_jids = async || {
        let page = results(&ana, &chats).await;
        page["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["jid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(chat_jids().await, ["60191000001@s.whatsapp.net"]);
    assert_eq!(results(&ana, &messages).await["messages"].as_array().unwrap().len(), 1);

    // Written without an announcement: the cached pages still show the old state…
    let unannounced = vec![
        (
            fence,
            IngestItem::Message(text("c2", "60191000002", false, Some("Bo"), "hello", 2_000)),
        ),
        (
            fence,
            IngestItem::Message(text("c3", "60191000001", false, None, "again", 3_000)),
        ),
    ];
    assert!(
        app.db
            .write_batch(&unannounced)
            .await
            .unwrap()
            .accepted
            .iter()
            .all(|ok| *ok)
    );
    assert_eq!(
        chat_jids().await,
        ["60191000001@s.whatsapp.net"],
        "served from the cache"
    );
    assert_eq!(results(&ana, &messages).await["messages"].as_array().unwrap().len(), 1);
    // …until the device is announced as changed.
    app.changed(DeviceId(device)).await;
    assert_eq!(
        chat_jids().await,
        ["60191000001@s.whatsapp.net", "60191000002@s.whatsapp.net"]
    );
    assert_eq!(results(&ana, &messages).await["messages"].as_array().unwrap().len(), 2);

    // Another user asking for the same pages gets 404, not Ana's cached ones.
    let bo = app.session("bo@example.com").await;
    expect_error(bo.get(&chats).await, StatusCode::NOT_FOUND, "device not found").await;
    expect_error(bo.get(&messages).await, StatusCode::NOT_FOUND, "device not found").await;

    // The API's own edits refresh the cached device at once.
    let path = format!("/api/devices/{device}");
    assert_eq!(results(&ana, &path).await["name"], "Sales");
    assert_eq!(
        ana.put(&path, serde_json::json!({"name": "Support"})).await.status(),
        StatusCode::OK
    );
    assert_eq!(results(&ana, &path).await["name"], "Support");
    assert_eq!(ana.delete(&path).await.status(), StatusCode::OK);
    expect_error(ana.get(&path).await, StatusCode::NOT_FOUND, "device not found").await;
    expect_error(ana.get(&chats).await, StatusCode::NOT_FOUND, "device not found").await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => chats_page_newest_first_and_search, messages_page_back_with_ticks, chat_view_is_owner_only, bad_paging_input_is_refused, events_stream_status_and_new_messages, events_from_long_before_the_epoch; reads_are_cached_until_the_device_changes);
