//! Answering questions the API left for the sessions this worker holds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::db::DeviceRequest;
use wafleet_core::link::Session;
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
                let (ok, answer) = answer(&request, session.as_ref()).await;
                if let Err(err) = db.finish_device_request(id, ok, &answer).await {
                    tracing::warn!(error = ?err, request = id, "recording an answer failed");
                }
                sync::lock(&in_flight).remove(&id);
            });
        }
    }
}

#[tracing::instrument(skip(session), fields(request = request.id, device = %request.device_id))]
async fn answer(request: &DeviceRequest, session: &dyn Session) -> (bool, String) {
    match request.kind.as_str() {
        "check_numbers" => {
            let question: CheckNumbers = match serde_json::from_str(&request.payload) {
                Ok(q) => q,
                Err(e) => return (false, format!("malformed request: {e}")),
            };
            match tokio::time::timeout(CALL_TIMEOUT, session.check_numbers(&question.phones)).await {
                Ok(Ok(checks)) => (true, serde_json::to_string(&checks).unwrap_or_default()),
                Ok(Err(err)) => (false, err.to_string()),
                Err(_) => (false, "WhatsApp did not answer in time".into()),
            }
        }
        other => (false, format!("unknown request kind `{other}`")),
    }
}
