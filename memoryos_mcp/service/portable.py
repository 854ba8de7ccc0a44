"""Export and import of whole memories: every tier of some users as versioned JSON Lines, restored exactly.

An export is JSON Lines. The first line is the header (`format`, `version`, `exported_at`, the embedding
model); then, per user, a `user` line, that user's records — `segment`, `page` (with its tier),
`chain_head`, `fact`, `profile` — and a `user_end` line counting them. Vectors are included (base64 of
little-endian float32): restoring them is what makes the copy exact (same scores, same segment matching)
and fast (nothing is embedded), at about 2 KB per record with the default 384-dimension model.

The import writes the records straight into the store (not through the add pipeline: that would re-run
eviction, topic matching and promotion, and change what the export holds), then seals each user with one
change-log entry carrying the counts, so every process's cached state reloads. The export reads only what
the store holds, so what was forgotten is not in it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from memoryos_mcp import __version__
from memoryos_mcp.core.errors import InvalidInputError, MemoryOSError, StorageError
from memoryos_mcp.core.models import Fact, Page, Segment, SentenceVectors, TraitLevel, UserProfile
from memoryos_mcp.core.protocols import ChainHead, Change, MemoryStore
from memoryos_mcp.core.state import FACT_KINDS
from memoryos_mcp.service import validation
from memoryos_mcp.service.facade import MemoryService

logger = logging.getLogger(__name__)

FORMAT = "memoryos-export"
# Bump when a reader of the previous version would misread a file. 2: page records may carry `sentences`
# (a reader of 1 would reject them as an unknown key); files of version 1 are read as before.
FORMAT_VERSION = 2
DEFAULT_CHUNK = 512  # records per store write on import
_SEGMENTS_PER_READ = 100  # segments whose pages one export read fetches
_TIERS = ("short_term", "mid_term")
_END_COUNTS = ("segment", "page", "chain_head", "fact", "profile")


class StoredVectorsOnly:
    """An Embedder for export and import, which move stored vectors and embed nothing: building the service
    with it skips loading the embedding model (seconds of start-up)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("export and import move stored vectors; nothing should be embedded")


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


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------------------------------------- export


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
    }


@dataclass
class ExportReport:
    """What an export wrote, and the users that changed while they were read (their copy may be torn)."""

    users: int = 0
    records: Counter[str] = field(default_factory=Counter)
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        r = self.records
        text = (
            f"exported {self.users} user(s): {r['page']} pages, {r['segment']} segments, {r['fact']} facts, "
            f"{r['profile']} profile(s) ({self.seconds:.1f} s)"
        )
        for user in self.changed:
            text += (
                f"\n  user {user} was written to while it was exported: export it again for a consistent copy"
            )
        return text


def export_user(
    store: MemoryStore,
    user_id: str,
    write: Callable[[str], None],
    report: ExportReport,
    progress: Callable[[int], None],
) -> None:
    """Write one user's block. Reads are bounded: pages come a hundred segments at a time."""
    before = store.read_version(user_id)
    counts: Counter[str] = Counter()

    def emit(record: dict[str, Any]) -> None:
        write(_line(record))
        counts[record["type"]] += 1

    write(_line({"type": "user", "user_id": user_id}))
    segments = store.list_segments(user_id, include_archived=True)
    for segment in segments:
        emit(segment_record(segment))
    stm = store.list_stm_pages(user_id)
    for page in stm:
        emit(page_record(page, "short_term"))
    progress(len(stm))
    ids = [s.id for s in segments]
    for start in range(0, len(ids), _SEGMENTS_PER_READ):
        pages = store.pages_of_segments(user_id, ids[start : start + _SEGMENTS_PER_READ])
        for page in pages:
            emit(page_record(page, "mid_term"))
        progress(len(pages))
    head = store.get_chain_head(user_id)
    if head is not None:
        emit(head_record(head))
    for kind in FACT_KINDS:
        for fact in store.list_facts(user_id, kind):
            emit(fact_record(fact))
    profile = store.get_profile(user_id)
    embedding = store.profile_embedding(user_id) if profile is not None else None
    if profile is not None and embedding is not None:
        emit(profile_record(profile, embedding))
    write(_line({"type": "user_end", "user_id": user_id, "counts": {k: counts[k] for k in _END_COUNTS}}))
    if store.read_version(user_id).seq != before.seq:
        logger.warning("user %s changed while it was exported", user_id)
        report.changed.append(user_id)
    report.users += 1
    report.records.update(counts)


