//! Email addresses of accounts.

use std::str::FromStr;

/// A syntactically valid email address, trimmed and lower-cased so that one mailbox is one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Email(String);

impl Email {
    /// Parses and normalises `input`; the error says what is wrong with it.
    pub fn parse(input: &str) -> Result<Self, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err("email is required".into());
        }
        if trimmed.len() > 254 {
            return Err("email is longer than 254 characters".into());
        }
        let parsed = email_address::EmailAddress::from_str(trimmed)
            .map_err(|e| format!("`{trimmed}` is not a valid email address ({e})"))?;
        // The RFC allows dotless domains, but no account here can receive mail at one.
        if !parsed.domain().contains('.') {
            return Err(format!(
                "`{trimmed}` is not a valid email address (the domain has no dot)"
            ));
        }
        Ok(Email(parsed.as_str().to_lowercase()))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(Email::parse("  Ana@Example.COM ").unwrap().as_str(), "ana@example.com");
        for bad in ["", "ana", "ana@", "@example.com", "ana@localhost", "a b@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_is_idempotent(input in "\\PC{0,64}") {
            if let Ok(email) = Email::parse(&input) {
                proptest::prop_assert_eq!(email.as_str(), email.as_str().to_lowercase());
                proptest::prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email);
            }
        }
    }
}
