"""What the user controls: idempotent adds, time filters, listing and forgetting (issue 9)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from memoryos_mcp.adapters.chroma_store import ChromaStore
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.errors import InvalidInputError
from memoryos_mcp.server import build_server
from memoryos_mcp.service import MemoryService
from memoryos_mcp.settings import Settings
from tests.fakes import HashEmbedder


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


# ---------------------------------------------------------------------------------------------- idempotency


async def test_a_retried_add_with_the_same_key_stores_one_page(server: MCPServer) -> None:
    async with Client(server) as client:
        first = await call(client, "add_memory", user_input="I adopted a cat named Miso", idempotency_key="turn-1")
        again = await call(client, "add_memory", user_input="I adopted a cat named Miso", idempotency_key="turn-1")
        assert again["page_id"] == first["page_id"] and again["already_stored"] and not first["already_stored"]
        other_user = await call(client, "add_memory", user_input="hello", idempotency_key="turn-1", user_id="bob")
        assert other_user["page_id"] != first["page_id"] and not other_user["already_stored"]
        assert (await call(client, "memory_stats"))["short_term_pages"] == 1
        assert (await call(client, "memory_stats", user_id="bob"))["short_term_pages"] == 1


def test_a_key_is_still_known_after_its_page_moved_to_mid_term(service: MemoryService) -> None:
    first = service.add_memory("the first thing", "ok", idempotency_key="k0")
    for i in range(12):  # pushes k0's page out of short-term memory
        service.add_memory(f"later thing number {i}", "ok")
    assert service.memory.state("default").index.get(first.page_id) is not None
    again = service.add_memory("the first thing", "ok", idempotency_key="k0")
    assert again.page_id == first.page_id and again.already_stored
    assert service.stats().mid_term_pages + service.stats().short_term_pages == 13


def test_two_concurrent_adds_with_one_key_through_two_servers_store_one_page(
    settings: Settings, store: ChromaStore
) -> None:
    replicas = [MemoryService(settings, store, HashEmbedder(), LocalAnalyzer()) for _ in range(2)]
    start = threading.Barrier(2)
    ids: list[str] = []

    def add(service: MemoryService) -> None:
        start.wait()
        ids.append(service.add_memory("my sister lives in Porto", "noted", idempotency_key="retry-7").page_id)

    threads = [threading.Thread(target=add, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [p.id for p in store.list_stm_pages("default")] == [ids[0]]


def test_an_empty_or_huge_key_is_refused(service: MemoryService) -> None:
    for bad in ("", "   ", "k" * 257):
        with pytest.raises(InvalidInputError, match="idempotency_key"):
            service.add_memory("hi", "", idempotency_key=bad)


# ---------------------------------------------------------------------------------------------- time filters


def _history(service: MemoryService) -> dict[str, str]:
    ids = {}
    for day in range(1, 21):
        stamp = f"2024-05-{day:02d}T10:00:00"
        ids[stamp[:10]] = service.add_memory(f"garden note for day {day}: tomatoes and basil", "ok", timestamp=stamp).page_id
    return ids


def test_retrieve_since_until_keeps_only_pages_in_the_range(service: MemoryService) -> None:
    ids = _history(service)
    everything = service.retrieve_memory("tomatoes basil garden", top_k=30, top_m=10)
    assert len(everything.mid_term) + len(everything.short_term) == 20
    found = service.retrieve_memory("tomatoes basil garden", top_k=30, top_m=10, since="2024-05-03", until="2024-05-06")
    dates = sorted(p.timestamp[:10] for p in found.mid_term + found.short_term)
    assert dates == ["2024-05-03", "2024-05-04", "2024-05-05", "2024-05-06"]  # inclusive, a date = the whole day
    assert {p.id for p in found.mid_term + found.short_term} == {ids[d] for d in dates}
    late = service.retrieve_memory("tomatoes", top_k=30, top_m=10, since="2024-05-19T10:00:00")
    assert sorted(p.timestamp[:10] for p in late.mid_term + late.short_term) == ["2024-05-19", "2024-05-20"]
    early = service.retrieve_memory("tomatoes", top_k=30, top_m=10, until="2024-05-01T09:59:59")
    assert early.mid_term == [] and early.short_term == []


async def test_bad_ranges_are_tool_errors(server: MCPServer) -> None:
    async with Client(server) as client:
        text = await error(client, "retrieve_memory", query="x", since="2024-06-01", until="2024-05-01")
        assert "since" in text and "after until" in text
        assert "not understood" in await error(client, "retrieve_memory", query="x", since="last tuesday")
