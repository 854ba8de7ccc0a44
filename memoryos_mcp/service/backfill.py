"""Sentence vectors filled in after their pages: the server's background worker, and `memoryos-mcp
embed-sentences` for pages stored by older versions.

Retrieval re-orders its best pages by their best sentence (index/page_index.py), and embedding a page's
sentences costs ~2.5 times embedding the page. So a bulk import embeds each page's exchange only: the page
is retrievable at once, ranking with its own vector as its one sentence (as pages of older versions do), and
the store marks it as waiting for its sentences. `SentenceBackfill` fills them in while the server runs: at
low priority, a batch of pages at a time, each call to the model a few texts long and made only while no
tool call is running, each batch stored by one short write (MemoryOS.put_sentences: logged, so every
process's index takes the vectors). The marks are in the store, so a restart goes on where it stopped.

`embed_missing_sentences` does the same for pages an older version stored without vectors (not marked):
it reads every page of a user, per group of segments. Both are safe to stop and run again: a page that has
its vectors is not embedded twice; a process killed between a write and its log entry leaves at most one
batch unseen by other processes' cached indexes until they reload the user.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memoryos_mcp.core.embedding import embed_sentences
from memoryos_mcp.core.errors import MemoryOSError

if TYPE_CHECKING:
    from memoryos_mcp.service.facade import MemoryService

logger = logging.getLogger(__name__)

SEGMENTS_PER_READ = 50  # segments whose pages embed-sentences reads together (a few hundred pages)
EMBED_BATCH = 256  # pages per call to the embedding model, and per write, of embed-sentences


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
    tick = progress or (lambda n: None)
    store = service.store
    for user_id in user_ids:
        report.users.append(user_id)
        if store.read_version(user_id).seq == 0:  # no memory here
            continue
        segment_ids = [s.id for s in store.list_segments(user_id, include_archived=True)]
        groups = [
            segment_ids[start : start + SEGMENTS_PER_READ]
            for start in range(0, len(segment_ids), SEGMENTS_PER_READ)
        ]
        for group in [None, *groups]:  # None: short-term memory
            pages = (
                store.list_stm_pages(user_id) if group is None else store.pages_of_segments(user_id, group)
            )
            usable = [p for p in pages if p.embedding is not None]
            todo = [p for p in usable if p.sentences is None]
            report.present += len(usable) - len(todo)
            tick(len(pages) - len(todo))
            for start in range(0, len(todo), EMBED_BATCH):
                batch = todo[start : start + EMBED_BATCH]
                embed_sentences(service.memory.embedder, batch)
                service.put_sentences(user_id, batch)
                report.embedded += len(batch)
                tick(len(batch))
    report.seconds = time.monotonic() - started
    return report


class SentenceBackfill:
    """Fills in, in the background, the sentence vectors of pages stored without them (a bulk import's).

    `batch`: pages read and embedded together (the model sorts their sentences by length: fewer pads),
    stored `write` pages at a time (each write holds the user's adds back for ~50 ms). The model is called only while no tool call runs:
    the ONNX embedder pauses between its runs of the model (≤ 64 texts, ≤ 2,048 tokens: ~50 ms), which is
    the most a tool call that needs the model waits; other embedders are called for `chunk` texts at a time.
    `poll_s`: how often a store other processes write (a Chroma server) is looked at again once nothing
    waits; an embedded store changes only through this process, which wakes the worker (notify()).
    """

    def __init__(
        self,
        service: MemoryService,
        *,
        batch: int = 512,
        write: int = 128,
        chunk: int = 64,
        poll_s: float = 60.0,
    ) -> None:
        self.service = service
        self.batch = batch
        self.write = write
        self.chunk = chunk
        self.poll_s = poll_s
        self.filled = 0  # pages given their vectors since start
        self.idle = threading.Event()  # set while nothing is being filled in (waiting to be woken)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SentenceBackfill:
        self._wake.set()  # the first pass looks at every user
        self._thread = threading.Thread(target=self._run, name="sentence-backfill", daemon=True)
        self._thread.start()
        return self

    def notify(self) -> None:
        """Pages may wait now (something stored pages without their sentences): look again."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the model call or write under way (nothing is lost: the rest still waits)."""
        self._stop.set()
        self._wake.set()
        self.service.foreground.release_waiters()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        _lower_priority()
        while not self._stop.is_set():
            if not self._wake.is_set():
                self.idle.set()
                self._wake.wait(self.poll_s if self.service.store.shared else None)
            self.idle.clear()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                for user_id in self.service.store.user_ids():
                    self._user(user_id)
                    if self._stop.is_set():
                        return
            except Exception as exc:  # the store went away, say: nothing is lost, the pages still wait
                logger.warning("sentence backfill paused: %s", exc)
                self._stop.wait(5.0)
                self._wake.set()

    def _user(self, user_id: str) -> None:
        store = self.service.store
        spent = dict.fromkeys(("reading", "embedding", "writing", "paused"), 0.0)

        def quiet() -> None:
            with _timed(spent, "paused"):
                self._wait_quiet()

        started, filled = time.monotonic(), 0
        while not self._stop.is_set():
            quiet()
            with _timed(spent, "reading"):
                pages = store.waiting_for_sentences(user_id, self.batch)
            if not pages:
                break
            paused = spent["paused"]
            with _timed(spent, "embedding"):
                embed_sentences(self.service.memory.embedder, pages, at_most=self.chunk, before_each=quiet)
            spent["embedding"] -= spent["paused"] - paused  # pauses between the model's calls count apart
            if self._stop.is_set():
                break
            written = 0
            for start in range(0, len(pages), self.write):
                quiet()
                part = pages[start : start + self.write]
                try:
                    with _timed(spent, "writing"):
                        written += self.service.put_sentences(user_id, part, foreground=False)
                except MemoryOSError as exc:  # a lost lease, a store error: this user is tried again later
                    logger.warning("could not store sentence vectors of %s: %s", user_id, exc)
                    break
            self.filled += written
            filled += written
            if written < len(pages):  # a write failed, or pages were forgotten meanwhile
                break  # (the next pass takes them again, never this loop)
        if filled:
            logger.info(
                "sentence vectors filled in for %d page(s) of %s in %.1f s (%s)",
                filled,
                user_id,
                time.monotonic() - started,
                ", ".join(f"{what} {seconds:.1f} s" for what, seconds in spent.items()),
            )

    def _wait_quiet(self) -> None:
        self.service.foreground.wait_quiet(self._stop)


@contextmanager
def _timed(spent: dict[str, float], what: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        spent[what] += time.monotonic() - started


def _lower_priority() -> None:
    """Nice this thread (Linux threads have their own priority); elsewhere a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
