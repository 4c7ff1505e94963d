//! The Model Context Protocol server at `/mcp`: the fleet for AI agents.
//!
//! Streamable HTTP through the official SDK (`rmcp`) in stateless mode: no MCP session lives in
//! this process, every request carries the caller's API token and is answered on its own, so any
//! number of API replicas serve it behind a load balancer. The token's user bounds what a tool
//! reaches (another user's device or lead is "not found", as on the REST API) and its scopes
//! which tools are listed and allowed (see [`calls`]). Tools reuse the REST API's paths: sends go
//! through [`crate::sends::accept`] (recorded under the caller's idempotency key, paced by the
//! device), so an agent retrying a call sends once. Every tool call is logged (`mcp_calls`).

mod activity;
mod args;
mod auth;
mod calls;
mod prompts;
mod reads;
mod reply;
mod resources;
mod tools;
mod writes;

use std::sync::Arc;

use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::AppState;

pub(crate) use activity::router as api_router;

/// What agents are told about this server when they connect.
const INSTRUCTIONS: &str = "wafleet runs a fleet of WhatsApp numbers (devices). Start with \
list_devices; every other tool takes a device_id from it. Sends need an idempotency_key: reuse \
the same key when you retry a send, and it is sent once. Campaigns are created as drafts that a \
person confirms on the dashboard. Phone numbers may be international (+60123456789) or national \
in the server's default country.";

/// The `/mcp` route: authentication by API token, then the MCP service.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        // Stateless: nothing of a client is kept between requests, so replicas stay interchangeable.
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // Every request must carry an API token, which a page rebinding a host name to us cannot
        // supply; the allow-list of loopback host names only fits servers without authentication.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(state.settings.max_body_bytes);
    let fleet_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(Fleet::new(fleet_state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(state, auth::authenticate))
}

/// The tools as the Markdown table of the docs: name, scope, description (`wafleet mcp-tools`).
pub fn tool_table() -> String {
    let mut table = String::from("| Tool | Scope | What it does |\n|---|---|---|\n");
    for tool in Fleet::tool_router().list_all() {
        let scope = calls::scope_of(&tool.name).map_or("?", |s| s.as_str());
        let description = tool.description.as_deref().unwrap_or_default().replace('\n', " ");
        table.push_str(&format!("| `{}` | {scope} | {description} |\n", tool.name));
    }
    table
}

/// The MCP server of one request: the application's state and the tool router.
#[derive(Clone)]
pub(crate) struct Fleet {
    /// Database, settings, queues.
    state: AppState,
    /// The tools, with their schemas.
    tools: ToolRouter<Fleet>,
}

impl Fleet {
    fn new(state: AppState) -> Self {
        Fleet {
            state,
            tools: Self::tool_router(),
        }
    }
}

impl ServerHandler for Fleet {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new("wafleet", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = calls::caller(&context)?;
        Ok(ListToolsResult::with_all_items(calls::allowed_tools(
            &self.tools,
            &caller,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        calls::call(self, &self.tools, request, context).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        // Chats and leads are many: they are reached through the templates, not listed.
        Ok(ListResourcesResult::with_all_items(Vec::new()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = calls::caller(&context)?;
        calls::require_read(&caller)?;
        resources::read(&self.state, &caller, &request.uri)
            .await
            .map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(prompts::list()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let caller = calls::caller(&context)?;
        calls::require_read(&caller)?;
        prompts::get(&self.state, &caller, &request.name, request.arguments.as_ref())
            .await
            .map(Into::into)
    }
}
