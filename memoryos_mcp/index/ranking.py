"""Part of PageIndex: scoring and ranking — BM25 over each page with its dialogue context, the dense score of
its context vector (screened in int8 on a large index, then exact where it matters), cues, and the two stages
(segments, then pages) re-ordered by each page's best sentence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memoryos_mcp.core.models import Page, ScoreParts, Segment
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.arrays import runs
from memoryos_mcp.index.changes import NEIGHBOUR_WEIGHT
from memoryos_mcp.index.cues import asks_about_time, date_cues, date_match
from memoryos_mcp.index.sides import AGENT, named_side
from memoryos_mcp.index.terms import FLAT_SPREAD, index_terms, zscore, zscore_in_place

_BM25_K1, _BM25_B = 1.2, 0.75  # Okapi BM25's usual defaults
# Rows copied at once when a few pages are scored exactly: a copy of a few MB costs more in fresh memory
# (page faults: ~3 ms for 4 MB here) than the reading itself; 256 rows (384 KB) reuse the same memory.
_ROWS_AT_ONCE = 256
# Pages of a ranking re-ordered by their best sentence (RetrievalWeights.sentence): on LoCoMo dev, 100 gives
# what re-ordering all candidates does, 50 a little less.
SENTENCE_DEPTH = 100


class Ranking:
    """Part of PageIndex: the scores of pages for a query, and the two-stage ranking."""

    def _segment_slots(self, code: int) -> np.ndarray:
        """Live slots of a segment in conversation order (cached until the segment's pages change)."""
        members = self._members.get(code)
        if members is None:
            slots = np.fromiter(self._seg_slots[code], dtype=np.int64, count=len(self._seg_slots[code]))
            order = np.lexsort((slots, self._added_at[slots])) if len(slots) else slots
            members = self._members[code] = slots[order]
        return members

    def _bm25(
        self, terms: Sequence[str], common: frozenset[str] = frozenset(), common_df: float = 0.0
    ) -> np.ndarray:
        """BM25 of every slot's context document (its terms plus its neighbours'); 0 for dead slots.

        Terms in `common` count as if they were in at least `common_df` of the documents (a share)."""
        n = self._n
        out = np.zeros(n, dtype=np.float64)
        n_docs = len(self._slot_of)
        if not n_docs:
            return out
        lengths = self._len_ctx
        average = self._len_ctx_total / n_docs  # the mean over live slots, exactly
        average = average if average > 0 else 1.0
        for term in dict.fromkeys(terms):
            tid = self._vocab.get(term)
            if tid is None:
                continue
            kept = self._context_postings.get(tid)
            if kept is not None:
                docs, counts = kept[0], kept[1].astype(np.float64)
            else:
                docs, counts = self._context_counts(tid, n)
            if not len(docs):
                continue
            df = max(len(docs), common_df * n_docs) if term in common else len(docs)
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            norm = _BM25_K1 * (1.0 - _BM25_B + _BM25_B * lengths[docs] / average)
            out[docs] += idf * counts * (_BM25_K1 + 1.0) / (counts + norm)
        return out

    def _context_counts(self, tid: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(context documents holding the term, its count in each), counted from the postings of live slots;
        a common term's are kept (ContextPostings) for the next query."""
        postings = self._postings[tid]
        slots = postings.slots[: postings.n]
        tf = postings.tf[: postings.n].astype(np.float64)
        keep = self._alive[slots]
        slots, tf = slots[keep], tf[keep]
        # A term counts in a page's own document and in the documents of the page's neighbours.
        neighbours = self._nbrs[slots]
        has = neighbours >= 0
        targets = np.concatenate([slots, neighbours[has]])
        weights = np.concatenate([tf, np.broadcast_to(tf[:, None], neighbours.shape)[has]])
        if len(targets) * 16 <= n:  # a rare term: sorting its few targets is cheap, and it is not kept
            docs, inverse = np.unique(targets, return_inverse=True)
            return docs, np.bincount(inverse, weights=weights)
        counts = np.bincount(targets, weights=weights, minlength=n)  # beats sorting the targets
        docs = np.flatnonzero(counts)
        counts = counts[docs]
        self._context_postings.keep(tid, docs, counts, capacity=len(self._alive))
        return docs, counts

    def _dense(self, query_embedding: np.ndarray) -> np.ndarray:
        """Cosine of every slot's context vector (own + half of each neighbour's) with the query."""
        own = self._emb.dot(np.asarray(query_embedding, dtype=np.float32), self._n).astype(np.float64)
        padded = np.append(own, 0.0)  # neighbour -1 reads the 0 at the end
        context = own.copy()
        for column in range(self._width):
            context += NEIGHBOUR_WEIGHT * padded[self._nbrs[: self._n, column]]
        norm = self._norm[: self._n].astype(np.float64)
        return context / np.where(norm == 0, 1.0, norm)

    def _dense_of(self, query_embedding: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """What _dense gives these slots, computed for them alone with _dense's arithmetic. Each page's own dot
        is taken once even when it is also a neighbour (refined slots come in runs): a third of the rows."""
        query = np.asarray(query_embedding, dtype=np.float32)
        neighbours = self._nbrs[slots]
        rows, inverse = np.unique(np.concatenate([slots, neighbours.ravel()]), return_inverse=True)
        own = np.zeros(len(rows), dtype=np.float32)  # row -1 (no neighbour) keeps its 0
        first = int(np.searchsorted(rows, 0))
        for start in range(first, len(rows), _ROWS_AT_ONCE):
            chunk = rows[start : start + _ROWS_AT_ONCE]
            own[start : start + len(chunk)] = np.einsum("ij,j->i", self._emb.take(chunk), query)
        dots = own.astype(np.float64)[inverse]
        context = dots[: len(slots)].copy()
        beside = dots[len(slots) :].reshape(neighbours.shape)
        for column in range(self._width):
            context += NEIGHBOUR_WEIGHT * beside[:, column]
        norm = self._norm[slots].astype(np.float64)
        return context / np.where(norm == 0, 1.0, norm)

    def _all_scores(
        self, query: str, query_embedding: np.ndarray, weights: RetrievalWeights, screened: bool = False
    ) -> _Scores:
        """Hybrid score of every slot (dead slots: -inf), standardised over the live pages.

        `screened` (and a screen present): the dense part is approximate, within `error` of the exact score;
        refine() makes chosen slots exact."""
        n = self._n
        live: np.ndarray | slice = self._alive[:n]
        if not len(self._slot_of):
            return _Scores(np.full(n, -np.inf))
        if len(self._slot_of) == n:  # no dead slots (the usual case): views, not copies
            live = slice(None)
        # A participant's name is in every page in spirit (someone is always talking), however rarely it is
        # written: its idf must not make the one page that spells it ("Hi! I'm Maya") the best match.
        names = (
            frozenset(t for name in self.participants() for t in index_terms(name))
            if weights.participant_df
            else frozenset()
        )
        # Built in place from here on (the same arithmetic as the expressions in the comments): at 100k pages
        # every temporary is 800 KB of fresh memory.
        mixed = zscore_in_place(self._bm25(index_terms(query), names, weights.participant_df)[live])
        mixed *= weights.lexical  # lexical · z(bm25)
        screen = self._screen if screened else None
        result = _Scores(mixed)
        if screen is None:
            mixed += (1.0 - weights.lexical) * zscore(self._dense(query_embedding)[live])
        else:
            # z(dense) = (dense − mean) / spread with the exact mean and spread over all pages (the screen's
            # moments); only the dense values themselves are approximate until refined.
            approximate, error = screen.scores(query_embedding, n)
            mean, spread = screen.stats(query_embedding)
            weight = (1.0 - weights.lexical) / spread if spread > FLAT_SPREAD else 0.0
            dense = approximate[live].astype(np.float64)
            dense -= mean
            dense *= weight
            mixed += dense  # + weight · (approximate − mean)
            result = _Scores(mixed, weight * error, query_embedding, weight, approximate, np.zeros(n, bool))
        if weights.time_cue and asks_about_time(query):
            mixed += weights.time_cue * self._time[:n][live]
        cues = date_cues(query) if weights.date_cue else []
        if cues:
            dates = self._dates[:n][live]
            mixed += weights.date_cue * np.max([date_match(dates, cue) for cue in cues], axis=0)
        if not isinstance(live, slice):  # dead slots: -inf
            result.values = np.full(n, -np.inf)
            result.values[live] = mixed
        return result

    def _refine(self, scored: _Scores, slots: np.ndarray) -> None:
        """Make the scores of these slots exact (a screened _Scores; others are exact already)."""
        if scored.approximate is None or scored.exact is None or not len(slots):
            return
        slots = slots[~scored.exact[slots]]
        if not len(slots):
            return
        exact = self._dense_of(scored.query, slots)
        scored.values[slots] += scored.weight * (exact - scored.approximate[slots])
        scored.exact[slots] = True

    def scores(
        self, query: str, query_embedding: np.ndarray, weights: RetrievalWeights
    ) -> tuple[np.ndarray, np.ndarray]:
        """(live slots, hybrid score of each): standardised, so only the order and the gaps mean something."""
        slots = np.flatnonzero(self._alive[: self._n])
        return slots, self._all_scores(query, query_embedding, weights).values[slots]

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
        window: tuple[float, float] | None = None,
    ) -> tuple[list[tuple[Segment, float]], list[tuple[Page, float]]]:
        """Two stages: the top-m segments by F_score mixed with their best page score, then the top-k pages
        inside them. Returns (segment, stage-one score) and (page, page score), best first.

        With a `window` (inclusive seconds since the epoch) only pages dated inside it take part, and only
        segments holding such pages; scores are still standardised over all of the user's pages.

        A large index ranks on screened scores: every page whose approximate score is within twice the error
        bound of a value that matters (a segment's best, the k-th best candidate, the lowest) is scored
        exactly, so the result is the one the exact scores give.

        Then the best SENTENCE_DEPTH candidates are re-ordered by their best sentence (weights.sentence; the
        best of the named speaker's, weights.named_speaker) and the first k returned, with the mixed score."""
        if not segments:
            return [], []
        by_sentence = bool(weights.sentence) and not asks_about_time(query)
        side = named_side(query, self.speakers()) if by_sentence and weights.named_speaker else None
        depth = max(top_k, SENTENCE_DEPTH) if by_sentence else top_k
        scored = self._all_scores(query, query_embedding, weights, screened=True)
        scores, margin = scored.values, 2.0 * scored.error
        members = []
        for segment in segments:
            code = self._seg_code.get(segment.id)
            members.append(self._segment_slots(code) if code is not None else np.zeros(0, dtype=np.int64))
        if window is not None:
            lo, hi = window
            members = [m[(self._epoch[m] >= lo) & (self._epoch[m] <= hi)] for m in members]  # NaN dates: out
            keep = [i for i, m in enumerate(members) if len(m)]
            segments, f_scores = [segments[i] for i in keep], [f_scores[i] for i in keep]
            members = [members[i] for i in keep]
            if not segments:
                return [], []
        if not margin:
            best = [float(scores[m].max()) if len(m) else math.nan for m in members]
        else:  # score exactly the pages that may be their segment's best, all at once
            near = []
            for m in members:
                values = scores[m]
                near.append(m[values >= values.max() - margin] if len(m) else m)
            self._refine(scored, np.concatenate(near))
            # A page outside `near` scores below its segment's best approximate value minus twice the error,
            # so exactly below the page that has that value: the exact best is among the near ones.
            best = [float(scores[m].max()) if len(m) else math.nan for m in near]
        if any(math.isnan(b) for b in best):  # a segment without pages ranks with the worst page
            live = np.flatnonzero(self._alive[: self._n])
            if margin and len(live):
                self._refine(scored, live[scores[live] <= scores[live].min() + margin])
            floor = float(scores[live].min()) if len(live) else 0.0
            best = [floor if math.isnan(b) else b for b in best]
        w = weights.segment_f_score
        combined = w * zscore(np.asarray(f_scores, dtype=np.float64)) + (1 - w) * zscore(np.asarray(best))
        order = np.argsort(-combined, kind="stable")[:top_m]
        chosen = [(segments[i], float(combined[i])) for i in order]
        # Candidates in the order a stable sort needs: by segment rank, then conversation order.
        candidate = np.concatenate([members[i] for i in order]) if len(order) else np.zeros(0, dtype=np.int64)
        values = scores[candidate]
        if margin and len(candidate) > depth:
            kth = -np.partition(-values, depth - 1)[depth - 1]
            self._refine(scored, candidate[values >= kth - margin])
            values = scores[candidate]
        if len(candidate) > 4 * depth:  # keep what can be in the top k (ties included), then sort only those
            kth = np.partition(-values, depth - 1)[depth - 1]
            keep = np.flatnonzero(-values <= kth)
            candidate, values = candidate[keep], values[keep]
        top = candidate[np.argsort(-values, kind="stable")[:depth]]
        self._refine(scored, top)  # fewer candidates than k: they are all returned
        final = scores[top]
        if by_sentence and len(top) > 1:
            final = final + weights.sentence * zscore(
                self._best_sentences(top, query_embedding, side, skip_questions=weights.skip_questions)
            )
            order = np.argsort(-final, kind="stable")[:top_k]
            top, final = top[order], final[order]
        hits = []
        for slot, score in zip(top.tolist(), final.tolist(), strict=True):
            hits.append((self._page(slot), float(score)))
        return chosen, hits

    def explain(
        self,
        query: str,
        query_embedding: np.ndarray,
        weights: RetrievalWeights,
        hits: Sequence[tuple[Page, float]],
    ) -> list[ScoreParts]:
        """Why each of rank()'s hits was recalled: its score split into its parts (exact, whatever the screen)."""
        if not hits:
            return []
        live = np.flatnonzero(self._alive[: self._n])
        slots = np.asarray([self._slot_of[page.id] for page, _ in hits], dtype=np.int64)
        names = (
            frozenset(t for name in self.participants() for t in index_terms(name))
            if weights.participant_df
            else frozenset()
        )
        bm25 = self._bm25(index_terms(query), names, weights.participant_df)
        lexical = weights.lexical * _standardised(bm25[slots], bm25[live].mean(), bm25[live].std())
        if self._screen is not None:
            mean, spread = self._screen.stats(query_embedding)
        else:
            dense_all = self._dense(query_embedding)[live]
            mean, spread = float(dense_all.mean()), float(dense_all.std())
        dense = (1.0 - weights.lexical) * _standardised(self._dense_of(query_embedding, slots), mean, spread)
        time = np.zeros(len(slots))
        if weights.time_cue and asks_about_time(query):
            time = weights.time_cue * self._time[slots].astype(np.float64)
        date = np.zeros(len(slots))
        cues = date_cues(query) if weights.date_cue else []
        if cues:
            date = weights.date_cue * np.max([date_match(self._dates[slots], cue) for cue in cues], axis=0)
        by_sentence = bool(weights.sentence) and not asks_about_time(query)
        side = named_side(query, self.speakers()) if by_sentence and weights.named_speaker else None
        parts = []
        for i, (slot, (_, score)) in enumerate(zip(slots.tolist(), hits, strict=True)):
            index, cosine = self._sentence_choice(slot, query_embedding, side, weights.skip_questions)
            before = float(lexical[i] + dense[i] + time[i] + date[i])
            parts.append(
                ScoreParts(
                    lexical=float(lexical[i]),
                    dense=float(dense[i]),
                    time_cue=float(time[i]),
                    date_cue=float(date[i]),
                    best_sentence=float(score) - before if by_sentence else 0.0,
                    sentence_index=index,
                    sentence_cosine=cosine,
                    context_page_ids=[self._ids[int(s)] for s in self._nbrs[slot] if s >= 0],
                )
            )
        return parts

    def _sentence_choice(
        self, slot: int, query_embedding: np.ndarray, side: str | None, skip_questions: bool
    ) -> tuple[int | None, float]:
        """(which of the page's sentences is its best for the query, as _best_sentences() chooses; None where
        its vectors do not match this version's split of its text, its cosine)."""
        start, count = int(self._sent_off[slot]), int(self._sent_cnt[slot])
        rows = np.arange(start, start + count)
        dots = (
            np.einsum("ij,j->i", self._sent.take(rows).astype(np.float32), query_embedding)
            * self._sent_scale[rows]
        )
        allowed = np.ones(count, dtype=bool)
        user = int(self._sent_user[slot])
        if side is not None and user >= 0:
            own = np.arange(count) < user if side != AGENT else np.arange(count) >= user
            if own.any():
                allowed &= own
        if skip_questions:
            asks = (int(self._sent_ask[slot]) >> np.arange(count)) & 1
            stated = allowed & (asks == 0)
            if stated.any():
                allowed = stated
        best = int(np.flatnonzero(allowed)[np.argmax(dots[allowed])])
        return (best if user >= 0 else None), float(dots[best])

    def _best_sentences(
        self,
        slots: np.ndarray,
        query_embedding: np.ndarray,
        side: str | None = None,
        *,
        skip_questions: bool = False,
    ) -> np.ndarray:
        """Per slot, the cosine of its best sentence with the query (every slot has at least one); with a
        `side`, its best among that side's sentences where it has any and their split is known; with
        `skip_questions`, its best among those that are not questions, where any of them is not."""
        offsets, counts = self._sent_off[slots], self._sent_cnt[slots]
        if side is not None:
            user = self._sent_user[slots].astype(np.int64)
            own_offsets, own_counts = (offsets + user, counts - user) if side == AGENT else (offsets, user)
            known = (user >= 0) & (own_counts > 0)
            offsets, counts = np.where(known, own_offsets, offsets), np.where(known, own_counts, counts)
        rows, starts = runs(offsets, counts)
        query = np.asarray(query_embedding, dtype=np.float32)
        dots = np.einsum("ij,j->i", self._sent.take(rows).astype(np.float32), query) * self._sent_scale[rows]
        best = np.maximum.reduceat(dots, starts)
        asks = self._sent_ask[slots].astype(np.int64) if skip_questions else None
        if asks is not None and asks.any():
            # Each row's place among its page's sentences: its bit in the page's mask.
            within = rows - np.repeat(self._sent_off[slots], counts)
            asked = (np.repeat(asks, counts) >> within) & 1
            stated = np.maximum.reduceat(np.where(asked == 1, -np.inf, dots), starts)
            best = np.where(np.isfinite(stated), stated, best)
        return best.astype(np.float64)


def _standardised(values: np.ndarray, mean: float, spread: float) -> np.ndarray:
    """(values − mean) / spread, as zscore() standardises over all pages; 0 where the spread is flat."""
    if spread <= FLAT_SPREAD:
        return np.zeros(len(values))
    return (np.asarray(values, dtype=np.float64) - mean) / spread


@dataclass
class _Scores:
    """Scores of every slot, and how to make screened ones exact (PageIndex._refine)."""

    values: np.ndarray
    error: float = 0.0  # bound on |value − exact value| of a slot not refined yet
    query: np.ndarray | None = None
    weight: float = 0.0  # of the dense score in `values`
    approximate: np.ndarray | None = None  # screened dense score of each slot
    exact: np.ndarray | None = None  # slots refined
