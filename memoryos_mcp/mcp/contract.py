"""The contract every tool, prompt and resource is held to (the README: Tools), including ones added later:
unknown arguments refused, the caller's user bound to what its token (or allowed_users) permits, every
failure one plain sentence; and how a tool answers (every field as structured content, a text for the model)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedResourceError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import BaseModel, ValidationError

from memoryos_mcp.core.errors import InvalidInputError, MemoryOSError
from memoryos_mcp.service.access import grant_from_claims, resolve_user
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.lazy import LazyService
from memoryos_mcp.service.messages import explain_errors, names, quote, unknown_names

T = TypeVar("T")
logger = logging.getLogger(__name__)


class ServiceSlot:
    """Where the lifespan puts the service; tools and resources read it from here."""

    def __init__(self) -> None:
        self.lazy: LazyService | None = None

    def get(self) -> MemoryService:
        if self.lazy is None:
            raise ToolError(
                "the memory server is not running (no lifespan); this is a bug in the host program"
            )
        return self.lazy.get()


class PageHost(Protocol):
    """The memory page (memoryos_mcp.web.host.MemoryPage): the lifespan hands it the service and takes it
    back; the memory_page tool asks it for the address. mcp/ does not import web/: the CLI composes them."""

    def attach(self, service: Callable[[], MemoryService]) -> None: ...
    def detach(self) -> None: ...
    def address(self, user_id: str) -> str | None: ...


def call(slot: ServiceSlot, fn: Callable[[MemoryService], T]) -> T:
    try:
        return fn(slot.get())
    except MemoryOSError as exc:
        # Only ToolError messages reach the client; domain errors carry an actionable message.
        raise ToolError(str(exc)) from exc


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
        self,
        *args: Any,
        callers: Callers,
        slot: ServiceSlot,
        json_errors: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.callers = callers
        self.slot = slot  # the service, for what runs outside a tool's body (resolvers)
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


M = TypeVar("M", bound=BaseModel)


def answer(result: M, text: Callable[[M], str]) -> CallToolResult:
    """A result as our tools send it: every field as structured content (as the SDK would dump it), and the
    text a model reads (texts.py), not a JSON dump of the same."""
    return CallToolResult(
        content=[TextContent(type="text", text=text(result))],
        structured_content=result.model_dump(mode="json", by_alias=True),
    )


def whole_number(value: str | None, name: str) -> int | None:
    """A prompt argument (prompt arguments are strings) that must be a whole number."""
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise ToolError(f"{name} must be a whole number, got {quote(value)}") from None
