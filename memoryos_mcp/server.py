"""The MCP surface: tools, resources and a prompt. Thin — each tool validates via the service and returns a model.

Only this module imports mcp. Heavy dependencies (Chroma, torch) load in a background thread started by the
lifespan, so `initialize` and `tools/list` are answered at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from memoryos_mcp import __version__
from memoryos_mcp.errors import MemoryOSError
from memoryos_mcp.schemas import (
    AddMemoryResult,
    ForgetMemoryResult,
    ListMemoriesResult,
    MemoryStats,
    RetrieveMemoryResult,
    UserProfileResult,
)
from memoryos_mcp.service import LazyService, MemoryService
from memoryos_mcp.settings import Settings

T = TypeVar("T")

INSTRUCTIONS = """\
Long-term memory for this conversation partner, organised like the MemoryOS paper: short-term (recent pages),
mid-term (topic segments ranked by heat) and a long-term persona (profile, user facts, assistant traits).
Call retrieve_memory before answering anything that may depend on earlier conversations; call add_memory after
each exchange worth remembering. Pass the same user_id for one person every time."""

UserId = Annotated[
    str | None,
    Field(description="Whose memory: 1-64 of [A-Za-z0-9._-]. Omit to use the server's default user."),
]


class _ServiceSlot:
    """Where the lifespan puts the service; tools and resources read it from here."""

    def __init__(self) -> None:
        self.lazy: LazyService | None = None

    def get(self) -> MemoryService:
        if self.lazy is None:
            raise ToolError("the memory server is not running (no lifespan); this is a bug in the host program")
        return self.lazy.get()


def _call(slot: _ServiceSlot, fn: Callable[[MemoryService], T]) -> T:
    try:
        return fn(slot.get())
    except MemoryOSError as exc:
        # Only ToolError messages reach the client; domain errors carry an actionable message.
        raise ToolError(str(exc)) from exc


def build_server(settings: Settings, service_factory: Callable[[], MemoryService] | None = None) -> MCPServer:
    """An MCPServer whose lifespan starts the memory service (by default from `settings`) in the background."""
    factory = service_factory or (lambda: MemoryService.create(settings))
    slot = _ServiceSlot()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        # Nothing to flush at exit: every call already left its data durable in Chroma. Index snapshots of
        # large users are saved as they change; a last one at exit makes the next start faster still.
        slot.lazy = LazyService(factory).start()
        try:
            yield None
        finally:
            service = slot.lazy.ready()
            if service is not None:
                await anyio.to_thread.run_sync(service.memory.save_snapshots)

    mcp = MCPServer(
        "memoryos",
        title="MemoryOS memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
    )

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False))
    def add_memory(
        user_input: Annotated[str, Field(description="What the user said in this exchange (may be empty if agent_response is not).")] = "",
        agent_response: Annotated[str, Field(description="What the assistant answered (may be empty if user_input is not).")] = "",
        user_id: UserId = None,
        timestamp: Annotated[
            str | None,
            Field(description="When the exchange happened: ISO-8601 ('2024-05-08T13:56:00') or 'YYYY-MM-DD HH:MM:SS'. Default: now."),
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description="Flat JSON object of string/number/boolean values stored with the page and returned with it."),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Any string unique to this exchange (per user). A second add with the same key stores "
                "nothing and returns the first page's id: pass one when a call may be retried.",
                max_length=256,
            ),
        ] = None,
    ) -> AddMemoryResult:
        """Remember one exchange (a "page") between the user and you.

        The page enters short-term memory at once and is durable when this returns. When short-term memory
        overflows, the oldest pages move to mid-term topic segments; hot segments are analysed into the
        user's long-term profile. The result says what happened. Texts are limited to max_text_chars
        (default 20,000) each.
        """
        return _call(slot, lambda s: s.add_memory(user_input, agent_response, user_id, timestamp, metadata, idempotency_key))

    # Not read-only: retrieval is what heats a segment (the paper's N_visit and last access are written).
    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False))
    def retrieve_memory(
        query: Annotated[str, Field(description="What to look for: the user's question or the topic at hand.")],
        user_id: UserId = None,
        top_k: Annotated[int | None, Field(description="Mid-term pages to return (default 10).", ge=1, le=100)] = None,
        top_m: Annotated[int | None, Field(description="Mid-term segments searched (default 5).", ge=1, le=50)] = None,
        include_short_term: Annotated[bool, Field(description="Also return the most recent pages.")] = True,
        since: Annotated[
            str | None, Field(description="Only pages dated on or after this ISO-8601 date or datetime ('2024-05-01').")
        ] = None,
        until: Annotated[
            str | None,
            Field(description="Only pages dated on or before this ISO-8601 date or datetime (a date includes that whole day)."),
        ] = None,
    ) -> RetrieveMemoryResult:
        """Find what you remember about a query, from all memory tiers.

        Returns the recent short-term pages, the best mid-term pages (from the top-m segments by topic match,
        then top-k pages by similarity, each with id, timestamp, segment, score, chain summary and metadata),
        the user's profile, relevant user facts and assistant traits, and `context`: all of it as one text
        block to read before answering. Makes no LLM call. Records a visit on each segment returned (that is
        what makes a topic hot in the paper's heat model), so it is not read-only.
        """
        return _call(
            slot,
            lambda s: s.retrieve_memory(query, user_id, top_k, top_m, include_short_term, since=since, until=until),
        )

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def get_user_profile(
        user_id: UserId = None,
        include_knowledge: Annotated[bool, Field(description="Include the facts learned about the user.")] = True,
        include_assistant_traits: Annotated[bool, Field(description="Include facts learned about you, the assistant.")] = True,
    ) -> UserProfileResult:
        """The user's long-term persona: static profile (name, location, ...), trait dimensions with evidence,
        and optionally the user knowledge and assistant traits learned from conversations.

        Profiling needs an LLM; without one the profile is empty and `note` says how to enable it.
        """
        return _call(slot, lambda s: s.get_user_profile(user_id, include_knowledge, include_assistant_traits))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def memory_stats(user_id: UserId = None) -> MemoryStats:
        """Counts per memory tier for a user, plus the server's total LLM calls and tokens and peak memory use."""
        return _call(slot, lambda s: s.stats(user_id))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def list_memories(
        user_id: UserId = None,
        kind: Annotated[
            str,
            Field(description="pages (exchanges), segments (mid-term topics with heat) or facts (user facts and "
                  "assistant traits with the pages they came from, plus the profile)."),
        ] = "pages",
        tier: Annotated[str, Field(description="For pages: short_term, mid_term or all.")] = "all",
        since: Annotated[str | None, Field(description="Only items dated on or after this ISO-8601 date or datetime.")] = None,
        until: Annotated[str | None, Field(description="Only items dated on or before this (a date includes its whole day).")] = None,
        limit: Annotated[int | None, Field(description="Items per call (default 50, at most 200).", ge=1, le=200)] = None,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous call, to continue the listing.")] = None,
    ) -> ListMemoriesResult:
        """List what is remembered about a user, newest first: pages with id, tier, timestamp, texts, segment and
        metadata; or segments; or facts and the profile. Use the ids with forget_memory. Makes no change."""
        return _call(slot, lambda s: s.list_memories(user_id, kind, tier, since, until, limit, cursor))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False))
    def forget_memory(
        user_id: UserId = None,
        page_ids: Annotated[list[str] | None, Field(description="Pages to forget (ids from list_memories or retrieve_memory).")] = None,
        fact_ids: Annotated[list[str] | None, Field(description="User facts or assistant traits to forget (ids from list_memories).")] = None,
        before: Annotated[str | None, Field(description="Forget every page dated before this ISO-8601 date or datetime.")] = None,
        all: Annotated[bool, Field(description="Forget everything of this user: pages, segments, chain state, profile, facts.")] = False,  # noqa: A002 - the contract's name
        confirm: Annotated[str | None, Field(description="With all=true: the user_id again, to confirm.")] = None,
    ) -> ForgetMemoryResult:
        """Forget memories for good: the named pages from every tier and every later result, and what was learned
        only from them (segment summaries are recomputed from the pages kept; facts learned only from forgotten
        pages are removed). Unknown ids are reported, not an error. all=true needs confirm equal to the user_id."""
        return _call(slot, lambda s: s.forget_memory(user_id, page_ids, fact_ids, before, all, confirm))

    @mcp.resource("memoryos://status", mime_type="application/json", description="Tier counts for the default user and server-wide LLM usage")
    def status() -> str:
        stats = _call(slot, lambda s: s.stats(None))
        return json.dumps(stats.model_dump(), indent=2)

    @mcp.prompt()
    def memory_context(query: str, user_id: str | None = None) -> str:
        """Memory relevant to `query`, assembled as context for answering the user."""
        result = _call(slot, lambda s: s.retrieve_memory(query, user_id))
        return f"Use this memory of earlier conversations when you answer.\n\n{result.context}"

    return mcp
