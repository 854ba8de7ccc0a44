"""Random argument objects at every tool and the prompt, through the in-memory MCP client.

Whatever arrives — wrong types, unknown keys, huge strings, unicode, nested structures, boundary numbers — a call
ends in a result or a clean tool error (one plain sentence), never a protocol error, a crash, a hang, or a change
to another user's memory.
"""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from tests.helpers.contract import (
    CALL_TIMEOUT_S,
    HUGE,
    TEXT,
    VICTIM,
    arguments_for,
    assert_clean,
    victim_memory,
)

# Values a careful caller would send, so that calls also succeed (and write) while the fuzz runs.
# Values that are wrong in some way (or right by accident).


def test_random_arguments_end_in_a_result_or_a_clean_error(server: MCPServer) -> None:
    async def setup() -> tuple[dict[str, dict[str, Any]], tuple[Any, ...]]:
        async with Client(server) as client:
            for i in range(9):  # past short-term capacity, so the victim has mid-term pages too
                await client.call_tool("add_memory", {"user_input": f"my garden note {i}", "user_id": VICTIM})
            tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
            return tools, await victim_memory(client)

    tools, before = anyio.run(setup)
    assert {"add_memory", "retrieve_memory", "get_user_profile", "memory_stats"} <= set(tools)
    calls = st.sampled_from(sorted(tools)).flatmap(
        lambda name: st.tuples(st.just(name), arguments_for(tools[name]))
    )
    prompt_arguments = st.dictionaries(
        st.sampled_from(["query", "user_id", "q", "extra"]) | TEXT, TEXT | HUGE, max_size=3
    )

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(batch=st.lists(calls, min_size=1, max_size=4), prompt=prompt_arguments)
    def run(batch: list[tuple[str, dict[str, Any]]], prompt: dict[str, str]) -> None:
        async def go() -> None:
            async with Client(server) as client:
                for name, arguments in batch:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        result = await client.call_tool(name, arguments)  # a protocol error raises and fails
                    if result.is_error:
                        assert_clean(result.content[0].text)  # type: ignore[union-attr]
                    else:
                        assert result.structured_content is not None
                with anyio.fail_after(CALL_TIMEOUT_S):
                    try:
                        await client.get_prompt("memory_context", prompt)
                    except (
                        MCPError
                    ) as exc:  # a prompt reports bad arguments as invalid params, with the reason
                        assert exc.error.code == INVALID_PARAMS, exc.error
                        assert_clean(exc.error.message)

        anyio.run(go)

    run()

    async def after() -> tuple[Any, ...]:
        async with Client(server) as client:
            return await victim_memory(client)

    assert anyio.run(after) == before, "a fuzzed call changed another user's memory"
