"""The per-user state cache: changes by another process are seen on the next call, replays equal reloads,
and the memory budget evicts least recently used users, who then answer the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.memory import MemoryOS, MemoryParams
from memoryos_mcp.index.page_index import PageIndexes
from tests.helpers.fakes import HashEmbedder
from tests.helpers.memory_os import fill, found, make_memory, summary


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    return ChromaStore(make_client(data_dir=tmp_path / "data"))


def test_a_change_by_another_process_is_seen_on_the_next_call(store: ChromaStore) -> None:
    writer, reader = make_memory(store), make_memory(store)
    fill(writer, "alice", 6)
    assert reader.retrieve("alice", "guitar chords").short_term  # loads alice
    assert reader.states.loads == 1
    fill(writer, "alice", 9, start=6)
    result = reader.retrieve("alice", "taxes invoice entry13")
    assert "entry13" in " ".join(
        p.user_input for p in result.short_term + [sp.page for sp in result.mid_term]
    )
    assert reader.states.loads == 1 and reader.states.replays == 1  # caught up from the log, no reload
    assert summary(reader.state("alice")) == summary(
        make_memory(store).state("alice")
    )  # same as a fresh load


def test_a_reader_behind_a_trimmed_log_reloads(store: ChromaStore) -> None:
    writer, reader = make_memory(store), make_memory(store)
    fill(writer, "alice", 5)
    reader.state("alice")
    fill(writer, "alice", 5, start=5)
    seq = store.read_version("alice").seq
    store.meta.delete(ids=[f"log:alice:{seq - 1}"])  # as if trimmed
    assert summary(reader.state("alice")) == summary(make_memory(store).state("alice"))
    assert reader.states.loads == 2


def test_archived_segments_leave_the_index_of_every_reader(store: ChromaStore) -> None:
    params = MemoryParams(stm_capacity=1, stm_evict_batch=1, mtm_capacity=2, theta=5.0)  # θ: never merge
    writer = MemoryOS(
        store, HashEmbedder(), LocalAnalyzer(chain_threshold=2.0), params, indexes=PageIndexes()
    )
    reader = MemoryOS(
        store, HashEmbedder(), LocalAnalyzer(chain_threshold=2.0), params, indexes=PageIndexes()
    )
    fill(writer, "alice", 3)
    reader.state("alice")
    fill(writer, "alice", 3, start=3)
    state = reader.state("alice")
    assert state.archived_segments == 3 and len(state.segments) == 2
    assert state.index.segment_ids() == set(state.segments)
    assert summary(state) == summary(writer.state("alice"))


def test_users_beyond_the_budget_are_evicted_and_answer_the_same(store: ChromaStore) -> None:
    roomy = make_memory(store)
    users = [f"user{i}" for i in range(4)]
    for user in users:
        fill(roomy, user, 12)
    before = {user: found(roomy, user, "bread dough oven") for user in users}
    one_user = roomy.state(users[0]).nbytes
    tight = make_memory(store, budget=int(one_user * 2.5))
    for user in users:
        tight.state(user)
        assert tight.states.nbytes <= int(one_user * 2.5) * 1.2
    assert len(tight.states.cached_users()) < len(users)
    assert tight.states.cached_users()[-1] == users[-1]  # the most recent stays
    for user in users:  # evicted users reload and rank exactly as before (visits differ, scores do not)
        assert found(tight, user, "bread dough oven") == before[user]
    assert tight.states.loads > len(users)


def test_a_single_user_larger_than_the_budget_is_still_served(store: ChromaStore) -> None:
    memory = make_memory(store, budget=1)
    fill(memory, "alice", 8)
    assert memory.retrieve("alice", "hiking boots").mid_term
    assert memory.states.cached_users() == ["alice"]
