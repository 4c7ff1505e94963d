//! The tools agents call, each with the scope it needs. Thin: arguments in, the shared read or
//! write path ([`super::reads`], [`super::writes`]) out, answered through [`super::reply`].

use rmcp::handler::server::common::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use wafleet_core::db::Caller;
use wafleet_core::types::Scope;

use super::Fleet;
use super::args::*;
use super::reply::{ToolReply, reply};
use super::{reads, writes};

/// Every tool and the scope a token needs to see and call it.
pub(crate) const TOOL_SCOPES: &[(&str, Scope)] = &[
    ("list_devices", Scope::Read),
    ("list_chats", Scope::Read),
    ("read_chat", Scope::Read),
    ("check_numbers", Scope::Read),
    ("send_status", Scope::Read),
    ("find_leads", Scope::Read),
    ("get_lead", Scope::Read),
    ("list_campaigns", Scope::Read),
    ("campaign_report", Scope::Read),
    ("get_analytics", Scope::Read),
    ("send_text", Scope::Send),
    ("send_image", Scope::Send),
    ("create_lead", Scope::Manage),
    ("update_lead", Scope::Manage),
    ("create_campaign_draft", Scope::Manage),
];

#[tool_router(vis = "pub(super)")]
impl Fleet {
    /// Your devices (WhatsApp numbers) with their status: only `online` ones send and check.
    #[tool(annotations(read_only_hint = true))]
    async fn list_devices(&self, Extension(caller): Extension<Caller>) -> ToolReply {
        reply(reads::devices(&self.state, &caller).await)
    }

    /// A device's personal chats, most recent first, with search; page with `next_cursor`.
    #[tool(annotations(read_only_hint = true))]
    async fn list_chats(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<ListChats>,
    ) -> ToolReply {
        reply(reads::chats(&self.state, &caller, args).await)
    }

    /// A chat's messages, newest first (`from_me` marks the device's own, with their ticks);
    /// page back to older ones with `next_before`.
    #[tool(annotations(read_only_hint = true))]
    async fn read_chat(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<ReadChat>,
    ) -> ToolReply {
        reply(reads::messages(&self.state, &caller, args).await)
    }

    /// Which numbers are on WhatsApp, asked through an online device. Invalid numbers are
    /// answered as invalid with the reason.
    #[tool(annotations(read_only_hint = true))]
    async fn check_numbers(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<CheckNumbers>,
    ) -> ToolReply {
        reply(reads::check(&self.state, &caller, args).await)
    }

    /// Where a send stands: queued (with why it waits), sent, delivered, read, or failed with
    /// the reason.
    #[tool(annotations(read_only_hint = true))]
    async fn send_status(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<SendStatus>,
    ) -> ToolReply {
        reply(reads::send_status(&self.state, &caller, args).await)
    }

    /// Search a device's leads (contacts) by text, status, niche or journey, newest first.
    #[tool(annotations(read_only_hint = true))]
    async fn find_leads(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<FindLeads>,
    ) -> ToolReply {
        reply(reads::leads(&self.state, &caller, args).await)
    }

    /// One lead with its status, niche, journey and notes.
    #[tool(annotations(read_only_hint = true))]
    async fn get_lead(&self, Extension(caller): Extension<Caller>, Parameters(args): Parameters<LeadRef>) -> ToolReply {
        reply(reads::lead(&self.state, &caller, args).await)
    }

    /// Your campaigns of a year, by send time, with their status.
    #[tool(annotations(read_only_hint = true))]
    async fn list_campaigns(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<ListCampaigns>,
    ) -> ToolReply {
        reply(reads::campaigns(&self.state, &caller, args).await)
    }

    /// A campaign's report: recipients queued, sent, delivered, read, replied and failed, with
    /// percentages, in all and per device.
    #[tool(annotations(read_only_hint = true))]
    async fn campaign_report(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<CampaignRef>,
    ) -> ToolReply {
        reply(reads::report(&self.state, &caller, args).await)
    }

    /// What became of your sends over a range of days (sent, delivered, read, replied, failed,
    /// with percentages and a per-day series), for all devices or one.
    #[tool(annotations(read_only_hint = true))]
    async fn get_analytics(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<AnalyticsRange>,
    ) -> ToolReply {
        reply(reads::analytics(&self.state, &caller, args).await)
    }

    /// Send a text from a device, paced like every send of the device. Answers the send's id
    /// at once (follow it with send_status); a retry with the same idempotency_key sends once.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn send_text(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<SendText>,
    ) -> ToolReply {
        let send = writes::Send {
            device_id: args.device_id,
            to: args.to,
            text: Some(args.text),
            image_base64: None,
            idempotency_key: args.idempotency_key,
        };
        reply(writes::send(&self.state, &caller, send).await)
    }

    /// Send an image (with an optional caption) from a device, paced like every send of the
    /// device. A retry with the same idempotency_key sends once.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn send_image(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<SendImage>,
    ) -> ToolReply {
        let send = writes::Send {
            device_id: args.device_id,
            to: args.to,
            text: args.caption,
            image_base64: Some(args.image_base64),
            idempotency_key: args.idempotency_key,
        };
        reply(writes::send(&self.state, &caller, send).await)
    }

    /// Add a lead (contact) to a device; one lead per number per device.
    #[tool(annotations(read_only_hint = false, destructive_hint = false))]
    async fn create_lead(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<CreateLead>,
    ) -> ToolReply {
        reply(writes::create_lead(&self.state, &caller, args).await)
    }

    /// Change a lead: its status after a conversation, notes, labels, name or number.
    #[tool(annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true))]
    async fn update_lead(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<UpdateLead>,
    ) -> ToolReply {
        reply(writes::update_lead(&self.state, &caller, args).await)
    }

    /// Plan a campaign as a draft (each device to its own leads, or one pool dealt over the
    /// devices with an optional cap per device): nothing is sent until a person confirms it on
    /// the dashboard.
    #[tool(annotations(read_only_hint = false, destructive_hint = false))]
    async fn create_campaign_draft(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<CreateCampaignDraft>,
    ) -> ToolReply {
        reply(writes::create_campaign_draft(&self.state, &caller, args).await)
    }
}
