"""PageIndex: incremental changes rank exactly as a fresh build, and as the from-scratch reference."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from memoryos_mcp.core.models import Page, SentenceVectors
from memoryos_mcp.core.text import page_sentences
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index import changes
from memoryos_mcp.index.page_index import PageIndex
from memoryos_mcp.index.screen import SCREEN_FROM, Dots, numpy_dots
from memoryos_mcp.index.sides import AGENT, USER
from memoryos_mcp.index.snapshot_format import pack_snapshot
from tests.helpers.pages import DIM, QUERIES, check_index, query_vector, random_page, remove_some, segments_of


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("window", [1, 2])
@pytest.mark.parametrize(
    ("screen_from", "dots"),
    [(SCREEN_FROM, None), (0, None), (0, numpy_dots)],
    ids=["exact", "screened", "screened-numpy"],
)
def test_incremental_changes_rank_as_a_fresh_build(
    seed: int, window: int, screen_from: int, dots: Dots | None
) -> None:
    """Screened (an int8 first pass, then exact scores where they matter; on this CPU's kernel or the exact
    numpy fallback) or not, ranking is the exact one."""
    rng = random.Random(seed)
    segment_ids = [f"s{i}" for i in range(6)]
    index = PageIndex(context_window=window, screen_from=screen_from, screen_dots=dots)
    live: dict[str, Page] = {}
    n = 0
    for step in range(40):
        action = rng.random()
        if action < 0.55 or not live:
            batch = [random_page(rng, n + i, segment_ids) for i in range(rng.choice([1, 1, 3, 3, 25]))]
            n += len(batch)
            index.add(batch)
            live.update((p.id, p) for p in batch)
        elif action < 0.85:
            gone = rng.sample(sorted(live), min(len(live), rng.randint(1, 4)))
            assert index.remove(gone + ["never-indexed"]) == len(gone)
            for pid in gone:
                del live[pid]
        else:
            segment = rng.choice(segment_ids)
            expected = [pid for pid, p in live.items() if p.segment_id == segment]
            assert index.remove_segments([segment]) == len(expected)
            for pid in expected:
                del live[pid]
        if step % 8 == 7:
            check_index(index, live, rng, segment_ids, window)
    check_index(index, live, rng, segment_ids, window)


@pytest.mark.parametrize("screen_from", [SCREEN_FROM, 0], ids=["exact", "screened"])
def test_sentences_filled_in_later_rank_as_a_fresh_build_with_them(
    screen_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk import stores pages without sentence vectors (each ranks with its own vector as its one
    sentence); set_sentences() gives them later, in batches, while pages come and go."""
    monkeypatch.setattr(changes, "PACK_SENTENCES_FROM", 40)  # pack the replaced rows away several times
    rng = random.Random(5)
    segment_ids = ["a", "b", "c"]
    complete = [random_page(rng, i, segment_ids) for i in range(400)]
    complete = [
        p if p.sentences is not None else replace(p, sentences=SentenceVectors.quantize(p.embedding))
        for p in complete
    ]
    index = PageIndex(screen_from=screen_from)
    index.add([replace(p, sentences=None) for p in complete])
    live = {p.id: replace(p, sentences=None) for p in complete}
    check_index(index, live, rng, segment_ids, 1)  # waiting pages rank exactly as such pages always did
    unused = []
    for start in list(range(0, 400, 60)) * 2:  # twice: the second time replaces real sentence vectors
        batch = [p for p in complete[start : start + 60] if p.id in live]
        gone = {p.id for p in batch[:3]}  # forgotten before their sentences came
        index.remove(gone)
        assert index.set_sentences(batch) == len(batch) - len(gone)
        for page in batch:
            if page.id in gone:
                live.pop(page.id)
            else:
                live[page.id] = page
        unused.append(index._sent_unused)
        assert unused[-1] <= max(40, index._sent_used // 4)
        check_index(index, live, rng, segment_ids, 1)
    assert any(later < earlier for earlier, later in zip(unused, unused[1:], strict=False))  # packed


def test_compaction_after_many_removals_keeps_the_ranking() -> None:
    rng = random.Random(7)
    segment_ids = ["a", "b", "c"]
    index = PageIndex()
    pages = [random_page(rng, i, segment_ids) for i in range(900)]
    index.add(pages)
    live = {p.id: p for p in pages}
    for chunk in range(0, 700, 50):  # enough dead slots to compact at least once
        gone = [p.id for p in pages[chunk : chunk + 50]]
        index.remove(gone)
        for pid in gone:
            del live[pid]
    assert index._n < 900  # compacted
    more = [random_page(rng, 1000 + i, segment_ids) for i in range(10)]
    index.add(more)
    live.update((p.id, p) for p in more)
    check_index(index, live, rng, segment_ids, 1)


def test_re_adding_a_page_replaces_it() -> None:
    rng = random.Random(3)
    first = random_page(rng, 1, ["s"])
    index = PageIndex()
    index.add([first, random_page(rng, 2, ["s"])])
    changed = replace(first, user_input="completely different words", segment_id="t")
    index.add([changed])
    assert len(index) == 2
    assert index.get(first.id).user_input == "completely different words"
    assert index.segment_ids() == {"s", "t"}


def test_index_keeps_no_second_copy_of_embeddings_and_reports_its_size() -> None:
    rng = random.Random(4)
    index = PageIndex()
    pages = [random_page(rng, i, ["s"]) for i in range(100)]
    index.add(pages)
    assert all(p.embedding is None for p in index.pages())
    assert pages[0].embedding is not None  # the caller's pages are not changed
    assert 100 * DIM * 4 < index.nbytes < 100 * 4000


def test_empty_index_ranks_nothing() -> None:
    index = PageIndex()
    slots, scores = index.scores("anything", np.ones(DIM, dtype=np.float32), RetrievalWeights())
    assert slots.size == 0 and scores.size == 0
    assert index.rank("x", np.ones(DIM), [], [], top_m=5, top_k=10, weights=RetrievalWeights()) == ([], [])
    chosen, hits = index.rank(
        "x", np.ones(DIM), segments_of(["s"]), [1.0], top_m=5, top_k=10, weights=RetrievalWeights()
    )
    assert [s.id for s, _ in chosen] == ["s"] and hits == []


@pytest.mark.parametrize("seed", range(3))
def test_an_exported_and_restored_index_ranks_the_same_and_keeps_changing_correctly(seed: int) -> None:
    rng = random.Random(100 + seed)
    segment_ids = [f"s{i}" for i in range(5)]
    index = PageIndex()
    pages = [random_page(rng, i, segment_ids) for i in range(80)]
    index.add(pages)
    live = {p.id: p for p in pages}
    remove_some(index, live, rng, 15)  # dead slots: the export must leave them out
    for missing in (("sent_user", "sent_ask", "addressed"), ("sent_ask",)):
        older = pack_snapshot(index.export())  # written before sides (or questions) were told apart
        for name in missing:
            del older[name]
        completed = PageIndex.restore(older)  # from the pages
        assert completed.restored_from_older
        check_index(completed, live, rng, segment_ids, 1)
    restored = PageIndex.restore(pack_snapshot(index.export()))
    check_index(restored, live, rng, segment_ids, 1)
    more = [random_page(rng, 200 + i, segment_ids) for i in range(12)]
    restored.add(more)
    live.update((p.id, p) for p in more)
    remove_some(restored, live, rng, 10)
    segment = rng.choice(segment_ids)
    restored.remove_segments([segment])
    live = {pid: p for pid, p in live.items() if p.segment_id != segment}
    check_index(restored, live, rng, segment_ids, 1)


def _said(n: int, user_input: str, response: str) -> Page:
    return Page(
        f"v{n}",
        "u",
        user_input,
        response,
        "2024-05-08T10:00:00",
        added_at=n,
        segment_id="s",
        embedding=np.ones(DIM, dtype=np.float32),
    )


def test_participants_are_the_names_used_to_address_someone_often_enough() -> None:
    index = PageIndex()
    index.add(
        [_said(0, "Hey Caroline!", "Hi Mel, I went to Paris."), _said(1, "Thanks, Caroline.", "Hi, Paris!")]
    )
    index.add([_said(2, "Yes", "Bye Caroline!")])
    assert index.participants() == {"Caroline"}  # Mel once and Paris once: not yet
    index.remove(["v2"])
    assert index.participants() == set()
    index.add([_said(3, "Wow, Caroline!", "Good luck Mel! Bye Mel!")])
    restored = PageIndex.restore(pack_snapshot(index.export()))
    assert restored.participants() == index.participants() == {"Caroline", "Mel"}
    # The user's side calls Caroline three times: she speaks on the agent's; Mel on the user's.
    assert restored.speakers() == index.speakers() == {"Caroline": AGENT, "Mel": USER}
    older = pack_snapshot(index.export())
    del (
        older["vocatives"],
        older["introduced"],
        older["addressed"],
    )  # a snapshot written before names were counted: counted again from its pages
    assert PageIndex.restore(older).participants() == {"Caroline", "Mel"}
    assert PageIndex.restore(older).speakers() == {"Caroline": AGENT, "Mel": USER}
    restored.remove(["v0"])  # a restored page not decoded yet: read to know whom it addressed
    assert restored.participants() == set()
    assert restored.speakers() == {}


def test_a_question_about_one_speaker_is_answered_by_what_they_said() -> None:
    """Two pages say the same thing, one in the words of Mel (who speaks on the agent's side: the user
    calls her Mel), the other in the user's: "What does Mel love to paint?" ranks Mel's first."""
    topic, other, filler = np.eye(DIM, dtype=np.float32)[:3]

    def page(
        n: int, user_says: str, agent_says: str, user_vector: np.ndarray, agent_vector: np.ndarray
    ) -> Page:
        result = _said(n, user_says, agent_says)
        result.sentences = SentenceVectors.quantize(np.stack([user_vector, agent_vector]))
        return result

    greetings = [  # Mel is a participant, addressed by the user's side
        page(i, f"Hey Mel! Day {i} here.", "Hello there.", filler, filler) for i in range(3)
    ]
    users = page(10, "I love painting sunsets.", "That is lovely.", topic, other)
    mels = page(11, "How was your day?", "I love painting sunsets.", other, topic)
    index = PageIndex()
    index.add([*greetings, users, mels])
    assert index.speakers() == {"Mel": AGENT}
    segment = segments_of(["s"])
    query = "What does Mel love to paint?"
    for named, first in ((True, "v11"), (False, "v10")):  # anyone's sentences: a tie, kept in page order
        weights = RetrievalWeights(named_speaker=named)
        _, hits = index.rank(query, topic, segment, [1.0], top_m=1, top_k=2, weights=weights)
        assert hits[0][0].id == first
    # A page whose named side said nothing keeps its best sentence of all (here: the user's).
    assert index._best_sentences(np.asarray([index._slot_of["v10"]]), topic, AGENT)[0] < 0.5
    silent = page(12, "I love painting sunsets.", "", topic, topic)
    silent.sentences = SentenceVectors.quantize(topic[None, :])
    index.add([silent])
    assert index._best_sentences(np.asarray([index._slot_of["v12"]]), topic, AGENT)[0] > 0.9


def test_a_question_does_not_answer_what_it_asks() -> None:
    """Two pages hold a sentence about painting sunsets, one asking it, one stating it: the statement ranks
    first (a page's best sentence is among those that do not ask); a page of questions only keeps its best."""
    topic, other = np.eye(DIM, dtype=np.float32)[:2]

    def page(n: int, user_says: str, agent_says: str, *vectors: np.ndarray) -> Page:
        result = _said(n, user_says, agent_says)
        result.sentences = SentenceVectors.quantize(np.stack(vectors))
        return result

    asks = page(0, "Do you love painting sunsets?", "Not really.", topic, other)
    states = page(1, "Tell me.", "I love painting sunsets.", other, topic)
    index = PageIndex()
    index.add([asks, states])
    segment = segments_of(["s"])
    query = "Who loves to paint sunsets?"
    for skip, first in ((True, "v1"), (False, "v0")):  # without the rule: a tie, kept in page order
        weights = RetrievalWeights(skip_questions=skip)
        _, hits = index.rank(query, topic, segment, [1.0], top_m=1, top_k=2, weights=weights)
        assert hits[0][0].id == first
    only = page(2, "Painting sunsets?", "Why?", topic, other)
    index.add([only])
    best = index._best_sentences(np.asarray([index._slot_of["v2"]]), topic, skip_questions=True)
    assert best[0] > 0.9


@pytest.mark.parametrize("screen_from", [SCREEN_FROM, 0], ids=["exact", "screened"])
def test_why_a_page_was_recalled_adds_up_to_its_score(screen_from: int) -> None:
    rng = random.Random(3)
    segment_ids = ["a", "b", "c"]
    index = PageIndex(screen_from=screen_from)
    pages = [random_page(rng, i, segment_ids) for i in range(300)]
    index.add(pages)
    weights = RetrievalWeights()
    for query in QUERIES + ["When did I adopt the dog in May 2023?"]:
        vector = query_vector(rng)
        _, hits = index.rank(
            query, vector, segments_of(segment_ids), [0.5, 0.2, 0.1], top_m=3, top_k=8, weights=weights
        )
        parts = index.explain(query, vector, weights, hits)
        assert len(parts) == len(hits) > 0
        for (page, score), why in zip(hits, parts, strict=True):
            total = why.lexical + why.dense + why.time_cue + why.date_cue + why.best_sentence
            assert total == pytest.approx(score, abs=1e-4)
            assert set(why.context_page_ids) <= {p.id for p in pages} and page.id not in why.context_page_ids
            if why.sentence_index is not None:
                assert 0 <= why.sentence_index < len(page_sentences(page))
