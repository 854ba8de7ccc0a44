"""Who said it: a question about one person is answered by what that person said.

A page holds two speakers' words (user_input and agent_response); its embedding mixes them, so "What does
Melanie like to paint?" meets Caroline's talk of painting as well as Melanie's. When the page's two sides
are also embedded on their own, the top pages can be re-ordered by how close the named person's side is to
the query. Which side a person is on is read from how the other side addresses them ("Thanks, Mel!").

Measured on LoCoMo dev, LLM-free (bench/locomo_loo.py, candidate "speaker side rerank"): it costs two more
vectors per page (3 KB in float32, 1.5 KB in float16) and two more texts to embed per page, so the server
does not store them yet; this module is the scoring, ready for when it does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from memoryos_mcp.index.cues import vocatives
from memoryos_mcp.index.terms import zscore

USER, AGENT = "user", "agent"
SIDE_MAJORITY = 3  # a name is on a side when the other side addresses it this many times more often
RERANK_DEPTH = 50  # pages of the ranking that are re-ordered
SIDE_WEIGHT = 0.25  # share of the named side's standardised cosine added to a page's score


def speaker_sides(exchanges: Iterable[tuple[str, str]], names: Iterable[str]) -> dict[str, str]:
    """The side (USER or AGENT) each of `names` speaks on, from (user_input, agent_response) pairs: the
    agent addresses the user by name and the other way round. Names addressed on both sides are left out."""
    addressed: Counter[tuple[str, str]] = Counter()
    for user_input, agent_response in exchanges:
        for name in vocatives(agent_response):
            addressed[name, USER] += 1
        for name in vocatives(user_input):
            addressed[name, AGENT] += 1
    sides = {}
    for name in names:
        user, agent = addressed[name, USER], addressed[name, AGENT]
        if max(user, agent) >= SIDE_MAJORITY * max(1, min(user, agent)):
            sides[name] = USER if user > agent else AGENT
    return sides


def named_side(query: str, sides: Mapping[str, str]) -> str | None:
    """The one side the people a query names speak on; None when it names none, or people on both sides."""
    found = {side for name, side in sides.items() if re.search(rf"\b{re.escape(name)}\b", query)}
    return found.pop() if len(found) == 1 else None


def rerank_by_side(
    scores: np.ndarray, side_vectors: np.ndarray, query_embedding: np.ndarray, weight: float = SIDE_WEIGHT
) -> np.ndarray:
    """Order of the candidates (best first) by score + weight·z(cosine of their named side with the query).

    `scores`: the candidates' page scores (standardised over all pages); `side_vectors`: each candidate's
    named-side embedding (unit length; zeros for a side that said nothing)."""
    cosines = np.asarray(side_vectors, dtype=np.float32) @ np.asarray(query_embedding, dtype=np.float32)
    combined = np.asarray(scores, dtype=np.float64) + weight * zscore(cosines.astype(np.float64))
    return np.argsort(-combined, kind="stable")