def export_users(
    service: MemoryService,
    users: Sequence[str],
    write: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the header and each user's block; `progress(n)` is told each time n more pages are written."""
    report = ExportReport()
    started = time.monotonic()
    write(_line(header(service.settings.embedding_model, users)))
    for user in users:
        try:
            export_user(service.store, user, write, report, progress or (lambda n: None))
        except MemoryOSError:
            raise
        except Exception as exc:  # Chroma raises many types; the operator needs one message
            raise StorageError(f"the store failed while exporting user {user}: {exc}") from exc
    report.seconds = time.monotonic() - started
    return report


def has_memory(store: MemoryStore, user_id: str) -> bool:
    return store.read_version(user_id).seq > 0 or bool(store.list_stm_pages(user_id))


# ---------------------------------------------------------------------------------------------- import


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
_OPTIONAL = {"page": {"sentences"}}


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
    if tier not in _TIERS:
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
    sources = _get(item, "source_pages", list)
    if any(not isinstance(s, str) for s in sources):
        raise InvalidInputError("source_pages must be a list of page ids")
    return Fact(
        id=_get(item, "id", str),
        user_id=item["user_id"],
        kind=kind,
        text=_get(item, "text", str),
        created_at=float(_get(item, "created_at", _NUMBER)),
        source_segment=_get(item, "source_segment", str),
        source_pages=list(sources),
        embedding=decode_vector(item["embedding"]),
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
    )
    return profile, decode_vector(item["embedding"])


@dataclass
class RestoreReport:
    """What an import of an export did: users restored, already present, refused or left incomplete; lines
    that failed (number and reason; the rest are imported)."""

    restored: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    incomplete: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    records: Counter[str] = field(default_factory=Counter)  # written, by type
    lines: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.failed or self.refused or self.incomplete)

    def summary(self, shown: int = 20) -> str:
        r = self.records
        rate = r["page"] / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"restored {len(self.restored)} user(s) ({r['page']} pages, {r['segment']} segments, {r['fact']} facts, "
            f"{r['profile']} profile(s)), {len(self.present)} already present, {len(self.refused)} refused, "
            f"{len(self.incomplete)} incomplete; failed {len(self.failed)} line(s) "
            f"(of {self.lines} lines, {self.seconds:.1f} s, {rate:.0f} pages/s)"
        )
        for number, reason in self.failed[:shown]:
            text += f"\n  line {number}: {reason}"
        if len(self.failed) > shown:
            text += f"\n  … and {len(self.failed) - shown} more failed lines"
        for user, reason in self.refused:
            text += f"\n  user {user} refused: {reason}"
        for user, reason in self.incomplete:
            text += f"\n  user {user} incomplete: {reason}"
        return text


