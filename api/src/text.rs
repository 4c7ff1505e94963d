//! Text from clients holds no NUL characters (`\0`): SQLite would store them and PostgreSQL's text
//! type refuses them (a 500 for one backend, poisoned data for the other). One check, here, is used
//! by every way text comes in: the URI ([`refuse_nul_in_uri`]), JSON and form bodies (the
//! extractors of [`crate::extract`]), multipart fields and CSV cells.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// What is wrong with text holding a NUL character; messages put the field's name before it.
pub(crate) const NUL_REFUSED: &str = "must not contain NUL characters (\\u0000): remove them";

/// Refuses (422) `text` of the field `field` if it holds a NUL character.
pub(crate) fn refuse_nul(field: &str, text: &str) -> ApiResult<()> {
    if text.contains('\0') {
        return Err(ApiError::Invalid(format!("{field}: {NUL_REFUSED}")));
    }
    Ok(())
}

/// Refuses (422) a JSON document with a NUL character in any string or key, naming where.
pub(crate) fn refuse_nul_in_json(value: &Value) -> ApiResult<()> {
    match nul_path(value) {
        None => Ok(()),
        Some(path) if path.is_empty() => Err(ApiError::Invalid(format!("body: {NUL_REFUSED}"))),
        Some(path) => Err(ApiError::Invalid(format!("{path}: {NUL_REFUSED}"))),
    }
}

/// The path (`recipients[2].name`) of the first string or key holding a NUL character.
fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item).map(|rest| format!("[{i}]{}", dotted(&rest)))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(key.replace('\0', "\\u0000"));
            }
            nul_path(item).map(|rest| format!("{key}{}", dotted(&rest)))
        }),
        _ => None,
    }
}

/// `rest` as the tail of a path: `.name`, `[1]`, or nothing.
fn dotted(rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('[') {
        rest.to_owned()
    } else {
        format!(".{rest}")
    }
}

/// Middleware refusing (422) a request whose path or query carries an encoded NUL (`%00`).
/// In a valid URI `%` always starts an escape, so `%00` is exactly an encoded NUL.
pub(crate) async fn refuse_nul_in_uri(request: Request, next: Next) -> Result<Response, ApiError> {
    let uri = request.uri();
    if uri.path().contains("%00") {
        return Err(ApiError::Invalid(format!("path: {NUL_REFUSED}")));
    }
    if let Some(query) = uri.query().filter(|q| q.contains("%00")) {
        let key = form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map_or_else(|| "query".to_owned(), |(k, _)| k.replace('\0', "\\u0000"));
        return Err(ApiError::Invalid(format!("{key}: {NUL_REFUSED}")));
    }
    Ok(next.run(request).await)
}

/// `text` cut to `max` characters with an ellipsis, for one-line summaries and logs.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(value: Value) -> Option<String> {
        refuse_nul_in_json(&value).err().map(|e| e.to_string())
    }

    #[test]
    fn nul_characters_are_found_anywhere_and_named() {
        assert_eq!(refused(json!({"name": "ok", "tags": ["a", "b"]})), None);
        assert_eq!(
            refused(json!({"name": "a\u{0}b"})).unwrap(),
            format!("name: {NUL_REFUSED}")
        );
        assert_eq!(
            refused(json!({"recipients": [{"name": "x"}, {"name": "\u{0}"}]})).unwrap(),
            format!("recipients[1].name: {NUL_REFUSED}")
        );
        assert_eq!(refused(json!([["\u{0}"]])).unwrap(), format!("[0][0]: {NUL_REFUSED}"));
        assert_eq!(refused(json!("\u{0}")).unwrap(), format!("body: {NUL_REFUSED}"));
        assert!(refused(json!({"k\u{0}": 1})).unwrap().starts_with("k\\u0000:"));
        assert!(refuse_nul("caption", "fine").is_ok());
        assert!(refuse_nul("caption", "bad\0").is_err());
    }
}
