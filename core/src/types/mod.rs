//! Domain types, parsed once at the edge ("parse, don't validate").

mod device_limit;
mod email;
mod ids;
mod phone;
mod scopes;
pub(crate) mod text_enum;
mod time;

pub use device_limit::DeviceLimit;
pub use email::Email;
pub use ids::{ApiTokenId, CampaignId, DeviceId, LeadId, SequenceId, TemplateId, UserId};
pub use phone::{Country, PhoneError, PhoneNumber};
pub use scopes::{Scope, Scopes};
pub use time::Timestamp;
