from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from memoryos_mcp.core.models import Page, Segment
from memoryos_mcp.core.text import page_text
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.cues import (
    asks_about_time,
    calendar_date,
    date_cues,
    date_match,
    embedding_texts,
    in_first_person,
    is_participant,
    self_names,
    vocatives,
    without_names,
)
from memoryos_mcp.index.page_index import PageIndex
from memoryos_mcp.index.terms import index_terms, stem, zscore
from tests.helpers.fakes import HashEmbedder
from tests.helpers.reference_index import ReferenceBM25

EMBED = HashEmbedder()


def page(n: int, user_input: str, segment: str = "s1", response: str = "") -> Page:
    p = Page(f"p{n}", "u", user_input, response, "2024-05-08T10:00:00", added_at=n, segment_id=segment)
    p.embedding = EMBED.embed([f"{user_input} {response}"])[0]
    return p


def build(pages: list[Page], context_window: int = 1) -> PageIndex:
    index = PageIndex(context_window)
    index.add(pages)
    return index


def scores_by_page(index: PageIndex, query: str, weights: RetrievalWeights | None = None) -> list[float]:
    """Scores in conversation order."""
    slots, scores = index.scores(query, EMBED.embed([query])[0], weights or RetrievalWeights())
    by_id = {index._ids[s]: x for s, x in zip(slots.tolist(), scores.tolist(), strict=True)}
    return [by_id[p.id] for p in index.pages()]


def test_stem_maps_word_forms_together() -> None:
    assert stem("hiking") == stem("hikes") == "hike"
    assert stem("write") == stem("writes") == stem("writing")
    assert stem("parties") == stem("party")
    assert stem("is") == "is"


def test_stem_is_safe_across_threads() -> None:
    # Retrievals of different users run in parallel worker threads; a shared Snowball object would mix words.
    words = [
        f"{base}{suffix}"
        for base in ("walk", "paint", "adopt", "camp", "read")
        for suffix in ("", "s", "ing", "ed")
    ] * 1000
    expected = [stem.__wrapped__(w) for w in words]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that sharing one stemmer would show
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(stem.__wrapped__, words))
    finally:
        sys.setswitchinterval(interval)
    assert results == expected


def test_index_terms_drop_stop_words() -> None:
    assert index_terms("I went to the LGBTQ support group") == ["went", "lgbtq", "support", "group"]


def test_bm25_prefers_rare_matching_terms() -> None:
    pages = [page(0, "cat dog"), page(1, "dog dog"), page(2, "bird")]
    index = build(pages, context_window=0)
    scores = index._bm25(["cat", "dog"])
    assert scores.argmax() == 0 and scores[2] == 0.0
    docs = [Counter(index_terms(page_text(p))) for p in pages]
    assert np.allclose(scores, ReferenceBM25(docs).scores(["cat", "dog"]))


def test_zscore_handles_constant_input() -> None:
    assert np.allclose(zscore(np.array([2.0, 2.0])), 0.0)
    assert zscore(np.array([1.0, 3.0])).tolist() == pytest.approx([-1.0, 1.0])


def test_a_page_is_found_through_its_neighbours_words() -> None:
    pages = [
        page(0, "Did you go to the pottery class?"),
        page(1, "Yes, with my sister, it was lovely!"),
        page(2, "The weather was rainy all week."),
    ]
    query = "who went to the pottery class"
    scores = scores_by_page(build(pages, context_window=1), query)
    assert scores[1] > scores[2]  # page 1 answers the question, though only page 0 says "pottery"
    alone = scores_by_page(build(pages, context_window=0), query)
    assert alone[1] <= alone[2] + 1e-9 or alone[1] < scores[1]


def test_questions_about_time_favour_pages_that_mention_time() -> None:
    assert asks_about_time("When did Maya move to Lisbon?")
    assert asks_about_time("How long ago was the trip?")
    assert not asks_about_time("Where does Maya live?")
    pages = [page(0, "I moved to Lisbon for work"), page(1, "I moved to Lisbon last month")]
    index = build(pages)
    q = "When did Maya move to Lisbon?"
    with_cue = scores_by_page(index, q, RetrievalWeights(time_cue=0.5))
    without = scores_by_page(index, q, RetrievalWeights(time_cue=0.0))
    assert with_cue[1] - with_cue[0] == pytest.approx(without[1] - without[0] + 0.5)


def test_two_stage_returns_pages_only_from_the_chosen_segments() -> None:
    pages = [
        page(0, "hiking trail", "s1"),
        page(1, "hiking boots", "s1"),
        page(2, "bread oven sourdough", "s2"),
    ]
    segments = [Segment("s1", "u", "", {}, 0.0, 0.0), Segment("s2", "u", "", {}, 0.0, 0.0)]
    index = build(pages, context_window=0)
    q = "sourdough bread"
    weights = RetrievalWeights(segment_f_score=0.2)
    chosen, hits = index.rank(q, EMBED.embed([q])[0], segments, [0.0, 0.0], top_m=1, top_k=5, weights=weights)
    assert [s.id for s, _ in chosen] == ["s2"] and [p.id for p, _ in hits] == ["p2"]
    # A strong enough F_score lifts a segment whose pages score lower.
    weights = RetrievalWeights(segment_f_score=0.9)
    chosen, hits = index.rank(q, EMBED.embed([q])[0], segments, [5.0, 0.0], top_m=1, top_k=5, weights=weights)
    assert [s.id for s, _ in chosen] == ["s1"] and {p.id for p, _ in hits} == {"p0", "p1"}


