"""ChromaStore against embedded Chroma in tmp_path and against a Chroma server the test starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from memoryos_mcp.adapters.chroma_store import LOG_KEEP, ChromaStore, make_client
from memoryos_mcp.core.models import Fact, Page, Segment, TraitLevel, UserProfile
from memoryos_mcp.core.protocols import ChainHead, Change, Version


@pytest.fixture(params=["embedded", "server"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ChromaStore:
    prefix = f"t{uuid.uuid4().hex[:10]}"  # one server is shared, so each test gets its own collections
    if request.param == "embedded":
        return ChromaStore(make_client(data_dir=tmp_path / "data"), prefix)
    port = request.getfixturevalue("chroma_server")
    return ChromaStore(make_client(host="127.0.0.1", port=port), prefix)


def _vec(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float32)


def _page(pid: str, user: str = "alice", n: int = 0, **kw: object) -> Page:
    page = Page(
        id=pid,
        user_id=user,
        user_input=f"question {n} — ünïcode ok",
        agent_response=f"answer {n}",
        timestamp="2024-05-08T13:56:00",
        added_at=1000 + n,
        metadata={"source": "test", "n": n, "ok": True, "ratio": 0.5},
        embedding=_vec(1.0, n, 0.0),
    )
    for key, value in kw.items():
        setattr(page, key, _vec(*value) if key == "embedding" else value)
    return page


def test_short_term_round_trip_keeps_every_field(any_store: ChromaStore) -> None:
    page = _page("p1")
    any_store.put_stm_pages([page])
    (got,) = any_store.list_stm_pages("alice")
    assert got.id == "p1" and got.user_input == page.user_input and got.agent_response == "answer 0"
    assert got.metadata == {"source": "test", "n": 0, "ok": True, "ratio": 0.5}
    assert got.added_at == 1000 and got.timestamp == "2024-05-08T13:56:00"
    assert got.embedding == pytest.approx([1.0, 0.0, 0.0])
    any_store.delete_stm_pages("alice", ["p1"])
    assert any_store.list_stm_pages("alice") == []


def test_mid_term_pages_by_segment_and_by_id(any_store: ChromaStore) -> None:
    pages = [
        _page("a", n=0, segment_id="s1", embedding=[1.0, 0.0, 0.0]),
        _page("b", n=1, segment_id="s1", embedding=[0.0, 1.0, 0.0], analyzed=True),
        _page("c", n=2, segment_id="s2", embedding=[1.0, 0.0, 0.0]),
    ]
    any_store.put_mtm_pages(pages)
    (b,) = any_store.get_mtm_pages("alice", ["b", "zzz"])
    assert b.segment_id == "s1" and b.analyzed and b.embedding == pytest.approx([0.0, 1.0, 0.0])
    assert [p.id for p in any_store.pages_of_segments("alice", ["s1"])] == ["a", "b"]
    assert [p.id for p in any_store.pages_of_segments("alice", ["s1", "s2"])] == ["a", "b", "c"]
    any_store.put_stm_pages([_page("d", n=3)])
    assert any_store.find_pages("alice", ["a", "d", "zzz"]) == {"a": "mid_term", "d": "short_term"}


def test_segments_chain_head_profile_and_facts_round_trip(any_store: ChromaStore) -> None:
    seg = Segment(
        "s1", "alice", "about hiking", {"hiking": 2, "trail": 1}, 1.0, 2.0, 3, 4, 5, False, _vec(0, 1, 0)
    )
    any_store.put_segments([seg], new=True)
    (got,) = any_store.list_segments("alice")
    assert (got.summary, got.keyword_counts, got.n_visit, got.l_interaction, got.page_count) == (
        "about hiking",
        {"hiking": 2, "trail": 1},
        3,
        4,
        5,
    )
    seg.archived = True
    any_store.put_segments([seg], new=False)
    assert any_store.list_segments("alice") == []
    assert len(any_store.list_segments("alice", include_archived=True)) == 1

    any_store.put_chain_head(ChainHead("alice", "ch1", "so far", "p9", "text", _vec(0, 0, 1)))
    head = any_store.get_chain_head("alice")
    assert head is not None and head.chain_id == "ch1" and head.last_page_id == "p9"

    profile = UserProfile(
        "alice", {"name": "Alice"}, {"content interests": {"hiking": TraitLevel("High", "hikes weekly")}}
    )
    any_store.put_profile(profile, _vec(1, 0, 0))
    got_profile = any_store.get_profile("alice")
    assert got_profile is not None and got_profile.static == {"name": "Alice"}
    assert got_profile.traits["content interests"]["hiking"].level == "High"

    facts = [
        Fact(f"f{i}", "alice", "user_fact", f"fact {i}", float(i), "s1", _vec(1, i, 0)) for i in range(3)
    ]
    any_store.add_facts(facts)
    assert [f.text for f in any_store.list_facts("alice", "user_fact")] == ["fact 0", "fact 1", "fact 2"]
    any_store.delete_facts("alice", ["f0"])
    assert [f.id for f in any_store.list_facts("alice", "user_fact")] == ["f1", "f2"]


def test_every_read_is_isolated_by_user(any_store: ChromaStore) -> None:
    any_store.put_stm_pages([_page("p1")])
    any_store.put_mtm_pages([_page("p2", n=1, segment_id="s1")])
    any_store.put_segments(
        [Segment("s1", "alice", "x", {"x": 1}, 1.0, 1.0, embedding=_vec(1, 0, 0))], new=True
    )
    any_store.add_facts([Fact("f1", "alice", "user_fact", "likes tea", 1.0, "", _vec(1, 0, 0))])
    any_store.put_profile(UserProfile("alice", {"name": "Alice"}), _vec(1, 0, 0))
    any_store.put_chain_head(ChainHead("alice", "c", "", "p2", "", _vec(1, 0, 0)))
    any_store.append_change("alice", Change(seq=1, pages_added=["p2"], mid_term_pages=1))

    assert any_store.list_stm_pages("bob") == []
    assert any_store.get_mtm_pages("bob", ["p2"]) == []
    assert any_store.pages_of_segments("bob", ["s1"]) == []
    assert any_store.find_pages("bob", ["p1", "p2"]) == {}
    assert any_store.list_segments("bob", include_archived=True) == []
    assert any_store.record_visits("bob", ["s1"], 5.0) == {}
    assert any_store.list_facts("bob", "user_fact") == []
    assert any_store.get_profile("bob") is None
    assert any_store.get_chain_head("bob") is None
    assert any_store.read_version("bob") == Version(seq=0)
    assert any_store.read_changes("bob", 0, 1) is None
    any_store.delete_stm_pages("bob", ["p1"])  # bob cannot delete alice's page by id
    any_store.delete_facts("bob", ["f1"])
    assert len(any_store.list_stm_pages("alice")) == 1
    assert len(any_store.list_facts("alice", "user_fact")) == 1


def test_change_log_versions_and_old_entries_trimmed(any_store: ChromaStore) -> None:
    assert any_store.read_version("alice") == Version(seq=0)
    for seq in range(1, 4):
        any_store.append_change("alice", Change(seq=seq, pages_added=[f"p{seq}"], mid_term_pages=seq))
    middle = range(4, LOG_KEEP + 120)  # written in one call, to keep the test short
    any_store._meta_put(
        [
            (
                f"log:alice:{s}",
                json.dumps(Change(seq=s).__dict__),
                {"kind": "log", "user_id": "alice", "seq": s},
            )
            for s in middle
        ]
    )
    for seq in range(LOG_KEEP + 120, LOG_KEEP + 130):  # passes a multiple of 64: old entries are trimmed
        any_store.append_change(
            "alice", Change(seq=seq, pages_added=[f"p{seq}"], mid_term_pages=seq, archived_segments=1)
        )
    last = LOG_KEEP + 129
    assert any_store.read_version("alice") == Version(seq=last, mid_term_pages=last, archived_segments=1)
    changes = any_store.read_changes("alice", last - 3, last)
    assert changes is not None and [c.pages_added for c in changes] == [
        [f"p{s}"] for s in range(last - 2, last + 1)
    ]
    assert any_store.read_changes("alice", 63, 66) is None  # trimmed at seq 640: the reader has to reload
    assert any_store.read_changes("alice", last - LOG_KEEP, last) is not None  # the newest LOG_KEEP are kept


def test_lease_has_one_holder_until_released_or_expired(any_store: ChromaStore) -> None:
    assert any_store.acquire_lease("alice", "one", ttl_s=60)
    assert any_store.acquire_lease("alice", "one", ttl_s=60)  # re-entrant for its holder
    assert not any_store.acquire_lease("alice", "two", ttl_s=60)
    assert any_store.acquire_lease("bob", "two", ttl_s=60)  # per user
    any_store.release_lease("alice", "two")  # not the holder: nothing happens
    assert not any_store.acquire_lease("alice", "two", ttl_s=60)
    any_store.release_lease("alice", "one")
    assert any_store.acquire_lease("alice", "two", ttl_s=0.05)
    time.sleep(0.1)  # "two" died holding it
    assert not any_store.acquire_lease("alice", "three", ttl_s=60)  # clears the expired lease...
    assert any_store.acquire_lease("alice", "three", ttl_s=60)  # ...and takes it on the next try


def test_writes_and_reads_above_the_batch_limit(tmp_path: Path) -> None:
    store = ChromaStore(make_client(data_dir=tmp_path / "d"))
    store.batch = 7  # as if Chroma allowed 7 records per call: every path must split
    pages = [_page(f"p{i:03d}", n=i, segment_id=f"s{i % 3}") for i in range(40)]
    store.put_mtm_pages(pages)
    assert len(store.get_mtm_pages("alice", [p.id for p in pages])) == 40
    assert len(store.pages_of_segments("alice", ["s0", "s1", "s2"])) == 40
    store.put_stm_pages(pages[:20])
    assert len(store.list_stm_pages("alice")) == 20
    store.delete_stm_pages("alice", [p.id for p in pages[:20]])
    assert store.list_stm_pages("alice") == []
    segments = [Segment(f"s{i}", "alice", "x", {}, float(i), 1.0, embedding=_vec(1, 0, 0)) for i in range(20)]
    store.put_segments(segments, new=True)
    assert len(store.list_segments("alice")) == 20


def test_embedded_data_survives_a_new_client(tmp_path: Path) -> None:
    ChromaStore(make_client(data_dir=tmp_path / "d")).put_stm_pages([_page("p1")])
    reopened = ChromaStore(make_client(data_dir=tmp_path / "d"))
    assert [p.id for p in reopened.list_stm_pages("alice")] == ["p1"]


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    make_client(data_dir=tmp_path / "d")
    code = (
        "import sys; from pathlib import Path\n"
        "from memoryos_mcp.adapters.chroma_store import make_client\n"
        "from memoryos_mcp.core.errors import StorageError\n"
        "try:\n    make_client(data_dir=Path(sys.argv[1]))\n"
        "except StorageError as exc:\n    print(exc); sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert (
        "another process is using the memory directory" in done.stdout
        and "MEMORYOS_CHROMA_HOST" in done.stdout
    )


def test_segment_updates_keep_the_visits_that_retrievals_recorded(any_store: ChromaStore) -> None:
    seg = Segment("s1", "alice", "about hiking", {"hiking": 1}, 1.0, 2.0, 3, 4, 5, False, _vec(0, 1, 0))
    any_store.put_segments([seg], new=True)
    stale = Segment("s1", "alice", "about hiking", {"hiking": 1}, 1.0, 2.0, 3, 4, 5, False, _vec(0, 1, 0))
    assert any_store.record_visits("alice", ["s1"], 50.0) == {
        "s1": (4, 50.0)
    }  # a retrieval, while an add holds the stale copy
    assert any_store.record_visits("alice", ["s1"], 40.0) == {"s1": (5, 50.0)}  # never backwards in time
    stale.l_interaction, stale.summary = 0, "about hiking and boots"
    any_store.put_segments([stale], new=False)
    (got,) = any_store.list_segments("alice")
    assert (got.n_visit, got.last_access, got.l_interaction, got.summary) == (
        5,
        50.0,
        0,
        "about hiking and boots",
    )


def test_visits_live_in_their_own_collection_and_go_with_their_segment(any_store: ChromaStore) -> None:
    """The mid-term collection is not written by a retrieval (its vector index's periodic save costs 30-50 ms
    at 100k pages); a segment's count moves over on its first visit; forgetting takes the visits along."""
    any_store.put_segments(
        [
            Segment(sid, "alice", "x", {"x": 1}, 1.0, 2.0, n_visit=3, embedding=_vec(1, 0, 0))
            for sid in ("s1", "s2")
        ],
        new=True,
    )
    assert any_store.record_visits("alice", ["s1", "s1"], 10.0) == {"s1": (4, 10.0)}
    assert any_store.record_visits("alice", ["s1", "s2"], 20.0) == {"s1": (5, 20.0), "s2": (4, 20.0)}
    assert any_store.record_visits("bob", ["s1"], 30.0) == {}  # another user's segment: untouched
    stored = any_store.mtm.get(ids=["s1"], include=["metadatas"])["metadatas"][0]
    assert (stored["n_visit"], stored["last_access"]) == (3, 2.0)  # as written when the segment was made
    assert any_store.visits.get(ids=["s1"], include=["metadatas"])["metadatas"][0]["n_visit"] == 5
    assert [(s.id, s.n_visit, s.last_access) for s in any_store.list_segments("alice")] == [
        ("s1", 5, 20.0),
        ("s2", 4, 20.0),
    ]
    any_store.delete_mid_term("alice", ["s1"])
    assert any_store.visits.get(ids=["s1", "s2"])["ids"] == ["s2"]
    assert any_store.record_visits("alice", ["s1"], 40.0) == {}  # forgotten: no visit brings it back
    any_store.delete_user("alice")
    assert any_store.visits.get(where={"user_id": "alice"})["ids"] == []


