"""compat = "memoryos-reference": the reference server's argument names and result shape, through the in-memory
client; and the default contract refusing those names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.cli.main import main
from memoryos_mcp.mcp.compat import NO_PROFILE, REFERENCE_TOOLS, profile_text, reference_time
from memoryos_mcp.mcp.server import build_server
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.schemas import ProfileOut, TraitOut
from memoryos_mcp.service.settings import Settings, load_settings
from memoryos_mcp.service.wiring import make_analyzer
from tests.helpers.contract import CALL_TIMEOUT_S, VICTIM, arguments_for, assert_clean
from tests.helpers.fake_openai import FakeOpenAIServer
from tests.helpers.fakes import HashEmbedder
from tests.helpers.scripted_llm import good_answer

REFERENCE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def compat_server(tmp_path: Path, **overrides: Any) -> MCPServer:
    options: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "compat": "memoryos-reference",
        "stm_capacity": 2,
    }
    settings = load_settings(**{**options, **overrides})
    store = ChromaStore(make_client(data_dir=settings.data_dir), settings.collection_prefix)
    service = MemoryService(settings, store, HashEmbedder(), make_analyzer(settings))
    return build_server(settings, service_factory=lambda: service)


@pytest.fixture
def server(tmp_path: Path) -> MCPServer:
    return compat_server(tmp_path)


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """The reply's JSON text, checked to be the structured output too (one object, two channels)."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    data = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert data == result.structured_content and data["status"] == "success"
    return data


