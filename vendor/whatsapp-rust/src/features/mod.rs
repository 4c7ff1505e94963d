mod blocking;
pub(crate) mod chat_actions;
mod chatstate;
mod comments;
mod community;
mod contacts;
mod events;
mod groups;
pub(crate) mod labels;
mod media_reupload;
pub mod message_edit;
mod mex;
pub(crate) mod newsletter;
mod polls;
mod presence;
mod profile;
mod reaction;
mod rotate_key;
mod signal;
mod stanza;
pub(crate) mod status;
mod tctoken;

pub use blocking::{Blocking, BlockingError, BlocklistEntry};

pub use chat_actions::{
    AppStateError, ChatActions, SyncActionMessageRange, message_key, message_range,
};

pub use community::{
    Community, CommunityError, CommunitySubgroup, CreateCommunityOptions, CreateCommunityResult,
    GroupType, LinkSubgroupsResult, UnlinkSubgroupsResult, group_type,
};

pub use chatstate::{ChatStateError, ChatStateType, Chatstate};

pub use comments::Comments;

pub use contacts::{
    ContactError, Contacts, IsOnWhatsAppResult, ProfilePicture, UserInfo, UsyncSubprotocolError,
    VerifiedName,
};

pub use events::{EventCreationParams, EventResponseType, Events};

pub use groups::{
    BatchGroupResult, CreateGroupResult, GroupAppealStatus, GroupCreateOptions, GroupDescription,
    GroupEphemeralSettings, GroupError, GroupJoinError, GroupMetadata, GroupParticipant,
    GroupParticipantDetails, GroupParticipantOptions, GroupProfilePicture, GroupSubject, Groups,
    GrowthLockInfo, InviteInfoError, JoinGroupResult, MemberAddMode, MemberLinkMode,
    MemberShareHistoryMode, MembershipApprovalMode, MembershipRequest, ParticipantChangeResponse,
    ParticipantType, PictureType, PreviousDescription,
};

pub use labels::Labels;

pub use media_reupload::{
    MediaRetryResult, MediaReupload, MediaReuploadError, MediaReuploadRequest,
};

pub use message_edit::{EncryptedEdit, MessageEditError, SecretEncKind, SecretEncrypted};

pub use mex::{
    Mex, MexError, MexErrorExtensions, MexGraphQLError, MexRequest, MexResponse, ReachoutTimelock,
};

pub use newsletter::{
    Newsletter, NewsletterError, NewsletterMessage, NewsletterMessageType, NewsletterMetadata,
    NewsletterReactionCount, NewsletterRole, NewsletterState, NewsletterVerification,
};

pub use polls::{PollError, PollOptionResult, PollVoteCiphertext, Polls};

pub use presence::{Presence, PresenceError, PresenceStatus};

pub use profile::{Profile, ProfileError, SetProfilePictureResponse};

pub use status::{Status, StatusPrivacySetting, StatusSendOptions};

pub use signal::{Signal, SignalError, SignalSessionInfo, SignalSessionMigration};
pub(crate) use stanza::required_stanza_attr;
pub use stanza::{
    MessageRetransmission, NackReason, RetryReason, RetryRequestError, RetryRequestOptions,
    RetryRequestOutcome, StanzaRejection, StanzaResponseError,
};
pub use wacore::message_processing::EncType;

pub use tctoken::{TcToken, TcTokenError};
