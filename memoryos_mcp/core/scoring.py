"""The paper's scoring functions: F_score for segment matching, heat for promotion and eviction."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from memoryos_mcp.core.models import Segment, Vector


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cosine similarity; 0.0 when either vector is zero."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(va @ vb) / (na * nb)


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|K_a ∩ K_b| / |K_a ∪ K_b|; 0.0 when both sets are empty."""
    sa = a if isinstance(a, frozenset | set) else set(a)
    sb = b if isinstance(b, frozenset | set) else set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def f_scores(segments: Sequence[Segment], embedding: Vector, keywords: Sequence[str]) -> np.ndarray:
    """F_score = cos(e_s, e) + Jaccard(K_s, K) of every segment against a query or topic: semantic plus lexical
    overlap (the paper's segment matching)."""
    if not segments:
        return np.zeros(0)
    matrix = np.asarray([s.embedding for s in segments], dtype=np.float32)
    q = np.asarray(embedding, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * (float(np.linalg.norm(q)) or 1.0)
    cosines = (matrix @ q) / np.where(norms == 0, 1.0, norms)
    wanted = frozenset(keywords)
    overlap = [jaccard(s.keyword_set, wanted) for s in segments]
    return cosines.astype(np.float64) + np.asarray(overlap, dtype=np.float64)


def heat(
    segment: Segment,
    now: float,
    *,
    alpha: float,
    beta: float,
    gamma: float,
    mu: float,
) -> float:
    """heat = α·N_visit + β·L_interaction + γ·exp(−Δt/μ), Δt = seconds since the segment's last access."""
    delta_t = max(0.0, now - segment.last_access)
    return alpha * segment.n_visit + beta * segment.l_interaction + gamma * math.exp(-delta_t / mu)
