"""Bulk import of JSON Lines: one add_memory-shaped object per line, through the same memory model, batched.

Each line becomes a page with a deterministic id (from the user and the line's content, or its
`idempotency_key`), so a re-run — after a crash, or of an overlapping file — skips what is already stored
and imports nothing twice. Lines are grouped per user into chunks: one embedding call and one commit
per chunk. A line counts as done when its chunk's commit returned: that is what the progress reports.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from memoryos_mcp.core.embedding import embed_pages
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.models import Page, page_id_for
from memoryos_mcp.service import validation
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import Settings

logger = logging.getLogger(__name__)

LINE_KEYS = {"user_input", "agent_response", "timestamp", "metadata", "user_id", "idempotency_key"}
DEFAULT_CHUNK = 256  # pages per embedding call and commit: big enough to batch, small enough to lose little


@dataclass
class ImportLine:
    """One valid line, ready to store."""

    number: int
    user_id: str
    page_id: str
    user_input: str
    agent_response: str
    timestamp: str
    metadata: dict[str, Any]


@dataclass
class PreparedImport:
    """A chunk of an import, embedded and not yet stored: its new pages, and how many lines were present."""

    pages: list[Page]
    skipped: int


def prepare(
    service: MemoryService, user_id: str, lines: Sequence[ImportLine], sentences: bool
) -> PreparedImport:
    """The pages of the lines not stored yet, embedded; nothing written. Safe to run in another thread while an
    earlier chunk of the same import commits (its lines are other pages). Without `sentences`, only the pages'
    exchanges are embedded: their sentences wait for the server's backfill."""
    memory = service.memory

    def run() -> PreparedImport:
        present = service.store.find_pages(user_id, [line.page_id for line in lines])
        new = [line for line in lines if line.page_id not in present]
        pages = [
            memory.new_page(
                user_id, ln.user_input, ln.agent_response, ln.timestamp, ln.metadata, page_id=ln.page_id
            )
            for ln in new
        ]
        if pages:
            embed_pages(memory.embedder, pages, sentences=sentences)
        return PreparedImport(pages, len(lines) - len(new))

    return service.run(user_id, "import", run)


def commit(service: MemoryService, user_id: str, prepared: PreparedImport) -> tuple[int, int]:
    """Store prepared pages as one write. Returns (imported, skipped)."""
    if not prepared.pages:
        return 0, prepared.skipped

    def run() -> tuple[int, int]:
        service.count_usage(service.memory.add_pages(user_id, prepared.pages).usage)
        return len(prepared.pages), prepared.skipped

    return service.run(user_id, "import", run, lock="add")


@dataclass
class ImportReport:
    """What an import did: counts, and each failed line's number and reason."""

    imported: int = 0
    skipped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def lines(self) -> int:
        return self.imported + self.skipped + len(self.failed)

    def summary(self, shown: int = 20) -> str:
        rate = self.imported / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"imported {self.imported}, skipped {self.skipped} already present, failed {len(self.failed)} "
            f"(of {self.lines} lines, {len(self.users)} user(s), {self.seconds:.1f} s, {rate:.1f} pages/s)"
        )
        return text + failed_lines(self.failed, shown)


def failed_lines(failed: Sequence[tuple[int, str]], shown: int) -> str:
    """The first `shown` failed lines of an import, one per line, and how many more there were."""
    text = "".join(f"\n  line {number}: {reason}" for number, reason in failed[:shown])
    if len(failed) > shown:
        text += f"\n  … and {len(failed) - shown} more failed lines"
    return text


def parse_line(number: int, raw: str, settings: Settings, default_user: str) -> ImportLine:
    """A validated line, or InvalidInputError saying what is wrong with it."""
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise InvalidInputError(f"a line must be a JSON object, not {type(item).__name__}")
    unknown = sorted(set(item) - LINE_KEYS)
    if unknown:
        raise InvalidInputError(
            f"unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(LINE_KEYS))}"
        )
    for key in ("user_input", "agent_response", "timestamp", "user_id", "idempotency_key"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise InvalidInputError(f"{key} must be a string")
    s = settings
    uid = validation.user_id(item.get("user_id"), default_user)
    user_input, agent_response = validation.exchange(
        item.get("user_input"), item.get("agent_response"), s.max_text_chars
    )
    stamp = validation.timestamp(item.get("timestamp"))
    metadata = validation.metadata(
        item.get("metadata"), max_keys=s.max_metadata_keys, max_value_chars=s.max_metadata_value_chars
    )
    key = item.get("idempotency_key")
    if not key:
        # The content decides the id; a missing timestamp (imported as "now") must not make a re-run differ.
        content = {k: item.get(k) for k in ("user_input", "agent_response", "timestamp", "metadata")}
        key = "content:" + json.dumps(content, sort_keys=True, ensure_ascii=False)
    return ImportLine(number, uid, page_id_for(uid, key), user_input, agent_response, stamp, metadata)


def import_lines(
    service: MemoryService,
    lines: Iterable[str],
    *,
    default_user: str,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
    sentences: bool = False,
) -> ImportReport:
    """Import JSON Lines; `progress(n)` is told each time n more lines are done (stored, skipped or failed).

    Each page's exchange is embedded; its sentences too with `sentences`, else they wait for the server's
    backfill (backfill.py): the import then runs at the rate the model embeds pages, ~2.5x faster."""
    report = ImportReport()
    started = time.monotonic()
    pending: dict[str, list[ImportLine]] = {}
    seen: set[str] = set()  # page ids met in this run: a line repeated in the file is skipped too

    def tick(n: int) -> None:
        if progress is not None and n:
            progress(n)

    # The next chunk is embedded (one thread) while the main thread commits the one before it: the commit's
    # Chroma writes take ~1 ms a page at 100k records, a third of what embedding takes, and no longer add to
    # it. Chunks commit in the order they were read; a chunk's lines are done only when its commit returned.
    embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-embed")
    waiting: tuple[str, int, Future[PreparedImport]] | None = None  # a chunk prepared, not committed

    def committed(user: str, lines: int, prepared: Future[PreparedImport]) -> None:
        imported, skipped = commit(service, user, prepared.result())
        report.imported += imported
        report.skipped += skipped
        tick(lines)

    def flush(user: str) -> None:
        nonlocal waiting
        chunk = pending.pop(user, [])
        if not chunk:
            return
        previous, waiting = (
            waiting,
            (user, len(chunk), embedding.submit(prepare, service, user, chunk, sentences)),
        )
        if previous is not None:
            committed(*previous)

    try:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                line = parse_line(number, raw, service.settings, default_user)
            except InvalidInputError as exc:
                report.failed.append((number, str(exc)))
                tick(1)
                continue
            report.users.add(line.user_id)
            if line.page_id in seen:
                report.skipped += 1
                tick(1)
                continue
            seen.add(line.page_id)
            pending.setdefault(line.user_id, []).append(line)
            if len(pending[line.user_id]) >= chunk_size:
                flush(line.user_id)
        for user in list(pending):
            flush(user)
        if waiting is not None:
            last, waiting = waiting, None
            committed(*last)
    finally:
        if waiting is not None:  # an earlier commit failed: nothing more is stored
            waiting[2].cancel()
        embedding.shutdown(wait=True)
    report.seconds = time.monotonic() - started
    return report
