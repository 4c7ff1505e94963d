//! Analytics: what became of your sends over a range of UTC days (sent, delivered, read, replied,
//! failed, with percentages and a per-day series) and how many of your devices are online.
//!
//! Figures come from the `analytics_daily` roll-ups, which the scheduler's `analytics_rollup` job
//! refreshes every minute, so they lag the sends by up to a minute (`updated_at` says when they
//! were last refreshed). Answers go through the read cache under [`Topic::Analytics`], which
//! every roll-up that changed a count invalidates, so a cached answer never outlives a refresh
//! (the online-device count may lag by the cache's TTL).

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::cache::Topic;
use wafleet_core::db::Analytics;
use wafleet_core::types::{DeviceId, Timestamp};

use crate::AppState;
use crate::envelope::{Envelope, cache_key, cached_ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Path, Query};
use crate::session::CurrentUser;

/// The longest range served, in days.
pub const MAX_DAYS: i64 = 366;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(custom_range))
        .routes(routes!(last_days))
}

/// Which device.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Only this device (default: all of yours).
    #[param(value_type = Option<i64>)]
    pub device: Option<String>,
}

/// A range of days and, optionally, one device.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    pub start: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included; at most 366 days after `start`.
    pub end: Option<String>,
    /// Only this device (default: all of yours).
    #[param(value_type = Option<i64>)]
    pub device: Option<String>,
}

/// Analytics of today and the days before it: `days` = 1 is today, 7 the last seven days
/// (today included), and so on up to 366.
#[utoipa::path(get, path = "/api/analytics/{days}", tag = "analytics",
    params(("days" = i64, Path, description = "How many days, today included: 1 (today), 7, 30, 90, … up to 366"),
           DeviceQuery),
    responses((status = 200, body = Envelope<Analytics>), (status = 404, description = "No such device of yours"),
              (status = 422, description = "`days` or `device` is invalid; the message says how to fix it")))]
async fn last_days(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(days): Path<String>,
    query: Query<DeviceQuery>,
) -> ApiResult<impl IntoResponse> {
    let days = days
        .parse::<i64>()
        .ok()
        .filter(|d| (1..=MAX_DAYS).contains(d))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "days: must be a whole number from 1 (today) to {MAX_DAYS}, e.g. 7, 30 or 90; \
                 for other ranges use /api/analytics/custom?start=YYYY-MM-DD&end=YYYY-MM-DD"
            ))
        })?;
    let device = parse_device(query.0.device.as_deref())?;
    let today = Timestamp::now().to_datetime().date_naive();
    let first = today - chrono::Days::new(u64::try_from(days - 1).unwrap_or_default());
    answer(&state, user.id, device, first, today).await
}

/// Analytics of the days from `start` to `end` (UTC, both included).
#[utoipa::path(get, path = "/api/analytics/custom", tag = "analytics", params(RangeQuery),
    responses((status = 200, body = Envelope<Analytics>), (status = 404, description = "No such device of yours"),
              (status = 422, description = "A date or the device is invalid, `end` is before `start`, or the range is longer than 366 days")))]
async fn custom_range(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Query<RangeQuery>,
) -> ApiResult<impl IntoResponse> {
    let query = query.0;
    let start = parse_date("start", query.start.as_deref())?;
    let end = parse_date("end", query.end.as_deref())?;
    if end < start {
        return Err(ApiError::Invalid(format!(
            "end: {end} is before start {start}; give the earlier day as start"
        )));
    }
    let days = (end - start).num_days() + 1;
    if days > MAX_DAYS {
        return Err(ApiError::Invalid(format!(
            "end: the range is {days} days; at most {MAX_DAYS} days are served at once"
        )));
    }
    let device = parse_device(query.device.as_deref())?;
    answer(&state, user.id, device, start, end).await
}

/// Checks that `device` is the user's (404 like a missing one otherwise) and reads the figures.
async fn answer(
    state: &AppState,
    user: wafleet_core::types::UserId,
    device: Option<DeviceId>,
    first: NaiveDate,
    last: NaiveDate,
) -> ApiResult<axum::response::Response> {
    // Cached until the next roll-up refresh (device counts may lag by the cache's TTL).
    let device_part = device.map(|d| d.0.to_string()).unwrap_or_default();
    let what = cache_key(&[
        "analytics",
        &user.0.to_string(),
        &device_part,
        &first.to_string(),
        &last.to_string(),
    ]);
    cached_ok(
        state,
        Topic::Analytics,
        what,
        format!("analytics {first} to {last}"),
        async {
            if let Some(device) = device {
                state.db.device(user, device).await.or_not_found("device")?;
            }
            Ok(state.db.analytics(user, device, first, last).await?)
        },
    )
    .await
}

/// A `YYYY-MM-DD` query parameter that must be present.
pub(crate) fn parse_date(name: &str, raw: Option<&str>) -> ApiResult<NaiveDate> {
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::Invalid(format!("{name}: required, a day as YYYY-MM-DD (e.g. 2025-01-31)")))?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::Invalid(format!(
            "{name}: `{raw}` is not a day; write it as YYYY-MM-DD (e.g. 2025-01-31)"
        ))
    })
}

/// The optional `device` parameter; empty means all devices.
fn parse_device(raw: Option<&str>) -> ApiResult<Option<DeviceId>> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => raw.parse::<i64>().map(|id| Some(DeviceId(id))).map_err(|_| {
            ApiError::Invalid(format!(
                "device: `{raw}` is not a device id; give the id of one of your devices, or leave it out for all"
            ))
        }),
    }
}
