//! The frame every signed-in page shares: the header with one navigation, the device's own links
//! on a device's pages, and the flash area where errors stay until dismissed or superseded.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use wafleet_core::db::{Device, User};
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::csrf;
use crate::pages::page;

/// What the shared header and flash area of a signed-in page need.
pub(crate) struct Frame {
    /// The page's CSRF token (the logout form and the page's API calls send it).
    pub csrf: String,
    /// The signed-in user's email, shown in the header; empty for a visitor not signed in.
    pub email: String,
    /// Whether to show the admin badge.
    pub is_admin: bool,
    /// Which main navigation entry is the current page: `devices`, `analytics`, `tokens`,
    /// `webhooks`, `campaigns`, `templates`, `docs`, `account` or `admin`.
    pub active: &'static str,
    /// On a device's pages: that device, for the device's own links.
    pub device: Option<DeviceNav>,
    /// Which of the device's links is the current page: `leads`, `whatsapp` or `actions`.
    pub device_active: &'static str,
    /// Whether the instance runs against the simulated network (`serve --demo`).
    pub demo: bool,
}

/// The device a device page is about, as its links name it.
pub(crate) struct DeviceNav {
    /// Its id, for the links.
    pub id: DeviceId,
    /// Its name.
    pub name: String,
    /// Its number, when it has one.
    pub phone: Option<String>,
}

impl Frame {
    /// The frame of a page of `user`, with a fresh CSRF token set on `jar`.
    pub fn new(state: &AppState, jar: CookieJar, user: &User, active: &'static str) -> (CookieJar, Frame) {
        let (jar, csrf) = csrf::token(jar, state.settings.cookie_secure);
        let frame = Frame {
            csrf,
            email: user.email.to_string(),
            is_admin: user.is_admin,
            active,
            device: None,
            device_active: "",
            demo: state.demo.is_some(),
        };
        (jar, frame)
    }

    /// The frame of a page open to visitors who have not signed in (the header offers to).
    pub fn anonymous(state: &AppState, jar: CookieJar, active: &'static str) -> (CookieJar, Frame) {
        let (jar, csrf) = csrf::token(jar, state.settings.cookie_secure);
        let frame = Frame {
            csrf,
            email: String::new(),
            is_admin: false,
            active,
            device: None,
            device_active: "",
            demo: state.demo.is_some(),
        };
        (jar, frame)
    }

    /// The same frame on one of `device`'s pages (`which`: `leads`, `whatsapp` or `actions`).
    pub fn on_device(mut self, device: &Device, which: &'static str) -> Frame {
        self.device = Some(DeviceNav {
            id: device.id,
            name: device.name.clone(),
            phone: device.phone.as_ref().map(|p| p.to_string()),
        });
        self.device_active = which;
        self
    }
}

/// A page that says what went wrong in words, inside the frame (a device that does not exist or
/// is another user's looks the same: nothing tells one from the other).
#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    frame: Frame,
    heading: &'static str,
    detail: &'static str,
}

/// The page for a device that is missing or not the user's: 404, never the JSON envelope.
pub(crate) fn device_not_found(state: &AppState, jar: CookieJar, user: &User) -> Response {
    let detail = "There is no such device among yours. It may have been deleted, or the link may be mistyped.";
    problem(state, jar, user, StatusCode::NOT_FOUND, "Device not found", detail)
}

/// A page of `user`'s that only says what went wrong, with `status`.
pub(crate) fn problem(
    state: &AppState,
    jar: CookieJar,
    user: &User,
    status: StatusCode,
    heading: &'static str,
    detail: &'static str,
) -> Response {
    let (jar, frame) = Frame::new(state, jar, user, "devices");
    let view = ProblemPage { frame, heading, detail };
    (jar, page(status, &view)).into_response()
}
