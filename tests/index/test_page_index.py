"""PageIndex: incremental changes rank exactly as a fresh build, and as the from-scratch reference."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from memoryos_mcp.core.models import Page, Segment, SentenceVectors
from memoryos_mcp.core.text import page_sentences
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index import changes
from memoryos_mcp.index.page_index import PageIndex
from memoryos_mcp.index.screen import SCREEN_FROM, Dots, numpy_dots
from memoryos_mcp.index.sides import AGENT, USER
from memoryos_mcp.index.snapshot_format import pack_snapshot
from tests.index.reference import ReferenceIndex

WORDS = (
    "pottery class sister lovely weather rainy hiking trail boots summit bread oven dough guitar chords "
    "concert taxes invoice adopted dog puppy shelter paint sunset lake camping tent museum flight hotel "
    "yesterday week month birthday party cake garden roses tomatoes novel library poem swim marathon"
).split()
QUERIES = [
    "who went to the pottery class",
    "When did I adopt the dog?",
    "what did we bake in the oven in May 2023",
    "camping trip by the lake last week",
    "guitar concert tickets",
    "nothing matches zzzz",
    "What did Ann paint at the lake?",  # Ann is a participant once three pages call her so
    "Did Cy swim in the lake?",  # on the user's side
    "Did Ann and Cy bake bread?",  # people of both sides
]
DIM = 16


def _page(rng: random.Random, n: int, segments: list[str]) -> Page:
    day = rng.choice([1, 1, 2, 3, 10])
    hour = rng.choice([9, 9, 10, 18])
    words = rng.sample(WORDS, rng.randint(2, 9))
    vector = np.asarray([rng.gauss(0, 1) for _ in range(DIM)], dtype=np.float32)
    half = len(words) // 2 + 1
    # Some pages address Ann or Bob (participants on the agent's side: BM25 treats their names as common) or
    # Cy (from both sides, near the 3:1 that puts him on the user's side: as pages come and go he has a
    # side or not); sides say one or two sentences, some of them questions (a page's best sentence is among
    # those that do not ask, where any does not).
    greetings = [
        "",
        "",
        "",
        "",
        "",
        "",
        "Hey Ann! ",
        "Hey Ann! ",
        "Thanks, Bob. ",
        "Thanks, Bob. ",
        "Hi Cy! ",
    ]
    user_input = rng.choice(greetings) + rng.choice([". ", ". ", "? "]).join(
        " ".join(part) for part in (words[:1], words[1:half]) if part
    )
    agent_response = rng.choice(["", "", "Thanks, Cy! "]) + " ".join(words[half:]) + rng.choice(["", "", "?"])
    page = Page(
        id=f"p{n}",
        user_id="u",
        user_input=user_input,
        agent_response=agent_response,
        timestamp=f"2023-05-{day:02d}T{hour:02d}:{rng.randint(0, 59):02d}:00",
        # Mostly increasing, sometimes older than the newest: pages can land in the middle of the order.
        added_at=n * 10 + (rng.randint(-40, 0) if rng.random() < 0.2 else 0),
        segment_id=rng.choice(segments),
        embedding=vector / np.linalg.norm(vector),
    )
    # Most pages have a vector for each of their sentences; some as many as another version's split gave
    # (which side each is on is then unknown); some were stored before sentences were embedded.
    draw = rng.random()
    if draw < 0.8:
        count = len(page_sentences(page)) if draw < 0.6 else rng.randint(1, 4)
        rows = np.asarray([[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(max(count, 1))])
        page.sentences = SentenceVectors.quantize(rows / np.linalg.norm(rows, axis=1, keepdims=True))
    return page


def _remove_some(index: PageIndex, live: dict[str, Page], rng: random.Random, n: int) -> None:
    """Remove n random live pages from the index and from `live`."""
    gone = rng.sample(sorted(live), n)
    index.remove(gone)
    for pid in gone:
        del live[pid]


def _segments(ids: list[str]) -> list[Segment]:
    return [Segment(sid, "u", "", {}, 0.0, 0.0) for sid in ids]


def _query_vector(rng: random.Random) -> np.ndarray:
    vector = np.asarray([rng.gauss(0, 1) for _ in range(DIM)], dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _check(
    index: PageIndex, live: dict[str, Page], rng: random.Random, segment_ids: list[str], window: int
) -> None:
    reference = ReferenceIndex(list(live.values()), context_window=window)
    fresh = PageIndex(context_window=window)
    fresh.add(list(live.values()))
    assert len(index) == len(live) == len(fresh)
    # Who speaks on which side is counted as pages come and go, as a fresh count gives it.
    assert index._addressed == fresh._addressed and index.speakers() == fresh.speakers()

    # Which of each page's sentences are the user's and which ask stay with the page through compaction.
    def layout(ix: PageIndex) -> dict[str, tuple[int, int]]:
        return {
            pid: (int(ix._sent_user[ix._slot_of[pid]]), int(ix._sent_ask[ix._slot_of[pid]])) for pid in live
        }

    assert layout(index) == layout(fresh)
    assert [p.id for p in index.pages()] == [p.id for p in reference.pages]
    weights = RetrievalWeights(context_window=window)
    segments = _segments(segment_ids)
    for query in QUERIES:
        vector = _query_vector(rng)
        slots, scores = index.scores(query, vector, weights)
        got = {index._ids[s]: score for s, score in zip(slots.tolist(), scores.tolist(), strict=True)}
        expected = dict(
            zip(
                [p.id for p in reference.pages],
                reference.scores(query, vector, weights).tolist(),
                strict=True,
            )
        )
        assert got.keys() == expected.keys()
        assert np.allclose([got[k] for k in expected], list(expected.values()), atol=1e-5)
        f_scores = [rng.random() for _ in segments]
        top_m, top_k = rng.randint(1, 4), rng.randint(1, 12)
        ranked = index.rank(query, vector, segments, f_scores, top_m=top_m, top_k=top_k, weights=weights)
        again = fresh.rank(query, vector, segments, f_scores, top_m=top_m, top_k=top_k, weights=weights)
        oracle = reference.rank(query, vector, segments, f_scores, top_m=top_m, top_k=top_k, weights=weights)
        for other in (again, oracle):
            assert [s.id for s, _ in ranked[0]] == [s.id for s, _ in other[0]]
            assert [p.id for p, _ in ranked[1]] == [p.id for p, _ in other[1]]
            assert np.allclose([x for _, x in ranked[1]], [x for _, x in other[1]], atol=1e-5)


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
            batch = [_page(rng, n + i, segment_ids) for i in range(rng.choice([1, 1, 3, 3, 25]))]
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
            _check(index, live, rng, segment_ids, window)
    _check(index, live, rng, segment_ids, window)


@pytest.mark.parametrize("screen_from", [SCREEN_FROM, 0], ids=["exact", "screened"])
def test_sentences_filled_in_later_rank_as_a_fresh_build_with_them(
    screen_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk import stores pages without sentence vectors (each ranks with its own vector as its one
    sentence); set_sentences() gives them later, in batches, while pages come and go."""
    monkeypatch.setattr(changes, "PACK_SENTENCES_FROM", 40)  # pack the replaced rows away several times
    rng = random.Random(5)
    segment_ids = ["a", "b", "c"]
    complete = [_page(rng, i, segment_ids) for i in range(400)]
    complete = [
        p if p.sentences is not None else replace(p, sentences=SentenceVectors.quantize(p.embedding))
        for p in complete
    ]
    index = PageIndex(screen_from=screen_from)
    index.add([replace(p, sentences=None) for p in complete])
    live = {p.id: replace(p, sentences=None) for p in complete}
    _check(index, live, rng, segment_ids, 1)  # waiting pages rank exactly as such pages always did
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
        _check(index, live, rng, segment_ids, 1)
    assert any(later < earlier for earlier, later in zip(unused, unused[1:], strict=False))  # packed


