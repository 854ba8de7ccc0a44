"""How retrieval mixes its scores: the weights the page index ranks with (index/page_index.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrievalWeights:
    """How scores are mixed. Defaults chosen on LoCoMo dev, each choice checked leave-one-conversation-out
    (bench/locomo_loo.py); they are not per-dataset knobs."""

    lexical: float = 0.5  # page score = lexical·z(BM25) + (1 − lexical)·z(cosine)
    segment_f_score: float = 0.2  # segment score = this·z(F_score) + (1 − this)·z(best page score)
    context_window: int = 1  # neighbour pages on each side that count as a page's dialogue context
    # Bonuses in standard deviations of the page score:
    time_cue: float = 1.0  # pages that mention time, on questions about time ("When did…")
    date_cue: float = 1.0  # pages dated on the day or month the query names ("in May 2023")
    # The query is embedded without the names the speakers call each other by (PageIndex.participants).
    strip_participants: bool = True
    # A query naming a participant is also embedded in their first person, and the two vectors averaged.
    first_person: bool = True
    participant_df: float = 0.25  # BM25 counts a participant's name as if in at least this share of pages
    # The top SENTENCE_DEPTH pages are re-ordered by score + this · z(cosine of their best sentence with the
    # query), z over those pages; not on questions about time, whose answer is the page's date (0: off).
    sentence: float = 0.8
    # When the query names people who all speak on one side (index/sides.py), a page's best sentence is its
    # best among that side's sentences (all of them where that side said nothing, or the split is unknown).
    named_speaker: bool = True
    # A page's best sentence is among those that do not ask (a question states nothing to be recalled:
    # "What gave you the idea to paint it?" is not what someone painted), unless all of them ask.
    skip_questions: bool = True
