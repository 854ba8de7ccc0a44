"""Speaking the tool dialect of BAI-LAB/MemoryOS's own MCP server (setting `compat = "memoryos-reference"`).

That server (`memoryos-mcp/server_new.py` in the paper's repository) no longer starts with MCP SDK 2.x. Its users'
scripts call `add_memory`, `retrieve_memory` and `get_user_profile` with its argument names and read its result
fields from the JSON text of the reply. This module maps those names onto our service and our results onto that
shape; it knows nothing of MCP (server.py registers the tools). Where the reference returns `status: "error"` in a
successful reply, we still raise: errors stay MCP tool errors, their text a JSON object with status and message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from memoryos_mcp.core.dates import parse_iso
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.models import Scalar
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.messages import quote
from memoryos_mcp.service.schemas import FactOut, PageOut, ProfileOut

REFERENCE = "memoryos-reference"
# The tools the reference server has; ours beyond them keep our contract in compat mode too.
REFERENCE_TOOLS = frozenset({"add_memory", "retrieve_memory", "get_user_profile"})
# The reference's text for "nothing learned yet"; scripts may compare against it, so it is kept verbatim.
NO_PROFILE = "No detailed user profile"
T = TypeVar("T")


def reference_time(iso: str) -> str:
    """A stored ISO-8601 time in the reference's 'YYYY-MM-DD HH:MM:SS' form.

    The reference writes local time without a zone; a time we stored with a zone is shown in local time too,
    one given without a zone is shown as given.
    """
    if not iso:
        return ""
    try:
        moment = parse_iso(iso)
    except ValueError:
        return iso  # never fail a read over a time we cannot parse: show it as stored
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def now_time() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def either(ours: str, ours_value: T | None, theirs: str, theirs_value: T | None) -> T | None:
    """The value given under our name or the reference's; both at once is refused rather than guessed."""
    if ours_value is not None and theirs_value is not None and ours_value != theirs_value:
        raise InvalidInputError(
            f"{ours} and {theirs} name the same thing and were given different values "
            f"({quote(ours_value)} and {quote(theirs_value)}); give one of them"
        )
    return ours_value if ours_value is not None else theirs_value


def profile_text(profile: ProfileOut) -> str:
    """The long-term profile as the reference returns it: text, one line per fact or trait."""
    return "\n".join(profile.lines()) or NO_PROFILE


# ------------------------------------------------------------------ result shapes (published as output schemas)


class AddDetails(BaseModel):
    user_input_length: int
    agent_response_length: int
    has_meta_data: bool = Field(description="whether metadata (meta_data) was given")


class ReferenceAddResult(BaseModel):
    """add_memory's result in the reference's shape, plus page_id and user_id."""

    status: str = Field("success", description="always 'success': failures are tool errors")
    message: str
    timestamp: str = Field(description="the page's time, 'YYYY-MM-DD HH:MM:SS'")
    details: AddDetails
    page_id: str = Field(description="ours: the stored page (for forget_memory)")
    user_id: str


class ReferenceExchange(BaseModel):
    """A short-term page as the reference lists it."""

    user_input: str
    agent_response: str
    timestamp: str
    meta_data: dict[str, Scalar] = Field(
        default_factory=dict, description="ours: the metadata given to add_memory"
    )


class ReferencePage(ReferenceExchange):
    """A mid-term page as the reference lists it."""

    meta_info: str = Field("", description="running summary of the dialogue chain the page belongs to")


class ReferenceKnowledge(BaseModel):
    knowledge: str
    timestamp: str


class ReferenceRetrieveResult(BaseModel):
    """retrieve_memory's result in the reference's shape, plus user_id and the context text."""

    status: str = Field("success", description="always 'success': failures are tool errors")
    query: str
    timestamp: str = Field(description="when the retrieval ran, 'YYYY-MM-DD HH:MM:SS'")
    user_profile: str = Field(description=f"the long-term profile as text, or {NO_PROFILE!r}")
    short_term_memory: list[ReferenceExchange] = Field(description="the most recent pages, oldest first")
    short_term_count: int
    retrieved_pages: list[ReferencePage] = Field(
        description="mid-term pages, best first, at most max_results"
    )
    retrieved_user_knowledge: list[ReferenceKnowledge]
    retrieved_assistant_knowledge: list[ReferenceKnowledge]
    total_pages_found: int = Field(description="mid-term pages found (retrieval stops at max_results)")
    total_user_knowledge_found: int
    total_assistant_knowledge_found: int
    user_id: str
    context: str = Field(description="ours: all of the above as one text block for the host model")