def test_compaction_after_many_removals_keeps_the_ranking() -> None:
    rng = random.Random(7)
    segment_ids = ["a", "b", "c"]
    index = PageIndex()
    pages = [_page(rng, i, segment_ids) for i in range(900)]
    index.add(pages)
    live = {p.id: p for p in pages}
    for chunk in range(0, 700, 50):  # enough dead slots to compact at least once
        gone = [p.id for p in pages[chunk : chunk + 50]]
        index.remove(gone)
        for pid in gone:
            del live[pid]
    assert index._n < 900  # compacted
    more = [_page(rng, 1000 + i, segment_ids) for i in range(10)]
    index.add(more)
    live.update((p.id, p) for p in more)
    _check(index, live, rng, segment_ids, 1)


def test_re_adding_a_page_replaces_it() -> None:
    rng = random.Random(3)
    first = _page(rng, 1, ["s"])
    index = PageIndex()
    index.add([first, _page(rng, 2, ["s"])])
    changed = replace(first, user_input="completely different words", segment_id="t")
    index.add([changed])
    assert len(index) == 2
    assert index.get(first.id).user_input == "completely different words"
    assert index.segment_ids() == {"s", "t"}


def test_index_keeps_no_second_copy_of_embeddings_and_reports_its_size() -> None:
    rng = random.Random(4)
    index = PageIndex()
    pages = [_page(rng, i, ["s"]) for i in range(100)]
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
        "x", np.ones(DIM), _segments(["s"]), [1.0], top_m=5, top_k=10, weights=RetrievalWeights()
    )
    assert [s.id for s, _ in chosen] == ["s"] and hits == []


