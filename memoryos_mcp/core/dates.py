"""ISO-8601 dates and times, parsed in one place: what callers give, and what pages store."""

from __future__ import annotations

import math
from datetime import datetime, timezone


def parse_iso(text: str) -> datetime:
    """An ISO-8601 date or datetime ('Z' read as UTC); ValueError when it is not one. A time without a zone
    stays without one (the caller decides what it means)."""
    raw = text.strip()
    return datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)


def epoch_seconds(timestamp: str) -> float:
    """Seconds since the epoch of a stored timestamp (no zone = UTC); NaN when it cannot be parsed."""
    try:
        parsed = parse_iso(timestamp)
    except ValueError:
        return math.nan
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
