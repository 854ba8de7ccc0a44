"""Mid-term retrieval: hybrid (lexical + dense) page scores with dialogue context, and the two stages.

A page of dialogue is rarely self-contained: "Yes, with my sister!" answers a question asked one page
earlier. So each mid-term page is scored with its dialogue context — the pages just before and after it
in the same conversation (not hours apart) — both lexically (BM25 over the page's terms plus its neighbours') and densely (its
embedding plus half of each neighbour's). The two scores are standardised and mixed.

Stage one ranks segments by the paper's F_score (cos + Jaccard against the query) together with the best
page score inside each segment; stage two returns the best pages of the top-m segments.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from memoryos_mcp.core.lexical import BM25, index_terms, zscore
from memoryos_mcp.core.models import Page, Segment, Vector
from memoryos_mcp.core.text import exchange_text, page_text

NEIGHBOUR_WEIGHT = 0.5  # share of a neighbour page's embedding in a page's context embedding
CONTEXT_GAP_S = 3 * 3600  # pages further apart in time belong to different conversations: no shared context

# A question about time ("When did…", "How long ago…") is answered by a page that says when something
# happened, and the date of the exchange alone rarely matches the question's words.
_TIME_QUESTION = re.compile(
    r"\b(when|what (year|month|day|date|time)|which (year|month|day)|how long|how many (years|months|weeks|days))\b",
    re.IGNORECASE,
)
_TIME_MENTION = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|ago|recently|weekend|week|month|year|"
    r"last (night|morning|evening)|(this|next|last) (spring|summer|fall|autumn|winter)|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"(19|20)\d\d)\b",
    re.IGNORECASE,
)


_MONTHS = {
    name: number
    for number, name in enumerate(
        "january february march april may june july august september october november december".split(), 1
    )
}
_NAMED_DATE = re.compile(
    r"\b(?:(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?)?"
    r"(january|february|march|april|may|june|july|august|september|october|november|december)"
    r"(?:\s+(\d{1,2})(?:st|nd|rd|th)?)?(?:,?\s+(\d{4}))?\b",
    re.IGNORECASE,
)
_ALSO_WORDS = {"may", "march"}
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})(?:-(\d{2}))?\b")

DateCue = tuple[int | None, int, int | None]  # (year or None, month, day or None)


def date_cues(query: str) -> list[DateCue]:
    """Dates a query names: "on May 3, 2023", "in December 2023", "3 June", "2023-05-08"."""
    cues: list[DateCue] = []
    for m in _NAMED_DATE.finditer(query):
        day = m.group(1) or m.group(3)
        if m.group(2).lower() in _ALSO_WORDS and not (day or m.group(4)):
            continue  # "may I…", "march on": a verb unless a day or year comes with it
        cues.append(
            (int(m.group(4)) if m.group(4) else None, _MONTHS[m.group(2).lower()], int(day) if day else None)
        )
    for m in _ISO_DATE.finditer(query):
        cues.append((int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None))
    return [(y, mo, d) for y, mo, d in cues if 1 <= mo <= 12]


def date_match(timestamp: str, cue: DateCue) -> float:
    """1 when the page's date is the day (or month) the cue names, 0.5 for the right month of a named day."""
    try:
        year, month, day = int(timestamp[0:4]), int(timestamp[5:7]), int(timestamp[8:10])
    except ValueError:
        return 0.0
    cue_year, cue_month, cue_day = cue
    if cue_month != month or (cue_year is not None and cue_year != year):
        return 0.0
    return 1.0 if cue_day is None or cue_day == day else 0.5


def _epoch(timestamp: str) -> float:
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        return math.nan
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def asks_about_time(query: str) -> bool:
    return _TIME_QUESTION.search(query) is not None


def mentions_time(page: Page) -> bool:
    return _TIME_MENTION.search(exchange_text(page)) is not None


@dataclass(frozen=True)
class RetrievalWeights:
    """How scores are mixed. Defaults chosen on LoCoMo dev (see bench/locomo.py); they are not per-dataset knobs."""

    lexical: float = 0.6  # page score = lexical·z(BM25) + (1 − lexical)·z(cosine)
    segment_f_score: float = 0.2  # segment score = this·z(F_score) + (1 − this)·z(best page score)
    context_window: int = 1  # neighbour pages on each side that count as a page's dialogue context
    # Bonuses in standard deviations of the page score:
    time_cue: float = 0.5  # pages that mention time, on questions about time ("When did…")
    date_cue: float = 1.0  # pages dated on the day or month the query names ("in May 2023")