def test_records_of_schema_1_get_the_selective_keys(tmp_path: Path) -> None:
    store = ChromaStore(make_client(data_dir=tmp_path / "d"))
    store.put_segments([Segment("s1", "alice", "x", {}, 1.0, 1.0, embedding=_vec(1, 0, 0))], new=True)
    store.add_facts([Fact("f1", "alice", "user_fact", "likes tea", 1.0, "", _vec(1, 0, 0))])
    # What the previous release wrote: no selective keys, no schema record.
    store.mtm.update(ids=["s1"], metadatas=[{"segment_of": None, "active_of": None}])
    store.lpm.update(ids=["f1"], metadatas=[{"owner_kind": None}])
    store.meta.delete(ids=["schema"])
    assert store.list_segments("alice") == [] and store.list_facts("alice", "user_fact") == []
    migrated = ChromaStore(store.client)
    assert [s.id for s in migrated.list_segments("alice")] == ["s1"]
    assert [f.id for f in migrated.list_facts("alice", "user_fact")] == ["f1"]


def test_a_lease_is_renewed_only_by_its_holder(any_store: ChromaStore) -> None:
    assert any_store.acquire_lease("alice", "one", ttl_s=0.2)
    assert any_store.renew_lease("alice", "one", ttl_s=60)
    assert not any_store.renew_lease("alice", "two", ttl_s=60)
    time.sleep(0.3)  # past the first expiry: the renewal keeps it
    assert not any_store.acquire_lease("alice", "two", ttl_s=60)


