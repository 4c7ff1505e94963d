//! Enums stored and shown as fixed texts (statuses, kinds, scopes): one definition of each
//! value's text, from which its `as_str`, `Display`, `FromStr`, serde names and sqlx encoding on
//! both backends all follow, so the database, JSON and messages can never disagree.

/// Defines an enum whose values are fixed texts: `Variant = "text"` for each value.
///
/// Besides the enum (with the given attributes and a `#[serde(rename = "text")]` on each value,
/// so the enum must derive `Serialize` and/or `Deserialize`), it generates:
/// - `ALL`, every value in the order declared, and `as_str`, the value's text;
/// - `Display` (the text) and `FromStr`, which takes the text in any case with surrounding spaces
///   and otherwise answers "unknown {noun} `x`: use one of …"; `TryFrom<String>` through it;
/// - `sqlx::Type`, `Encode` and `Decode` on every backend, as the text (a `TEXT` column).
macro_rules! text_enum {
    // `$text:tt`, not `:literal`: a captured literal reaches derives wrapped in an invisible
    // group, which utoipa does not read as a string, so the OpenAPI document would name the
    // values by their Rust names.
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($noun:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:tt, )+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in the order declared (the order they are listed in).
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The value's text, as stored, serialised and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            /// Takes the text in any case, with surrounding spaces.
            fn from_str(input: &str) -> Result<Self, Self::Err> {
                $crate::types::text_enum::parse(input, $noun, &Self::ALL, |value| value.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'static str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'static str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&'r str as sqlx::Decode<'r, DB>>::decode(value)?.parse::<$name>()?)
            }
        }
    };
}

pub(crate) use text_enum;

/// The value of `all` whose text is `input` (in any case, with surrounding spaces), or a message
/// naming the texts there are. The one parser behind every [`text_enum!`]'s `FromStr`.
pub(crate) fn parse<T: Copy>(
    input: &str,
    noun: &str,
    all: &[T],
    text: impl Fn(T) -> &'static str,
) -> Result<T, String> {
    let wanted = input.trim();
    all.iter()
        .copied()
        .find(|value| text(*value).eq_ignore_ascii_case(wanted))
        .ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|value| text(*value)).collect();
            format!("unknown {noun} `{wanted}`: use one of {}", known.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use crate::db::{ActivityKind, CampaignStatus, DeliveryStatus, Desired, DeviceStatus, LeadStatus, OutboundStatus};
    use crate::types::Scope;

    /// Each value's text is its serde name, its `Display` and what `FromStr` takes back.
    fn same_everywhere<T>(all: &[T], text: impl Fn(T) -> &'static str)
    where
        T: Copy + std::fmt::Debug + PartialEq + serde::Serialize + std::fmt::Display + std::str::FromStr,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for value in all.iter().copied() {
            let name = text(value);
            assert_eq!(serde_json::to_value(value).unwrap(), serde_json::json!(name));
            assert_eq!(value.to_string(), name);
            assert_eq!(name.parse::<T>().unwrap(), value);
            assert_eq!(format!(" {} ", name.to_ascii_uppercase()).parse::<T>().unwrap(), value);
        }
    }

    #[test]
    fn texts_are_the_stored_and_serialised_names() {
        same_everywhere(&DeviceStatus::ALL, DeviceStatus::as_str);
        same_everywhere(&Desired::ALL, Desired::as_str);
        same_everywhere(&OutboundStatus::ALL, OutboundStatus::as_str);
        same_everywhere(&LeadStatus::ALL, LeadStatus::as_str);
        same_everywhere(&CampaignStatus::ALL, CampaignStatus::as_str);
        same_everywhere(&DeliveryStatus::ALL, DeliveryStatus::as_str);
        same_everywhere(&ActivityKind::ALL, ActivityKind::as_str);
        same_everywhere(&Scope::ALL, Scope::as_str);
    }

    #[test]
    fn the_stored_texts_do_not_change() {
        // The database holds these: a change here needs a migration.
        let texts = |all: &[&str]| all.join(",");
        assert_eq!(
            texts(&DeviceStatus::ALL.map(DeviceStatus::as_str)),
            "offline,pairing,connecting,online,logged_out,banned"
        );
        assert_eq!(
            texts(&Desired::ALL.map(Desired::as_str)),
            "unlinked,pair_qr,pair_code,connected"
        );
        assert_eq!(
            texts(&OutboundStatus::ALL.map(OutboundStatus::as_str)),
            "queued,sending,sent,delivered,read,failed"
        );
        assert_eq!(
            texts(&LeadStatus::ALL.map(LeadStatus::as_str)),
            "new,contacted,replied,interested,converted,lost"
        );
        assert_eq!(
            texts(&CampaignStatus::ALL.map(CampaignStatus::as_str)),
            "draft,scheduled,running,paused,finished,cancelled"
        );
        assert_eq!(
            texts(&DeliveryStatus::ALL.map(DeliveryStatus::as_str)),
            "pending,delivered,dead"
        );
        assert_eq!(
            texts(&ActivityKind::ALL.map(ActivityKind::as_str)),
            "test_send,check_numbers,broadcast"
        );
        assert_eq!(texts(&Scope::ALL.map(Scope::as_str)), "read,send,manage");
    }

    #[test]
    fn unknown_texts_name_the_known_ones() {
        assert_eq!(
            "hot".parse::<LeadStatus>().unwrap_err(),
            "unknown status `hot`: use one of new, contacted, replied, interested, converted, lost"
        );
    }
}
