"""Retrieval: all short-term pages, two-stage mid-term (top-m segments, then top-k pages), persona facts.

No LLM call. Reads the user's cached state; the only store calls are the visit write (what makes a
segment hot) and, for include_archived, the slow read of the whole history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memoryos_mcp.core.context import LeftOut, build_context
from memoryos_mcp.core.dates import epoch_seconds
from memoryos_mcp.core.models import Fact, Page, ScoredFact, ScoredPage, ScoredSegment, Segment, UserProfile
from memoryos_mcp.core.pipeline import MemoryParams, rank_segments
from memoryos_mcp.core.protocols import Embedder, MemoryStore, PageIndexes
from memoryos_mcp.core.state import UserState
from memoryos_mcp.core.text import extract_keywords
from memoryos_mcp.core.weights import RetrievalWeights


@dataclass
class Retrieval:
    """Everything retrieve_memory returns, plus the assembled context text."""

    query: str
    short_term: list[Page]
    mid_term: list[ScoredPage]
    segments: list[ScoredSegment]
    user_facts: list[ScoredFact]
    assistant_traits: list[ScoredFact]
    profile: UserProfile | None
    assistant_profile: str
    context: str
    left_out: LeftOut  # what a max_tokens budget left out of all of the above


def top_facts(facts: list[Fact], query_embedding: np.ndarray, n: int) -> list[ScoredFact]:
    """The n facts most similar to the query (cosine; embeddings are unit length)."""
    usable = [f for f in facts if f.embedding is not None]
    if n <= 0 or not usable:
        return []
    matrix = np.asarray([f.embedding for f in usable], dtype=np.float32)
    scores = matrix @ np.asarray(query_embedding, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")[:n]
    return [ScoredFact(usable[i], float(scores[i])) for i in order]


def mean_direction(vectors: np.ndarray) -> np.ndarray:
    """The unit-length mean of unit vectors (one vector: itself)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 1:
        return vectors[0]
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


class Recall:
    """The retrieval side of MemoryOS over a user's cached state."""

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        params: MemoryParams,
        weights: RetrievalWeights,
        clock: Callable[[], float],
        summaries_written: Callable[[], bool] = lambda: False,
        *,
        indexes: PageIndexes,
    ) -> None:
        self.indexes = indexes  # the include_archived read indexes the archived pages too
        self.summaries_written = summaries_written  # segment summaries by a language model: worth reading
        self.store = store
        self.embedder = embedder
        self.params = params
        self.weights = weights
        self.clock = clock

    def retrieve(
        self,
        state: UserState,
        query: str,
        *,
        top_k: int | None = None,
        top_m: int | None = None,
        include_short_term: bool = True,
        include_archived: bool = False,
        window: tuple[float, float] | None = None,
        max_tokens: int | None = None,
        record_visits: bool = True,
        explain: bool = False,
    ) -> Retrieval:
        """`window`: inclusive (since, until) in seconds since the epoch; only pages dated inside it.
        `max_tokens`: the result holds what its text can show within that many tokens (core/context.py).
        `record_visits=False`: looking, not recalling — no segment is heated (a person browsing their memory).
        `explain`: each mid-term page carries the parts of its score (ScoredPage.why)."""
        top_k = top_k or self.params.top_k
        top_m = top_m or self.params.top_m
        with state.lock:
            texts = state.index.query_texts(query, self.weights)
        query_embedding = mean_direction(self.embedder.embed(texts))
        query_keywords = extract_keywords(query, limit=12)
        with state.lock:
            if include_archived:  # the whole history: reads every archived segment and its pages (slow)
                segments = self.store.list_segments(state.user_id, include_archived=True)
                index = self.indexes.new(self.weights.context_window)
                index.add(self.store.pages_of_segments(state.user_id, [s.id for s in segments]))
            else:
                segments, index = list(state.segments.values()), state.index
            by_f_score = rank_segments(segments, query_embedding, query_keywords, len(segments))
            ranked, hits = index.rank(
                query,
                query_embedding,
                [s for s, _ in by_f_score],
                [f for _, f in by_f_score],
                top_m=top_m,
                top_k=top_k,
                weights=self.weights,
                window=window,
            )
            whys = (
                index.explain(query, query_embedding, self.weights, hits) if explain else [None] * len(hits)
            )
            short_term = list(state.stm) if include_short_term else []
            if window is not None:
                short_term = [p for p in short_term if window[0] <= epoch_seconds(p.timestamp) <= window[1]]
            facts = {kind: list(items) for kind, items in state.facts.items()}
            profile = state.profile
        # Retrieval is what heats a segment: N_visit and last access move for every segment returned.
        now = self.clock()
        if record_visits and ranked:
            written = self.store.record_visits(state.user_id, [s.id for s, _ in ranked], now)
            with state.lock:
                for segment, _ in ranked:
                    n_visit, last_access = written.get(segment.id, (segment.n_visit + 1, now))
                    for copy in _same_segment(state, segment):
                        copy.n_visit = max(copy.n_visit, n_visit)
                        copy.last_access = max(copy.last_access, last_access)
        scored_segments = [
            ScoredSegment(segment=s, score=score, heat=self.params.heat(s, now)) for s, score in ranked
        ]
        mid_term = [
            ScoredPage(page=p, score=score, tier="mid_term", why=why)
            for (p, score), why in zip(hits, whys, strict=True)
        ]
        user_facts = top_facts(facts.get("user_fact", []), query_embedding, self.params.lpm_top_k)
        traits = top_facts(facts.get("assistant_trait", []), query_embedding, self.params.lpm_top_k)
        context = build_context(
            user_id=state.user_id,
            short_term=short_term,
            mid_term=mid_term,
            user_facts=user_facts,
            assistant_traits=traits,
            profile=profile,
            assistant_profile=self.params.assistant_profile,
            segments=scored_segments if self.summaries_written() else (),
            max_tokens=max_tokens,
        )
        return Retrieval(
            query=query,
            short_term=context.short_term,
            mid_term=context.mid_term,
            segments=scored_segments,
            user_facts=context.user_facts,
            assistant_traits=context.assistant_traits,
            profile=context.profile,
            assistant_profile=self.params.assistant_profile,
            context=context.text,
            left_out=context.left_out,
        )


def _same_segment(state: UserState, segment: Segment) -> list[Segment]:
    """The returned segment and the cached copy (they differ for include_archived reads)."""
    cached = state.segments.get(segment.id)
    return [segment] if cached is None or cached is segment else [segment, cached]