class PageIndex:
    """Every mid-term page of one user, in conversation order, ready to be scored against a query."""

    def __init__(
        self, pages: Sequence[Page], context_window: int = 1, previous: PageIndex | None = None
    ) -> None:
        self.pages = sorted(pages, key=lambda p: p.added_at)
        self.ids = [p.id for p in self.pages]
        # Page texts never change, so their terms are taken over from the index this one replaces.
        known = previous.terms if previous is not None else {}
        self.terms = {p.id: known.get(p.id) or Counter(index_terms(page_text(p))) for p in self.pages}
        own_terms = [self.terms[p.id] for p in self.pages]
        n = len(self.pages)
        times = [_epoch(p.timestamp) for p in self.pages]

        def same_conversation(i: int, j: int) -> bool:
            gap = abs(times[i] - times[j])
            return math.isnan(gap) or gap <= CONTEXT_GAP_S

        neighbours = [
            [
                j
                for j in range(max(0, i - context_window), min(n, i + context_window + 1))
                if j != i and same_conversation(i, j)
            ]
            for i in range(n)
        ]
        documents: list[Counter[str]] = []
        for i in range(n):
            terms: Counter[str] = Counter(own_terms[i])
            for j in neighbours[i]:
                terms.update(own_terms[j])
            documents.append(terms)
        self.bm25 = BM25(documents)
        self.time_mask = np.asarray([mentions_time(p) for p in self.pages], dtype=np.float64)
        if n:
            own = np.asarray([p.embedding for p in self.pages], dtype=np.float32)
            context = own.copy()
            for i in range(n):
                for j in neighbours[i]:
                    context[i] += NEIGHBOUR_WEIGHT * own[j]
            norms = np.linalg.norm(context, axis=1, keepdims=True)
            self.embeddings = context / np.where(norms == 0, 1.0, norms)
        else:
            self.embeddings = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.pages)

    def scores(self, query: str, query_embedding: Vector, weights: RetrievalWeights) -> np.ndarray:
        """Hybrid score of every page (standardised, so only the order and the gaps mean something)."""
        if not self.pages:
            return np.zeros(0)
        lexical = self.bm25.scores(index_terms(query))
        dense = (self.embeddings @ np.asarray(query_embedding, dtype=np.float32)).astype(np.float64)
        scores = weights.lexical * zscore(lexical) + (1.0 - weights.lexical) * zscore(dense)
        if weights.time_cue and asks_about_time(query):
            scores = scores + weights.time_cue * self.time_mask
        cues = date_cues(query) if weights.date_cue else []
        if cues:
            matches = [max(date_match(p.timestamp, cue) for cue in cues) for p in self.pages]
            scores = scores + weights.date_cue * np.asarray(matches, dtype=np.float64)
        return scores


def rank_two_stage(
    index: PageIndex,
    page_scores: np.ndarray,
    segments: Sequence[Segment],
    segment_f_scores: Sequence[float],
    *,
    top_m: int,
    top_k: int,
    segment_weight: float,
) -> tuple[list[tuple[Segment, float]], list[tuple[Page, float]]]:
    """Stage one: top-m segments by F_score and their best page; stage two: top-k pages inside them."""
    if not segments:
        return [], []
    by_segment: dict[str, list[int]] = {}
    for i, page in enumerate(index.pages):
        by_segment.setdefault(page.segment_id, []).append(i)
    floor = float(page_scores.min()) if len(page_scores) else 0.0
    best = np.asarray(
        [max((page_scores[i] for i in by_segment.get(s.id, [])), default=floor) for s in segments],
        dtype=np.float64,
    )
    combined = segment_weight * zscore(np.asarray(segment_f_scores, dtype=np.float64)) + (
        1 - segment_weight
    ) * zscore(best)
    order = np.argsort(-combined, kind="stable")[:top_m]
    chosen = [(segments[i], float(combined[i])) for i in order]
    candidates = [i for s, _ in chosen for i in by_segment.get(s.id, [])]
    candidates.sort(key=lambda i: -page_scores[i])
    return chosen, [(index.pages[i], float(page_scores[i])) for i in candidates[:top_k]]
