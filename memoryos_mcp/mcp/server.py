"""The MCP surface: tools, resources and a prompt. Thin — each tool validates via the service and returns a model.

Only this module imports mcp. Heavy dependencies (Chroma, torch) load in a background thread started by the
lifespan, so `initialize` and `tools/list` are answered at once. `ContractServer` applies the contract of
DESIGN.md §4 to every tool, prompt and resource, including ones added later: unknown arguments refused, the
caller's user bound to what its token (or allowed_users) permits, every failure one plain sentence. With
compat = "memoryos-reference", add_memory, retrieve_memory and get_user_profile are registered in the dialect of
the paper's own MCP server instead (mapping and result shapes in compat.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedResourceError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import BaseModel, Field, ValidationError

from memoryos_mcp import __version__
from memoryos_mcp.core.errors import InvalidInputError, MemoryOSError
from memoryos_mcp.mcp import compat, texts
from memoryos_mcp.service.access import USERS_CLAIM, TokenTable, grant_from_claims, resolve_user
from memoryos_mcp.service.backfill import SentenceBackfill
from memoryos_mcp.service.facade import LazyService, MemoryService
from memoryos_mcp.service.messages import explain_errors, names, quote, unknown_names
from memoryos_mcp.service.schemas import (
    AddMemoryResult,
    ForgetMemoryResult,
    ListMemoriesResult,
    MemoryStats,
    RetrieveMemoryResult,
    UserProfileResult,
)
from memoryos_mcp.service.settings import USER_ID_PATTERN, Settings

T = TypeVar("T")
logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Long-term memory for this conversation partner, organised like the MemoryOS paper: short-term (recent pages),
mid-term (topic segments ranked by heat) and a long-term persona (profile, user facts, assistant traits).
Call retrieve_memory before answering anything that may depend on earlier conversations; call add_memory after
each exchange worth remembering. Pass the same user_id for one person every time."""

UserId = Annotated[
    str | None,
    Field(
        description="Whose memory: 1-64 of [A-Za-z0-9._-]. Omit to use the server's default user "
        "(over HTTP: the user your token is bound to).",
        json_schema_extra={"pattern": USER_ID_PATTERN},
    ),
]


class _ServiceSlot:
    """Where the lifespan puts the service; tools and resources read it from here."""

    def __init__(self) -> None:
        self.lazy: LazyService | None = None

    def get(self) -> MemoryService:
        if self.lazy is None:
            raise ToolError(
                "the memory server is not running (no lifespan); this is a bug in the host program"
            )
        return self.lazy.get()


def _call(slot: _ServiceSlot, fn: Callable[[MemoryService], T]) -> T:
    try:
        return fn(slot.get())
    except MemoryOSError as exc:
        # Only ToolError messages reach the client; domain errors carry an actionable message.
        raise ToolError(str(exc)) from exc


class StaticTokenVerifier(TokenVerifier):
    """The SDK's resource-server hook over an auth_tokens_file: a known token becomes an AccessToken whose
    `memoryos_users` claim lists the users it may act for. An OAuth verifier (RFC 7662 introspection, JWT)
    plugs in at the same place; see `build_server`."""

    def __init__(self, table: TokenTable) -> None:
        self.table = table

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.table.lookup(token)
        if grant is None:
            return None
        return AccessToken(
            # The digest, not the token: nothing downstream needs the secret, and nothing can then log it.
            token=hashlib.sha256(token.encode("utf-8")).hexdigest(),
            client_id=grant.name,
            scopes=[],
            claims={USERS_CLAIM: ["*"] if grant.users is None else sorted(grant.users)},
        )


@dataclass(frozen=True)
class Callers:
    """Which user a call acts for: the one it names, if its token and allowed_users permit, else the implicit one."""

    default: str
    allowed: frozenset[str] | None

    def user(self, requested: str | None) -> str:
        token = get_access_token()  # set per request by the SDK's bearer middleware; None on stdio
        grant = None if token is None else grant_from_claims(token.client_id, token.claims, token.subject)
        return resolve_user(requested, default=self.default, grant=grant, allowed=self.allowed)