class _UserBlock:
    """The records of one user between its `user` and `user_end` lines, restored or checked as they come.

    restore: the user has no committed memory here; records are written in chunks and the user is sealed
    (one change-log entry) at `user_end` when every line of the block was good.
    verify: the user has memory here; nothing is written; at `user_end` it counts as already present when
    the store holds exactly these records (a re-run), and is refused otherwise (nothing silently merged).
    """

    def __init__(
        self, service: MemoryService, user_id: str, line: int, chunk: int, report: RestoreReport
    ) -> None:
        self.service = service
        self.store = service.store
        self.user_id = user_id
        self.line = line
        self.chunk = chunk
        self.report = report
        self.seen: Counter[str] = Counter()  # good records by type
        self.bad = 0  # lines of this block that failed
        self.pending: list[tuple[int, str, Any]] = []  # (line, type, parsed) not written or checked yet
        self.written: Counter[str] = Counter()
        self.tiers: Counter[str] = Counter()
        self.archived = 0
        self.lease = contextlib.ExitStack()
        self.version = self.store.read_version(user_id)
        self.mode = "verify" if self.version.seq > 0 else "restore"
        if self.mode == "restore":
            service.memory.discard_snapshot(
                user_id
            )  # a stale one (of a user forgotten here) must never be loaded
            # The write lease an add takes: no other server process writes this user meanwhile.
            self.lease.enter_context(service.memory.writing(user_id))
        else:
            self.missing = 0
            self.target_segments = {s.id for s in self.store.list_segments(user_id, include_archived=True)}
            self.target_facts = {f.id for kind in FACT_KINDS for f in self.store.list_facts(user_id, kind)}
            self.target_stm = len(self.store.list_stm_pages(user_id))

    def add(self, number: int, kind: str, parsed: Any) -> None:
        self.seen[kind] += 1
        self.pending.append((number, kind, parsed))
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Write (or check) the pending records."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        if self.mode == "verify":
            self._check(pending)
            return
        # Ids are the user's own (random or derived from the user id); one held by another user here means a
        # hand-edited or mixed-up file, and overwriting it would damage that user's memory.
        ids = [_record_id(self.user_id, kind, parsed) for _, kind, parsed in pending]
        owners = self.store.record_owners(ids)
        by_kind: dict[str, list[Any]] = {}
        for (number, kind, parsed), rid in zip(pending, ids, strict=True):
            if owners.get(rid, self.user_id) != self.user_id:
                self.report.failed.append(
                    (number, f"id {rid} belongs to another user in this store; not overwritten")
                )
                self.bad += 1
            else:
                by_kind.setdefault(kind, []).append(parsed)
        self.store.put_segments(
            by_kind.get("segment", []), new=True
        )  # with N_visit and last access as exported
        pages = by_kind.get("page", [])
        self.store.put_stm_pages([page for tier, page in pages if tier == "short_term"])
        self.store.put_mtm_pages([page for tier, page in pages if tier == "mid_term"])
        for head in by_kind.get("chain_head", []):
            self.store.put_chain_head(head)
        self.store.add_facts(by_kind.get("fact", []))
        for profile, embedding in by_kind.get("profile", []):
            self.store.put_profile(profile, embedding)
        for kind, items in by_kind.items():
            self.written[kind] += len(items)
        self.tiers.update(tier for tier, _ in pages)
        self.archived += sum(1 for s in by_kind.get("segment", []) if s.archived)

    def _check(self, pending: list[tuple[int, str, Any]]) -> None:
        pages = [parsed for _, kind, parsed in pending if kind == "page"]
        found = self.store.find_pages(self.user_id, [p.id for _, p in pages])
        # find_pages names mid_term for a page an interrupted move left in both tiers.
        self.missing += sum(
            1 for tier, p in pages if p.id not in found or (tier == "mid_term" and found[p.id] != tier)
        )
        self.missing += sum(
            1 for _, kind, s in pending if kind == "segment" and s.id not in self.target_segments
        )
        self.missing += sum(1 for _, kind, f in pending if kind == "fact" and f.id not in self.target_facts)
        self.tiers.update(tier for tier, _ in pages)
        self.archived += sum(1 for _, kind, s in pending if kind == "segment" and s.archived)

    def finish(self, counts: Any) -> None:
        """At `user_end`: seal, count as present, refuse, or leave incomplete (with the reason)."""
        try:
            self.flush()
            problem = ""
            if not isinstance(counts, dict) or any(counts.get(k) != self.seen[k] for k in _END_COUNTS):
                problem = f"its user_end line counts {counts}, but the file holds {dict(self.seen)}: lines are missing"
            if self.bad:
                problem = f"{self.bad} of its line(s) failed (reported above)"
            if self.mode == "verify":
                self._verdict(problem)
            elif problem:
                self.report.incomplete.append(
                    (self.user_id, f"{problem}; the good records are written but the user is not sealed: fix the file and import it again")
                )  # fmt: skip
            else:
                self._seal()
                self.report.restored.append(self.user_id)
        finally:
            self.close()

    def abandon(self, reason: str) -> None:
        """The block ends without its user_end line: write what was read, leave the user unsealed."""
        try:
            self.flush()
            if self.mode == "restore":
                reason += (
                    "; what was read is written but the user is not sealed: import a complete export again"
                )
            self.report.incomplete.append((self.user_id, reason))
        finally:
            self.close()

    def _verdict(self, problem: str) -> None:
        version = self.store.read_version(self.user_id)
        same = (
            not problem
            and self.missing == 0
            and self.target_stm == self.tiers["short_term"]
            and version.mid_term_pages in (None, self.tiers["mid_term"])
            and version.archived_segments in (None, self.archived)
            and len(self.target_segments) == self.seen["segment"]
            and len(self.target_facts) == self.seen["fact"]
        )
        if same:
            self.report.present.append(self.user_id)
            return
        self.report.refused.append(
            (
                self.user_id,
                f"this store already holds memory of this user that differs from the export ({self.missing} "
                "exported record(s) absent here, or other records here); nothing of it was imported. To replace "
                "it, forget that user's memory here first (forget_memory with all=true), or import into another "
                "data directory.",
            )
        )

    def _seal(self) -> None:
        """One change-log entry with the counts: every process's cached state of the user reloads."""
        # A user restored where it had no memory starts a new epoch, like its first add would.
        epoch = self.version.epoch if self.version.seq > 0 else uuid.uuid4().hex
        change = Change(
            seq=self.version.seq + 1,
            epoch=epoch,
            mid_term_pages=self.tiers["mid_term"],
            archived_segments=self.archived,
        )
        self.store.append_change(self.user_id, change, self.service.memory.owner)
        self.service.memory.discard_snapshot(self.user_id)

    def close(self) -> None:
        self.report.records.update(self.written)
        self.written.clear()
        try:
            self.lease.close()
        finally:
            self.service.memory.states.drop(self.user_id)  # cached while the lease was taken: read it again


