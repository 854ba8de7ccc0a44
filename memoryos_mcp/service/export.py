"""Export of whole memories (the format: export_format.py). The export reads only what the store holds, so
what was forgotten is not in it."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memoryos_mcp.core.errors import MemoryOSError, StorageError
from memoryos_mcp.core.protocols import MemoryStore
from memoryos_mcp.core.state import FACT_KINDS
from memoryos_mcp.service.export_format import (
    END_COUNTS,
    fact_record,
    head_record,
    header,
    line_of,
    page_record,
    profile_record,
    segment_record,
)
from memoryos_mcp.service.facade import MemoryService

logger = logging.getLogger(__name__)

_SEGMENTS_PER_READ = 100  # segments whose pages one export read fetches


class StoredVectorsOnly:
    """An Embedder for export and import, which move stored vectors and embed nothing: building the service
    with it skips loading the embedding model (seconds of start-up)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("export and import move stored vectors; nothing should be embedded")


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
        write(line_of(record))
        counts[record["type"]] += 1

    write(line_of({"type": "user", "user_id": user_id}))
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
    write(line_of({"type": "user_end", "user_id": user_id, "counts": {k: counts[k] for k in END_COUNTS}}))
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
    write(line_of(header(service.settings.embedding_model, users)))
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
