"""Two server processes sharing one Chroma server: what one writes, the other returns; concurrent adds of
one user lose nothing and duplicate nothing; visit counts never go backwards."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.slow


def _replica(port: int, prefix: str, home: Path) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    env.update(HOME=str(home), MEMORYOS_COLLECTION_PREFIX=prefix)
    command = str(Path(sys.executable).with_name("memoryos-mcp"))
    return StdioServerParameters(
        command=command, args=["serve", "--chroma-host", "127.0.0.1", "--chroma-port", str(port)], env=env
    )


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def _everything(client: Client) -> list[str]:
    found = await _call(client, "retrieve_memory", query="notes", user_id="alice", top_k=100, top_m=50)
    return [p["id"] for p in found["short_term"] + found["mid_term"]]


async def test_two_replicas_share_one_memory(tmp_path: Path, chroma_server: int) -> None:
    prefix = f"replica{uuid.uuid4().hex[:8]}"
    async with (
        Client(_replica(chroma_server, prefix, tmp_path), read_timeout_seconds=180) as a,
        Client(_replica(chroma_server, prefix, tmp_path), read_timeout_seconds=180) as b,
    ):
        # Both replicas have alice's (empty) memory cached before anything is written.
        assert await _everything(a) == [] and await _everything(b) == []

        added = await _call(a, "add_memory", user_input="The blue heron nests by the lake", user_id="alice")
        found = await _call(b, "retrieve_memory", query="where does the heron nest", user_id="alice")
        assert added["page_id"] in [p["id"] for p in found["short_term"] + found["mid_term"]]

        async def adds(client: Client, tag: str) -> list[str]:
            ids = []
            for i in range(12):
                topic = ["hiking trail boots", "bread oven dough", "guitar chords"][i % 3]
                result = await _call(
                    client, "add_memory", user_input=f"{tag} notes {i} about {topic}", user_id="alice"
                )
                ids.append(result["page_id"])
            return ids

        from_a, from_b = await asyncio.gather(adds(a, "alpha"), adds(b, "beta"))
        expected = {added["page_id"], *from_a, *from_b}
        for client in (a, b):
            seen = await _everything(client)
            assert len(seen) == len(set(seen)), "a page is returned twice"
            assert set(seen) == expected, "a page was lost"
            stats = await _call(client, "memory_stats", user_id="alice")
            assert stats["short_term_pages"] + stats["mid_term_pages"] == 25
            assert stats["short_term_pages"] == 7

        # Concurrent retrievals through both: a segment's N_visit as any later reader sees it is never lower
        # than what an earlier retrieval reported.
        observed: dict[str, int] = {}

        async def retrieve(client: Client, query: str) -> None:
            result = await _call(client, "retrieve_memory", query=query, user_id="alice", top_m=3)
            for segment in result["segments"]:
                observed[segment["id"]] = max(observed.get(segment["id"], 0), segment["n_visit"])

        queries = ["hiking boots", "bread dough", "guitar chords", "heron lake"]
        await asyncio.gather(*(retrieve(c, q) for q in queries for c in (a, b)))
        final = await _call(a, "retrieve_memory", query="notes", user_id="alice", top_m=50)
        stored = {s["id"]: s["n_visit"] for s in final["segments"]}
        for segment_id, n_visit in observed.items():
            assert stored[segment_id] >= n_visit
