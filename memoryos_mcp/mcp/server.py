"""The MCP server: its lifespan and what it registers. Only this package (memoryos_mcp/mcp/) imports mcp.

Heavy dependencies (Chroma, the embedding model) load in a background thread started by the lifespan, so
`initialize` and `tools/list` are answered at once; the sentence backfill starts when the service is up.
`ContractServer` (contract.py) holds every tool, prompt and resource to the contract the README states under Tools. With
compat = "memoryos-reference", add_memory, retrieve_memory and get_user_profile are registered in the dialect
of the paper's own MCP server instead (reference.py; mapping and result shapes in compat.py); the other tools,
the resource and the prompt are the same (tools.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from memoryos_mcp import __version__
from memoryos_mcp.mcp import compat
from memoryos_mcp.mcp.auth import static_token_auth
from memoryos_mcp.mcp.contract import Callers, ContractServer, PageHost, ServiceSlot
from memoryos_mcp.mcp.reference import reference_tools
from memoryos_mcp.mcp.tools import common_tools, memory_tools
from memoryos_mcp.service.backfill import SentenceBackfill
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.lazy import LazyService
from memoryos_mcp.service.settings import Settings

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Long-term memory for this conversation partner, organised like the MemoryOS paper: short-term (recent pages),
mid-term (topic segments ranked by heat) and a long-term persona (profile, user facts, assistant traits).
Call retrieve_memory before answering anything that may depend on earlier conversations; call add_memory after
each exchange worth remembering. Pass the same user_id for one person every time. When the person asks what
you remember about them, give them the address memory_page returns: there they see and correct it."""


def build_server(
    settings: Settings,
    service_factory: Callable[[], MemoryService] | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    page: PageHost | None = None,
) -> MCPServer:
    """An MCPServer whose lifespan starts the memory service (by default from `settings`) in the background.

    Over HTTP, requests are authenticated by `token_verifier` under `auth` (the MCP SDK's resource-server
    hooks); by default those come from `settings.auth_tokens_file`. To use OAuth instead, pass a verifier
    that introspects the token and returns an AccessToken whose subject is the user (or whose claims carry
    `memoryos_users`), with AuthSettings naming the issuer and this server's resource URL.
    """
    factory = service_factory or (lambda: MemoryService.for_serving(settings))
    slot = ServiceSlot()
    if token_verifier is None and auth is None:
        token_verifier, auth = static_token_auth(settings) or (None, None)
    callers = Callers(
        settings.user_id, None if settings.allowed_users is None else frozenset(settings.allowed_users)
    )

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        # Nothing to flush at exit: every call already left its data durable in Chroma. Index snapshots of
        # large users are saved as they change; a last one at exit makes the next start faster still.
        backfills: list[SentenceBackfill] = []

        def ready(service: MemoryService) -> None:
            if service.settings.sentence_backfill:
                backfills.append(SentenceBackfill(service).start())

        slot.lazy = LazyService(factory, on_ready=ready).start()
        if page is not None:
            page.attach(slot.lazy.get)
        try:
            yield None
        finally:
            if page is not None:
                await anyio.to_thread.run_sync(page.detach)
            for backfill in backfills:
                await anyio.to_thread.run_sync(backfill.stop)
            service = slot.lazy.ready()
            if service is not None:
                await anyio.to_thread.run_sync(service.memory.save_snapshots)

    mcp = ContractServer(
        "memoryos",
        json_errors=compat.REFERENCE_TOOLS if settings.compat == compat.REFERENCE else frozenset(),
        title="MemoryOS memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        token_verifier=token_verifier,
        auth=auth,
        callers=callers,
        slot=slot,
    )

    if settings.compat == compat.REFERENCE:
        reference_tools(mcp, slot)
    else:
        memory_tools(mcp, slot)

    common_tools(mcp, slot, callers, page)

    return mcp
