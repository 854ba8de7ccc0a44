"""The hot state of one user — what every add and retrieve reads — and how it stays true to the store.

A `UserState` holds short-term pages, active segments, the chain head, the persona and the page index of
the active segments: bounded by stm_capacity, mtm_capacity and lpm_capacity, never by the length of the
user's history. It is loaded once, then kept current through the user's change log: a call compares the
state's sequence number with the stored version (one read by id) and replays the few entries it missed.

A write works on a `Draft` (copies), commits it to the store in an order that never loses a page, appends
one change-log entry, and only then adopts the draft into the cached state.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from dataclasses import dataclass, field, replace

from memoryos_mcp.core.models import Fact, FactKind, Page, Segment, UserProfile, Vector
from memoryos_mcp.core.protocols import (
    ChainHead,
    Change,
    IndexSnapshots,
    MemoryStore,
    PageIndex,
    PageIndexes,
    Version,
)

logger = logging.getLogger(__name__)

FACT_KINDS: tuple[FactKind, ...] = ("user_fact", "assistant_trait")


def copy_segment(segment: Segment) -> Segment:
    copied = replace(segment, keyword_counts=dict(segment.keyword_counts))
    copied._keywords, copied._keyword_set = (
        segment._keywords,
        segment._keyword_set,
    )  # same counts: same K_segment
    return copied


def is_current(state: UserState, version: Version) -> bool:
    """Whether a cached state has everything `version` says. A state ahead of the version is current (a
    write of this process committed after the version was read), unless the user's memory was forgotten
    meanwhile: no version at all, or another epoch."""
    if state.epoch != version.epoch or (version.seq == 0 and state.seq > 0):
        return False
    return state.seq >= version.seq


@dataclass
class ArchiveCatalog:
    """A user's archived segments and the keys of their pages (date, time stored, id), newest first: read from
    the store once, kept while nothing archived changes. Listings page through it and read only the pages they
    show, so a long history costs a scan of keys, not a read of every archived page."""

    segments: dict[str, Segment]
    keys: list[tuple[float, int, str]]
    days: dict[str, int]  # archived pages per day (the date as written, YYYY-MM-DD), for the timeline

    @property
    def nbytes(self) -> int:
        # a key tuple with its float, int and id string ~220 bytes; a segment (no embedding kept) ~700 + text
        segments = sum(700 + len(s.summary) + 60 * len(s.keyword_counts) for s in self.segments.values())
        return 220 * len(self.keys) + 100 * len(self.days) + segments


@dataclass
class UserState:
    """One user's short-term pages, active segments, chain head, persona and page index."""

    user_id: str
    seq: int  # the change-log entry this state includes up to
    stm: list[Page]  # oldest first, with embeddings
    segments: dict[str, Segment]  # active segments by id, oldest first, with embeddings
    chain_head: ChainHead | None
    profile: UserProfile | None
    facts: dict[FactKind, list[Fact]]  # oldest first, with embeddings
    index: PageIndex  # the pages of the active segments
    mid_term_pages: int
    archived_segments: int
    in_both_tiers: set[str] = field(default_factory=set)  # STM pages an interrupted move left in MTM too
    snapshot_seq: int = -1  # the seq of the newest index snapshot saved or loaded; -1: none
    epoch: str = ""  # Version.epoch this state belongs to
    # Archived segments and their pages' keys, once read; None: not read, or changed since (any change that
    # archives, or removes pages or segments, drops it)
    archive: ArchiveCatalog | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    nbytes: int = 0

    def measure(self) -> int:
        """Approximate memory held, kept in `nbytes` for the registry's budget."""
        vector = 4 * (self.index.dim or 384)
        segments = sum(
            vector + 700 + len(s.summary) + 60 * len(s.keyword_counts) for s in self.segments.values()
        )
        pages = sum(vector + 700 + len(p.user_input) + len(p.agent_response) for p in self.stm)
        facts = sum(vector + 300 + len(f.text) for kind in self.facts.values() for f in kind)
        archive = self.archive.nbytes if self.archive is not None else 0
        self.nbytes = self.index.nbytes + segments + pages + facts + archive + 2000
        return self.nbytes

    def adopt(self, draft: Draft, change: Change) -> None:
        """Take over what a committed draft changed (visits recorded meanwhile are kept)."""
        with self.lock:
            for sid, segment in draft.segments.items():
                live = self.segments.get(sid)
                if live is not None:
                    segment.n_visit = max(segment.n_visit, live.n_visit)
                    segment.last_access = max(segment.last_access, live.last_access)
            self.stm = draft.stm
            self.segments = draft.segments
            self.chain_head = draft.chain_head
            self.profile = draft.profile
            self.facts = draft.facts
            self.mid_term_pages = draft.mid_term_pages
            self.archived_segments = draft.archived_segments
            self.in_both_tiers -= draft.stm_deleted
            self.index.mark_analyzed(draft.analyzed)
            self.index.remove_segments([s.id for s in draft.archived])
            if change.segments_removed or change.pages_removed:
                self.archive = None
            self.index.add([p for p in draft.to_mid_term if p.segment_id in self.segments])
            self.seq = change.seq
            self.epoch = change.epoch
            self.measure()


