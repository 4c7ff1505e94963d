//! Answering questions the API left for the sessions this worker holds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::db::DeviceRequest;
use wafleet_core::link::{ChatSetting, Jid, LinkError, MessageRef, Session};
use wafleet_core::sync;
use wafleet_core::types::{DeviceId, PhoneNumber};

/// Longest a link call for a request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs each pending request once, in the background.
pub struct RequestRunner {
    db: Db,
    in_flight: Arc<Mutex<HashSet<i64>>>,
}

/// The question of a `check_numbers` request.
#[derive(serde::Deserialize)]
struct CheckNumbers {
    phones: Vec<PhoneNumber>,
}

/// The question of a `user_info` or `business_profile` request: the (business) profile of the
/// account of `phone`.
#[derive(serde::Deserialize)]
struct UserInfo {
    phone: PhoneNumber,
}

/// The question of a `profile_picture` request: the picture of the account of `phone`, or its
/// preview.
#[derive(serde::Deserialize)]
struct ProfilePicture {
    phone: PhoneNumber,
    preview: bool,
}

/// The question of a `set_profile_picture` request: the account's new picture, a JPEG in base64.
#[derive(serde::Deserialize)]
struct SetProfilePicture {
    jpeg: String,
}

/// The question of a `chat_presence` request: typing (or stopped) in the personal chat `chat`.
#[derive(serde::Deserialize)]
struct ChatPresence {
    chat: Jid,
    typing: bool,
}

/// The question of a `push_name` request: the account's new push name.
#[derive(serde::Deserialize)]
struct PushName {
    name: String,
}

/// The question of a `presence` request: the account online (`available`) or offline.
#[derive(serde::Deserialize)]
struct Presence {
    available: bool,
}

/// The question of a `chat_setting` request: the account's own `setting` of the personal chat
/// `chat`.
#[derive(serde::Deserialize)]
struct SetChatSetting {
    chat: Jid,
    setting: ChatSetting,
}

/// The question of a `disappearing` request: the timer of the personal chat `chat`, in seconds.
#[derive(serde::Deserialize)]
struct Disappearing {
    chat: Jid,
    seconds: u32,
}

/// The question of a `reject_call` request: decline call `call_id` from `caller`.
#[derive(serde::Deserialize)]
struct RejectCall {
    caller: Jid,
    call_id: String,
}

/// The question of a `react` request: `emoji` on `target` of the personal chat `chat`.
#[derive(serde::Deserialize)]
struct React {
    chat: Jid,
    target: MessageRef,
    emoji: String,
}

/// The question of a `revoke` request: delete the account's message `id` of `chat` for everyone.
#[derive(serde::Deserialize)]
struct Revoke {
    chat: Jid,
    id: String,
}

/// The question of an `edit` request: the account's message `id` of `chat` now reads `text`.
#[derive(serde::Deserialize)]
struct Edit {
    chat: Jid,
    id: String,
    text: String,
}

/// The question of a `mark_read` request: a read receipt for `ids` of the personal chat `chat`.
#[derive(serde::Deserialize)]
struct MarkRead {
    chat: Jid,
    ids: Vec<String>,
}

impl RequestRunner {
    /// A runner writing answers to `db`.
    pub fn new(db: Db) -> Self {
        RequestRunner {
            db,
            in_flight: Arc::default(),
        }
    }

    /// Starts every pending request for a device in `sessions` that is not already running.
    pub async fn run_pending(&self, sessions: &HashMap<DeviceId, Arc<dyn Session>>) {
        let pending = match self.db.pending_device_requests().await {
            Ok(pending) => pending,
            Err(err) => {
                tracing::warn!(error = ?err, "reading pending requests failed");
                return;
            }
        };
        for request in pending {
            let Some(session) = sessions.get(&request.device_id).cloned() else {
                continue;
            };
            if !sync::lock(&self.in_flight).insert(request.id) {
                continue;
            }
            let (db, in_flight) = (self.db.clone(), self.in_flight.clone());
            tokio::spawn(async move {
                let id = request.id;
                let (ok, answer) = answer(&db, &request, session.as_ref()).await;
                if let Err(err) = db.finish_device_request(id, ok, &answer).await {
                    tracing::warn!(error = ?err, request = id, "recording an answer failed");
                }
                sync::lock(&in_flight).remove(&id);
            });
        }
    }
}

