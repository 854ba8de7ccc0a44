"""MemoryOS: the three tiers over a MemoryStore — writes through the update pipeline and promotion, reads
through recall, both over a cached per-user state that the change log keeps current.

Storage, embedding and the language model are passed in (ports in core.protocols), so this module is the
paper's algorithm plus the bookkeeping that keeps it durable and fast at any size.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from memoryos_mcp.core.context import is_short_id
from memoryos_mcp.core.control import Control, ForgetReport, PageKey, PageListing, Tier, page_key
from memoryos_mcp.core.embedding import embed_pages
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.lease import WriteLeases
from memoryos_mcp.core.models import Fact, Page, Scalar, Segment, UserProfile, page_id_for
from memoryos_mcp.core.persona import Promotion, fact_id, profile_text
from memoryos_mcp.core.pipeline import AddResult, MemoryParams, UpdatePipeline, rank_segments
from memoryos_mcp.core.protocols import (
    Change,
    Embedder,
    IndexSnapshots,
    MemoryAnalyzer,
    MemoryStore,
    PageIndexes,
)
from memoryos_mcp.core.recall import Recall, Retrieval
from memoryos_mcp.core.registry import StateRegistry
from memoryos_mcp.core.snapshot_keeper import SnapshotKeeper
from memoryos_mcp.core.state import Draft, StateLoader, UserState
from memoryos_mcp.core.weights import RetrievalWeights

__all__ = [
    "AddResult",
    "MemoryOS",
    "MemoryParams",
    "Retrieval",
    "fact_id",
    "profile_text",
    "rank_segments",
]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


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
        self.control = Control(
            store,
            embedder,
            lambda: self.pipeline.analyzer,
            self.params,
            clock,
            lambda s: self.states.account(s),
        )
        self.states = StateRegistry(
            store,
            StateLoader(store, indexes, self.weights.context_window, snapshots),
            cache_budget_bytes,
            on_load=lambda state: self.keeper.loaded(state),
        )
        # Index snapshots let a user with a large index start fast; small ones load from the store quickly anyway.
        self.snapshots = snapshots
        self.keeper = SnapshotKeeper(
            snapshots,
            lambda: [s for u in self.states.cached_users() if (s := self.states.peek(u)) is not None],
            snapshot_min_pages,
            snapshot_every,
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases = WriteLeases(store, self.states.fresh, self.owner, lease_ttl_s, lease_wait_s)
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
        with self.leases.writing(
            user_id
        ) as state:  # under the user's write lease: one of two racing retries wins
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
        # in an archived segment, or the cached state is behind: read it from the tier the store names
        tier = self.store.find_pages(state.user_id, [page_id]).get(page_id)
        if tier == "mid_term":
            return next(iter(self.store.get_mtm_pages(state.user_id, [page_id])), None)
        if tier == "short_term":
            return next((p for p in self.store.list_stm_pages(state.user_id) if p.id == page_id), None)
        return None

    def add_pages(self, user_id: str, pages: Sequence[Page], deadline: float | None = None) -> AddResult:
        """Add many pages (with embeddings) as one write: the same model as add_page, page by page, but
        one commit — the bulk import. Nothing is durable until this returns."""
        if not pages:
            raise ValueError("add_pages needs at least one page")
        result = AddResult(page=pages[-1])
        result.usage.deadline = deadline
        with self.leases.writing(user_id) as state:
            self._apply(state, Draft(state), pages, result, deadline)
        return result

    def _apply(
        self, state: UserState, draft: Draft, pages: Sequence[Page], result: AddResult, deadline: float | None
    ) -> None:
        try:
            self.pipeline.add_pages(draft, pages, result)
            self.promotion.promote_hot_segments(draft, result, deadline)
            self.leases.check(state.user_id, "writing: nothing of it was committed past short-term memory")
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
        self.keeper.if_due(state)

    def put_sentences(self, user_id: str, pages: Sequence[Page]) -> int:
        """Store sentence vectors embedded after their pages (embed_sentences()): written to wherever each
        page is now, logged as one change (its indexed pages out and back in) so that every process's index
        and the next snapshot take them, and set in this process's index in place. Pages no longer stored
        (forgotten meanwhile) are left out. Returns how many pages were written."""
        given = {p.id: p for p in pages if p.sentences is not None}
        if not given:
            return 0
        with self.leases.writing(user_id) as state:
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
            if not self._log(state, "storing sentence vectors", pages_removed=indexed, pages_added=indexed):
                return len(chosen)
            with state.lock:
                for page in state.stm:
                    if page.id in given:
                        page.sentences = given[page.id].sentences
                state.index.set_sentences(given[pid] for pid in indexed)
                state.measure()
            self.states.account(state)
            self.keeper.if_due(state)
        return len(chosen)

    def correct_fact(self, user_id: str, fact_id: str, text: str) -> Fact:
        """The person's correction of a fact's text (update_memory): its sources kept, what it said before
        kept too (corrected_from), so that a later promotion learning either text only adds sources. An id may
        be the short form a text showed."""
        with self.leases.writing(user_id) as state:
            _, (full,) = full_ids(state, (), [fact_id])
            with state.lock:
                found = [f for kind in state.facts.values() for f in kind if f.id == full]
            if not found:
                raise InvalidInputError(
                    f"user {user_id!r} has no fact {fact_id!r}; list_memories with kind=facts shows their ids"
                )
            (fact,) = found
            corrected = replace(
                fact,
                text=text,
                corrected_from=fact.corrected_from or fact.text,
                corrected_at=self.clock(),
                embedding=self.embedder.embed([text])[0],
            )
            self.store.add_facts([corrected])  # the same id: an upsert
            if self._log(state, "correcting a fact"):
                with state.lock:
                    state.facts[fact.kind] = [
                        corrected if f.id == full else f for f in state.facts[fact.kind]
                    ]
        return corrected

    def set_profile_entry(self, user_id: str, key: str, value: str | None) -> UserProfile:
        """The person's word on one static profile entry (update_memory): set to `value`, or removed (None);
        a promotion never changes that key again."""
        with self.leases.writing(user_id) as state:
            with state.lock:
                profile = copy.deepcopy(state.profile) or UserProfile(user_id=user_id)
            if value is None:
                profile.static.pop(key, None)
            else:
                profile.static[key] = value
            if key not in profile.set_by_person:
                profile.set_by_person.append(key)
            profile.updated_at = self.clock()
            self.store.put_profile(profile, self.embedder.embed([profile_text(profile)])[0])
            if self._log(state, "changing the profile"):
                with state.lock:
                    state.profile = profile
        return profile

    def _log(self, state: UserState, doing: str, **change: list[str]) -> bool:
        """After a write: one change-log entry (so every process's state takes it). True when it follows the
        state's own entry (the caller then brings the state along in place); else the state is dropped, to be
        read again. A lost lease is refused before anything is logged."""
        self.leases.check(state.user_id, doing)
        base = state.seq
        entry = Change(
            seq=base + 1,
            epoch=state.epoch,
            mid_term_pages=state.mid_term_pages,
            archived_segments=state.archived_segments,
            **change,  # type: ignore[arg-type]
        )
        try:
            self.store.append_change(state.user_id, entry, self.owner)
        except BaseException:
            self.states.drop(state.user_id)
            raise
        if entry.seq != base + 1:  # another writer's entry came between
            self.states.drop(state.user_id)
            return False
        with state.lock:
            state.seq = entry.seq
        return True

    # ------------------------------------------------------------------ listing and forgetting

    def list_pages(
        self, user_id: str, tier: Tier, window: tuple[float, float] | None, limit: int, below: PageKey | None
    ) -> PageListing:
        return self.control.list_pages(self.states.fresh(user_id), tier, window, limit, below)

    def segment_pages(self, user_id: str, segment_id: str) -> list[Page]:
        """The pages of one of the user's segments (active or archived), oldest first."""
        state = self.states.fresh(user_id)
        with state.lock:
            if segment_id in state.segments:
                return state.index.segment_pages(segment_id)
        return self.store.pages_of_segments(user_id, [segment_id])  # archived: read (only the user's)

    def pages_by_id(self, user_id: str, page_ids: Sequence[str]) -> list[tuple[Page, Tier]]:
        """These pages of the user, wherever they are (short-term, active or archived segments), newest
        first; ids the user has not are left out."""
        state = self.states.fresh(user_id)
        wanted = list(dict.fromkeys(page_ids))
        with state.lock:
            stm = {p.id: p for p in state.stm}
            indexed = {i: state.index.get(i) for i in wanted if i not in stm}
        found: list[tuple[Page, Tier]] = [(stm[i], "short_term") for i in wanted if i in stm]
        found.extend((p, "mid_term") for p in indexed.values() if p is not None)
        missing = [i for i, p in indexed.items() if p is None]
        if missing:  # archived segments' pages are out of the index: read them (only the user's)
            found.extend((p, "mid_term") for p in self.store.get_mtm_pages(user_id, missing))
        return sorted(found, key=lambda item: page_key(item[0]), reverse=True)

    def day_counts(self, user_id: str) -> dict[str, int]:
        """Pages per day of every tier: short-term, the active segments and the archived ones."""
        state = self.states.fresh(user_id)
        archived = self.control.archive(state).days
        with state.lock:
            counts = dict(state.index.day_counts())
            for page in state.stm:
                day = page.timestamp[:10]
                counts[day] = counts.get(day, 0) + 1
        for day, n in archived.items():
            counts[day] = counts.get(day, 0) + n
        return dict(sorted(counts.items()))

    def all_segments(self, user_id: str) -> list[Segment]:
        return self.control.all_segments(self.states.fresh(user_id))

    def forget(
        self,
        user_id: str,
        page_ids: Sequence[str] = (),
        fact_ids: Sequence[str] = (),
        before: float | None = None,
        dry_run: bool = False,
    ) -> ForgetReport:
        """Forget pages (by id, or dated before `before`) and facts, with what was learned only from them.
        An id may be the short form retrieve_memory's text shows (core/context.short_id). `dry_run`: what it
        would do, nothing changed."""
        with self.leases.writing(user_id) as state:
            page_ids, fact_ids = full_ids(state, page_ids, fact_ids)
            base = state.seq
            try:
                self.leases.check(user_id, "forgetting: nothing was forgotten")
                report, change = self.control.forget(state, page_ids, fact_ids, before, self.owner, dry_run)
            except BaseException:
                self.states.drop(user_id)  # the store may hold part of this write: reload from it next time
                raise
            if change is None:
                return report
            if change.seq != base + 1:
                self.states.drop(user_id)
            if self.snapshots is not None:  # a snapshot on disk still holds the forgotten pages' text
                self.keeper.discard(user_id)
                state.snapshot_seq = -1
                if len(state.index) >= self.keeper.min_pages and change.seq == base + 1:
                    self.keeper.in_background(state)
        return report

    def forget_all(self, user_id: str, dry_run: bool = False) -> ForgetReport:
        """Remove every record of the user: pages, segments, chain state, profile, facts, change log.
        `dry_run`: what it would remove, nothing changed."""
        with self.leases.writing(user_id) as state:
            report = ForgetReport(everything=True, dry_run=dry_run)
            report.pages_removed = [p.id for p in state.stm]  # mid-term pages are counted, not listed
            report.page_count = len(state.stm) + state.mid_term_pages
            report.segments_removed = list(state.segments)
            report.segment_count = len(state.segments) + state.archived_segments
            report.facts_removed = [f.id for kind in state.facts.values() for f in kind]
            report.profile_removed = state.profile is not None
            if dry_run:
                return report
            try:
                report.records_removed = self.store.delete_user(user_id)
            finally:
                self.states.drop(user_id)
                self.keeper.discard(user_id)
        return report

    # ------------------------------------------------------------------ maintenance (export/import, backfill)

    def writing(self, user_id: str) -> AbstractContextManager[UserState]:
        """The user's fresh state under the user's write lease (core/lease.py): what every write holds."""
        return self.leases.writing(user_id)

    def discard_snapshot(self, user_id: str) -> None:
        """Delete the user's index snapshot (a cache: the next load reads the store)."""
        self.keeper.discard(user_id)

    def save_snapshots(self, min_pages: int | None = None) -> int:
        """Save the index of every cached user (with at least `min_pages` pages) that changed (at exit, after an
        import). Returns how many were written."""
        return self.keeper.save_all(min_pages)

    def _next_added_at(self) -> int:
        # Strictly increasing even when two pages arrive within one clock tick: it orders the FIFO.
        now = int(self.clock() * 1e9)
        self._last_added_at = max(now, self._last_added_at + 1)
        return self._last_added_at

    # ------------------------------------------------------------------ reads

    def state(self, user_id: str) -> UserState:
        """The user's current cached state (loaded or refreshed as needed)."""
        return self.states.fresh(user_id)

    def retrieve(self, user_id: str, query: str, **options: Any) -> Retrieval:
        """All STM pages, two-stage MTM (top-m segments, then top-k pages), LPM facts and profile. No LLM.
        `options`: those of Recall.retrieve (top_k, top_m, include_short_term, include_archived, window,
        max_tokens, record_visits, explain)."""
        return self.recall.retrieve(self.states.fresh(user_id), query, **options)
