"""Drives wafleet's MCP endpoint with the official Python SDK (`mcp` on PyPI), for the Rust tests.

Reads a JSON script on stdin: {"url", "token", "steps": [...]}, connects over streamable HTTP
with the token as bearer, initializes, runs each step in order and prints one JSON document:
{"server": {...}, "results": [...]}, one result per step. A step is one of
  {"op": "list_tools"}                                   -> {"tools": [{"name", "description", "input_schema"}]}
  {"op": "call", "tool": NAME, "arguments": {...}}       -> {"is_error": bool, "text": str}
  {"op": "list_resource_templates"}                      -> {"templates": [uri_template, ...]}
  {"op": "read_resource", "uri": URI}                    -> {"text": str}
  {"op": "list_prompts"}                                 -> {"prompts": [name, ...]}
  {"op": "get_prompt", "name": NAME, "arguments": {...}} -> {"text": str}
A protocol error (the server refused the request) is answered as {"error": message} and the
script goes on; failing to connect or initialize exits non-zero with the reason on stderr.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def step(session, op):
    kind = op["op"]
    if kind == "list_tools":
        listed = await session.list_tools()
        return {
            "tools": [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in listed.tools
            ]
        }
    if kind == "call":
        result = await session.call_tool(op["tool"], op.get("arguments") or {})
        text = "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")
        return {"is_error": bool(result.is_error), "text": text}
    if kind == "list_resource_templates":
        listed = await session.list_resource_templates()
        return {"templates": [t.uri_template for t in listed.resource_templates]}
    if kind == "read_resource":
        result = await session.read_resource(op["uri"])
        return {"text": "\n".join(getattr(c, "text", "") for c in result.contents)}
    if kind == "list_prompts":
        listed = await session.list_prompts()
        return {"prompts": [p.name for p in listed.prompts]}
    if kind == "get_prompt":
        result = await session.get_prompt(op["name"], {k: str(v) for k, v in (op.get("arguments") or {}).items()})
        return {"text": "\n".join(m.content.text for m in result.messages)}
    raise ValueError(f"unknown step {kind!r}")


async def main():
    script = json.load(sys.stdin)
    headers = {"Authorization": f"Bearer {script['token']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        async with streamable_http_client(script["url"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out = {
                    "server": {
                        "name": init.server_info.name,
                        "protocol_version": str(init.protocol_version),
                        "instructions": init.instructions,
                    },
                    "results": [],
                }
                for op in script["steps"]:
                    try:
                        out["results"].append(await step(session, op))
                    except MCPError as err:
                        out["results"].append({"error": str(err)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
