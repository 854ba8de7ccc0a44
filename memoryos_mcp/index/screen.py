"""A cheap first pass over a large index's dense scores, so that only a few pages are scored exactly.

A query's dense score of a page is the cosine of its context vector with the query (page_index.py). At
100k pages the float32 dot over all of them reads 150 MB and costs ~5 ms on 2 cores — most of a
retrieval. DenseScreen keeps every page's context vector quantized to int8 (one scale per page), column-
major so that ONNX Runtime's MatMulInteger computes all scores in ~1 ms (a quarter of the bytes), and
bounds the error of each approximate score. PageIndex then scores exactly every page whose approximate
score could put it among the results, so the ranking is the exact one.

The bound assumes exact integer dot products, and an integer kernel is not exact by nature: on x86 CPUs
without VNNI, MatMulInteger's uint8 × int8 kernel adds each pair of products into int16 with saturation
(vpmaddubsw), so a pair above 32,767 comes back wrong. The query is therefore quantized to 7 bits
(−63..63, sent as 1..127 around a zero point of 64): a pair is then at most 2 · 127 · 127 = 32,258 and no
such kernel can saturate. And the kernel is checked once against exact int64 products on adversarial
inputs before it is used (`dot_kernel()`); one that fails is replaced by an exact numpy path.

It also keeps the first and second moments of the live context vectors (float64, about a fixed centre so
that pages all alike lose no precision), which give the exact mean and standard deviation of the dense
scores over all pages (the z-score) from the query alone: with d = c − centre, mean = q·centre + q·Σd / n,
variance = qᵀ(Σ d dᵀ)q / n − (q·Σd / n)².
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# From this many live pages on, dense scores are screened in int8 first: ~4x less memory traffic per query;
# below it the float32 pass costs under a millisecond and a screen would not pay for itself.
SCREEN_FROM = 20_000

QUERY_LEVELS = 63  # the query's codes lie in −63..63 (7 bits): see the module docstring
_ZERO_POINT = 64  # MatMulInteger's fast path is uint8 × int8: the query is sent as codes + 64, in 1..127
PAGE_LEVELS = 127  # a page's codes lie in −127..127
_COLUMNS_AT_ONCE = 4096  # columns the numpy path converts to float32 at a time (6 MB at 384 dimensions)

# (query codes (dim,) int8, page codes (dim, n) int8, Σ codes of each column (n,) float32) → the exact
# integer dot of the query with every column, as float32 (exact: |dot| ≤ 63 · 127 · dim < 2^24 for dim ≤ 2,000)
Dots = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def numpy_dots(query: np.ndarray, codes: np.ndarray, colsum: np.ndarray) -> np.ndarray:
    """The exact path: float32 products of small integers, summed in float32 — exact, since every partial
    sum is an integer below 2^24. ~20x slower than MatMulInteger (24 ms at 100k pages on 2 cores)."""
    q = query.astype(np.float32)
    n = codes.shape[1]
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, _COLUMNS_AT_ONCE):
        out[start : start + _COLUMNS_AT_ONCE] = q @ codes[:, start : start + _COLUMNS_AT_ONCE].astype(
            np.float32
        )
    return out


def onnx_dots() -> Dots:
    """MatMulInteger on ONNX Runtime: (1, dim) uint8 × (dim, n) int8 → (1, n) int32, one call at a time.

    No zero-point input: with one, ONNX Runtime 1.32 takes a path 3x slower; the zero point's share
    (64 · Σ codes of a column) is taken off here."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["query", "pages"], ["dots"])],
        "dense_screen",
        [
            helper.make_tensor_value_info("query", TensorProto.UINT8, [1, "dim"]),
            helper.make_tensor_value_info("pages", TensorProto.INT8, ["dim", "n"]),
        ],
        [helper.make_tensor_value_info("dots", TensorProto.INT32, [1, "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    # Two threads halve the ~1.5 ms of 100k pages (measured: 1.50 -> 0.82 ms on 2 cores); idle ones sleep,
    # not spin, so they cost nothing between queries.
    options.intra_op_num_threads = min(2, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    lock = threading.Lock()

    def dots(query: np.ndarray, codes: np.ndarray, colsum: np.ndarray) -> np.ndarray:
        shifted = (query.astype(np.int16) + _ZERO_POINT).astype(np.uint8)[None, :]
        with lock:  # one session: two retrievals at once take turns for ~1 ms
            raw = np.asarray(session.run(None, {"query": shifted, "pages": codes})[0][0])
        out = raw.astype(np.float32)  # exact: |raw| ≤ 127 · 127 · dim < 2^24
        out -= _ZERO_POINT * colsum
        return out

    return dots


def known_answer_failures(dots: Dots, dim: int = 384, n: int = 4096) -> int:
    """How many of a kernel's dots differ from exact int64 products on inputs at the edges of the ranges the
    screen uses: page codes at ±127 (some columns all one sign, some alternating, some random), queries at
    ±63 with the same patterns. 0 for an exact kernel."""
    rng = np.random.default_rng(20261206)
    codes = rng.integers(-PAGE_LEVELS, PAGE_LEVELS + 1, size=(dim, n)).astype(np.int8)
    edge = rng.choice(np.array([-PAGE_LEVELS, PAGE_LEVELS], dtype=np.int8), size=(dim, n // 2))
    codes[:, : n // 2] = edge
    codes[:, 0], codes[:, 1] = PAGE_LEVELS, -PAGE_LEVELS
    codes[:, 2] = np.where(np.arange(dim) % 2 == 0, PAGE_LEVELS, -PAGE_LEVELS)
    colsum = codes.sum(axis=0, dtype=np.int64).astype(np.float32)
    exact_codes = codes.astype(np.int64)
    queries = [
        np.full(dim, QUERY_LEVELS),
        np.full(dim, -QUERY_LEVELS),
        np.where(np.arange(dim) % 2 == 0, QUERY_LEVELS, -QUERY_LEVELS),
        np.sign(codes[:, 4].astype(np.int64)) * QUERY_LEVELS,  # aligned with a column: the largest dot
        rng.integers(-QUERY_LEVELS, QUERY_LEVELS + 1, size=dim),
    ]
    wrong = 0
    for query in queries:
        q = query.astype(np.int8)
        want = q.astype(np.int64) @ exact_codes
        got = np.asarray(dots(q, codes, colsum))
        wrong += int(np.count_nonzero(got.astype(np.int64) != want))
    return wrong


@dataclass(frozen=True)
class DotKernel:
    """The integer kernel the screen uses on this machine, and why."""

    name: str
    reason: str
    dots: Dots


@functools.cache
def dot_kernel() -> DotKernel:
    """MatMulInteger where it is exact on this CPU (checked once per process), else the numpy path."""
    return choose_kernel(onnx_dots)


def choose_kernel(make_fast: Callable[[], Dots]) -> DotKernel:
    """The fast kernel `make_fast` builds if it passes the known-answer check, else the exact numpy path;
    logged once (with -v) with the reason."""
    try:
        fast = make_fast()
    except Exception as exc:  # no ONNX Runtime, or a build without the operator
        kernel = DotKernel("numpy", f"ONNX Runtime's MatMulInteger is unavailable ({exc})", numpy_dots)
    else:
        wrong = known_answer_failures(fast)
        if wrong:
            kernel = DotKernel(
                "numpy",
                f"ONNX Runtime's MatMulInteger gave {wrong} wrong dot products in the known-answer check on "
                "this CPU; exact numpy products instead (slower retrieval above 20k pages a user)",
                numpy_dots,
            )
        else:
            kernel = DotKernel(
                "onnxruntime", "MatMulInteger matched exact int64 products in the known-answer check", fast
            )
    log = logger.info if kernel.name == "onnxruntime" else logger.warning
    log("dense screen: %s path (%s)", kernel.name, kernel.reason)
    return kernel


class DenseScreen:
    """Int8 copies of the live pages' context vectors by slot, with their moments. Not thread-safe.

    `dots`: the integer kernel (default: dot_kernel(), chosen at the first query)."""

    def __init__(self, dim: int, centre: np.ndarray, dots: Dots | None = None) -> None:
        self.dim = dim
        self.centre = np.asarray(centre, dtype=np.float32)  # near the vectors' mean; fixed for life
        self.dots = dots
        self.codes = np.zeros((dim, 0), dtype=np.int8)  # column per slot
        self.scale = np.zeros(0, dtype=np.float32)  # vector ≈ scale · codes
        self.colsum = np.zeros(0, dtype=np.float32)  # Σ codes of a column (exact in float32: < 2^24)
        self.counted = np.zeros(0, dtype=bool)  # slots whose vector is in the moments
        self.first = np.zeros(dim, dtype=np.float64)  # Σ c over counted slots
        self.second = np.zeros((dim, dim), dtype=np.float64)  # Σ c cᵀ
        self.count = 0
        # Largest ‖c‖ and ‖c − scale · codes‖ (the rounding left) of any vector ever stored: never lowered, so
        # the error bound stays safe.
        self.max_norm = 0.0
        self.max_residual = 0.0

    @property
    def nbytes(self) -> int:
        arrays = (self.codes, self.scale, self.colsum, self.counted, self.first, self.second)
        return sum(a.nbytes for a in arrays)

    def reserve(self, slots: int) -> None:
        """Room for slots [0, slots). Grows 4,096 columns at a time: every query reads all of it (unused
        columns included), so it is kept close to what is used; a copy every 4,096 pages is cheap."""
        have = self.codes.shape[1]
        if slots <= have:
            return
        size = max(slots, have + 4096)
        codes = np.zeros((self.dim, size), dtype=np.int8)
        codes[:, :have] = self.codes
        self.codes = codes
        self.scale = np.concatenate([self.scale, np.zeros(size - have, dtype=np.float32)])
        self.colsum = np.concatenate([self.colsum, np.zeros(size - have, dtype=np.float32)])
        self.counted = np.concatenate([self.counted, np.zeros(size - have, dtype=bool)])

    def put(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        """Store the context vectors of slots not counted yet (drop() them first when they change)."""
        if not len(slots):
            return
        assert not self.counted[slots].any(), "a slot was put twice without a drop"
        peak = np.abs(vectors).max(axis=1)
        scale = np.where(peak > 0, peak / PAGE_LEVELS, 1.0).astype(np.float32)
        codes = np.clip(np.rint(vectors / scale[:, None]), -PAGE_LEVELS, PAGE_LEVELS).astype(np.int8)
        self.codes[:, slots] = codes.T
        self.scale[slots] = scale
        self.colsum[slots] = codes.sum(axis=1, dtype=np.int64)
        self.counted[slots] = True
        self._moments(vectors, +1)
        exact = vectors.astype(np.float64)
        residual = exact - scale.astype(np.float64)[:, None] * codes
        self.max_norm = max(self.max_norm, float(np.linalg.norm(exact, axis=1).max()))
        self.max_residual = max(self.max_residual, float(np.linalg.norm(residual, axis=1).max()))

    def drop(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        """Take slots out of the moments; `vectors` must be what put() was given for them."""
        if len(slots):
            self.counted[slots] = False
            self._moments(vectors, -1)

    def _moments(self, vectors: np.ndarray, sign: int) -> None:
        shifted = vectors - self.centre
        exact = shifted.astype(np.float64)
        self.first += sign * exact.sum(axis=0)
        # Many at once (building the screen: 100k pages): float32 products summed per chunk are half the
        # work and still ~1e-7 relative; a few (every change): float64.
        square = shifted.T @ shifted if len(vectors) > 256 else exact.T @ exact
        self.second += sign * square.astype(np.float64)
        self.count += sign * len(vectors)

    def export(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """These (the counted) slots' arrays, renumbered 0..len-1, and the moments: for an index snapshot."""
        return {
            "screen_codes": np.ascontiguousarray(self.codes[:, slots]),
            "screen_scale": self.scale[slots],
            "screen_colsum": self.colsum[slots],
            "screen_first": self.first.copy(),
            "screen_second": self.second.copy(),
            "screen_centre": self.centre.copy(),
            "screen_limits": np.asarray([self.count, self.max_norm, self.max_residual], dtype=np.float64),
        }

    @classmethod
    def restore(cls, data: dict[str, np.ndarray], dots: Dots | None = None) -> DenseScreen:
        """A screen from what export() gave (slots 0..n-1, all counted). KeyError: a screen saved by an
        earlier version (its bound was of another form): build it again."""
        codes = np.asarray(data["screen_codes"], dtype=np.int8)
        limits = data["screen_limits"]
        screen = cls(codes.shape[0], data["screen_centre"], dots)
        n = codes.shape[1]
        screen.codes = np.ascontiguousarray(codes)
        screen.scale = np.asarray(data["screen_scale"], dtype=np.float32)
        screen.colsum = np.asarray(data["screen_colsum"], dtype=np.float32)
        screen.counted = np.ones(n, dtype=bool)
        screen.first = np.asarray(data["screen_first"], dtype=np.float64).copy()
        screen.second = np.asarray(data["screen_second"], dtype=np.float64).copy()
        count, screen.max_norm, screen.max_residual = (float(x) for x in limits)
        screen.count = int(count)
        if screen.count != n or len(screen.scale) != n or len(screen.colsum) != n:
            raise ValueError(f"a screen of {n} columns counts {screen.count} vectors")
        return screen

    def stats(self, query: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of query · c over the counted slots."""
        if self.count <= 0:
            return 0.0, 0.0
        q = np.asarray(query, dtype=np.float64)
        offset = float(q @ self.first) / self.count
        variance = float(q @ self.second @ q) / self.count - offset * offset
        return float(q @ self.centre.astype(np.float64)) + offset, float(np.sqrt(max(variance, 0.0)))

    def quantize_query(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        """(the query's 7-bit codes, their scale): query ≈ scale · codes."""
        q = np.asarray(query, dtype=np.float32)
        peak = float(np.abs(q).max())
        q_scale = peak / QUERY_LEVELS if peak > 0 else 1.0
        return np.clip(np.rint(q / q_scale), -QUERY_LEVELS, QUERY_LEVELS).astype(np.int8), q_scale

    def scores(self, query: np.ndarray, n: int) -> tuple[np.ndarray, float]:
        """(approximate query · c of slots [0, n), a bound on the error of every one of them).

        With q = s_q·q̂ + δq and c = s_c·ĉ + δc (the rounding left by each quantization),
        q·c − s_q·s_c·q̂·ĉ = δq·c + q·δc − δq·δc, so by Cauchy–Schwarz its size is at most
        ‖δq‖·‖c‖ + ‖q‖·‖δc‖ + ‖δq‖·‖δc‖, with the largest ‖c‖ and ‖δc‖ of any page stored."""
        q_codes, q_scale = self.quantize_query(query)
        dots = (self.dots or dot_kernel().dots)(q_codes, self.codes, self.colsum)[:n]
        approximate = dots * self.scale[:n]
        approximate *= np.float32(q_scale)
        exact_q = np.asarray(query, dtype=np.float64)
        left = float(np.linalg.norm(exact_q - q_scale * q_codes.astype(np.float64)))
        bound = left * self.max_norm + float(np.linalg.norm(exact_q)) * self.max_residual
        bound += left * self.max_residual
        return approximate, bound * 1.001 + 1e-6  # float32 rounding of the products themselves
