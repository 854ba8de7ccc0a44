"""Our tools (the contract the README states under Tools), the status resource and the memory_context prompt: a few lines each."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, TypeVar

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from memoryos_mcp.mcp import texts
from memoryos_mcp.mcp.arguments import (
    READS,
    WRITES,
    AgentResponse,
    IdempotencyKey,
    IncludeKnowledge,
    IncludeShortTerm,
    MaxTokens,
    Metadata,
    Query,
    Since,
    Timestamp,
    TopK,
    TopM,
    Until,
    UserId,
    UserInput,
)
from memoryos_mcp.mcp.contract import (
    Callers,
    ContractServer,
    PageHost,
    ServiceSlot,
    answer,
    call,
    whole_number,
)
from memoryos_mcp.service.schemas import (
    AddMemoryResult,
    ForgetMemoryResult,
    ListMemoriesResult,
    MemoryPageResult,
    MemoryStats,
    RetrieveMemoryResult,
    UpdateMemoryResult,
    UserProfileResult,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)


def memory_tools(mcp: MCPServer, slot: ServiceSlot) -> None:
    """add_memory, retrieve_memory and get_user_profile: our contract."""

    @mcp.tool(annotations=WRITES)
    def add_memory(
        user_input: UserInput = "",
        agent_response: AgentResponse = "",
        user_id: UserId = None,
        timestamp: Timestamp = None,
        metadata: Metadata = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, AddMemoryResult]:
        """Remember one exchange (a "page") between the user and you.

        The page enters short-term memory at once and is durable when this returns. When short-term memory
        overflows, the oldest pages move to mid-term topic segments; hot segments are analysed into the
        user's long-term profile. The result says what happened. Texts are limited to max_text_chars
        (default 20,000) each.
        """
        return answer(
            call(
                slot,
                lambda s: s.add_memory(
                    user_input, agent_response, user_id, timestamp, metadata, idempotency_key
                ),
            ),
            texts.added,
        )

    # Not read-only: retrieval is what heats a segment (the paper's N_visit and last access are written).
    @mcp.tool(annotations=WRITES)
    def retrieve_memory(
        query: Query,
        user_id: UserId = None,
        top_k: TopK = None,
        top_m: TopM = None,
        include_short_term: IncludeShortTerm = True,
        since: Since = None,
        until: Until = None,
        max_tokens: MaxTokens = None,
        explain: Annotated[
            bool,
            Field(description="Also give each mid-term page the parts of its score: why it was recalled."),
        ] = False,
        record_visits: Annotated[
            bool,
            Field(
                description="false: only look (a person browsing their memory) — no topic counts as recalled, "
                "so none gets hotter."
            ),
        ] = True,
    ) -> Annotated[CallToolResult, RetrieveMemoryResult]:
        """Find what you remember about a query, from all memory tiers.

        Returns the recent short-term pages, the best mid-term pages (from the top-m segments by topic match,
        then top-k pages by similarity), the user's profile, relevant user facts and assistant traits: as one
        compact text to read before answering (each page once, with the short id forget_memory takes), and as
        structured data with every field (scores, segments, chain summaries, metadata). With max_tokens, only
        what fits, best first, and a line saying what was left out. Makes no LLM call. Records a visit on each
        segment returned (that is what makes a topic hot in the paper's heat model), so it is not read-only.
        """
        return answer(
            call(
                slot,
                lambda s: s.retrieve_memory(
                    query,
                    user_id,
                    top_k,
                    top_m,
                    include_short_term,
                    since=since,
                    until=until,
                    max_tokens=max_tokens,
                    explain=explain,
                    record_visits=record_visits,
                ),
            ),
            lambda r: r.context,
        )

    @mcp.tool(annotations=READS)
    def get_user_profile(
        user_id: UserId = None,
        include_knowledge: IncludeKnowledge = True,
        include_assistant_traits: Annotated[
            bool, Field(description="Include facts learned about you, the assistant.")
        ] = True,
    ) -> Annotated[CallToolResult, UserProfileResult]:
        """The user's long-term persona: static profile (name, location, ...), trait dimensions with evidence,
        and optionally the user knowledge and assistant traits learned from conversations.

        Profiling needs an LLM; without one the profile is empty and `note` says how to enable it.
        """
        return answer(
            call(slot, lambda s: s.get_user_profile(user_id, include_knowledge, include_assistant_traits)),
            texts.profile,
        )


class ForgetAllConsent(BaseModel):
    """What the person answers when forget_memory(all=true) asks them (form elicitation)."""

    forget_everything: bool = Field(
        description="Yes: forget everything remembered about this user, for good. No: keep it."
    )


def can_ask_person(ctx: Context[Any, Any]) -> bool:
    """The client declared form elicitation (a bare `elicitation: {}` is form support; url-only is not)."""
    capabilities = ctx.client_capabilities
    elicitation = None if capabilities is None else capabilities.elicitation
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def ask_before_forgetting_all(
    ctx: Context[Any, Any], user_id: str | None, all: bool, confirm: str | None, dry_run: bool
) -> Elicit[ForgetAllConsent] | None:
    """forget_memory(all=true) without confirm, from a client that can ask the person: ask them, showing what
    would go (a dry run of the real forget). Otherwise nothing is asked (None) and the confirm rule stands.
    Module-level: the tool's annotations name it (they are evaluated as strings, in this module)."""
    server = ctx.mcp_server
    if not all or confirm is not None or dry_run or not can_ask_person(ctx):
        return None
    if not isinstance(server, ContractServer):
        raise TypeError("forget_memory is served by a ContractServer; this is a bug in the host program")
    uid = user_id or server.callers.default  # user_id is already bound to the caller
    preview = call(server.slot, lambda s: s.forget_memory(uid, everything=True, dry_run=True))
    return Elicit(
        f"Forget everything remembered about '{uid}'? {preview.pages_removed} page(s), {preview.facts_removed} "
        "fact(s), the topics and the profile would be removed for good; this cannot be undone.",
        ForgetAllConsent,
    )


def common_tools(mcp: MCPServer, slot: ServiceSlot, callers: Callers, page: PageHost | None = None) -> None:
    """The tools both dialects share, the status resource and the memory_context prompt."""

    # not idempotent: every call gives a new single-use address
    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False))
    def memory_page(user_id: UserId = None) -> Annotated[CallToolResult, MemoryPageResult]:
        """The address of the memory page, where the person sees and curates what is remembered about them
        (pages, segments and their heat, facts and where they came from; correct, forget, export). Give it to
        the person when they ask what you remember about them. Makes no change."""
        uid = user_id or callers.default  # user_id is already the caller's to name (ContractServer)
        address = None if page is None else page.address(uid)
        if address is None:
            raise ToolError(
                "the memory page is not served by this server (started with --no-ui or ui = false, or no loopback "
                "port could be bound: see the server log); `memoryos-mcp ui` serves it while the server is stopped"
            )
        return answer(MemoryPageResult(user_id=uid, address=address), texts.page_address)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def memory_stats(user_id: UserId = None) -> Annotated[CallToolResult, MemoryStats]:
        """Counts per memory tier for a user, plus the server's total LLM calls and tokens and peak memory use."""
        return answer(call(slot, lambda s: s.stats(user_id)), texts.stats)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def list_memories(
        user_id: UserId = None,
        kind: Annotated[
            str,
            Field(
                description="pages (exchanges), segments (mid-term topics with heat) or facts (user facts and "
                "assistant traits with the pages they came from, plus the profile)."
            ),
        ] = "pages",
        tier: Annotated[str, Field(description="For pages: short_term, mid_term or all.")] = "all",
        since: Annotated[
            str | None, Field(description="Only items dated on or after this ISO-8601 date or datetime.")
        ] = None,
        until: Annotated[
            str | None,
            Field(description="Only items dated on or before this (a date includes its whole day)."),
        ] = None,
        limit: Annotated[
            int | None, Field(description="Items per call (default 50, at most 200).", ge=1, le=200)
        ] = None,
        cursor: Annotated[
            str | None, Field(description="next_cursor of the previous call, to continue the listing.")
        ] = None,
        segment_id: Annotated[
            str | None,
            Field(description="With kind=pages: only the pages of this segment (active or archived)."),
        ] = None,
        page_ids: Annotated[
            list[str] | None,
            Field(
                description="With kind=pages: these pages, e.g. a fact's source_pages (unknown ids left out)."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ListMemoriesResult]:
        """List what is remembered about a user, newest first: pages with id, tier, timestamp, texts, segment and
        metadata; or segments; or facts and the profile. Use the ids with forget_memory. Makes no change."""
        return answer(
            call(
                slot,
                lambda s: s.list_memories(
                    user_id, kind, tier, since, until, limit, cursor, segment_id, page_ids
                ),
            ),
            texts.listed,
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    def forget_memory(
        user_id: UserId = None,
        page_ids: Annotated[
            list[str] | None,
            Field(description="Pages to forget (ids from list_memories or retrieve_memory)."),
        ] = None,
        fact_ids: Annotated[
            list[str] | None,
            Field(description="User facts or assistant traits to forget (ids from list_memories)."),
        ] = None,
        before: Annotated[
            str | None, Field(description="Forget every page dated before this ISO-8601 date or datetime.")
        ] = None,
        all: Annotated[
            bool,
            Field(
                description="Forget everything of this user: pages, segments, chain state, profile, facts."
            ),
        ] = False,  # noqa: A002 - the contract's name
        confirm: Annotated[
            str | None, Field(description="With all=true: the user_id again, to confirm.")
        ] = None,
        dry_run: Annotated[
            bool,
            Field(
                description="Only say what would be forgotten (pages, segments, chain summaries, facts); change nothing."
            ),
        ] = False,
        consent: Annotated[ElicitationResult[ForgetAllConsent], Resolve(ask_before_forgetting_all)] = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, ForgetMemoryResult]:
        """Forget memories for good: the named pages from every tier and every later result, and what was learned
        only from them (segment summaries are recomputed from the pages kept; facts learned only from forgotten
        pages are removed). Unknown ids are reported, not an error. all=true needs confirm equal to the user_id,
        or, when the client can ask the person (elicitation), their yes. dry_run=true previews it all, changing
        nothing: show the person before forgetting."""
        answered = consent.data if isinstance(consent, AcceptedElicitation) else False
        if answered is not None:  # the person was asked (all=true without confirm): None means not asked
            if not (isinstance(answered, ForgetAllConsent) and answered.forget_everything):
                raise ToolError(
                    f"nothing was forgotten: the person did not confirm forgetting all of {user_id!r}"
                )
            confirm = user_id
        return answer(
            call(slot, lambda s: s.forget_memory(user_id, page_ids, fact_ids, before, all, confirm, dry_run)),
            texts.forgotten,
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    def update_memory(
        user_id: UserId = None,
        fact_id: Annotated[
            str | None,
            Field(description="The fact to correct (its id from list_memories or retrieve_memory)."),
        ] = None,
        text: Annotated[str | None, Field(description="With fact_id: what the fact says now.")] = None,
        profile_key: Annotated[
            str | None, Field(description="A profile entry to set or remove ('name', 'location', ...).")
        ] = None,
        profile_value: Annotated[
            str | None, Field(description="With profile_key: its value; leave it out to remove the entry.")
        ] = None,
    ) -> Annotated[CallToolResult, UpdateMemoryResult]:
        """Correct what is remembered, as the person says it is: a fact's text (it keeps the pages it was learned
        from, and is marked as corrected by the person), or one profile entry. Learning from later conversations
        never overwrites what the person set. To remove a fact: forget_memory with fact_ids."""
        return answer(
            call(slot, lambda s: s.update_memory(user_id, fact_id, text, profile_key, profile_value)),
            texts.updated,
        )

    @mcp.resource(
        "memoryos://status",
        mime_type="application/json",
        description="Tier counts for the caller's user and server-wide LLM usage",
    )
    def status() -> str:
        user = callers.user(None)
        stats = call(slot, lambda s: s.stats(user))
        return json.dumps(stats.model_dump(), indent=2)

    @mcp.prompt()
    def memory_context(query: str, user_id: str | None = None, max_tokens: str | None = None) -> str:
        """Memory relevant to `query`, assembled as context for answering the user (within max_tokens, estimated
        as characters / 4, when given)."""
        budget = whole_number(max_tokens, "max_tokens")
        result = call(slot, lambda s: s.retrieve_memory(query, user_id, max_tokens=budget))
        return f"Use this memory of earlier conversations when you answer.\n\n{result.context}"
