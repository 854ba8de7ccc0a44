"""Import of an export file: every tier of its users restored exactly (the format: export_format.py).

The import writes the records straight into the store (not through the add pipeline: that would re-run
eviction, topic matching and promotion, and change what the export holds), then seals each user with one
change-log entry carrying the counts, so every process's cached state reloads. A user who already has
memory here is checked, not merged: present when it holds exactly these records (a re-run), refused else.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memoryos_mcp.core.errors import InvalidInputError, MemoryOSError, StorageError
from memoryos_mcp.core.protocols import Change
from memoryos_mcp.core.state import FACT_KINDS
from memoryos_mcp.service.bulk import failed_lines
from memoryos_mcp.service.export_format import (
    END_COUNTS,
    check_header,
    parse_record,
    to_fact,
    to_head,
    to_page,
    to_profile,
    to_segment,
)
from memoryos_mcp.service.facade import MemoryService

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 512  # records per store write on import


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
        text += failed_lines(self.failed, shown)
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
            if not isinstance(counts, dict) or any(counts.get(k) != self.seen[k] for k in END_COUNTS):
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
