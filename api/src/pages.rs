//! Server-rendered pages. Templates and assets are compiled into the binary (no CDN).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use crate::AppState;
use crate::accounts::{self, ClientIp, Credentials, PasswordChange};
use crate::csrf;
use crate::error::ApiError;
use crate::extract::Form;
use crate::frame::Frame;
use crate::retention;
use crate::session::{self, CurrentUser, PageUser};
use wafleet_core::db::{MAX_KEEP_DAYS, RetentionDays, User};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_form))
        .route("/register", get(register_page).post(register_form))
        .route("/logout", get(logout_page).post(logout_form))
        .route("/dashboard", get(dashboard))
        .route("/account", get(account_page).post(account_form_post))
        .route("/account/retention", post(retention_form_post))
        .route(
            "/static/app.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../static/app.css"))),
        )
        .route(
            "/static/common.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../static/common.js"))),
        )
        .route(
            "/static/app.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../static/app.js"))),
        )
        .route(
            "/static/analytics.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../static/analytics.js"))),
        )
        .route("/favicon.ico", get(favicon_ico))
        .route(
            "/favicon.svg",
            get(|| asset("image/svg+xml", include_str!("../static/favicon.svg"))),
        )
        .route(
            "/static/webhooks.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../static/webhooks.js"))),
        )
}

/// A static asset compiled into the binary.
pub(crate) async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The icon browsers ask for on every page (also linked as SVG from each page's head).
async fn favicon_ico() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        &include_bytes!("../static/favicon.ico")[..],
    )
        .into_response()
}

/// Renders a template with a status, or a 500 if rendering fails.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::Internal(e.into()).into_response(),
    }
}

async fn home(user: Option<CurrentUser>) -> Redirect {
    Redirect::to(if user.is_some() { "/dashboard" } else { "/login" })
}

/// The login and register pages share one form.
#[derive(Template)]
#[template(path = "account_form.html")]
struct AccountForm {
    register: bool,
    csrf: String,
    email: String,
    error: Option<String>,
    registration_open: bool,
}

/// What the login and register forms post.
#[derive(Deserialize)]
struct AccountFields {
    email: String,
    password: String,
}

fn account_form(
    state: &AppState,
    jar: CookieJar,
    register: bool,
    email: String,
    error: Option<(StatusCode, String)>,
) -> Response {
    let (jar, csrf) = csrf::token(jar, state.settings.cookie_secure);
    let (status, error) = error.map_or((StatusCode::OK, None), |(s, e)| (s, Some(e)));
    let form = AccountForm {
        register,
        csrf,
        email,
        error,
        registration_open: state.settings.allow_registration,
    };
    (jar, page(status, &form)).into_response()
}

async fn login_page(State(state): State<AppState>, user: Option<CurrentUser>, jar: CookieJar) -> Response {
    if user.is_some() {
        return Redirect::to("/dashboard").into_response();
    }
    account_form(&state, jar, false, String::new(), None)
}

async fn register_page(State(state): State<AppState>, user: Option<CurrentUser>, jar: CookieJar) -> Response {
    if user.is_some() {
        return Redirect::to("/dashboard").into_response();
    }
    account_form(&state, jar, true, String::new(), None)
}

async fn login_form(
    State(state): State<AppState>,
    ip: ClientIp,
    jar: CookieJar,
    Form(fields): Form<AccountFields>,
) -> Response {
    let creds = Credentials {
        email: fields.email,
        password: fields.password,
    };
    let result = match accounts::login(&state, &creds, ip).await {
        Ok(user) => session::start(&state, jar.clone(), &user).await.map(|jar| (jar, user)),
        Err(e) => Err(e),
    };
    finish_account_form(&state, jar, false, creds.email, result)
}

async fn register_form(State(state): State<AppState>, jar: CookieJar, Form(fields): Form<AccountFields>) -> Response {
    let creds = Credentials {
        email: fields.email,
        password: fields.password,
    };
    let result = match accounts::register(&state, &creds).await {
        Ok(user) => session::start(&state, jar.clone(), &user).await.map(|jar| (jar, user)),
        Err(e) => Err(e),
    };
    finish_account_form(&state, jar, true, creds.email, result)
}

/// Redirects to the dashboard on success; shows the form again with the error otherwise.
fn finish_account_form(
    state: &AppState,
    jar: CookieJar,
    register: bool,
    email: String,
    result: Result<(CookieJar, User), ApiError>,
) -> Response {
    match result {
        Ok((jar, user)) if user.must_change_password => (jar, Redirect::to("/account")).into_response(),
        Ok((jar, _)) => (jar, Redirect::to("/dashboard")).into_response(),
        Err(ApiError::Internal(e)) => ApiError::Internal(e).into_response(),
        Err(e) => {
            let status = e.status();
            account_form(state, jar, register, email, Some((status, e.to_string())))
        }
    }
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage {
    csrf: String,
}

async fn logout_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (jar, csrf) = csrf::token(jar, state.settings.cookie_secure);
    (jar, page(StatusCode::OK, &LogoutPage { csrf })).into_response()
}

async fn logout_form(State(state): State<AppState>, jar: CookieJar) -> Result<Response, ApiError> {
    let jar = session::end(&state, jar).await?;
    Ok((jar, Redirect::to("/login")).into_response())
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    frame: Frame,
}

