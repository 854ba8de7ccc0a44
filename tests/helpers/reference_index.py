"""The fresh-build page scorer as it was before the incremental index: the oracle of the property test.

Simple on purpose: every page's dialogue context is assembled from scratch, BM25 is computed over Counter
documents, and the two-stage ranking sorts Python lists. The incremental PageIndex must rank the same.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from memoryos_mcp.core.dates import epoch_seconds
from memoryos_mcp.core.models import Page, Segment, SentenceVectors
from memoryos_mcp.core.text import exchange_text, is_question, page_sentences, page_text, sentences_by_side
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.changes import CONTEXT_GAP_S, NEIGHBOUR_WEIGHT
from memoryos_mcp.index.cues import asks_about_time, date_cues, mentions_time, self_names, vocatives
from memoryos_mcp.index.ranking import SENTENCE_DEPTH
from memoryos_mcp.index.sides import AGENT, USER, addressed, named_side, sides_from_counts
from memoryos_mcp.index.terms import index_terms, zscore


class ReferenceBM25:
    def __init__(
        self,
        documents: Sequence[Mapping[str, int]],
        k1: float = 1.2,
        b: float = 0.75,
        common: frozenset[str] = frozenset(),
        common_df: float = 0.0,
    ) -> None:
        self.k1, self.b = k1, b
        self.tf = list(documents)
        lengths = np.asarray([sum(tf.values()) for tf in self.tf], dtype=np.float64)
        average = float(lengths.mean()) if len(lengths) and lengths.mean() > 0 else 1.0
        self.norm = k1 * (1.0 - b + b * lengths / average)
        df = Counter(term for tf in self.tf for term in tf)
        n = len(documents)
        # A participant's name counts as if in at least common_df of the documents.
        df = Counter({t: max(f, common_df * n) if t in common else f for t, f in df.items()})
        self.idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(self.tf), dtype=np.float64)
        for term in set(query_terms):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for i, tf in enumerate(self.tf):
                if term in tf:
                    out[i] += idf * tf[term] * (self.k1 + 1.0) / (tf[term] + self.norm[i])
        return out


def _date_match(timestamp: str, cue: tuple[int | None, int, int | None]) -> float:
    try:
        year, month, day = int(timestamp[0:4]), int(timestamp[5:7]), int(timestamp[8:10])
    except ValueError:
        return 0.0
    cue_year, cue_month, cue_day = cue
    if cue_month != month or (cue_year is not None and cue_year != year):
        return 0.0
    return 1.0 if cue_day is None or cue_day == day else 0.5


class ReferenceIndex:
    """All given pages in conversation order, scored from scratch."""

    def __init__(self, pages: Sequence[Page], context_window: int = 1) -> None:
        self.pages = sorted(pages, key=lambda p: (p.added_at, p.id))
        n = len(self.pages)
        times = [epoch_seconds(p.timestamp) for p in self.pages]

        def same(i: int, j: int) -> bool:
            gap = abs(times[i] - times[j])
            return math.isnan(gap) or gap <= CONTEXT_GAP_S

        own = [Counter(index_terms(page_text(p))) for p in self.pages]
        self.neighbours = [
            [
                j
                for j in range(max(0, i - context_window), min(n, i + context_window + 1))
                if j != i and same(i, j)
            ]
            for i in range(n)
        ]
        documents = []
        for i in range(n):
            terms: Counter[str] = Counter(own[i])
            for j in self.neighbours[i]:
                terms.update(own[j])
            documents.append(terms)
        self.documents = documents
        self.time_mask = np.asarray([mentions_time(p) for p in self.pages], dtype=np.float64)
        if n:
            vectors = np.asarray([p.embedding for p in self.pages], dtype=np.float32)
            context = vectors.copy()
            for i in range(n):
                for j in self.neighbours[i]:
                    context[i] += NEIGHBOUR_WEIGHT * vectors[j]
            norms = np.linalg.norm(context, axis=1, keepdims=True)
            self.embeddings = context / np.where(norms == 0, 1.0, norms)

    def _participants(self) -> set[str]:
        """Addressed by a name three times, or introduced by it and addressed by it once."""
        uses = Counter(n for p in self.pages for n in vocatives(exchange_text(p)))
        introduced = Counter(n for p in self.pages for n in self_names(exchange_text(p)))
        return {n for n, count in uses.items() if count >= 3 or (count > 0 and introduced[n] > 0)}

    def scores(self, query: str, query_embedding: np.ndarray, weights: RetrievalWeights) -> np.ndarray:
        if not self.pages:
            return np.zeros(0)
        names = self._participants()
        common = (
            frozenset(t for n in names for t in index_terms(n)) if weights.participant_df else frozenset()
        )
        lexical = ReferenceBM25(self.documents, common=common, common_df=weights.participant_df).scores(
            index_terms(query)
        )
        dense = (self.embeddings @ np.asarray(query_embedding, dtype=np.float32)).astype(np.float64)
        scores = weights.lexical * zscore(lexical) + (1.0 - weights.lexical) * zscore(dense)
        if weights.time_cue and asks_about_time(query):
            scores = scores + weights.time_cue * self.time_mask
        cues = date_cues(query) if weights.date_cue else []
        if cues:
            matches = [max(_date_match(p.timestamp, c) for c in cues) for p in self.pages]
            scores = scores + weights.date_cue * np.asarray(matches)
        return scores

    def rank(
        self,
        query: str,
        query_embedding: np.ndarray,
        segments: Sequence[Segment],
        f_scores: Sequence[float],
        *,
        top_m: int,
        top_k: int,
        weights: RetrievalWeights,
    ) -> tuple[list[tuple[Segment, float]], list[tuple[Page, float]]]:
        if not segments:
            return [], []
        page_scores = self.scores(query, query_embedding, weights)
        by_segment: dict[str, list[int]] = {}
        for i, page in enumerate(self.pages):
            by_segment.setdefault(page.segment_id, []).append(i)
        floor = float(page_scores.min()) if len(page_scores) else 0.0
        best = np.asarray(
            [max((page_scores[i] for i in by_segment.get(s.id, [])), default=floor) for s in segments]
        )
        w = weights.segment_f_score
        combined = w * zscore(np.asarray(f_scores, dtype=np.float64)) + (1 - w) * zscore(best)
        order = np.argsort(-combined, kind="stable")[:top_m]
        chosen = [(segments[i], float(combined[i])) for i in order]
        candidates = [i for s, _ in chosen for i in by_segment.get(s.id, [])]
        candidates.sort(key=lambda i: -page_scores[i])
        if not weights.sentence or asks_about_time(query):
            return chosen, [(self.pages[i], float(page_scores[i])) for i in candidates[:top_k]]
        # The best pages re-ordered by their best sentence (a page without sentences is its own one); when the
        # query names people of one side, by the best of that side's sentences where the page has some.
        side = None
        if weights.named_speaker:
            by_side = Counter(a for p in self.pages for a in addressed(p.user_input, p.agent_response))
            side = named_side(query, sides_from_counts(by_side, self._participants()))
        top = candidates[: max(top_k, SENTENCE_DEPTH)]
        query_vector = np.asarray(query_embedding, dtype=np.float32)
        best = []
        for i in top:
            page = self.pages[i]
            sentences = page.sentences or SentenceVectors.quantize(page.embedding)
            cosines = sentences.vectors() @ query_vector
            users, agents = sentences_by_side(page)
            texts = users + agents
            if page_sentences(page) != texts or len(texts) != len(cosines):  # grouped, or another split
                best.append(float(cosines.max()))
                continue
            every = list(range(len(texts)))
            own = {USER: every[: len(users)], AGENT: every[len(users) :]}.get(side, every) or every
            if weights.skip_questions:
                own = [i for i in own if not is_question(texts[i])] or own
            best.append(float(max(cosines[i] for i in own)))
        mixed = [page_scores[i] for i in top]
        if len(top) > 1:
            mixed = list(np.asarray(mixed) + weights.sentence * zscore(np.asarray(best)))
        order = sorted(range(len(top)), key=lambda j: -mixed[j])[:top_k]
        return chosen, [(self.pages[top[j]], float(mixed[j])) for j in order]