async def failed(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool error whose text is the reference's {"status": "error", "message": ...}."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.content
    data = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert set(data) == {"status", "message"} and data["status"] == "error"
    return data


async def add_many(client: Client, n: int, **extra: Any) -> None:
    for i in range(n):
        await ok(
            client,
            "add_memory",
            user_input=f"hiking trail mountains day {i}",
            agent_response="Sounds great",
            timestamp=f"2024-05-{i + 1:02d} 10:00:00",
            **extra,
        )


async def test_add_memory_takes_meta_data_and_answers_in_the_reference_shape(server: MCPServer) -> None:
    async with Client(server) as client:
        added = await ok(
            client,
            "add_memory",
            user_input="I'm Tom from San Francisco",
            agent_response="Hello Tom!",
            timestamp="2024-05-08 13:56:00",
            meta_data={"turn": "D1:3", "n": 3},
        )
        assert added["timestamp"] == "2024-05-08 13:56:00"
        assert added["details"] == {
            "user_input_length": 26,
            "agent_response_length": 10,
            "has_meta_data": True,
        }
        assert added["page_id"].startswith("pg_") and added["page_id"] in added["message"]
        assert added["user_id"] == "default"
        # The metadata is stored under our name: list_memories (our contract in both modes) shows it.
        listed = await client.call_tool("list_memories", {})
        assert listed.structured_content["pages"][0]["metadata"] == {"turn": "D1:3", "n": 3}  # type: ignore[index]
        plain = await ok(client, "add_memory", user_input="no metadata here")
        assert plain["details"]["has_meta_data"] is False and REFERENCE_TIME.match(plain["timestamp"])


async def test_retrieve_memory_takes_the_reference_arguments_and_fills_its_fields(server: MCPServer) -> None:
    async with Client(server) as client:
        await add_many(client, 9, meta_data={"topic": "hiking"})
        found = await ok(
            client,
            "retrieve_memory",
            query="hiking trail mountains",
            relationship_with_user="friend",
            style_hint="helpful",
            max_results=3,
        )
        assert found["query"] == "hiking trail mountains" and REFERENCE_TIME.match(found["timestamp"])
        assert found["user_profile"] == NO_PROFILE
        assert found["short_term_count"] == len(found["short_term_memory"]) <= 2
        assert 1 <= len(found["retrieved_pages"]) <= 3 and found["total_pages_found"] == len(
            found["retrieved_pages"]
        )
        for page in found["retrieved_pages"]:
            assert set(page) == {"user_input", "agent_response", "timestamp", "meta_info", "meta_data"}
            assert page["user_input"].startswith("hiking trail") and page["meta_info"]
            assert REFERENCE_TIME.match(page["timestamp"]) and page["meta_data"] == {"topic": "hiking"}
        for item in found["short_term_memory"]:
            assert set(item) == {"user_input", "agent_response", "timestamp", "meta_data"}
        assert found["retrieved_user_knowledge"] == found["retrieved_assistant_knowledge"] == []
        assert found["total_user_knowledge_found"] == found["total_assistant_knowledge_found"] == 0
        assert "hiking trail mountains" in found["context"] and found["user_id"] == "default"


async def test_our_argument_names_still_work_in_compat_mode(server: MCPServer) -> None:
    async with Client(server) as client:
        await ok(client, "add_memory", user_input="hiking boots", metadata={"k": "v"}, idempotency_key="one")
        again = await ok(
            client, "add_memory", user_input="hiking boots", metadata={"k": "v"}, idempotency_key="one"
        )
        assert "nothing added" in again["message"]
        await add_many(client, 6)
        found = await ok(client, "retrieve_memory", query="hiking", top_k=1, include_short_term=False)
        assert len(found["retrieved_pages"]) == 1 and found["short_term_memory"] == []
        profile = await ok(client, "get_user_profile", include_assistant_traits=True, include_knowledge=False)
        assert profile["assistant_knowledge"] == [] and "user_knowledge" not in profile


async def test_the_same_setting_under_both_names_must_agree(server: MCPServer) -> None:
    async with Client(server) as client:
        same = await ok(client, "add_memory", user_input="hi", metadata={"a": 1}, meta_data={"a": 1})
        assert same["details"]["has_meta_data"] is True
        clash = await failed(client, "add_memory", user_input="hi", metadata={"a": 1}, meta_data={"a": 2})
        assert "metadata and meta_data name the same thing" in clash["message"]
        clash = await failed(client, "retrieve_memory", query="hi", top_k=2, max_results=3)
        assert "top_k and max_results" in clash["message"]
        stats = await client.call_tool("memory_stats", {})
        assert stats.structured_content["short_term_pages"] == 1  # type: ignore[index]


async def test_get_user_profile_lists_only_what_was_asked_like_the_reference(server: MCPServer) -> None:
    async with Client(server) as client:
        profile = await ok(client, "get_user_profile")
        # The reference's defaults: user knowledge yes, assistant knowledge no; keys left out, not null.
        assert profile["user_profile"] == NO_PROFILE and profile["user_id"] == "default"
        assert profile["user_knowledge"] == [] and profile["user_knowledge_count"] == 0
        assert "assistant_knowledge" not in profile and "assistant_knowledge_count" not in profile
        assert profile["assistant_id"] is None and REFERENCE_TIME.match(profile["timestamp"])
        both = await ok(client, "get_user_profile", include_knowledge=False, include_assistant_knowledge=True)
        assert "user_knowledge" not in both and both["assistant_knowledge_count"] == 0


async def test_errors_stay_tool_errors_with_the_reference_json_text(server: MCPServer) -> None:
    async with Client(server) as client:
        assert "both empty" in (await failed(client, "add_memory", user_input=""))["message"]
        assert "query must not be empty" in (await failed(client, "retrieve_memory", query=" "))["message"]
        message = (await failed(client, "retrieve_memory", query="hi", max_results=0))["message"]
        assert message == "max_results must be an integer from 1 to 100 (or left out); got 0"
        message = (await failed(client, "add_memory", user_input="hi", meta_data={"a": {"b": 1}}))["message"]
        assert "nested" in message
        # The contract holds in compat mode too: unknown names are refused, listing the accepted ones.
        message = (await failed(client, "retrieve_memory", query="hi", max_result=3))["message"]
        assert message.startswith("unknown argument 'max_result' (did you mean 'max_results'?)")
        message = (await failed(client, "get_user_profile", user_id="null"))["message"]
        assert "user_id 'null' is invalid" in message
        # Tools the reference does not have keep our plain sentences.
        result = await client.call_tool("memory_stats", {"user": "x"})
        assert result.is_error and result.content[0].text.startswith("unknown argument 'user'")  # type: ignore[union-attr]


async def test_tools_publish_the_reference_shape_as_output_schema(server: MCPServer) -> None:
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        retrieve = tools["retrieve_memory"]
        assert {"relationship_with_user", "style_hint", "max_results", "top_k"} <= set(
            retrieve.input_schema["properties"]
        )
        assert {"retrieved_pages", "short_term_count", "total_pages_found"} <= set(
            retrieve.output_schema["properties"]
        )  # type: ignore[index]
        assert "meta_data" in tools["add_memory"].input_schema["properties"]
        assert "include_assistant_knowledge" in tools["get_user_profile"].input_schema["properties"]


@pytest.mark.parametrize(
    ("tool", "arguments", "unknown"),
    [
        ("add_memory", {"user_input": "hi", "meta_data": {"a": 1}}, "meta_data"),
        ("retrieve_memory", {"query": "hi", "max_results": 3}, "max_results"),
        ("retrieve_memory", {"query": "hi", "relationship_with_user": "friend"}, "relationship_with_user"),
        ("retrieve_memory", {"query": "hi", "style_hint": "helpful"}, "style_hint"),
        ("get_user_profile", {"include_assistant_knowledge": True}, "include_assistant_knowledge"),
    ],
)
async def test_the_default_contract_refuses_the_reference_names(
    settings: Settings, service: MemoryService, tool: str, arguments: dict[str, Any], unknown: str
) -> None:
    async with Client(build_server(settings, service_factory=lambda: service)) as client:
        result = await client.call_tool(tool, arguments)
        assert result.is_error
        assert result.content[0].text.startswith(f"unknown argument {unknown!r}")  # type: ignore[union-attr]


async def test_default_mode_answers_in_our_shape(settings: Settings, service: MemoryService) -> None:
    async with Client(build_server(settings, service_factory=lambda: service)) as client:
        result = await client.call_tool("add_memory", {"user_input": "hi"})
        assert "status" not in result.structured_content and "page_id" in result.structured_content  # type: ignore[operator]


# ------------------------------------------------------------------ with learned knowledge (fake LLM on 127.0.0.1)


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default=good_answer) as fake:
        yield fake


