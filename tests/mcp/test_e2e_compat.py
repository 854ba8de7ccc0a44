"""The paper's own MCP test client against our server, over stdio, with only its launch command changed.

Mirrors `memoryos-mcp/test_simple.py` of BAI-LAB/MemoryOS at commit 1d717060350931af33d1d0dc3d4e50a72c125a48
(Apache-2.0): the same client API (`ClientSession` over `stdio_client`), the same two server launches, the same
calls (15 add_memory calls, then two queries with relationship_with_user, style_hint and max_results — our own
texts in its shape, not its data), and its checks — every reply's first content block is TextContent holding
JSON with `status: "success"`, then `total_pages_found`, `short_term_count`, `retrieved_pages` and the expected words. Its
launch is `python server_new.py --config config.json` with short_term_capacity 2 in that file; ours is
`memoryos-mcp serve` with MEMORYOS_COMPAT=memoryos-reference and MEMORYOS_STM_CAPACITY=2. Where it only prints
a warning (the expected words, the first conversation reaching mid-term memory), this test asserts.

Its pauses (0.1 s per add, 3 s "for memory processing") are left out: our add_memory has finished its work when
it returns, so a later launch sees everything at once.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import get_default_environment, stdio_client

pytestmark = pytest.mark.slow

# Our own 15 exchanges, shaped like test_simple.py's (a person, a city, a job, an interest in machine learning
# and chatbots, then other topics), so that its checks — the expected words — apply unchanged.
CONVERSATIONS = [
    ("Hi there, my name is Tom and I live in San Francisco", "Nice to meet you, Tom. How do you like living in San Francisco?"),
    ("My job: I am a software engineer at a small startup", "A software engineer at a startup must keep you busy. What do you build?"),
    ("Mostly backend services in Python, some JavaScript for the dashboard", "Python for services and JavaScript for a dashboard is a common pair."),
    ("Lately machine learning has caught my attention", "What part of machine learning draws you in?"),
    ("I would like to understand neural networks properly", "We could start from a single neuron and build up to layers."),
    ("How do the weights get updated during training?", "Gradients of the loss are passed backwards and each weight takes a small step."),
    ("One side project I am sketching is a chatbot", "What should the chatbot do for its users?"),
    ("It would answer support questions for our customers", "A support chatbot needs to recognise intents and know when to hand over to a person."),
    ("Which libraries would you pick for that?", "Open-source toolkits for dialogue, or a small model fine-tuned on your tickets."),
    ("I lean towards open source wherever I can", "Then a self-hosted dialogue framework fits you well."),
    ("Some customers write in Spanish, some in German", "You could translate incoming messages or keep one model per language."),
    ("Outside work I go hiking most weekends", "There are good coastal trails within reach of the city."),
    ("Any trail you would recommend for a first visit?", "A redwood forest loop north of the bridge is an easy start."),
    ("I am thinking about a short trip next month", "Would you stay close or drive further out?"),
    ("Nothing more than a couple of hours by car", "Wine country, the coast to the south or the mountains to the east all fit."),
]  # fmt: skip
QUERIES = [
    ("What do you know about Tom from San Francisco?", ["Tom", "San Francisco", "software engineer"]),
    ("What is the user learning about machine learning?", ["neural networks", "chatbot", "machine learning"]),
]


def memoryos_mcp() -> str:
    exe = Path(sys.executable).with_name("memoryos-mcp")
    return str(exe) if exe.exists() else shutil.which("memoryos-mcp") or "memoryos-mcp"


def launch(data_dir: Path) -> StdioServerParameters:
    """The one line test_simple.py would change: our command and its settings, instead of server_new.py."""
    env = {**get_default_environment(), "MEMORYOS_COMPAT": "memoryos-reference", "MEMORYOS_STM_CAPACITY": "2"}
    return StdioServerParameters(command=memoryos_mcp(), args=["serve", "--data-dir", str(data_dir)], env=env)


def reply(result: types.CallToolResult) -> dict[str, Any]:
    """test_simple.py's reading of a reply: the first content block, TextContent, parsed as JSON."""
    assert result.content, "no response content"
    content = result.content[0]
    assert isinstance(content, types.TextContent), f"invalid response format: {content!r}"
    response: dict[str, Any] = json.loads(content.text)
    assert response.get("status") == "success", response.get("message", "Unknown error")
    return response


async def test_the_reference_test_client_passes_against_our_server(tmp_path: Path) -> None:
    params = launch(tmp_path / "memoryos_data")

    # Step 1 of test_simple.py: one launch, 15 add_memory calls, each must answer status "success".
    async with (
        stdio_client(params) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()
        for user_input, agent_response in CONVERSATIONS:
            reply(
                await session.call_tool(
                    "add_memory", {"user_input": user_input, "agent_response": agent_response}
                )
            )

    # Step 2: a second launch on the same memory, the two queries with the reference's arguments.
    async with (
        stdio_client(params) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()
        for n, (query, expected) in enumerate(QUERIES, 1):
            arguments = {
                "query": query,
                "relationship_with_user": "friend",
                "style_hint": "helpful",
                "max_results": 10,
            }
            response = reply(await session.call_tool("retrieve_memory", arguments))
            pages = response.get("retrieved_pages", [])
            for key in (
                "total_pages_found",
                "total_user_knowledge_found",
                "total_assistant_knowledge_found",
                "short_term_count",
            ):
                assert isinstance(response.get(key, 0), int), key
            assert all(
                isinstance(p["user_input"], str) and isinstance(p["agent_response"], str) for p in pages
            )
            full_text = json.dumps(response, ensure_ascii=False).lower()
            found = [word for word in expected if word.lower() in full_text]
            assert found, f"query {n}: none of {expected} in the reply"  # the reference only warns here
            if n == 1:
                assert (
                    response["total_pages_found"] > 0 and "tom" in full_text
                )  # the reference only warns here
                assert found == expected
                assert (
                    pages[0]["user_input"] == CONVERSATIONS[0][0]
                )  # the first exchange, from mid-term memory
            assert response["short_term_count"] <= 2
