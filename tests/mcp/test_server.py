"""The MCP tools through the in-memory client: structured output, isolation and every bad-input case."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from memoryos_mcp.core.errors import StorageError
from memoryos_mcp.mcp.server import build_server
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import Settings
from tests.helpers.mcp_calls import call, error


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
        assert "Sintra" in found["context"] and "2024-05-08" in found["context"]


async def test_pages_reach_mid_term_with_segment_and_score(server: MCPServer) -> None:
    async with Client(server) as client:
        for i in range(10):
            page = {
                "user_input": f"hiking trail mountains step {i}",
                "agent_response": "nice",
                "metadata": {"i": i},
            }
            await call(client, "add_memory", **page)
        found = await call(
            client, "retrieve_memory", query="hiking trail mountains", top_k=3, include_short_term=False
        )
        assert found["short_term"] == []
        assert 1 <= len(found["mid_term"]) <= 3
        for page in found["mid_term"]:
            assert page["segment_id"] and page["score"] is not None and "i" in page["metadata"]
            assert page["chain_summary"]
        assert found["segments"] and found["segments"][0]["n_visit"] == 1


async def test_user_b_never_sees_user_a(server: MCPServer) -> None:
    async with Client(server) as client:
        for i in range(9):
            page = {"user_input": f"secret alpha project {i}", "agent_response": "ok", "user_id": "alice"}
            await call(client, "add_memory", **page)
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
        (
            "add_memory",
            {"user_input": "hi", "timestamp": "yesterday-ish"},
            "timestamp 'yesterday-ish' is not understood",
        ),
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


# ------------------------------------------------------------------ the contract: every message one plain sentence

BIG = "x" * 1_000_000


def assert_plain(message: str) -> None:
    """One sentence a model can act on: no pydantic dump, no documentation link, no echo of a huge value."""
    assert "\n" not in message and "validation error" not in message and "http" not in message, message
    assert "type=" not in message and "input_value" not in message and len(message) < 400, message


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (
            "add_memory",
            {"usr_input": "I moved to Lisbon"},
            "unknown argument 'usr_input' (did you mean 'user_input'?): add_memory accepts 'user_input', 'agent_response', 'user_id', 'timestamp'",
        ),
        ("add_memory", {"text": "hello"}, "unknown argument 'text': add_memory accepts"),
        (
            "memory_stats",
            {"user": "bob", "verbose": True},
            "unknown arguments 'user' and 'verbose': memory_stats accepts 'user_id'",
        ),
        ("add_memory", {"user_input": "hi", "user_id": ""}, "user_id '' is invalid: use 1-64 characters"),
        (
            "retrieve_memory",
            {"query": "hi", "user_id": "null"},
            "user_id 'null' is invalid: it reads as a missing value",
        ),
        ("memory_stats", {"user_id": "."}, "user_id '.' is invalid"),
        ("get_user_profile", {"user_id": ".."}, "user_id '..' is invalid"),
        ("memory_stats", {"user_id": 7}, "user_id must be a string or left out; got 7"),
        (
            "retrieve_memory",
            {"query": "hi", "top_k": "abc"},
            "top_k must be an integer from 1 to 100 (or left out); got 'abc'",
        ),
        (
            "retrieve_memory",
            {"query": "hi", "top_k": 1000},
            "top_k must be an integer from 1 to 100 (or left out); got 1000",
        ),
        (
            "retrieve_memory",
            {"query": "hi", "top_m": 0},
            "top_m must be an integer from 1 to 50 (or left out); got 0",
        ),
        (
            "retrieve_memory",
            {"query": "hi", "include_short_term": "maybe"},
            "include_short_term must be true or false (or left out); got 'maybe'",
        ),
        ("retrieve_memory", {"query": 5}, "query must be a string; got 5"),
        ("retrieve_memory", {}, "query is required: a string"),
        (
            "add_memory",
            {"user_input": ["a", "b"]},
            'user_input must be a string (or left out); got ["a", "b"]',
        ),
        (
            "add_memory",
            {"user_input": "hi", "metadata": "a=1"},
            "metadata must be a JSON object (or left out); got 'a=1'",
        ),
        (
            "add_memory",
            {"user_input": "hi", "metadata": {"n": 123456789012345678901234567890}},
            "metadata['n'] is 123456789012345678901234567890, outside ±2^53",
        ),
        (
            "add_memory",
            {"user_input": "hi", "metadata": {"n": -(2**53) - 1}},
            "outside ±2^53 where JSON numbers lose precision: send it as a string",
        ),
        ("retrieve_memory", {"query": "hi", "top_k": BIG}, "got 'xxxxxxxx"),
        ("add_memory", {"user_input": "hi", "timestamp": BIG}, "… (1,000,000 characters) is not understood"),
        ("memory_stats", {"user_id": BIG}, "… (1,000,000 characters) is invalid"),
        ("add_memory", {"user_input": "hi", "metadata": {BIG: 1}}, "metadata key 'xxx"),
        (
            "add_memory",
            {"user_input": "hi", "metadata": {"k": "v" * 1_000_000}},
            "is 1000000 characters; the limit per value is 1000",
        ),
    ],
)
async def test_the_contract_says_what_was_wrong_and_what_fits(
    server: MCPServer, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with Client(server) as client:
        text = await error(client, tool, **arguments)
        assert message in text, text
        assert_plain(text)


async def test_integers_within_2_53_come_back_exactly(server: MCPServer) -> None:
    async with Client(server) as client:
        edge = {"max": 2**53, "min": -(2**53), "big": 2**53 - 1, "text": "123456789012345678901234567890"}
        await call(client, "add_memory", user_input="numbers", metadata=edge)
        (page,) = (await call(client, "retrieve_memory", query="numbers"))["short_term"]
        assert page["metadata"] == edge


async def test_an_unknown_tool_lists_the_tools(server: MCPServer) -> None:
    async with Client(server) as client:
        text = await error(client, "add_memories", user_input="x")
        assert "unknown tool 'add_memories' (did you mean 'add_memory'?)" in text
        assert_plain(text)


async def test_a_tool_added_later_gets_the_contract(server: MCPServer) -> None:
    """The contract lives in the server, not in each tool: a new tool with a user_id is checked and bound too."""
    seen: list[str] = []

    @server.tool()
    def echo_user(note: str, user_id: str | None = None) -> str:
        seen.append(f"{user_id}:{note}")
        return note

    async with Client(server) as client:
        assert "unknown argument 'notes' (did you mean 'note'?)" in await error(
            client, "echo_user", notes="x"
        )
        assert "user_id 'null' is invalid" in await error(client, "echo_user", note="x", user_id="null")
        assert not (await client.call_tool("echo_user", {"note": "hi"})).is_error
    assert seen == ["default:hi"]  # the default user was bound before the tool ran


async def test_allowed_users_applies_on_stdio_too(settings: Settings, service: MemoryService) -> None:
    narrowed = settings.model_copy(update={"allowed_users": ["alice", "bob"]})
    async with Client(build_server(narrowed, service_factory=lambda: service)) as client:
        assert "user_id is required: this caller may act for 'alice' and 'bob'" in await error(
            client, "memory_stats"
        )
        assert "not among this server's allowed_users" in await error(client, "memory_stats", user_id="carol")
        assert (await call(client, "memory_stats", user_id="bob"))["user_id"] == "bob"


async def test_prompt_failures_carry_the_reason(server: MCPServer) -> None:
    async with Client(server) as client:
        for arguments, reason in [
            ({"query": "  "}, "query must not be empty"),
            (
                {"query": "hi", "bogus": "1"},
                "unknown argument 'bogus': prompt memory_context accepts 'query', 'user_id' and 'max_tokens'",
            ),
            ({}, "prompt memory_context needs 'query'"),
            ({"query": "hi", "user_id": "null"}, "user_id 'null' is invalid"),
        ]:
            with pytest.raises(MCPError) as failure:
                await client.get_prompt("memory_context", arguments)
            assert reason in failure.value.error.message and failure.value.error.code == INVALID_PARAMS
        with pytest.raises(MCPError, match="unknown prompt 'memory_contxt'"):
            await client.get_prompt("memory_contxt", {"query": "hi"})


async def test_resource_and_prompt_failures_name_the_cause(settings: Settings) -> None:
    def broken() -> MemoryService:
        raise StorageError("cannot open Chroma at /nowhere: disk on fire")

    async with Client(build_server(settings, service_factory=broken)) as client:
        with pytest.raises(MCPError) as failure:
            await client.read_resource("memoryos://status")
        assert "cannot open Chroma at /nowhere: disk on fire" in failure.value.error.message
        assert failure.value.error.code == INTERNAL_ERROR
        with pytest.raises(MCPError, match="disk on fire"):
            await client.get_prompt("memory_context", {"query": "hi"})
        assert "disk on fire" in await error(client, "memory_stats")


async def test_retrieve_can_say_why_each_page_was_recalled(server: MCPServer) -> None:
    async with Client(server) as client:
        for i in range(12):
            await call(
                client,
                "add_memory",
                user_input=f"We hiked the Sintra trail, part {i}. It rained.",
                agent_response="ok",
            )
        found = await call(client, "retrieve_memory", query="Sintra trail", explain=True, record_visits=False)
        (page, *_) = found["mid_term"]
        why = page["why"]
        parts = why["lexical"] + why["dense"] + why["time_cue"] + why["date_cue"] + why["best_sentence"]
        assert parts == pytest.approx(page["score"], abs=1e-3)
        assert why["sentence"] in page["user_input"] + " " + page["agent_response"]
        assert all(s["n_visit"] == 0 for s in found["segments"])  # looked at, not recalled
        plain = await call(client, "retrieve_memory", query="Sintra trail")
        assert plain["mid_term"][0]["why"] is None
