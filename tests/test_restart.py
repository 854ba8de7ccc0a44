"""A restart with a few thousand pages: the first retrieval reads what it needs in bounded batches (or the
index snapshot) and stays fast; it returns what the server returned before the restart."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.bulk import import_lines
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.service import MemoryService, make_snapshots
from memoryos_mcp.settings import load_settings
from tests.fakes import HashEmbedder

WORDS = "hiking bread guitar taxes garden puppy novel marathon museum ferry pottery chess".split()


def history(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "user_input": f"{WORDS[i % 12]} {WORDS[(i * 7) % 12]} story number {i} with detail{i % 97}",
                "agent_response": f"noted {WORDS[(i * 5) % 12]}",
                "timestamp": f"2024-{1 + (i // 400) % 12:02d}-{1 + (i // 15) % 28:02d}T{8 + i % 12:02d}:{i % 60:02d}:00",
            }
        )
        for i in range(n)
    ]


def service_on(data_dir: Path, snapshots: bool) -> MemoryService:
    settings = load_settings(data_dir=data_dir, index_snapshots=snapshots)
    store = ChromaStore(make_client(data_dir=data_dir), settings.collection_prefix)
    return MemoryService(
        settings, store, HashEmbedder(), LocalAnalyzer(settings.chain_threshold), make_snapshots(settings)
    )


@pytest.mark.parametrize("snapshots", [False, True])
def test_first_retrieve_after_a_restart_at_thousands_of_pages(tmp_path: Path, snapshots: bool) -> None:
    data_dir = tmp_path / "data"
    before = service_on(data_dir, snapshots)
    report = import_lines(before, history(4000), default_user="default")
    assert report.imported == 4000
    if snapshots:
        assert before.memory.save_snapshots(min_pages=1000) == 1
    query = "the guitar story with detail42"
    expected = [p.id for p in before.retrieve_memory(query).mid_term]

    after = service_on(data_dir, snapshots)  # a new process: nothing cached
    if snapshots:
        # The same state once more from a copy of the data dir elsewhere (moved to a new disk, a backup
        # restored, a volume mounted at another path): its snapshot came along and is used, not rebuilt.
        moved = Path(
            shutil.copytree(data_dir, tmp_path / "moved", ignore=shutil.ignore_patterns(".memoryos.lock"))
        )
        elsewhere = service_on(moved, snapshots)
        state = elsewhere.memory.state("default")
        assert state.snapshot_seq >= 0 and len(state.index) > 1000
        assert [p.id for p in elsewhere.retrieve_memory(query).mid_term] == expected
    started = time.monotonic()
    found = after.retrieve_memory(query)
    elapsed = time.monotonic() - started
    assert [p.id for p in found.mid_term] == expected
    assert after.stats().indexed_pages > 1000
    assert elapsed < 5.0, f"first retrieve after a restart took {elapsed:.1f} s"
    assert (after.memory.state("default").snapshot_seq >= 0) == snapshots
