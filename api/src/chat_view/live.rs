//! The live side of the chat view: a server-sent event stream per device, with the device's
//! status and each message stored for it. Read from the database with one query per tick for the
//! device (however many chats it has), so any API replica can serve it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use wafleet_core::db::DeviceStatus;
use wafleet_core::types::{DeviceId, Timestamp, UserId};

use crate::AppState;
use crate::error::{ApiResult, OrNotFound};
use crate::extract::{Path, Query};
use crate::session::CurrentUser;

/// How often the stream looks for changes.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How far back each look reaches behind the newest message sent. A batch stamps its messages
/// when it starts and they become visible when it commits, so a message can appear with a stamp a
/// little older than one already sent; ids sent within the window are remembered and skipped.
const LAG_MILLIS: i64 = 5_000;
/// Most messages read per look.
const BATCH: i64 = 500;

/// Where the stream starts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Send messages stored after this instant (milliseconds since the Unix epoch); default now.
    /// A reconnecting `EventSource` resumes from its `Last-Event-ID` instead.
    pub since: Option<i64>,
}

/// What one stream remembers between looks.
struct Watch {
    state: AppState,
    user: UserId,
    device: DeviceId,
    /// Messages stored at or before this are never sent.
    floor: Timestamp,
    /// Where the next look starts.
    from: Timestamp,
    /// The newest `received_at` sent.
    newest: Timestamp,
    /// Ids sent whose stamp is still within the look-back window.
    sent: HashMap<String, Timestamp>,
    /// The status last sent.
    status: Option<DeviceStatus>,
    /// Wait before the next look (not when the last one read a whole batch, or at the start).
    pause: bool,
}

impl Watch {
    /// One look: the events to send, or `None` when the device is gone (or no longer theirs).
    async fn look(&mut self) -> Option<Vec<Event>> {
        let activity = match self
            .state
            .db
            .device_activity(self.user, self.device, self.from, BATCH)
            .await
        {
            Ok(activity) => activity?,
            Err(err) => {
                tracing::warn!(device = %self.device, error = ?err, "reading device activity for the event stream failed");
                self.pause = true;
                return Some(Vec::new());
            }
        };
        let mut events = Vec::new();
        if self.status != Some(activity.status) {
            self.status = Some(activity.status);
            let data = json!({"status": activity.status, "online": activity.status == DeviceStatus::Online});
            events.push(Event::default().event("status").data(data.to_string()));
        }
        let full = activity.messages.len() as i64 >= BATCH;
        self.pause = !full;
        let last_seen = activity.messages.last().map(|(m, _)| m.received_at);
        for (message, chat) in activity.messages {
            if message.received_at <= self.floor || self.sent.contains_key(&message.id) {
                continue;
            }
            self.newest = self.newest.max(message.received_at);
            self.sent.insert(message.id.clone(), message.received_at);
            let data = json!({"message": message, "chat": chat});
            events.push(
                Event::default()
                    .event("message")
                    .id(self.newest.millis().to_string())
                    .data(data.to_string()),
            );
        }
        let window = Timestamp(self.newest.millis().saturating_sub(LAG_MILLIS));
        self.sent.retain(|_, at| *at > window);
        self.from = window.max(self.floor);
        if full && let Some(last) = last_seen {
            // A whole batch inside the window: go past it rather than read the same rows again.
            self.from = self.from.max(last);
        }
        Some(events)
    }
}

/// Live updates of one device for its chat view: a `status` event (`{"status", "online"}`) at
/// the start and whenever it changes, and a `message` event (`{"message", "chat"}`, the chat as it
/// stands after the message) for each message stored. Event ids let a reconnecting client resume.
#[utoipa::path(get, path = "/api/devices/{id}/events", tag = "chats",
    params(("id" = i64, Path, description = "Device id"), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "Server-sent events"),
              (status = 404, description = "No such device of yours")))]
pub(super) async fn device_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    headers: HeaderMap,
    query: Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Query(query) = query;
    state.db.device(user.id, device).await.or_not_found("device")?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    // Nothing is stored before the epoch: an earlier instant means the same as the epoch.
    let start = resume
        .or(query.since)
        .map_or_else(Timestamp::now, |at| Timestamp(at.max(0)));
    // Reach back one window: the client drops messages it already shows, and this catches those
    // stamped just before `start` but committed after it.
    let floor = Timestamp(start.millis().saturating_sub(LAG_MILLIS));
    let watch = Watch {
        state,
        user: user.id,
        device,
        floor,
        from: floor,
        newest: floor,
        sent: HashMap::new(),
        status: None,
        pause: false,
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            if watch.pause {
                tokio::time::sleep(POLL_EVERY).await;
            }
            let events = watch.look().await?;
            if !events.is_empty() {
                return Some((events, watch));
            }
        }
    })
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
