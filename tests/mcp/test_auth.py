"""Who may read whose memory over HTTP: bearer tokens bound to users, checked over real HTTP with the MCP client.

The server is the real Starlette app of build_server under uvicorn on a free loopback port; the client is the
SDK's streamable HTTP client with an Authorization header.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from memoryos_mcp.core.errors import ConfigurationError, InvalidInputError
from memoryos_mcp.mcp.server import build_server
from memoryos_mcp.service.access import Grant, TokenTable, resolve_user
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import Settings, load_settings
from memoryos_mcp.service.wiring import prepare_to_serve
from tests.helpers.fakes import free_port
from tests.helpers.mcp_calls import INITIALIZE, call, error

ALICE = "alice-token-0123456789abcdef"
PAIR = "alice-and-bob-token-0123456789"
ADMIN = "admin-token-0123456789abcdef-zz"  # stored only as its SHA-256 digest


def write_tokens(path: Path, tokens: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"tokens": tokens}))
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(
        tmp_path / "tokens.json",
        [
            {"token": ALICE, "users": ["alice"], "name": "alice-laptop"},
            {"token": PAIR, "users": ["alice", "bob"]},
            {"token_sha256": hashlib.sha256(ADMIN.encode()).hexdigest(), "users": ["*"]},
        ],
    )


@asynccontextmanager
async def serving(settings: Settings, service: MemoryService) -> AsyncIterator[str]:
    """The HTTP app of build_server under uvicorn on a free loopback port; yields the endpoint URL."""
    port = free_port()
    app = build_server(settings, service_factory=lambda: service).streamable_http_app(host="127.0.0.1")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def url(tmp_path: Path, tokens_file: Path, service: MemoryService) -> AsyncIterator[str]:
    settings = load_settings(data_dir=tmp_path / "data", auth_tokens_file=tokens_file)
    async with serving(settings, service) as endpoint:
        yield endpoint


@asynccontextmanager
async def client_with(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def post_initialize(url: str, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(
            url,
            json=INITIALIZE,
            headers={"Accept": "application/json, text/event-stream", **headers},
        )


# ------------------------------------------------------------------ over HTTP


async def test_no_token_is_401_before_any_mcp_processing(url: str) -> None:
    response = await post_initialize(url, {})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert "jsonrpc" not in response.text


async def test_unknown_or_malformed_token_is_401(url: str) -> None:
    for header in (
        f"Bearer {ALICE}x",
        f"Bearer {ALICE[:-1]}",
        f"Bearer {ADMIN.upper()}",
        f"Basic {ALICE}",
        ALICE,
    ):
        response = await post_initialize(url, {"Authorization": header})
        assert response.status_code == 401, header


async def test_a_known_token_gets_through(url: str) -> None:
    response = await post_initialize(url, {"Authorization": f"Bearer {ALICE}"})
    assert response.status_code == 200
    assert "serverInfo" in response.text


async def test_the_mcp_client_without_a_valid_token_cannot_connect(url: str) -> None:
    for token in (None, "not-a-token-0123456789"):
        with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own error group
            async with client_with(url, token) as client:
                await client.list_tools()


async def test_alices_token_cannot_touch_bobs_memory(url: str) -> None:
    async with client_with(url, ADMIN) as admin:
        await call(admin, "add_memory", user_input="bob's secret plan about the lighthouse", user_id="bob")
    async with client_with(url, ALICE) as alice:
        for tool, arguments in [
            ("add_memory", {"user_input": "hi", "user_id": "bob"}),
            ("retrieve_memory", {"query": "lighthouse", "user_id": "bob"}),
            ("get_user_profile", {"user_id": "bob"}),
            ("memory_stats", {"user_id": "bob"}),
        ]:
            message = await error(alice, tool, **arguments)
            assert "user_id 'bob' is not allowed for this token: it may act for 'alice'" in message, message
            assert "lighthouse" not in message
        with pytest.raises(Exception, match="not allowed for this token"):
            await alice.get_prompt("memory_context", {"query": "lighthouse", "user_id": "bob"})
    async with client_with(url, ADMIN) as admin:
        bob = await call(admin, "memory_stats", user_id="bob")
        assert bob["short_term_pages"] == 1  # alice's refused add stored nothing


async def test_a_call_without_user_id_acts_for_the_tokens_one_user(url: str) -> None:
    async with client_with(url, ALICE) as alice:
        added = await call(alice, "add_memory", user_input="I keep bees on the roof")
        assert added["user_id"] == "alice"
        found = await call(alice, "retrieve_memory", query="bees")
        assert found["user_id"] == "alice" and found["short_term"][0]["id"] == added["page_id"]
        status = await alice.read_resource("memoryos://status")
        assert '"user_id": "alice"' in status.contents[0].text  # type: ignore[union-attr]
        prompt = await alice.get_prompt("memory_context", {"query": "bees"})
        assert "bees" in prompt.messages[0].content.text  # type: ignore[union-attr]
    async with client_with(url, ADMIN) as admin:
        default = await call(admin, "memory_stats")
        assert default["user_id"] == "default" and default["short_term_pages"] == 0
        assert (await call(admin, "memory_stats", user_id="alice"))["short_term_pages"] == 1


async def test_a_token_for_several_users_must_name_one(url: str) -> None:
    async with client_with(url, PAIR) as pair:
        message = await error(pair, "memory_stats")
        assert "user_id is required: this caller may act for 'alice' and 'bob'" in message
        assert (await call(pair, "add_memory", user_input="hello", user_id="bob"))["user_id"] == "bob"
        assert "not allowed for this token" in await error(pair, "memory_stats", user_id="carol")


async def test_a_star_token_acts_for_any_user(url: str) -> None:
    async with client_with(url, ADMIN) as admin:
        for user in ("carol", "dave", "alice"):
            added = await call(admin, "add_memory", user_input=f"note of {user}", user_id=user)
            assert added["user_id"] == user
        assert (await call(admin, "retrieve_memory", query="note", user_id="dave"))["short_term"][0][
            "user_input"
        ] == "note of dave"


async def test_allowed_users_narrows_every_token(
    tmp_path: Path, tokens_file: Path, service: MemoryService
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", auth_tokens_file=tokens_file, allowed_users=["alice"]
    )
    async with serving(settings, service) as endpoint, client_with(endpoint, ADMIN) as admin:
        assert (await call(admin, "memory_stats"))["user_id"] == "alice"  # the only user left to act for
        assert "not among this server's allowed_users" in await error(admin, "memory_stats", user_id="bob")


async def test_without_a_tokens_file_loopback_http_is_open(tmp_path: Path, service: MemoryService) -> None:
    async with serving(load_settings(data_dir=tmp_path / "data"), service) as endpoint:
        async with client_with(endpoint, None) as client:
            assert (await call(client, "memory_stats", user_id="anyone"))["user_id"] == "anyone"


# ------------------------------------------------------------------ refusing to start


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("memoryos-mcp")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_")}
    return subprocess.run(
        [str(exe), "serve", *args],
        env={**base, **(env or {})},
        input=json.dumps(INITIALIZE) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_open_bind_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    done = _serve(
        "--transport",
        "streamable-http",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "refusing to serve HTTP on 0.0.0.0" in line and "MEMORYOS_AUTH_TOKENS_FILE" in line


def test_a_bad_tokens_file_refuses_to_start(tmp_path: Path) -> None:
    bad = write_tokens(tmp_path / "t.json", [{"token": "short", "users": ["alice"]}])
    done = _serve(
        "--transport",
        "streamable-http",
        "--data-dir",
        str(tmp_path),
        env={"MEMORYOS_AUTH_TOKENS_FILE": str(bad)},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "token entry 1: a token must be at least 16" in done.stderr and "Traceback" not in done.stderr


def test_an_open_bind_with_tokens_passes_the_checks(tmp_path: Path, tokens_file: Path) -> None:
    prepare_to_serve(
        load_settings(
            data_dir=tmp_path / "d", transport="streamable-http", host="0.0.0.0", auth_tokens_file=tokens_file
        )
    )
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        prepare_to_serve(load_settings(data_dir=tmp_path / host, transport="streamable-http", host=host))
    with pytest.raises(ConfigurationError, match="refusing to serve HTTP on 192.168.1.5"):
        prepare_to_serve(
            load_settings(data_dir=tmp_path / "e", transport="streamable-http", host="192.168.1.5")
        )


# ------------------------------------------------------------------ the token table and user binding


def test_tokens_match_in_clear_and_by_digest_only_exactly(tokens_file: Path) -> None:
    table = TokenTable.load(tokens_file)
    assert len(table) == 3
    alice = table.lookup(ALICE)
    assert alice is not None and alice.name == "alice-laptop" and alice.users == frozenset({"alice"})
    admin = table.lookup(ADMIN)
    assert admin is not None and admin.users is None and admin.name == "token 3"
    for wrong in ("", ALICE + " ", ALICE[1:], hashlib.sha256(ADMIN.encode()).hexdigest()):
        assert table.lookup(wrong) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ('{"tokens": []}', "with at least one token"),
        ('{"tokens": [{"users": ["a"]}]}', "needs exactly one of 'token'"),
        (
            '{"tokens": [{"token": "0123456789abcdefX", "token_sha256": "00", "users": ["a"]}]}',
            "exactly one of",
        ),
        ('{"tokens": [{"token": "0123456789abcdefX"}]}', 'needs "users"'),
        ('{"tokens": [{"token": "0123456789abcdefX", "users": []}]}', 'needs "users"'),
        ('{"tokens": [{"token": "0123456789abcdefX", "users": ["null"]}]}', "'null' is not a user_id"),
        ('{"tokens": [{"token": "has spaces in it, 123", "users": ["a"]}]}', "without spaces"),
        ('{"tokens": [{"token_sha256": "abc", "users": ["a"]}]}', "64 hexadecimal characters"),
        (
            '{"tokens": [{"token": "0123456789abcdefX", "users": ["a"], "scope": "x"}]}',
            "unknown key(s) 'scope'",
        ),
        (
            '{"tokens": [{"token": "0123456789abcdefX", "users": ["a"]}, {"token": "0123456789abcdefX", "users": ["b"]}]}',
            "repeats",
        ),
    ],
)
def test_a_bad_tokens_file_says_what_to_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as failure:
        TokenTable.load(path)
    assert message in str(failure.value)
    assert "0123456789abcdefX" not in str(failure.value)  # a token never appears in a message


def test_a_world_readable_file_with_clear_tokens_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"tokens": [{"token": ALICE, "users": ["alice"]}]}))
    path.chmod(0o644)
    TokenTable.load(path)
    assert "chmod 600" in caplog.text and ALICE not in caplog.text


def test_resolve_user_rules() -> None:
    one = Grant("one", frozenset({"alice"}))
    anyone = Grant("any", None)
    assert resolve_user(None, default="default", grant=None, allowed=None) == "default"
    assert resolve_user(None, default="default", grant=one, allowed=None) == "alice"
    assert resolve_user(None, default="default", grant=anyone, allowed=None) == "default"
    assert resolve_user(None, default="default", grant=None, allowed=frozenset({"zed"})) == "zed"
    assert resolve_user("alice", default="default", grant=one, allowed=None) == "alice"
    with pytest.raises(InvalidInputError, match="is not allowed for this token"):
        resolve_user("bob", default="default", grant=one, allowed=None)
    with pytest.raises(InvalidInputError, match="may act for no user"):
        resolve_user(None, default="default", grant=one, allowed=frozenset({"bob"}))
    with pytest.raises(InvalidInputError, match="user_id '' is invalid"):
        resolve_user("", default="default", grant=anyone, allowed=None)
