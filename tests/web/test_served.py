"""The page served by the running server: beside stdio (found by `memoryos-mcp ui`), and at /ui over HTTP."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.helpers.fakes import free_port
from tests.helpers.mcp_calls import call, memoryos_command, server_env

pytestmark = pytest.mark.slow


async def test_the_stdio_server_serves_its_page_while_it_runs(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    params = StdioServerParameters(
        command=memoryos_command()[0],
        args=["serve", "--data-dir", str(data_dir), "--ui-port", str(port)],
        env=server_env(),
    )
    async with Client(params, read_timeout_seconds=120) as client:
        await call(
            client,
            "add_memory",
            user_input="I planted tomatoes and basil on the balcony",
            agent_response="Nice.",
        )
        found = await call(client, "memory_page")
        address = found["address"]
        refused = await client.call_tool("memory_page", {"user_id": ".."})
        assert refused.is_error and "user_id" in refused.content[0].text
        assert address.startswith(f"http://127.0.0.1:{port}/enter?ticket=")
        record = data_dir / "page.json"
        written = json.loads(record.read_text())
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        assert written["url"] == f"http://127.0.0.1:{port}" and written["secret"] not in address
        # `memoryos-mcp ui` finds the running server's page (it does not open the store itself)
        printed = await _ui(data_dir)
        printed_address = printed.stdout.strip()
        assert printed.returncode == 0, printed.stderr
        assert (
            printed_address.startswith(f"http://127.0.0.1:{port}/enter?ticket=")
            and printed_address != address
        )
        async with httpx.AsyncClient(timeout=30) as other:  # the address `ui` printed opens the page, once
            assert (await other.get(printed_address)).status_code == 200
            assert (await other.get(printed_address)).status_code == 403
        async with httpx.AsyncClient(timeout=30) as browser:
            assert (await browser.get(f"http://127.0.0.1:{port}/")).status_code == 401
            await browser.get(address)
            pages = await browser.get(f"http://127.0.0.1:{port}/pages", params={"user": "default"})
            assert pages.status_code == 200 and "tomatoes and basil" in pages.text
        listed = await call(client, "list_memories")
        assert listed["pages"][0]["user_input"] == "I planted tomatoes and basil on the balcony"
    assert not record.exists()  # removed at exit


async def test_over_http_the_page_is_at_ui_and_needs_a_token(tmp_path: Path) -> None:
    port = free_port()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"token": "alice-secret-token-1", "users": ["alice"]}]}))
    tokens.chmod(0o600)
    command = [*memoryos_command(), "serve", "--transport", "streamable-http", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data"), "--config", str(_config(tmp_path, tokens))]
    proc = subprocess.Popen(command, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=60) as browser:
            for _ in range(200):
                try:
                    login = await browser.get(f"{base}/ui/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert login.status_code == 303 and login.headers["location"] == "/ui/login"
            assert (await browser.get(f"{base}/mcp")).status_code == 401  # MCP itself still needs the token
            origin = {"Origin": base}
            wrong = await browser.post(f"{base}/ui/login", data={"token": "nope"}, headers=origin)
            assert wrong.status_code == 401
            ok = await browser.post(
                f"{base}/ui/login", data={"token": "alice-secret-token-1"}, headers=origin
            )
            assert ok.status_code == 303
            overview = await browser.get(f"{base}/ui/")
            assert overview.status_code == 200 and "memory of alice" in overview.text
            assert (await browser.get(f"{base}/ui/", params={"user": "bob"})).status_code == 400
            assert "secure" not in ok.headers["set-cookie"].lower()
            # behind a TLS proxy on this machine (X-Forwarded-Proto from loopback): the cookie is Secure
            tls = {"Origin": f"https://127.0.0.1:{port}", "X-Forwarded-Proto": "https"}
            proxied = await browser.post(
                f"{base}/ui/login", data={"token": "alice-secret-token-1"}, headers=tls
            )
            assert proxied.status_code == 303 and "secure" in proxied.headers["set-cookie"].lower()
    finally:
        proc.terminate()
        proc.wait(15)


async def test_over_http_on_loopback_ui_finds_the_page_and_the_log_keeps_no_ticket(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    command = [*memoryos_command(), "serve", "--transport", "streamable-http", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)], env=server_env(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(300):
            if (data_dir / "page.json").exists():
                break
            await asyncio.sleep(0.1)
        printed = await _ui(data_dir)
        address = printed.stdout.strip()
        assert address.startswith(f"http://127.0.0.1:{port}/ui/enter?ticket="), printed.stderr
        async with httpx.AsyncClient(timeout=30, follow_redirects=True) as browser:
            assert (await browser.get(address)).status_code == 200
            overview = await browser.get(f"http://127.0.0.1:{port}/ui/")
            assert overview.status_code == 200 and "Overview" in overview.text
    finally:
        proc.terminate()
        proc.wait(15)
    ticket = address.split("ticket=")[1]
    written = log.read_text()
    assert "/ui/enter?ticket=…" in written and ticket not in written
    assert not (data_dir / "page.json").exists()


def test_ui_serves_the_store_itself_when_no_server_holds_it(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    history = tmp_path / "h.jsonl"
    history.write_text(
        json.dumps({"user_input": "I keep bees on the roof", "agent_response": "Lovely."}) + "\n"
    )
    where = ["--data-dir", str(data_dir), "--user-id", "me"]
    imported = subprocess.run(
        [*memoryos_command(), "import", str(history), *where], env=server_env(), timeout=120
    )
    assert imported.returncode == 0
    proc = subprocess.Popen(
        [*memoryos_command(), "ui", *where, "--ui-port", str(port)],
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith(f"http://127.0.0.1:{port}/enter?ticket=") and "user=me" in address
        assert json.loads((data_dir / "page.json").read_text())["url"] == f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as browser:
            browser.get(address)
            assert "I keep bees on the roof" in browser.get("/pages", params={"user": "me"}).text
        proc.terminate()  # SIGTERM ends it as Ctrl-C does
        assert proc.wait(30) == 0
        assert not (data_dir / "page.json").exists()
    finally:
        proc.kill()
        proc.wait(10)


async def _ui(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`memoryos-mcp ui` for a data directory a running server holds: it prints that server's address."""
    return await asyncio.to_thread(
        subprocess.run,
        [*memoryos_command(), "ui", "--data-dir", str(data_dir)],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _config(tmp_path: Path, tokens: Path) -> Path:
    config = tmp_path / "memoryos.toml"
    config.write_text(f'auth_tokens_file = "{tokens}"\n')
    return config
