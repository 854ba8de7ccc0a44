"""End to end: the `memoryos-mcp` command over stdio, the official MCP client, the real embedding model."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.helpers.fakes import free_port
from tests.helpers.mcp_calls import INITIALIZE, memoryos_command, server_env

pytestmark = pytest.mark.slow

HIKING = [
    "We hiked the Sintra trail up to the Moorish castle",
    "My hiking boots gave me blisters on the mountain ridge",
    "Next month I want to hike the Rota Vicentina coastal path",
    "The summit view over the valley was worth the climb",
    "I bought trekking poles for steep descents on trails",
    "Camping at the mountain hut after a long hike",
    "We got lost on the forest trail and used a map",
    "Hiking with my sister Ana is my favourite weekend plan",
    "The trail was muddy after rain so we hiked slowly",
    "I track my hikes and elevation gain on my watch",
]
COOKING = [
    "I baked sourdough bread with a crispy crust",
    "My tomato pasta sauce needs more garlic and basil",
    "I tried making pastéis de nata, the custard was runny",
    "Roasting vegetables in the oven at 220 degrees",
    "The risotto needed constant stirring and parmesan",
    "I made a chocolate cake for my friend's birthday",
    "Grilled sardines with lemon and olive oil for dinner",
    "My soup was too salty so I added potatoes",
    "I am learning to fold dumplings by hand",
    "Pancakes for breakfast with maple syrup and berries",
]


def _params(data_dir: Path, stdout_log: Path) -> StdioServerParameters:
    # tee keeps a copy of everything the server wrote to stdout, to check that it is all protocol.
    command = " ".join(memoryos_command()) + f" serve --data-dir '{data_dir}' | tee -a '{stdout_log}'"
    env = server_env()
    return StdioServerParameters(command="sh", args=["-c", command], env=env)


def _texts(value: Any) -> list[str]:
    """Every string in a JSON value (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (k, *_texts(v))]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_pages_survive_a_restart_and_come_back_with_metadata(tmp_path: Path) -> None:
    data_dir, stdout_log = tmp_path / "data", tmp_path / "stdout.jsonl"
    pages = [("hiking", i, text) for i, text in enumerate(HIKING)] + [
        ("cooking", i, text) for i, text in enumerate(COOKING)
    ]
    # Interleave the topics, as a real conversation would.
    pages.sort(key=lambda p: (p[1], p[0]))
    added: dict[str, tuple[str, int]] = {}

    async with Client(_params(data_dir, stdout_log), read_timeout_seconds=120) as client:
        for n, (topic, i, text) in enumerate(pages):
            result = await _call(
                client,
                "add_memory",
                user_input=text,
                agent_response=f"Noted about {topic}.",
                timestamp=f"2024-03-{n + 1:02d}T18:00:00",
                metadata={"topic": topic, "i": i},
            )
            added[result["page_id"]] = (topic, i)

    async with Client(_params(data_dir, stdout_log), read_timeout_seconds=120) as client:
        stats = await _call(client, "memory_stats")
        assert stats["short_term_pages"] + stats["mid_term_pages"] == 20
        assert stats["mid_term_pages"] > 0

        found = await _call(
            client, "retrieve_memory", query="which hiking trails did I walk in the mountains?", top_k=5
        )
        mid = found["mid_term"]
        assert len(mid) == 5
        assert sum(p["metadata"]["topic"] == "hiking" for p in mid) >= 4
        for page in mid + found["short_term"]:
            assert added[page["id"]] == (page["metadata"]["topic"], page["metadata"]["i"])

        everything = await _call(client, "retrieve_memory", query="anything", top_k=100, top_m=50)
        seen = {p["id"] for p in everything["mid_term"] + everything["short_term"]}
        assert seen == set(added), "a page was lost across the restart"

    lines = stdout_log.read_text().splitlines()
    assert lines, "the server wrote nothing to stdout"
    for line in lines:
        message = json.loads(line)
        assert message.get("jsonrpc") == "2.0", line


