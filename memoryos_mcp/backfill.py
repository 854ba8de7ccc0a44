"""Sentence vectors for pages stored before they were embedded: `memoryos-mcp embed-sentences`.

Retrieval re-orders its best pages by their best sentence (index/page_index.py). A page stored by an older
version has no sentence vectors: it ranks with its own vector as its one sentence, which is what it had
before, and this command gives it real ones. Pages are read per group of segments, their sentences embedded
in batches and written to the page records alone; each group is logged as one change (its pages out of the
index and back in), so every server process's cached index — and the next snapshot — takes the new vectors.
Safe to stop and run again: a page that has its vectors is not embedded twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from memoryos_mcp.core.memory import embed_pages
from memoryos_mcp.core.models import Page
from memoryos_mcp.core.protocols import Change
from memoryos_mcp.portable import discard_snapshot
from memoryos_mcp.service import MemoryService

SEGMENTS_PER_READ = 50  # segments whose pages are read, embedded and logged together (a few hundred pages)
EMBED_BATCH = 256  # pages per call to the embedding model


@dataclass
class BackfillReport:
    users: list[str] = field(default_factory=list)
    embedded: int = 0  # pages given sentence vectors
    present: int = 0  # pages that had them
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.embedded / self.seconds if self.seconds else 0.0
        return (
            f"{len(self.users)} user(s): sentence vectors embedded for {self.embedded} page(s), "
            f"{self.present} already had them; {self.seconds:.1f} s, {rate:.1f} pages/s"
        )


def embed_missing_sentences(
    service: MemoryService,
    user_ids: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> BackfillReport:
    """Give every page of these users (both tiers, archived segments too) sentence vectors where it has none.
    `progress(n)`: n more pages looked at."""
    report = BackfillReport()
    started = time.monotonic()
    for user_id in user_ids:
        report.users.append(user_id)
        _user(service, user_id, report, progress or (lambda n: None))
    report.seconds = time.monotonic() - started
    return report


def _user(
    service: MemoryService, user_id: str, report: BackfillReport, progress: Callable[[int], None]
) -> None:
    store, memory = service.store, service.memory
    try:
        # Under the user's write lease, as an add: no other process writes this user meanwhile.
        with memory._writing(user_id) as state:
            if state.seq == 0:  # no memory here
                return
            counts = (state.mid_term_pages, state.archived_segments)
            segments = store.list_segments(user_id, include_archived=True)
            active = {s.id for s in segments if not s.archived}
            _embed_group(
                service,
                user_id,
                "short_term",
                store.list_stm_pages(user_id),
                active,
                counts,
                report,
                progress,
            )
            for start in range(0, len(segments), SEGMENTS_PER_READ):
                chunk = [s.id for s in segments[start : start + SEGMENTS_PER_READ]]
                pages = store.pages_of_segments(user_id, chunk)
                _embed_group(service, user_id, "mid_term", pages, active, counts, report, progress)
    finally:
        memory.states.drop(user_id)  # its cached index holds the old vectors: read it again


def _embed_group(
    service: MemoryService,
    user_id: str,
    tier: str,
    pages: list[Page],
    active: set[str],
    counts: tuple[int, int],
    report: BackfillReport,
    progress: Callable[[int], None],
) -> None:
    todo = [p for p in pages if p.sentences is None and p.embedding is not None]
    report.present += len(pages) - len(todo)
    progress(len(pages) - len(todo))
    if not todo:
        return
    store = service.store
    for start in range(0, len(todo), EMBED_BATCH):
        batch = todo[start : start + EMBED_BATCH]
        embed_pages(service.memory.embedder, batch, sentences_only=True)
        store.put_sentences(user_id, tier, batch)
        report.embedded += len(batch)
        progress(len(batch))
    # One change per group: a process whose index holds these pages takes them out and reads them back.
    indexed = [p.id for p in todo if tier == "mid_term" and p.segment_id in active]
    version = store.read_version(user_id)
    change = Change(
        seq=version.seq + 1,
        pages_removed=indexed,
        pages_added=indexed,
        epoch=version.epoch,
        mid_term_pages=counts[0],
        archived_segments=counts[1],
    )
    store.append_change(user_id, change, service.memory.owner)
    discard_snapshot(service, user_id)
