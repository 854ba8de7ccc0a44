"""Export and import: a memory exported and imported into an empty store is the same memory — every tier,
every field, the same retrieval results — and bad or repeated input is reported, never silently merged."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.service.bulk import import_lines
from memoryos_mcp.service.export_format import FORMAT_VERSION
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.restore import import_export
from memoryos_mcp.service.settings import load_settings
from memoryos_mcp.service.wiring import make_analyzer
from tests.helpers.fake_openai import FakeOpenAIServer
from tests.helpers.fakes import HashEmbedder
from tests.helpers.scripted_llm import good_answer
from tests.helpers.stores import contents, export_text, history, local_service, retrievals, stats


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default=good_answer) as server:
        yield server


def llm_service(data_dir: Path, base_url: str) -> MemoryService:
    settings = load_settings(
        data_dir=data_dir, llm_base_url=base_url, llm_api_key="test-key", llm_timeout_s=5.0, llm_max_retries=0,
        llm_cooldown_s=0.0, stm_capacity=3, stm_evict_batch=3, tau=3.0, mtm_capacity=2,
    )  # fmt: skip
    store = ChromaStore(make_client(data_dir=data_dir), settings.collection_prefix)
    return MemoryService(settings, store, HashEmbedder(), make_analyzer(settings))


def test_round_trip_with_persona_restores_every_tier_and_the_same_retrieval(
    tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    source = llm_service(tmp_path / "source", llm.base_url)
    source.add_memory(
        "I am Maya and I love hiking",
        "I am Memo, happy to help with hiking.",
        timestamp="2024-05-01 09:00:00",
    )
    texts = [
        "hiking on the trail",
        "cooking bread",
        "guitar chords",
        "taxes forms",
        "hiking boots",
        "cooking pasta",
    ]
    for n in range(20):
        source.add_memory(
            f"{texts[n % 6]} page {n}",
            f"nice {n}",
            timestamp=f"2024-05-{2 + n:02d} 10:00:00",
            metadata={"n": n},
        )
    fact = (source.list_memories(kind="facts").facts or [])[0]
    source.update_memory(fact_id=fact.id, text="corrected by the person")  # corrections travel too
    source.update_memory(profile_key="home town", profile_value="Porto")
    before = contents(source, "default")
    assert before["facts"] and before["profile"] and before["head"] and before["stm"]
    assert any(f["corrected_from"] for f in before["facts"]) and before["profile"]["set_by_person"]
    assert any(f["source_pages"] for f in before["facts"]), "facts carry their provenance"
    assert any(s["archived"] for s in before["segments"]), "archived segments are exported too"
    assert any(p["analyzed"] for p in before["mtm"]) and any(s["n_visit"] == 0 for s in before["segments"])
    assert all(p["sentences"] for p in before["mtm"] + before["stm"]), "each side is a sentence of its own"
    source.retrieve_memory("hiking")  # some segments get visits (heat inputs must travel)

    text = export_text(source, ["default"])
    lines = text.splitlines()
    assert (
        json.loads(lines[0])["format"] == "memoryos-export"
        and json.loads(lines[0])["version"] == FORMAT_VERSION
    )

    target = local_service(tmp_path / "target")  # no LLM needed to restore what one learned
    report = import_export(target, lines)
    assert report.ok, report.summary()
    assert report.restored == ["default"] and report.records["page"] == len(before["stm"]) + len(
        before["mtm"]
    )
    assert contents(target, "default") == contents(source, "default")
    assert stats(target, "default") == stats(source, "default")
    assert retrievals(target, "default") == retrievals(source, "default")
    profile = target.get_user_profile()
    assert profile.profile.static == {"name": "Maya", "home town": "Porto"} and profile.assistant_traits


def test_round_trip_of_hundreds_of_pages_and_two_users_gives_the_same_results(tmp_path: Path) -> None:
    # Chains that break often (a high threshold for the fake embedder's vectors) make many segments, so that
    # some are archived and the export must carry them too.
    source = local_service(tmp_path / "source", mtm_capacity=2, chain_threshold=0.45)
    import_lines(source, history(300, "ann") + history(40, "bob"), default_user="default", chunk_size=64)
    users = ["ann", "bob"]
    text = export_text(source, source.store.user_ids())
    target = local_service(tmp_path / "target", mtm_capacity=2, chain_threshold=0.45)
    report = import_export(target, text.splitlines(), chunk_size=50)
    assert report.ok and report.restored == users, report.summary()
    for user in users:
        assert contents(target, user) == contents(source, user)
        assert stats(target, user) == stats(source, user)
        assert source.stats(user).archived_segments > 0 or user == "bob"
        assert retrievals(target, user) == retrievals(source, user)
        assert retrievals(target, user, include_archived=True) == retrievals(
            source, user, include_archived=True
        )
    # The restored memory works on: an add goes through the pipeline from the restored state.
    target.add_memory(
        "guitar chords melody after the move", "ok", user_id="ann", timestamp="2024-12-01T10:00:00"
    )
    assert (
        target.stats("ann").short_term_pages == source.stats("ann").short_term_pages + 1
        or target.stats("ann").mid_term_pages > 0
    )


def test_a_second_import_imports_nothing_twice(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(60), default_user="default")
    lines = export_text(source, ["default"]).splitlines()
    target = local_service(tmp_path / "target")
    assert import_export(target, lines).restored == ["default"]
    version = target.store.read_version("default")
    again = import_export(target, lines)
    assert again.ok and again.present == ["default"] and not again.restored
    assert sum(again.records.values()) == 0
    assert target.store.read_version("default") == version  # nothing sealed twice
    assert contents(target, "default") == contents(source, "default")


def test_a_user_with_other_memory_here_is_refused_and_left_untouched(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(30), default_user="default")
    lines = export_text(source, ["default"]).splitlines()
    target = local_service(tmp_path / "target")
    import_lines(target, history(12, "default")[5:], default_user="default")
    kept = contents(target, "default")
    report = import_export(target, lines)
    assert not report.ok and [u for u, _ in report.refused] == ["default"]
    assert "forget" in report.refused[0][1] and "refused" in report.summary()
    assert contents(target, "default") == kept


def test_a_newer_format_version_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(10), default_user="default")
    lines = export_text(source, ["default"]).splitlines()
    header = json.loads(lines[0])
    header["version"] = FORMAT_VERSION + 1
    target = local_service(tmp_path / "target")
    with pytest.raises(InvalidInputError, match=f"format version {FORMAT_VERSION + 1}.*newer.*Upgrade"):
        import_export(target, [json.dumps(header), *lines[1:]])
    assert target.store.user_ids() == []


def test_an_export_of_version_1_without_sentence_vectors_is_restored(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(30), default_user="default", sentences=True)
    lines = export_text(source, ["default"]).splitlines()
    header = {**json.loads(lines[0]), "version": 1}
    records = [json.loads(line) for line in lines[1:]]
    assert any("sentences" in r for r in records)
    old = [json.dumps({k: v for k, v in r.items() if k != "sentences"}) for r in records]
    target = local_service(tmp_path / "target")
    report = import_export(target, [json.dumps(header), *old])
    assert report.ok, report.summary()
    restored = contents(target, "default")
    assert all(p["sentences"] is None for p in restored["mtm"] + restored["stm"])
    # Those pages rank with their own vector as their one sentence: the memory answers.
    assert target.retrieve_memory("hiking", user_id="default").mid_term


def test_a_truncated_export_is_reported_by_line_and_completed_by_a_rerun(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(50, "ann") + history(50, "bob"), default_user="default")
    lines = export_text(source, ["ann", "bob"]).splitlines()
    cut = next(i for i, line in enumerate(lines) if '"user_id":"bob"' in line and '"type":"page"' in line) + 5
    truncated = lines[:cut] + [lines[cut][: len(lines[cut]) // 2]]
    target = local_service(tmp_path / "target")
    report = import_export(target, truncated)
    assert report.restored == ["ann"]
    assert report.failed and report.failed[0][0] == cut + 1 and "not JSON" in report.failed[0][1]
    assert [u for u, _ in report.incomplete] == ["bob"] and f"line {cut + 1}" in report.summary()
    assert contents(target, "ann") == contents(source, "ann")
    rerun = import_export(target, lines)
    assert rerun.ok and rerun.present == ["ann"] and rerun.restored == ["bob"], rerun.summary()
    assert contents(target, "bob") == contents(source, "bob")
    assert stats(target, "bob") == stats(source, "bob")


def test_a_malformed_line_is_reported_and_the_rest_continue(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(40, "ann") + history(40, "bob"), default_user="default")
    lines = export_text(source, ["ann", "bob"]).splitlines()
    broken = list(lines)
    bad = next(i for i, line in enumerate(lines) if '"type":"segment"' in line)
    record = json.loads(broken[bad])
    record["n_visit"] = "many"
    broken[bad] = json.dumps(record)
    missing = next(i for i, line in enumerate(lines) if '"user_id":"bob"' in line and '"type":"page"' in line)
    del broken[missing]  # a lost line is found by the user_end counts
    report = import_export(local_service(tmp_path / "target"), broken)
    assert report.failed == [(bad + 1, "n_visit must be int, not str")]
    assert sorted(u for u, _ in report.incomplete) == ["ann", "bob"] and not report.restored
    assert "lines are missing" in dict(report.incomplete)["bob"]


def test_what_was_forgotten_is_not_exported_and_a_restore_after_forget_all_works(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(40), default_user="default")
    short = source.store.list_stm_pages("default")[0]
    listed = source.list_memories(tier="mid_term", limit=5).pages or []
    middle = listed[-1]
    report = source.forget_memory(page_ids=[short.id, middle.id])
    assert report.pages_removed == 2
    text = export_text(source, ["default"])
    assert short.id not in text and middle.id not in text
    assert short.user_input not in text and middle.user_input not in text
    # Forget everything, then restore the export into the same store: the user is back as exported.
    source.forget_memory(everything=True, confirm="default")
    import_export(source, io.StringIO(text).readlines())

    def records(export: str) -> list[dict[str, Any]]:  # vectors may differ in the last bit (see above)
        return [
            {k: v for k, v in json.loads(line).items() if k != "embedding"}
            for line in export.splitlines()[1:]
        ]

    assert records(export_text(source, ["default"])) == records(text)
    assert source.stats("default").short_term_pages + source.stats("default").mid_term_pages == 38


REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memoryos_mcp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def _python(code: str, *args: str) -> str:
    """Run code in another process (an embedded data dir admits one process at a time); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


