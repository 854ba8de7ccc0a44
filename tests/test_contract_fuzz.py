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

VICTIM = "victim"
CALL_TIMEOUT_S = 20

# Text of every kind JSON can carry (surrogates cannot be encoded, so they never reach a server).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
HUGE = st.sampled_from(["x" * 25_000, "é" * 100_001, "word " * 50_000, "\x00" * 1000, "🙂" * 5000])
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 100, 101, 2**53, 2**53 + 1, -(2**53) - 1, 2**63, -(2**63) - 1, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, HUGE)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
USER_IDS = st.one_of(
    st.sampled_from(
        ["alice", "bob", "", "null", "None", ".", "..", "-", "a" * 64, "a" * 65, "a b", "ü", "VICTIM"]
    ),
    TEXT,
).filter(lambda uid: uid != VICTIM)
SAY = st.sampled_from(["I planted tomatoes", "We talked about the trip to Porto", "ok", "  ", ""]) | TEXT
# Values a careful caller would send, so that calls also succeed (and write) while the fuzz runs.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "user_id": st.sampled_from(["alice", "bob", "carol.x", "u-1", "_x"]),
    "user_input": SAY,
    "agent_response": SAY,
    "query": st.sampled_from(["tomatoes", "trip", "what did I plant?"]) | TEXT,
    "timestamp": st.sampled_from(["2024-05-08T13:56:00", "2024-05-08 13:56:00", "2024-05-08T13:56:00Z"]),
    "metadata": st.dictionaries(st.sampled_from(["turn", "topic", "n", "ok", "x.y"]), SCALARS, max_size=4),
    "top_k": st.integers(1, 100),
    "top_m": st.integers(1, 50),
}
# Values that are wrong in some way (or right by accident).
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "user_id": USER_IDS,
    "timestamp": st.sampled_from(["yesterday", "", "2024-13-45", "2024-05-08T25:00:00"]) | TEXT,
    "metadata": st.dictionaries(TEXT, JSON, max_size=5),
}


def value(name: str, good: bool) -> st.SearchStrategy[Any]:
    if good:
        return VALID.get(name, st.booleans())
    return WRONG.get(name, st.nothing()) | HUGE | JSON


def arguments_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid call, one with a wrong value, one with an unknown key, or any JSON object at all."""
    properties = list(schema.get("properties", {}))
    required = set(schema.get("required", []))
    valid = st.fixed_dictionaries(
        {name: value(name, True) for name in properties if name in required},
        optional={name: value(name, True) for name in properties if name not in required},
    )
    one_wrong = st.tuples(valid, st.sampled_from(properties)).flatmap(
        lambda pair: value(pair[1], False).map(lambda wrong: {**pair[0], pair[1]: wrong})
    )
    unknown = st.tuples(valid, TEXT.filter(lambda key: key not in properties), JSON).map(
        lambda t: {**t[0], t[1]: t[2]}
    )
    return st.one_of(valid, valid, one_wrong, unknown, st.dictionaries(TEXT, JSON, max_size=4))


def assert_clean(message: str) -> None:
    assert message and not message.startswith("Error executing tool"), (
        f"a crash, not a tool error: {message!r}"
    )
    assert (
        "\n" not in message and "validation error" not in message and "errors.pydantic.dev" not in message
    ), message
    assert len(message) < 600, f"{len(message)} characters: {message[:200]!r}"


async def victim_memory(client: Client) -> tuple[Any, ...]:
    stats = (await client.call_tool("memory_stats", {"user_id": VICTIM})).structured_content
    found = (
        await client.call_tool("retrieve_memory", {"query": "garden", "user_id": VICTIM, "top_k": 100})
    ).structured_content
    assert stats is not None and found is not None
    pages = [
        (p["id"], p["user_input"], p["agent_response"], p["metadata"])
        for p in found["short_term"] + found["mid_term"]
    ]
    counts = {k: v for k, v in stats.items() if k.endswith(("_pages", "segments", "_facts", "_traits"))}
    return tuple(sorted(pages)), tuple(sorted(counts.items()))


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
