"""What the user controls: idempotent adds, time filters, listing and forgetting (issue 9)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.adapters.snapshots import SnapshotStore
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.schemas import ListedFactOut
from memoryos_mcp.service.settings import Settings
from tests.helpers.fake_openai import FakeOpenAIServer
from tests.helpers.fakes import HashEmbedder
from tests.helpers.llm_services import make_service
from tests.helpers.mcp_calls import call, error
from tests.helpers.scripted_llm import good_answer

# ---------------------------------------------------------------------------------------------- idempotency


async def test_a_retried_add_with_the_same_key_stores_one_page(server: MCPServer) -> None:
    async with Client(server) as client:
        first = await call(
            client, "add_memory", user_input="I adopted a cat named Miso", idempotency_key="turn-1"
        )
        again = await call(
            client, "add_memory", user_input="I adopted a cat named Miso", idempotency_key="turn-1"
        )
        assert (
            again["page_id"] == first["page_id"] and again["already_stored"] and not first["already_stored"]
        )
        other_user = await call(
            client, "add_memory", user_input="hello", idempotency_key="turn-1", user_id="bob"
        )
        assert other_user["page_id"] != first["page_id"] and not other_user["already_stored"]
        assert (await call(client, "memory_stats"))["short_term_pages"] == 1
        assert (await call(client, "memory_stats", user_id="bob"))["short_term_pages"] == 1


def test_a_key_is_still_known_after_its_page_moved_to_mid_term(service: MemoryService) -> None:
    first = service.add_memory("the first thing", "ok", idempotency_key="k0")
    for i in range(12):  # pushes k0's page out of short-term memory
        service.add_memory(f"later thing number {i}", "ok")
    assert service.memory.state("default").index.get(first.page_id) is not None
    again = service.add_memory("the first thing", "ok", idempotency_key="k0")
    assert again.page_id == first.page_id and again.already_stored
    assert service.stats().mid_term_pages + service.stats().short_term_pages == 13


def _race(replicas: list[MemoryService]) -> list[str]:
    start = threading.Barrier(len(replicas))
    ids: list[str] = []

    def add(service: MemoryService) -> None:
        start.wait()
        ids.append(service.add_memory("my sister lives in Porto", "noted", idempotency_key="retry-7").page_id)

    threads = [threading.Thread(target=add, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return ids


def test_two_concurrent_adds_with_one_key_store_one_page(service: MemoryService, store: ChromaStore) -> None:
    ids = _race([service, service])
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [p.id for p in store.list_stm_pages("default")] == [ids[0]]


def test_two_concurrent_adds_with_one_key_through_two_replicas_store_one_page(
    settings: Settings, chroma_server: int
) -> None:
    prefix = f"idem{uuid.uuid4().hex[:8]}"
    stores = [ChromaStore(make_client(host="127.0.0.1", port=chroma_server), prefix) for _ in range(2)]
    ids = _race([MemoryService(settings, s, HashEmbedder(), LocalAnalyzer()) for s in stores])
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [p.id for p in stores[0].list_stm_pages("default")] == [ids[0]]


def test_an_empty_or_huge_key_is_refused(service: MemoryService) -> None:
    for bad in ("", "   ", "k" * 257):
        with pytest.raises(InvalidInputError, match="idempotency_key"):
            service.add_memory("hi", "", idempotency_key=bad)


# ---------------------------------------------------------------------------------------------- time filters


def _history(service: MemoryService) -> dict[str, str]:
    ids = {}
    for day in range(1, 21):
        stamp = f"2024-05-{day:02d}T10:00:00"
        ids[stamp[:10]] = service.add_memory(
            f"garden note for day {day}: tomatoes and basil", "ok", timestamp=stamp
        ).page_id
    return ids


def test_retrieve_since_until_keeps_only_pages_in_the_range(service: MemoryService) -> None:
    ids = _history(service)
    everything = service.retrieve_memory("tomatoes basil garden", top_k=30, top_m=10)
    assert len(everything.mid_term) + len(everything.short_term) == 20
    found = service.retrieve_memory(
        "tomatoes basil garden", top_k=30, top_m=10, since="2024-05-03", until="2024-05-06"
    )
    dates = sorted(p.timestamp[:10] for p in found.mid_term + found.short_term)
    assert dates == [
        "2024-05-03",
        "2024-05-04",
        "2024-05-05",
        "2024-05-06",
    ]  # inclusive, a date = the whole day
    assert {p.id for p in found.mid_term + found.short_term} == {ids[d] for d in dates}
    late = service.retrieve_memory("tomatoes", top_k=30, top_m=10, since="2024-05-19T10:00:00")
    assert sorted(p.timestamp[:10] for p in late.mid_term + late.short_term) == ["2024-05-19", "2024-05-20"]
    early = service.retrieve_memory("tomatoes", top_k=30, top_m=10, until="2024-05-01T09:59:59")
    assert early.mid_term == [] and early.short_term == []


async def test_bad_ranges_are_tool_errors(server: MCPServer) -> None:
    async with Client(server) as client:
        text = await error(client, "retrieve_memory", query="x", since="2024-06-01", until="2024-05-01")
        assert "since" in text and "after until" in text
        assert "not understood" in await error(client, "retrieve_memory", query="x", since="last tuesday")


# ---------------------------------------------------------------------------------------------- listing

TOPICS = [
    "tomatoes and basil in the garden",
    "the hiking trail above the valley",
    "guitar chords and strings",
]


def _fill(
    service: MemoryService, n: int, user: str = "default", secret_at: int | None = None
) -> dict[int, str]:
    ids = {}
    for i in range(n):
        text = f"day {i}: {TOPICS[i % 3]}"
        if i == secret_at:
            text += " and my locker code word is xylophonequartz"
        stamp = f"2024-05-{1 + i // 3:02d}T{8 + i % 3:02d}:00:00"
        ids[i] = service.add_memory(text, "noted", user_id=user, timestamp=stamp).page_id
    return ids


def test_list_pages_newest_first_in_pages_with_a_cursor(service: MemoryService) -> None:
    ids = _fill(service, 25)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        listed = service.list_memories(limit=10, cursor=cursor)
        assert listed.pages is not None
        seen += [p.id for p in listed.pages]
        cursor = listed.next_cursor
        if cursor is None:
            break
    assert seen == [ids[i] for i in reversed(range(25))]  # every page once, newest first
    tiers = {p.tier for p in service.list_memories(limit=200).pages or []}
    assert tiers == {"short_term", "mid_term"}
    short = service.list_memories(tier="short_term", limit=200).pages or []
    assert [p.id for p in short] == [ids[i] for i in reversed(range(25 - len(short), 25))]
    mid = service.list_memories(tier="mid_term", limit=200).pages or []
    assert mid and all(p.tier == "mid_term" for p in mid)
    window = service.list_memories(since="2024-05-02", until="2024-05-03", limit=200).pages or []
    assert [p.id for p in window] == [ids[i] for i in (8, 7, 6, 5, 4, 3)]
    segments = service.list_memories(kind="segments").segments
    assert segments and sum(s.page_count for s in segments) == service.stats().mid_term_pages
    facts = service.list_memories(kind="facts")
    assert facts.facts == [] and facts.profile is not None


def test_a_long_archived_history_lists_from_its_keys_read_once(
    settings: Settings, store: ChromaStore, embedder: HashEmbedder
) -> None:
    """Archived pages are out of the index: listings page through their keys, read from the store once and
    kept until something archived changes (archiving, forgetting), and read only the pages they show."""
    tight = settings.model_copy(
        update={"mtm_capacity": 2, "theta": 1.99, "stm_capacity": 2, "stm_evict_batch": 1}
    )
    service = MemoryService(tight, store, embedder, LocalAnalyzer(tight.chain_threshold))
    ids = _fill(service, 30)
    assert service.stats().archived_segments > 10
    reads: list[int] = []
    whole = store.pages_of_segments

    def counted(user_id: str, segment_ids: list[str]) -> Any:
        reads.append(len(segment_ids))
        return whole(user_id, segment_ids)

    store.pages_of_segments = counted  # type: ignore[method-assign]
    asked: list[int] = []
    by_id = store.get_mtm_pages

    def counted_ids(user_id: str, page_ids: list[str]) -> Any:
        asked.append(len(page_ids))
        return by_id(user_id, page_ids)

    store.get_mtm_pages = counted_ids  # type: ignore[method-assign]

    def listing(svc: MemoryService, **options: Any) -> list[str]:
        seen, cursor = [], None
        while True:
            listed = svc.list_memories(limit=4, cursor=cursor, **options)
            seen += [p.id for p in listed.pages or []]
            cursor = listed.next_cursor
            if cursor is None:
                return seen

    cached = service.memory.states.nbytes
    assert listing(service) == [ids[i] for i in reversed(range(30))]  # every page once, newest first
    state = service.memory.states.peek("default")
    assert state is not None and state.archive is not None  # the keys count in the cache's budget
    assert service.memory.states.nbytes >= cached + state.archive.nbytes
    assert len(reads) == 1  # the archived pages' keys: one read for eight listings
    assert asked and max(asked) <= 5  # then only the pages each listing shows (limit 4, and one to know more)
    assert sum(service.timeline().values()) == 30 and len(reads) == 1  # pages per day, archived ones too
    window = listing(service, since="2024-05-02", until="2024-05-03")
    assert window == [ids[i] for i in (8, 7, 6, 5, 4, 3)] and len(reads) == 1
    segments = service.list_memories(kind="segments", limit=200).segments or []
    assert sum(s.archived for s in segments) == service.stats().archived_segments and len(reads) == 1
    # forgetting an archived page: gone from the listing (the keys are read again)
    service.forget_memory(page_ids=[ids[3]])
    before = len(reads)
    assert listing(service) == [ids[i] for i in reversed(range(30)) if i != 3] and len(reads) == before + 1
    # new pages archive older segments: they appear (read again), and another reader agrees
    more = _fill(service, 3)
    fresh = MemoryService(tight, store, embedder, LocalAnalyzer(tight.chain_threshold))  # nothing cached
    cached = listing(service)
    assert cached == listing(fresh) and len(cached) == 32
    assert set(cached) == set(more.values()) | {ids[i] for i in range(30) if i != 3}
    # a replica forgets an archived page: this process's cached keys follow its change log
    fresh.forget_memory(page_ids=[ids[5]])
    assert ids[5] not in listing(service) and len(listing(service)) == 31
    # forgetting everything dated before 2024-05-03, archived pages included: only those pages are read
    asked.clear()
    archived_now, k = service.stats().archived_segments, len(reads)
    gone = service.forget_memory(before="2024-05-03")
    assert max(asked) <= gone.pages_removed  # the archived pages it forgets, not every archived page
    assert max(reads[k:], default=0) < archived_now  # only the segments it touches are read whole
    left = listing(fresh)
    assert left == listing(service) and len(left) == 31 - gone.pages_removed and gone.pages_removed == 7
    assert all(p.timestamp >= "2024-05-03" for p in service.list_memories(limit=200).pages or [])


def test_list_rejects_a_foreign_cursor_and_bad_choices(service: MemoryService) -> None:
    _fill(service, 12)
    cursor = service.list_memories(limit=2).next_cursor
    assert cursor
    with pytest.raises(InvalidInputError, match="cursor"):
        service.list_memories(kind="segments", cursor=cursor)
    with pytest.raises(InvalidInputError, match="cursor"):
        service.list_memories(cursor="not-a-cursor")
    with pytest.raises(InvalidInputError, match="tier 'long' is not one of"):
        service.list_memories(tier="long")
    with pytest.raises(InvalidInputError, match="limit"):
        service.list_memories(limit=201)


# ---------------------------------------------------------------------------------------------- forgetting


def _mentions(service: MemoryService, word: str, user: str = "default") -> list[str]:
    """Everywhere the word still shows: pages (texts, chain summaries), segments, retrieval context."""
    found = []
    for page in service.list_memories(user_id=user, limit=200).pages or []:
        if word in page.user_input + page.agent_response + page.chain_summary:
            found.append(f"page {page.id}")
    for segment in service.list_memories(user_id=user, kind="segments", limit=200).segments or []:
        if word in segment.summary or word in segment.keywords:
            found.append(f"segment {segment.id}")
    hit = service.retrieve_memory(word, user_id=user, top_k=50, top_m=50)
    if word in hit.context:
        found.append("retrieval context")
    return found


def test_forget_pages_removes_them_everywhere_and_after_a_restart(
    settings: Settings, service: MemoryService
) -> None:
    ids = _fill(service, 30, secret_at=4)
    bob = service.add_memory("bob's own page", "ok", user_id="bob").page_id
    secret = ids[4]
    assert _mentions(service, "xylophonequartz")  # before: the word is found
    report = service.forget_memory(page_ids=[secret, "pg_nothing", bob])
    assert report.page_ids_removed == [secret] and report.pages_removed == 1
    assert sorted(report.unknown_page_ids) == sorted(
        ["pg_nothing", bob]
    )  # bob's page is not alice's to forget
    assert report.segments_recomputed + report.segments_removed == 1
    assert _mentions(service, "xylophonequartz") == []
    assert service.stats().mid_term_pages + service.stats().short_term_pages == 29
    assert service.retrieve_memory("bob", user_id="bob").short_term[0].id == bob

    restarted = MemoryService(
        settings, ChromaStore(make_client(data_dir=settings.data_dir)), HashEmbedder(), LocalAnalyzer()
    )
    assert _mentions(restarted, "xylophonequartz") == []
    assert restarted.store.find_pages("default", [secret]) == {}
    assert restarted.stats().mid_term_pages + restarted.stats().short_term_pages == 29
    again = restarted.forget_memory(page_ids=[secret])
    assert again.pages_removed == 0 and again.unknown_page_ids == [secret]


def test_forget_before_a_date_and_emptied_segments_go(service: MemoryService) -> None:
    ids = _fill(service, 30)
    report = service.forget_memory(before="2024-05-04")  # days 1-3: pages 0-8
    assert sorted(report.page_ids_removed) == sorted(ids[i] for i in range(9))
    left = service.list_memories(limit=200).pages or []
    assert len(left) == 21 and min(p.timestamp for p in left) >= "2024-05-04"
    segments = service.list_memories(kind="segments", limit=200).segments or []
    assert all(s.page_count > 0 for s in segments)
    assert sum(s.page_count for s in segments) == service.stats().mid_term_pages
    # forgotten pages no longer heat their segment: L_interaction counts only kept pages (none analysed here)
    assert all(s.l_interaction <= s.page_count for s in segments)
    assert (
        len(service.retrieve_memory("garden tomatoes", top_k=50, top_m=50).mid_term)
        + len(service.retrieve_memory("x").short_term)
        <= 21
    )


def test_an_empty_forget_and_a_wrong_confirm_are_errors(service: MemoryService) -> None:
    _fill(service, 3)
    with pytest.raises(InvalidInputError, match="needs something to forget"):
        service.forget_memory()
    with pytest.raises(InvalidInputError, match="pass confirm='default'"):
        service.forget_memory(everything=True, confirm="someone-else")
    with pytest.raises(InvalidInputError, match="not understood"):
        service.forget_memory(before="last year")
    assert service.stats().short_term_pages == 3


def test_forget_all_leaves_no_record_and_no_cached_copy_anywhere(
    settings: Settings, store: ChromaStore
) -> None:
    a = MemoryService(settings, store, HashEmbedder(), LocalAnalyzer())
    b = MemoryService(settings, store, HashEmbedder(), LocalAnalyzer())  # another server on the same store
    _fill(a, 30, user="alice", secret_at=7)
    _fill(a, 12, user="bob")
    assert b.retrieve_memory("xylophonequartz", user_id="alice", top_k=50).mid_term  # b caches alice
    report = a.forget_memory(user_id="alice", everything=True, confirm="alice")
    assert report.everything and report.pages_removed == 30
    for collection in (store.stm, store.mtm, store.visits, store.lpm, store.meta):
        assert collection.get(where={"user_id": "alice"})["ids"] == [], collection.name
    for service in (a, b):
        found = service.retrieve_memory("xylophonequartz", user_id="alice", top_k=50)
        assert found.mid_term == [] and found.short_term == []
        assert service.stats("alice").mid_term_pages == 0
        assert service.stats("bob").short_term_pages + service.stats("bob").mid_term_pages == 12
    fresh = b.add_memory("a new beginning", "ok", user_id="alice")  # the user can start again
    assert [p.id for p in a.list_memories(user_id="alice").pages or []] == [fresh.page_id]


def test_chain_summaries_that_quoted_a_forgotten_page_are_recomputed(service: MemoryService) -> None:
    ids = {}
    for i in range(24):  # one topic throughout: the dialogue chain runs on, its summary carrying page 4
        extra = " xylophonequartz xylophonequartz locker code" if i == 4 else ""
        ids[i] = service.add_memory(f"tomatoes basil garden soil watering note {i}{extra}", "ok").page_id
    quoting = [
        p.id
        for p in service.list_memories(limit=200).pages or []
        if "xylophonequartz" in p.chain_summary and p.id != ids[4]
    ]
    assert quoting, "precondition: later pages' chain summaries quote page 4"
    report = service.forget_memory(page_ids=[ids[4]])
    assert set(quoting) <= set(ids.values()) and report.chain_summaries_recomputed >= 1
    assert _mentions(service, "xylophonequartz") == []
    head = service.memory.state("default").chain_head
    assert head is not None and "xylophonequartz" not in head.chain_summary + head.last_page_text


def _learned_facts(
    tmp_path: Path, llm: FakeOpenAIServer
) -> tuple[MemoryService, ListedFactOut, ListedFactOut]:
    """A service whose language model learned two facts: one from page 5 alone, one from every page."""
    service = make_service(tmp_path, llm.base_url, tau=3.0, stm_capacity=1, stm_evict_batch=1)
    for i in range(12):
        secret = i == 5
        text = "My locker code is zebra-42 and I love hiking" if secret else "I am Maya and I love hiking"
        service.add_memory(text, "Hiking is great.", timestamp=f"2024-05-{i + 1:02d} 09:00:00")
    facts = service.list_memories(kind="facts").facts or []
    (locker,) = [f for f in facts if "zebra-42" in f.text]
    (maya,) = [f for f in facts if "I am Maya" in f.text]
    return service, locker, maya


def test_facts_learned_only_from_forgotten_pages_go_and_others_stay(tmp_path: Path) -> None:
    with FakeOpenAIServer(default=good_answer) as llm:
        service, locker, maya = _learned_facts(tmp_path, llm)
        assert locker.source_pages and set(maya.source_pages) - set(locker.source_pages), "precondition"
        report = service.forget_memory(page_ids=locker.source_pages)
        assert locker.id in report.fact_ids_removed and maya.id not in report.fact_ids_removed
        after = {f.id: f for f in service.list_memories(kind="facts").facts or []}
        assert locker.id not in after
        assert after[maya.id].source_pages == [p for p in maya.source_pages if p not in locker.source_pages]
        assert "zebra-42" not in service.retrieve_memory("locker code").context
        named = service.forget_memory(fact_ids=[maya.id, "fact_unknown"])
        assert named.fact_ids_removed == [maya.id] and named.unknown_fact_ids == ["fact_unknown"]
        assert service.get_user_profile().user_knowledge == []


async def test_every_tool_carries_honest_annotations(server: MCPServer) -> None:
    async with Client(server) as client:
        tools = {t.name: t.annotations for t in (await client.list_tools()).tools}
    assert set(tools) >= {
        "add_memory",
        "retrieve_memory",
        "get_user_profile",
        "memory_stats",
        "list_memories",
        "forget_memory",
    }
    for name, hints in tools.items():
        assert hints is not None and hints.open_world_hint is False, name
    for name in ("get_user_profile", "memory_stats", "list_memories"):
        assert tools[name].read_only_hint is True, name
    assert tools["forget_memory"].destructive_hint is True and tools["forget_memory"].read_only_hint is False
    assert tools["retrieve_memory"].read_only_hint is False  # it records visits (heat)
    assert tools["add_memory"].destructive_hint is False


async def test_list_and_forget_through_the_mcp_tools(server: MCPServer) -> None:
    async with Client(server) as client:
        for i in range(14):
            await call(
                client,
                "add_memory",
                user_input=f"note {i}" + (" with a quokka" if i == 2 else ""),
                idempotency_key=f"n{i}",
            )
        listed = await call(client, "list_memories", limit=5)
        assert len(listed["pages"]) == 5 and listed["next_cursor"]
        rest = await call(client, "list_memories", limit=200, cursor=listed["next_cursor"])
        everything = listed["pages"] + rest["pages"]
        assert len(everything) == 14 and "next_cursor" not in rest or rest["next_cursor"] is None
        (quokka,) = [p["id"] for p in everything if "quokka" in p["user_input"]]
        forgot = await call(client, "forget_memory", page_ids=[quokka])
        assert forgot["page_ids_removed"] == [quokka]
        found = await call(client, "retrieve_memory", query="quokka", top_k=50)
        assert "quokka" not in found["context"]
        assert "needs something to forget" in await error(client, "forget_memory")
        assert "confirm='default'" in await error(client, "forget_memory", all=True)
        done = await call(client, "forget_memory", all=True, confirm="default")
        assert done["everything"] and done["pages_removed"] == 13


def test_a_forgotten_page_leaves_the_index_snapshot_on_disk(
    settings: Settings, store: ChromaStore, tmp_path: Path
) -> None:
    snapshots = SnapshotStore(tmp_path / "snap", identity="test")
    service = MemoryService(settings, store, HashEmbedder(), LocalAnalyzer(), snapshots)
    service.memory.keeper.min_pages = 5
    ids = _fill(service, 30, secret_at=3)
    assert service.memory.save_snapshots() == 1
    assert b"xylophonequartz" in snapshots.path("default").read_bytes()
    service.forget_memory(page_ids=[ids[3]])
    for thread in threading.enumerate():
        if thread.name.startswith("snapshot-"):
            thread.join(10)
    path = snapshots.path("default")
    assert not path.exists() or b"xylophonequartz" not in path.read_bytes()
    restarted = MemoryService(settings, store, HashEmbedder(), LocalAnalyzer(), snapshots)
    assert _mentions(restarted, "xylophonequartz") == []


def test_a_replica_stops_returning_a_page_another_replica_forgot(
    settings: Settings, chroma_server: int
) -> None:
    prefix = f"forget{uuid.uuid4().hex[:8]}"
    a, b = (
        MemoryService(
            settings,
            ChromaStore(make_client(host="127.0.0.1", port=chroma_server), prefix),
            HashEmbedder(),
            LocalAnalyzer(),
        )
        for _ in range(2)
    )
    ids = {}
    for i in range(24):  # one chain: forgetting page 4 rewrites the chain summaries after it
        extra = " xylophonequartz locker code" if i == 4 else ""
        ids[i] = a.add_memory(f"tomatoes basil garden soil watering note {i}{extra}", "ok").page_id
    assert _mentions(b, "xylophonequartz")  # b has loaded and cached the user
    report = a.forget_memory(page_ids=[ids[4]])
    assert report.chain_summaries_recomputed >= 1
    assert _mentions(b, "xylophonequartz") == []  # replayed from the change log, rewritten pages re-read
    assert b.stats().mid_term_pages == a.stats().mid_term_pages


def test_with_an_llm_the_segment_summary_is_rewritten_from_the_kept_pages(tmp_path: Path) -> None:
    with FakeOpenAIServer(default=good_answer) as llm:
        service = make_service(tmp_path, llm.base_url)
        for i in range(8):
            service.add_memory(f"I went hiking on the mountain trail, day {i}", "Nice hiking!")
        (segment,) = service.list_memories(kind="segments").segments or []
        page = next(p for p in service.list_memories(tier="mid_term").pages or [])
        before = len(llm.requests)
        report = service.forget_memory(page_ids=[page.id])
        assert report.segments_recomputed == 1
        refresh = [
            r for r in llm.requests[before:] if "TASK: refresh_segments" in r["messages"][1]["content"]
        ]
        assert len(refresh) == 1 and segment.summary not in refresh[0]["messages"][1]["content"]
        (after,) = service.list_memories(kind="segments").segments or []
        assert after.summary.startswith("refreshed") and after.page_count == segment.page_count - 1


def test_a_dry_run_says_exactly_what_the_forget_then_does_and_changes_nothing(tmp_path: Path) -> None:
    with FakeOpenAIServer(default=good_answer) as llm:
        service, locker, maya = _learned_facts(tmp_path, llm)
        assert set(locker.source_pages) & set(maya.source_pages), "precondition: a fact is kept, trimmed"

        def memory() -> tuple[object, ...]:
            stats = service.stats().model_dump(exclude={"peak_rss_mb", "cache_mb"})  # of the process
            return stats, service.list_memories(limit=200), service.list_memories(kind="facts")

        before = memory()
        requests = len(llm.requests)
        preview = service.forget_memory(page_ids=locker.source_pages, dry_run=True)
        assert preview.dry_run and len(llm.requests) == requests  # no segment rewritten, no model called
        assert memory() == before
        assert locker.id in preview.fact_ids_removed and maya.id in preview.fact_ids_trimmed
        done = service.forget_memory(page_ids=locker.source_pages)
        assert not done.dry_run
        assert done.model_dump(exclude={"dry_run"}) == preview.model_dump(exclude={"dry_run"})


def test_a_dry_run_of_forgetting_everything_needs_no_confirm_and_keeps_everything(
    service: MemoryService,
) -> None:
    for i in range(10):
        service.add_memory(f"hiking trail note {i}", "ok")
    preview = service.forget_memory(everything=True, dry_run=True)
    assert preview.dry_run and preview.everything and preview.pages_removed == 10
    assert service.stats().short_term_pages + service.stats().mid_term_pages == 10
    with pytest.raises(InvalidInputError):
        service.forget_memory(everything=True)  # the real one still needs confirm
    done = service.forget_memory(everything=True, confirm="default")
    assert done.pages_removed == preview.pages_removed


def test_the_persons_corrections_keep_their_sources_and_later_learning_never_overwrites_them(
    tmp_path: Path,
) -> None:
    with FakeOpenAIServer(default=good_answer) as llm:
        service = make_service(tmp_path, llm.base_url, tau=3.0, stm_capacity=1, stm_evict_batch=1)

        def talk(days: range) -> None:
            for i in days:
                service.add_memory(
                    "I am Maya and I love hiking", "Hiking is great.", timestamp=f"2024-05-{i:02d} 09:00"
                )

        talk(range(1, 9))
        assert service.get_user_profile().profile.static == {"name": "Maya"}
        (fact, *_) = [f for f in service.list_memories(kind="facts").facts or [] if "Maya" in f.text]
        fixed = service.update_memory(fact_id=fact.id[:13], text="The user's name is Mia; she loves hiking")
        assert fixed.fact is not None and fixed.fact.id == fact.id and fixed.fact.corrected_from == fact.text
        assert fixed.fact.source_pages == fact.source_pages
        profile = service.update_memory(profile_key="name", profile_value="Mia").profile
        assert profile is not None and profile.static["name"] == "Mia" and profile.set_by_person == ["name"]
        facts_before = {f.id for f in service.list_memories(kind="facts").facts or []}

        talk(range(9, 20))  # the same words again: promotions learn "Maya" once more
        after = {f.id: f for f in service.list_memories(kind="facts").facts or []}
        assert after[fact.id].text == "The user's name is Mia; she loves hiking"
        assert len(after[fact.id].source_pages) > len(fact.source_pages)  # learned again: only more sources
        assert not [f for f in after.values() if f.id not in facts_before and "Maya" in f.text]
        assert service.get_user_profile().profile.static["name"] == "Mia"
        # a restart reads the same (stored, not only cached)
        fresh = make_service(tmp_path, llm.base_url)
        assert fresh.get_user_profile().profile.static["name"] == "Mia"
        assert {f.id: f.text for f in fresh.list_memories(kind="facts").facts or []}[fact.id] == after[
            fact.id
        ].text
        removed = service.update_memory(profile_key="name").profile
        assert removed is not None and "name" not in removed.static


def test_update_memory_takes_one_thing_and_says_what_is_wrong(service: MemoryService) -> None:
    service.add_memory("hello", "hi")
    for bad in (
        {},
        {"fact_id": "fact_x", "text": "t", "profile_key": "name"},
        {"fact_id": "fact_0123456789abcdef0123", "text": "new"},
        {"fact_id": "fact_0123456789abcdef0123", "text": "  "},
        {"profile_key": "1 bad key!"},
    ):
        with pytest.raises(InvalidInputError):
            service.update_memory(**bad)  # type: ignore[arg-type]


def test_a_segments_pages_and_the_pages_per_day(service: MemoryService) -> None:
    for i in range(20):
        service.add_memory(
            f"tomatoes basil garden note {i}", "ok", timestamp=f"2024-05-{1 + i % 4:02d} 10:00"
        )
    (segment, *_) = service.list_memories(kind="segments").segments or []
    first = service.list_memories(segment_id=segment.id, limit=3)
    pages = list(first.pages or [])
    cursor = first.next_cursor
    while cursor:
        more = service.list_memories(segment_id=segment.id, limit=3, cursor=cursor)
        pages += more.pages or []
        cursor = more.next_cursor
    assert len(pages) == segment.page_count and all(p.segment_id == segment.id for p in pages)
    assert len({p.id for p in pages}) == len(pages)  # newest stored first, each once
    with pytest.raises(InvalidInputError):
        service.list_memories(segment_id="seg_nope")
    days = service.timeline()
    assert days == {"2024-05-01": 5, "2024-05-02": 5, "2024-05-03": 5, "2024-05-04": 5}


def test_pages_by_id_from_either_tier_and_only_the_users(service: MemoryService) -> None:
    for i in range(12):
        service.add_memory(f"tomatoes basil garden note {i}", "ok", timestamp=f"2024-05-{1 + i:02d} 10:00")
    everything = service.list_memories(limit=50).pages or []
    tiers = {p.tier for p in everything}
    assert tiers == {"short_term", "mid_term"}
    wanted = [everything[0].id, everything[-1].id]
    found = service.list_memories(page_ids=[*wanted, "page_unknown"]).pages or []
    assert [p.id for p in found] == wanted  # newest first; an unknown id is left out
    assert service.list_memories(user_id="bob", page_ids=wanted).pages == []
    with pytest.raises(InvalidInputError):
        service.list_memories(kind="facts", page_ids=wanted)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_forget_all_asks_the_person_when_the_client_can_ask(server: MCPServer, mode: str) -> None:
    """forget_memory(all=true) without confirm, from a client with form elicitation: the person is asked with
    what would go, and only a yes forgets. (Without elicitation the confirm rule stands: the test above.)"""
    from mcp_types import ElicitResult

    answers: list[dict[str, Any] | None] = [None, {"forget_everything": False}, {"forget_everything": True}]
    asked: list[str] = []

    async def person(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        content = answers.pop(0)
        return (
            ElicitResult(action="decline")
            if content is None
            else ElicitResult(action="accept", content=content)
        )

    async with Client(server, mode=mode, elicitation_callback=person) as client:  # type: ignore[arg-type]
        for i in range(9):
            await call(client, "add_memory", user_input=f"note {i}", agent_response="ok")
        assert "did not confirm" in await error(client, "forget_memory", all=True)  # declined
        assert "did not confirm" in await error(client, "forget_memory", all=True)  # answered no
        assert len((await call(client, "list_memories", limit=50))["pages"]) == 9
        done = await call(client, "forget_memory", all=True)  # yes
        assert done["everything"] and done["pages_removed"] == 9
        assert (await call(client, "list_memories"))["pages"] == []
        assert len(asked) == 3 and "Forget everything remembered about 'default'? 9 page(s)" in asked[0]
        # the confirm rule still answers without asking; a preview never asks
        await call(client, "forget_memory", all=True, confirm="default")
        await call(client, "forget_memory", all=True, dry_run=True)
        assert len(asked) == 3
