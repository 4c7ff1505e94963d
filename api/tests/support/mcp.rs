//! A real MCP client for the tests: the official Python SDK (`mcp` on PyPI, pinned below) driven
//! by `mcp_client.py`, in a virtualenv made on first use (`WAFLEET_MCP_VENV`, by default under
//! ~/.cache/wafleet). Without python3 and its venv module the tests fail saying so: they never
//! skip.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The pinned client: `mcp` on PyPI.
pub const MCP_PYTHON_VERSION: &str = "2.3.0";

/// The driver script (see its docstring for the steps it takes).
const DRIVER: &str = include_str!("mcp_client.py");

/// The virtualenv's python with the client installed, made once per test process.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(install).clone()
}

fn install() -> PathBuf {
    wafleet_core::testing::python::virtualenv(
        &format!("mcp-{MCP_PYTHON_VERSION}"),
        "WAFLEET_MCP_VENV",
        &format!("mcp=={MCP_PYTHON_VERSION}"),
        "mcp, httpx2",
    )
}

/// Connects to `base`/mcp with `token`, initializes, runs `steps` and answers the driver's
/// document: `{"server": {...}, "results": [one per step]}`.
pub async fn run(base: &str, token: &str, steps: Value) -> Value {
    let script = json!({"url": format!("{base}/mcp"), "token": token, "steps": steps}).to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(python())
            .args(["-c", DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the MCP client");
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "the MCP client failed: {stderr}");
        serde_json::from_slice::<Value>(&output.stdout)
            .unwrap_or_else(|e| panic!("the MCP client printed no JSON ({e}): {stderr}"))
    })
    .await
    .unwrap()
}

/// One step's result of [`run`].
#[allow(dead_code)] // The end-to-end tests run whole scripts only.
pub async fn one(base: &str, token: &str, step: Value) -> Value {
    run(base, token, json!([step])).await["results"][0].clone()
}

/// A `call` step.
pub fn call(tool: &str, arguments: Value) -> Value {
    json!({"op": "call", "tool": tool, "arguments": arguments})
}

/// The names of the tools a `list_tools` result lists, sorted.
pub fn tool_names(listed: &Value) -> Vec<String> {
    let mut names: Vec<String> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tool list: {listed}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A successful `call` result's text as JSON; panics with the error otherwise.
pub fn ok_json(result: &Value) -> Value {
    assert_eq!(result["is_error"], false, "tool failed: {result}");
    serde_json::from_str(result["text"].as_str().unwrap()).unwrap_or_else(|e| panic!("not JSON ({e}): {result}"))
}

/// Asserts that a `call` result is a tool error containing `needle`.
pub fn assert_tool_error(result: &Value, needle: &str) {
    assert_eq!(result["is_error"], true, "expected a tool error: {result}");
    let text = result["text"].as_str().unwrap_or_default();
    assert!(text.contains(needle), "{text:?} should contain {needle:?}");
}
