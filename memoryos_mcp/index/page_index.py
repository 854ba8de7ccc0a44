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
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memoryos_mcp.core.dates import epoch_seconds
from memoryos_mcp.core.models import Page, Segment, SentenceVectors
from memoryos_mcp.core.text import exchange_text, page_text, sentence_layout
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.context_postings import ContextPostings
from memoryos_mcp.index.cues import (
    asks_about_time,
    calendar_date,
    date_cues,
    date_match,
    embedding_texts,
    is_participant,
    mentions_time,
    self_names,
    vocatives,
)
from memoryos_mcp.index.screen import DenseScreen, Dots
from memoryos_mcp.index.sides import AGENT, addressed, named_side, sides_from_counts
from memoryos_mcp.index.terms import FLAT_SPREAD, index_terms, zscore, zscore_in_place

logger = logging.getLogger(__name__)

NEIGHBOUR_WEIGHT = 0.5  # share of a neighbour page's embedding in a page's context embedding
CONTEXT_GAP_S = 3 * 3600  # pages further apart in time belong to different conversations: no shared context
_BM25_K1, _BM25_B = 1.2, 0.75  # Okapi BM25's usual defaults
# From this many live pages on, dense scores are screened in int8 first (index/screen.py): ~4x less memory
# traffic per query; below it the float32 pass costs under a millisecond and a screen would not pay for itself.
SCREEN_FROM = 20_000
# More pages than this changing neighbours at once (a bulk load): the kept BM25 counts are dropped, not moved.
_MOVE_AT_MOST = 4096
# Rows copied at once when a few pages are scored exactly: a copy of a few MB costs more in fresh memory
# (page faults: ~3 ms for 4 MB here) than the reading itself; 256 rows (384 KB) reuse the same memory.
_ROWS_AT_ONCE = 256
# Sentence rows left unused by set_sentences() (a backfill replacing each page's stand-in) from which the
# rows still used are packed together: 4,096 rows are 1.5 MB at 384 dimensions.
PACK_SENTENCES_FROM = 4096
# Pages of a ranking re-ordered by their best sentence (RetrievalWeights.sentence): on LoCoMo dev, 100 gives
# what re-ordering all candidates does, 50 a little less.
SENTENCE_DEPTH = 100


class _Postings:
    """Slots holding one term, with the term's count in each (a growable pair of arrays)."""

    __slots__ = ("slots", "tf", "n")

    def __init__(self) -> None:
        self.slots = np.empty(4, dtype=np.int32)
        self.tf = np.empty(4, dtype=np.float32)
        self.n = 0

    def append(self, slot: int, tf: float) -> int:
        """Returns the bytes the arrays grew by."""
        grown = 0
        if self.n == len(self.slots):
            grown = self.slots.nbytes + self.tf.nbytes
            self.slots = np.resize(self.slots, 2 * self.n)
            self.tf = np.resize(self.tf, 2 * self.n)
        self.slots[self.n] = slot
        self.tf[self.n] = tf
        self.n += 1
        return grown

    @property
    def nbytes(self) -> int:
        return self.slots.nbytes + self.tf.nbytes + 120