class Draft:
    """What one add (or one import chunk) changes, worked out on copies of a user's state."""

    def __init__(self, state: UserState) -> None:
        with state.lock:  # one consistent copy: a replay or a retrieval may be changing the state meanwhile
            self.user_id = state.user_id
            self.base_seq = state.seq
            # A user with no memory yet (new, or all forgotten) starts a new epoch with this change.
            self.epoch = state.epoch if state.seq > 0 else uuid.uuid4().hex
            self.stm = list(state.stm)
            self.segments = {sid: copy_segment(s) for sid, s in state.segments.items()}
            self.chain_head = state.chain_head
            self.profile = copy.deepcopy(state.profile)
            self.facts = {kind: list(state.facts.get(kind, [])) for kind in FACT_KINDS}
            self.mid_term_pages = state.mid_term_pages
            self.archived_segments = state.archived_segments
            self.in_both_tiers = set(state.in_both_tiers)
        # What the commit writes:
        self.stm_durable = {p.id for p in self.stm}  # already in the store's short-term tier
        self.stm_deleted: set[str] = set()
        self.new_segments: set[str] = set()
        self.changed_segments: set[str] = set()
        self.archived: list[Segment] = []
        self.to_mid_term: list[Page] = []
        self.index = state.index  # read under state.lock only: retrievals use it meanwhile
        self.lock = state.lock
        self.analyzed: set[str] = set()  # mid-term pages a promotion read
        self.head_changed = False
        self.profile_embedding: Vector | None = None  # set when the profile changed
        self.facts_added: list[Fact] = []
        self.facts_deleted: list[str] = []

    def segment(self, segment_id: str) -> Segment:
        return self.segments[segment_id]

    def add_segment(self, segment: Segment) -> None:
        self.segments[segment.id] = segment
        self.new_segments.add(segment.id)

    def touch(self, segment_id: str) -> None:
        if segment_id not in self.new_segments:
            self.changed_segments.add(segment_id)

    def unanalysed_pages(self, segment_id: str) -> list[Page]:
        """Pages of a segment no promotion has read yet: indexed ones, and ones this draft moved in."""
        with self.lock:
            indexed = self.index.segment_pages(segment_id)
        pending = [p for p in self.to_mid_term if p.segment_id == segment_id]
        return [p for p in indexed + pending if not p.analyzed and p.id not in self.analyzed]

    def commit(self, store: MemoryStore, writer: str = "") -> Change:
        """Write everything, destination before source, then one change-log entry; returns that entry.

        What a promotion learned (profile, facts) is written before the pages are marked analysed and the
        segment's L_interaction is reset, so a crash part-way repeats a promotion rather than losing it. A
        crash leaves at worst a page in two tiers (repaired by the next add) or counts slightly high; never a
        lost page.
        """
        if self.profile is not None and self.profile_embedding is not None:
            store.put_profile(self.profile, self.profile_embedding)
        store.add_facts(self.facts_added)
        store.delete_facts(self.user_id, self.facts_deleted)
        every = {**self.segments, **{s.id: s for s in self.archived}}
        moved = {p.id for p in self.to_mid_term}
        for page in self.to_mid_term:
            page.analyzed = page.analyzed or page.id in self.analyzed
        store.write_mid_term(
            [every[sid] for sid in sorted(self.new_segments) if sid in every],
            [every[sid] for sid in sorted(self.changed_segments) if sid in every],
            self.to_mid_term,
            self.chain_head if self.head_changed else None,
        )
        if self.analyzed - moved:
            store.mark_analyzed(self.user_id, sorted(self.analyzed - moved))
        store.put_stm_pages([p for p in self.stm if p.id not in self.stm_durable])
        store.delete_stm_pages(self.user_id, sorted(self.stm_deleted))
        change = Change(
            seq=self.base_seq + 1,
            pages_added=[p.id for p in self.to_mid_term],
            pages_analyzed=sorted(self.analyzed - moved),
            epoch=self.epoch,
            segments_removed=[s.id for s in self.archived],
            mid_term_pages=self.mid_term_pages,
            archived_segments=self.archived_segments,
        )
        store.append_change(self.user_id, change, writer)  # may move change.seq past another writer's entry
        return change


