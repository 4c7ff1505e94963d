//! Media a client names by URL instead of uploading it (`image_url` on `POST /send/image`),
//! fetched as carefully as a webhook is delivered: http or https only; public addresses only
//! (or hosts `WEBHOOK_ALLOWED_HOSTS` lists), checked for an address written in the URL or a
//! redirect's, and at every connection for names (so a name that resolves inside gets nowhere);
//! no proxy; at most three redirects; at most `MAX_MEDIA_BYTES`, counted as the body arrives;
//! and an answer within [`FETCH_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use wafleet_core::egress::{GuardedResolver, Refused, is_refusal, literal_refusal};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The longest a fetch may take, from connecting to the last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed, at most.
const MAX_REDIRECTS: usize = 3;

/// The bytes at `raw`, the URL the client gave in the field `field`. Refusals name the field and
/// say what to fix (422, which the compatible routes answer with 400); a body over the media
/// limit is 413.
pub(crate) async fn fetch(state: &AppState, field: &str, raw: &str) -> ApiResult<Vec<u8>> {
    let limit = state.settings.max_media_bytes;
    let allowed = state.settings.webhook_allowed_hosts.clone();
    let bad = |why: String| ApiError::Invalid(format!("{field}: {why}"));
    let refused = || {
        bad(
            "its host is not a public address; media are fetched from public addresses only \
             (an operator can allow internal hosts with WEBHOOK_ALLOWED_HOSTS)"
                .into(),
        )
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "`{}` URLs are not fetched; give an http or https URL",
            url.scheme()
        )));
    }
    if literal_refusal(url.as_str(), &allowed).is_some() {
        return Err(refused());
    }
    let redirects = allowed.clone();
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        // A redirect to an address written in its URL never reaches the resolver: judged here.
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if literal_refusal(attempt.url().as_str(), &redirects).is_some() {
                attempt.error(Refused)
            } else {
                attempt.follow()
            }
        }))
        .dns_resolver(Arc::new(GuardedResolver::new(allowed)))
        .no_proxy()
        .user_agent(concat!("wafleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ApiError::Internal(e.into()))?;
    let failed = |err: reqwest::Error| {
        if is_refusal(&err) {
            refused()
        } else if err.is_timeout() {
            bad(format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))
        } else {
            bad(format!("could not be fetched ({err})"))
        }
    };
    let mut response = client.get(url).send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(bad(format!("the server answered {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
