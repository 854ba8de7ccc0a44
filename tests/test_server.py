"""The MCP tools through the in-memory client: structured output, isolation and every bad-input case."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from memoryos_mcp.server import build_server
from memoryos_mcp.service import MemoryService
from memoryos_mcp.settings import Settings


@pytest.fixture
def server(settings: Settings, service: MemoryService) -> MCPServer:
    return build_server(settings, service_factory=lambda: service)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


async def test_lists_the_tools_with_output_schemas(server: MCPServer) -> None:
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"add_memory", "retrieve_memory", "get_user_profile", "memory_stats"} <= set(tools)
        for name in ("add_memory", "retrieve_memory", "get_user_profile"):
            assert tools[name].output_schema is not None
            assert tools[name].description
        assert "metadata" in tools["add_memory"].input_schema["properties"]


async def test_add_then_retrieve_returns_pages_with_metadata(server: MCPServer) -> None:
    async with Client(server) as client:
        added = await call(
            client,
            "add_memory",
            user_input="I climbed the Sintra trail with Ana",
            agent_response="Sounds lovely",
            timestamp="2024-05-08 13:56:00",
            metadata={"turn": "D1:3", "n": 3, "ok": True},
        )
        assert added["page_id"].startswith("pg_") and added["timestamp"] == "2024-05-08T13:56:00"
        assert added["llm_calls"] == 0
        found = await call(client, "retrieve_memory", query="Sintra trail")
        (page,) = found["short_term"]
        assert page["id"] == added["page_id"] and page["metadata"] == {"turn": "D1:3", "n": 3, "ok": True}
        assert page["timestamp"] == "2024-05-08T13:56:00" and page["tier"] == "short_term"
        assert "Sintra" in found["context"] and "2024-05-08 13:56" in found["context"]


async def test_pages_reach_mid_term_with_segment_and_score(server: MCPServer) -> None:
    async with Client(server) as client:
        for i in range(10):
            await call(client, "add_memory", user_input=f"hiking trail mountains step {i}", agent_response="nice", metadata={"i": i})
        found = await call(client, "retrieve_memory", query="hiking trail mountains", top_k=3, include_short_term=False)
        assert found["short_term"] == []
        assert 1 <= len(found["mid_term"]) <= 3
        for page in found["mid_term"]:
            assert page["segment_id"] and page["score"] is not None and "i" in page["metadata"]
            assert page["chain_summary"]
        assert found["segments"] and found["segments"][0]["n_visit"] == 1


async def test_user_b_never_sees_user_a(server: MCPServer) -> None:
    async with Client(server) as client:
        for i in range(9):
            await call(client, "add_memory", user_input=f"secret alpha project {i}", agent_response="ok", user_id="alice")
        found = await call(client, "retrieve_memory", query="secret alpha project", user_id="bob")
        assert found["short_term"] == [] and found["mid_term"] == [] and found["segments"] == []
        assert "secret" not in found["context"]
        profile = await call(client, "get_user_profile", user_id="bob")
        assert profile["user_knowledge"] == [] and profile["profile"]["static"] == {}
        stats = await call(client, "memory_stats", user_id="bob")
        assert stats["short_term_pages"] == 0 and stats["mid_term_pages"] == 0
        alice = await call(client, "memory_stats", user_id="alice")
        assert alice["short_term_pages"] + alice["mid_term_pages"] == 9


async def test_profile_without_llm_says_how_to_enable_it(server: MCPServer) -> None:
    async with Client(server) as client:
        profile = await call(client, "get_user_profile", include_assistant_traits=False)
        assert profile["profiling_available"] is False
        assert "LLM" in profile["note"] or "language model" in profile["note"]
        assert profile["assistant_traits"] is None and profile["user_knowledge"] == []


async def test_status_resource_reports_counts(server: MCPServer) -> None:
    async with Client(server) as client:
        await call(client, "add_memory", user_input="hello")
        result = await client.read_resource("memoryos://status")
        assert '"short_term_pages": 1' in result.contents[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("add_memory", {"user_input": "", "agent_response": "  "}, "both empty"),
        ("add_memory", {"user_input": "hi", "timestamp": "yesterday-ish"}, "timestamp 'yesterday-ish' is not understood"),
        ("add_memory", {"user_input": "hi", "user_id": "../etc"}, "user_id '../etc' is invalid"),
        ("add_memory", {"user_input": "hi", "user_id": "x" * 65}, "is invalid"),
        ("add_memory", {"user_input": "hi", "metadata": {"a": {"b": 1}}}, "nested"),
        ("add_memory", {"user_input": "hi", "metadata": {"a": [1, 2]}}, "nested"),
        ("add_memory", {"user_input": "hi", "metadata": {"a": None}}, "must be a string, number or boolean"),
        ("add_memory", {"user_input": "hi", "metadata": {f"k{i}": i for i in range(33)}}, "limit is 32"),
        ("add_memory", {"user_input": "hi", "metadata": {"a": "x" * 1001}}, "limit per value is 1000"),
        ("add_memory", {"user_input": "x" * 20_001}, "user_input is 20001 characters; the limit is 20000"),
        ("add_memory", {"agent_response": "x" * 20_001}, "agent_response is 20001 characters"),
        ("retrieve_memory", {"query": "   "}, "query must not be empty"),
        ("retrieve_memory", {"query": "x" * 20_001}, "query is 20001 characters"),
        ("retrieve_memory", {"query": "hi", "user_id": "a b"}, "user_id 'a b' is invalid"),
        ("get_user_profile", {"user_id": "ü"}, "user_id 'ü' is invalid"),
    ],
)
async def test_bad_input_is_a_tool_error_the_model_can_act_on(
    server: MCPServer, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with Client(server) as client:
        assert message in await error(client, tool, **arguments)


async def test_out_of_range_top_k_is_rejected(server: MCPServer) -> None:
    async with Client(server) as client:
        text = await error(client, "retrieve_memory", query="hi", top_k=0)
        assert "top_k" in text


async def test_a_failed_call_stores_nothing(server: MCPServer) -> None:
    async with Client(server) as client:
        await error(client, "add_memory", user_input="hi", metadata={"a": {"b": 1}})
        stats = await call(client, "memory_stats")
        assert stats["short_term_pages"] == 0
