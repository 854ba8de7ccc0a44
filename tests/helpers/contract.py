"""Arguments generated from a tool's input schema (good and bad), and what a clean error message is."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from mcp import Client

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
