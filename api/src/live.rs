//! Live updates for the dashboard: a server-sent event stream of the user's devices, their
//! pairing progress and chat counts. Read from the database, so any API replica can serve it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use serde::Serialize;
use wafleet_core::db::{Device, PairingView};
use wafleet_core::types::{Timestamp, UserId};

use crate::AppState;
use crate::devices::RestrictionsView;
use crate::error::ApiResult;
use crate::session::CurrentUser;

/// How often the stream looks for changes.
const POLL_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

/// A device with what the dashboard shows beside it.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    /// The device.
    #[serde(flatten)]
    pub device: Device,
    /// Pairing progress (QR code as SVG, pair code, last error).
    pub pairing: PairingSummary,
    /// How many personal chats are stored.
    pub chat_count: i64,
    /// What WhatsApp lets the number do with new chats.
    pub restrictions: RestrictionsView,
}

/// Pairing progress, with the QR code rendered.
#[derive(Debug, Default, Serialize)]
pub struct PairingSummary {
    /// The QR code as an SVG image, while pairing by QR.
    pub qr_svg: Option<String>,
    /// The code to type on the phone, while pairing by code.
    pub pair_code: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

fn summarise(view: PairingView) -> PairingSummary {
    let qr_svg = view.qr_code.as_deref().and_then(crate::sessions::qr_svg);
    PairingSummary {
        qr_svg,
        pair_code: view.pair_code,
        last_error: view.last_error,
    }
}

/// Everything the dashboard shows about `user`'s devices.
pub async fn device_views(state: &AppState, user: UserId) -> ApiResult<Vec<DeviceView>> {
    let devices = state.db.list_devices(user).await?;
    let mut pairing: HashMap<_, _> = state.db.pairing_views(user).await?.into_iter().collect();
    let counts: HashMap<_, _> = state.db.chat_counts(user).await?.into_iter().collect();
    let mut restrictions: HashMap<_, _> = state.db.restrictions_of_user(user).await?.into_iter().collect();
    let now = Timestamp::now();
    Ok(devices
        .into_iter()
        .map(|device| DeviceView {
            restrictions: RestrictionsView::new(restrictions.remove(&device.id), now),
            pairing: pairing.remove(&device.id).map(summarise).unwrap_or_default(),
            chat_count: counts.get(&device.id).copied().unwrap_or(0),
            device,
        })
        .collect())
}

/// `GET /api/events`: a `devices` event with the full list whenever it changes.
async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((state, user.id, None::<String>), |(state, user, last)| async move {
        loop {
            match device_views(&state, user).await {
                Ok(views) => {
                    let json = serde_json::to_string(&views).unwrap_or_default();
                    if last.as_deref() != Some(json.as_str()) {
                        let event = Event::default().event("devices").data(json.clone());
                        return Some((Ok(event), (state, user, Some(json))));
                    }
                }
                Err(err) => tracing::warn!(error = ?err, "reading devices for the event stream failed"),
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
