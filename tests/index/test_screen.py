"""The int8 screen of a large index: its moments and error bound hold, and it never changes a ranking."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memoryos_mcp.adapters.snapshots import SnapshotStore
from memoryos_mcp.core.models import Page
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.page_index import PageIndex
from memoryos_mcp.index.screen import (
    QUERY_LEVELS,
    DenseScreen,
    choose_kernel,
    dot_kernel,
    known_answer_failures,
    numpy_dots,
    onnx_dots,
)
from memoryos_mcp.index.snapshot_format import pack_snapshot
from tests.helpers.pages import (
    DIM,
    QUERIES,
    check_index,
    query_vector,
    random_page,
    remove_some,
    segments_of,
)


def _exact_dense(index: PageIndex, query: np.ndarray) -> np.ndarray:
    return index._dense(query)[index._alive[: index._n]]


def _churned(seed: int) -> tuple[PageIndex, dict[str, Page], random.Random]:
    """A screened index after adds, removals (enough to compact) and whole segments dropped."""
    rng = random.Random(seed)
    index = PageIndex(screen_from=50)
    live: dict[str, Page] = {}
    for n in range(0, 900, 30):
        batch = [random_page(rng, n + i, ["a", "b", "c"]) for i in range(30)]
        index.add(batch)
        live.update((p.id, p) for p in batch)
        remove_some(index, live, rng, 20)
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
        query = query_vector(rng)
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
    check_index(restored, live, rng, ["a", "b", "c"], 1)


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
    args = ("", query, segments_of(["s"]), [1.0])
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
    pages = [random_page(rng, i, segment_ids) for i in range(400)]
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
    segments = segments_of(segment_ids)
    for _ in range(12):
        query, vector = rng.choice(QUERIES), query_vector(rng)
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
    check_index(restored, live, rng, ["a", "b", "c"], 1)
    more = [random_page(rng, 5000 + i, ["a", "b"]) for i in range(40)]  # changes after the load stay exact
    restored.add(more)
    live.update((p.id, p) for p in more)
    remove_some(restored, live, rng, 30)
    check_index(restored, live, rng, ["a", "b", "c"], 1)


def test_a_damaged_screen_in_a_snapshot_is_rebuilt() -> None:
    index, live, rng = _churned(12)
    packed = pack_snapshot(index.export())
    packed["screen_scale"] = packed["screen_scale"][:-1]  # one column short
    restored = PageIndex.restore(packed, screen_from=50)
    assert restored._screen is not None and restored._screen.count == len(live)
    check_index(restored, live, rng, ["a", "b", "c"], 1)


def _edge_vectors(n: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n unit vectors whose int8 codes are all ±127, a unit query whose codes are all at the edge of their
    range): columns with the query's signs, the opposite ones, all +, all −, alternating, random. Their dots
    are the largest the kernel can meet; an int16 pair sum saturates on them first."""
    rng = np.random.default_rng(seed)
    query_signs = rng.choice([-1.0, 1.0], size=dim)
    patterns = [query_signs, -query_signs, np.ones(dim), -np.ones(dim), np.resize([1.0, -1.0], dim)]
    signs = np.asarray(
        [patterns[i % 5] if i % 2 == 0 else rng.choice([-1.0, 1.0], size=dim) for i in range(n)]
    )
    return (signs / np.sqrt(dim)).astype(np.float32), (query_signs / np.sqrt(dim)).astype(np.float32)


def test_the_error_bound_holds_for_vectors_at_the_edges_of_the_codes() -> None:
    """The bound holds on every machine: on CPUs whose MatMulInteger adds pairs of uint8·int8 products in
    int16 with saturation (AVX2 without VNNI, and others), queries quantized to 8 bits came back wrong."""
    vectors, query = _edge_vectors(5000)
    screen = DenseScreen(384, centre=np.zeros(384, dtype=np.float32))
    screen.reserve(len(vectors))
    screen.put(np.arange(len(vectors)), vectors)
    approximate, bound = screen.scores(query, len(vectors))
    exact = vectors.astype(np.float64) @ query.astype(np.float64)
    assert np.abs(approximate - exact).max() <= bound
    assert bound < 0.05  # and the bound is still a useful one


@pytest.mark.parametrize("kernel", ["onnxruntime", "numpy"])
def test_each_kernel_gives_the_exact_integer_dots_at_the_edges_of_the_ranges(kernel: str) -> None:
    dots = onnx_dots() if kernel == "onnxruntime" else numpy_dots
    assert known_answer_failures(dots) == 0
    rng = np.random.default_rng(1)
    codes = rng.integers(-127, 128, size=(384, 9000)).astype(np.int8)  # more columns than a numpy block
    colsum = codes.sum(axis=0, dtype=np.int64).astype(np.float32)
    for query in (np.full(384, QUERY_LEVELS), rng.integers(-QUERY_LEVELS, QUERY_LEVELS + 1, size=384)):
        q = query.astype(np.int8)
        want = q.astype(np.int64) @ codes.astype(np.int64)
        assert np.array_equal(np.asarray(dots(q, codes, colsum)).astype(np.int64), want)