async def test_knowledge_and_profile_text_come_back_in_the_reference_fields(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    server = compat_server(
        tmp_path, llm_base_url=llm.base_url, llm_api_key="test-key", llm_max_retries=0, llm_cooldown_s=0.0, tau=3.0,
        stm_capacity=3, stm_evict_batch=3,
    )  # fmt: skip
    async with Client(server) as client:
        await ok(
            client,
            "add_memory",
            user_input="I am Maya and I love hiking",
            agent_response="I am Memo, happy to help with hiking.",
        )
        for n in range(1, 4):
            await ok(
                client,
                "add_memory",
                user_input=f"I went hiking on the mountain trail with boots (page {n})",
                agent_response="Nice hiking!",
            )
        profile = await ok(client, "get_user_profile", include_assistant_knowledge=True)
        assert "name: Maya" in profile["user_profile"] and "hiking: High" in profile["user_profile"]
        assert profile["user_knowledge_count"] == len(profile["user_knowledge"]) >= 1
        assert profile["assistant_knowledge"][0]["knowledge"] == "The assistant is called Memo."
        assert all(REFERENCE_TIME.match(k["timestamp"]) for k in profile["user_knowledge"])
        found = await ok(client, "retrieve_memory", query="hiking trail", max_results=1)
        assert "name: Maya" in found["user_profile"]
        # max_results cuts the knowledge lists as in the reference; the totals count what was found.
        assert len(found["retrieved_user_knowledge"]) == 1 < found["total_user_knowledge_found"]
        assert set(found["retrieved_user_knowledge"][0]) == {"knowledge", "timestamp"}


# ------------------------------------------------------------------ pieces


def test_profile_text_is_one_line_per_fact_or_trait() -> None:
    profile = ProfileOut(
        static={"name": "Tom"},
        traits={"content_interests": {"hiking": TraitOut(level="High", evidence="trails")}},
    )
    assert profile_text(profile) == "name: Tom\ncontent_interests / hiking: High (trails)"
    assert profile_text(ProfileOut()) == NO_PROFILE


def test_reference_time_keeps_naive_times_and_shows_zoned_ones_locally() -> None:
    assert reference_time("2024-05-08T13:56:00") == "2024-05-08 13:56:00"
    assert REFERENCE_TIME.match(reference_time("2024-05-08T13:56:00+00:00"))
    assert reference_time("") == "" and reference_time("not a time") == "not a time"


def test_a_bad_compat_value_stops_serve_with_one_line_and_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMORYOS_COMPAT", "memoryos")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--data-dir", str(tmp_path / "data")])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert out == "" and "MEMORYOS_COMPAT must be '' or 'memoryos-reference'; got 'memoryos'" in line


def test_compat_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().compat == ""
    monkeypatch.setenv("MEMORYOS_COMPAT", "memoryos-reference")
    assert load_settings().compat == "memoryos-reference"


def test_random_arguments_at_the_compat_tools_end_in_a_result_or_a_clean_error(tmp_path: Path) -> None:
    """The fuzz of test_contract_fuzz.py, at the compat server: the reference tools' errors are JSON whose message
    is one plain sentence; no call fails at the protocol level or touches another user's memory."""
    server = compat_server(tmp_path)

    async def victim(client: Client) -> Any:
        listed = await client.call_tool("list_memories", {"user_id": VICTIM, "limit": 200})
        stats = await client.call_tool("memory_stats", {"user_id": VICTIM})
        assert listed.structured_content is not None and stats.structured_content is not None
        pages = sorted(
            (p["id"], p["user_input"], json.dumps(p["metadata"])) for p in listed.structured_content["pages"]
        )
        return pages, stats.structured_content["short_term_pages"], stats.structured_content["mid_term_pages"]

    async def setup() -> tuple[dict[str, dict[str, Any]], Any]:
        async with Client(server) as client:
            for i in range(5):
                await client.call_tool("add_memory", {"user_input": f"my garden note {i}", "user_id": VICTIM})
            tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
            return tools, await victim(client)

    tools, before = anyio.run(setup)
    reference = sorted(REFERENCE_TOOLS)
    calls = st.sampled_from(reference).flatmap(
        lambda name: st.tuples(st.just(name), arguments_for(tools[name]))
    )

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=st.lists(calls, min_size=1, max_size=3))
    def run(batch: list[tuple[str, dict[str, Any]]]) -> None:
        async def go() -> None:
            async with Client(server) as client:
                for name, arguments in batch:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        result = await client.call_tool(name, arguments)
                    data = json.loads(result.content[0].text)  # type: ignore[union-attr]
                    if result.is_error:
                        assert data["status"] == "error"
                        assert_clean(data["message"])
                    else:
                        assert data["status"] == "success" and data == result.structured_content

        anyio.run(go)

    run()

    async def after() -> Any:
        async with Client(server) as client:
            return await victim(client)

    assert anyio.run(after) == before, "a fuzzed call changed another user's memory"
