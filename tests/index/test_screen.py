"""The int8 screen of a large index: its moments and error bound hold, and it never changes a ranking."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from memoryos_mcp.adapters.snapshots import SnapshotStore
from memoryos_mcp.core.models import Page
from memoryos_mcp.index.page_index import PageIndex, RetrievalWeights, pack_snapshot
from tests.index.test_page_index import (
    DIM,
    QUERIES,
    _check,
    _page,
    _query_vector,
    _remove_some,
    _segments,
)


def _exact_dense(index: PageIndex, query: np.ndarray) -> np.ndarray:
    return index._dense(query)[index._alive[: index._n]]


def _churned(seed: int) -> tuple[PageIndex, dict[str, Page], random.Random]:
    """A screened index after adds, removals (enough to compact) and whole segments dropped."""
    rng = random.Random(seed)
    index = PageIndex(screen_from=50)
    live: dict[str, Page] = {}
    for n in range(0, 900, 30):
        batch = [_page(rng, n + i, ["a", "b", "c"]) for i in range(30)]
        index.add(batch)
        live.update((p.id, p) for p in batch)
        _remove_some(index, live, rng, 20)
    index.remove_segments(["c"])
    live = {pid: p for pid, p in live.items() if p.segment_id != "c"}
    return index, live, rng


@pytest.mark.parametrize("seed", range(3))
def test_screen_moments_give_the_exact_mean_and_spread_and_its_bound_holds(seed: int) -> None:
    index, live, rng = _churned(seed)
    screen = index._screen
    assert screen is not None and screen.count == len(index) == len(live)
    assert np.array_equal(
        np.flatnonzero(screen.counted[: index._n]), np.flatnonzero(index._alive[: index._n])
    )
    for _ in range(5):
        query = _query_vector(rng)
        exact = _exact_dense(index, query)
        mean, spread = screen.stats(query)
        assert mean == pytest.approx(float(exact.mean()), abs=1e-6)
        assert spread == pytest.approx(float(exact.std()), abs=1e-6)
        approximate, error = screen.scores(query, index._n)
        worst = np.abs(approximate[index._alive[: index._n]] - exact).max()
        assert 0 < worst <= error
        # refinement scores a few slots the way _dense scores them all (runs of neighbours, lone slots)
        alive = np.flatnonzero(index._alive[: index._n])
        some = np.unique(np.concatenate([alive[100:160], rng.sample(alive.tolist(), 40)]))
        assert np.allclose(index._dense_of(query, some), index._dense(query)[some], rtol=0, atol=1e-7)


def test_a_screened_index_restored_from_a_snapshot_ranks_exactly() -> None:
    index, live, rng = _churned(7)
    restored = PageIndex.restore(pack_snapshot(index.export()), screen_from=50)
    assert restored._screen is not None and restored._screen.count == len(live)
    _check(restored, live, rng, ["a", "b", "c"], 1)


def test_pages_the_int8_screen_cannot_tell_apart_still_rank_in_exact_order() -> None:
    """Context vectors this close quantize to the same codes in groups: only the exact pass orders them."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=DIM).astype(np.float32)
    direction = rng.normal(size=DIM).astype(np.float32)
    order = rng.permutation(300)
    pages = []
    for i in range(300):
        vector = base + 3e-6 * order[i] * direction
        pages.append(
            Page(
                id=f"p{i}",
                user_id="u",
                user_input="",
                agent_response="",
                # a day apart: no dialogue context, each page's context vector is its own
                timestamp=f"2023-{1 + i // 28:02d}-{1 + i % 28:02d}T10:00:00",
                added_at=i,
                segment_id="s",
                embedding=vector / np.linalg.norm(vector),
            )
        )
    weights = RetrievalWeights(lexical=0.0)
    query = direction / np.linalg.norm(direction)
    exact, screened = PageIndex(), PageIndex(screen_from=0)
    exact.add(pages)
    screened.add(pages)
    approximate, _ = screened._screen.scores(query, screened._n)  # type: ignore[union-attr]
    by_screen = np.argsort(-approximate, kind="stable")[:25].tolist()
    assert by_screen != np.argsort(-screened._dense(query), kind="stable")[:25].tolist()  # alone, it errs
    args = ("", query, _segments(["s"]), [1.0])
    want = exact.rank(*args, top_m=1, top_k=25, weights=weights)[1]
    got = screened.rank(*args, top_m=1, top_k=25, weights=weights)[1]
    assert [p.id for p, _ in got] == [p.id for p, _ in want]
    # z-scores over a spread of ~3e-4: float32 rounding (~3e-8) shows at 1e-4
    assert np.allclose([x for _, x in got], [x for _, x in want], atol=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_ranking_is_exact_whatever_errors_the_screen_makes_within_its_bound(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranking may rely only on |approximate - exact| <= bound: a screen whose every score is off by up to
    its bound, at random, must leave segments, pages and scores those of the exact index."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    segment_ids = [f"s{i}" for i in range(8)]
    pages = [_page(rng, i, segment_ids) for i in range(400)]
    exact, screened = PageIndex(), PageIndex(screen_from=0)
    exact.add(pages)
    screened.add(pages)
    screen = screened._screen
    assert screen is not None
    honest = screen.scores

    def adversarial(query: np.ndarray, n: int) -> tuple[np.ndarray, float]:
        _, bound = honest(query, n)
        off = noise.uniform(-0.999, 0.999, n) * bound
        return (screened._dense(query)[:n] + off).astype(np.float32), bound + 1e-6  # + float32 rounding

    monkeypatch.setattr(screen, "scores", adversarial)
    segments = _segments(segment_ids)
    for _ in range(12):
        query, vector = rng.choice(QUERIES), _query_vector(rng)
        f_scores = [rng.random() for _ in segments]
        top_m, top_k = rng.randint(1, 6), rng.randint(1, 15)
        args = (query, vector, segments, f_scores)
        want = exact.rank(*args, top_m=top_m, top_k=top_k, weights=RetrievalWeights())
        got = screened.rank(*args, top_m=top_m, top_k=top_k, weights=RetrievalWeights())
        assert [s.id for s, _ in got[0]] == [s.id for s, _ in want[0]]
        assert np.allclose([x for _, x in got[0]], [x for _, x in want[0]], atol=1e-5)
        assert [p.id for p, _ in got[1]] == [p.id for p, _ in want[1]]
        assert np.allclose([x for _, x in got[1]], [x for _, x in want[1]], atol=1e-5)


def test_the_screen_is_saved_in_the_snapshot_and_loaded_not_rebuilt(tmp_path: Path) -> None:
    index, live, rng = _churned(11)
    assert index._screen is not None
    snapshots = SnapshotStore(tmp_path, identity="test")
    snapshots.save("u", 1, index.export())
    loaded = snapshots.load("u", 1)
    assert loaded is not None
    restored = PageIndex.restore(loaded[0], screen_from=50)
    # a rebuilt screen would be centred on its first chunk's mean, not on the original's
    assert restored._screen is not None and restored._screen.count == len(live)
    assert np.array_equal(restored._screen.centre, index._screen.centre)
    _check(restored, live, rng, ["a", "b", "c"], 1)
    more = [_page(rng, 5000 + i, ["a", "b"]) for i in range(40)]  # changes after the load stay exact
    restored.add(more)
    live.update((p.id, p) for p in more)
    _remove_some(restored, live, rng, 30)
    _check(restored, live, rng, ["a", "b", "c"], 1)


def test_a_damaged_screen_in_a_snapshot_is_rebuilt() -> None:
    index, live, rng = _churned(12)
    packed = pack_snapshot(index.export())
    packed["screen_scale"] = packed["screen_scale"][:-1]  # one column short
    restored = PageIndex.restore(packed, screen_from=50)
    assert restored._screen is not None and restored._screen.count == len(live)
    _check(restored, live, rng, ["a", "b", "c"], 1)
