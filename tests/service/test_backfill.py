"""`memoryos-mcp embed-sentences`: pages stored before sentences were embedded get the vectors a new import
gives them, a server process that cached the old index takes them on its next call, and a re-run embeds
nothing twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memoryos_mcp.core.embedding import embed_sentences
from memoryos_mcp.core.errors import StorageError
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.models import Page
from memoryos_mcp.service import backfill
from memoryos_mcp.service.backfill import SentenceBackfill, embed_missing_sentences
from memoryos_mcp.service.bulk import import_lines
from memoryos_mcp.service.facade import MemoryService
from tests.helpers.fakes import HashEmbedder
from tests.helpers.stores import history, local_service

QUERIES = ["hiking boots on the trail", "sourdough in the oven", "guitar chords", "vet for the puppy"]


def _imported(data_dir: Path, lines: list[str], *, sentences: bool) -> MemoryService:
    """A service (two segments at most) with the lines imported, their sentences embedded or left waiting."""
    service = local_service(data_dir, mtm_capacity=2, chain_threshold=0.45)
    import_lines(service, lines, default_user="ann", chunk_size=40, sentences=sentences)
    return service


def _as_older_version_wrote_it(service: MemoryService, user: str) -> None:
    """Take the sentence vectors off every page record of the user (what an older version stored)."""
    store = service.store
    for collection in (store.stm, store.mtm):  # type: ignore[attr-defined]
        rows = collection.get(where={"user_id": user}, include=["metadatas"])
        ids = [i for i, m in zip(rows["ids"], rows["metadatas"], strict=True) if m.get("kind") == "page"]
        collection.update(ids=ids, metadatas=[{"sentences": None}] * len(ids))


def _pages(service: MemoryService, user: str) -> dict[str, Page]:
    store = service.store
    segments = store.list_segments(user, include_archived=True)
    pages = store.list_stm_pages(user) + store.pages_of_segments(user, [s.id for s in segments])
    return {p.id: p for p in pages}


def _ranked(service: MemoryService, user: str) -> list[Any]:
    out = []
    for query in QUERIES:
        found = service.retrieve_memory(query, user_id=user, include_short_term=False)
        out.append([(p.id, round(p.score, 5)) for p in found.mid_term])
    return out


def test_old_pages_get_the_sentence_vectors_a_new_import_gives_and_every_process_sees_them(
    tmp_path: Path,
) -> None:
    lines = history(300, "ann")  # each side a sentence of its own
    new = _imported(tmp_path / "new", lines, sentences=True)
    old = _imported(tmp_path / "old", lines, sentences=True)
    _as_older_version_wrote_it(old, "ann")
    before = _pages(old, "ann")
    assert len(before) == 300 and all(p.sentences is None for p in before.values())
    assert any(s.archived for s in old.store.list_segments("ann", include_archived=True))
    # Another server process on the same store, which cached the index without sentences.
    other = MemoryService(
        old.settings, old.store, HashEmbedder(), LocalAnalyzer(old.settings.chain_threshold)
    )
    stale = _ranked(other, "ann")
    assert stale != _ranked(new, "ann"), "sentences must change some ranking, or this test proves nothing"

    report = embed_missing_sentences(old, ["ann"])
    assert (report.embedded, report.present) == (300, 0) and report.users == ["ann"]
    after, expected = _pages(old, "ann"), _pages(new, "ann")
    assert after.keys() == expected.keys()
    for page_id, page in after.items():
        want = expected[page_id].sentences
        assert page.sentences is not None and want is not None and len(page.sentences) == len(want)
        assert np.abs(page.sentences.vectors() - want.vectors()).max() < 0.02
    # The process with the stale cache replays the change log and ranks as a fresh import does.
    assert _ranked(other, "ann") == _ranked(new, "ann") == _ranked(old, "ann")

    again = embed_missing_sentences(old, ["ann"])
    assert (again.embedded, again.present) == (0, 300)


def test_a_run_stopped_between_a_write_and_its_log_entry_loses_nothing_and_a_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = history(300, "ann")
    new = _imported(tmp_path / "new", lines, sentences=True)
    old = _imported(tmp_path / "old", lines, sentences=True)
    _as_older_version_wrote_it(old, "ann")
    monkeypatch.setattr(backfill, "EMBED_BATCH", 40)
    appended, put = [], []
    real_append, real_put = old.store.append_change, old.store.put_sentences

    def append_then_stop(user_id: str, change: Any, owner: str) -> None:
        if len(appended) == 2:  # the third batch is written, then the process stops before logging it
            raise StorageError("the store went away")
        appended.append(change)
        real_append(user_id, change, owner)

    def count_put(user_id: str, tier: str, pages: list[Page]) -> None:
        if tier == "mid_term":  # each batch is offered to both tiers; each tier writes the pages it holds
            put.append(len(pages))
        real_put(user_id, tier, pages)

    monkeypatch.setattr(old.store, "append_change", append_then_stop)
    monkeypatch.setattr(old.store, "put_sentences", count_put)
    with pytest.raises(StorageError):
        embed_missing_sentences(old, ["ann"])
    monkeypatch.setattr(old.store, "append_change", real_append)
    written = [p for p in _pages(old, "ann").values() if p.sentences is not None]
    stopped_at = sum(put)
    assert len(put) == 3 and len(written) == stopped_at  # two batches logged, the third written: none lost

    report = embed_missing_sentences(old, ["ann"])
    assert (report.embedded, report.present) == (300 - stopped_at, stopped_at)
    assert all(p.sentences is not None for p in _pages(old, "ann").values())
    # A process that reads the user afresh ranks as a fresh import does (one that cached the old index
    # before the stop keeps the unlogged batch's old vectors until it reloads: the module docstring).
    fresh = MemoryService(
        old.settings, old.store, HashEmbedder(), LocalAnalyzer(old.settings.chain_threshold)
    )
    assert _ranked(fresh, "ann") == _ranked(new, "ann")


def test_a_user_without_memory_is_left_alone(tmp_path: Path) -> None:
    service = local_service(tmp_path / "data")
    report = embed_missing_sentences(service, ["nobody"])
    assert (report.embedded, report.present) == (0, 0)
    assert service.store.user_ids() == [] and service.store.read_version("nobody").seq == 0


@pytest.mark.slow
def test_the_command_embeds_sentences_with_the_real_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    env["HOME"] = str(tmp_path)
    common = ["--data-dir", str(tmp_path / "data"), "--user-id", "ann"]

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "memoryos_mcp", *args, *common]
        return subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=300)

    missing = run("embed-sentences")
    assert missing.returncode == 2 and "has no memory here" in missing.stderr
    assert run("import", "-", stdin="\n".join(history(12))).returncode == 0
    strip = (
        "import sys; from pathlib import Path\n"
        "from tests.service.test_backfill import _as_older_version_wrote_it\n"
        "from tests.helpers.stores import local_service\n"
        "_as_older_version_wrote_it(local_service(Path(sys.argv[1])), 'ann')\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", strip, str(tmp_path / "data")], cwd=root, check=True, timeout=120)
    done = run("embed-sentences")
    assert done.returncode == 0, done.stderr
    assert "sentence vectors embedded for 12 page(s), 0 already had them" in done.stderr
    again = run("embed-sentences")
    assert "sentence vectors embedded for 0 page(s), 12 already had them" in again.stderr


def _wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up, "timed out"
        time.sleep(0.02)


def test_an_import_at_the_page_rate_is_retrievable_at_once_and_the_server_fills_in_its_sentences(
    tmp_path: Path,
) -> None:
    lines = history(300, "ann")
    reference = _imported(tmp_path / "ref", lines, sentences=True)
    assert reference.stats("ann").pages_waiting_for_sentences == 0
    service = local_service(tmp_path / "later", mtm_capacity=2, chain_threshold=0.45)
    embedded: list[str] = []
    service.memory.embedder.calls = embedded  # type: ignore[attr-defined]
    import_lines(service, lines, default_user="ann", chunk_size=40)
    assert sum(len(call) for call in embedded) == 300  # each page's exchange, nothing more
    assert service.stats("ann").pages_waiting_for_sentences == 300
    # Every page is retrievable at once, ranked by its own vector as its one sentence.
    listed = service.list_memories(user_id="ann", tier="all", limit=200)
    assert listed.pages and len(_pages(service, "ann")) == 300
    waiting = _ranked(service, "ann")
    assert waiting != _ranked(reference, "ann"), "sentences must change some ranking, or this proves nothing"

    # Another process on the same store, with the waiting pages cached.
    other = MemoryService(service.settings, service.store, HashEmbedder(), LocalAnalyzer(0.45))
    assert _ranked(other, "ann") == waiting
    backfill = SentenceBackfill(service, batch=16, chunk=8).start()
    try:
        _wait_for(lambda: backfill.filled == 300 and backfill.idle.is_set())
    finally:
        backfill.stop()
    assert service.stats("ann").pages_waiting_for_sentences == 0
    # This process's index took the vectors in place; the other replays the log; a third reads afresh.
    fresh = MemoryService(service.settings, service.store, HashEmbedder(), LocalAnalyzer(0.45))
    want = _ranked(reference, "ann")
    assert _ranked(service, "ann") == _ranked(other, "ann") == _ranked(fresh, "ann") == want
    stored, expected = _pages(service, "ann"), _pages(reference, "ann")
    for page_id, page in stored.items():
        assert page.sentences == expected[page_id].sentences


def test_a_backfill_stopped_by_a_failing_store_loses_nothing_and_the_next_one_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, service = (
        _imported(tmp_path / d, history(120, "ann"), sentences=d == "ref") for d in ("ref", "later")
    )
    real_put = service.store.put_sentences
    calls: list[int] = []

    def fail_on_the_fifth_write(user_id: str, tier: str, pages: list[Page]) -> None:
        calls.append(len(pages))
        if len(calls) == 5:  # the third batch (each is offered to both tiers): its first write fails
            raise StorageError("the store went away")
        real_put(user_id, tier, pages)

    monkeypatch.setattr(service.store, "put_sentences", fail_on_the_fifth_write)
    first = SentenceBackfill(service, batch=16, chunk=8).start()
    try:
        _wait_for(lambda: first.idle.is_set() and len(calls) >= 5)
    finally:
        first.stop()
    assert first.filled == 32 and service.stats("ann").pages_waiting_for_sentences == 120 - 32
    monkeypatch.setattr(service.store, "put_sentences", real_put)
    second = SentenceBackfill(service, batch=16, chunk=8).start()  # as after a restart
    try:
        _wait_for(lambda: second.idle.is_set() and service.stats("ann").pages_waiting_for_sentences == 0)
    finally:
        second.stop()
    assert second.filled == 120 - 32
    fresh = MemoryService(service.settings, service.store, HashEmbedder(), LocalAnalyzer(0.45))
    assert _ranked(service, "ann") == _ranked(fresh, "ann") == _ranked(reference, "ann")


def test_the_backfill_calls_the_model_only_while_no_tool_call_runs(tmp_path: Path) -> None:
    service = local_service(tmp_path / "data")
    import_lines(service, history(40, "ann"), default_user="ann")
    embedder = service.memory.embedder
    before = len(embedder.calls)  # type: ignore[attr-defined]
    service.foreground.enter()  # a tool call is under way
    backfill = SentenceBackfill(service, batch=16, chunk=8).start()
    try:
        time.sleep(0.5)
        assert len(embedder.calls) == before and backfill.filled == 0  # type: ignore[attr-defined]
        service.foreground.leave()
        _wait_for(lambda: backfill.idle.is_set() and backfill.filled == 40)
        # at most `chunk` texts per call to the model
        assert max(len(call) for call in embedder.calls[before:]) <= 8  # type: ignore[attr-defined]
    finally:
        backfill.stop()
    assert service.stats("ann").pages_waiting_for_sentences == 0


def test_pages_forgotten_while_their_sentences_were_embedded_are_not_written_back(tmp_path: Path) -> None:
    service = local_service(tmp_path / "data", mtm_capacity=2, chain_threshold=0.45)
    import_lines(service, history(60, "ann"), default_user="ann")
    pages = service.store.waiting_for_sentences("ann", 20)
    embed_sentences(service.memory.embedder, pages)
    service.forget_memory(user_id="ann", page_ids=[p.id for p in pages[:5]])
    assert service.put_sentences("ann", pages) == 15
    assert service.store.find_pages("ann", [p.id for p in pages[:5]]) == {}
    assert service.stats("ann").pages_waiting_for_sentences == 60 - 20
