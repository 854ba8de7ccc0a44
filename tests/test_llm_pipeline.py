"""The LLM-driven pipeline with the real openai client against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.service import MemoryService, make_analyzer
from memoryos_mcp.settings import load_settings
from tests.fake_openai import FakeOpenAIServer, Fault, free_port_refusing
from tests.fakes import HashEmbedder, mid_term_pages
from tests.scripted_llm import good_answer

TEXT = {
    "hiking": "I went hiking on the mountain trail with boots",
    "cooking": "I was cooking bread in the oven with flour",
    "guitar": "I practised guitar chords on the strings",
}


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default=good_answer) as server:
        yield server


def make_service(tmp_path: Path, base_url: str, **overrides: Any) -> MemoryService:
    options: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        llm_base_url=base_url,
        llm_api_key="test-key",
        llm_timeout_s=2.0,
        llm_max_retries=0,
        llm_cooldown_s=0.0,
        stm_capacity=3,
        stm_evict_batch=3,
        tau=100.0,  # promotion only where a test lowers it
    )
    options.update(overrides)
    settings = load_settings(**options)
    store = ChromaStore(make_client(data_dir=settings.data_dir), settings.collection_prefix)
    return MemoryService(settings, store, HashEmbedder(), make_analyzer(settings))


def add(service: MemoryService, topic: str, n: int, **kw: Any) -> Any:
    when = f"2024-05-{n % 28 + 1:02d} 10:00:00"
    return service.add_memory(f"{TEXT[topic]} (page {n})", f"Nice {topic}!", timestamp=when, **kw)


def mtm_pages(service: MemoryService) -> list[Any]:
    return mid_term_pages(service.store, "default")


def test_one_call_per_batch_chains_form_and_break(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url)
    for n, topic in enumerate(["hiking", "hiking", "cooking"]):
        assert add(service, topic, n).llm_calls == 0  # STM not yet full
    result = add(service, "cooking", 3)
    assert result.llm_calls == 1 and len(result.moved_to_mid_term) == 3
    assert llm.request_count == 1
    pages = mtm_pages(service)
    assert pages[0].chain_id == pages[1].chain_id != pages[2].chain_id
    assert [p.chain_summary for p in pages] == ["chain about hiking", "chain about hiking", "chain about cooking"]
    assert len(result.segments_created) == 2
    assert result.prompt_tokens > 0 and result.completion_tokens > 0


def test_topics_merge_into_the_right_segment_and_refresh_it(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url)
    for n, topic in enumerate(["hiking", "hiking", "cooking", "cooking", "hiking", "hiking", "guitar"]):
        result = add(service, topic, n)
    # Second batch: cooking and hiking topics match the segments made by the first batch.
    assert result.segments_merged and not result.segments_created
    assert result.llm_calls == 2  # one chain/topic call + one refresh of all merged segments
    segments = {s.id: s for s in service.store.list_segments("default")}
    by_topic = {}
    for page in mtm_pages(service):
        by_topic.setdefault(page.user_input.split()[3], set()).add(page.segment_id)
    assert all(len(ids) == 1 for ids in by_topic.values()), by_topic
    assert len(segments) == 2
    assert any(s.summary.startswith("refreshed") for s in segments.values())


def test_hot_segment_promotes_into_profile_facts_and_traits(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, tau=3.0)
    service.add_memory("I am Maya and I love hiking", "I am Memo, happy to help with hiking.", timestamp="2024-05-01 09:00:00")
    for n in range(1, 4):
        result = add(service, "hiking", n)
    assert result.segments_promoted and result.facts_added >= 3
    profile = service.get_user_profile()
    assert profile.profiling_available
    assert profile.profile.static["name"] == "Maya"
    assert profile.profile.traits["content_interests"]["hiking"].level == "High"
    assert any("[2024-05-01]" in f.text for f in profile.user_knowledge or [])
    assert [t.text for t in profile.assistant_traits or []] == ["The assistant is called Memo."]
    (seg,) = service.store.list_segments("default")
    assert seg.l_interaction == 0
    assert all(p.analyzed for p in mtm_pages(service))
    found = service.retrieve_memory("hiking trail")
    assert found.user_facts and "Maya" in found.context


def test_re_promotion_updates_rather_than_duplicates(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, tau=3.0, stm_capacity=1, stm_evict_batch=1)
    for _ in range(8):
        service.add_memory("I am Maya and I love hiking", "Hiking is great.", timestamp="2024-05-01 09:00:00")
    promotions = llm.requests and sum("TASK: persona" in r["messages"][1]["content"] for r in llm.requests)
    assert promotions >= 2
    knowledge = service.get_user_profile().user_knowledge or []
    texts = [f.text for f in knowledge]
    assert len(texts) == len(set(texts)) == 1  # the same fact learned again is not stored twice


def test_degenerate_answer_never_overwrites_a_good_profile(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, tau=3.0, stm_capacity=1, stm_evict_batch=1)
    for n in range(4):
        service.add_memory("I am Maya and I love hiking", f"ok {n}", timestamp="2024-05-01 09:00:00")
    assert service.get_user_profile().profile.static == {"name": "Maya"}
    empty = {"profile": {"static": {"name": "unknown", "city": ""}, "traits": {}}, "user_facts": [], "assistant_traits": []}

    def degenerate(request: dict[str, Any]) -> Any:
        return empty if "TASK: persona" in request["messages"][1]["content"] else good_answer(request)

    llm.default = degenerate
    for n in range(4):
        service.add_memory("I am Maya and I love hiking", f"again {n}", timestamp="2024-05-02 09:00:00")
    assert service.get_user_profile().profile.static == {"name": "Maya"}


FAULTS = {
    "timeout": lambda: Fault.delay(5.0),
    "http_429": lambda: Fault.http(429),
    "http_500": lambda: Fault.http(500),
    "connection_dropped": lambda: Fault.drop_connection(),
    "malformed_json": lambda: Fault.malformed(),
    "truncated_json": lambda: Fault.truncated({"pages": [{"index": 1, "continues_previous": False}] * 30}),
    "wrong_shape": lambda: {"answer": "I think these pages are about hiking"},
    "enormous": lambda: Fault.huge(2_000_000),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_loses_nothing_and_recovers(
    tmp_path: Path, llm: FakeOpenAIServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(tmp_path, llm.base_url, llm_timeout_s=1.0)
    llm.default = lambda request: FAULTS[fault]()
    caplog.set_level(logging.DEBUG, logger="memoryos_mcp")
    ids = []
    started = time.monotonic()
    for n, topic in enumerate(["hiking", "hiking", "cooking", "cooking", "guitar"]):
        result = add(service, topic, n)
        ids.append(result.page_id)
    assert time.monotonic() - started < 15
    assert result.notes and "deferred" in " ".join(result.notes)
    assert result.llm_failures == 1 and service.stats().llm_failures_total >= 2
    stats = service.stats()
    assert stats.short_term_pages == 5 and stats.mid_term_pages == 0  # nothing lost, analysis pending
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("memoryos_mcp.adapters")]
    assert len(errors) == 1, [r.getMessage() for r in errors]

    llm.default = good_answer  # the model is back: the next call retries the pending analysis
    result = add(service, "guitar", 5)
    assert len(result.moved_to_mid_term) == 3 and result.llm_calls >= 1
    result = add(service, "guitar", 6)
    stats = service.stats()
    assert stats.short_term_pages + stats.mid_term_pages == 7
    everything = service.retrieve_memory("anything", top_k=100, top_m=50)
    assert {p.id for p in everything.short_term + everything.mid_term} >= set(ids)


def test_connection_refused_loses_nothing(tmp_path: Path) -> None:
    service = make_service(tmp_path, free_port_refusing())
    for n in range(5):
        add(service, "hiking", n)
    assert service.stats().short_term_pages == 5


def test_pages_wait_only_so_long_before_the_local_fallback(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url)
    llm.default = lambda request: Fault.http(500)
    for n in range(12):
        result = add(service, "hiking", n)
    stats = service.stats()
    assert stats.mid_term_pages > 0 and stats.short_term_pages <= 3 + 6
    assert any("local fallback" in note for note in result.notes) or stats.short_term_pages < 12


def test_add_memory_stays_within_the_time_budget(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, llm_timeout_s=5.0, add_time_budget_s=1.5)
    llm.default = lambda request: Fault.delay(4.0, then=good_answer(request))
    for n in range(3):
        add(service, "hiking", n)
    started = time.monotonic()
    result = add(service, "hiking", 3)
    assert time.monotonic() - started < 3.0
    assert result.page_id and service.stats().short_term_pages == 4
    assert any("deferred" in note for note in result.notes)


def test_retrieval_makes_no_llm_call(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, tau=3.0)
    for n, topic in enumerate(["hiking", "cooking"] * 4):
        add(service, topic, n)
    before = llm.request_count
    for query in ["hiking", "cooking bread", "what did I do in May?"]:
        service.retrieve_memory(query)
    service.get_user_profile()
    assert llm.request_count == before


def test_llm_calls_per_add_stay_within_target_over_a_long_conversation(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, tau=5.0, stm_capacity=7)
    topics = ["hiking"] * 5 + ["cooking"] * 4 + ["guitar"] * 6
    calls = 0
    for n in range(60):
        calls += add(service, topics[n % len(topics)], n).llm_calls
    assert calls == llm.request_count
    assert calls / 60 <= 1.0
    stats = service.stats()
    assert stats.llm_calls_total == calls and stats.prompt_tokens_total > 0
    assert service.get_user_profile().user_knowledge  # promotions did happen


def test_a_model_that_keeps_answering_garbage_is_rested(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, llm_cooldown_s=60.0)
    llm.default = lambda request: Fault.malformed()
    for n in range(4):
        add(service, "hiking", n)
    assert llm.request_count == 2  # the first failing analysis (answer + repair); then it rests
    for n in range(4, 8):
        result = add(service, "hiking", n)
    assert llm.request_count == 2
    assert any("next try in" in note for note in result.notes)
    assert service.stats().short_term_pages + service.stats().mid_term_pages == 8


def test_user_facts_stay_within_lpm_capacity_and_drops_are_reported(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url, tau=2.0, stm_capacity=1, stm_evict_batch=1, lpm_capacity=3)
    sentences = [
        "I adopted a tabby kitten named Miso",
        "My brother plays cello in Vienna",
        "We repainted the kitchen bright yellow",
        "Quarterly taxes were filed with the accountant",
        "Volcano photography is my new obsession",
        "Grandma turned ninety with a garden party",
        "Chess tournaments fill my Sunday mornings",
    ]
    dropped: list[str] = []
    for n, text in enumerate(sentences):
        result = service.add_memory(text, "Noted.", timestamp=f"2024-05-{n + 1:02d} 10:00:00")
        dropped += result.facts_dropped
    knowledge = [f.text for f in service.get_user_profile().user_knowledge or []]
    assert len(knowledge) == 3
    assert dropped and all(d not in knowledge for d in dropped)
    assert "Miso" in dropped[0]  # oldest first


def test_retrieval_does_not_wait_for_a_slow_add_of_the_same_user(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    import threading

    service = make_service(tmp_path, llm.base_url, llm_timeout_s=5.0)
    for n in range(3):
        add(service, "hiking", n)
    llm.default = lambda request: Fault.delay(3.0, then=good_answer(request))
    slow = threading.Thread(target=add, args=(service, "cooking", 3))
    slow.start()
    time.sleep(0.5)  # the add is now waiting for the model
    started = time.monotonic()
    found = service.retrieve_memory("hiking trail")
    assert time.monotonic() - started < 1.5
    assert found.short_term
    slow.join(10)
    assert service.stats().mid_term_pages == 3
