"""Calling a tool through an MCP client and reading its result or its tool error."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from mcp import Client

# A bare JSON-RPC initialize request, for tests that speak to a server without the client.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


def memoryos_command() -> list[str]:
    """The installed console script (beside this Python, or on PATH)."""
    exe = Path(sys.executable).with_name("memoryos-mcp")
    return [str(exe)] if exe.exists() else [shutil.which("memoryos-mcp") or "memoryos-mcp"]


def server_env() -> dict[str, str]:
    """This environment without the developer's memoryos settings or API key."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