def _pairwise_saturating(
    query: np.ndarray, codes: np.ndarray, colsum: np.ndarray, zero_point: int
) -> np.ndarray:
    """What an AVX2 kernel without VNNI computes (vpmaddubsw, then vpmaddwd): uint8 · int8 products added
    in pairs with saturation to int16, then summed in int32; the zero point's share taken off after."""
    shifted = query.astype(np.int64) + zero_point
    products = shifted[:, None] * codes.astype(np.int64)
    pairs = np.clip(products[0::2] + products[1::2], -32768, 32767)
    return (pairs.sum(axis=0) - zero_point * colsum.astype(np.int64)).astype(np.float32)


def test_seven_bit_queries_cannot_saturate_a_kernel_that_adds_products_in_pairs() -> None:
    def seven_bit(q: np.ndarray, codes: np.ndarray, colsum: np.ndarray) -> np.ndarray:
        return _pairwise_saturating(q, codes, colsum, zero_point=64)

    def eight_bit(q: np.ndarray, codes: np.ndarray, colsum: np.ndarray) -> np.ndarray:
        # the earlier quantization: codes −127..127 sent as 1..255
        return _pairwise_saturating(np.clip(q.astype(np.int64) * 2 + 1, -127, 127), codes, colsum, 128)

    assert known_answer_failures(seven_bit) == 0
    assert known_answer_failures(eight_bit) > 0  # the emulation does saturate where the old screen did


def test_a_kernel_that_fails_the_known_answer_check_is_replaced_by_the_exact_path() -> None:
    def broken(q: np.ndarray, codes: np.ndarray, colsum: np.ndarray) -> np.ndarray:
        return _pairwise_saturating(np.clip(q.astype(np.int64) * 2 + 1, -127, 127), codes, colsum, 128)

    chosen = choose_kernel(lambda: broken)
    assert chosen.name == "numpy" and chosen.dots is numpy_dots and "wrong dot products" in chosen.reason

    def unavailable() -> None:
        raise ImportError("no onnxruntime")

    chosen = choose_kernel(unavailable)  # type: ignore[arg-type]
    assert chosen.name == "numpy" and "unavailable" in chosen.reason
    assert dot_kernel().name in ("onnxruntime", "numpy")
    assert choose_kernel(onnx_dots).name == "onnxruntime"  # exact here (7-bit queries): the fast path is kept


def test_a_screen_on_the_numpy_path_scores_as_the_fast_one() -> None:
    vectors, query = _edge_vectors(3000, seed=3)
    rng = np.random.default_rng(3)
    vectors = np.concatenate([vectors, rng.normal(size=(3000, 384)).astype(np.float32)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fast = DenseScreen(384, np.zeros(384, dtype=np.float32), dots=onnx_dots())
    exact = DenseScreen(384, np.zeros(384, dtype=np.float32), dots=numpy_dots)
    for screen in (fast, exact):
        screen.reserve(len(vectors))
        screen.put(np.arange(len(vectors)), vectors)
    for q in (query, rng.normal(size=384).astype(np.float32)):
        q = q / np.linalg.norm(q)
        assert np.array_equal(fast.scores(q, len(vectors))[0], exact.scores(q, len(vectors))[0])


# Run under valgrind, whose CPU has AVX2 but neither AVX-512 nor VNNI: ONNX Runtime then takes the kernel that
# adds uint8·int8 products in pairs in int16 with saturation, as on Zen 2/Zen 3 servers.
_ON_AN_AVX2_CPU = """
import numpy as np
from memoryos_mcp.index.screen import known_answer_failures, onnx_dots
dots = onnx_dots()
rng = np.random.default_rng(0)
codes = rng.choice(np.array([-127, 127], dtype=np.int8), size=(384, 2000))
colsum = codes.sum(axis=0, dtype=np.int64).astype(np.float32)
wide = np.full(384, 191, dtype=np.int16)  # sent as 255, as the 8-bit screen sent its queries' largest codes
wrong_wide = int(np.count_nonzero(dots(wide, codes, colsum).astype(np.int64) != 191 * colsum.astype(np.int64)))
print(known_answer_failures(dots), wrong_wide)
"""


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind (it emulates a CPU without VNNI) is absent"
)
def test_the_fast_kernel_is_exact_on_a_cpu_without_vnni() -> None:
    done = subprocess.run(
        ["valgrind", "--tool=none", "-q", sys.executable, "-c", _ON_AN_AVX2_CPU],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wrong, wrong_wide = (int(x) for x in done.stdout.split())
    if wrong_wide == 0:
        pytest.skip("valgrind's CPU here does not saturate int16 pair sums: nothing to check against")
    assert wrong == 0  # 7-bit queries: exact on the kernel that got 8-bit ones wrong
