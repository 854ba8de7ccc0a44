"""Kept BM25 counts (ContextPostings) stay equal to counting afresh through every kind of change."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memoryos_mcp.index.context_postings import ContextPostings
from memoryos_mcp.index.page_index import PageIndex
from memoryos_mcp.index.terms import index_terms
from tests.helpers.pages import QUERIES, random_page, remove_some

SEGMENTS = [f"s{i}" for i in range(4)]


def _afresh(index: PageIndex, terms: list[str]) -> np.ndarray:
    kept = index._context_postings
    index._context_postings = ContextPostings(budget_bytes=0)  # keeps nothing: every count is made now
    try:
        return index._bm25(terms)
    finally:
        index._context_postings = kept


def _check(index: PageIndex) -> None:
    live = index._alive[: index._n]
    assert index._len_ctx_total == index._len_ctx[: index._n][live].sum()
    assert index._context_postings.nbytes <= index._context_postings.budget_bytes
    for query in QUERIES:
        terms = index_terms(query)
        got = index._bm25(terms)  # kept counts where there are some (and keeps more)
        assert np.array_equal(got[live], _afresh(index, terms)[live]), query


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("budget", [16 * 2**20, 3_000], ids=["roomy", "tight"])
def test_kept_counts_equal_fresh_counts_after_every_change(seed: int, budget: int) -> None:
    rng = random.Random(seed)
    index = PageIndex(context_window=rng.choice([1, 2]))
    index._context_postings = ContextPostings(budget_bytes=budget)
    live: dict = {}
    n = 0
    for _ in range(30):
        action = rng.random()
        if action < 0.6 or len(live) < 5:
            batch = [random_page(rng, n + i, SEGMENTS) for i in range(rng.choice([1, 1, 2, 6]))]
            n += len(batch)
            index.add(batch)
            live.update((p.id, p) for p in batch)
        elif action < 0.8:
            remove_some(index, live, rng, rng.randint(1, 3))
        elif action < 0.9:
            segment = rng.choice(SEGMENTS)
            index.remove_segments([segment])
            live = {pid: p for pid, p in live.items() if p.segment_id != segment}
        else:  # a page indexed again with other words: out of the old documents, into the new ones
            pid = rng.choice(sorted(live))
            again = random_page(rng, int(pid[1:]), SEGMENTS)
            index.add([again])
            live[pid] = again
        _check(index)
    assert len(index._context_postings), "no common term was kept: the test exercised nothing"


def test_kept_counts_survive_compaction_and_a_bulk_load() -> None:
    rng = random.Random(11)
    index = PageIndex()
    pages = [random_page(rng, i, SEGMENTS) for i in range(300)]
    index.add(pages)
    _check(index)
    live = {p.id: p for p in pages}
    remove_some(index, live, rng, 290)  # more dead than live: compacted, slots renumbered
    _check(index)
    index.add([random_page(rng, 1000 + i, SEGMENTS) for i in range(5000)])  # refreshes more than it moves
    _check(index)
    assert len(index._context_postings), "no common term was kept: the test exercised nothing"


def test_the_budget_bounds_what_is_kept() -> None:
    postings = ContextPostings(budget_bytes=10_000)
    for term in range(10):
        postings.keep(term, np.arange(0, 400, 2), np.ones(200), capacity=1000)  # ~6 KB each
        assert postings.nbytes <= 10_000
    assert list(postings._terms) == [9]  # the least recently used went first
    postings.keep(99, np.arange(5000), np.ones(5000), capacity=5000)  # larger than the whole budget
    assert 99 not in postings and 9 in postings
