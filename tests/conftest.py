from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.server.mcpserver import MCPServer

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.mcp.server import build_server
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import Settings, load_settings
from tests.helpers.fakes import HashEmbedder, free_port


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's MEMORYOS_* settings, API keys or ~/.memoryos."""
    for key in list(os.environ):
        if key.startswith("MEMORYOS_") or key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def store(settings: Settings) -> ChromaStore:
    return ChromaStore(make_client(data_dir=settings.data_dir), settings.collection_prefix)


@pytest.fixture
def service(settings: Settings, store: ChromaStore, embedder: HashEmbedder) -> Iterator[MemoryService]:
    yield MemoryService(settings, store, embedder, LocalAnalyzer(settings.chain_threshold))


def _chroma_executable() -> str:
    local = Path(sys.executable).with_name("chroma")
    found = str(local) if local.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("the `chroma` command (shipped with chromadb) is not installed")
    return found


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`chroma run` on a free loopback port for the whole session."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [_chroma_executable(), "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma run did not listen within 30 s")
    yield port
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def server(settings: Settings, service: MemoryService) -> MCPServer:
    """The MCP server over the test's service (in-memory client: `Client(server)`)."""
    return build_server(settings, service_factory=lambda: service)
