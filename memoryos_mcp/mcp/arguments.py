"""The tools' arguments, each described once (what the model reads) with its bounds; and the annotations."""

from __future__ import annotations

import logging
from typing import Annotated, Any, TypeVar

from mcp.types import ToolAnnotations
from pydantic import Field

from memoryos_mcp.service.settings import USER_ID_PATTERN

T = TypeVar("T")
logger = logging.getLogger(__name__)

UserId = Annotated[
    str | None,
    Field(
        description="Whose memory: 1-64 of [A-Za-z0-9._-]. Omit to use the server's default user "
        "(over HTTP: the user your token is bound to).",
        json_schema_extra={"pattern": USER_ID_PATTERN},
    ),
]


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
