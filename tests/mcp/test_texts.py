"""What the host model reads of each tool's result: written for it (each page once, short ids, a budget),
while the structured content keeps every field for programs."""

from __future__ import annotations

import json
import re
from typing import Any

from mcp import Client
from mcp.server.mcpserver import MCPServer

from memoryos_mcp.core.context import estimate_tokens
from memoryos_mcp.service.schemas import RetrieveMemoryResult
from tests.helpers.mcp_calls import call, error

TOPICS = ["hiking the Sintra trail", "baking sourdough bread", "guitar chords practice", "adopting a puppy"]


async def _fill(client: Client, n: int = 30) -> None:
    for i in range(n):
        await call(
            client,
            "add_memory",
            user_input=f"I spent the day {TOPICS[i % 4]} and it was great, part {i}.",
            agent_response=f"That sounds wonderful! Tell me more about part {i}.",
            timestamp=f"2024-04-{1 + i % 28:02d}T18:{i % 60:02d}:00",
            metadata={"i": i},
        )


async def _retrieve(client: Client, **arguments: Any) -> tuple[str, dict[str, Any]]:
    result = await client.call_tool("retrieve_memory", {"query": "hiking on the trail", **arguments})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.content[0].text, result.structured_content  # type: ignore[union-attr]


async def test_the_text_holds_each_returned_page_once_and_the_structured_content_every_field(
    server: MCPServer,
) -> None:
    async with Client(server) as client:
        await _fill(client)
        text, data = await _retrieve(client)
    pages = data["short_term"] + data["mid_term"]
    assert data["short_term"] and data["mid_term"]
    for page in pages:
        assert text.count(page["id"][:11]) == 1 and text.count(page["user_input"]) == 1
        assert page["id"] not in text  # the full id is for programs
    assert '"' not in text.split("\n", 1)[1] or "{" not in text  # not a JSON dump
    assert text == data["context"]
    # the structured result is the one existing clients know: every field, nothing left out
    expected = set(RetrieveMemoryResult.model_fields) - {"left_out"}
    assert expected <= set(data) and data["left_out"] is None
    assert all({"id", "score", "segment_id", "chain_summary", "metadata"} <= set(p) for p in data["mid_term"])
    assert data["segments"] and all("heat" in s for s in data["segments"])


async def test_a_budget_is_honoured_best_first_and_the_result_holds_what_the_text_shows(
    server: MCPServer,
) -> None:
    async with Client(server) as client:
        await _fill(client)
        whole, everything = await _retrieve(client)
        size = estimate_tokens(whole)
        assert size > 300
        for budget in (100, 200, size // 2, size - 5):
            text, data = await _retrieve(client, max_tokens=budget)
            assert estimate_tokens(text) <= budget
            newest = everything["short_term"][len(everything["short_term"]) - len(data["short_term"]) :]
            assert data["short_term"] == newest  # recent pages first, the newest of them
            best = [p["id"] for p in everything["mid_term"][: len(data["mid_term"])]]
            assert [p["id"] for p in data["mid_term"]] == best  # then mid-term pages by score
            shown = {m for m in re.findall(r"pg_[0-9a-f]{8}", text)}
            assert shown == {p["id"][:11] for p in data["short_term"] + data["mid_term"]}
            left = data["left_out"]
            assert left["max_tokens"] == budget
            assert left["short_term_pages"] + left["mid_term_pages"] == len(everything["short_term"]) + len(
                everything["mid_term"]
            ) - len(data["short_term"]) - len(data["mid_term"])
            assert "left out to stay within" in text.splitlines()[-1]
        roomy, data = await _retrieve(client, max_tokens=estimate_tokens(whole) + 10)
        assert roomy == whole and data["left_out"] is None
        assert "max_tokens" in await error(client, "retrieve_memory", query="x", max_tokens=5)


async def test_the_server_default_budget_applies_and_a_call_may_change_it(
    settings: Any, service: Any
) -> None:
    from memoryos_mcp.mcp.server import build_server

    service.settings = settings.model_copy(update={"retrieve_max_tokens": 150})
    async with Client(build_server(service.settings, service_factory=lambda: service)) as client:
        await _fill(client, 12)
        text, data = await _retrieve(client)
        assert estimate_tokens(text) <= 150 and data["left_out"]["max_tokens"] == 150
        text, data = await _retrieve(client, max_tokens=5000)
        assert data["left_out"] is None


async def test_the_short_ids_the_text_shows_are_what_forget_memory_takes(server: MCPServer) -> None:
    async with Client(server) as client:
        await _fill(client)
        text, data = await _retrieve(client, include_short_term=False)
        short = re.findall(r"pg_[0-9a-f]{8}", text)[0]
        full = next(p["id"] for p in data["mid_term"] if p["id"].startswith(short))
        result = await client.call_tool("forget_memory", {"page_ids": [short]})
        assert not result.is_error and result.structured_content["page_ids_removed"] == [full]  # type: ignore[index]
        assert "Forgot 1 page(s)" in result.content[0].text  # type: ignore[union-attr]
        listed = await call(client, "list_memories", limit=200)
        assert full not in {p["id"] for p in listed["pages"]}
        gone = await call(client, "forget_memory", page_ids=["pg_00000000"])
        assert gone["unknown_page_ids"] == ["pg_00000000"]


async def test_every_tool_answers_the_model_in_a_few_plain_lines(server: MCPServer) -> None:
    async with Client(server) as client:
        added = await client.call_tool(
            "add_memory", {"user_input": "I live in Porto", "agent_response": "Nice"}
        )
        text = added.content[0].text  # type: ignore[union-attr]
        assert text.startswith("Stored page pg_") and len(text) < 200
        for tool, arguments in (
            ("memory_stats", {}),
            ("get_user_profile", {}),
            ("list_memories", {}),
            ("list_memories", {"kind": "facts"}),
            ("list_memories", {"kind": "segments"}),
        ):
            result = await client.call_tool(tool, arguments)
            text = result.content[0].text  # type: ignore[union-attr]
            assert not result.is_error and text and not text.lstrip().startswith("{"), (tool, text)
            assert len(text) < len(json.dumps(result.structured_content)) + 200
        listed = await client.call_tool("list_memories", {})
        assert "I live in Porto" in listed.content[0].text  # type: ignore[union-attr]


async def test_the_memory_context_prompt_takes_the_same_budget(server: MCPServer) -> None:
    async with Client(server) as client:
        await _fill(client)
        prompt = await client.get_prompt("memory_context", {"query": "hiking", "max_tokens": "150"})
        text = prompt.messages[0].content.text  # type: ignore[union-attr]
        assert "left out to stay within 150 tokens" in text
        assert estimate_tokens(text.split("\n\n", 1)[1]) <= 150


async def test_a_dry_run_of_forget_memory_says_what_would_go_and_keeps_it(server: MCPServer) -> None:
    async with Client(server) as client:
        await _fill(client, 12)
        text, data = await _retrieve(client, include_short_term=False)
        short = re.findall(r"pg_[0-9a-f]{8}", text)[0]
        preview = await client.call_tool("forget_memory", {"page_ids": [short], "dry_run": True})
        assert preview.structured_content["dry_run"] and preview.structured_content["pages_removed"] == 1  # type: ignore[index]
        assert preview.content[0].text.startswith("Would forget 1 page(s)")  # type: ignore[union-attr]
        again, _ = await _retrieve(client, include_short_term=False)
        assert short in again  # still remembered