def _domain_error(exc: BaseException) -> MemoryOSError | None:
    """The MemoryOSError behind `exc`, through the SDK's wrappers (ValueError, ToolError, ...)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryOSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _protocol_error(exc: Exception, what: str, data: dict[str, Any] | None = None) -> MCPError:
    """A prompt or resource failure as a JSON-RPC error that keeps its reason (the SDK would send a bare one)."""
    domain = _domain_error(exc)
    if domain is None:
        logger.error("%s failed unexpectedly", what, exc_info=exc)
        return MCPError(
            code=INTERNAL_ERROR,
            message=f"{what} failed unexpectedly; the server log has the details",
            data=data,
        )
    code = INVALID_PARAMS if isinstance(domain, InvalidInputError) else INTERNAL_ERROR
    return MCPError(code=code, message=str(domain), data=data)


class ContractServer(MCPServer):
    """MCPServer that holds every tool, prompt and resource to one contract, whatever their signatures.

    Unknown arguments are refused with the accepted ones listed; a `user_id` argument is bound to the caller
    (token, allowed_users, default user) before the tool runs; argument errors are reworded from pydantic's
    dumps into one sentence each; prompt and resource failures keep their reason.
    """

    def __init__(
        self, *args: Any, callers: Callers, json_errors: frozenset[str] = frozenset(), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.callers = callers
        # Tools whose error text is {"status": "error", "message": ...}: scripts written for the paper's own
        # server parse every reply as JSON (compat mode). They stay tool errors (is_error) all the same.
        self.json_errors = json_errors

    def _checked_arguments(
        self, arguments: Mapping[str, Any], accepted: Iterable[str], owner: str
    ) -> dict[str, Any]:
        accepted = list(accepted)
        unknown = [key for key in arguments if key not in accepted]
        if unknown:
            raise InvalidInputError(unknown_names("argument", unknown, accepted, owner))
        bound = dict(arguments)
        if "user_id" in accepted:
            requested = bound.get("user_id")
            if requested is not None and not isinstance(requested, str):
                raise InvalidInputError(f"user_id must be a string or left out; got {quote(requested)}")
            bound["user_id"] = self.callers.user(requested)
        return bound

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        if name not in self.json_errors:
            return await self._call_tool(name, arguments, context)
        try:
            return await self._call_tool(name, arguments, context)
        except ToolError as exc:
            text = json.dumps({"status": "error", "message": str(exc)}, ensure_ascii=False)
            # Keep the kind: a crash stays an UnexpectedToolError, which the SDK logs with its traceback.
            raise type(exc)(text) from exc

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None
    ) -> Any:
        schemas = {t.name: t.input_schema for t in await self.list_tools()}
        schema = schemas.get(name)
        if schema is None:
            raise ToolError(unknown_names("tool", [name], list(schemas), "this server"))
        try:
            arguments = self._checked_arguments(arguments, schema.get("properties", {}), name)
        except MemoryOSError as exc:
            raise ToolError(str(exc)) from exc
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: the SDK keeps its text on the server
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(explain_errors(cause.errors(include_url=False), schema)) from exc
            # Our own ToolErrors already read as one sentence; drop the SDK's "Error executing tool x:" prefix.
            raise ToolError(str(cause) if isinstance(cause, ToolError) else str(exc)) from exc

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> Any:
        prompts = {p.name: p for p in await self.list_prompts()}
        prompt = prompts.get(name)
        if prompt is None:
            raise MCPError(
                code=INVALID_PARAMS, message=unknown_names("prompt", [name], list(prompts), "this server")
            )
        declared = prompt.arguments or []
        missing = [a.name for a in declared if a.required and a.name not in (arguments or {})]
        try:
            if missing:
                raise InvalidInputError(f"prompt {name} needs {names(missing)}")
            arguments = self._checked_arguments(arguments or {}, [a.name for a in declared], f"prompt {name}")
            return await super().get_prompt(name, arguments, context)
        except MCPError:
            raise
        except Exception as exc:
            raise _protocol_error(exc, f"prompt {name}") from exc

    async def read_resource(self, uri: Any, context: Context[Any, Any] | None = None) -> Any:
        try:
            return await super().read_resource(uri, context)
        except UnexpectedResourceError as exc:  # the SDK would send only "Error reading resource <uri>"
            raise _protocol_error(exc, f"resource {uri}", {"uri": str(uri)}) from exc


# Arguments shared by our tools and their compat twins: one description, one bound each.
UserInput = Annotated[
    str, Field(description="What the user said in this exchange (may be empty if agent_response is not).")
]
AgentResponse = Annotated[
    str, Field(description="What the assistant answered (may be empty if user_input is not).")
]
Timestamp = Annotated[
    str | None,
    Field(
        description="When the exchange happened: ISO-8601 ('2024-05-08T13:56:00') or 'YYYY-MM-DD HH:MM:SS'. Default: now."
    ),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(
        description="Flat JSON object of string/number/boolean values stored with the page and returned with it."
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Any string unique to this exchange (per user). A second add with the same key stores "
        "nothing and returns the first page's id: pass one when a call may be retried.",
        max_length=256,
    ),
]
Query = Annotated[str, Field(description="What to look for: the user's question or the topic at hand.")]
TopK = Annotated[int | None, Field(description="Mid-term pages to return (default 10).", ge=1, le=100)]
TopM = Annotated[int | None, Field(description="Mid-term segments searched (default 5).", ge=1, le=50)]
IncludeShortTerm = Annotated[bool, Field(description="Also return the most recent pages.")]
Since = Annotated[
    str | None,
    Field(description="Only pages dated on or after this ISO-8601 date or datetime ('2024-05-01')."),
]
Until = Annotated[
    str | None,
    Field(
        description="Only pages dated on or before this ISO-8601 date or datetime (a date includes that whole day)."
    ),
]
IncludeKnowledge = Annotated[bool, Field(description="Include the facts learned about the user.")]
MaxTokens = Annotated[
    int | None,
    Field(
        description="Most tokens (estimated as characters / 4) the memory may take: filled best first — recent "
        "pages, then the best earlier pages, then the profile and facts — and what is left out is said. Default: "
        "the server's retrieve_max_tokens (none: no limit).",
        ge=100,
        le=1_000_000,
    ),
]

WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
READS = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def _memory_tools(mcp: MCPServer, slot: _ServiceSlot) -> None:
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
        return _answer(
            _call(
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
    ) -> Annotated[CallToolResult, RetrieveMemoryResult]:
        """Find what you remember about a query, from all memory tiers.

        Returns the recent short-term pages, the best mid-term pages (from the top-m segments by topic match,
        then top-k pages by similarity), the user's profile, relevant user facts and assistant traits: as one
        compact text to read before answering (each page once, with the short id forget_memory takes), and as
        structured data with every field (scores, segments, chain summaries, metadata). With max_tokens, only
        what fits, best first, and a line saying what was left out. Makes no LLM call. Records a visit on each
        segment returned (that is what makes a topic hot in the paper's heat model), so it is not read-only.
        """
        return _answer(
            _call(
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
        return _answer(
            _call(slot, lambda s: s.get_user_profile(user_id, include_knowledge, include_assistant_traits)),
            texts.profile,
        )


M = TypeVar("M", bound=BaseModel)


def _answer(result: M, text: Callable[[M], str]) -> CallToolResult:
    """A result as our tools send it: every field as structured content (as the SDK would dump it), and the
    text a model reads (texts.py), not a JSON dump of the same."""
    return CallToolResult(
        content=[TextContent(type="text", text=text(result))],
        structured_content=result.model_dump(mode="json", by_alias=True),
    )


def _whole_number(value: str | None, name: str) -> int | None:
    """A prompt argument (prompt arguments are strings) that must be a whole number."""
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise ToolError(f"{name} must be a whole number, got {quote(value)}") from None


def _reply(result: BaseModel) -> CallToolResult:
    """A compat result as the reference sends it: its JSON object as the text, the same object as structured output."""
    data = compat.to_json(result)
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))], structured_content=data
    )


def _reference_memory_tools(mcp: MCPServer, slot: _ServiceSlot) -> None:
    """The same three tools in the dialect of BAI-LAB/MemoryOS's own MCP server (setting compat =
    "memoryos-reference"): its argument names are accepted beside ours and its result fields returned; see
    compat.py. Each tool returns a CallToolResult so that the text is exactly the reference-shaped object,
    knowledge lists left out when not asked for, as the reference does; the model class publishes its schema."""

    @mcp.tool(annotations=WRITES)
    def add_memory(
        user_input: UserInput = "",
        agent_response: AgentResponse = "",
        user_id: UserId = None,
        timestamp: Timestamp = None,
        metadata: Metadata = None,
        meta_data: Annotated[
            dict[str, Any] | None, Field(description="The same as metadata (the reference server's name).")
        ] = None,
        idempotency_key: IdempotencyKey = None,
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

        return _reply(_call(slot, add))

    @mcp.tool(annotations=WRITES)
    def retrieve_memory(
        query: Query,
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
        user_id: UserId = None,
        top_k: TopK = None,
        top_m: TopM = None,
        include_short_term: IncludeShortTerm = True,
        since: Since = None,
        until: Until = None,
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

        return _reply(_call(slot, retrieve))

    @mcp.tool(annotations=READS)
    def get_user_profile(
        user_id: UserId = None,
        include_knowledge: IncludeKnowledge = True,
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

        return _reply(_call(slot, read))


def static_token_auth(settings: Settings) -> tuple[TokenVerifier, AuthSettings] | None:
    """The verifier and auth settings for `settings.auth_tokens_file`; None when it is unset."""
    if settings.auth_tokens_file is None:
        return None
    table = TokenTable.load(settings.auth_tokens_file)
    # issuer_url is required by AuthSettings but only used by OAuth flows (metadata routes, an authorization
    # server); static tokens publish neither, so it names this server.
    auth = AuthSettings(issuer_url=f"http://localhost:{settings.port}", resource_server_url=None)
    return StaticTokenVerifier(table), auth


def build_server(
    settings: Settings,
    service_factory: Callable[[], MemoryService] | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer:
    """An MCPServer whose lifespan starts the memory service (by default from `settings`) in the background.

    Over HTTP, requests are authenticated by `token_verifier` under `auth` (the MCP SDK's resource-server
    hooks); by default those come from `settings.auth_tokens_file`. To use OAuth instead, pass a verifier
    that introspects the token and returns an AccessToken whose subject is the user (or whose claims carry
    `memoryos_users`), with AuthSettings naming the issuer and this server's resource URL.
    """
    factory = service_factory or (lambda: MemoryService.create(settings))
    slot = _ServiceSlot()
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
        try:
            yield None
        finally:
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
    )

    if settings.compat == compat.REFERENCE:
        _reference_memory_tools(mcp, slot)
    else:
        _memory_tools(mcp, slot)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def memory_stats(user_id: UserId = None) -> Annotated[CallToolResult, MemoryStats]:
        """Counts per memory tier for a user, plus the server's total LLM calls and tokens and peak memory use."""
        return _answer(_call(slot, lambda s: s.stats(user_id)), texts.stats)

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
    ) -> Annotated[CallToolResult, ListMemoriesResult]:
        """List what is remembered about a user, newest first: pages with id, tier, timestamp, texts, segment and
        metadata; or segments; or facts and the profile. Use the ids with forget_memory. Makes no change."""
        return _answer(
            _call(slot, lambda s: s.list_memories(user_id, kind, tier, since, until, limit, cursor)),
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
    ) -> Annotated[CallToolResult, ForgetMemoryResult]:
        """Forget memories for good: the named pages from every tier and every later result, and what was learned
        only from them (segment summaries are recomputed from the pages kept; facts learned only from forgotten
        pages are removed). Unknown ids are reported, not an error. all=true needs confirm equal to the user_id."""
        return _answer(
            _call(slot, lambda s: s.forget_memory(user_id, page_ids, fact_ids, before, all, confirm)),
            texts.forgotten,
        )

    @mcp.resource(
        "memoryos://status",
        mime_type="application/json",
        description="Tier counts for the caller's user and server-wide LLM usage",
    )
    def status() -> str:
        user = callers.user(None)
        stats = _call(slot, lambda s: s.stats(user))
        return json.dumps(stats.model_dump(), indent=2)

    @mcp.prompt()
    def memory_context(query: str, user_id: str | None = None, max_tokens: str | None = None) -> str:
        """Memory relevant to `query`, assembled as context for answering the user (within max_tokens, estimated
        as characters / 4, when given)."""
        budget = _whole_number(max_tokens, "max_tokens")
        result = _call(slot, lambda s: s.retrieve_memory(query, user_id, max_tokens=budget))
        return f"Use this memory of earlier conversations when you answer.\n\n{result.context}"

    return mcp
