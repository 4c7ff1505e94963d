//! Typed row ids, so a device id can never be passed where a user id is expected.

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[derive(serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Id of a user account.
    UserId
);
id_type!(
    /// Id of a device (one linked WhatsApp number). Devices are always referenced by id, never by name.
    DeviceId
);
id_type!(
    /// Id of an API token.
    ApiTokenId
);
id_type!(
    /// Id of a lead (a contact kept for one device).
    LeadId
);
id_type!(
    /// Id of a campaign.
    CampaignId
);
id_type!(
    /// Id of a message template.
    TemplateId
);
id_type!(
    /// Id of a follow-up sequence.
    SequenceId
);
