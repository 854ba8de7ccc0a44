"""Test doubles: a deterministic embedder, a free port. (The fake LLM server lives in tests/fake_openai.py.)"""

from __future__ import annotations

import hashlib
import math
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from memoryos_mcp.core.models import Page
from memoryos_mcp.core.text import content_tokens


class HashEmbedder:
    """Bag of hashed content words → a unit vector: texts sharing words are similar, deterministically.

    Records every text it embedded, so tests can check what was (or was not) embedded.
    """

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.asarray([self._one(t) for t in texts], dtype=np.float32).reshape(len(texts), self.dimension)

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        tokens = content_tokens(text) or ["<empty>"]
        for token in tokens:
            digest = hashlib.md5(token.encode()).digest()
            vector[digest[0] % self.dimension] += 1.0 if digest[1] % 2 else -1.0
            vector[digest[2] % self.dimension] += 0.5
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mid_term_pages(store: Any, user_id: str) -> list[Page]:
    """Every mid-term page record of a user, straight from a ChromaStore (a scan: tests only)."""
    got = store.mtm.get(where={"user_id": user_id}, include=["documents", "metadatas", "embeddings"])
    pages = [
        store._page(pid, doc, meta, None)
        for pid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        if meta.get("kind") == "page"
    ]
    return sorted(pages, key=lambda p: (p.added_at, p.id))
