"""ChromaStore against embedded Chroma in tmp_path and against a Chroma server the test starts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.models import Fact, Page, Segment, TraitLevel, UserProfile
from memoryos_mcp.core.protocols import ChainHead
from tests.fakes import free_port


def _chroma_executable() -> str:
    local = Path(sys.executable).with_name("chroma")
    found = str(local) if local.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("the `chroma` command (shipped with chromadb) is not installed")
    return found


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`chroma run` on a free loopback port for the whole session."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [_chroma_executable(), "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma run did not listen within 30 s")
    yield port
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(params=["embedded", "server"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ChromaStore:
    prefix = f"t{uuid.uuid4().hex[:10]}"  # one server is shared, so each test gets its own collections
    if request.param == "embedded":
        return ChromaStore(make_client(data_dir=tmp_path / "data"), prefix)
    port = request.getfixturevalue("chroma_server")
    return ChromaStore(make_client(host="127.0.0.1", port=port), prefix)


def _page(pid: str, user: str = "alice", n: int = 0, **kw: object) -> Page:
    page = Page(
        id=pid,
        user_id=user,
        user_input=f"question {n} — ünïcode ok",
        agent_response=f"answer {n}",
        timestamp="2024-05-08T13:56:00",
        added_at=1000 + n,
        metadata={"source": "test", "n": n, "ok": True, "ratio": 0.5},
        embedding=[1.0, float(n), 0.0],
    )
    for key, value in kw.items():
        setattr(page, key, value)
    return page


def test_short_term_round_trip_keeps_every_field(any_store: ChromaStore) -> None:
    page = _page("p1")
    any_store.add_stm_page(page)
    (got,) = any_store.list_stm_pages("alice")
    assert got.id == "p1" and got.user_input == page.user_input and got.agent_response == "answer 0"
    assert got.metadata == {"source": "test", "n": 0, "ok": True, "ratio": 0.5}
    assert got.added_at == 1000 and got.timestamp == "2024-05-08T13:56:00"
    assert got.embedding == pytest.approx([1.0, 0.0, 0.0])
    any_store.delete_stm_pages("alice", ["p1"])
    assert any_store.list_stm_pages("alice") == []


def test_mid_term_pages_by_segment_by_id_and_all(any_store: ChromaStore) -> None:
    pages = [
        _page("a", n=0, segment_id="s1", embedding=[1.0, 0.0, 0.0]),
        _page("b", n=1, segment_id="s1", embedding=[0.0, 1.0, 0.0], analyzed=True),
        _page("c", n=2, segment_id="s2", embedding=[1.0, 0.0, 0.0]),
    ]
    any_store.upsert_mtm_pages(pages)
    assert sorted(any_store.mtm_page_ids("alice")) == ["a", "b", "c"]
    (b,) = any_store.get_mtm_pages_by_id("alice", ["b"])
    assert b.segment_id == "s1" and b.analyzed and b.embedding == pytest.approx([0.0, 1.0, 0.0])
    assert [p.id for p in any_store.get_mtm_pages("alice", ["s1"], analyzed=False)] == ["a"]
    assert {p.id for p in any_store.get_mtm_pages("alice", ["s1", "s2"])} == {"a", "b", "c"}
    assert [p.id for p in any_store.all_mtm_pages("alice")] == ["a", "b", "c"]
    assert any_store.existing_mtm_page_ids("alice", ["a", "zzz"]) == {"a"}


def test_segments_chain_head_profile_and_facts_round_trip(any_store: ChromaStore) -> None:
    seg = Segment("s1", "alice", "about hiking", {"hiking": 2, "trail": 1}, 1.0, 2.0, 3, 4, 5, False, [0.0, 1.0, 0.0])
    any_store.upsert_segments([seg])
    (got,) = any_store.list_segments("alice")
    assert (got.summary, got.keyword_counts, got.n_visit, got.l_interaction, got.page_count) == (
        "about hiking", {"hiking": 2, "trail": 1}, 3, 4, 5
    )
    seg.archived = True
    any_store.upsert_segments([seg])
    assert any_store.list_segments("alice") == []
    assert len(any_store.list_segments("alice", include_archived=True)) == 1

    any_store.put_chain_head(ChainHead("alice", "ch1", "so far", "p9", "text", [0.0, 0.0, 1.0]))
    head = any_store.get_chain_head("alice")
    assert head is not None and head.chain_id == "ch1" and head.last_page_id == "p9"

    profile = UserProfile("alice", {"name": "Alice"}, {"content interests": {"hiking": TraitLevel("High", "hikes weekly")}})
    any_store.put_profile(profile, [1.0, 0.0, 0.0])
    got_profile = any_store.get_profile("alice")
    assert got_profile is not None and got_profile.static == {"name": "Alice"}
    assert got_profile.traits["content interests"]["hiking"].level == "High"

    facts = [Fact(f"f{i}", "alice", "user_fact", f"fact {i}", float(i), "s1", [1.0, float(i), 0.0]) for i in range(3)]
    any_store.add_facts(facts)
    assert [f.text for f in any_store.list_facts("alice", "user_fact")] == ["fact 0", "fact 1", "fact 2"]
    (best, score), *_ = any_store.query_facts("alice", "user_fact", [1.0, 0.0, 0.0], 2)
    assert best.id == "f0" and score == pytest.approx(1.0, abs=1e-4)
    any_store.delete_facts("alice", ["f0"])
    assert any_store.count("alice")["user_facts"] == 2


def test_every_read_is_isolated_by_user(any_store: ChromaStore) -> None:
    any_store.add_stm_page(_page("p1"))
    any_store.upsert_mtm_pages([_page("p2", n=1, segment_id="s1")])
    any_store.upsert_segments([Segment("s1", "alice", "x", {"x": 1}, 1.0, 1.0, embedding=[1.0, 0.0, 0.0])])
    any_store.add_facts([Fact("f1", "alice", "user_fact", "likes tea", 1.0, "", [1.0, 0.0, 0.0])])
    any_store.put_profile(UserProfile("alice", {"name": "Alice"}), [1.0, 0.0, 0.0])
    any_store.put_chain_head(ChainHead("alice", "c", "", "p2", "", [1.0, 0.0, 0.0]))

    assert any_store.list_stm_pages("bob") == []
    assert any_store.mtm_page_ids("bob") == [] and any_store.get_mtm_pages_by_id("bob", ["p2"]) == []
    assert any_store.all_mtm_pages("bob") == []
    assert any_store.get_mtm_pages("bob", ["s1"]) == []
    assert any_store.existing_mtm_page_ids("bob", ["p2"]) == set()
    assert any_store.list_segments("bob", include_archived=True) == []
    assert any_store.list_facts("bob", "user_fact") == []
    assert any_store.query_facts("bob", "user_fact", [1.0, 0.0, 0.0], 5) == []
    assert any_store.get_profile("bob") is None
    assert any_store.get_chain_head("bob") is None
    assert set(any_store.count("bob").values()) == {0}
    any_store.delete_stm_pages("bob", ["p1"])  # bob cannot delete alice's page by id
    assert len(any_store.list_stm_pages("alice")) == 1


def test_embedded_data_survives_a_new_client(tmp_path: Path) -> None:
    ChromaStore(make_client(data_dir=tmp_path / "d")).add_stm_page(_page("p1"))
    reopened = ChromaStore(make_client(data_dir=tmp_path / "d"))
    assert [p.id for p in reopened.list_stm_pages("alice")] == ["p1"]


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    make_client(data_dir=tmp_path / "d")
    code = (
        "import sys; from pathlib import Path\n"
        "from memoryos_mcp.adapters.chroma_store import make_client\n"
        "from memoryos_mcp.errors import StorageError\n"
        "try:\n    make_client(data_dir=Path(sys.argv[1]))\n"
        "except StorageError as exc:\n    print(exc); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "another process is using the memory directory" in done.stdout and "MEMORYOS_CHROMA_HOST" in done.stdout


def test_segment_updates_keep_the_visits_that_retrievals_recorded(any_store: ChromaStore) -> None:
    seg = Segment("s1", "alice", "about hiking", {"hiking": 1}, 1.0, 2.0, 3, 4, 5, False, [0.0, 1.0, 0.0])
    any_store.upsert_segments([seg])
    stale = Segment("s1", "alice", "about hiking", {"hiking": 1}, 1.0, 2.0, 3, 4, 5, False, [0.0, 1.0, 0.0])
    seg.n_visit, seg.last_access = 9, 50.0
    any_store.record_visits([seg])  # a retrieval, while an add holds the stale copy
    stale.l_interaction, stale.summary = 0, "about hiking and boots"
    any_store.update_segments([stale])
    (got,) = any_store.list_segments("alice")
    assert (got.n_visit, got.last_access, got.l_interaction, got.summary) == (9, 50.0, 0, "about hiking and boots")
