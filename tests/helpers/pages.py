"""Generated pages and queries for the page index tests, and the check that an index ranks as a fresh build
and as the from-scratch reference do."""

from __future__ import annotations

import random

import numpy as np

from memoryos_mcp.core.models import Page, Segment, SentenceVectors
from memoryos_mcp.core.text import page_sentences
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.page_index import PageIndex
from tests.helpers.reference_index import ReferenceIndex

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


def random_page(rng: random.Random, n: int, segments: list[str]) -> Page:
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


def remove_some(index: PageIndex, live: dict[str, Page], rng: random.Random, n: int) -> None:
    """Remove n random live pages from the index and from `live`."""
    gone = rng.sample(sorted(live), n)
    index.remove(gone)
    for pid in gone:
        del live[pid]


def segments_of(ids: list[str]) -> list[Segment]:
    return [Segment(sid, "u", "", {}, 0.0, 0.0) for sid in ids]


def query_vector(rng: random.Random) -> np.ndarray:
    vector = np.asarray([rng.gauss(0, 1) for _ in range(DIM)], dtype=np.float32)
    return vector / np.linalg.norm(vector)


def check_index(
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
    segments = segments_of(segment_ids)
    for query in QUERIES:
        vector = query_vector(rng)
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
