"""Growable arrays the page index keeps its pages in: postings of a term, blocks of vectors, runs."""

from __future__ import annotations

import bisect

import numpy as np


class Postings:
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


class Rows:
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


def runs(offsets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the runs offsets[i] .. offsets[i] + counts[i] one after the other, where each run
    starts among them): how a slot's terms or sentences are read out of their flat buffer."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    positions = np.repeat(offsets - starts, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    return positions, starts
