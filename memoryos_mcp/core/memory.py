"""MemoryOS: the three tiers and the update and retrieval pipelines over a MemoryStore.

Storage, embedding and the language model are passed in (ports in core.protocols), so this
module is the paper's algorithm and nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from memoryos_mcp.core.context import build_context
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.models import (
    Fact,
    FactKind,
    Page,
    Scalar,
    ScoredFact,
    ScoredPage,
    ScoredSegment,
    Segment,
    TraitLevel,
    UserProfile,
)
from memoryos_mcp.core.protocols import (
    ChainHead,
    Embedder,
    LLMUsage,
    MemoryAnalyzer,
    MemoryStore,
    PersonaUpdate,
)
from memoryos_mcp.core.retrieval import PageIndex, RetrievalWeights, rank_two_stage
from memoryos_mcp.core.scoring import heat, jaccard
from memoryos_mcp.core.text import exchange_text, extract_keywords, page_text, topic_text

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
    max_deferred_pages: int = 6  # STM overflow allowed to wait for a failing LLM before the local fallback
    chain_threshold: float = 0.45  # local analysis: cosine to the previous page that continues a chain
    assistant_profile: str = ""


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


def rank_segments(
    segments: Sequence[Segment], query_embedding: Sequence[float], query_keywords: Sequence[str], m: int
) -> list[tuple[Segment, float]]:
    """The top-m segments by F_score = cos + Jaccard against a query or topic (core.scoring.f_score, vectorised)."""
    if not segments:
        return []
    matrix = np.asarray([s.embedding for s in segments], dtype=np.float32)
    q = np.asarray(query_embedding, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(q) or 1.0)
    cosines = matrix @ q / np.where(norms == 0, 1.0, norms)
    scored = [
        (segment, float(cos) + jaccard(segment.keywords, query_keywords))
        for segment, cos in zip(segments, cosines, strict=True)
    ]
    scored.sort(key=lambda pair: -pair[1])
    return scored[:m]


def best_segment_match(
    segments: Sequence[Segment], embedding: Sequence[float], keywords: Sequence[str], theta: float
) -> Segment | None:
    """The segment a topic merges into: best F_score, if it exceeds θ."""
    ranked = rank_segments(segments, embedding, keywords, 1)
    return ranked[0][0] if ranked and ranked[0][1] > theta else None


class MemoryOS:
    """The MemoryOS update and retrieval pipelines.

    Callers serialise add_page calls of one user, and retrieve calls of one user; an add and a retrieve of
    the same user may overlap: retrieval writes only N_visit and last access, which adds never write back.
    """

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        analyzer: MemoryAnalyzer,
        params: MemoryParams | None = None,
        clock: Callable[[], float] = time.time,
        weights: RetrievalWeights | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.analyzer = analyzer
        self.params = params or MemoryParams()
        self.clock = clock
        # What runs when the analyzer (an LLM) fails and the work cannot wait: extractive, always works.
        self.fallback = LocalAnalyzer(chain_threshold=self.params.chain_threshold)
        self.weights = weights or RetrievalWeights()
        self._page_indexes: dict[str, PageIndex] = {}
        self._last_added_at = 0

    # ------------------------------------------------------------------ update pipeline

    def add_page(
        self,
        user_id: str,
        user_input: str,
        agent_response: str,
        timestamp: str,
        metadata: dict[str, Scalar] | None = None,
        deadline: float | None = None,
    ) -> AddResult:
        """Store a page in short-term memory (durably, first), then run STM→MTM and MTM→LPM."""
        page = Page(
            id=f"pg_{uuid.uuid4().hex}",
            user_id=user_id,
            user_input=user_input,
            agent_response=agent_response,
            timestamp=timestamp,
            added_at=self._next_added_at(),
            metadata=dict(metadata or {}),
        )
        page.embedding = self.embedder.embed([exchange_text(page)])[0]
        self.store.add_stm_page(page)
        result = AddResult(page=page)
        result.usage.deadline = deadline
        self._move_overflow_to_mid_term(user_id, result)
        # One read of the segments serves both archiving and the promotion check.
        segments = self.store.list_segments(user_id)
        segments = self._archive_cold_segments(segments, result)
        self.promote_hot_segments(segments, result, deadline)
        return result

    def _next_added_at(self) -> int:
        # Strictly increasing even when two pages arrive within one clock tick: it orders the FIFO.
        now = int(self.clock() * 1e9)
        self._last_added_at = max(now, self._last_added_at + 1)
        return self._last_added_at

    def _move_overflow_to_mid_term(self, user_id: str, result: AddResult) -> None:
        stm = sorted(self.store.list_stm_pages(user_id), key=lambda p: p.added_at)
        overflow = len(stm) - self.params.stm_capacity
        if overflow <= 0:
            return
        evicted = stm[: min(len(stm), max(overflow, self.params.stm_evict_batch))]
        # A crash between "write to MTM" and "delete from STM" leaves a copy in both; finish the move.
        already = self.store.existing_mtm_page_ids(user_id, [p.id for p in evicted])
        if already:
            self.store.delete_stm_pages(user_id, sorted(already))
            evicted = [p for p in evicted if p.id not in already]
            result.notes.append(f"repaired {len(already)} page(s) left in both tiers by an interrupted move")
        if not evicted:
            return
        # While the LLM is failing, pages wait in STM (durable) for a later call to retry the analysis —
        # but only up to a bound: past it they go on with the local analysis so STM stays small.
        may_defer = overflow <= self.params.max_deferred_pages
        if not self.store_in_mid_term(user_id, evicted, result, may_defer=may_defer):
            return
        self.store.delete_stm_pages(user_id, [p.id for p in evicted])
        result.moved_to_mid_term.extend(p.id for p in evicted)

    def store_in_mid_term(self, user_id: str, pages: Sequence[Page], result: AddResult, *, may_defer: bool = False) -> bool:
        """Chain the pages, group them into topics and merge each topic into a segment (θ) or a new one.

        Returns False when the analysis failed and `may_defer` let the pages wait for a later call.
        """
        head = self.store.get_chain_head(user_id)
        try:
            analysis = self.analyzer.analyze_batch(pages, head, result.usage)
        except Exception as exc:
            result.usage.failures += 1
            if may_defer:
                result.notes.append(f"mid-term analysis deferred to a later call: {exc}")
                return False
            result.notes.append(f"mid-term analysis used the local fallback: {exc}")
            analysis = self.fallback.analyze_batch(pages, head, result.usage)
        chain_id = head.chain_id if head else ""
        for page, linked, summary in zip(pages, analysis.continuous, analysis.chain_summaries, strict=True):
            if not linked or not chain_id:
                chain_id = f"ch_{uuid.uuid4().hex[:16]}"
            page.chain_id = chain_id
            page.chain_summary = summary

        segments = self.store.list_segments(user_id)
        now = self.clock()
        topic_texts = [topic_text(t.summary, t.keywords) for t in analysis.topics]
        topic_embeddings = self.embedder.embed(topic_texts) if topic_texts else []
        touched: dict[str, Segment] = {}
        merged: dict[str, list[str]] = {}  # segment id -> summaries of the topics merged into it
        members: dict[str, list[Page]] = {}
        for topic, embedding in zip(analysis.topics, topic_embeddings, strict=True):
            topic_pages = [pages[i] for i in topic.page_indexes]
            if not topic_pages:
                continue
            segment = best_segment_match(segments, embedding, topic.keywords, self.params.theta)
            if segment is None:
                segment = Segment(
                    id=f"seg_{uuid.uuid4().hex[:16]}",
                    user_id=user_id,
                    summary=topic.summary,
                    keyword_counts=dict(Counter(topic.keywords)),
                    created_at=now,
                    last_access=now,
                    embedding=embedding,
                )
                segments.append(segment)
                result.segments_created.append(segment.id)
            else:
                merged.setdefault(segment.id, []).append(topic.summary)
                segment.add_keywords(topic.keywords)
                if segment.id not in result.segments_merged and segment.id not in result.segments_created:
                    result.segments_merged.append(segment.id)
            segment.l_interaction += len(topic_pages)
            segment.page_count += len(topic_pages)
            for page in topic_pages:
                page.segment_id = segment.id
            touched[segment.id] = segment
            members.setdefault(segment.id, []).extend(topic_pages)

        if merged:
            self._refresh_merged(touched, merged, result)
        # Destination first: segments, then their pages; the caller deletes the STM copies last.
        created = set(result.segments_created)
        self.store.upsert_segments([s for s in touched.values() if s.id in created])
        self.store.update_segments([s for s in touched.values() if s.id not in created])
        self.store.upsert_mtm_pages([p for group in members.values() for p in group])
        last = pages[-1]
        assert last.embedding is not None
        self.store.put_chain_head(
            ChainHead(
                user_id=user_id,
                chain_id=last.chain_id,
                chain_summary=last.chain_summary,
                last_page_id=last.id,
                last_page_text=page_text(last),
                embedding=last.embedding,
            )
        )
        return True

    def _refresh_merged(self, touched: dict[str, Segment], merged: dict[str, list[str]], result: AddResult) -> None:
        """One refresh of every segment that received topics in this batch (summary, keywords, embedding)."""
        work = [(touched[sid], summaries) for sid, summaries in merged.items()]
        try:
            refreshed = self.analyzer.merge_segments(work, result.usage)
        except Exception as exc:
            result.usage.failures += 1
            result.notes.append(f"segment refresh used the local fallback: {exc}")
            refreshed = self.fallback.merge_segments(work, result.usage)
        for (segment, _), (summary, keywords) in zip(work, refreshed, strict=True):
            segment.summary = summary
            segment.add_keywords(keywords)
        vectors = self.embedder.embed([topic_text(s.summary, s.keywords) for s, _ in work])
        for (segment, _), vector in zip(work, vectors, strict=True):
            segment.embedding = vector

    def page_index(self, user_id: str) -> PageIndex:
        """The user's mid-term pages ready for scoring; rebuilt only when the set of pages changed.

        Checking the ids each time keeps the cache right even when another replica writes to a shared
        Chroma server; only pages not seen before are fetched.
        """
        ids = self.store.mtm_page_ids(user_id)
        cached = self._page_indexes.get(user_id)
        if cached is not None and len(cached) == len(ids) and set(cached.ids) == set(ids):
            return cached
        known = {p.id: p for p in cached.pages} if cached is not None else {}
        missing = [pid for pid in ids if pid not in known]
        known.update((p.id, p) for p in self.store.get_mtm_pages_by_id(user_id, missing))
        pages = [known[pid] for pid in ids if pid in known]
        index = PageIndex(pages, context_window=self.weights.context_window, previous=cached)
        self._page_indexes[user_id] = index
        return index

    def heat_of(self, segment: Segment, now: float | None = None) -> float:
        p = self.params
        return heat(segment, self.clock() if now is None else now, alpha=p.alpha, beta=p.beta, gamma=p.gamma, mu=p.mu)

    def _archive_cold_segments(self, segments: list[Segment], result: AddResult) -> list[Segment]:
        """Above mtm_capacity, the lowest-heat segments are archived: kept, but out of retrieval.

        Returns the segments that stay active.
        """
        excess = len(segments) - self.params.mtm_capacity
        if excess <= 0:
            return segments
        now = self.clock()
        coldest = sorted(segments, key=lambda s: (self.heat_of(s, now), s.last_access))[:excess]
        for segment in coldest:
            segment.archived = True
        self.store.update_segments(coldest)
        result.segments_archived.extend(s.id for s in coldest)
        return [s for s in segments if not s.archived]

    # ------------------------------------------------------------------ promotion MTM → LPM

    def promote_hot_segments(
        self, segments: Sequence[Segment], result: AddResult, deadline: float | None = None
    ) -> None:
        """Every segment with heat ≥ τ has its unanalysed pages turned into profile, facts and traits."""
        now = self.clock()
        hot = sorted(
            (s for s in segments if s.l_interaction > 0 and self.heat_of(s, now) >= self.params.tau),
            key=lambda s: -self.heat_of(s, now),
        )
        if not hot:
            return
        if not self.analyzer.can_extract_persona:
            result.promotion_pending.extend(s.id for s in hot)
            return
        for i, segment in enumerate(hot):
            if deadline is not None and time.monotonic() >= deadline:
                result.promotion_pending.extend(s.id for s in hot[i:])
                result.notes.append("time budget reached; remaining promotions run on a later call")
                return
            if not self._promote(segment, result):
                result.promotion_pending.extend(s.id for s in hot[i:])
                return
            result.segments_promoted.append(segment.id)

    def _promote(self, segment: Segment, result: AddResult) -> bool:
        pages = self.store.get_mtm_pages(segment.user_id, [segment.id], analyzed=False)
        if pages:
            profile = self.store.get_profile(segment.user_id) or UserProfile(user_id=segment.user_id)
            try:
                update = self.analyzer.extract_persona(profile, pages, result.usage)
            except Exception as exc:  # the adapter logs; the segment stays hot and is retried later
                result.usage.failures += 1
                result.notes.append(f"promotion of {segment.id} deferred: {exc}")
                return False
            self._merge_persona(profile, update, segment, result)
            for page in pages:
                page.analyzed = True
            self.store.upsert_mtm_pages(pages)
        # L_interaction counts pages since the last promotion (paper), so it restarts here.
        segment.l_interaction = 0
        self.store.update_segments([segment])
        return True

    def _merge_persona(self, profile: UserProfile, update: PersonaUpdate, segment: Segment, result: AddResult) -> None:
        changed = False
        for key, value in update.static.items():
            if key.strip() and value.strip() and profile.static.get(key) != value.strip():
                profile.static[key.strip()] = value.strip()
                changed = True
        for group, dims in update.traits.items():
            for dim, (level, evidence) in dims.items():
                if level in ("High", "Medium", "Low") and dim.strip():
                    profile.traits.setdefault(group, {})[dim.strip()] = TraitLevel(level=level, evidence=evidence)
                    changed = True
        # An empty or degenerate answer never overwrites a good profile: only non-empty values were applied.
        if changed:
            profile.updated_at = self.clock()
            self.store.put_profile(profile, self.embedder.embed([profile_text(profile)])[0])
        self._add_facts(segment, "user_fact", update.user_facts, result)
        self._add_facts(segment, "assistant_trait", update.assistant_traits, result)

    def _add_facts(self, segment: Segment, kind: FactKind, texts: Sequence[str], result: AddResult) -> None:
        texts = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
        if not texts:
            return
        existing = self.store.list_facts(segment.user_id, kind)
        embeddings = self.embedder.embed(texts)
        kept_vectors = [np.asarray(f.embedding, dtype=np.float32) for f in existing if f.embedding is not None]
        now = self.clock()
        new: list[Fact] = []
        for offset, (text, embedding) in enumerate(zip(texts, embeddings, strict=True)):
            vector = np.asarray(embedding, dtype=np.float32)
            if kept_vectors and max(float(v @ vector) for v in kept_vectors) >= self.params.fact_duplicate_cosine:
                continue
            kept_vectors.append(vector)
            new.append(
                Fact(
                    id=fact_id(segment.user_id, kind, text),
                    user_id=segment.user_id,
                    kind=kind,
                    text=text,
                    created_at=now + offset * 1e-6,  # keeps FIFO order inside one batch
                    source_segment=segment.id,
                    embedding=embedding,
                )
            )
        if not new:
            return
        self.store.add_facts(new)
        result.facts_added += len(new)
        everything = sorted(existing + new, key=lambda f: f.created_at)
        overflow = len(everything) - self.params.lpm_capacity
        if overflow > 0:
            dropped = everything[:overflow]
            self.store.delete_facts(segment.user_id, [f.id for f in dropped])
            result.facts_dropped.extend(f.text for f in dropped)
            logger.info("%s list of %s over capacity: dropped %d oldest", kind, segment.user_id, overflow)

    # ------------------------------------------------------------------ retrieval

    def retrieve(
        self,
        user_id: str,
        query: str,
        *,
        top_k: int | None = None,
        top_m: int | None = None,
        include_short_term: bool = True,
        include_archived: bool = False,
    ) -> Retrieval:
        """All STM pages, two-stage MTM (top-m segments, then top-k pages), LPM facts and profile. No LLM."""
        top_k = top_k or self.params.top_k
        top_m = top_m or self.params.top_m
        query_embedding = self.embedder.embed([query])[0]
        query_keywords = extract_keywords(query, limit=12)
        now = self.clock()

        short_term = (
            sorted(self.store.list_stm_pages(user_id), key=lambda p: p.added_at) if include_short_term else []
        )
        segments = self.store.list_segments(user_id, include_archived=include_archived)
        by_f_score = rank_segments(segments, query_embedding, query_keywords, len(segments))
        segments, f_scores = [s for s, _ in by_f_score], [f for _, f in by_f_score]
        index = self.page_index(user_id)
        page_scores = index.scores(query, query_embedding, self.weights)
        ranked, hits = rank_two_stage(
            index,
            page_scores,
            segments,
            f_scores,
            top_m=top_m,
            top_k=top_k,
            segment_weight=self.weights.segment_f_score,
        )
        mid_term = [ScoredPage(page=p, score=score, tier="mid_term") for p, score in hits]

        # Retrieval is what heats a segment: N_visit and last access move for every segment returned.
        for segment, _ in ranked:
            segment.n_visit += 1
            segment.last_access = now
        if ranked:
            self.store.record_visits([s for s, _ in ranked])
        scored_segments = [ScoredSegment(segment=s, score=score, heat=self.heat_of(s, now)) for s, score in ranked]

        n_facts = self.params.lpm_top_k
        user_facts = [ScoredFact(f, s) for f, s in self.store.query_facts(user_id, "user_fact", query_embedding, n_facts)]
        traits = [ScoredFact(f, s) for f, s in self.store.query_facts(user_id, "assistant_trait", query_embedding, n_facts)]
        profile = self.store.get_profile(user_id)
        context = build_context(
            user_id=user_id,
            short_term=short_term,
            mid_term=mid_term,
            user_facts=user_facts,
            assistant_traits=traits,
            profile=profile,
            assistant_profile=self.params.assistant_profile,
        )
        return Retrieval(
            query=query,
            short_term=short_term,
            mid_term=mid_term,
            segments=scored_segments,
            user_facts=user_facts,
            assistant_traits=traits,
            profile=profile,
            assistant_profile=self.params.assistant_profile,
            context=context,
        )


def fact_id(user_id: str, kind: FactKind, text: str) -> str:
    """Deterministic, so re-adding the same fact after a retry is an idempotent upsert."""
    digest = hashlib.sha1(f"{user_id}\x1f{kind}\x1f{' '.join(text.lower().split())}".encode()).hexdigest()
    return f"fact_{digest[:20]}"


def profile_text(profile: UserProfile) -> str:
    return "\n".join(profile.lines()) or "(empty profile)"