class ReferenceProfileResult(BaseModel):
    """get_user_profile's result in the reference's shape; the knowledge lists only when asked for."""

    status: str = Field("success", description="always 'success': failures are tool errors")
    timestamp: str
    user_id: str
    assistant_id: str | None = Field(
        description="always null: assistant traits are kept per user, not per assistant"
    )
    user_profile: str = Field(description=f"the long-term profile as text, or {NO_PROFILE!r}")
    user_knowledge: list[ReferenceKnowledge] | None = None
    user_knowledge_count: int | None = None
    assistant_knowledge: list[ReferenceKnowledge] | None = None
    assistant_knowledge_count: int | None = None


# ------------------------------------------------------------------ the three tools, on our service


def _exchange(page: PageOut) -> ReferenceExchange:
    return ReferenceExchange(
        user_input=page.user_input,
        agent_response=page.agent_response,
        timestamp=reference_time(page.timestamp),
        meta_data=page.metadata,
    )


def _page(page: PageOut) -> ReferencePage:
    return ReferencePage(**_exchange(page).model_dump(), meta_info=page.chain_summary)


def _knowledge(facts: list[FactOut]) -> list[ReferenceKnowledge]:
    return [ReferenceKnowledge(knowledge=f.text, timestamp=reference_time(f.created_at)) for f in facts]


def add_memory(
    service: MemoryService,
    *,
    user_input: str,
    agent_response: str,
    user_id: str | None,
    timestamp: str | None,
    metadata: dict[str, Any] | None,
    idempotency_key: str | None,
) -> ReferenceAddResult:
    result = service.add_memory(user_input, agent_response, user_id, timestamp, metadata, idempotency_key)
    moved = len(result.moved_to_mid_term)
    message = (
        f"already stored as page {result.page_id} (same idempotency_key): nothing added"
        if result.already_stored
        else f"stored as page {result.page_id} in short-term memory"
        + (f"; {moved} older page{'s' if moved != 1 else ''} moved to mid-term memory" if moved else "")
    )
    return ReferenceAddResult(
        message=message,
        timestamp=reference_time(result.timestamp),
        details=AddDetails(
            user_input_length=len(user_input),
            agent_response_length=len(agent_response),
            has_meta_data=metadata is not None,
        ),
        page_id=result.page_id,
        user_id=result.user_id,
    )


def retrieve_memory(
    service: MemoryService,
    *,
    query: str,
    user_id: str | None,
    limit: int | None,
    top_m: int | None,
    include_short_term: bool,
    since: str | None,
    until: str | None,
) -> ReferenceRetrieveResult:
    """`limit` (max_results or top_k) bounds the mid-term pages, as top_k does, and — as in the reference —
    the user knowledge and assistant knowledge listed; their totals count what was found before that cut."""
    r = service.retrieve_memory(query, user_id, limit, top_m, include_short_term, since=since, until=until)
    cut = slice(None, limit)
    return ReferenceRetrieveResult(
        query=r.query,
        timestamp=now_time(),
        user_profile=profile_text(r.profile),
        short_term_memory=[_exchange(p) for p in r.short_term],
        short_term_count=len(r.short_term),
        retrieved_pages=[_page(p) for p in r.mid_term],
        retrieved_user_knowledge=_knowledge(r.user_facts[cut]),
        retrieved_assistant_knowledge=_knowledge(r.assistant_traits[cut]),
        total_pages_found=len(r.mid_term),
        total_user_knowledge_found=len(r.user_facts),
        total_assistant_knowledge_found=len(r.assistant_traits),
        user_id=r.user_id,
        context=r.context,
    )


def get_user_profile(
    service: MemoryService, *, user_id: str | None, include_knowledge: bool, include_assistant_knowledge: bool
) -> ReferenceProfileResult:
    p = service.get_user_profile(user_id, include_knowledge, include_assistant_knowledge)
    result = ReferenceProfileResult(
        timestamp=now_time(), user_id=p.user_id, assistant_id=None, user_profile=profile_text(p.profile)
    )
    if p.user_knowledge is not None:
        result.user_knowledge = _knowledge(p.user_knowledge)
        result.user_knowledge_count = len(p.user_knowledge)
    if p.assistant_traits is not None:
        result.assistant_knowledge = _knowledge(p.assistant_traits)
        result.assistant_knowledge_count = len(p.assistant_traits)
    return result


def to_json(result: BaseModel) -> dict[str, Any]:
    """The JSON object of a result: the reference leaves out the knowledge lists it was not asked for."""
    data = result.model_dump(mode="json")
    if isinstance(result, ReferenceProfileResult):
        for key in (
            "user_knowledge",
            "user_knowledge_count",
            "assistant_knowledge",
            "assistant_knowledge_count",
        ):
            if data[key] is None:
                del data[key]
    return data
