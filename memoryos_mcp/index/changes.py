"""Part of PageIndex: pages coming and going, changed in place at the cost of the pages touched and their
neighbours (their dialogue context), never a rebuild of the user; compaction after many removals."""

from __future__ import annotations

import bisect
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from memoryos_mcp.core.dates import epoch_seconds
from memoryos_mcp.core.models import Page, SentenceVectors
from memoryos_mcp.core.text import exchange_text, page_text, sentence_layout
from memoryos_mcp.index.arrays import Postings, Rows, runs
from memoryos_mcp.index.cues import calendar_date, mentions_time, self_names, vocatives
from memoryos_mcp.index.screen import DenseScreen
from memoryos_mcp.index.sides import addressed
from memoryos_mcp.index.terms import index_terms

NEIGHBOUR_WEIGHT = 0.5  # share of a neighbour page's embedding in a page's context embedding
CONTEXT_GAP_S = 3 * 3600  # pages further apart in time belong to different conversations: no shared context
# More pages than this changing neighbours at once (a bulk load): the kept BM25 counts are dropped, not moved.
_MOVE_AT_MOST = 4096
# Sentence rows left unused by set_sentences() (a backfill replacing each page's stand-in) from which the
# rows still used are packed together: 4,096 rows are 1.5 MB at 384 dimensions.
PACK_SENTENCES_FROM = 4096


class Changes:
    """Part of PageIndex: adding, removing and re-embedding pages, and what that moves."""

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
        packed = Rows(self._dim, np.int8)
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
        self._textlen[slot] = text_size(stored)
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
            self._postings.append(Postings())
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
        return runs(self._sent_off[slots], self._sent_cnt[slots])

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
            self._emb = Rows(dim)
            self._sent = Rows(dim, np.int8)
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
        rows = Rows(self._dim)
        rows.adopt(self._emb.take(live))
        self._emb = rows
        sentence_rows, starts = self._sentence_rows(live)
        sentences = Rows(self._dim, np.int8)
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
        self._postings = [Postings() for _ in self._vocab]
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


def text_size(page: Page) -> int:
    return len(page.user_input) + len(page.agent_response) + len(page.chain_summary) + 40 * len(page.metadata)