@pytest.mark.parametrize("seed", range(3))
def test_an_exported_and_restored_index_ranks_the_same_and_keeps_changing_correctly(seed: int) -> None:
    rng = random.Random(100 + seed)
    segment_ids = [f"s{i}" for i in range(5)]
    index = PageIndex()
    pages = [_page(rng, i, segment_ids) for i in range(80)]
    index.add(pages)
    live = {p.id: p for p in pages}
    _remove_some(index, live, rng, 15)  # dead slots: the export must leave them out
    for missing in (("sent_user", "sent_ask", "addressed"), ("sent_ask",)):
        older = pack_snapshot(index.export())  # written before sides (or questions) were told apart
        for name in missing:
            del older[name]
        completed = PageIndex.restore(older)  # from the pages
        assert completed.restored_from_older
        _check(completed, live, rng, segment_ids, 1)
    restored = PageIndex.restore(pack_snapshot(index.export()))
    _check(restored, live, rng, segment_ids, 1)
    more = [_page(rng, 200 + i, segment_ids) for i in range(12)]
    restored.add(more)
    live.update((p.id, p) for p in more)
    _remove_some(restored, live, rng, 10)
    segment = rng.choice(segment_ids)
    restored.remove_segments([segment])
    live = {pid: p for pid, p in live.items() if p.segment_id != segment}
    _check(restored, live, rng, segment_ids, 1)


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
    segment = _segments(["s"])
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
    segment = _segments(["s"])
    query = "Who loves to paint sunsets?"
    for skip, first in ((True, "v1"), (False, "v0")):  # without the rule: a tie, kept in page order
        weights = RetrievalWeights(skip_questions=skip)
        _, hits = index.rank(query, topic, segment, [1.0], top_m=1, top_k=2, weights=weights)
        assert hits[0][0].id == first
    only = page(2, "Painting sunsets?", "Why?", topic, other)
    index.add([only])
    best = index._best_sentences(np.asarray([index._slot_of["v2"]]), topic, skip_questions=True)
    assert best[0] > 0.9
