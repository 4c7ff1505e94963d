//! Instants, stored as UTC milliseconds since the Unix epoch in both dialects.

use chrono::{DateTime, SecondsFormat, Utc};

/// A UTC instant with millisecond precision. Stored as `BIGINT` so that SQLite and PostgreSQL
/// compare and index it the same way; shown as RFC 3339 in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, utoipa::ToSchema)]
#[sqlx(transparent)]
#[schema(value_type = String, format = DateTime, example = "2026-01-01T00:00:00.000Z")]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current instant.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `secs` seconds (negative moves back).
    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// This instant moved by `millis` milliseconds (negative moves back).
    pub fn plus_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_add(millis))
    }

    /// As a `chrono` value.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|e| {
                serde::de::Error::custom(format!("expected an RFC 3339 time such as 2026-01-01T09:00:00Z: {e}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_is_rfc3339_utc() {
        let t = Timestamp(1_767_225_600_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-01-01T00:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let offset: Timestamp = serde_json::from_str("\"2026-01-01T08:00:00.123+08:00\"").unwrap();
        assert_eq!(offset, t, "offsets are normalised to UTC");
    }
}
