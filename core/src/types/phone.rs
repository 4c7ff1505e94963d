//! Phone numbers, parsed with libphonenumber's metadata (the `phonenumber` crate).

use std::str::FromStr;

use phonenumber::{Mode, country};

/// The country assumed for numbers written without an international prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Country(country::Id);

impl FromStr for Country {
    type Err = String;

    /// Accepts an ISO 3166 code (`MY`) or a calling code (`+60`, `60`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let input = input.trim();
        let digits = input.strip_prefix('+').unwrap_or(input);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            let code: u16 = digits.parse().map_err(|_| format!("`{input}` is not a calling code"))?;
            // A calling code can cover several regions (+1); the first is its main country.
            let region = phonenumber::metadata::DATABASE
                .region(&code)
                .and_then(|regions| regions.first().map(|r| r.to_string()))
                .ok_or_else(|| format!("`{input}` is not a known country calling code"))?;
            return country::Id::from_str(&region).map(Country).map_err(|e| e.to_string());
        }
        country::Id::from_str(&input.to_ascii_uppercase())
            .map(Country)
            .map_err(|_| {
                format!("`{input}` is not a country: use an ISO code such as MY or a calling code such as +60")
            })
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a phone number at all.
    #[error("`{0}` is not a phone number")]
    Unparseable(String),
    /// Parsed, but no such number exists in its country's numbering plan.
    #[error("`{0}` is not a valid phone number for its country (use the international form, e.g. +60123456789)")]
    Invalid(String),
}

/// A valid phone number in E.164 form (`+60123456789`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(transparent)]
#[sqlx(transparent)]
#[schema(example = "+60123456789")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses `input` (international form, or national form in `default`'s country).
    pub fn parse(input: &str, default: Country) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        // WhatsApp-style input often omits the `+`: a bare run of digits longer than any national
        // number with a leading calling code is read as international.
        // A number with `+` names its own country. The `phonenumber` crate would still apply the
        // default country's national prefix to it (with US, `+60 12…` loses the `1` after the
        // calling code), so the default applies only to numbers without `+`.
        let region = if trimmed.starts_with('+') {
            None
        } else {
            Some(default.0)
        };
        let parsed = phonenumber::parse(region, trimmed).map_err(|_| PhoneError::Unparseable(trimmed.to_owned()))?;
        let parsed = if parsed.is_valid() {
            parsed
        } else {
            match phonenumber::parse(None, format!("+{trimmed}")) {
                Ok(intl) if trimmed.chars().all(|c| c.is_ascii_digit()) && intl.is_valid() => intl,
                _ => return Err(PhoneError::Invalid(trimmed.to_owned())),
            }
        };
        Ok(PhoneNumber(parsed.format().mode(Mode::E164).to_string()))
    }

    /// The E.164 form, with the leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits alone, as WhatsApp uses them in JIDs.
    pub fn digits(&self) -> &str {
        self.0.trim_start_matches('+')
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;

    /// Parses a number in international form (`+60123456789`); no default country applies.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if !trimmed.starts_with('+') {
            return Err(PhoneError::Invalid(trimmed.to_owned()));
        }
        let parsed = phonenumber::parse(None, trimmed).map_err(|_| PhoneError::Unparseable(trimmed.to_owned()))?;
        if !parsed.is_valid() {
            return Err(PhoneError::Invalid(trimmed.to_owned()));
        }
        Ok(PhoneNumber(parsed.format().mode(Mode::E164).to_string()))
    }
}

impl<'de> serde::Deserialize<'de> for PhoneNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn my() -> Country {
        "MY".parse().unwrap()
    }

    #[test]
    fn national_international_and_bare_digits() {
        assert_eq!(
            PhoneNumber::parse("012-345 6789", my()).unwrap().as_str(),
            "+60123456789"
        );
        assert_eq!(
            PhoneNumber::parse("+60 12-345 6789", my()).unwrap().as_str(),
            "+60123456789"
        );
        assert_eq!(
            PhoneNumber::parse("60123456789", my()).unwrap().as_str(),
            "+60123456789"
        );
        assert_eq!(
            PhoneNumber::parse("+44 20 7946 0958", my()).unwrap().as_str(),
            "+442079460958"
        );
        assert_eq!(
            PhoneNumber::parse("628123456789", my()).unwrap().digits(),
            "628123456789"
        );
    }

    #[test]
    fn international_numbers_ignore_the_default_country() {
        for default in ["US", "MY", "GB", "ID"] {
            let country = default.parse().unwrap();
            assert_eq!(
                PhoneNumber::parse("+60123456789", country).unwrap().as_str(),
                "+60123456789",
                "default {default}"
            );
            assert_eq!(
                PhoneNumber::parse("+1 650-253-0000", country).unwrap().as_str(),
                "+16502530000",
                "default {default}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_impossible_numbers() {
        assert!(matches!(
            PhoneNumber::parse("hello", my()),
            Err(PhoneError::Unparseable(_) | PhoneError::Invalid(_))
        ));
        assert!(PhoneNumber::parse("123", my()).is_err());
        assert!(PhoneNumber::parse("+60 1", my()).is_err());
        assert!(PhoneNumber::parse("", my()).is_err());
    }

    #[test]
    fn country_from_iso_or_calling_code() {
        assert_eq!("+60".parse::<Country>().unwrap(), my());
        assert_eq!("60".parse::<Country>().unwrap(), my());
        assert_eq!("my".parse::<Country>().unwrap(), my());
        assert!("+999".parse::<Country>().is_err());
        assert!("Narnia".parse::<Country>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_output_is_canonical(input in "\\PC{0,40}") {
            if let Ok(phone) = PhoneNumber::parse(&input, my()) {
                proptest::prop_assert!(phone.as_str().starts_with('+'));
                proptest::prop_assert!(phone.digits().chars().all(|c| c.is_ascii_digit()));
                // The E.164 form parses back to itself, whatever the default country.
                let again = PhoneNumber::parse(phone.as_str(), "US".parse().unwrap()).unwrap();
                proptest::prop_assert_eq!(again, phone);
            }
        }

        #[test]
        fn formatted_numbers_normalise_alike(national in "1[0-9]{8}", sep in "[ .-]?") {
            let plain = PhoneNumber::parse(&format!("0{national}"), my());
            let spaced = PhoneNumber::parse(&format!("+60{sep}{}{sep}{}", &national[..2], &national[2..]), my());
            proptest::prop_assert_eq!(plain.ok(), spaced.ok());
        }
    }
}