def test_pages_are_marked_analyzed_without_rewriting_them(any_store: ChromaStore) -> None:
    any_store.put_mtm_pages([_page("a", segment_id="s1"), _page("b", n=1, segment_id="s1")])
    any_store.mark_analyzed("bob", ["a"])  # not bob's
    any_store.mark_analyzed("alice", ["b", "zzz"])
    assert [(p.id, p.analyzed) for p in any_store.pages_of_segments("alice", ["s1"])] == [
        ("a", False),
        ("b", True),
    ]


def test_change_log_entry_left_by_a_crashed_writer_is_kept_and_skipped(chroma_server: int) -> None:
    # On a shared store a writer that died between its log entry and its version left entry 1 behind, version
    # still 0. (An embedded store writes both in one upsert: there is nothing to skip.)
    any_store = ChromaStore(make_client(host="127.0.0.1", port=chroma_server), f"t{uuid.uuid4().hex[:10]}")
    assert any_store.shared
    orphan = Change(seq=1, pages_added=["p1"], mid_term_pages=1)
    any_store._meta_put(
        [
            (
                "log:alice:1",
                json.dumps(orphan.__dict__),
                {"kind": "log", "user_id": "alice", "seq": 1, "writer": "dead"},
            )
        ]
    )
    assert any_store.read_version("alice") == Version(seq=0)
    change = Change(seq=1, pages_added=["p2"], mid_term_pages=2)
    assert any_store.append_change("alice", change, writer="me") == 2
    assert change.seq == 2
    assert any_store.read_version("alice") == Version(seq=2, mid_term_pages=2, archived_segments=0)
    changes = any_store.read_changes("alice", 0, 2)
    assert changes is not None and [c.pages_added for c in changes] == [["p1"], ["p2"]]
    # The same writer appending again goes on from there.
    assert (
        any_store.append_change("alice", Change(seq=3, pages_added=["p3"], mid_term_pages=3), writer="me")
        == 3
    )
