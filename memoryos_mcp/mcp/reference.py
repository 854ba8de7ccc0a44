"""add_memory, retrieve_memory and get_user_profile in the dialect of the paper's own MCP server (compat.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from memoryos_mcp.mcp import arguments, compat
from memoryos_mcp.mcp.contract import ServiceSlot, call
from memoryos_mcp.service.facade import MemoryService


def reply(result: BaseModel) -> CallToolResult:
    """A compat result as the reference sends it: its JSON object as the text, the same object as structured output."""
    data = compat.to_json(result)
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))], structured_content=data
    )


def reference_tools(mcp: MCPServer, slot: ServiceSlot) -> None:
    """The same three tools in the dialect of BAI-LAB/MemoryOS's own MCP server (setting compat =
    "memoryos-reference"): its argument names are accepted beside ours and its result fields returned; see
    compat.py. Each tool returns a CallToolResult so that the text is exactly the reference-shaped object,
    knowledge lists left out when not asked for, as the reference does; the model class publishes its schema."""

    @mcp.tool(annotations=arguments.WRITES)
    def add_memory(
        user_input: arguments.UserInput = "",
        agent_response: arguments.AgentResponse = "",
        user_id: arguments.UserId = None,
        timestamp: arguments.Timestamp = None,
        metadata: arguments.Metadata = None,
        meta_data: Annotated[
            dict[str, Any] | None, Field(description="The same as metadata (the reference server's name).")
        ] = None,
        idempotency_key: arguments.IdempotencyKey = None,
    ) -> Annotated[CallToolResult, compat.ReferenceAddResult]:
        """Remember one exchange (a "page") between the user and you.

        The page enters short-term memory at once and is durable when this returns; when short-term memory
        overflows, the oldest pages move to mid-term topic segments. Returns status "success", a message, the
        page's timestamp and id, and details (text lengths, whether metadata was given).
        """

        def add(s: MemoryService) -> compat.ReferenceAddResult:
            meta = compat.either("metadata", metadata, "meta_data", meta_data)
            return compat.add_memory(
                s,
                user_input=user_input,
                agent_response=agent_response,
                user_id=user_id,
                timestamp=timestamp,
                metadata=meta,
                idempotency_key=idempotency_key,
            )

        return reply(call(slot, add))

    @mcp.tool(annotations=arguments.WRITES)
    def retrieve_memory(
        query: arguments.Query,
        relationship_with_user: Annotated[
            str | None,
            Field(
                description="Accepted for the reference server's callers; does not change what is retrieved."
            ),
        ] = None,
        style_hint: Annotated[
            str | None,
            Field(
                description="Accepted for the reference server's callers; does not change what is retrieved."
            ),
        ] = None,
        max_results: Annotated[
            int | None,
            Field(
                description="Mid-term pages, user knowledge and assistant knowledge to return, at most (default 10).",
                ge=1,
                le=100,
            ),
        ] = None,
        user_id: arguments.UserId = None,
        top_k: arguments.TopK = None,
        top_m: arguments.TopM = None,
        include_short_term: arguments.IncludeShortTerm = True,
        since: arguments.Since = None,
        until: arguments.Until = None,
    ) -> Annotated[CallToolResult, compat.ReferenceRetrieveResult]:
        """Find what you remember about a query, from all memory tiers.

        Returns short_term_memory (the recent pages), retrieved_pages (the best mid-term pages, each with its
        dialogue-chain summary as meta_info), retrieved_user_knowledge and retrieved_assistant_knowledge, the
        user's profile as text, counts, and `context`: all of it as one text block to read before answering.
        Records a visit on each segment returned (what makes a topic hot), so it is not read-only.
        """
        del relationship_with_user, style_hint  # accepted only: the reference's tool does not use them either

        def retrieve(s: MemoryService) -> compat.ReferenceRetrieveResult:
            limit = compat.either("top_k", top_k, "max_results", max_results)
            return compat.retrieve_memory(
                s,
                query=query,
                user_id=user_id,
                limit=limit,
                top_m=top_m,
                include_short_term=include_short_term,
                since=since,
                until=until,
            )

        return reply(call(slot, retrieve))

    @mcp.tool(annotations=arguments.READS)
    def get_user_profile(
        user_id: arguments.UserId = None,
        include_knowledge: arguments.IncludeKnowledge = True,
        include_assistant_knowledge: Annotated[
            bool | None, Field(description="Include facts learned about you, the assistant (default false).")
        ] = None,
        include_assistant_traits: Annotated[
            bool | None, Field(description="The same as include_assistant_knowledge.")
        ] = None,
    ) -> Annotated[CallToolResult, compat.ReferenceProfileResult]:
        """The user's long-term persona as text, and optionally the user knowledge and the assistant knowledge
        learned from conversations, each with a count. Profiling needs an LLM; without one the profile reads
        "No detailed user profile"."""

        def read(s: MemoryService) -> compat.ReferenceProfileResult:
            assistant = compat.either(
                "include_assistant_traits",
                include_assistant_traits,
                "include_assistant_knowledge",
                include_assistant_knowledge,
            )
            return compat.get_user_profile(
                s,
                user_id=user_id,
                include_knowledge=include_knowledge,
                include_assistant_knowledge=bool(assistant),
            )

        return reply(call(slot, read))
