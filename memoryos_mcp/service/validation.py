"""Input checks shared by every entry point (MCP tools, CLI, benchmarks). Messages tell the caller what to fix."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from memoryos_mcp.core.context import MIN_BUDGET
from memoryos_mcp.core.dates import parse_iso
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.models import Scalar
from memoryos_mcp.service.messages import quote
from memoryos_mcp.service.settings import user_id_problem

_METADATA_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# JSON numbers are IEEE doubles in most clients (and in Chroma's metadata, int64): beyond 2^53 an integer
# silently comes back as a different number, so it is refused and the caller told to send a string.
SAFE_INTEGER = 2**53


def user_id(value: str | None, default: str) -> str:
    """The caller's user_id, or `default` when none was given (None only: "" is a mistake, not a default)."""
    uid = default if value is None else value
    problem = user_id_problem(uid)
    if problem:
        raise InvalidInputError(f"user_id {quote(uid)} is invalid: {problem}")
    return uid


def text(value: str | None, name: str, limit: int) -> str:
    value = value or ""
    if len(value) > limit:
        raise InvalidInputError(
            f"{name} is {len(value)} characters; the limit is {limit}. Shorten or split it."
        )
    return value


def exchange(user_input: str | None, agent_response: str | None, limit: int) -> tuple[str, str]:
    ui = text(user_input, "user_input", limit)
    ar = text(agent_response, "agent_response", limit)
    if not ui.strip() and not ar.strip():
        raise InvalidInputError("user_input and agent_response are both empty: give at least one of them")
    return ui, ar


def query(value: str | None, limit: int) -> str:
    q = text(value, "query", limit)
    if not q.strip():
        raise InvalidInputError("query must not be empty: say what to look for in memory")
    return q


def timestamp(value: str | None) -> str:
    """ISO-8601 or 'YYYY-MM-DD HH:MM:SS'; none means now (UTC). Returned as ISO-8601 to the second."""
    if value is None or value.strip() == "":
        return datetime.now(timezone.utc).isoformat(timespec="seconds")
    parsed = _iso(
        value,
        f"timestamp {quote(value)} is not understood: use ISO-8601 such as '2024-05-08T13:56:00' or "
        "'2024-05-08 13:56:00'",
    )
    return parsed.isoformat(timespec="seconds")


def _iso(value: str, error: str) -> datetime:
    """An ISO-8601 date or datetime ('Z' accepted for UTC), or InvalidInputError(error)."""
    try:
        return parse_iso(value)
    except ValueError:
        raise InvalidInputError(error) from None


def metadata(value: dict[str, Any] | None, *, max_keys: int, max_value_chars: int) -> dict[str, Scalar]:
    """A flat JSON object of string, number or boolean values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError("metadata must be a JSON object of string, number or boolean values")
    if len(value) > max_keys:
        raise InvalidInputError(f"metadata has {len(value)} keys; the limit is {max_keys}")
    clean: dict[str, Scalar] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise InvalidInputError(
                f"metadata key {quote(key)} is invalid: use 1-64 characters from letters, digits, '_', '.', ':' and '-'"
            )
        if isinstance(item, bool | str):
            pass
        elif isinstance(item, int):
            if not -SAFE_INTEGER <= item <= SAFE_INTEGER:
                raise InvalidInputError(
                    f"metadata[{quote(key)}] is {quote(item)}, outside ±2^53 where JSON numbers lose precision: "
                    "send it as a string"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInputError(f"metadata[{quote(key)}] must be a finite number")
        elif isinstance(item, dict | list):
            raise InvalidInputError(
                f"metadata[{quote(key)}] is nested ({type(item).__name__}); metadata must be flat: "
                "string, number or boolean values only"
            )
        else:
            raise InvalidInputError(
                f"metadata[{quote(key)}] must be a string, number or boolean, not {quote(item)}"
            )
        if isinstance(item, str) and len(item) > max_value_chars:
            raise InvalidInputError(
                f"metadata[{quote(key)}] is {len(item)} characters; the limit per value is {max_value_chars}"
            )
        clean[key] = item
    return clean


def positive(value: int | None, name: str, upper: int) -> int | None:
    if value is None:
        return None
    if value < 1 or value > upper:
        raise InvalidInputError(f"{name} must be between 1 and {upper}, got {value}")
    return value


MAX_TOKENS_CAP = 1_000_000


def max_tokens(value: int | None) -> int | None:
    """A budget of the text retrieve_memory returns, in estimated tokens; None: no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BUDGET <= value <= MAX_TOKENS_CAP:
        raise InvalidInputError(
            f"max_tokens must be a whole number from {MIN_BUDGET} to {MAX_TOKENS_CAP:,} (tokens, estimated as "
            f"characters / 4), got {quote(value)}; leave it out for no limit"
        )
    return value


def _bound(value: str, name: str, end_of_day: bool) -> float:
    raw = value.strip()
    parsed = _iso(
        value,
        f"{name} {quote(value)} is not understood: use an ISO-8601 date or datetime such as '2024-05-08' "
        "or '2024-05-08T13:56:00'",
    )
    if parsed.tzinfo is None:  # stored timestamps without a zone are read as UTC too
        parsed = parsed.replace(tzinfo=timezone.utc)
    if end_of_day and len(raw) == 10:  # a date alone: inclusive means the whole day
        return parsed.timestamp() + 86400 - 1e-6
    return parsed.timestamp()


def time_range(since: str | None, until: str | None) -> tuple[float, float] | None:
    """Inclusive [since, until] in seconds since the epoch; None when neither is given. A date alone as
    `until` covers that whole day."""
    if (since is None or not since.strip()) and (until is None or not until.strip()):
        return None
    lo = _bound(since, "since", False) if since and since.strip() else -math.inf
    hi = _bound(until, "until", True) if until and until.strip() else math.inf
    if lo > hi:
        raise InvalidInputError(f"since ({since}) is after until ({until}): give since ≤ until")
    return lo, hi


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidInputError("idempotency_key must be a non-empty string of at most 256 characters")
    return value


def choice(value: str | None, name: str, accepted: tuple[str, ...], default: str) -> str:
    if value is None or value == "":
        return default
    if value not in accepted:
        raise InvalidInputError(f"{name} {quote(value)} is not one of: {', '.join(accepted)}")
    return value


def id_list(values: Any, name: str, limit: int = 1000) -> list[str]:
    """A list of record ids (page or fact ids as list_memories returns them)."""
    if values is None:
        return []
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) and v for v in values):
        raise InvalidInputError(f"{name} must be a list of id strings as list_memories returns them")
    if len(values) > limit:
        raise InvalidInputError(f"{name} has {len(values)} ids; at most {limit} per call")
    return list(dict.fromkeys(values))


def moment(value: str, name: str) -> float:
    """A point in time (ISO date or datetime; a date means its start) in seconds since the epoch."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be an ISO-8601 date or datetime such as '2024-05-08'")
    return _bound(value, name, False)


_PROFILE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,63}$")


def profile_key(value: str | None) -> str:
    """A static profile entry's name ("name", "location", "favourite food")."""
    key = (value or "").strip()
    if not _PROFILE_KEY.match(key):
        raise InvalidInputError(
            f"profile_key {quote(value)} is invalid: use 1-64 letters, digits, spaces, '_' or '-', starting "
            "with a letter (get_user_profile shows the keys in use)"
        )
    return key
