"""A cheap first pass over a large index's dense scores, so that only a few pages are scored exactly.

A query's dense score of a page is the cosine of its context vector with the query (page_index.py). At
100k pages the float32 dot over all of them reads 150 MB and costs ~5 ms on 2 cores — most of a
retrieval. DenseScreen keeps every page's context vector quantized to int8 (one scale per page), column-
major so that ONNX Runtime's MatMulInteger computes all scores in ~0.8 ms (a quarter of the bytes), and
bounds the error of each approximate score. PageIndex then scores exactly every page whose approximate
score could put it among the results, so the ranking is the exact one.

It also keeps the first and second moments of the live context vectors (float64, about a fixed centre so
that pages all alike lose no precision), which give the exact mean and standard deviation of the dense
scores over all pages (the z-score) from the query alone: with d = c − centre, mean = q·centre + q·Σd / n,
variance = qᵀ(Σ d dᵀ)q / n − (q·Σd / n)².
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable

import numpy as np

_ZERO_POINT = 128  # the query is quantized to uint8 around this (MatMulInteger's fast path is uint8 × int8)


@functools.cache
def _matmul_integer() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(1, dim) uint8 × (dim, n) int8 → (n,) int32 on ONNX Runtime, one call at a time.

    No zero-point input: with one, ONNX Runtime 1.32 takes a path 3x slower; the caller corrects for 128."""
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

    def run(query: np.ndarray, pages: np.ndarray) -> np.ndarray:
        with lock:  # one session: two retrievals at once take turns for ~1 ms
            return np.asarray(session.run(None, {"query": query, "pages": pages})[0][0])

    return run


class DenseScreen:
    """Int8 copies of the live pages' context vectors by slot, with their moments. Not thread-safe."""

    def __init__(self, dim: int, centre: np.ndarray) -> None:
        self.dim = dim
        self.centre = np.asarray(centre, dtype=np.float32)  # near the vectors' mean; fixed for life
        self.codes = np.zeros((dim, 0), dtype=np.int8)  # column per slot
        self.scale = np.zeros(0, dtype=np.float32)  # vector ≈ scale · codes
        # 128 · Σ codes of a column, what the query's zero point adds to its dot (exact in float32: < 2^24)
        self.offset = np.zeros(0, dtype=np.float32)
        self.counted = np.zeros(0, dtype=bool)  # slots whose vector is in the moments
        self.first = np.zeros(dim, dtype=np.float64)  # Σ c over counted slots
        self.second = np.zeros((dim, dim), dtype=np.float64)  # Σ c cᵀ
        self.count = 0
        # Largest per-page scale and L1 norm ever stored (never lowered: the error bound stays safe).
        self.max_scale = 0.0
        self.max_l1 = 0.0

    @property
    def nbytes(self) -> int:
        arrays = (self.codes, self.scale, self.offset, self.counted, self.first, self.second)
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
        self.offset = np.concatenate([self.offset, np.zeros(size - have, dtype=np.float32)])
        self.counted = np.concatenate([self.counted, np.zeros(size - have, dtype=bool)])

    def put(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        """Store the context vectors of slots not counted yet (drop() them first when they change)."""
        if not len(slots):
            return
        assert not self.counted[slots].any(), "a slot was put twice without a drop"
        peak = np.abs(vectors).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
        self.codes[:, slots] = codes.T
        self.scale[slots] = scale
        self.offset[slots] = _ZERO_POINT * codes.sum(axis=1, dtype=np.int64)
        self.counted[slots] = True
        self._moments(vectors, +1)
        self.max_scale = max(self.max_scale, float(scale.max()))
        self.max_l1 = max(self.max_l1, float(np.abs(vectors).sum(axis=1).max()))

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
            "screen_offset": self.offset[slots],
            "screen_first": self.first.copy(),
            "screen_second": self.second.copy(),
            "screen_centre": self.centre.copy(),
            "screen_bounds": np.asarray([self.count, self.max_scale, self.max_l1], dtype=np.float64),
        }

    @classmethod
    def restore(cls, data: dict[str, np.ndarray]) -> DenseScreen:
        """A screen from what export() gave (slots 0..n-1, all counted)."""
        codes = np.asarray(data["screen_codes"], dtype=np.int8)
        screen = cls(codes.shape[0], data["screen_centre"])
        n = codes.shape[1]
        screen.codes = np.ascontiguousarray(codes)
        screen.scale = np.asarray(data["screen_scale"], dtype=np.float32)
        screen.offset = np.asarray(data["screen_offset"], dtype=np.float32)
        screen.counted = np.ones(n, dtype=bool)
        screen.first = np.asarray(data["screen_first"], dtype=np.float64).copy()
        screen.second = np.asarray(data["screen_second"], dtype=np.float64).copy()
        count, screen.max_scale, screen.max_l1 = (float(x) for x in data["screen_bounds"])
        screen.count = int(count)
        if screen.count != n or len(screen.scale) != n or len(screen.offset) != n:
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

    def scores(self, query: np.ndarray, n: int) -> tuple[np.ndarray, float]:
        """(approximate query · c of slots [0, n), a bound on the error of every one of them).

        With q = s_q·q̂ + δq and c = s_c·ĉ + δc (rounding: |δ| ≤ s/2 per component),
        |q·c − s_q·s_c·q̂·ĉ| ≤ (s_c·‖q‖₁ + s_q·‖c‖₁)/2 + dim·s_q·s_c/4."""
        q = np.asarray(query, dtype=np.float32)
        peak = float(np.abs(q).max())
        q_scale = peak / 127.0 if peak > 0 else 1.0
        q_codes = np.clip(np.rint(q / q_scale), -127, 127).astype(np.int16) + _ZERO_POINT
        dots = _matmul_integer()(q_codes.astype(np.uint8)[None, :], self.codes)[:n]
        approximate = dots.astype(np.float32)  # exact: |dots| < 255 · 127 · 384 < 2^24
        approximate -= self.offset[:n]
        approximate *= self.scale[:n]
        approximate *= np.float32(q_scale)
        bound = (self.max_scale * float(np.abs(q).sum()) + q_scale * self.max_l1) / 2 + (
            self.dim * q_scale * self.max_scale / 4
        )
        return approximate, bound * 1.001 + 1e-6  # float32 rounding of the product itself
