"""The export format: versioned JSON Lines, every tier of some users, vectors included.

The first line is the header (`format`, `version`, `exported_at`, the embedding model); then, per user, a
`user` line, that user's records — `segment`, `page` (with its tier), `chain_head`, `fact`, `profile` — and a
`user_end` line counting them. Vectors are base64 of little-endian float32: restoring them is what makes the
copy exact (same scores, same segment matching) and fast (nothing is embedded), at about 2 KB per record with
the default 384-dimension model. This module writes and reads records; export.py and restore.py move them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from memoryos_mcp import __version__
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.models import Fact, Page, Segment, SentenceVectors, TraitLevel, UserProfile
from memoryos_mcp.core.protocols import ChainHead
from memoryos_mcp.service import validation

logger = logging.getLogger(__name__)

FORMAT = "memoryos-export"


# Bump when a reader of the previous version would misread a file. 2: page records may carry `sentences`
# (a reader of 1 would reject them as an unknown key); 3: fact records may carry the person's correction
# (`corrected_from`, `corrected_at`) and the profile the keys the person set (`set_by_person`). Files of
# earlier versions are read as before.
FORMAT_VERSION = 3


END_COUNTS = ("segment", "page", "chain_head", "fact", "profile")


TIERS = ("short_term", "mid_term")


def encode_vector(vector: Any) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: Any) -> np.ndarray:
    if not isinstance(text, str) or not text:
        raise InvalidInputError("embedding must be a non-empty base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("embedding is not valid base64") from None
    if len(raw) % 4:
        raise InvalidInputError("embedding is not a whole number of float32 values (truncated?)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def decode_sentences(text: Any, dim: int) -> SentenceVectors:
    if not isinstance(text, str) or not text:
        raise InvalidInputError("sentences must be a non-empty base64 string")
    try:
        return SentenceVectors.from_text(text, dim)
    except ValueError as exc:
        raise InvalidInputError(f"sentences: {exc} (a truncated line?)") from None


def line_of(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def header(embedding_model: str, users: Sequence[str]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "memoryos_mcp": __version__,
        "embedding_model": embedding_model,
        "embedding_encoding": "base64 float32 little-endian",
        "users": list(users),
    }


def page_record(page: Page, tier: str) -> dict[str, Any]:
    return {
        "type": "page",
        "user_id": page.user_id,
        "id": page.id,
        "tier": tier,
        "user_input": page.user_input,
        "agent_response": page.agent_response,
        "timestamp": page.timestamp,
        "added_at": page.added_at,
        "metadata": page.metadata,
        "segment_id": page.segment_id,
        "chain_id": page.chain_id,
        "chain_summary": page.chain_summary,
        "analyzed": page.analyzed,
        "embedding": encode_vector(page.embedding),
        # The page's sentence vectors as the store keeps them (float32 scales, then int8 codes; base64);
        # absent for a page stored before sentences were embedded.
        **({"sentences": page.sentences.to_text()} if page.sentences is not None else {}),
    }


def segment_record(s: Segment) -> dict[str, Any]:
    return {
        "type": "segment",
        "user_id": s.user_id,
        "id": s.id,
        "summary": s.summary,
        "keyword_counts": s.keyword_counts,
        "created_at": s.created_at,
        "last_access": s.last_access,
        "n_visit": s.n_visit,
        "l_interaction": s.l_interaction,
        "page_count": s.page_count,
        "archived": s.archived,
        "embedding": encode_vector(s.embedding),
    }


def head_record(head: ChainHead) -> dict[str, Any]:
    return {
        "type": "chain_head",
        "user_id": head.user_id,
        "chain_id": head.chain_id,
        "chain_summary": head.chain_summary,
        "last_page_id": head.last_page_id,
        "last_page_text": head.last_page_text,
        "embedding": encode_vector(head.embedding),
    }


def fact_record(f: Fact) -> dict[str, Any]:
    return {
        "type": "fact",
        "user_id": f.user_id,
        "id": f.id,
        "kind": f.kind,
        "text": f.text,
        "created_at": f.created_at,
        "source_segment": f.source_segment,
        "source_pages": f.source_pages,
        "embedding": encode_vector(f.embedding),
        **({"corrected_from": f.corrected_from, "corrected_at": f.corrected_at} if f.corrected_from else {}),
    }


def profile_record(profile: UserProfile, embedding: Any) -> dict[str, Any]:
    return {
        "type": "profile",
        "user_id": profile.user_id,
        "static": profile.static,
        "traits": {
            group: {dim: {"level": t.level, "evidence": t.evidence} for dim, t in dims.items()}
            for group, dims in profile.traits.items()
        },
        "updated_at": profile.updated_at,
        "embedding": encode_vector(embedding),
        **({"set_by_person": profile.set_by_person} if profile.set_by_person else {}),
    }


def peek(lines: Iterable[str]) -> tuple[str | None, Iterator[str]]:
    """The first non-blank line, and an iterator over all lines (that one included, line numbers kept)."""
    iterator = iter(lines)
    consumed: list[str] = []
    for raw in iterator:
        consumed.append(raw)
        if raw.strip():
            return raw, _chain(consumed, iterator)
    return None, iter(consumed)


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def is_export(first_line: str | None) -> bool:
    """True when the first line is an export header (any version): the import then restores it."""
    if first_line is None:
        return False
    try:
        item = json.loads(first_line)
    except json.JSONDecodeError:
        return False
    return isinstance(item, dict) and item.get("format") == FORMAT


def check_header(first_line: str, embedding_model: str) -> dict[str, Any]:
    """The header, or InvalidInputError when this code cannot restore the file faithfully."""
    item = json.loads(first_line)
    version = item.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInputError(f"the export header has no valid format version (got {version!r})")
    if version > FORMAT_VERSION:
        raise InvalidInputError(
            f"this export is format version {version}, written by a newer memoryos-mcp "
            f"({item.get('memoryos_mcp', 'unknown')}); this one ({__version__}) reads versions up to "
            f"{FORMAT_VERSION}. Upgrade memoryos-mcp to import it."
        )
    model = item.get("embedding_model")
    if model and model != embedding_model:
        raise InvalidInputError(
            f"this export holds vectors of the embedding model {model!r}, but this store is configured with "
            f"{embedding_model!r}: retrieval would compare vectors of two models. Import it with "
            f"MEMORYOS_EMBEDDING_MODEL={model} (and serve it with that model)."
        )
    return item


def _get(item: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = item.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (
        isinstance(value, bool) and bool not in kinds
    ):  # JSON true is no count
        raise InvalidInputError(
            f"{key} must be {' or '.join(k.__name__ for k in kinds)}, not {type(value).__name__}"
        )
    return value


_NUMBER = (int, float)


def _optional(item: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """A key newer versions added: checked like the others when present, `default` when absent."""
    return _get(item, key, kind) if key in item else default


def _strings(item: dict[str, Any], key: str, default: list[str] | None = None) -> list[str]:
    """A list of strings (ids, keys); `default`: the key may be absent."""
    values = _optional(item, key, list, default) if default is not None else _get(item, key, list)
    if any(not isinstance(v, str) for v in values):
        raise InvalidInputError(f"{key} must be a list of strings")
    return list(values)


_KEYS = {
    "page": {"type", "user_id", "id", "tier", "user_input", "agent_response", "timestamp", "added_at", "metadata",
             "segment_id", "chain_id", "chain_summary", "analyzed", "embedding"},
    "segment": {"type", "user_id", "id", "summary", "keyword_counts", "created_at", "last_access", "n_visit",
                "l_interaction", "page_count", "archived", "embedding"},
    "chain_head": {"type", "user_id", "chain_id", "chain_summary", "last_page_id", "last_page_text", "embedding"},
    "fact": {"type", "user_id", "id", "kind", "text", "created_at", "source_segment", "source_pages", "embedding"},
    "profile": {"type", "user_id", "static", "traits", "updated_at", "embedding"},
    "user": {"type", "user_id"},
    "user_end": {"type", "user_id", "counts"},
}  # fmt: skip


_OPTIONAL = {
    "page": {"sentences"},
    "fact": {"corrected_from", "corrected_at"},
    "profile": {"set_by_person"},
}


def parse_record(raw: str) -> tuple[str, dict[str, Any]]:
    """(type, the JSON object) of one line after the header, checked for its keys."""
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not JSON ({exc.msg} at column {exc.colno}; a truncated line?)") from None
    if not isinstance(item, dict):
        raise InvalidInputError(f"a line must be a JSON object, not {type(item).__name__}")
    kind = item.get("type")
    if kind not in _KEYS:
        raise InvalidInputError(f"unknown record type {kind!r}; known: {', '.join(sorted(_KEYS))}")
    allowed = _KEYS[kind] | _OPTIONAL.get(kind, set())
    missing, unknown = sorted(_KEYS[kind] - set(item)), sorted(set(item) - allowed)
    if missing or unknown:
        raise InvalidInputError(f"{kind} record: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(unknown)}" if unknown else "") if part
        ))  # fmt: skip
    validation.user_id(_get(item, "user_id", str), "")
    return kind, item


def to_page(item: dict[str, Any]) -> tuple[str, Page]:
    tier = _get(item, "tier", str)
    if tier not in TIERS:
        raise InvalidInputError(f"tier must be short_term or mid_term, not {tier!r}")
    metadata = _get(item, "metadata", dict)
    if any(not isinstance(v, str | int | float | bool) for v in metadata.values()):
        raise InvalidInputError("metadata values must be strings, numbers or booleans")
    page = Page(
        id=_get(item, "id", str),
        user_id=item["user_id"],
        user_input=_get(item, "user_input", str),
        agent_response=_get(item, "agent_response", str),
        timestamp=_get(item, "timestamp", str),
        added_at=_get(item, "added_at", int),
        metadata=metadata,
        chain_id=_get(item, "chain_id", str),
        chain_summary=_get(item, "chain_summary", str),
        segment_id=_get(item, "segment_id", str),
        analyzed=_get(item, "analyzed", bool),
        embedding=decode_vector(item["embedding"]),
    )
    if "sentences" in item:
        page.sentences = decode_sentences(item["sentences"], len(page.embedding))
    if tier == "mid_term" and not page.segment_id:
        raise InvalidInputError("a mid-term page needs its segment_id")
    return tier, page


def to_segment(item: dict[str, Any]) -> Segment:
    counts = _get(item, "keyword_counts", dict)
    if any(not isinstance(v, int) or isinstance(v, bool) for v in counts.values()):
        raise InvalidInputError("keyword_counts values must be integers")
    return Segment(
        id=_get(item, "id", str),
        user_id=item["user_id"],
        summary=_get(item, "summary", str),
        keyword_counts=dict(counts),
        created_at=float(_get(item, "created_at", _NUMBER)),
        last_access=float(_get(item, "last_access", _NUMBER)),
        n_visit=_get(item, "n_visit", int),
        l_interaction=_get(item, "l_interaction", int),
        page_count=_get(item, "page_count", int),
        archived=_get(item, "archived", bool),
        embedding=decode_vector(item["embedding"]),
    )


def to_head(item: dict[str, Any]) -> ChainHead:
    return ChainHead(
        user_id=item["user_id"],
        chain_id=_get(item, "chain_id", str),
        chain_summary=_get(item, "chain_summary", str),
        last_page_id=_get(item, "last_page_id", str),
        last_page_text=_get(item, "last_page_text", str),
        embedding=decode_vector(item["embedding"]),
    )


def to_fact(item: dict[str, Any]) -> Fact:
    kind = _get(item, "kind", str)
    if kind not in ("user_fact", "assistant_trait"):
        raise InvalidInputError(f"kind must be user_fact or assistant_trait, not {kind!r}")
    return Fact(
        id=_get(item, "id", str),
        user_id=item["user_id"],
        kind=kind,
        text=_get(item, "text", str),
        created_at=float(_get(item, "created_at", _NUMBER)),
        source_segment=_get(item, "source_segment", str),
        source_pages=_strings(item, "source_pages"),
        embedding=decode_vector(item["embedding"]),
        corrected_from=_optional(item, "corrected_from", str, ""),
        corrected_at=float(_optional(item, "corrected_at", _NUMBER, 0.0)),
    )


def to_profile(item: dict[str, Any]) -> tuple[UserProfile, np.ndarray]:
    static = _get(item, "static", dict)
    if any(not isinstance(v, str) for v in static.values()):
        raise InvalidInputError("profile static values must be strings")
    traits: dict[str, dict[str, TraitLevel]] = {}
    for group, dims in _get(item, "traits", dict).items():
        if not isinstance(dims, dict):
            raise InvalidInputError(f"profile trait group {group!r} must be an object")
        traits[group] = {}
        for dim, t in dims.items():
            if (
                not isinstance(t, dict)
                or t.get("level") not in ("High", "Medium", "Low")
                or not isinstance(t.get("evidence"), str)
            ):
                raise InvalidInputError(
                    f"profile trait {group}/{dim} needs a level (High, Medium, Low) and evidence"
                )
            traits[group][dim] = TraitLevel(level=t["level"], evidence=t["evidence"])
    profile = UserProfile(
        user_id=item["user_id"],
        static=dict(static),
        traits=traits,
        updated_at=float(_get(item, "updated_at", _NUMBER)),
        set_by_person=_strings(item, "set_by_person", default=[]),
    )
    return profile, decode_vector(item["embedding"])
