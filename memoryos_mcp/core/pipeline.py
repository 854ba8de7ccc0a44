"""The update pipeline: short-term FIFO, STM→MTM (dialogue chains, topics, F_score merge), archiving.

It works on a Draft (copies of one user's state) and records what to write; core.memory commits it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from memoryos_mcp.core.errors import LLMAnswerUnusable
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.models import Page, Segment, Vector
from memoryos_mcp.core.protocols import ChainHead, Embedder, LLMUsage, MemoryAnalyzer
from memoryos_mcp.core.scoring import f_scores, heat
from memoryos_mcp.core.state import Draft
from memoryos_mcp.core.text import page_text, topic_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryParams:
    """The paper's parameters (defaults as published) plus our few additions."""

    stm_capacity: int = 7  # short-term capacity in pages
    stm_evict_batch: int = 3  # pages moved together when STM overflows (one analysis per batch)
    mtm_capacity: int = 200  # active segments per user
    theta: float = 0.6  # θ, F_score merge threshold
    tau: float = 5.0  # τ, heat promotion threshold
    alpha: float = 1.0  # α, weight of N_visit
    beta: float = 1.0  # β, weight of L_interaction
    gamma: float = 1.0  # γ, weight of recency
    mu: float = 1e7  # μ, recency time constant (s)
    top_m: int = 5  # m, segments in retrieval stage one
    top_k: int = 10  # k, mid-term pages returned
    lpm_capacity: int = 100  # user facts / assistant traits kept, FIFO
    lpm_top_k: int = 10  # facts and traits retrieved
    fact_duplicate_cosine: float = 0.92  # a new fact this close to a kept one is a near-duplicate
    max_deferred_pages: int = (
        6  # STM overflow allowed to wait for an unreachable LLM before the local fallback
    )
    chain_threshold: float = (
        0.2  # local analysis: cosine to the previous page that continues a chain (LoCoMo LOO)
    )
    assistant_profile: str = ""

    def heat(self, segment: Segment, now: float) -> float:
        return heat(segment, now, alpha=self.alpha, beta=self.beta, gamma=self.gamma, mu=self.mu)


@dataclass
class AddResult:
    """A stored page and what the update pipeline did because of it."""

    page: Page
    moved_to_mid_term: list[str] = field(default_factory=list)
    segments_created: list[str] = field(default_factory=list)
    segments_merged: list[str] = field(default_factory=list)
    segments_archived: list[str] = field(default_factory=list)
    segments_promoted: list[str] = field(default_factory=list)
    promotion_pending: list[str] = field(default_factory=list)
    facts_added: int = 0
    facts_dropped: list[str] = field(default_factory=list)
    usage: LLMUsage = field(default_factory=LLMUsage)
    notes: list[str] = field(default_factory=list)
    already_stored: bool = False  # an add with a known idempotency key: nothing was stored


def rank_segments(
    segments: Sequence[Segment], embedding: Vector, keywords: Sequence[str], m: int
) -> list[tuple[Segment, float]]:
    """The top-m segments by F_score, best first (ties keep the given order)."""
    scores = f_scores(segments, embedding, keywords)
    order = np.argsort(-scores, kind="stable")[:m]
    return [(segments[i], float(scores[i])) for i in order]


def best_segment_match(
    segments: Sequence[Segment], embedding: Vector, keywords: Sequence[str], theta: float
) -> Segment | None:
    """The segment a topic merges into: best F_score, if it exceeds θ."""
    ranked = rank_segments(segments, embedding, keywords, 1)
    return ranked[0][0] if ranked and ranked[0][1] > theta else None


def centroid(parts: Sequence[tuple[Vector, float]]) -> Vector:
    """Unit-length weighted mean of vectors."""
    total = np.sum([np.asarray(v, dtype=np.float64) * w for v, w in parts], axis=0)
    norm = float(np.linalg.norm(total))
    return (total / norm if norm else total).astype(np.float32)