class StateLoader:
    """Reads a user's state from the store — starting from an index snapshot when there is a usable one —
    and brings a cached state up to date from the change log."""

    def __init__(
        self,
        store: MemoryStore,
        indexes: PageIndexes,
        context_window: int = 1,
        snapshots: IndexSnapshots | None = None,
    ) -> None:
        self.store = store
        self.indexes = indexes
        self.context_window = context_window
        self.snapshots = snapshots

    def load(self, user_id: str) -> UserState:
        saved = self.snapshots.load(user_id, self.context_window) if self.snapshots is not None else None
        if saved is not None:
            exported, seq = saved
            epoch = exported.pop("memory_epoch", "")
            version = self.store.read_version(user_id)
            if seq <= version.seq and epoch == version.epoch:  # a snapshot of forgotten memory is not used
                index = self.indexes.restore(exported)
                state = self._empty(user_id, seq, index)
                # A snapshot of an earlier version is saved again (-1: none yet) at the next chance.
                state.snapshot_seq, state.epoch = (-1 if index.restored_from_older else seq), epoch
                return self._replay(state, version)  # also reads the bounded parts a snapshot lacks
        return self._load_from_store(user_id)

    def _empty(self, user_id: str, seq: int, index: PageIndex) -> UserState:
        return UserState(
            user_id=user_id,
            seq=seq,
            stm=[],
            segments={},
            chain_head=None,
            profile=None,
            facts={},
            index=index,
            mid_term_pages=0,
            archived_segments=0,
        )

    def _load_from_store(self, user_id: str) -> UserState:
        # The version first: a change landing while we read is replayed by the next freshness check.
        version = self.store.read_version(user_id)
        state = self._empty(user_id, version.seq, self.indexes.new(self.context_window))
        state.epoch = version.epoch
        self._read_bounded(state)
        state.index.add(self.store.pages_of_segments(user_id, list(state.segments)))
        self._set_counts(state, version, None)
        self._check_both_tiers(state)
        state.measure()
        return state

    def _set_counts(self, state: UserState, version: Version, last: Change | None) -> None:
        if version.mid_term_pages is not None and version.archived_segments is not None:
            state.mid_term_pages, state.archived_segments = version.mid_term_pages, version.archived_segments
        elif last is not None:
            state.mid_term_pages, state.archived_segments = last.mid_term_pages, last.archived_segments
        else:  # written before versions carried counts
            state.mid_term_pages, state.archived_segments = self.store.count_mid_term(state.user_id)

    def _check_both_tiers(self, state: UserState) -> None:
        found = self.store.find_pages(state.user_id, [p.id for p in state.stm]) if state.stm else {}
        state.in_both_tiers = {pid for pid, tier in found.items() if tier == "mid_term"}

    def refresh(self, state: UserState, version: Version) -> UserState:
        """The state brought to `version`: entries replayed, or a fresh load when the log cannot say.

        Under the state's lock throughout: a write of this process may adopt a newer state meanwhile, and the
        state's seq must never go back (a draft built on an older seq would reuse a log entry's number)."""
        with state.lock:
            if is_current(state, version):
                return state  # already there (a write of this process got further while we waited)
            if state.epoch != version.epoch or version.seq < state.seq:  # forgotten since: nothing to replay
                return self._load_from_store(state.user_id)
            return self._replay(state, version)

    def _replay(self, state: UserState, version: Version) -> UserState:
        """Entries state.seq..version.seq replayed onto `state` (which may be a bare snapshot: its bounded
        parts are read whole every time). The caller holds the state's lock or owns the state alone."""
        changes = self.store.read_changes(state.user_id, state.seq, version.seq)
        if changes is None:
            return self._load_from_store(state.user_id)
        self._read_bounded(state)
        added: dict[str, None] = {}
        for change in changes:
            if change.segments_removed or change.pages_removed:
                state.archive = None
            for pid in change.pages_removed:
                added.pop(pid, None)
            state.index.remove(change.pages_removed)
            state.index.remove_segments(change.segments_removed)
            state.index.mark_analyzed(change.pages_analyzed)
            added.update(dict.fromkeys(change.pages_added))
        active = set(state.segments)
        state.index.remove_segments(state.index.segment_ids() - active)
        fetched = self.store.get_mtm_pages(state.user_id, [pid for pid in added if pid not in state.index])
        state.index.add([p for p in fetched if p.segment_id in active])
        # A segment active again (or written by a process that crashed before logging): read it whole.
        indexed = state.index.segment_ids()
        unseen = [sid for sid, s in state.segments.items() if s.page_count > 0 and sid not in indexed]
        if unseen:
            state.index.add(self.store.pages_of_segments(state.user_id, unseen))
        self._set_counts(state, version, changes[-1] if changes else None)
        self._check_both_tiers(state)  # another process may have crashed mid-move
        state.seq = version.seq
        state.measure()
        return state

    def _read_bounded(self, state: UserState) -> None:
        """Everything but the page index: bounded by the capacities, so re-read whole."""
        uid = state.user_id
        stm = self.store.list_stm_pages(uid)
        segments = self.store.list_segments(uid)
        head = self.store.get_chain_head(uid)
        profile = self.store.get_profile(uid)
        facts = {kind: self.store.list_facts(uid, kind) for kind in FACT_KINDS}
        with state.lock:
            visits = {sid: (s.n_visit, s.last_access) for sid, s in state.segments.items()}
            for segment in segments:  # a visit this process recorded may not be readable yet elsewhere
                seen = visits.get(segment.id)
                if seen is not None:
                    segment.n_visit = max(segment.n_visit, seen[0])
                    segment.last_access = max(segment.last_access, seen[1])
            state.stm = sorted(stm, key=lambda p: (p.added_at, p.id))
            state.segments = {s.id: s for s in segments}
            state.chain_head, state.profile, state.facts = head, profile, facts
