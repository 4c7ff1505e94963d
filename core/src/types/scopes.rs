//! What an API token may do: read, send, manage. Stored comma-separated, shown as a list.

use std::fmt;

use super::text_enum::text_enum;

text_enum! {
    /// One permission of an API token.
    #[derive(
        Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
    )]
    pub enum Scope ("scope") {
        /// See devices, chats, messages, leads, campaigns and analytics; check numbers.
        Read = "read",
        /// Send messages (single sends, test sends, broadcasts).
        Send = "send",
        /// Change things: devices, leads, campaigns (as drafts over MCP), webhooks, tokens.
        Manage = "manage",
    }
}

impl Scope {
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of scopes. Serialised as a list of names (`["read", "send"]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// All three: what every token could do before scopes existed.
    pub fn all() -> Scopes {
        Scopes::from_iter(Scope::ALL)
    }

    /// Whether `scope` is in the set.
    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether every scope of `other` is in this set.
    pub fn covers(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.has(*s))
    }

    /// Parses the stored form (`read,send`); unknown names are an error.
    pub fn parse(raw: &str) -> Result<Scopes, String> {
        raw.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse::<Scope>)
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Display for Scopes {
    /// The stored form: names joined by commas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl TryFrom<String> for Scopes {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Scopes::parse(&raw)
    }
}

impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Scope>::deserialize(deserializer)?.into_iter().collect())
    }
}

impl utoipa::PartialSchema for Scopes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "Scope",
            )))
            .unique_items(true)
            .description(Some("Scopes of an API token: `read`, `send`, `manage`."))
            .into()
    }
}

impl utoipa::ToSchema for Scopes {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push(("Scope".into(), <Scope as utoipa::PartialSchema>::schema()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_unknown_names_are_refused() {
        let scopes = Scopes::parse("send, read").unwrap();
        assert_eq!(scopes.to_string(), "read,send");
        assert!(scopes.has(Scope::Read) && !scopes.has(Scope::Manage));
        assert_eq!(Scopes::parse(&Scopes::all().to_string()).unwrap(), Scopes::all());
        assert!(Scopes::parse("read,admin").unwrap_err().contains("admin"));
        assert!(Scopes::all().covers(scopes) && !scopes.covers(Scopes::all()));
        assert_eq!(serde_json::to_string(&scopes).unwrap(), r#"["read","send"]"#);
    }
}
