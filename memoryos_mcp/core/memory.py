"""MemoryOS: the three tiers over a MemoryStore — writes through the update pipeline and promotion, reads
through recall, both over a cached per-user state that the change log keeps current.

Storage, embedding and the language model are passed in (ports in core.protocols), so this module is the
paper's algorithm plus the bookkeeping that keeps it durable and fast at any size.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from memoryos_mcp.core.context import is_short_id
from memoryos_mcp.core.control import Control, ForgetReport, PageKey, PageListing, Tier
from memoryos_mcp.core.errors import InvalidInputError, StorageError
from memoryos_mcp.core.models import Page, Scalar, Segment, SentenceVectors, page_id_for
from memoryos_mcp.core.persona import Promotion, fact_id, profile_text
from memoryos_mcp.core.pipeline import AddResult, MemoryParams, UpdatePipeline, rank_segments
from memoryos_mcp.core.protocols import (
    Change,
    Embedder,
    IndexSnapshots,
    MemoryAnalyzer,
    MemoryStore,
    PageIndexes,
    PausableEmbedder,
)
from memoryos_mcp.core.recall import Recall, Retrieval
from memoryos_mcp.core.registry import StateRegistry
from memoryos_mcp.core.state import Draft, StateLoader, UserState
from memoryos_mcp.core.text import exchange_text, page_sentences
from memoryos_mcp.core.weights import RetrievalWeights

__all__ = ["AddResult", "MemoryOS", "MemoryParams", "Retrieval", "fact_id", "profile_text", "rank_segments"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


def own_sentences(page: Page) -> list[str]:
    """The texts a page's sentence vectors are embedded from: none when its only sentence is its whole
    exchange (or it has none), whose vector is the page's own."""
    sentences = page_sentences(page)
    return [] if sentences in ([], [exchange_text(page)]) else sentences


def embed_pages(embedder: Embedder, pages: Sequence[Page], *, sentences: bool = True) -> None:
    """Set each page's embedding (of its exchange) and its sentences' vectors, in one call to the model.

    A page whose only sentence is its whole exchange (or that has none) has its own vector as its one
    sentence, not embedded twice. `sentences=False` (a bulk import at the rate of its pages): the other pages
    keep sentences=None, which the store records as waiting; embed_sentences() fills them in later, and until
    then a page ranks with its own vector as its one sentence."""
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for page in pages:
        texts.append(exchange_text(page))
        own = own_sentences(page) if sentences else []
        spans.append((len(texts), len(texts) + len(own)))
        texts.extend(own)
    vectors = embedder.embed(texts) if texts else []
    for page, (start, end) in zip(pages, spans, strict=True):
        page.embedding = vectors[start - 1]
        if end > start:
            page.sentences = SentenceVectors.quantize(np.asarray(vectors[start:end], dtype=np.float32))
        elif sentences or not own_sentences(page):
            page.sentences = SentenceVectors.quantize(np.asarray([page.embedding], dtype=np.float32))


def embed_sentences(
    embedder: Embedder,
    pages: Sequence[Page],
    *,
    at_most: int | None = None,
    before_each: Callable[[], None] | None = None,
) -> None:
    """Set the sentence vectors of pages that have their embedding (pages stored without them).

    Background work passes `before_each`, which may wait while tool calls use the model: an embedder that
    can pause between its runs (PausableEmbedder) is called once and pauses there; any other is called for
    at most `at_most` texts at a time, with before_each() before each call."""
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for page in pages:
        own = own_sentences(page)
        spans.append((len(texts), len(texts) + len(own)))
        texts.extend(own)
    if not texts:
        vectors = np.zeros((0, 0), dtype=np.float32)
    elif before_each is not None and isinstance(embedder, PausableEmbedder):
        vectors = embedder.embed_pausing(texts, before_each)
    else:
        # Shortest first, so that each call's texts are alike in length (padding is what costs the most).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = at_most or len(texts)
        parts = []
        for start in range(0, len(texts), step):
            if before_each is not None:
                before_each()
            parts.append(embedder.embed([texts[i] for i in order[start : start + step]]))
        vectors = np.empty_like(np.concatenate(parts))
        vectors[order] = np.concatenate(parts)
    for page, (start, end) in zip(pages, spans, strict=True):
        own = vectors[start:end] if end > start else np.asarray([page.embedding])
        page.sentences = SentenceVectors.quantize(np.asarray(own, dtype=np.float32))