async fn dashboard(State(state): State<AppState>, PageUser(user): PageUser, jar: CookieJar) -> Response {
    let (jar, frame) = Frame::new(&state, jar, &user, "devices");
    (jar, page(StatusCode::OK, &Dashboard { frame })).into_response()
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    frame: Frame,
    since: String,
    /// Days messages are kept, or empty for "keep everything".
    keep_days: String,
    /// Days received files are kept, or empty for "as long as their messages".
    keep_media_days: String,
    password: Notice,
    retention: Notice,
    /// An administrator set a temporary password: say that it must be changed first.
    must_change: bool,
}

/// What became of one of the account page's forms: nothing, done (a message) or refused (why).
#[derive(Default)]
struct Notice {
    done: Option<String>,
    error: Option<String>,
}

impl Notice {
    fn of(outcome: Result<String, String>) -> Notice {
        match outcome {
            Ok(done) => Notice {
                done: Some(done),
                error: None,
            },
            Err(error) => Notice {
                done: None,
                error: Some(error),
            },
        }
    }
}

/// Which of the account page's forms was sent, and what became of it.
enum AccountAction {
    None,
    Password(Result<String, String>),
    Retention(Result<String, String>),
}

async fn account_view(
    state: &AppState,
    jar: CookieJar,
    user: &User,
    status: StatusCode,
    form: AccountAction,
) -> Response {
    let (keep_days, keep_media_days) = match state.db.retention_days(user.id).await {
        Ok(days) => {
            let shown = |d: Option<i64>| d.map(|d| d.to_string()).unwrap_or_default();
            (shown(days.messages), shown(days.media))
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (jar, frame) = Frame::new(state, jar, user, "account");
    let (password, retention) = match form {
        AccountAction::None => (Notice::default(), Notice::default()),
        AccountAction::Password(outcome) => (Notice::of(outcome), Notice::default()),
        AccountAction::Retention(outcome) => (Notice::default(), Notice::of(outcome)),
    };
    let view = AccountPage {
        frame,
        since: user.created_at.to_datetime().format("%Y-%m-%d").to_string(),
        keep_days,
        keep_media_days,
        password,
        retention,
        must_change: user.must_change_password,
    };
    (jar, page(status, &view)).into_response()
}

async fn account_page(State(state): State<AppState>, PageUser(user): PageUser, jar: CookieJar) -> Response {
    account_view(&state, jar, &user, StatusCode::OK, AccountAction::None).await
}

/// The account page's retention form: numbers of days, or empty to keep everything.
#[derive(Deserialize)]
struct RetentionForm {
    keep_messages_days: String,
    #[serde(default)]
    keep_media_days: String,
}

/// A number of days from the form's `field` (`raw`), or `None` when empty.
fn form_days(field: &str, raw: &str) -> Result<Option<i64>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>().map(Some).map_err(|_| {
        ApiError::Invalid(format!(
            "{field}: `{raw}` is not a number of days; give 1 to {MAX_KEEP_DAYS}, or leave it empty to keep everything"
        ))
    })
}

async fn retention_form_post(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    jar: CookieJar,
    Form(form): Form<RetentionForm>,
) -> Response {
    let days = form_days("keep_messages_days", &form.keep_messages_days).and_then(|messages| {
        let media = form_days("keep_media_days", &form.keep_media_days)?;
        Ok(RetentionDays { messages, media })
    });
    let saved = match days {
        Ok(days) => retention::set(&state, user.id, days).await.map(|()| days),
        Err(e) => Err(e),
    };
    match saved {
        Ok(days) => {
            let plural = |n: i64| {
                if n == 1 {
                    "1 day".to_owned()
                } else {
                    format!("{n} days")
                }
            };
            let mut done = match days.messages {
                None => "Every message is kept.".to_owned(),
                Some(n) => format!(
                    "Messages are kept {}; older ones are deleted within ten minutes.",
                    plural(n)
                ),
            };
            if let Some(n) = days.media {
                done.push_str(&format!(" Received files are kept {}.", plural(n)));
            }
            account_view(&state, jar, &user, StatusCode::OK, AccountAction::Retention(Ok(done))).await
        }
        Err(ApiError::Internal(e)) => ApiError::Internal(e).into_response(),
        Err(e) => {
            let status = e.status();
            account_view(&state, jar, &user, status, AccountAction::Retention(Err(e.to_string()))).await
        }
    }
}

async fn account_form_post(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    ip: ClientIp,
    jar: CookieJar,
    Form(change): Form<PasswordChange>,
) -> Response {
    let keep = session::cookie_digest(&jar);
    match accounts::change_password(&state, &user, &change, ip, keep.as_deref()).await {
        Ok(ended) => {
            let done = match ended {
                0 => "Password changed.".to_owned(),
                1 => "Password changed; 1 other session was logged out.".to_owned(),
                n => format!("Password changed; {n} other sessions were logged out."),
            };
            let user = User {
                must_change_password: false,
                ..user
            };
            account_view(&state, jar, &user, StatusCode::OK, AccountAction::Password(Ok(done))).await
        }
        Err(ApiError::Internal(e)) => ApiError::Internal(e).into_response(),
        Err(e) => {
            let status = e.status();
            account_view(&state, jar, &user, status, AccountAction::Password(Err(e.to_string()))).await
        }
    }
}
