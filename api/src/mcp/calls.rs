//! What every tool call goes through: the caller from the request, the token's scopes (a tool
//! outside them is neither listed nor run), and a line in the caller's MCP activity log.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, Tool};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use wafleet_core::db::{Caller, NewMcpCall, TokenGrant};
use wafleet_core::types::Scope;

use super::Fleet;
use super::tools::TOOL_SCOPES;
use crate::scopes::scope_list;

/// Longest answer kept in the activity log.
const LOGGED_RESULT_CHARS: usize = 500;

/// The caller the authentication middleware resolved for this request.
pub(super) fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .filter(|caller| caller.token.is_some())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request reached MCP without an API token", None))
}

/// The token of a caller [`caller`] returned (it always has one).
pub(super) fn grant(caller: &Caller) -> &TokenGrant {
    caller.token.as_ref().expect("MCP callers come with a token")
}

/// The scope `tool` needs, if it is a tool of ours.
pub(super) fn scope_of(tool: &str) -> Option<Scope> {
    TOOL_SCOPES
        .iter()
        .find(|(name, _)| *name == tool)
        .map(|(_, scope)| *scope)
}

/// The tools the caller's token may use.
pub(super) fn allowed_tools(tools: &ToolRouter<Fleet>, caller: &Caller) -> Vec<Tool> {
    let scopes = grant(caller).scopes;
    tools
        .list_all()
        .into_iter()
        .filter(|tool| scope_of(&tool.name).is_some_and(|scope| scopes.has(scope)))
        .collect()
}

/// Refuses resources and prompts (which show chats and leads) to a token without `read`.
pub(super) fn require_read(caller: &Caller) -> Result<(), ErrorData> {
    let grant = grant(caller);
    if grant.scopes.has(Scope::Read) {
        Ok(())
    } else {
        Err(ErrorData::invalid_request(
            format!("the API token `{}` lacks the `read` scope", grant.name),
            None,
        ))
    }
}

/// Runs a tool call within the token's scopes and logs it, whatever came of it.
pub(super) async fn call(
    fleet: &Fleet,
    tools: &ToolRouter<Fleet>,
    request: CallToolRequestParams,
    mut context: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let caller = caller(&context)?;
    let grant = grant(&caller).clone();
    let tool = request.name.to_string();
    let arguments = logged_arguments(request.arguments.as_ref());
    let answer = match scope_of(&tool) {
        None => Err(ErrorData::invalid_params(
            format!("unknown tool `{tool}`: tools/list shows the tools this token may use"),
            None,
        )),
        Some(scope) if !grant.scopes.has(scope) => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "not allowed: `{tool}` needs the `{}` scope and the API token `{}` has {}; \
             create a token with that scope on the dashboard",
            scope.as_str(),
            grant.name,
            scope_list(grant.scopes)
        ))])
        .into()),
        Some(_) => {
            // Tools take the caller as an `Extension`.
            context.extensions.insert(caller.clone());
            tools.call(ToolCallContext::new(fleet, request, context)).await
        }
    };
    let (ok, result) = match &answer {
        Ok(CallToolResponse::Complete(result)) => (result.is_error != Some(true), text_of(result)),
        Ok(_) => (true, String::new()),
        Err(err) => (false, err.message.to_string()),
    };
    let entry = NewMcpCall {
        user: caller.user.id,
        token: grant.id,
        token_name: grant.name.clone(),
        tool: tool.clone(),
        arguments,
        ok,
        result: crate::text::clip(&result, LOGGED_RESULT_CHARS),
    };
    metrics::counter!(wafleet_core::metrics::MCP_TOOL_CALLS, "ok" => if ok { "true" } else { "false" }).increment(1);
    // The call already happened: a failure to log it is logged, not answered as an error.
    if let Err(err) = fleet.state.db.record_mcp_call(&entry).await {
        tracing::warn!(error = ?err, %tool, "recording an MCP tool call failed");
    }
    answer
}

/// The text a tool answered.
fn text_of(result: &CallToolResult) -> String {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    texts.join("\n")
}

/// The arguments as JSON for the log, with images replaced by their size.
fn logged_arguments(arguments: Option<&JsonObject>) -> String {
    let mut arguments = arguments.cloned().unwrap_or_default();
    for value in arguments.values_mut() {
        if let Some(text) = value.as_str()
            && text.len() > 1024
        {
            *value = serde_json::Value::String(format!("<{} characters>", text.len()));
        }
    }
    serde_json::Value::Object(arguments).to_string()
}