class UpdatePipeline:
    """STM→MTM for one user's draft: FIFO eviction in batches, chains, topics, segments, archiving."""

    def __init__(
        self,
        embedder: Embedder,
        analyzer: MemoryAnalyzer,
        params: MemoryParams,
        clock: Callable[[], float],
    ) -> None:
        self.embedder = embedder
        self.analyzer = analyzer
        self.params = params
        self.clock = clock
        # What runs when the analyzer (an LLM) fails and the work cannot wait: extractive, always works.
        self.fallback = LocalAnalyzer(chain_threshold=params.chain_threshold)

    def add_pages(self, draft: Draft, pages: Sequence[Page], result: AddResult) -> None:
        """Append pages to short-term memory one by one, moving the overflow on as each arrives."""
        for page in pages:
            draft.stm.append(page)
            self._move_overflow(draft, result)
            self._archive_cold_segments(draft, result)

    def _move_overflow(self, draft: Draft, result: AddResult) -> None:
        overflow = len(draft.stm) - self.params.stm_capacity
        if overflow <= 0:
            return
        evicted = draft.stm[: max(overflow, self.params.stm_evict_batch)]
        # A crash between "write to MTM" and "delete from STM" leaves a copy in both; finish the move.
        repaired = [p for p in evicted if p.id in draft.in_both_tiers]
        if repaired:
            self._leave_stm(draft, repaired)
            evicted = [p for p in evicted if p.id not in draft.in_both_tiers]
            result.notes.append(f"repaired {len(repaired)} page(s) left in both tiers by an interrupted move")
        if not evicted:
            return
        # While the LLM is failing, pages wait in STM (durable) for a later call to retry the analysis —
        # but only up to a bound: past it they go on with the local analysis so STM stays small.
        may_defer = overflow <= self.params.max_deferred_pages
        if self.store_in_mid_term(draft, evicted, result, may_defer=may_defer):
            self._leave_stm(draft, evicted)
            result.moved_to_mid_term.extend(p.id for p in evicted)

    @staticmethod
    def _leave_stm(draft: Draft, pages: Sequence[Page]) -> None:
        gone = {p.id for p in pages}
        draft.stm = [p for p in draft.stm if p.id not in gone]
        draft.stm_deleted |= gone & draft.stm_durable
        draft.in_both_tiers -= gone

    def store_in_mid_term(
        self, draft: Draft, pages: Sequence[Page], result: AddResult, *, may_defer: bool = False
    ) -> bool:
        """Chain the pages, group them into topics and merge each topic into a segment (θ) or a new one.

        Returns False when the analysis failed and `may_defer` let the pages wait for a later call.
        """
        head = draft.chain_head
        analyzer: MemoryAnalyzer = self.analyzer
        try:
            analysis = analyzer.analyze_batch(pages, head, result.usage)
        except Exception as exc:
            result.usage.failures += 1
            # An unreachable model may be back on the next call; one that answered unusably would most
            # likely answer the same again, so waiting for it only costs calls.
            if may_defer and not isinstance(exc, LLMAnswerUnusable):
                result.notes.append(f"mid-term analysis deferred to a later call: {exc}")
                return False
            result.notes.append(f"mid-term analysis used the local fallback: {exc}")
            analyzer = self.fallback
            analysis = analyzer.analyze_batch(pages, head, result.usage)
        moved = [_copy_page(p) for p in pages]  # the short-term copies stay as they are until the commit
        chain_id = head.chain_id if head else ""
        for page, linked, summary in zip(moved, analysis.continuous, analysis.chain_summaries, strict=True):
            if not linked or not chain_id:
                chain_id = f"ch_{uuid.uuid4().hex[:16]}"
            page.chain_id = chain_id
            page.chain_summary = summary

        now = self.clock()
        # A topic without its own vector (an LLM's summary) is embedded; the local analysis gives the
        # centroid of its pages, which carries what an extractive summary of them would, for free.
        unembedded = [t for t in analysis.topics if t.embedding is None]
        if unembedded:
            for topic, vector in zip(
                unembedded,
                self.embedder.embed([topic_text(t.summary, t.keywords) for t in unembedded]),
                strict=True,
            ):
                topic.embedding = vector
        active = list(draft.segments.values())
        merged: dict[str, list[str]] = {}  # segment id -> summaries of the topics merged into it
        centroids: dict[str, list[tuple[Vector, float]]] = {}
        for topic in analysis.topics:
            topic_pages = [moved[i] for i in topic.page_indexes]
            if not topic_pages:
                continue
            assert topic.embedding is not None
            segment = best_segment_match(active, topic.embedding, topic.keywords, self.params.theta)
            if segment is None:
                segment = Segment(
                    id=f"seg_{uuid.uuid4().hex[:16]}",
                    user_id=draft.user_id,
                    summary=topic.summary,
                    keyword_counts=dict(Counter(topic.keywords)),
                    created_at=now,
                    last_access=now,
                    embedding=np.asarray(topic.embedding, dtype=np.float32),
                )
                draft.add_segment(segment)
                active.append(segment)
                result.segments_created.append(segment.id)
            else:
                parts = centroids.setdefault(segment.id, [(segment.embedding, float(segment.page_count))])
                parts.append((topic.embedding, float(len(topic_pages))))
                merged.setdefault(segment.id, []).append(topic.summary)
                segment.add_keywords(topic.keywords)
                draft.touch(segment.id)
                if segment.id not in result.segments_merged and segment.id not in result.segments_created:
                    result.segments_merged.append(segment.id)
            segment.l_interaction += len(topic_pages)
            segment.page_count += len(topic_pages)
            for page in topic_pages:
                page.segment_id = segment.id
        if merged:
            self._refresh_merged(draft, merged, centroids, analyzer, result)
        draft.to_mid_term.extend(p for p in moved if p.segment_id)
        draft.mid_term_pages += sum(1 for p in moved if p.segment_id)
        last = moved[-1]
        assert last.embedding is not None
        draft.chain_head = ChainHead(
            user_id=draft.user_id,
            chain_id=last.chain_id,
            chain_summary=last.chain_summary,
            last_page_id=last.id,
            last_page_text=page_text(last),
            embedding=np.asarray(last.embedding, dtype=np.float32),
        )
        draft.head_changed = True
        return True

    def _refresh_merged(
        self,
        draft: Draft,
        merged: dict[str, list[str]],
        centroids: dict[str, list[tuple[Vector, float]]],
        analyzer: MemoryAnalyzer,
        result: AddResult,
    ) -> None:
        """One refresh of every segment that received topics in this batch (summary, keywords, e_s)."""
        work = [(draft.segment(sid), summaries) for sid, summaries in merged.items()]
        try:
            refreshed = analyzer.merge_segments(work, result.usage)
        except Exception as exc:
            result.usage.failures += 1
            result.notes.append(f"segment refresh used the local fallback: {exc}")
            analyzer = self.fallback
            refreshed = analyzer.merge_segments(work, result.usage)
        for (segment, _), (summary, keywords) in zip(work, refreshed, strict=True):
            segment.summary = summary
            segment.add_keywords(keywords)
        if analyzer.writes_summaries:  # the paper: e_s is the embedding of the refreshed summary
            vectors = self.embedder.embed([topic_text(s.summary, s.keywords) for s, _ in work])
            for (segment, _), vector in zip(work, vectors, strict=True):
                segment.embedding = vector
        else:  # an extractive summary says what the pages say: e_s is the centroid of what merged
            for segment, _ in work:
                segment.embedding = centroid(centroids[segment.id])

    def _archive_cold_segments(self, draft: Draft, result: AddResult) -> None:
        """Above mtm_capacity, the lowest-heat segments are archived: kept, but out of retrieval."""
        excess = len(draft.segments) - self.params.mtm_capacity
        if excess <= 0:
            return
        now = self.clock()
        coldest = sorted(draft.segments.values(), key=lambda s: (self.params.heat(s, now), s.last_access))[
            :excess
        ]
        for segment in coldest:
            segment.archived = True
            del draft.segments[segment.id]
            draft.touch(segment.id)
            draft.archived.append(segment)
            draft.archived_segments += 1
        result.segments_archived.extend(s.id for s in coldest)


def _copy_page(page: Page) -> Page:
    return replace(page, metadata=dict(page.metadata))
