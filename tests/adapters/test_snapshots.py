"""Index snapshots: a restart starts from the saved index and replays what changed since; any problem with
a snapshot only means reading the store instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.adapters.snapshots import SnapshotStore
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.memory import MemoryOS, MemoryParams
from memoryos_mcp.index.page_index import PageIndex, PageIndexes
from tests.helpers.fakes import HashEmbedder
from tests.helpers.memory_os import fill, found, summary


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    return ChromaStore(make_client(data_dir=tmp_path / "data"))


def make(store: ChromaStore, snapshots: SnapshotStore | None, every: int = 4) -> MemoryOS:
    params = MemoryParams(stm_capacity=3, stm_evict_batch=2)
    return MemoryOS(
        store, HashEmbedder(), LocalAnalyzer(chain_threshold=0.5), params,
        snapshots=snapshots, snapshot_min_pages=5, snapshot_every=every, indexes=PageIndexes(),
    )  # fmt: skip


def test_a_restart_starts_from_the_snapshot_and_replays_the_rest(store: ChromaStore, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snap", identity="test")
    first = make(store, snapshots, every=1000)  # no background snapshot: saved explicitly below
    fill(first, "alice", 30)
    assert first.save_snapshots() == 1
    saved_at = first.state("alice").seq
    fill(first, "alice", 10, start=30)  # after the snapshot: only in the change log
    restarted = make(store, snapshots)
    state = restarted.state("alice")
    assert state.snapshot_seq == saved_at < state.seq  # started from the snapshot, then replayed
    assert summary(state) == summary(make(store, None).state("alice"))  # the same as reading the store
    assert found(restarted, "alice", "bread dough oven") == found(
        make(store, None), "alice", "bread dough oven"
    )


def test_snapshots_are_written_as_the_index_grows(store: ChromaStore, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snap", identity="test")
    memory = make(store, snapshots, every=4)
    fill(memory, "alice", 20)
    for thread in __import__("threading").enumerate():
        if thread.name.startswith("snapshot-"):
            thread.join(10)
    saved = snapshots.load("alice", 1)
    assert saved is not None and saved[1] > 0
    assert len(saved[0]["ids"]) >= 5


def test_unusable_snapshots_are_ignored(store: ChromaStore, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snap", identity="test")
    memory = make(store, snapshots, every=1000)
    fill(memory, "alice", 20)
    memory.save_snapshots()
    expected = summary(make(store, None).state("alice"))
    assert SnapshotStore(tmp_path / "snap", identity="another store").load("alice", 1) is None
    # what an earlier version named the same store is still read (not written)
    renamed = SnapshotStore(tmp_path / "snap", identity="test, renamed", also_accepted=("test",))
    assert renamed.load("alice", 1) is not None
    assert SnapshotStore(tmp_path / "snap", "other", also_accepted=("another",)).load("alice", 1) is None
    assert snapshots.load("alice", 2) is None  # built with another dialogue-context window
    snapshots.path("alice").write_bytes(b"not a snapshot")
    assert snapshots.load("alice", 1) is None
    assert summary(make(store, snapshots).state("alice")) == expected


def test_a_snapshot_ahead_of_the_store_is_not_used(store: ChromaStore, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snap", identity="test")
    fill(make(store, None), "alice", 12)
    index = PageIndex()
    snapshots.save("alice", 999, index.export())  # e.g. the store was restored from an older backup
    assert summary(make(store, snapshots).state("alice")) == summary(make(store, None).state("alice"))


def test_the_names_of_the_people_talking_survive_a_restart_from_a_snapshot(
    store: ChromaStore, tmp_path: Path
) -> None:
    snapshots = SnapshotStore(tmp_path / "snap", identity="test")
    first = make(store, snapshots, every=1000)
    for i in range(12):
        first.add_page(
            "alice", f"bread dough oven entry{i}", "Thanks, Alice!", f"2024-01-{1 + i:02d}T10:00:00"
        )
    assert first.save_snapshots() == 1
    restarted = make(store, snapshots).state("alice")
    assert restarted.snapshot_seq >= 0
    assert (
        restarted.index.participants() == {"Alice"} == make(store, None).state("alice").index.participants()
    )