def test_pages_hours_apart_do_not_lend_each_other_context() -> None:
    first = page(0, "Did you go to the pottery class?")
    later = page(1, "Yes, with my sister, it was lovely!")
    later.timestamp = "2024-05-09T10:00:00"  # the next day: another conversation
    index = build([first, later], context_window=1)
    assert index._bm25(index_terms("pottery"))[1] == 0.0
    later.timestamp = "2024-05-08T10:20:00"
    index = build([first, later], context_window=1)
    assert index._bm25(index_terms("pottery"))[1] > 0.0


@pytest.mark.parametrize(
    ("query", "cues"),
    [
        ("What did Maria donate in December 2023?", [(2023, 12, None)]),
        ("Who came to dinner on May 3, 2023?", [(2023, 5, 3)]),
        ("What was said on 3 June, 2023?", [(2023, 6, 3)]),
        ("What happened on 2023-05-08?", [(2023, 5, 8)]),
        ("Where did we go camping in June?", [(None, 6, None)]),
        ("May I ask what you did?", []),
        ("Did she march with them?", []),
    ],
)
def test_date_cues_in_queries(query: str, cues: list[tuple[int | None, int, int | None]]) -> None:
    assert date_cues(query) == cues


def test_pages_dated_as_the_query_says_rank_higher() -> None:
    def one(timestamp: str, cue: tuple[int | None, int, int | None]) -> float:
        return float(date_match(np.asarray([calendar_date(timestamp)]), cue)[0])

    assert one("2023-05-03T10:00:00", (2023, 5, 3)) == 1.0
    assert one("2023-05-04T10:00:00", (2023, 5, 3)) == 0.5
    assert one("2024-05-03T10:00:00", (2023, 5, 3)) == 0.0
    assert one("2024-06-30T10:00:00", (None, 6, None)) == 1.0
    assert one("not a date", (None, 6, None)) == 0.0
    early, late = page(0, "I volunteered at the shelter"), page(1, "I volunteered at the shelter")
    early.timestamp, late.timestamp = "2023-05-03T10:00:00", "2023-12-01T10:00:00"
    q = "Where did I volunteer in December 2023?"
    scores = scores_by_page(build([early, late], context_window=0), q)
    assert scores[1] == pytest.approx(scores[0] + 1.0)


def test_vocatives_are_the_names_someone_is_addressed_by() -> None:
    assert vocatives("Hey Caroline! Thanks, Mel. We went to Paris last week, Jo!") == [
        "Caroline",
        "Mel",
        "Jo",
    ]
    assert vocatives("thanks! Appreciate it. What did you paint?") == []  # no name after the greeting's pause


def test_without_names_drops_names_and_their_possessive() -> None:
    names = {"Caroline", "Mel"}
    assert without_names("What did Caroline's mom give Mel?", names) == "What did mom give ?"
    assert without_names("Who is Melanie?", names) == "Who is Melanie?"  # whole words only
    assert without_names("Caroline", names) == "Caroline"  # nothing would be left: keep the query
    assert without_names("What did Caroline do?", set()) == "What did Caroline do?"


def test_a_name_is_a_participants_when_used_to_address_someone_often_or_after_an_introduction() -> None:
    assert self_names("Hi! I'm Maya. My name is Maya, call me May.") == ["Maya", "Maya", "May"]
    assert is_participant(3, 0) and is_participant(1, 1)
    assert not is_participant(2, 0) and not is_participant(0, 5)  # "I'm Italian" alone names nobody


def test_a_participants_rarely_written_name_does_not_make_its_page_the_best_match() -> None:
    said = [
        ("Hi! I'm Maya. I just moved to Lisbon.", "Welcome to Lisbon, Maya!"),
        ("We are migrating the billing pipeline.", "One team at a time?"),
        ("I tried to cook bacalhau yesterday.", "Did it come out creamy?"),
        ("My cat sleeps on the balcony.", "She likes the sun."),
        ("I hiked the Sintra trail with my sister.", "Did you reach the castle?"),
        ("The backfill test passed.", "A real milestone."),
        ("I am nervous about my talk.", "Rehearse it twice."),
        ("Pastry is hard to get right.", "Store-bought is fine."),
    ]
    index = build([page(i, text, response=reply) for i, (text, reply) in enumerate(said)], context_window=0)
    assert index.participants() == {"Maya"}
    lexical_only = RetrievalWeights(lexical=1.0, context_window=0)
    scores = scores_by_page(index, "What has Maya cooked?", lexical_only)
    assert max(range(len(said)), key=scores.__getitem__) == 2
    literal = scores_by_page(index, "What has Maya cooked?", replace(lexical_only, participant_df=0.0))
    assert max(range(len(said)), key=literal.__getitem__) == 0  # the rarely written name alone would win


def test_a_query_naming_a_participant_is_also_put_in_their_first_person() -> None:
    names = {"Caroline", "Mel", "Melanie"}
    assert in_first_person("What does Melanie like to paint?", names) == "What do I like to paint?"
    assert in_first_person("What are Melanie's pets' names?", names) == "What are my pets' names?"
    assert in_first_person("Where did Caroline take her kids?", names) == "Where did I take my kids?"
    assert (
        in_first_person("What have Caroline and Melanie both painted?", names) == "What have we both painted?"
    )
    assert in_first_person("How is the weather?", names) is None  # names no participant
    assert in_first_person("Who is Mell?", names) is None  # whole words only
    assert embedding_texts("What did Mel do?", names) == ["What did do?", "What did I do?"]
    assert embedding_texts("What did Mel do?", names, first_person=False) == ["What did do?"]
    assert embedding_texts("How is the weather?", names) == ["How is the weather?"]