async def test_streamable_http_transport_serves_the_tools(tmp_path: Path) -> None:
    import asyncio
    import subprocess

    port = free_port()
    env = server_env()
    proc = subprocess.Popen(
        [
            *memoryos_command(),
            "serve",
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=120) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "add_memory" in names
            added = await _call(client, "add_memory", user_input="over http", metadata={"via": "http"})
            found = await _call(client, "retrieve_memory", query="over http")
            assert found["short_term"][0]["id"] == added["page_id"]
    finally:
        proc.terminate()
        proc.wait(15)


def test_demo_runs_the_main_job_in_a_terminal(tmp_path: Path) -> None:
    import subprocess

    env = server_env()
    env["HOME"] = str(tmp_path)
    done = subprocess.run([*memoryos_command(), "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stored 16 pages" in done.stdout
    assert "Q: Who did Maya go hiking with" in done.stdout and "Ana" in done.stdout
    assert "storing pages" in done.stderr  # the progress bar


async def test_forgotten_pages_stay_forgotten_across_a_restart(tmp_path: Path) -> None:
    data_dir, stdout_log = tmp_path / "data", tmp_path / "stdout.jsonl"
    async with Client(_params(data_dir, stdout_log), read_timeout_seconds=120) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["forget_memory"].annotations.destructive_hint  # type: ignore[union-attr]
        for n, text in enumerate(HIKING + COOKING):
            extra = " My bank PIN is 9931, keep it secret." if n == 3 else ""
            await _call(
                client, "add_memory", user_input=text + extra, timestamp=f"2024-03-{n + 1:02d}T18:00:00"
            )
        listed = await _call(client, "list_memories", limit=200)
        (secret,) = [p["id"] for p in listed["pages"] if "PIN" in p["user_input"]]
        forgot = await _call(client, "forget_memory", page_ids=[secret])
        assert forgot["pages_removed"] == 1

    async with Client(_params(data_dir, stdout_log), read_timeout_seconds=120) as client:
        found = await _call(client, "retrieve_memory", query="bank PIN secret 9931", top_k=50, top_m=50)
        found.pop("query")
        # Text only: a score, heat or last-access time may well contain the digits 9931 (this flaked once).
        assert not [text for text in _texts(found) if "9931" in text or "PIN" in text]
        listed = await _call(client, "list_memories", limit=200)
        assert len(listed["pages"]) == 19 and secret not in {p["id"] for p in listed["pages"]}
        segments = await _call(client, "list_memories", kind="segments")
        assert not [text for text in _texts(segments) if "9931" in text or "PIN" in text]


async def test_a_second_server_on_a_data_dir_in_use_exits_before_initialize(tmp_path: Path) -> None:
    import subprocess
    import time

    import anyio

    data_dir = tmp_path / "data"
    env = server_env()
    initialize = INITIALIZE
    async with Client(_params(data_dir, tmp_path / "first.jsonl"), read_timeout_seconds=120) as first:
        await first.list_tools()  # the first server has taken the data dir's lock by now
        started = time.monotonic()
        second = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                [*memoryos_command(), "serve", "--data-dir", str(data_dir)],
                input=json.dumps(initialize) + "\n",
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        elapsed = time.monotonic() - started
        assert "add_memory" in {t.name for t in (await first.list_tools()).tools}  # the first one is unharmed
    assert second.returncode == 2
    assert second.stdout == "", "the second server answered initialize"
    (line,) = second.stderr.strip().splitlines()
    assert "another process is using the memory directory" in line and "MEMORYOS_DATA_DIR" in line
    assert elapsed < 15, f"took {elapsed:.1f} s to refuse"


async def test_an_import_is_searchable_at_once_and_the_server_fills_in_its_sentences(tmp_path: Path) -> None:
    data_dir, stdout_log = tmp_path / "data", tmp_path / "stdout.jsonl"
    lines = [
        {
            "user_input": f"{text}. Have you done that too? I loved it.",
            "agent_response": "Not yet! Tell me more about it. What did you like most?",
            "timestamp": f"2025-03-{1 + i:02d}T10:00:00",
        }
        for i, text in enumerate(HIKING + COOKING)
    ]
    env = server_env()
    done = subprocess.run(
        [*memoryos_command(), "import", "-", "--data-dir", str(data_dir)],
        input="\n".join(json.dumps(line) for line in lines),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 20" in done.stdout and "20 page(s) wait for their sentence vectors" in done.stdout
    async with Client(_params(data_dir, stdout_log)) as client:
        found = await _call(client, "retrieve_memory", query="blisters from my boots", user_id="default")
        pages = found["short_term"] + found["mid_term"]
        assert any("blisters" in p["user_input"] for p in pages)
        for _ in range(600):
            stats = await _call(client, "memory_stats", user_id="default")
            if stats["pages_waiting_for_sentences"] == 0:
                break
            await asyncio.sleep(0.1)
        assert stats["pages_waiting_for_sentences"] == 0
        assert stats["short_term_pages"] + stats["mid_term_pages"] == 20
    assert all(json.loads(line) for line in stdout_log.read_text().splitlines())  # stdout: protocol only