def full_ids(
    state: UserState, page_ids: Sequence[str], fact_ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Ids as given, with each short one (core/context.short_id) replaced by the one page or fact of the user
    it stands for among those a retrieval can show (short-term, indexed mid-term, facts). A short id that
    matches none stays as it is (reported unknown); one that matches several is refused."""
    with state.lock:
        facts = [f.id for kind in state.facts.values() for f in kind]

        def resolve(given: str, candidates: Callable[[str], list[str]], what: str) -> str:
            if not is_short_id(given):
                return given
            found = sorted(set(candidates(given)))
            if len(found) > 1:
                raise InvalidInputError(
                    f"{given} is the start of {len(found)} {what} ids: pass the full id (list_memories shows it)"
                )
            return found[0] if found else given

        pages = [
            resolve(
                pid,
                lambda p: [x.id for x in state.stm if x.id.startswith(p)] + state.index.ids_starting_with(p),
                "page",
            )
            for pid in page_ids
        ]
        named = [resolve(fid, lambda f: [x for x in facts if x.startswith(f)], "fact") for fid in fact_ids]
    return pages, named


class MemoryOS:
    """The MemoryOS update and retrieval pipelines for many users.

    Callers serialise writes of one user within a process (the service's per-user lock); across processes
    sharing a Chroma server a per-user lease in the store does it. Retrievals never wait for a write's LLM
    work: a write changes the cached state only when it commits.
    """

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        analyzer: MemoryAnalyzer,
        params: MemoryParams | None = None,
        clock: Callable[[], float] = time.time,
        weights: RetrievalWeights | None = None,
        *,
        cache_budget_bytes: int = DEFAULT_CACHE_BYTES,
        lease_ttl_s: float = 60.0,
        lease_wait_s: float = 75.0,
        snapshots: IndexSnapshots | None = None,
        snapshot_min_pages: int = 2000,
        snapshot_every: int = 500,
        indexes: PageIndexes,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.params = params or MemoryParams()
        self.clock = clock
        self.weights = weights or RetrievalWeights()
        self.pipeline = UpdatePipeline(embedder, analyzer, self.params, clock)
        self.promotion = Promotion(embedder, analyzer, self.params, clock)
        self.recall = Recall(
            store,
            embedder,
            self.params,
            self.weights,
            clock,
            lambda: self.pipeline.analyzer.writes_summaries,
            indexes=indexes,
        )
        self.control = Control(store, embedder, lambda: self.pipeline.analyzer, self.params, clock)
        self.states = StateRegistry(
            store,
            StateLoader(store, indexes, self.weights.context_window, snapshots),
            cache_budget_bytes,
            on_load=self._loaded,
        )
        # Index snapshots let a user with a large index start fast; small ones load from the store quickly anyway.
        self.snapshots = snapshots
        self.snapshot_min_pages = snapshot_min_pages
        self.snapshot_every = snapshot_every
        self._snapshotting: set[str] = set()
        self._lease_lost: dict[str, bool] = {}
        self._snapshot_guard = threading.Lock()
        self.lease_ttl_s = lease_ttl_s
        self.lease_wait_s = lease_wait_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last_added_at = 0

    @property
    def analyzer(self) -> MemoryAnalyzer:
        return self.pipeline.analyzer

    # ------------------------------------------------------------------ writes

    def new_page(
        self,
        user_id: str,
        user_input: str,
        agent_response: str,
        timestamp: str,
        metadata: dict[str, Scalar] | None = None,
        page_id: str | None = None,
    ) -> Page:
        """A page not yet stored (no embedding): ids are random unless the caller makes them deterministic."""
        return Page(
            id=page_id or f"pg_{uuid.uuid4().hex}",
            user_id=user_id,
            user_input=user_input,
            agent_response=agent_response,
            timestamp=timestamp,
            added_at=self._next_added_at(),
            metadata=dict(metadata or {}),
        )

    def add_page(
        self,
        user_id: str,
        user_input: str,
        agent_response: str,
        timestamp: str,
        metadata: dict[str, Scalar] | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
    ) -> AddResult:
        """Store a page in short-term memory (durably, first), then run STM→MTM and MTM→LPM.

        With an idempotency key the page id comes from (user, key); when that page is already stored nothing
        is written and the result carries the stored page (a client retrying after a timeout)."""
        page_id = page_id_for(user_id, idempotency_key) if idempotency_key is not None else None
        page = self.new_page(user_id, user_input, agent_response, timestamp, metadata, page_id=page_id)
        embed_pages(self.embedder, [page])
        result = AddResult(page=page)
        result.usage.deadline = deadline
        with self._writing(user_id) as state:  # under the user's write lease: one of two racing retries wins
            if page_id is not None:
                stored = self._stored_page(state, page_id)
                if stored is not None:
                    result.page, result.already_stored = stored, True
                    result.notes.append(
                        "a page with this idempotency_key is already stored; nothing was added"
                    )
                    return result
            try:
                self.store.put_stm_pages([page])  # durable before anything else happens
            except BaseException:
                self.states.drop(
                    user_id
                )  # the write may have landed: read the short-term tier again next time
                raise
            draft = Draft(state)
            draft.stm_durable.add(page.id)
            self._apply(state, draft, [page], result, deadline)
        return result

    def _stored_page(self, state: UserState, page_id: str) -> Page | None:
        for page in state.stm:
            if page.id == page_id:
                return page
        page = state.index.get(page_id)
        if page is not None:
            return page
        if self.store.find_pages(
            state.user_id, [page_id]
        ):  # in an archived segment, or cached state is behind
            found = self.store.get_mtm_pages(state.user_id, [page_id])
            stm = [p for p in self.store.list_stm_pages(state.user_id) if p.id == page_id]
            return (found or stm or [None])[0]
        return None

    def add_pages(self, user_id: str, pages: Sequence[Page], deadline: float | None = None) -> AddResult:
        """Add many pages (with embeddings) as one write: the same model as add_page, page by page, but
        one commit — the bulk import. Nothing is durable until this returns."""
        if not pages:
            raise ValueError("add_pages needs at least one page")
        result = AddResult(page=pages[-1])
        result.usage.deadline = deadline
        with self._writing(user_id) as state:
            self._apply(state, Draft(state), pages, result, deadline)
        return result

    def _apply(
        self, state: UserState, draft: Draft, pages: Sequence[Page], result: AddResult, deadline: float | None
    ) -> None:
        try:
            self.pipeline.add_pages(draft, pages, result)
            self.promotion.promote_hot_segments(draft, result, deadline)
            if self._lease_lost.get(state.user_id):
                raise StorageError(
                    f"lost the write lease of user {state.user_id!r} during this write; nothing of it "
                    "was committed past short-term memory; try again"
                )
            change = draft.commit(self.store, self.owner)
        except BaseException:
            self.states.drop(state.user_id)  # the store may hold part of this write: reload from it next time
            raise
        if (
            change.seq != draft.base_seq + 1
        ):  # another writer's entry came between: its changes are not in ours
            self.states.drop(state.user_id)
            return
        state.adopt(draft, change)
        self.states.account(state)
        self._snapshot_if_due(state)

    def _snapshot_if_due(self, state: UserState) -> None:
        if self.snapshots is not None and len(state.index) >= self.snapshot_min_pages:
            if state.seq - state.snapshot_seq >= self.snapshot_every:
                self._snapshot_in_background(state)

    def put_sentences(self, user_id: str, pages: Sequence[Page]) -> int:
        """Store sentence vectors embedded after their pages (embed_sentences()): written to wherever each
        page is now, logged as one change (its indexed pages out and back in) so that every process's index
        and the next snapshot take them, and set in this process's index in place. Pages no longer stored
        (forgotten meanwhile) are left out. Returns how many pages were written."""
        given = {p.id: p for p in pages if p.sentences is not None}
        if not given:
            return 0
        with self._writing(user_id) as state:
            if state.seq == 0:  # no memory (forgotten meanwhile)
                return 0
            with state.lock:
                short = {p.id for p in state.stm}
                indexed = [pid for pid in given if pid in state.index]
            known = short.union(indexed)
            # The rest are pages of archived segments, or forgotten ones.
            present = known.union(self.store.find_pages(user_id, [p for p in given if p not in known]))
            chosen = [page for pid, page in given.items() if pid in present]
            # Each tier writes those it holds (a page an interrupted move left in both: both).
            for tier in ("short_term", "mid_term"):
                self.store.put_sentences(user_id, tier, chosen)
            if self._lease_lost.get(user_id):
                raise StorageError(f"lost the write lease of user {user_id!r} while storing sentence vectors")
            base = state.seq
            change = Change(
                seq=base + 1,
                pages_removed=indexed,
                pages_added=indexed,
                epoch=state.epoch,
                mid_term_pages=state.mid_term_pages,
                archived_segments=state.archived_segments,
            )
            try:
                self.store.append_change(user_id, change, self.owner)
            except BaseException:
                self.states.drop(user_id)
                raise
            if change.seq != base + 1:  # another writer's entry came between: read the user again
                self.states.drop(user_id)
                return len(chosen)
            with state.lock:
                for page in state.stm:
                    if page.id in given:
                        page.sentences = given[page.id].sentences
                state.index.set_sentences(given[pid] for pid in indexed)
                state.seq = change.seq
                state.measure()
            self.states.account(state)
            self._snapshot_if_due(state)
        return len(chosen)

    # ------------------------------------------------------------------ listing and forgetting

    def list_pages(
        self, user_id: str, tier: Tier, window: tuple[float, float] | None, limit: int, below: PageKey | None
    ) -> PageListing:
        return self.control.list_pages(self.states.fresh(user_id), tier, window, limit, below)

    def all_segments(self, user_id: str) -> list[Segment]:
        return self.control.all_segments(self.states.fresh(user_id))

    def forget(
        self,
        user_id: str,
        page_ids: Sequence[str] = (),
        fact_ids: Sequence[str] = (),
        before: float | None = None,
    ) -> ForgetReport:
        """Forget pages (by id, or dated before `before`) and facts, with what was learned only from them.
        An id may be the short form retrieve_memory's text shows (core/context.short_id)."""
        with self._writing(user_id) as state:
            page_ids, fact_ids = full_ids(state, page_ids, fact_ids)
            base = state.seq
            try:
                if self._lease_lost.get(user_id):
                    raise StorageError(
                        f"lost the write lease of user {user_id!r}; nothing was forgotten; try again"
                    )
                report, change = self.control.forget(state, page_ids, fact_ids, before, self.owner)
            except BaseException:
                self.states.drop(user_id)  # the store may hold part of this write: reload from it next time
                raise
            if change is None:
                return report
            if change.seq != base + 1:
                self.states.drop(user_id)
            if self.snapshots is not None:  # a snapshot on disk still holds the forgotten pages' text
                self._wait_for_snapshot(user_id)  # one being written may have been exported before the forget
                self.snapshots.delete(user_id)
                state.snapshot_seq = -1
                if len(state.index) >= self.snapshot_min_pages and change.seq == base + 1:
                    self._snapshot_in_background(state)
        return report

    def forget_all(self, user_id: str) -> ForgetReport:
        """Remove every record of the user: pages, segments, chain state, profile, facts, change log."""
        with self._writing(user_id) as state:
            report = ForgetReport(everything=True)
            report.pages_removed = [p.id for p in state.stm]  # mid-term pages are counted, not listed
            report.page_count = len(state.stm) + state.mid_term_pages
            report.segments_removed = list(state.segments)
            report.segment_count = len(state.segments) + state.archived_segments
            report.facts_removed = [f.id for kind in state.facts.values() for f in kind]
            report.profile_removed = state.profile is not None
            try:
                report.records_removed = self.store.delete_user(user_id)
            finally:
                self.states.drop(user_id)
                if self.snapshots is not None:
                    self._wait_for_snapshot(user_id)
                    self.snapshots.delete(user_id)
        return report

    def _wait_for_snapshot(self, user_id: str, timeout_s: float = 30.0) -> None:
        if self._claim_snapshot(user_id, timeout_s):
            self._release_snapshot(user_id)
        else:
            logger.warning("an index snapshot of %s is still being written; deleting it anyway", user_id)

    def _claim_snapshot(self, user_id: str, timeout_s: float = 60.0) -> bool:
        """Mark the user's snapshot as being written by the caller, once no other save of it is running."""
        give_up = time.monotonic() + timeout_s
        while True:
            with self._snapshot_guard:
                if user_id not in self._snapshotting:
                    self._snapshotting.add(user_id)
                    return True
            if time.monotonic() >= give_up:
                return False
            time.sleep(0.01)

    def _release_snapshot(self, user_id: str) -> None:
        with self._snapshot_guard:
            self._snapshotting.discard(user_id)

    # ------------------------------------------------------------------ index snapshots

    def save_snapshot(self, state: UserState) -> bool:
        """Save the state's index now (if it changed since the last snapshot). True when one was written."""
        if self.snapshots is None or state.seq == state.snapshot_seq:
            return False
        with state.lock:  # copies of the arrays: the slow part (serialising) runs without the lock
            exported, seq, epoch = state.index.export(), state.seq, state.epoch
        self.snapshots.save(state.user_id, seq, exported, epoch)
        state.snapshot_seq = seq
        return True

    def save_snapshots(self, min_pages: int | None = None) -> int:
        """Snapshot every cached state with at least `min_pages` indexed pages that changed since its last
        snapshot (at shutdown, after an import). Returns how many were written."""
        floor = self.snapshot_min_pages if min_pages is None else min_pages
        written = 0
        for user in self.states.cached_users():
            state = self.states.peek(user)
            if state is None or len(state.index) < floor:
                continue
            # A background save of this user under way is waited for (a daemon thread: cut short if the
            # process exits now); then whatever it did not cover is saved.
            if not self._claim_snapshot(user):
                logger.warning("an index snapshot of %s is still being written; not saving it again", user)
                continue
            try:
                written += self.save_snapshot(state)
            except OSError as exc:
                logger.warning("could not save the index snapshot of %s: %s", user, exc)
            finally:
                self._release_snapshot(user)
        return written

    def _loaded(self, state: UserState) -> None:
        # A snapshot of an earlier version was completed from its pages (~6 s at 100k pages): save it again
        # now, or every start of a process that only reads pays that again.
        if (
            state.index.restored_from_older
            and self.snapshots is not None
            and len(state.index) >= self.snapshot_min_pages
        ):
            self._snapshot_in_background(state)

    def _snapshot_in_background(self, state: UserState) -> None:
        if not self._claim_snapshot(state.user_id, timeout_s=0.0):  # one is being written already
            return

        def run() -> None:
            try:
                self.save_snapshot(state)
            except Exception as exc:  # a cache: failing to save it only costs a slower start later
                logger.warning("could not save the index snapshot of %s: %s", state.user_id, exc)
            finally:
                self._release_snapshot(state.user_id)

        threading.Thread(target=run, name=f"snapshot-{state.user_id}", daemon=True).start()

    @contextmanager
    def _writing(self, user_id: str) -> Iterator[UserState]:
        """The user's fresh state, under the user's write lease when other processes share the store.

        The lease is renewed while the write runs (an import chunk with an LLM can outlast its ttl)."""
        if not self.store.shared:
            yield self.states.fresh(user_id)
            return
        give_up = time.monotonic() + self.lease_wait_s
        while not self.store.acquire_lease(user_id, self.owner, self.lease_ttl_s):
            if time.monotonic() > give_up:
                raise StorageError(
                    f"another server process has been writing the memory of user {user_id!r} for over "
                    f"{self.lease_wait_s:.0f} s; try again shortly"
                )
            time.sleep(0.02 + random.random() * 0.05)
        done = threading.Event()
        self._lease_lost[user_id] = False

        def heartbeat() -> None:
            while not done.wait(self.lease_ttl_s / 3):
                try:
                    if not self.store.renew_lease(user_id, self.owner, self.lease_ttl_s):
                        logger.warning("lost the write lease of %s while writing", user_id)
                        self._lease_lost[user_id] = True  # the commit is refused
                        return
                except Exception as exc:  # the write itself reports store failures
                    logger.warning("could not renew the write lease of %s: %s", user_id, exc)

        beat = threading.Thread(target=heartbeat, name=f"lease-{user_id}", daemon=True)
        beat.start()
        try:
            yield self.states.fresh(user_id)
        finally:
            done.set()
            beat.join()
            try:
                self.store.release_lease(user_id, self.owner)
            except Exception as exc:  # the write itself is done; the lease expires on its own
                logger.warning("could not release the write lease of %s: %s", user_id, exc)

    def _next_added_at(self) -> int:
        # Strictly increasing even when two pages arrive within one clock tick: it orders the FIFO.
        now = int(self.clock() * 1e9)
        self._last_added_at = max(now, self._last_added_at + 1)
        return self._last_added_at

    # ------------------------------------------------------------------ reads

    def state(self, user_id: str) -> UserState:
        """The user's current cached state (loaded or refreshed as needed)."""
        return self.states.fresh(user_id)

    def retrieve(
        self,
        user_id: str,
        query: str,
        *,
        top_k: int | None = None,
        top_m: int | None = None,
        include_short_term: bool = True,
        include_archived: bool = False,
        window: tuple[float, float] | None = None,
        max_tokens: int | None = None,
    ) -> Retrieval:
        """All STM pages, two-stage MTM (top-m segments, then top-k pages), LPM facts and profile. No LLM.
        `window`: only pages dated inside (since, until), inclusive, in seconds since the epoch; `max_tokens`:
        only what the context text can show within that budget, best first."""
        return self.recall.retrieve(
            self.states.fresh(user_id),
            query,
            top_k=top_k,
            top_m=top_m,
            include_short_term=include_short_term,
            include_archived=include_archived,
            window=window,
            max_tokens=max_tokens,
        )
