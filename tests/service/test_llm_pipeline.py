"""The LLM-driven pipeline with the real openai client against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from memoryos_mcp.service.facade import MemoryService
from tests.helpers.fake_openai import FakeOpenAIServer, Fault, free_port_refusing
from tests.helpers.fakes import mid_term_pages
from tests.helpers.llm_services import make_service
from tests.helpers.scripted_llm import good_answer, lazy_answer

TEXT = {
    "hiking": "I went hiking on the mountain trail with boots",
    "cooking": "I was cooking bread in the oven with flour",
    "guitar": "I practised guitar chords on the strings",
}


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default=good_answer) as server:
        yield server


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
    assert [p.chain_summary for p in pages] == [
        "chain about hiking",
        "chain about hiking",
        "chain about cooking",
    ]
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
    service.add_memory(
        "I am Maya and I love hiking",
        "I am Memo, happy to help with hiking.",
        timestamp="2024-05-01 09:00:00",
    )
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
    empty = {
        "profile": {
            "static": {"name": "unknown", "city": "", "age": "...", "traits": "content_interests:"},
            "traits": {},
        },
        "user_facts": ["..."],
        "assistant_traits": [],
    }

    def degenerate(request: dict[str, Any]) -> Any:
        return empty if "TASK: persona" in request["messages"][1]["content"] else good_answer(request)

    llm.default = degenerate
    for n in range(4):
        service.add_memory("I am Maya and I love hiking", f"again {n}", timestamp="2024-05-02 09:00:00")
    profile = service.get_user_profile()
    assert profile.profile.static == {"name": "Maya"}
    assert all(f.text != "..." for f in profile.user_knowledge or [])


UNAVAILABLE = {
    "timeout": lambda: Fault.delay(5.0),
    "http_429": lambda: Fault.http(429),
    "http_500": lambda: Fault.http(500),
    "connection_dropped": lambda: Fault.drop_connection(),
}
BAD_ANSWERS = {
    "malformed_json": lambda: Fault.malformed(),
    "truncated_json": lambda: Fault.truncated({"pages": [{"index": 1, "continues_previous": False}] * 30}),
    "wrong_shape": lambda: {"answer": "I think these pages are about hiking"},
    "enormous": lambda: Fault.huge(2_000_000),
}


def _failing(
    tmp_path: Path, llm: FakeOpenAIServer, fault: Any, caplog: pytest.LogCaptureFixture
) -> MemoryService:
    """A service whose model answers every request with `fault()`, its logs captured."""
    llm.default = lambda request: fault()
    caplog.set_level(logging.DEBUG, logger="memoryos_mcp")
    return make_service(tmp_path, llm.base_url, llm_timeout_s=1.0)


@pytest.mark.parametrize("fault", sorted(UNAVAILABLE))
def test_an_unavailable_model_loses_nothing_and_recovers(
    tmp_path: Path, llm: FakeOpenAIServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = _failing(tmp_path, llm, UNAVAILABLE[fault], caplog)
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
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("memoryos_mcp.adapters")
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]

    llm.default = good_answer  # the model is back: the next call retries the pending analysis
    result = add(service, "guitar", 5)
    assert len(result.moved_to_mid_term) == 3 and result.llm_calls >= 1
    result = add(service, "guitar", 6)
    stats = service.stats()
    assert stats.short_term_pages + stats.mid_term_pages == 7
    everything = service.retrieve_memory("anything", top_k=100, top_m=50)
    assert {p.id for p in everything.short_term + everything.mid_term} >= set(ids)


@pytest.mark.parametrize("fault", sorted(BAD_ANSWERS))
def test_a_bad_answer_costs_one_repair_and_the_batch_goes_on_locally(
    tmp_path: Path, llm: FakeOpenAIServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = _failing(tmp_path, llm, BAD_ANSWERS[fault], caplog)
    results = [
        add(service, topic, n) for n, topic in enumerate(["hiking", "hiking", "cooking", "cooking", "guitar"])
    ]
    moved = results[3]  # the fourth page overflows short-term memory: the first three leave it
    assert moved.llm_calls == 2 and moved.llm_failures == 1  # the answer and its one repair, then no waiting
    assert len(moved.moved_to_mid_term) == 3
    assert any("local fallback" in note for note in moved.notes), moved.notes
    stats = service.stats()
    assert stats.short_term_pages == 2 and stats.mid_term_pages == 3
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("memoryos_mcp.adapters")
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]

    llm.default = good_answer  # a better answer next time is used
    for n in range(5, 7):
        result = add(service, "guitar", n)
    assert result.llm_calls >= 1 and not result.llm_failures
    assert "chain about guitar" in [p.chain_summary for p in mtm_pages(service)]
    everything = service.retrieve_memory("anything", top_k=100, top_m=50)
    assert {p.id for p in everything.short_term + everything.mid_term} >= {r.page_id for r in results}


def test_connection_refused_loses_nothing(tmp_path: Path) -> None:
    service = make_service(tmp_path, free_port_refusing())
    for n in range(5):
        add(service, "hiking", n)
    assert service.stats().short_term_pages == 5


def test_pages_wait_only_so_long_before_the_local_fallback(tmp_path: Path, llm: FakeOpenAIServer) -> None:
    service = make_service(tmp_path, llm.base_url)
    llm.default = lambda request: Fault.http(500)
    notes = [note for n in range(12) for note in add(service, "hiking", n).notes]
    stats = service.stats()
    assert stats.mid_term_pages > 0 and stats.short_term_pages <= 3 + 6
    assert any("local fallback" in note for note in notes)


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


def test_llm_calls_per_add_stay_within_target_over_a_long_conversation(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
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
    notes = [note for n in range(4, 8) for note in add(service, "hiking", n).notes]
    assert llm.request_count == 2
    assert any("next try in" in note and "local fallback" in note for note in notes), notes
    assert service.stats().short_term_pages + service.stats().mid_term_pages == 8


def test_user_facts_stay_within_lpm_capacity_and_drops_are_reported(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
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


def test_retrieval_does_not_wait_for_a_slow_add_of_the_same_user(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
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


def test_each_question_carries_a_json_schema_a_good_answer_meets_and_a_lazy_one_does_not(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    service = make_service(tmp_path, llm.base_url, tau=3.0)
    for n, topic in enumerate(["hiking", "hiking", "cooking", "cooking", "hiking", "hiking", "guitar"]):
        add(service, topic, n)
    by_task: dict[str, dict[str, Any]] = {}
    for request in llm.requests:
        fmt = request["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is False
        by_task.setdefault(fmt["json_schema"]["name"], request)
    assert set(by_task) == {"chain_and_topics", "refresh_segments", "persona"}
    for task, request in by_task.items():
        schema = request["response_format"]["json_schema"]["schema"]
        jsonschema.validate(good_answer(request), schema)
        if task != "persona":  # a persona of "..." fits its schema; the analyzer drops those values
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(lazy_answer(request), schema)  # one page of three, one segment of two
    pages = by_task["chain_and_topics"]["response_format"]["json_schema"]["schema"]["properties"]["pages"]
    assert pages["minItems"] == pages["maxItems"] == 3


def test_lazy_answers_count_as_failures_and_cost_at_most_one_call_per_add(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    # cooldown 0: the worst case, the lazy model is asked again at every batch.
    service = make_service(tmp_path, llm.base_url, stm_capacity=7, tau=5.0)
    llm.default = lazy_answer
    topics = ["hiking"] * 5 + ["cooking"] * 4 + ["guitar"] * 6
    results = [add(service, topics[n % len(topics)], n) for n in range(60)]
    calls = sum(r.llm_calls for r in results)
    assert calls == llm.request_count
    assert calls / len(results) <= 1.0, calls
    notes = [note for r in results for note in r.notes]
    assert any("local fallback" in note and "covered 1 of 3 pages" in note for note in notes), notes
    assert not any("deferred" in note for note in notes), notes  # no batch waits for the same answer again
    assert sum(r.llm_failures for r in results) >= len(results) // 3 - 3
    stats = service.stats()
    assert stats.short_term_pages <= 7 and stats.short_term_pages + stats.mid_term_pages == 60
    assert "..." not in {p.chain_summary for p in mtm_pages(service)}
    profile = service.get_user_profile()
    assert profile.profile.static == {} and not profile.user_knowledge  # the copied "..." is never learned
    found = {p.id for p in mtm_pages(service)} | {p.id for p in service.retrieve_memory("hiking").short_term}
    assert found == {r.page_id for r in results}
    for r in results[::7]:  # and retrievable by what they say
        page = next(
            p for p in mtm_pages(service) + service.retrieve_memory("x").short_term if p.id == r.page_id
        )
        hits = service.retrieve_memory(page.user_input, top_k=20, top_m=10)
        assert r.page_id in {p.id for p in hits.short_term + hits.mid_term}


def test_an_endpoint_like_llama_cpp_is_probed_once_then_asked_with_json_object_and_schema(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    def llama_cpp_like(request: dict[str, Any]) -> Any:
        if request.get("response_format", {}).get("type") == "json_schema":
            return Fault.http(500, {"detail": "Input should be 'text' or 'json_object'"})
        return good_answer(request)

    llm.default = llama_cpp_like
    service = make_service(tmp_path, llm.base_url)
    results = [
        add(service, topic, n)
        for n, topic in enumerate(["hiking", "hiking", "cooking", "cooking", "hiking", "hiking", "guitar"])
    ]
    types = [r.get("response_format", {}).get("type") for r in llm.requests]
    assert types[0] == "json_schema" and set(types[1:]) == {"json_object"} and len(types) >= 3
    assert not any(r.llm_failures for r in results)
    assert service.stats().mid_term_pages == 6


def test_a_page_left_without_a_chain_summary_gets_the_local_one_and_the_answer_is_kept(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    def one_blank(request: dict[str, Any]) -> Any:
        answer = good_answer(request)
        if "pages" in answer and "topics" in answer:
            answer["pages"][1]["chain_summary"] = "..."
        return answer

    llm.default = one_blank
    service = make_service(tmp_path, llm.base_url)
    results = [add(service, topic, n) for n, topic in enumerate(["hiking", "hiking", "cooking", "cooking"])]
    assert not results[3].llm_failures and len(results[3].moved_to_mid_term) == 3
    summaries = [p.chain_summary for p in mtm_pages(service)]
    assert summaries[0] == "chain about hiking" and summaries[2] == "chain about cooking"
    assert "mountain trail" in summaries[1]  # extractive, from the page itself


def test_a_failing_endpoint_costs_a_few_calls_then_rests_and_every_page_is_kept(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    service = make_service(
        tmp_path, llm.base_url, llm_max_retries=1, llm_cooldown_s=30.0, add_time_budget_s=5.0
    )
    llm.default = lambda request: Fault.http(500)
    results, slowest = [], 0.0
    for n in range(30):
        started = time.monotonic()
        results.append(add(service, "hiking", n))
        slowest = max(slowest, time.monotonic() - started)
    # json_schema -> 500, one step down to json_object+schema -> 500, one retry after a backoff -> 500; then rest.
    assert llm.request_count == sum(r.llm_calls for r in results) == 3
    assert slowest < 5.0
    stats = service.stats()
    assert stats.short_term_pages + stats.mid_term_pages == 30 and stats.short_term_pages <= 3 + 6
    found = service.retrieve_memory("hiking trail", top_k=100, top_m=50)
    assert {p.id for p in found.short_term + found.mid_term} == {r.page_id for r in results}
