"""One user's mid-term pages, indexed for retrieval and updated in place.

A page of dialogue is rarely self-contained: "Yes, with my sister!" answers a question asked one page
earlier. So each page is scored with its dialogue context — the pages just before and after it in the same
conversation (not hours apart) — both lexically (BM25 over the page's terms plus its neighbours') and
densely (its embedding plus half of each neighbour's). The two scores are standardised and mixed.

Adding or removing pages costs work proportional to the pages touched and their neighbours, never a
rebuild of the user: the index keeps each page's own terms and embedding, and assembles the context at
query time from a neighbour table (vectorised over all pages, a few milliseconds at 100k pages). The
results equal a fresh build over the same pages (tests/index/test_page_index.py checks this against a
from-scratch reference over random sequences of changes).

The class is written in parts, one job each: what it holds and reads (here), its changes (changes.py), its
scoring and ranking (ranking.py), its snapshot format (snapshot_format.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from memoryos_mcp.core.models import Page
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.arrays import Postings, Rows
from memoryos_mcp.index.changes import Changes
from memoryos_mcp.index.context_postings import ContextPostings
from memoryos_mcp.index.cues import (
    embedding_texts,
    is_participant,
)
from memoryos_mcp.index.ranking import Ranking
from memoryos_mcp.index.screen import SCREEN_FROM, DenseScreen, Dots
from memoryos_mcp.index.sides import sides_from_counts
from memoryos_mcp.index.snapshot_format import LAZY, Persisted, page_from_payload

logger = logging.getLogger(__name__)


class PageIndex(Changes, Ranking, Persisted):
    """The mid-term pages of one user in conversation order, scored against queries; changed in place.

    Pages are ordered by (added_at, id). Not thread-safe: the owner serialises changes and queries.
    """

    def __init__(
        self, context_window: int = 1, screen_from: int = SCREEN_FROM, screen_dots: Dots | None = None
    ) -> None:
        self.context_window = context_window
        self.screen_from = screen_from
        self.screen_dots = screen_dots  # the screen's integer kernel; None: the one chosen for this CPU
        self._screen: DenseScreen | None = None  # present while the index holds screen_from pages or more
        self._width = 2 * context_window
        self._n = 0  # slots used (live and dead)
        self._dim = 0
        self._emb = Rows(0)
        # Each slot's sentence vectors (int8 rows with a scale each), as a run of rows: _sent_off, _sent_cnt.
        self._sent = Rows(0, np.int8)
        self._sent_scale = np.zeros(0, dtype=np.float32)
        self._sent_used = 0
        self._sent_unused = 0  # rows of runs replaced by set_sentences(), until they are packed away
        self._sent_off = np.zeros(0, dtype=np.int64)
        self._sent_cnt = np.zeros(0, dtype=np.int32)
        # How many of a slot's sentences (the first ones) are the user's; -1: not known.
        self._sent_user = np.zeros(0, dtype=np.int32)
        # Which of a slot's sentences are questions: bit i for its i-th (at most MAX_PAGE_SENTENCES); 0: none known.
        self._sent_ask = np.zeros(0, dtype=np.uint32)
        self._added_at = np.zeros(0, dtype=np.int64)
        self._epoch = np.zeros(0, dtype=np.float64)
        self._dates = np.zeros((0, 3), dtype=np.int32)
        self._time = np.zeros(0, dtype=bool)
        self._seg = np.zeros(0, dtype=np.int32)
        self._alive = np.zeros(0, dtype=bool)
        self._len_own = np.zeros(0, dtype=np.float64)
        self._len_ctx = np.zeros(0, dtype=np.float64)
        self._len_ctx_total = 0.0  # over live slots; whole numbers, so the running sum is exact
        self._norm = np.zeros(0, dtype=np.float32)
        self._nbrs = np.zeros((0, self._width), dtype=np.int32)
        # Each slot's own terms, as a slice of two flat buffers (so removal and compaction need no text).
        self._term_off = np.zeros(0, dtype=np.int64)
        self._term_cnt = np.zeros(0, dtype=np.int32)
        self._term_buf = np.zeros(0, dtype=np.int32)
        self._tf_buf = np.zeros(0, dtype=np.float32)
        self._term_used = 0
        self._pages: list[Any] = []  # Page, LAZY (restored, not decoded yet) or None (removed)
        self._ids: list[str] = []  # page id of each slot
        self._textlen = np.zeros(0, dtype=np.int32)
        self._lazy_blob = b""  # restored page records, decoded on first use
        self._lazy_offsets = np.zeros(1, dtype=np.int64)
        self._slot_of: dict[str, int] = {}
        self._keys: list[tuple[int, str]] = []  # (added_at, id) of live pages, sorted: conversation order
        self._key_slots: list[int] = []  # slot of each key
        self._vocab: dict[str, int] = {}
        self._postings: list[Postings] = []
        self._seg_code: dict[str, int] = {}
        self._seg_slots: list[set[int]] = []
        self._text_bytes = 0
        self._postings_bytes = 0  # kept up to date so that measuring the index costs nothing
        self._members: dict[int, np.ndarray] = {}  # segment code -> its live slots in conversation order
        # Who is talking: name -> times the live pages address someone by it / someone introduces themselves by it.
        self._vocatives: Counter[str] = Counter()
        self._introduced: Counter[str] = Counter()
        self._addressed: Counter[tuple[str, str]] = Counter()  # (name, side its bearer speaks on) -> times
        self._participants: frozenset[str] | None = None  # cached until a page comes or goes
        self._speakers: dict[str, str] | None = None  # likewise
        self._context_postings = ContextPostings()  # BM25 counts of common query terms, kept between queries
        # Restored from a snapshot of an earlier version, whose missing parts were derived from the pages (at
        # 100k pages ~6 s): the owner should save a new snapshot, or every start pays that again.
        self.restored_from_older = False

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, page_id: object) -> bool:
        return page_id in self._slot_of

    def _page(self, slot: int) -> Page:
        page = self._pages[slot]
        if page is LAZY:
            page = self._pages[slot] = page_from_payload(
                self._lazy_blob[self._lazy_offsets[slot] : self._lazy_offsets[slot + 1]]
            )
        assert page is not None, "a removed page was read"
        return page  # type: ignore[no-any-return]

    def get(self, page_id: str) -> Page | None:
        slot = self._slot_of.get(page_id)
        return None if slot is None else self._page(slot)

    def pages(self) -> Iterator[Page]:
        """Live pages in conversation order."""
        for slot in self._key_slots:
            yield self._page(slot)

    def segment_pages(self, segment_id: str) -> list[Page]:
        """The live pages of a segment in conversation order."""
        code = self._seg_code.get(segment_id)
        if code is None:
            return []
        return [self._page(slot) for slot in self._segment_slots(code).tolist()]

    def newest(
        self, window: tuple[float, float] | None, below: tuple[float, int] | None, limit: int
    ) -> list[Page]:
        """Up to `limit` + a margin of live pages, newest first by (page date, time stored), dated inside
        `window` and not after `below`; the caller breaks exact ties by id. Undated pages count as oldest."""
        if not self._slot_of or limit <= 0:
            return []
        slots = np.fromiter(self._slot_of.values(), dtype=np.int64, count=len(self._slot_of))
        epoch = np.nan_to_num(self._epoch[slots], nan=-np.inf)
        added = self._added_at[slots]
        keep = np.ones(len(slots), dtype=bool)
        if window is not None:
            keep &= (epoch >= window[0]) & (epoch <= window[1])
        if below is not None:
            keep &= (epoch < below[0]) | ((epoch == below[0]) & (added <= below[1]))
        slots, epoch, added = slots[keep], epoch[keep], added[keep]
        order = np.lexsort((-added, -epoch))[: limit + 64]  # the margin covers ties on (date, time stored)
        return [self._page(int(slot)) for slot in slots[order]]

    def day_counts(self) -> dict[str, int]:
        """Live pages per day ("YYYY-MM-DD"; undated ones under "")."""
        live = np.flatnonzero(self._alive[: self._n])
        days, counts = np.unique(self._dates[live], axis=0, return_counts=True)
        return {
            (f"{y:04d}-{m:02d}-{d:02d}" if y else ""): int(c)
            for (y, m, d), c in zip(days.tolist(), counts.tolist(), strict=True)
        }

    def ids_starting_with(self, prefix: str) -> list[str]:
        """Live pages whose id starts with `prefix` (a short id a model was shown)."""
        return [pid for pid in self._slot_of if pid.startswith(prefix)]

    def ids_dated_before(self, moment: float) -> list[str]:
        """Live pages dated strictly before `moment` (seconds since the epoch)."""
        return [pid for pid, slot in self._slot_of.items() if self._epoch[slot] < moment]

    def mark_analyzed(self, page_ids: Iterable[str]) -> None:
        for page_id in page_ids:
            slot = self._slot_of.get(page_id)
            if slot is not None:
                self._page(slot).analyzed = True

    def participants(self) -> frozenset[str]:
        """The names the people of these conversations go by (cues.vocatives, cues.self_names)."""
        if self._participants is None:
            self._participants = frozenset(
                name for name, uses in self._vocatives.items() if is_participant(uses, self._introduced[name])
            )
        return self._participants

    def query_texts(self, query: str, weights: RetrievalWeights) -> list[str]:
        """What a query is embedded as (the caller averages the vectors). Every page is said by one of the people
        talking, so their names say nothing about which page; in a query's embedding they weigh like a topic
        and pull up greetings ("Hey Caroline!"): left out (BM25 keeps them). A participant speaks of themselves
        as "I": the query in their words is averaged in (cues.embedding_texts)."""
        names = self.participants() if weights.strip_participants else frozenset()
        return embedding_texts(query, names, first_person=weights.first_person)

    @property
    def dim(self) -> int:
        """The dimension of the vectors indexed (0 before the first page)."""
        return self._dim

    def speakers(self) -> dict[str, str]:
        """The side (sides.USER or sides.AGENT) each participant speaks on, where one is clear."""
        if self._speakers is None:
            self._speakers = sides_from_counts(self._addressed, self.participants())
        return self._speakers

    def segment_ids(self) -> set[str]:
        return {sid for sid, code in self._seg_code.items() if self._seg_slots[code]}

    @property
    def nbytes(self) -> int:
        """Approximate memory held: arrays, postings, page records and texts."""
        arrays = (
            self._added_at, self._epoch, self._dates, self._time, self._seg, self._alive, self._textlen,
            self._len_own, self._len_ctx, self._norm, self._nbrs, self._term_off, self._term_cnt,
            self._term_buf, self._tf_buf, self._lazy_offsets, self._sent_scale, self._sent_off, self._sent_cnt,
            self._sent_user, self._sent_ask,
        )  # fmt: skip
        per_page = 600  # the Page record, its id in two maps and the order keys
        pages = per_page * len(self._pages) + self._text_bytes + len(self._lazy_blob)
        screen = self._screen.nbytes if self._screen is not None else 0
        kept = self._context_postings.nbytes
        vectors = self._emb.nbytes + self._sent.nbytes
        return sum(a.nbytes for a in arrays) + vectors + self._postings_bytes + pages + screen + kept

    # ------------------------------------------------------------------ changing

    # ------------------------------------------------------------------ persistence

    # ------------------------------------------------------------------ scoring


class PageIndexes:
    """Implements core.protocols.PageIndexes: empty page indexes, and ones restored from a snapshot."""

    def new(self, context_window: int) -> PageIndex:
        return PageIndex(context_window)

    def restore(self, data: dict[str, Any]) -> PageIndex:
        return PageIndex.restore(data)
