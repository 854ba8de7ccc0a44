"""A service whose language model is the fake OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import load_settings
from memoryos_mcp.service.wiring import make_analyzer
from tests.helpers.fakes import HashEmbedder


def make_service(tmp_path: Path, base_url: str, **overrides: Any) -> MemoryService:
    options: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        llm_base_url=base_url,
        llm_api_key="test-key",
        llm_timeout_s=2.0,
        llm_max_retries=0,
        llm_cooldown_s=0.0,
        stm_capacity=3,
        stm_evict_batch=3,
        tau=100.0,  # promotion only where a test lowers it
    )
    options.update(overrides)
    settings = load_settings(**options)
    store = ChromaStore(make_client(data_dir=settings.data_dir), settings.collection_prefix)
    return MemoryService(settings, store, HashEmbedder(), make_analyzer(settings))