def _record_id(user_id: str, kind: str, parsed: Any) -> str:
    if kind == "page":
        return str(parsed[1].id)
    if kind == "chain_head":
        return f"chain:{user_id}"
    if kind == "profile":
        return f"profile:{user_id}"
    return str(parsed.id)


_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "page": to_page,
    "segment": to_segment,
    "chain_head": to_head,
    "fact": to_fact,
    "profile": to_profile,
}


def _vector(kind: str, parsed: Any) -> np.ndarray:
    if kind == "page":
        return np.asarray(parsed[1].embedding)
    if kind == "profile":
        return np.asarray(parsed[1])
    return np.asarray(parsed.embedding)


def import_export(
    service: MemoryService,
    lines: Iterable[str],
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> RestoreReport:
    """Restore an export (its first non-blank line is the header). `progress(n)`: n more lines done.

    Raises InvalidInputError when the header says this code cannot restore the file (a newer format, another
    embedding model); a bad line after it is reported with its number and the rest continue."""
    report = RestoreReport()
    started = time.monotonic()
    tick = progress or (lambda n: None)
    block: _UserBlock | None = None
    header_seen = False
    dim: int | None = None
    number = 0
    try:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            report.lines += 1
            tick(1)
            if not header_seen:
                check_header(raw, service.settings.embedding_model)
                header_seen = True
                continue
            try:
                kind, item = parse_record(raw)
                if kind == "user":
                    if block is not None:
                        ended, block = block, None
                        ended.abandon(f"its records (from line {ended.line}) end without a user_end line")
                    block = _UserBlock(service, item["user_id"], number, chunk_size, report)
                    continue
                if block is None or item["user_id"] != block.user_id:
                    raise InvalidInputError(
                        f"a {kind} record of user {item['user_id']} outside that user's block"
                    )
                if kind == "user_end":
                    ended, block = block, None
                    ended.finish(item["counts"])
                    continue
                parsed = _PARSERS[kind](item)
                size = len(_vector(kind, parsed))
                if dim is None:
                    dim = size
                elif size != dim:
                    raise InvalidInputError(
                        f"embedding has {size} dimensions; the file's first vector had {dim}"
                    )
                block.add(number, kind, parsed)
            except InvalidInputError as exc:
                report.failed.append((number, str(exc)))
                if block is not None:
                    block.bad += 1
        if not header_seen:
            raise InvalidInputError("the file is empty: an export starts with its header line")
        if block is not None:
            ended, block = block, None
            ended.abandon(f"the file ends (line {number}) before its user_end line: the export is truncated")
    except MemoryOSError:
        raise
    except (
        Exception
    ) as exc:  # Chroma raises many types; the operator needs one message (what was sealed stays)
        where = f" while restoring user {block.user_id}" if block is not None else ""
        raise StorageError(f"the store failed{where} (line {number}): {exc}") from exc
    finally:
        if block is not None:  # stopped by an error: release the lease
            block.close()
    report.seconds = time.monotonic() - started
    return report
