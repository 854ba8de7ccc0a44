"""A restart with a few thousand pages: the first retrieval reads what it needs in bounded batches (or the
index snapshot) and stays fast; it returns what the server returned before the restart."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.service.bulk import import_lines
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import load_settings
from memoryos_mcp.service.wiring import make_snapshots
from tests.helpers.fakes import HashEmbedder

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


def test_a_snapshot_of_an_earlier_version_is_read_and_saved_again(tmp_path: Path) -> None:
    """A snapshot without what a later version keeps (which side each name speaks on, which of each page's
    sentences are the user's) is completed from its pages — the same ranking — and written again at once
    (a process that only reads would otherwise pay for it at every start)."""
    data_dir = tmp_path / "data"
    lines = [json.loads(line) for line in history(1200)]
    for i, line in enumerate(lines):  # the user's side calls the agent Kim; the agent calls the user Sam
        if i % 5 == 0:
            line["user_input"] = f"Hey Kim! {line['user_input']}. I loved it."
        if i % 7 == 0:
            line["agent_response"] = f"Thanks, Sam. {line['agent_response']}."
    before = service_on(data_dir, snapshots=True)
    import_lines(before, [json.dumps(line) for line in lines], default_user="default")
    assert before.memory.save_snapshots(min_pages=1000) == 1
    query = "What did Sam say about the guitar story?"
    expected = [p.id for p in before.retrieve_memory(query).mid_term]
    speakers = before.memory.state("default").index.speakers()
    assert speakers == {"Kim": "agent", "Sam": "user"}

    snapshots = make_snapshots(load_settings(data_dir=data_dir, index_snapshots=True))
    assert snapshots is not None
    path = snapshots.path("default")  # as an earlier version wrote it
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files if name not in ("sent_user", "sent_ask")}
    header = json.loads(arrays["header"].tobytes().decode())
    del header["addressed"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with path.open("wb") as out:
        np.savez(out, **arrays)

    after = service_on(data_dir, snapshots=True)
    assert after.memory.snapshots is not None
    save = after.memory.snapshots.save

    saved_by = []

    def slow_save(*args: Any, **kwargs: Any) -> None:  # a large user's save takes seconds
        saved_by.append(threading.current_thread().name)
        time.sleep(0.5)
        save(*args, **kwargs)

    after.memory.snapshots.save = slow_save  # type: ignore[method-assign]
    after.memory.keeper.min_pages = 1000  # this user is snapshot-sized (the default floor is 2,000 pages)
    state = after.memory.state("default")
    assert state.index.restored_from_older  # completed from its pages, and saved again in the background
    # A process that exits now (a CLI command, a server stopped at once) waits for that save at exit.
    after.memory.save_snapshots(min_pages=1000)
    assert state.snapshot_seq >= 0 and saved_by == ["snapshot-default"]  # once, by the background save
    saved = snapshots.load("default", after.memory.weights.context_window)
    assert (
        saved is not None
        and "sent_user" in saved[0]
        and "sent_ask" in saved[0]
        and saved[0]["addressed"] is not None
    )
    assert state.index.speakers() == speakers
    assert [p.id for p in after.retrieve_memory(query).mid_term] == expected

    again = service_on(data_dir, snapshots=True)
    state = again.memory.state("default")
    assert not state.index.restored_from_older and state.snapshot_seq >= 0
    assert state.index.speakers() == speakers
    assert [p.id for p in again.retrieve_memory(query).mid_term] == expected
