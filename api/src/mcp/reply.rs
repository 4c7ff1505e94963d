//! Tool answers: the result as JSON text, or an error the agent can act on (`isError`), worded
//! as the REST API words it. Faults on our side are logged and answered without their details.

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};

/// What a tool answers: `Ok` is shown as the result, `Err` as a tool error.
pub(super) type ToolReply = Result<CallToolResult, CallToolResult>;

/// `result` as a tool answer.
pub(super) fn reply<T: Serialize>(result: ApiResult<T>) -> ToolReply {
    match result {
        Ok(value) => match serde_json::to_string_pretty(&value) {
            Ok(text) => Ok(CallToolResult::success(vec![ContentBlock::text(text)])),
            Err(err) => Err(failure(ApiError::Internal(err.into()))),
        },
        Err(err) => Err(failure(err)),
    }
}

/// An error as a tool error.
pub(super) fn failure(err: ApiError) -> CallToolResult {
    let text = match &err {
        ApiError::Internal(cause) => {
            tracing::error!(error = ?cause, "MCP tool failed");
            "internal error: the server logged the cause; try again later".to_owned()
        }
        ApiError::NotFound(what) => format!("{what} not found (or not yours): list yours with the list tools"),
        other => other.to_string(),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}
