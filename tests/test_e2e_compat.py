"""The paper's own MCP test client against our server, over stdio, with only its launch command changed.

Mirrors `memoryos-mcp/test_simple.py` of BAI-LAB/MemoryOS at commit 1d717060350931af33d1d0dc3d4e50a72c125a48
(Apache-2.0): the same client API (`ClientSession` over `stdio_client`), the same two server launches, the same
calls with the same arguments (its 15 conversations, its two queries with relationship_with_user, style_hint and
max_results), and its checks — every reply's first content block is TextContent holding JSON with
`status: "success"`, then `total_pages_found`, `short_term_count`, `retrieved_pages` and the expected words. Its
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

# The 15 exchanges of test_simple.py, in its order: test data, kept as is so that the calls are the same.
CONVERSATIONS = [
    ("Hello, I'm Tom from San Francisco", "Hello Tom! Nice to meet you. San Francisco is a great city!"),
    ("I work as a software engineer", "That's awesome! Software engineering is a fascinating field. What technologies do you work with?"),
    ("I mainly use Python and JavaScript", "Great choice! Python and JavaScript are very popular and powerful languages."),
    ("I'm interested in machine learning", "Machine learning is an exciting field! Are you focusing on any particular area?"),
    ("I want to learn about neural networks", "Neural networks are the foundation of deep learning. Would you like to start with the basics?"),
    ("Yes, please explain backpropagation", "Backpropagation is the key algorithm for training neural networks. It calculates gradients to update weights."),
    ("I have a project idea about chatbots", "Chatbots are a great application of ML! What kind of chatbot are you thinking about?"),
    ("A customer service chatbot", "Customer service chatbots can be very helpful. You'll need to consider intent recognition and response generation."),
    ("What frameworks should I use?", "For chatbots, you could use frameworks like Rasa, Dialogflow, or build with PyTorch/TensorFlow."),
    ("I prefer open source solutions", "Great! Rasa is an excellent open-source framework for building conversational AI."),
    ("How do I handle multiple languages?", "For multilingual support, you can use translation APIs or train separate models for each language."),
    ("I also like hiking in my free time", "Hiking is a wonderful hobby! San Francisco has some great trails nearby like Lands End and Mount Sutro."),
    ("Do you know any good hiking spots?", "Yes! You might enjoy Muir Woods, Mount Tamalpais, or the coastal trails in Pacifica."),
    ("I'm planning a weekend trip", "That sounds fun! Are you thinking of staying local or going somewhere further?"),
    ("Maybe somewhere within 2 hours drive", "Perfect! You could visit Napa Valley, Santa Cruz, or even go to Lake Tahoe if you don't mind a slightly longer drive."),
]  # fmt: skip
QUERIES = [
    ("Tell me about Tom from San Francisco", ["Tom", "San Francisco", "software engineer"]),
    ("What does the user want to learn about machine learning?", ["neural networks", "chatbot", "machine learning"]),
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
    async with stdio_client(params) as (read_stream, write_stream), ClientSession(read_stream, write_stream) as session:
        await session.initialize()
        for user_input, agent_response in CONVERSATIONS:
            reply(await session.call_tool("add_memory", {"user_input": user_input, "agent_response": agent_response}))

    # Step 2: a second launch on the same memory, the two queries with the reference's arguments.
    async with stdio_client(params) as (read_stream, write_stream), ClientSession(read_stream, write_stream) as session:
        await session.initialize()
        for n, (query, expected) in enumerate(QUERIES, 1):
            arguments = {"query": query, "relationship_with_user": "friend", "style_hint": "helpful", "max_results": 10}
            response = reply(await session.call_tool("retrieve_memory", arguments))
            pages = response.get("retrieved_pages", [])
            for key in ("total_pages_found", "total_user_knowledge_found", "total_assistant_knowledge_found", "short_term_count"):
                assert isinstance(response.get(key, 0), int), key
            assert all(isinstance(p["user_input"], str) and isinstance(p["agent_response"], str) for p in pages)
            full_text = json.dumps(response, ensure_ascii=False).lower()
            found = [word for word in expected if word.lower() in full_text]
            assert found, f"query {n}: none of {expected} in the reply"  # the reference only warns here
            if n == 1:
                assert response["total_pages_found"] > 0 and "tom" in full_text  # the reference only warns here
                assert found == expected
                assert pages[0]["user_input"] == CONVERSATIONS[0][0]  # the first exchange, from mid-term memory
            assert response["short_term_count"] <= 2