class _Rows:
    """Float32 vectors in blocks: growing never copies what is stored, so memory never doubles.

    Blocks double in size up to BLOCK rows, then stay at BLOCK: small users stay small."""

    BLOCK = 8192

    def __init__(self, dim: int, dtype: type = np.float32) -> None:
        self.dim = dim
        self.dtype = dtype
        self.blocks: list[np.ndarray] = []
        self.starts: list[int] = []
        self.capacity = 0

    def reserve(self, n: int) -> None:
        while self.capacity < n:
            size = min(self.BLOCK, max(256, self.capacity))
            self.blocks.append(np.zeros((size, self.dim), dtype=self.dtype))
            self.starts.append(self.capacity)
            self.capacity += size

    def adopt(self, array: np.ndarray) -> None:
        """Take an existing array as the first block (no copy)."""
        self.blocks, self.starts, self.capacity = [array], [0], len(array)

    def set(self, slot: int, vector: np.ndarray) -> None:
        block = bisect.bisect_right(self.starts, slot) - 1
        self.blocks[block][slot - self.starts[block]] = vector

    def set_many(self, first: int, vectors: np.ndarray) -> None:
        """Rows first, first + 1, ... (they may span blocks)."""
        done = 0
        while done < len(vectors):
            row = first + done
            block = bisect.bisect_right(self.starts, row) - 1
            at = row - self.starts[block]
            n = min(len(vectors) - done, len(self.blocks[block]) - at)
            self.blocks[block][at : at + n] = vectors[done : done + n]
            done += n

    def take(self, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        out = np.empty((len(slots), self.dim), dtype=self.dtype)
        if len(self.blocks) == 1:
            out[:] = self.blocks[0][slots]
            return out
        which = np.searchsorted(np.asarray(self.starts), slots, side="right") - 1
        for block in np.unique(which).tolist():
            rows = which == block
            out[rows] = self.blocks[block][slots[rows] - self.starts[block]]
        return out

    def dot(self, vector: np.ndarray, n: int) -> np.ndarray:
        """Row · vector for the first n rows.

        einsum, not BLAS: on 2 cores OpenBLAS's threaded gemv was 2x slower for 100k x 384 (15 ms vs 7 ms)
        and its per-call thread handoff made many blocks 15x slower."""
        parts = [
            np.einsum("ij,j->i", block[: n - start], vector)
            for block, start in zip(self.blocks, self.starts, strict=True)
            if start < n
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)


_LAZY = object()  # a restored page not decoded yet: its record is read from the snapshot's bytes when needed
_PAGE_FIELDS = (
    "id",
    "user_id",
    "user_input",
    "agent_response",
    "timestamp",
    "added_at",
    "metadata",
    "chain_id",
    "chain_summary",
    "segment_id",
    "analyzed",
)


def page_payload(page: Page) -> bytes:
    """A page record as a snapshot stores it."""
    return json.dumps([getattr(page, f) for f in _PAGE_FIELDS], ensure_ascii=False).encode()


def _page_from_payload(payload: bytes) -> Page:
    return Page(**dict(zip(_PAGE_FIELDS, json.loads(payload), strict=True)))


class PageIndex:
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
        self._emb = _Rows(0)
        # Each slot's sentence vectors (int8 rows with a scale each), as a run of rows: _sent_off, _sent_cnt.
        self._sent = _Rows(0, np.int8)
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
        self._pages: list[Any] = []  # Page, _LAZY (restored, not decoded yet) or None (removed)
        self._ids: list[str] = []  # page id of each slot
        self._textlen = np.zeros(0, dtype=np.int32)
        self._lazy_blob = b""  # restored page records, decoded on first use
        self._lazy_offsets = np.zeros(1, dtype=np.int64)
        self._slot_of: dict[str, int] = {}
        self._keys: list[tuple[int, str]] = []  # (added_at, id) of live pages, sorted: conversation order
        self._key_slots: list[int] = []  # slot of each key
        self._vocab: dict[str, int] = {}
        self._postings: list[_Postings] = []
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
        if page is _LAZY:
            page = self._pages[slot] = _page_from_payload(
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

    def add(self, pages: Sequence[Page]) -> None:
        """Index pages (each with its embedding); a page already indexed is replaced."""
        if not pages:
            return
        known = [p.id for p in pages if p.id in self._slot_of]
        if known:
            self.remove(known)
        unique = list({p.id: p for p in pages}.values())
        self._reserve(self._n + len(unique), len(np.asarray(unique[0].embedding)))
        new_slots = [self._put(page) for page in unique]
        if len(unique) * 4 >= len(self._keys):  # many at once (a cold load): sort once, refresh all
            pairs = sorted(
                zip(self._keys + [self._key(s) for s in new_slots], self._key_slots + new_slots, strict=True)
            )
            self._keys = [k for k, _ in pairs]
            self._key_slots = [s for _, s in pairs]
            self._refresh_positions(np.arange(len(self._keys)))
        else:
            for slot in new_slots:
                key = self._key(slot)
                position = bisect.bisect_left(self._keys, key)
                self._keys.insert(position, key)
                self._key_slots.insert(position, slot)
            self._refresh_slots(self._around(new_slots, include_self=True))
        self._build_screen()

    def remove(self, page_ids: Iterable[str]) -> int:
        """Drop pages from the index; unknown ids are ignored. Returns how many were indexed."""
        touched: set[int] = set()
        gone: list[int] = []
        w = self.context_window
        for page_id in page_ids:
            slot = self._slot_of.pop(page_id, None)
            if slot is None:
                continue
            gone.append(slot)
            self._move_context_terms(slot, self._nbrs[slot], None)
            self._len_ctx_total -= float(self._len_ctx[slot])
            position = bisect.bisect_left(self._keys, self._key(slot))
            del self._keys[position]
            del self._key_slots[position]
            touched.update(self._key_slots[max(0, position - w) : position + w])
            self._text_bytes -= int(self._textlen[slot])
            self._count_names(self._page(slot), -1)
            self._pages[slot] = None
            self._alive[slot] = False
            self._seg_slots[self._seg[slot]].discard(slot)
            self._members.pop(int(self._seg[slot]), None)
        if gone:
            if self._screen is not None:
                dead_slots = np.asarray(gone, dtype=np.int64)
                self._screen.drop(dead_slots, self._context_vectors(dead_slots))
            self._refresh_slots(sorted(s for s in touched if self._alive[s]))
            dead = self._n - len(self._slot_of)
            if dead > max(256, len(self._slot_of)):
                self._compact()
        return len(gone)

    def set_sentences(self, pages: Iterable[Page]) -> int:
        """Give indexed pages the sentence vectors embedded after them (a bulk import fills them in later);
        nothing else about a page changes. Returns how many were indexed."""
        done = 0
        for page in pages:
            slot = self._slot_of.get(page.id)
            if slot is None or page.sentences is None:
                continue
            self._sent_unused += int(self._sent_cnt[slot])  # its earlier run of rows: reclaimed below
            self._store_sentences(slot, page.sentences)
            self._sent_user[slot], self._sent_ask[slot] = sentence_layout(
                self._page(slot), len(page.sentences)
            )
            done += 1
        if self._sent_unused > max(PACK_SENTENCES_FROM, self._sent_used // 4):
            self._pack_sentences()
        return done

    def _pack_sentences(self) -> None:
        """Copy the live slots' sentence rows together, leaving out the runs set_sentences() replaced."""
        live = np.flatnonzero(self._alive[: self._n])
        rows, starts = self._sentence_rows(live)
        packed = _Rows(self._dim, np.int8)
        packed.adopt(self._sent.take(rows))
        self._sent, self._sent_scale = packed, self._sent_scale[rows]
        self._sent_used, self._sent_unused = len(rows), 0
        self._sent_off[live] = starts

    def remove_segments(self, segment_ids: Iterable[str]) -> int:
        """Drop every page of these segments (archived or forgotten). Returns how many pages left."""
        ids: list[str] = []
        for sid in segment_ids:
            code = self._seg_code.get(sid)
            if code is not None:
                ids.extend(self._ids[s] for s in self._seg_slots[code])
        return self.remove(ids)

    def _key(self, slot: int) -> tuple[int, str]:
        return int(self._added_at[slot]), self._ids[slot]

    def _put(self, page: Page) -> int:
        slot = self._n
        self._n += 1
        self._emb.set(slot, np.asarray(page.embedding, dtype=np.float32))
        # A page stored before sentences were embedded (or of one sentence) is its own only sentence.
        self._store_sentences(slot, page.sentences or SentenceVectors.quantize(page.embedding))
        self._sent_user[slot], self._sent_ask[slot] = sentence_layout(page, int(self._sent_cnt[slot]))
        self._added_at[slot] = page.added_at
        self._epoch[slot] = epoch_seconds(page.timestamp)
        self._dates[slot] = calendar_date(page.timestamp)
        self._time[slot] = mentions_time(page)
        self._alive[slot] = True
        code = self._seg_code.get(page.segment_id)
        if code is None:
            code = self._seg_code[page.segment_id] = len(self._seg_slots)
            self._seg_slots.append(set())
        self._seg[slot] = code
        self._seg_slots[code].add(slot)
        members = self._members.get(code)
        if members is not None and (
            not len(members) or self._key(int(members[-1])) < (page.added_at, page.id)
        ):
            self._members[code] = np.append(members, slot)  # the usual case: the newest page of its segment
        else:
            self._members.pop(code, None)
        self._count_names(page, 1)
        terms = Counter(index_terms(page_text(page)))
        ids = np.fromiter((self._term_id(t) for t in terms), dtype=np.int32, count=len(terms))
        counts = np.fromiter(terms.values(), dtype=np.float32, count=len(terms))
        self._store_terms(slot, ids, counts)
        for term, count in zip(ids.tolist(), counts.tolist(), strict=True):
            self._postings_bytes += self._postings[term].append(slot, count)
        self._context_postings.move(ids, counts, (), (slot,))  # no neighbours yet: its own document only
        self._len_own[slot] = float(counts.sum())
        stored = replace(page, embedding=None, sentences=None)  # vectors live in _emb and _sent: one copy
        self._pages.append(stored)
        self._ids.append(page.id)
        self._slot_of[page.id] = slot
        self._textlen[slot] = _text_size(stored)
        self._text_bytes += int(self._textlen[slot])
        return slot

    def _count_names(self, page: Page, sign: int) -> None:
        self._participants = self._speakers = None
        text = exchange_text(page)
        counted: tuple[tuple[Counter[Any], list[Any]], ...] = (
            (self._vocatives, vocatives(text)),
            (self._introduced, self_names(text)),
            (self._addressed, addressed(page.user_input, page.agent_response)),
        )
        for counter, names in counted:
            for name in names:
                counter[name] += sign
                if counter[name] <= 0:
                    del counter[name]

    def _term_id(self, term: str) -> int:
        tid = self._vocab.get(term)
        if tid is None:
            tid = self._vocab[term] = len(self._postings)
            self._postings.append(_Postings())
            self._postings_bytes += (
                self._postings[-1].nbytes + sys.getsizeof(term) + 100
            )  # + the vocabulary entry
        return tid

    def _store_sentences(self, slot: int, sentences: SentenceVectors) -> None:
        if sentences.codes.shape[1] != self._dim:
            raise ValueError(f"sentence vectors of {sentences.codes.shape[1]} dimensions, not {self._dim}")
        start, end = self._sent_used, self._sent_used + len(sentences)
        self._sent.reserve(end)
        self._sent.set_many(start, sentences.codes)
        if end > len(self._sent_scale):
            grown = np.zeros(max(end, 2 * len(self._sent_scale), 1024), dtype=np.float32)
            grown[:start] = self._sent_scale[:start]
            self._sent_scale = grown
        self._sent_scale[start:end] = sentences.scales
        self._sent_off[slot], self._sent_cnt[slot] = start, len(sentences)
        self._sent_used = end

    def _sentence_rows(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the sentence rows of these slots one after the other, where each slot's run starts in them)."""
        return _runs(self._sent_off[slots], self._sent_cnt[slots])

    def _best_sentences(
        self,
        slots: np.ndarray,
        query_embedding: np.ndarray,
        side: str | None = None,
        *,
        skip_questions: bool = False,
    ) -> np.ndarray:
        """Per slot, the cosine of its best sentence with the query (every slot has at least one); with a
        `side`, its best among that side's sentences where it has any and their split is known; with
        `skip_questions`, its best among those that are not questions, where any of them is not."""
        offsets, counts = self._sent_off[slots], self._sent_cnt[slots]
        if side is not None:
            user = self._sent_user[slots].astype(np.int64)
            own_offsets, own_counts = (offsets + user, counts - user) if side == AGENT else (offsets, user)
            known = (user >= 0) & (own_counts > 0)
            offsets, counts = np.where(known, own_offsets, offsets), np.where(known, own_counts, counts)
        rows, starts = _runs(offsets, counts)
        query = np.asarray(query_embedding, dtype=np.float32)
        dots = np.einsum("ij,j->i", self._sent.take(rows).astype(np.float32), query) * self._sent_scale[rows]
        best = np.maximum.reduceat(dots, starts)
        asks = self._sent_ask[slots].astype(np.int64) if skip_questions else None
        if asks is not None and asks.any():
            # Each row's place among its page's sentences: its bit in the page's mask.
            within = rows - np.repeat(self._sent_off[slots], counts)
            asked = (np.repeat(asks, counts) >> within) & 1
            stated = np.maximum.reduceat(np.where(asked == 1, -np.inf, dots), starts)
            best = np.where(np.isfinite(stated), stated, best)
        return best.astype(np.float64)

    def _store_terms(self, slot: int, ids: np.ndarray, counts: np.ndarray) -> None:
        end = self._term_used + len(ids)
        if end > len(self._term_buf):
            size = max(end, 2 * len(self._term_buf), 1024)
            self._term_buf = np.resize(self._term_buf, size)
            self._tf_buf = np.resize(self._tf_buf, size)
        self._term_buf[self._term_used : end] = ids
        self._tf_buf[self._term_used : end] = counts
        self._term_off[slot] = self._term_used
        self._term_cnt[slot] = len(ids)
        self._term_used = end

    def _reserve(self, slots: int, dim: int) -> None:
        if self._dim == 0:
            self._dim = dim
            self._emb = _Rows(dim)
            self._sent = _Rows(dim, np.int8)
        elif dim != self._dim:
            raise ValueError(f"embedding dimension {dim} does not match the index's {self._dim}")
        self._emb.reserve(slots)
        if self._screen is not None:
            self._screen.reserve(slots)
        if slots <= len(self._alive):
            return
        size = max(
            slots, len(self._alive) + len(self._alive) // 4, 64
        )  # small per-slot arrays: cheap to copy

        def grow(a: np.ndarray, fill: float | int | bool = 0) -> np.ndarray:
            out = np.full((size, *a.shape[1:]), fill, dtype=a.dtype)
            out[: len(a)] = a
            return out

        self._textlen = grow(self._textlen)
        self._added_at, self._epoch, self._dates = grow(self._added_at), grow(self._epoch), grow(self._dates)
        self._time, self._seg, self._alive = grow(self._time), grow(self._seg), grow(self._alive)
        self._len_own, self._len_ctx, self._norm = grow(self._len_own), grow(self._len_ctx), grow(self._norm)
        self._nbrs = grow(self._nbrs, -1)
        self._term_off, self._term_cnt = grow(self._term_off), grow(self._term_cnt)
        self._sent_off, self._sent_cnt = grow(self._sent_off), grow(self._sent_cnt)
        self._sent_user, self._sent_ask = grow(self._sent_user, -1), grow(self._sent_ask)

    def _around(self, slots: Iterable[int], *, include_self: bool) -> list[int]:
        """Slots within the context window of these (live) slots in conversation order."""
        w = self.context_window
        out: set[int] = set()
        for slot in slots:
            position = bisect.bisect_left(self._keys, self._key(slot))
            out.update(self._key_slots[max(0, position - w) : position + w + 1])
            if not include_self:
                out.discard(slot)
        return sorted(out)

    def _refresh_slots(self, slots: Sequence[int]) -> None:
        if slots:
            positions = [bisect.bisect_left(self._keys, self._key(s)) for s in slots]
            self._refresh_positions(np.asarray(positions, dtype=np.int64))

    def _refresh_positions(self, positions: np.ndarray) -> None:
        """Recompute neighbours, context length and context-vector norm of the pages at these positions."""
        if not len(positions):
            return
        w, n = self.context_window, len(self._key_slots)
        window = positions[:, None] + np.arange(-w, w + 1)[None, :]  # columns: offsets -w..w
        clipped = np.clip(window, 0, n - 1)
        if len(positions) * (2 * w + 1) * 8 < n:  # a few pages: read the order list where needed only
            around = np.asarray([self._key_slots[i] for i in clipped.ravel().tolist()], dtype=np.int64)
            around = around.reshape(clipped.shape)
        else:
            around = np.asarray(self._key_slots, dtype=np.int64)[clipped]
        slots = around[:, w]
        neighbours = np.full((len(slots), self._width), -1, dtype=np.int32)
        filled = np.zeros(len(slots), dtype=np.int64)
        for column in [c for c in range(2 * w + 1) if c != w]:  # ascending: conversation order
            candidates = around[:, column]
            ok = (window[:, column] >= 0) & (window[:, column] < n)
            gap = np.abs(self._epoch[slots] - self._epoch[candidates])
            ok &= np.isnan(gap) | (gap <= CONTEXT_GAP_S)
            rows = np.flatnonzero(ok)
            neighbours[rows, filled[rows]] = candidates[rows]
            filled[rows] += 1
        screen = self._screen
        if screen is not None:  # their context vectors change: out of the screen's moments with the old ones
            before = slots[screen.counted[slots]]
            screen.drop(before, self._context_vectors(before))
        if len(slots) > _MOVE_AT_MOST:  # a bulk load: counting the kept terms afresh later is cheaper
            self._context_postings.clear()
        elif len(self._context_postings):
            for slot, old, new in zip(
                slots.tolist(), self._nbrs[slots].tolist(), neighbours.tolist(), strict=True
            ):
                if old != new:
                    self._move_context_terms(slot, old, new)
        self._nbrs[slots] = neighbours
        length = self._len_own[slots].copy()
        for column in range(self._width):
            rows = np.flatnonzero(neighbours[:, column] >= 0)
            length[rows] += self._len_own[neighbours[rows, column]]
        context = self._context_sums(slots)
        self._len_ctx_total += float(length.sum()) - float(self._len_ctx[slots].sum())  # a new slot's was 0
        self._len_ctx[slots] = length
        self._norm[slots] = np.linalg.norm(context, axis=1)
        if screen is not None:
            screen.put(slots, self._unit(context, slots))

    def _move_context_terms(self, slot: int, old: Iterable[int], new: Iterable[int] | None) -> None:
        """The slot's terms count in the context documents of itself and its neighbours: move them from the old
        neighbours' documents to the new ones' (None: the slot is going, out of its own document too)."""
        if not len(self._context_postings):
            return
        before = {slot, *(int(s) for s in old if s >= 0)}
        after = {slot, *(int(s) for s in new if s >= 0)} if new is not None else set()
        if before == after:
            return
        start, count = int(self._term_off[slot]), int(self._term_cnt[slot])
        self._context_postings.move(
            self._term_buf[start : start + count],
            self._tf_buf[start : start + count],
            sorted(before - after),
            sorted(after - before),
        )

    def _context_sums(self, slots: np.ndarray) -> np.ndarray:
        """Each slot's embedding plus NEIGHBOUR_WEIGHT of each neighbour's (float32)."""
        context = self._emb.take(slots)
        neighbours = self._nbrs[slots]
        for column in range(self._width):
            rows = np.flatnonzero(neighbours[:, column] >= 0)
            context[rows] += NEIGHBOUR_WEIGHT * self._emb.take(neighbours[rows, column])
        return context

    def _unit(self, context: np.ndarray, slots: np.ndarray) -> np.ndarray:
        norm = self._norm[slots]
        return context / np.where(norm == 0, 1.0, norm)[:, None]

    def _context_vectors(self, slots: np.ndarray) -> np.ndarray:
        """The unit context vectors of these slots as they are now: the same arithmetic as when they were put
        in the screen, so that dropping them takes out exactly what was added."""
        return self._unit(self._context_sums(slots), slots)

    def _build_screen(self) -> None:
        """Screen a large index (SCREEN_FROM), in chunks so that the float32 copies stay small."""
        if self._screen is not None or len(self._slot_of) < self.screen_from or not self._dim:
            return
        live = np.flatnonzero(self._alive[: self._n])
        screen: DenseScreen | None = None
        for start in range(0, len(live), 8192):
            chunk = live[start : start + 8192]
            vectors = self._context_vectors(chunk)
            if screen is None:
                screen = DenseScreen(self._dim, centre=vectors.mean(axis=0), dots=self.screen_dots)
                screen.reserve(len(self._alive))
            screen.put(chunk, vectors)
        self._screen = screen

    def _compact(self) -> None:
        """Drop dead slots (after many removals): renumber live ones, rebuild postings from stored terms."""
        live = np.flatnonzero(self._alive[: self._n])
        renumber = np.full(self._n + 1, -1, dtype=np.int32)  # index -1 maps to -1 (no neighbour)
        renumber[live] = np.arange(len(live), dtype=np.int32)
        offsets, counts = self._term_off[live], self._term_cnt[live]
        term_ids = [self._term_buf[o : o + c] for o, c in zip(offsets.tolist(), counts.tolist(), strict=True)]
        term_tfs = [self._tf_buf[o : o + c] for o, c in zip(offsets.tolist(), counts.tolist(), strict=True)]
        nbrs = self._nbrs[live]
        pages = [self._page(s) for s in live.tolist()]
        rows = _Rows(self._dim)
        rows.adopt(self._emb.take(live))
        self._emb = rows
        sentence_rows, starts = self._sentence_rows(live)
        sentences = _Rows(self._dim, np.int8)
        sentences.adopt(self._sent.take(sentence_rows))
        self._sent, self._sent_scale = sentences, self._sent_scale[sentence_rows]
        self._sent_used, self._sent_unused = len(sentence_rows), 0
        self._sent_off, self._sent_cnt, self._sent_user = starts, self._sent_cnt[live], self._sent_user[live]
        self._sent_ask = self._sent_ask[live]
        self._textlen = self._textlen[live]
        self._lazy_blob, self._lazy_offsets = b"", np.zeros(1, dtype=np.int64)
        self._added_at, self._epoch = self._added_at[live], self._epoch[live]
        self._dates, self._time, self._seg = self._dates[live], self._time[live], self._seg[live]
        self._alive, self._len_own = self._alive[live], self._len_own[live]
        self._len_ctx, self._norm = self._len_ctx[live], self._norm[live]
        self._nbrs = renumber[nbrs]
        self._term_off = np.zeros(len(live), dtype=np.int64)
        self._term_cnt = np.zeros(len(live), dtype=np.int32)
        self._term_buf = np.zeros(0, dtype=np.int32)
        self._tf_buf = np.zeros(0, dtype=np.float32)
        self._term_used = 0
        self._postings = [_Postings() for _ in self._vocab]
        for slot, (ids, tfs) in enumerate(zip(term_ids, term_tfs, strict=True)):
            self._store_terms(slot, ids, tfs)
            for term, count in zip(ids.tolist(), tfs.tolist(), strict=True):
                self._postings[term].append(slot, count)
        self._postings_bytes = sum(p.nbytes for p in self._postings) + sum(
            sys.getsizeof(t) + 100 for t in self._vocab
        )
        self._pages = pages  # type: ignore[assignment]
        self._ids = [page.id for page in pages]
        self._n = len(live)
        self._slot_of = {page.id: slot for slot, page in enumerate(pages)}
        self._key_slots = [int(renumber[s]) for s in self._key_slots]
        self._seg_slots = [{int(renumber[s]) for s in members} for members in self._seg_slots]
        self._members.clear()
        self._context_postings.clear()  # slots were renumbered
        self._screen = None
        self._build_screen()

    # ------------------------------------------------------------------ persistence

    def export(self) -> dict[str, Any]:
        """The live pages' arrays, terms and records, renumbered densely. Cheap (copies of arrays): call it
        under the owner's lock, then pack_snapshot() the result without it."""
        live = np.flatnonzero(self._alive[: self._n])
        renumber = np.full(self._n + 1, -1, dtype=np.int32)
        renumber[live] = np.arange(len(live), dtype=np.int32)
        counts = self._term_cnt[live].astype(np.int64)
        positions, _ = _runs(self._term_off[live], counts)
        code_names = [""] * len(self._seg_slots)
        for sid, code in self._seg_code.items():
            code_names[code] = sid
        records: list[Page | bytes] = []
        for slot in live.tolist():
            page = self._pages[slot]
            if page is _LAZY:  # still the snapshot's bytes: passed on without decoding
                page = self._lazy_blob[self._lazy_offsets[slot] : self._lazy_offsets[slot + 1]]
            records.append(page)
        # Only the terms live pages hold: a forgotten page's words must not survive in a snapshot's vocabulary.
        term_ids = self._term_buf[positions]
        used = np.unique(term_ids)
        remap = np.full(len(self._postings), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        every_term = list(self._vocab)  # in id order: ids were given in insertion order
        sentence_rows, _ = self._sentence_rows(live)
        return {
            "context_window": self.context_window,
            "dim": self._dim,
            "emb": self._emb.take(live),
            "sent_cnt": self._sent_cnt[live],
            "sent_codes": self._sent.take(sentence_rows),
            "sent_scale": self._sent_scale[sentence_rows],
            "sent_user": self._sent_user[live],
            "sent_ask": self._sent_ask[live],
            "added_at": self._added_at[live],
            "epoch": self._epoch[live],
            "dates": self._dates[live],
            "time": self._time[live],
            "seg": self._seg[live],
            "textlen": self._textlen[live],
            "len_own": self._len_own[live],
            "len_ctx": self._len_ctx[live],
            "norm": self._norm[live],
            "nbrs": renumber[self._nbrs[live]],
            "term_cnt": counts.astype(np.int32),
            "term_buf": remap[term_ids],
            "tf_buf": self._tf_buf[positions],
            "order": renumber[np.asarray(self._key_slots, dtype=np.int64)],
            "ids": [self._ids[s] for s in live.tolist()],
            "vocab": [every_term[t] for t in used.tolist()],
            "segments": code_names,
            "records": records,
            "vocatives": dict(self._vocatives),
            "introduced": dict(self._introduced),
            "addressed": [[name, side, count] for (name, side), count in self._addressed.items()],
            # Building a screen of 100k pages takes ~0.5 s, loading it ~0.05 s.
            **(self._screen.export(live) if self._screen is not None else {}),
        }

    @classmethod
    def restore(
        cls, data: dict[str, Any], screen_from: int = SCREEN_FROM, screen_dots: Dots | None = None
    ) -> PageIndex:
        """An index from what pack_snapshot() made (read back from a snapshot). Page records stay encoded
        until a page is read; postings and conversation order come ready-made."""
        index = cls(int(data["context_window"]), screen_from, screen_dots)
        ids: list[str] = list(data["ids"])
        n = len(ids)
        index._n, index._dim = n, int(data["dim"])
        index._emb = _Rows(index._dim)
        index._emb.adopt(np.asarray(data["emb"], dtype=np.float32))
        index._sent = _Rows(index._dim, np.int8)
        index._sent.adopt(np.asarray(data["sent_codes"], dtype=np.int8))
        index._sent_scale = np.asarray(data["sent_scale"], dtype=np.float32)
        index._sent_used = len(index._sent_scale)
        index._sent_cnt = np.asarray(data["sent_cnt"], dtype=np.int32)
        index._sent_off = np.cumsum(index._sent_cnt, dtype=np.int64) - index._sent_cnt
        if index._sent_used != int(index._sent_cnt.sum()) or index._sent.capacity != index._sent_used:
            raise ValueError("the snapshot's sentence vectors do not match its pages")
        for name in (
            "added_at",
            "epoch",
            "dates",
            "time",
            "seg",
            "textlen",
            "len_own",
            "len_ctx",
            "norm",
            "nbrs",
        ):
            setattr(index, f"_{name}", np.asarray(data[name]))
        index._alive = np.ones(n, dtype=bool)
        index._len_ctx_total = float(index._len_ctx.sum())
        index._term_cnt = np.asarray(data["term_cnt"], dtype=np.int32)
        index._term_off = np.cumsum(index._term_cnt, dtype=np.int64) - index._term_cnt
        index._term_buf = np.asarray(data["term_buf"], dtype=np.int32)
        index._tf_buf = np.asarray(data["tf_buf"], dtype=np.float32)
        index._term_used = len(index._term_buf)
        index._ids = ids
        index._pages = [_LAZY] * n
        index._lazy_blob = bytes(data["page_blob"])
        index._lazy_offsets = np.asarray(data["page_offsets"], dtype=np.int64)
        index._slot_of = {page_id: slot for slot, page_id in enumerate(ids)}
        order = np.asarray(data["order"], dtype=np.int64)
        index._key_slots = order.tolist()
        index._keys = list(
            zip(index._added_at[order].tolist(), [ids[s] for s in index._key_slots], strict=True)
        )
        index._vocab = {term: tid for tid, term in enumerate(data["vocab"])}
        pointer, slots, tfs = data["post_ptr"], data["post_slots"], data["post_tf"]
        postings = []
        for tid in range(len(index._vocab)):
            posting = _Postings()
            a, b = int(pointer[tid]), int(pointer[tid + 1])
            if b > a:
                posting.slots, posting.tf, posting.n = slots[a:b], tfs[a:b], b - a
            postings.append(posting)
        index._postings = postings
        index._postings_bytes = int(slots.nbytes + tfs.nbytes) + 220 * len(postings)
        names = list(data["segments"])
        index._seg_code = {sid: code for code, sid in enumerate(names)}
        by_code = np.argsort(index._seg, kind="stable")
        bounds = np.searchsorted(index._seg[by_code], np.arange(len(names) + 1))
        index._seg_slots = [set(by_code[bounds[c] : bounds[c + 1]].tolist()) for c in range(len(names))]
        index._text_bytes = int(index._textlen.sum())
        if any(data.get(k) is None for k in ("vocatives", "introduced", "addressed")):
            for slot in range(n):  # a snapshot from before names were counted: read them from the pages once
                index._count_names(index._page(slot), 1)
            index.restored_from_older = True
        else:
            index._vocatives = Counter({str(k): int(v) for k, v in dict(data["vocatives"]).items()})
            index._introduced = Counter({str(k): int(v) for k, v in dict(data["introduced"]).items()})
            index._addressed = Counter({(str(a), str(b)): int(c) for a, b, c in data["addressed"]})
        sent_user, sent_ask = data.get("sent_user"), data.get("sent_ask")
        if sent_user is not None and sent_ask is not None and len(sent_user) == len(sent_ask) == n:
            index._sent_user = np.asarray(sent_user, dtype=np.int32)
            index._sent_ask = np.asarray(sent_ask, dtype=np.uint32)
        else:  # a snapshot from before sides or questions were told apart: split the pages' sentences once
            layouts = [sentence_layout(index._page(s), int(index._sent_cnt[s])) for s in range(n)]
            index._sent_user = np.fromiter((u for u, _ in layouts), dtype=np.int32, count=n)
            index._sent_ask = np.fromiter((a for _, a in layouts), dtype=np.uint32, count=n)
            index.restored_from_older = True
        if "screen_codes" in data and "screen_limits" not in data and n >= screen_from:
            # A screen of an earlier version: its query was quantized to 8 bits, with another bound. Built
            # again (~0.5 s at 100k pages), and the snapshot saved again.
            index.restored_from_older = True
        elif "screen_codes" in data and n >= screen_from:
            try:
                screen = DenseScreen.restore(data, dots=screen_dots)
                if screen.dim != index._dim or len(screen.scale) != n:
                    raise ValueError(f"a screen of {len(screen.scale)} x {screen.dim} for {n} x {index._dim}")
                index._screen = screen
            except (KeyError, ValueError) as exc:  # a cache like the rest of the snapshot: rebuilt
                logger.warning("rebuilding the index screen the snapshot held: %s", exc)
        index._build_screen()  # a snapshot saved without one (a smaller index, an older version)
        return index

    # ------------------------------------------------------------------ scoring

    def _segment_slots(self, code: int) -> np.ndarray:
        """Live slots of a segment in conversation order (cached until the segment's pages change)."""
        members = self._members.get(code)
        if members is None:
            slots = np.fromiter(self._seg_slots[code], dtype=np.int64, count=len(self._seg_slots[code]))
            order = np.lexsort((slots, self._added_at[slots])) if len(slots) else slots
            members = self._members[code] = slots[order]
        return members

    def _bm25(
        self, terms: Sequence[str], common: frozenset[str] = frozenset(), common_df: float = 0.0
    ) -> np.ndarray:
        """BM25 of every slot's context document (its terms plus its neighbours'); 0 for dead slots.

        Terms in `common` count as if they were in at least `common_df` of the documents (a share)."""
        n = self._n
        out = np.zeros(n, dtype=np.float64)
        n_docs = len(self._slot_of)
        if not n_docs:
            return out
        lengths = self._len_ctx
        average = self._len_ctx_total / n_docs  # the mean over live slots, exactly
        average = average if average > 0 else 1.0
        for term in dict.fromkeys(terms):
            tid = self._vocab.get(term)
            if tid is None:
                continue
            kept = self._context_postings.get(tid)
            if kept is not None:
                docs, counts = kept[0], kept[1].astype(np.float64)
            else:
                docs, counts = self._context_counts(tid, n)
            if not len(docs):
                continue
            df = max(len(docs), common_df * n_docs) if term in common else len(docs)
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            norm = _BM25_K1 * (1.0 - _BM25_B + _BM25_B * lengths[docs] / average)
            out[docs] += idf * counts * (_BM25_K1 + 1.0) / (counts + norm)
        return out

    def _context_counts(self, tid: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(context documents holding the term, its count in each), counted from the postings of live slots;
        a common term's are kept (ContextPostings) for the next query."""
        postings = self._postings[tid]
        slots = postings.slots[: postings.n]
        tf = postings.tf[: postings.n].astype(np.float64)
        keep = self._alive[slots]
        slots, tf = slots[keep], tf[keep]
        # A term counts in a page's own document and in the documents of the page's neighbours.
        neighbours = self._nbrs[slots]
        has = neighbours >= 0
        targets = np.concatenate([slots, neighbours[has]])
        weights = np.concatenate([tf, np.broadcast_to(tf[:, None], neighbours.shape)[has]])
        if len(targets) * 16 <= n:  # a rare term: sorting its few targets is cheap, and it is not kept
            docs, inverse = np.unique(targets, return_inverse=True)
            return docs, np.bincount(inverse, weights=weights)
        counts = np.bincount(targets, weights=weights, minlength=n)  # beats sorting the targets
        docs = np.flatnonzero(counts)
        counts = counts[docs]
        self._context_postings.keep(tid, docs, counts, capacity=len(self._alive))
        return docs, counts

    def _dense(self, query_embedding: np.ndarray) -> np.ndarray:
        """Cosine of every slot's context vector (own + half of each neighbour's) with the query."""
        own = self._emb.dot(np.asarray(query_embedding, dtype=np.float32), self._n).astype(np.float64)
        padded = np.append(own, 0.0)  # neighbour -1 reads the 0 at the end
        context = own.copy()
        for column in range(self._width):
            context += NEIGHBOUR_WEIGHT * padded[self._nbrs[: self._n, column]]
        norm = self._norm[: self._n].astype(np.float64)
        return context / np.where(norm == 0, 1.0, norm)

    def _dense_of(self, query_embedding: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """What _dense gives these slots, computed for them alone with _dense's arithmetic. Each page's own dot
        is taken once even when it is also a neighbour (refined slots come in runs): a third of the rows."""
        query = np.asarray(query_embedding, dtype=np.float32)
        neighbours = self._nbrs[slots]
        rows, inverse = np.unique(np.concatenate([slots, neighbours.ravel()]), return_inverse=True)
        own = np.zeros(len(rows), dtype=np.float32)  # row -1 (no neighbour) keeps its 0
        first = int(np.searchsorted(rows, 0))
        for start in range(first, len(rows), _ROWS_AT_ONCE):
            chunk = rows[start : start + _ROWS_AT_ONCE]
            own[start : start + len(chunk)] = np.einsum("ij,j->i", self._emb.take(chunk), query)
        dots = own.astype(np.float64)[inverse]
        context = dots[: len(slots)].copy()
        beside = dots[len(slots) :].reshape(neighbours.shape)
        for column in range(self._width):
            context += NEIGHBOUR_WEIGHT * beside[:, column]
        norm = self._norm[slots].astype(np.float64)
        return context / np.where(norm == 0, 1.0, norm)

    def _all_scores(
        self, query: str, query_embedding: np.ndarray, weights: RetrievalWeights, screened: bool = False
    ) -> _Scores:
        """Hybrid score of every slot (dead slots: -inf), standardised over the live pages.

        `screened` (and a screen present): the dense part is approximate, within `error` of the exact score;
        refine() makes chosen slots exact."""
        n = self._n
        live: np.ndarray | slice = self._alive[:n]
        if not len(self._slot_of):
            return _Scores(np.full(n, -np.inf))
        if len(self._slot_of) == n:  # no dead slots (the usual case): views, not copies
            live = slice(None)
        # A participant's name is in every page in spirit (someone is always talking), however rarely it is
        # written: its idf must not make the one page that spells it ("Hi! I'm Maya") the best match.
        names = (
            frozenset(t for name in self.participants() for t in index_terms(name))
            if weights.participant_df
            else frozenset()
        )
        # Built in place from here on (the same arithmetic as the expressions in the comments): at 100k pages
        # every temporary is 800 KB of fresh memory.
        mixed = zscore_in_place(self._bm25(index_terms(query), names, weights.participant_df)[live])
        mixed *= weights.lexical  # lexical · z(bm25)
        screen = self._screen if screened else None
        result = _Scores(mixed)
        if screen is None:
            mixed += (1.0 - weights.lexical) * zscore(self._dense(query_embedding)[live])
        else:
            # z(dense) = (dense − mean) / spread with the exact mean and spread over all pages (the screen's
            # moments); only the dense values themselves are approximate until refined.
            approximate, error = screen.scores(query_embedding, n)
            mean, spread = screen.stats(query_embedding)
            weight = (1.0 - weights.lexical) / spread if spread > FLAT_SPREAD else 0.0
            dense = approximate[live].astype(np.float64)
            dense -= mean
            dense *= weight
            mixed += dense  # + weight · (approximate − mean)
            result = _Scores(mixed, weight * error, query_embedding, weight, approximate, np.zeros(n, bool))
        if weights.time_cue and asks_about_time(query):
            mixed += weights.time_cue * self._time[:n][live]
        cues = date_cues(query) if weights.date_cue else []
        if cues:
            dates = self._dates[:n][live]
            mixed += weights.date_cue * np.max([date_match(dates, cue) for cue in cues], axis=0)
        if not isinstance(live, slice):  # dead slots: -inf
            result.values = np.full(n, -np.inf)
            result.values[live] = mixed
        return result

    def _refine(self, scored: _Scores, slots: np.ndarray) -> None:
        """Make the scores of these slots exact (a screened _Scores; others are exact already)."""
        if scored.approximate is None or scored.exact is None or not len(slots):
            return
        slots = slots[~scored.exact[slots]]
        if not len(slots):
            return
        exact = self._dense_of(scored.query, slots)
        scored.values[slots] += scored.weight * (exact - scored.approximate[slots])
        scored.exact[slots] = True

    def scores(
        self, query: str, query_embedding: np.ndarray, weights: RetrievalWeights
    ) -> tuple[np.ndarray, np.ndarray]:
        """(live slots, hybrid score of each): standardised, so only the order and the gaps mean something."""
        slots = np.flatnonzero(self._alive[: self._n])
        return slots, self._all_scores(query, query_embedding, weights).values[slots]

    def rank(
        self,
        query: str,
        query_embedding: np.ndarray,
        segments: Sequence[Segment],
        f_scores: Sequence[float],
        *,
        top_m: int,
        top_k: int,
        weights: RetrievalWeights,
        window: tuple[float, float] | None = None,
    ) -> tuple[list[tuple[Segment, float]], list[tuple[Page, float]]]:
        """Two stages: the top-m segments by F_score mixed with their best page score, then the top-k pages
        inside them. Returns (segment, stage-one score) and (page, page score), best first.

        With a `window` (inclusive seconds since the epoch) only pages dated inside it take part, and only
        segments holding such pages; scores are still standardised over all of the user's pages.

        A large index ranks on screened scores: every page whose approximate score is within twice the error
        bound of a value that matters (a segment's best, the k-th best candidate, the lowest) is scored
        exactly, so the result is the one the exact scores give.

        Then the best SENTENCE_DEPTH candidates are re-ordered by their best sentence (weights.sentence; the
        best of the named speaker's, weights.named_speaker) and the first k returned, with the mixed score."""
        if not segments:
            return [], []
        by_sentence = bool(weights.sentence) and not asks_about_time(query)
        side = named_side(query, self.speakers()) if by_sentence and weights.named_speaker else None
        depth = max(top_k, SENTENCE_DEPTH) if by_sentence else top_k
        scored = self._all_scores(query, query_embedding, weights, screened=True)
        scores, margin = scored.values, 2.0 * scored.error
        members = []
        for segment in segments:
            code = self._seg_code.get(segment.id)
            members.append(self._segment_slots(code) if code is not None else np.zeros(0, dtype=np.int64))
        if window is not None:
            lo, hi = window
            members = [m[(self._epoch[m] >= lo) & (self._epoch[m] <= hi)] for m in members]  # NaN dates: out
            keep = [i for i, m in enumerate(members) if len(m)]
            segments, f_scores = [segments[i] for i in keep], [f_scores[i] for i in keep]
            members = [members[i] for i in keep]
            if not segments:
                return [], []
        if not margin:
            best = [float(scores[m].max()) if len(m) else math.nan for m in members]
        else:  # score exactly the pages that may be their segment's best, all at once
            near = []
            for m in members:
                values = scores[m]
                near.append(m[values >= values.max() - margin] if len(m) else m)
            self._refine(scored, np.concatenate(near))
            # A page outside `near` scores below its segment's best approximate value minus twice the error,
            # so exactly below the page that has that value: the exact best is among the near ones.
            best = [float(scores[m].max()) if len(m) else math.nan for m in near]
        if any(math.isnan(b) for b in best):  # a segment without pages ranks with the worst page
            live = np.flatnonzero(self._alive[: self._n])
            if margin and len(live):
                self._refine(scored, live[scores[live] <= scores[live].min() + margin])
            floor = float(scores[live].min()) if len(live) else 0.0
            best = [floor if math.isnan(b) else b for b in best]
        w = weights.segment_f_score
        combined = w * zscore(np.asarray(f_scores, dtype=np.float64)) + (1 - w) * zscore(np.asarray(best))
        order = np.argsort(-combined, kind="stable")[:top_m]
        chosen = [(segments[i], float(combined[i])) for i in order]
        # Candidates in the order a stable sort needs: by segment rank, then conversation order.
        candidate = np.concatenate([members[i] for i in order]) if len(order) else np.zeros(0, dtype=np.int64)
        values = scores[candidate]
        if margin and len(candidate) > depth:
            kth = -np.partition(-values, depth - 1)[depth - 1]
            self._refine(scored, candidate[values >= kth - margin])
            values = scores[candidate]
        if len(candidate) > 4 * depth:  # keep what can be in the top k (ties included), then sort only those
            kth = np.partition(-values, depth - 1)[depth - 1]
            keep = np.flatnonzero(-values <= kth)
            candidate, values = candidate[keep], values[keep]
        top = candidate[np.argsort(-values, kind="stable")[:depth]]
        self._refine(scored, top)  # fewer candidates than k: they are all returned
        final = scores[top]
        if by_sentence and len(top) > 1:
            final = final + weights.sentence * zscore(
                self._best_sentences(top, query_embedding, side, skip_questions=weights.skip_questions)
            )
            order = np.argsort(-final, kind="stable")[:top_k]
            top, final = top[order], final[order]
        hits = []
        for slot, score in zip(top.tolist(), final.tolist(), strict=True):
            hits.append((self._page(slot), float(score)))
        return chosen, hits


class PageIndexes:
    """Implements core.protocols.PageIndexes: empty page indexes, and ones restored from a snapshot."""

    def new(self, context_window: int) -> PageIndex:
        return PageIndex(context_window)

    def restore(self, data: dict[str, Any]) -> PageIndex:
        return PageIndex.restore(data)


@dataclass
class _Scores:
    """Scores of every slot, and how to make screened ones exact (PageIndex._refine)."""

    values: np.ndarray
    error: float = 0.0  # bound on |value − exact value| of a slot not refined yet
    query: np.ndarray | None = None
    weight: float = 0.0  # of the dense score in `values`
    approximate: np.ndarray | None = None  # screened dense score of each slot
    exact: np.ndarray | None = None  # slots refined


def pack_snapshot(exported: dict[str, Any]) -> dict[str, Any]:
    """What export() returned, in the form a snapshot stores and restore() reads: postings grouped by term,
    page records as one blob with offsets. The slow part of saving: runs without the owner's lock."""
    n = len(exported["ids"])
    term_buf, tf_buf = exported["term_buf"], exported["tf_buf"]
    slots_of_terms = np.repeat(np.arange(n, dtype=np.int32), exported["term_cnt"])
    by_term = np.argsort(term_buf, kind="stable")  # slots stay ascending within a term
    pointer = np.searchsorted(term_buf[by_term], np.arange(len(exported["vocab"]) + 1)).astype(np.int64)
    payloads = [r if isinstance(r, bytes) else page_payload(r) for r in exported["records"]]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in payloads]) if payloads else []
    packed = {k: v for k, v in exported.items() if k != "records"}
    packed.update(
        post_ptr=pointer,
        post_slots=slots_of_terms[by_term],
        post_tf=tf_buf[by_term],
        page_blob=np.frombuffer(b"".join(payloads), dtype=np.uint8),
        page_offsets=offsets,
    )
    return packed


def _runs(offsets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the runs offsets[i] .. offsets[i] + counts[i] one after the other, where each run
    starts among them): how a slot's terms or sentences are read out of their flat buffer."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    positions = np.repeat(offsets - starts, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    return positions, starts


def _text_size(page: Page) -> int:
    return len(page.user_input) + len(page.agent_response) + len(page.chain_summary) + 40 * len(page.metadata)
