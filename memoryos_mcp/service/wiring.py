"""How the service is put together from settings: the store, the embedder, the language model or none, the
index snapshots, the paper's parameters; and the checks that must fail `serve` before it answers."""

from __future__ import annotations

import logging
from dataclasses import fields

from memoryos_mcp.core.errors import ConfigurationError, StorageError
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.memory import MemoryParams
from memoryos_mcp.core.protocols import IndexSnapshots, MemoryAnalyzer, MemoryStore
from memoryos_mcp.service.settings import Settings, is_loopback

logger = logging.getLogger(__name__)


def params_from(settings: Settings) -> MemoryParams:
    """The paper parameters of `settings` (same names); the rest of MemoryParams keeps its defaults."""
    return MemoryParams(
        **{f.name: getattr(settings, f.name) for f in fields(MemoryParams) if f.name in Settings.model_fields}
    )


def make_analyzer(settings: Settings) -> MemoryAnalyzer:
    """The LLM analyzer when an endpoint or key is configured, else the local one."""
    if not settings.llm_configured:
        return LocalAnalyzer(chain_threshold=settings.chain_threshold)
    from memoryos_mcp.adapters.openai_llm import OpenAIChat  # openai import (~0.7 s) only when used
    from memoryos_mcp.core.llm_analyzer import LLMAnalyzer

    chat = OpenAIChat(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        max_tokens=settings.llm_max_tokens,
        cooldown_s=settings.llm_cooldown_s,
        json_mode=settings.llm_json_mode,
    )
    return LLMAnalyzer(chat)


def make_snapshots(settings: Settings) -> IndexSnapshots | None:
    """Where index snapshots of this store live: under the data dir, one folder per Chroma location."""
    if not settings.index_snapshots:
        return None
    from memoryos_mcp.adapters.snapshots import SnapshotStore

    prefix = settings.collection_prefix
    if settings.chroma_host:
        location = f"{settings.chroma_host}:{settings.chroma_port}"
        folder = (
            settings.data_dir / "index-snapshots" / f"{settings.chroma_host}_{settings.chroma_port}_{prefix}"
        )
        return SnapshotStore(folder, identity=f"{prefix}@{location}")
    # The embedded store and its snapshots live in the same data dir and move together: a data dir moved,
    # renamed or mounted elsewhere keeps its snapshots (a 100k-page user would otherwise wait ~25 s for its
    # index to be rebuilt from the store). Snapshots written under the data dir's path before are still read.
    folder = settings.data_dir / "index-snapshots" / prefix
    legacy = f"{prefix}@{settings.data_dir.resolve()}"
    return SnapshotStore(folder, identity=f"{prefix}@embedded", also_accepted=(legacy,))


def prepare_to_serve(settings: Settings) -> None:
    """Checks that must fail `serve` before it answers `initialize`: cheap, so the handshake stays fast.

    A desktop client shows a server that exits at once as failed, with its stderr; one that starts and then
    fails every call just looks broken. So an open bind without tokens and a data directory already in use
    stop here; Chroma and the embedding model still load in the background afterwards.
    """
    if (
        settings.transport == "streamable-http"
        and settings.auth_tokens_file is None
        and not is_loopback(settings.host)
    ):
        raise ConfigurationError(
            f"refusing to serve HTTP on {settings.host}:{settings.port} without authentication: anyone who can "
            "reach that address could read and change every user's memory. Set MEMORYOS_AUTH_TOKENS_FILE to a "
            "token file (README, Security), or bind to 127.0.0.1"
        )
    if settings.transport == "stdio" and settings.auth_tokens_file is not None:
        logger.info(
            "auth_tokens_file applies to HTTP only; on stdio the caller is the local user who started the server"
        )
    if settings.chroma_host is None:
        from memoryos_mcp.adapters.dir_lock import lock_data_dir

        lock_data_dir(settings.data_dir)


def open_store(settings: Settings) -> MemoryStore:
    """The Chroma store the settings name: embedded in the data dir, or a Chroma server."""
    from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client

    try:
        client = make_client(
            data_dir=settings.data_dir,
            host=settings.chroma_host,
            port=settings.chroma_port,
            ssl=settings.chroma_ssl,
        )
        return ChromaStore(client, settings.collection_prefix)
    except Exception as exc:
        where = (
            f"{settings.chroma_host}:{settings.chroma_port}"
            if settings.chroma_host
            else str(settings.data_dir)
        )
        raise StorageError(f"cannot open Chroma at {where}: {exc}") from exc