_MAKE = (
    "import sys; from pathlib import Path\n"
    "from memoryos_mcp.service.bulk import import_lines\n"
    "from tests.helpers.stores import history, local_service\n"
    "import_lines(local_service(Path(sys.argv[1])), history(80, 'ann') + history(20, 'bob'), default_user='default')\n"
)
_DUMP = (
    "import json, sys; from pathlib import Path\n"
    "from tests.helpers.stores import contents, local_service, retrievals, stats\n"
    "service = local_service(Path(sys.argv[1]))\n"
    "print(json.dumps({u: [contents(service, u), stats(service, u), retrievals(service, u)] for u in ('ann', 'bob')}))\n"
)


@pytest.mark.slow
def test_cli_export_then_import_restores_the_same_memory(tmp_path: Path) -> None:
    source_dir, target_dir, dump = tmp_path / "source", tmp_path / "target", tmp_path / "memory.jsonl"
    _python(_MAKE, str(source_dir))

    missing = _cli("export", "--data-dir", str(source_dir), "--user-id", "nobody")
    assert missing.returncode == 2 and "users with memory: ann, bob" in missing.stderr
    done = _cli("export", "--data-dir", str(source_dir), "--all-users", "--out", str(dump))
    assert done.returncode == 0, done.stderr
    assert "exported 2 user(s): 100 pages" in done.stderr and done.stdout == ""
    to_stdout = _cli("export", "--data-dir", str(source_dir), "--user-id", "bob")
    assert (
        to_stdout.returncode == 0
        and json.loads(to_stdout.stdout.splitlines()[0])["format"] == "memoryos-export"
    )

    first = _cli("import", str(dump), "--data-dir", str(target_dir))
    assert first.returncode == 0, first.stderr
    assert (
        "restored 2 user(s) (100 pages" in first.stdout and "restoring" in first.stderr
    )  # summary; progress on stderr
    second = _cli("import", str(dump), "--data-dir", str(target_dir))
    assert (
        second.returncode == 0
        and "restored 0 user(s) (0 pages" in second.stdout
        and "2 already present" in second.stdout
    )

    header = json.loads(dump.read_text().splitlines()[0])
    header["version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps(header) + "\n")
    refused = _cli("import", str(newer), "--data-dir", str(tmp_path / "other"))
    assert refused.returncode == 2 and "newer memoryos-mcp" in refused.stderr

    assert _python(_DUMP, str(target_dir)) == _python(_DUMP, str(source_dir))


def test_a_server_replica_that_cached_the_empty_user_sees_the_restore(
    tmp_path: Path, chroma_server: int
) -> None:
    source = local_service(tmp_path / "source", mtm_capacity=2)
    import_lines(source, history(120, "ann"), default_user="default")
    lines = export_text(source, ["ann"]).splitlines()

    def replica() -> MemoryService:
        settings = load_settings(
            chroma_host="127.0.0.1", chroma_port=chroma_server, collection_prefix="portable", mtm_capacity=2
        )
        store = ChromaStore(make_client(host="127.0.0.1", port=chroma_server), "portable")
        return MemoryService(settings, store, HashEmbedder(), LocalAnalyzer(settings.chain_threshold))

    serving, importing = replica(), replica()
    assert serving.retrieve_memory("hiking", user_id="ann").mid_term == []  # caches the empty user
    report = import_export(importing, lines)
    assert report.restored == ["ann"], report.summary()
    assert stats(serving, "ann") == stats(source, "ann")  # the seal made the cached state reload
    assert contents(serving, "ann") == contents(source, "ann")
    assert retrievals(serving, "ann") == retrievals(source, "ann")


def test_another_embedding_model_is_refused(tmp_path: Path) -> None:
    source = local_service(tmp_path / "source")
    import_lines(source, history(10), default_user="default")
    lines = export_text(source, ["default"]).splitlines()
    header = json.loads(lines[0])
    header["embedding_model"] = "some-other-model"
    with pytest.raises(InvalidInputError, match="MEMORYOS_EMBEDDING_MODEL=some-other-model"):
        import_export(local_service(tmp_path / "target"), [json.dumps(header), *lines[1:]])


def test_records_of_another_user_here_are_never_overwritten(tmp_path: Path) -> None:
    target = local_service(tmp_path / "target")
    import_lines(target, history(20, "bob"), default_user="default")
    bobs = contents(target, "bob")
    source = local_service(tmp_path / "source")
    import_lines(source, history(20, "ann"), default_user="default")
    lines = export_text(source, ["ann"]).splitlines()
    victim = next(i for i, line in enumerate(lines) if '"type":"page"' in line)
    record = json.loads(lines[victim])
    record["id"] = bobs["stm"][0]["id"]  # a hand-edited or mixed-up file
    lines[victim] = json.dumps(record)
    report = import_export(target, lines)
    assert report.failed == [
        (victim + 1, f"id {record['id']} belongs to another user in this store; not overwritten")
    ]
    assert [u for u, _ in report.incomplete] == ["ann"]
    assert contents(target, "bob") == bobs