#[tracing::instrument(skip(db, session), fields(request = request.id, device = %request.device_id))]
async fn answer(db: &Db, request: &DeviceRequest, session: &dyn Session) -> (bool, String) {
    match request.kind.as_str() {
        "check_numbers" => match question::<CheckNumbers>(request) {
            Ok(q) => called(session.check_numbers(&q.phones)).await,
            Err(failed) => failed,
        },
        "user_info" => match question::<UserInfo>(request) {
            Ok(q) => called(session.user_info(&q.phone)).await,
            Err(failed) => failed,
        },
        "privacy" => called(session.privacy()).await,
        "business_profile" => match question::<UserInfo>(request) {
            Ok(q) => called(session.business_profile(&q.phone)).await,
            Err(failed) => failed,
        },
        "set_profile_picture" => match question::<SetProfilePicture>(request).and_then(|q| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(q.jpeg)
                .map_err(|e| (false, format!("malformed request: the picture is not base64: {e}")))
        }) {
            Ok(jpeg) => called(session.set_profile_picture(&jpeg)).await,
            Err(failed) => failed,
        },
        "profile_picture" => match question::<ProfilePicture>(request) {
            Ok(q) => called(session.profile_picture(&q.phone, q.preview)).await,
            Err(failed) => failed,
        },
        "mark_read" => match question::<MarkRead>(request) {
            Ok(q) => called(session.mark_read(&q.chat, &q.ids)).await,
            Err(failed) => failed,
        },
        "react" => match question::<React>(request) {
            Ok(q) => called(session.react(&q.chat, &q.target, &q.emoji)).await,
            Err(failed) => failed,
        },
        "revoke" => match question::<Revoke>(request) {
            Ok(q) => called(session.revoke(&q.chat, &q.id)).await,
            Err(failed) => failed,
        },
        "edit" => match question::<Edit>(request) {
            Ok(q) => called(session.edit(&q.chat, &q.id, &q.text)).await,
            Err(failed) => failed,
        },
        "chat_presence" => match question::<ChatPresence>(request) {
            Ok(q) => called(session.chat_presence(&q.chat, q.typing)).await,
            Err(failed) => failed,
        },
        "push_name" => match question::<PushName>(request) {
            Ok(q) => called(session.set_push_name(&q.name)).await,
            Err(failed) => failed,
        },
        "presence" => match question::<Presence>(request) {
            Ok(q) => called(session.set_presence(q.available)).await,
            Err(failed) => failed,
        },
        "chat_setting" => match question::<SetChatSetting>(request) {
            Ok(q) => {
                let answered = called(session.set_chat_setting(&q.chat, &q.setting)).await;
                if answered.0 {
                    recorded(db.record_chat_setting(request.device_id, &q.chat.0, &q.setting).await);
                }
                answered
            }
            Err(failed) => failed,
        },
        "reject_call" => match question::<RejectCall>(request) {
            Ok(q) => called(session.reject_call(&q.caller, &q.call_id)).await,
            Err(failed) => failed,
        },
        "disappearing" => match question::<Disappearing>(request) {
            Ok(q) => {
                let answered = called(session.set_disappearing(&q.chat, q.seconds)).await;
                if answered.0 {
                    recorded(db.record_disappearing(request.device_id, &q.chat.0, q.seconds).await);
                }
                answered
            }
            Err(failed) => failed,
        },
        other => (false, format!("unknown request kind `{other}`")),
    }
}

/// Logs a failure to record what WhatsApp took: the change is made, only wafleet's copy of it
/// lags (the next change of the same setting writes it again).
fn recorded(outcome: wafleet_core::Result<()>) {
    if let Err(err) = outcome {
        tracing::warn!(error = ?err, "recording a chat's setting failed");
    }
}

/// The request's question, or the failed answer to a malformed one.
fn question<T: serde::de::DeserializeOwned>(request: &DeviceRequest) -> Result<T, (bool, String)> {
    serde_json::from_str(&request.payload).map_err(|e| (false, format!("malformed request: {e}")))
}

/// The answer of a link call: its result as JSON, or why it failed.
async fn called<T: serde::Serialize>(call: impl Future<Output = Result<T, LinkError>>) -> (bool, String) {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(result)) => (true, serde_json::to_string(&result).unwrap_or_default()),
        Ok(Err(err)) => (false, err.to_string()),
        Err(_) => (false, "WhatsApp did not answer in time".into()),
    }
}
