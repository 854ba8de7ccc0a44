"""The memory model on real Chroma (tmp_path) with a deterministic embedder and a controllable clock."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.memory import MemoryOS, MemoryParams, rank_segments
from memoryos_mcp.core.models import Segment
from memoryos_mcp.index.page_index import PageIndexes
from tests.helpers.fakes import HashEmbedder, mid_term_pages

TOPICS = {
    "hiking": "hiking trail mountains boots summit ridge",
    "cooking": "recipe oven bread flour dough baking",
    "guitar": "guitar chords strings melody amplifier practice",
    "taxes": "taxes invoice accountant deduction receipts filing",
}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    store: ChromaStore, embedder: HashEmbedder, clock: Clock | None = None, **params: object
) -> MemoryOS:
    base = MemoryParams(stm_capacity=3, stm_evict_batch=1)
    return MemoryOS(
        store,
        embedder,
        LocalAnalyzer(chain_threshold=0.5),
        replace(base, **params),
        clock or Clock(),
        indexes=PageIndexes(),
    )


def add(memory: MemoryOS, text: str, user: str = "u1", n: int = 0):
    return memory.add_page(user, f"{text} number{n}", f"reply about {text}", "2024-01-01T10:00:00", {"n": n})


def test_short_term_is_a_fifo_of_capacity_pages(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder)
    ids = [add(memory, TOPICS["hiking"], n=i).page.id for i in range(5)]
    stm = sorted(store.list_stm_pages("u1"), key=lambda p: p.added_at)
    assert [p.id for p in stm] == ids[2:]
    assert {pid for pid, tier in store.find_pages("u1", ids).items() if tier == "mid_term"} == set(ids[:2])


def test_overflow_moves_a_batch_of_oldest_pages(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder, stm_capacity=7, stm_evict_batch=3)
    results = [add(memory, TOPICS["hiking"], n=i) for i in range(8)]
    assert all(not r.moved_to_mid_term for r in results[:7])
    assert results[7].moved_to_mid_term == [r.page.id for r in results[:3]]
    assert len(store.list_stm_pages("u1")) == 5


def test_same_topic_merges_and_new_topic_creates_segment(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder, stm_capacity=1, theta=0.6)
    add(memory, TOPICS["hiking"], n=0)
    first = add(memory, TOPICS["hiking"], n=1)  # pushes page 0 to MTM: a new segment
    assert len(first.segments_created) == 1
    second = add(memory, TOPICS["cooking"], n=2)  # pushes hiking page 1: merges
    assert second.segments_merged == first.segments_created
    third = add(memory, TOPICS["cooking"], n=3)  # pushes cooking page 2: a different topic
    assert len(third.segments_created) == 1 and third.segments_created != first.segments_created
    segments = {s.id: s for s in store.list_segments("u1")}
    assert segments[first.segments_created[0]].page_count == 2
    assert "hiking" in segments[first.segments_created[0]].keywords


def test_pages_carry_chain_summaries_and_chains_break_on_topic_change(
    store: ChromaStore, embedder: HashEmbedder
) -> None:
    memory = make(store, embedder, stm_capacity=1)
    for i, topic in enumerate(["hiking", "hiking", "taxes", "taxes"]):
        add(memory, TOPICS[topic], n=i)
    pages = mid_term_pages(store, "u1")
    assert len(pages) == 3
    assert pages[0].chain_id == pages[1].chain_id != pages[2].chain_id
    assert all(p.chain_summary for p in pages)


def test_coldest_segment_is_archived_not_deleted(store: ChromaStore, embedder: HashEmbedder) -> None:
    clock = Clock()
    memory = make(store, embedder, clock, stm_capacity=1, mtm_capacity=2)
    for i, topic in enumerate(["hiking", "cooking", "guitar", "taxes"]):
        clock.now += 1e6  # each later segment is fresher, so the first is the coldest
        result = add(memory, TOPICS[topic], n=i)
    assert len(result.segments_archived) == 1
    archived_id = result.segments_archived[0]
    active = store.list_segments("u1")
    everything = store.list_segments("u1", include_archived=True)
    assert len(active) == 2 and len(everything) == 3
    assert archived_id not in {s.id for s in active}
    hiking_query = TOPICS["hiking"]
    assert not any(sp.page.segment_id == archived_id for sp in memory.retrieve("u1", hiking_query).mid_term)
    found = memory.retrieve("u1", hiking_query, include_archived=True).mid_term
    assert found and found[0].page.segment_id == archived_id


def test_rank_segments_orders_by_cosine_plus_jaccard() -> None:
    def seg(sid: str, emb: list[float], words: list[str]) -> Segment:
        return Segment(sid, "u", "", {w: 1 for w in words}, 0.0, 0.0, embedding=emb)

    segments = [seg("a", [1, 0], ["x"]), seg("b", [0.8, 0.6], ["hike", "trail"]), seg("c", [0, 1], [])]
    ranked = rank_segments(segments, [1, 0], ["hike", "trail"], m=2)
    assert [s.id for s, _ in ranked] == ["b", "a"]  # 0.8 + 1.0 beats 1.0 + 0.0
    assert ranked[0][1] == pytest.approx(1.8)


def _five_pages(store: ChromaStore, embedder: HashEmbedder, clock: Clock) -> MemoryOS:
    """Hiking twice, cooking twice, then guitar: two mid-term topics and the newest page short-term."""
    memory = make(store, embedder, clock, stm_capacity=1)
    for i, topic in enumerate(["hiking", "hiking", "cooking", "cooking", "guitar"]):
        add(memory, TOPICS[topic], n=i)
    clock.now += 100
    return memory


def test_retrieval_is_two_stage_and_heats_the_segments_it_returns(
    store: ChromaStore, embedder: HashEmbedder
) -> None:
    clock = Clock()
    memory = _five_pages(store, embedder, clock)
    result = memory.retrieve("u1", "mountains trail boots", top_m=1, top_k=10)
    segment_ids = {sp.page.segment_id for sp in result.mid_term}
    assert len(result.segments) == 1 and segment_ids == {result.segments[0].segment.id}
    assert all("hiking" in sp.page.user_input for sp in result.mid_term)
    stored = {s.id: s for s in store.list_segments("u1")}[result.segments[0].segment.id]
    assert stored.n_visit == 1 and stored.last_access == clock.now
    assert [p.user_input for p in result.short_term] == [f"{TOPICS['guitar']} number4"]
    assert "number4" in result.context and "2024-01-01" in result.context


def test_retrieval_embeds_the_query_without_the_names_of_the_people_talking_and_in_their_first_person(
    store: ChromaStore, embedder: HashEmbedder
) -> None:
    asked: list[str] = []

    class Recording(HashEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            asked.extend(texts)
            return super().embed(texts)

    memory = make(store, Recording(), stm_capacity=1)
    for i, greeting in enumerate(["Hey Caroline!", "Thanks, Caroline.", "Bye Caroline!", "Hi Paris!"]):
        memory.add_page("u1", f"{TOPICS['hiking']} number{i}", greeting, "2024-01-01T10:00:00")
    asked.clear()
    result = memory.retrieve("u1", "Where did Caroline's friend hike in Paris?")
    # Caroline is talked to (Paris only once): she is out of the query, and the query is also put as she
    # would say it; one embedding call, the two vectors averaged.
    assert asked == ["Where did friend hike in Paris?", "Where did my friend hike in Paris?"]
    assert result.query == "Where did Caroline's friend hike in Paris?"
    asked.clear()
    memory.retrieve("u1", "Where did the friend hike in Paris?")  # names no one talking: embedded as it is
    assert asked == ["Where did the friend hike in Paris?"]


def test_interrupted_move_is_repaired_without_duplicates(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder, stm_capacity=2)
    first = add(memory, TOPICS["hiking"], n=0)
    add(memory, TOPICS["hiking"], n=1)
    # Simulate a crash after the page was written to MTM but before it left STM.
    page = store.list_stm_pages("u1")[0] if store.list_stm_pages("u1")[0].id == first.page.id else None
    assert page is not None
    page.segment_id = "seg_crashed"
    store.put_mtm_pages([page])
    memory = make(store, embedder, stm_capacity=2)  # the process that crashed restarts
    result = add(memory, TOPICS["hiking"], n=2)
    assert any("repaired" in note for note in result.notes)
    assert first.page.id not in {p.id for p in store.list_stm_pages("u1")}
    assert [p.id for p in mid_term_pages(store, "u1")].count(first.page.id) == 1


def test_without_llm_hot_segments_wait_for_promotion(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder, stm_capacity=1, tau=2.0)
    results = [add(memory, TOPICS["hiking"], n=i) for i in range(4)]
    assert results[-1].promotion_pending
    assert results[-1].usage.calls == 0
    assert store.get_profile("u1") is None
    assert store.list_facts("u1", "user_fact") == []


def test_users_never_see_each_other(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder, stm_capacity=1)
    for i in range(3):
        add(memory, TOPICS["hiking"], user="alice", n=i)
    result = memory.retrieve("bob", TOPICS["hiking"])
    assert result.short_term == [] and result.mid_term == [] and result.segments == []


def test_a_page_is_embedded_by_what_was_said_not_its_date(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder)
    embedder.calls.clear()
    memory.add_page("u1", "I adopted a dog", "Congratulations!", "2023-05-08T13:56:00")
    # The exchange (the date is matched by retrieval's date cue), then each sentence, in one call.
    assert embedder.calls[0] == ["I adopted a dog Congratulations!", "I adopted a dog", "Congratulations!"]


def test_a_page_keeps_its_sentence_vectors_in_the_store(store: ChromaStore, embedder: HashEmbedder) -> None:
    memory = make(store, embedder, stm_capacity=1)
    first = memory.add_page("u1", "We went hiking. The trail was steep! :)", "Wow, well done.", "2024-01-01")
    memory.add_page("u1", "Just one sentence here", "", "2024-01-02")  # moves the first page to mid-term
    (stored,) = store.get_mtm_pages("u1", [first.page.id])
    # Each sentence of each side (":)" is too short to count), as the embedder made them, in int8.
    expected = embedder.embed(["We went hiking.", "The trail was steep!", "Wow, well done."])
    assert stored.sentences is not None and np.abs(stored.sentences.vectors() - expected).max() < 0.01
    (single,) = store.list_stm_pages("u1")
    # One sentence, the whole exchange: the page's own vector is its sentence (not embedded twice).
    assert single.sentences is not None and np.abs(single.sentences.vectors() - single.embedding).max() < 0.01
    assert ["Just one sentence here"] in embedder.calls


def test_looking_is_not_recalling_no_segment_gets_hotter_and_the_ranking_is_the_same(
    store: ChromaStore, embedder: HashEmbedder
) -> None:
    clock = Clock()
    memory = _five_pages(store, embedder, clock)
    looked = memory.retrieve("u1", "mountains trail boots", top_m=2, record_visits=False, explain=True)
    assert all(s.n_visit == 0 for s in store.list_segments("u1")) and looked.mid_term
    assert all(sp.why is not None for sp in looked.mid_term)
    recalled = memory.retrieve("u1", "mountains trail boots", top_m=2)
    assert [(sp.page.id, sp.score) for sp in recalled.mid_term] == [
        (sp.page.id, sp.score) for sp in looked.mid_term
    ]
    assert all(sp.why is None for sp in recalled.mid_term)
    assert {s.id for s in store.list_segments("u1") if s.n_visit == 1} == {
        s.segment.id for s in recalled.segments
    }
