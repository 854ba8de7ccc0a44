from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.service import MemoryService
from memoryos_mcp.settings import Settings, load_settings
from tests.fakes import HashEmbedder


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
