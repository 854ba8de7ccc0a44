"""BM25 counts of common terms over context documents, kept between queries and updated in place.

A page's context document is its own terms plus its neighbours' (page_index.py), so a term's count in a
document is the sum, over the live pages holding the term, of the page's count, added to the page itself and
to each of its neighbours. For a common term that sum touches tens of thousands of documents at 100k pages
and costs about a millisecond per query term to assemble; an agent asks about the same few topics again and
again, so the counts of the common terms it asked about are kept — one count per slot (float32: counts are
whole numbers, so every sum is exact) and the sorted slots whose count is not zero — and every change to a
page's liveness or neighbours moves its contribution in place (`move`), which is what keeps the result equal
to computing it afresh. Rare terms are cheap to count at query time and are never kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

# Per user index: ~40 common terms at 100k pages, every term a small index has.
DEFAULT_BUDGET_BYTES = 16 * 2**20


class _Counts:
    __slots__ = ("dense", "docs")

    def __init__(self, dense: np.ndarray, docs: np.ndarray) -> None:
        self.dense = dense  # float32 count of the term in each slot's context document
        self.docs = docs  # int64, sorted: the slots whose count is not zero

    @property
    def nbytes(self) -> int:
        return self.dense.nbytes + self.docs.nbytes + 200


class ContextPostings:
    """Context-document counts of recently queried common terms, least recently used dropped first."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._terms: OrderedDict[int, _Counts] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._terms)

    def __contains__(self, term: int) -> bool:
        return term in self._terms

    def get(self, term: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(documents, counts) of a kept term, or None."""
        kept = self._terms.get(term)
        if kept is None:
            return None
        self._terms.move_to_end(term)
        return kept.docs, kept.dense[kept.docs]

    def keep(self, term: int, docs: np.ndarray, counts: np.ndarray, capacity: int) -> None:
        """Keep a term's counts, computed afresh (docs sorted, counts > 0), if they fit the budget."""
        dense = np.zeros(capacity, dtype=np.float32)
        dense[docs] = counts
        kept = _Counts(dense, np.asarray(docs, dtype=np.int64))
        if kept.nbytes > self.budget_bytes:
            return
        self.forget([term])
        while self._terms and self.nbytes + kept.nbytes > self.budget_bytes:
            _, dropped = self._terms.popitem(last=False)
            self.nbytes -= dropped.nbytes
        self._terms[term] = kept
        self.nbytes += kept.nbytes

    def move(self, terms: np.ndarray, tfs: np.ndarray, before: Iterable[int], after: Iterable[int]) -> None:
        """A page holding `terms` (counts `tfs`) stops counting in the documents `before` and counts in
        `after` instead (either may be empty: a page coming or going)."""
        if not self._terms:
            return
        before, after = list(before), list(after)
        for term, tf in zip(terms.tolist(), tfs.tolist(), strict=True):
            kept = self._terms.get(term)
            if kept is None:
                continue
            for slot in before:
                self._add(term, kept, slot, -tf)
            for slot in after:
                self._add(term, kept, slot, tf)

    def _add(self, term: int, kept: _Counts, slot: int, tf: float) -> None:
        if slot >= len(kept.dense):
            grown = np.zeros(max(slot + 1, 2 * len(kept.dense)), dtype=np.float32)
            grown[: len(kept.dense)] = kept.dense
            self.nbytes += grown.nbytes - kept.dense.nbytes
            kept.dense = grown
        was = kept.dense[slot]
        kept.dense[slot] = now = was + np.float32(tf)
        if (was == 0) != (now == 0):
            position = int(np.searchsorted(kept.docs, slot))
            self.nbytes -= kept.docs.nbytes
            if now == 0:
                kept.docs = np.delete(kept.docs, position)
            else:
                kept.docs = np.insert(kept.docs, position, slot)
            self.nbytes += kept.docs.nbytes
        while self._terms and self.nbytes > self.budget_bytes:  # grew past it: least recently used out
            dropped_term, dropped = self._terms.popitem(last=False)
            self.nbytes -= dropped.nbytes
            if dropped_term == term:
                break

    def forget(self, terms: Iterable[int]) -> None:
        for term in terms:
            dropped = self._terms.pop(term, None)
            if dropped is not None:
                self.nbytes -= dropped.nbytes

    def clear(self) -> None:
        """Slots were renumbered: nothing kept is valid."""
        self._terms.clear()
        self.nbytes = 0
