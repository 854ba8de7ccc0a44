"""Sentence vectors for pages stored before they were embedded: `memoryos-mcp embed-sentences`.

Retrieval re-orders its best pages by their best sentence (index/page_index.py). A page stored by an older
version has no sentence vectors: it ranks with its own vector as its one sentence, which is what it had
before, and this command gives it real ones. Pages are read per group of segments (under the user's write
lease, taken per group), their sentences embedded in batches and written to the page records alone; each
batch is logged right after it is written as one change (its pages out of the index and back in), so every
server process's cached index — and the next snapshot — takes the new vectors. Safe to stop and run again:
a page that has its vectors is not embedded twice; a process killed between a write and its log entry
leaves at most one batch unseen by other processes' cached indexes until they reload the user.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from memoryos_mcp.core.memory import embed_pages
from memoryos_mcp.core.models import Page
from memoryos_mcp.core.protocols import Change
from memoryos_mcp.core.state import UserState
from memoryos_mcp.errors import StorageError
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
    segment_ids = [s.id for s in store.list_segments(user_id, include_archived=True)]
    groups: list[tuple[str, list[str]]] = [("short_term", [])]
    groups += [
        ("mid_term", segment_ids[start : start + SEGMENTS_PER_READ])
        for start in range(0, len(segment_ids), SEGMENTS_PER_READ)
    ]
    try:
        for tier, chunk in groups:
            # The user's write lease per group, as an add takes it: adds of running servers wait seconds,
            # not the whole backfill.
            with memory._writing(user_id) as state:
                if state.seq == 0:  # no memory here
                    return
                pages = (
                    store.list_stm_pages(user_id)
                    if tier == "short_term"
                    else store.pages_of_segments(user_id, chunk)
                )
                _embed_group(service, user_id, tier, pages, state, report, progress)
    finally:
        memory.states.drop(user_id)  # its cached index holds the old vectors: read it again


def _embed_group(
    service: MemoryService,
    user_id: str,
    tier: str,
    pages: list[Page],
    state: UserState,
    report: BackfillReport,
    progress: Callable[[int], None],
) -> None:
    usable = [p for p in pages if p.embedding is not None]
    todo = [p for p in usable if p.sentences is None]
    report.present += len(usable) - len(todo)
    progress(len(pages) - len(todo))
    store, memory = service.store, service.memory
    for start in range(0, len(todo), EMBED_BATCH):
        batch = todo[start : start + EMBED_BATCH]
        embed_pages(memory.embedder, batch, sentences_only=True)
        if memory._lease_lost.get(user_id):
            raise StorageError(f"lost the write lease of user {user_id!r}; run embed-sentences again")
        store.put_sentences(user_id, tier, batch)
        # Logged right after each write: a process whose index holds these pages takes them out and reads
        # them back (a re-run skips pages that have vectors, so a write must not go unlogged).
        indexed = [p.id for p in batch if tier == "mid_term" and p.segment_id in state.segments]
        version = store.read_version(user_id)
        change = Change(
            seq=version.seq + 1,
            pages_removed=indexed,
            pages_added=indexed,
            epoch=version.epoch,
            mid_term_pages=state.mid_term_pages,
            archived_segments=state.archived_segments,
        )
        store.append_change(user_id, change, memory.owner)
        discard_snapshot(service, user_id)
        report.embedded += len(batch)
        progress(len(batch))
