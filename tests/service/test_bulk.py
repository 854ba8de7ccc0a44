"""Bulk import: through the memory model, batched, idempotent, resumable after kill -9, any size."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.service.bulk import import_lines
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import load_settings
from tests.helpers.fakes import HashEmbedder, mid_term_pages

TOPICS = [
    "hiking trail boots summit",
    "sourdough bread oven flour",
    "guitar chords melody",
    "taxes invoice receipts",
]


def lines(n: int, start: int = 0, **extra: object) -> list[str]:
    return [
        json.dumps(
            {
                "user_input": f"{TOPICS[i % 4]} note {i}",
                "agent_response": f"reply {i}",
                "timestamp": f"2024-02-{1 + i % 28:02d}T10:{i % 60:02d}:00",
                "metadata": {"line": i},
                **extra,
            }
        )
        for i in range(start, start + n)
    ]


def counts(service: MemoryService, user: str = "default") -> tuple[int, int]:
    stats = service.stats(user)
    return stats.short_term_pages, stats.mid_term_pages


def test_imported_pages_go_through_the_memory_model_and_are_found(service: MemoryService) -> None:
    data = lines(60)
    data.insert(
        30, json.dumps({"user_input": "my locker code is zebracorn-7731", "timestamp": "2024-02-10T09:00:00"})
    )
    report = import_lines(service, data, default_user="default", chunk_size=16)
    assert (report.imported, report.skipped, report.failed) == (61, 0, [])
    stm, mtm = counts(service)
    assert stm == service.settings.stm_capacity and stm + mtm == 61
    assert service.stats().segments > 0
    found = service.retrieve_memory("what is my locker code zebracorn-7731")
    assert any("zebracorn-7731" in p.user_input for p in found.mid_term)
    assert found.mid_term[0].metadata == {} or "line" in found.mid_term[0].metadata


def test_malformed_lines_are_reported_by_number_and_the_rest_imported(service: MemoryService) -> None:
    data = lines(5)
    data[1] = "{not json"
    data[2] = json.dumps({"user_input": 42})
    data[3] = json.dumps({"usr_input": "typo"})
    data.append("")  # blank lines are ignored
    data.append(json.dumps(["a list"]))
    data.append(json.dumps({"user_input": "x", "timestamp": "yesterday"}))
    data.append(json.dumps({"user_input": "x", "user_id": "no spaces allowed"}))
    report = import_lines(service, data, default_user="default")
    assert report.imported == 2
    assert [n for n, _ in report.failed] == [2, 3, 4, 7, 8, 9]
    reasons = dict(report.failed)
    assert "not JSON" in reasons[2] and "user_input must be a string" in reasons[3]
    assert "usr_input" in reasons[4] and "JSON object" in reasons[7]
    assert "timestamp" in reasons[8] and "user_id" in reasons[9]
    assert "line 2: not JSON" in report.summary()


def test_a_rerun_imports_nothing_twice(service: MemoryService) -> None:
    data = lines(40) + [json.dumps({"user_input": "no timestamp: imported as now"})]
    first = import_lines(service, data, default_user="default", chunk_size=7)
    before = counts(service)
    second = import_lines(service, data + data[:3], default_user="default", chunk_size=7)
    assert (first.imported, second.imported, second.skipped) == (41, 0, 44)
    assert counts(service) == before and sum(before) == 41


def test_users_of_one_file_stay_apart(service: MemoryService) -> None:
    data = lines(10, user_id="alice") + lines(10, user_id="bob")
    report = import_lines(service, data, default_user="default")
    assert report.imported == 20 and report.users == {"alice", "bob"}
    assert sum(counts(service, "alice")) == sum(counts(service, "bob")) == 10
    assert sum(counts(service, "default")) == 0


def test_more_pages_than_one_chroma_batch_in_one_write(service: MemoryService) -> None:
    assert service.store.batch < 5600  # type: ignore[attr-defined]
    report = import_lines(service, lines(5600), default_user="default", chunk_size=6000)
    assert report.imported == 5600
    stm, mtm = counts(service)
    assert stm + mtm == 5600
    assert len(mid_term_pages(service.store, "default")) == mtm


def test_import_against_a_chroma_server(tmp_path: Path, chroma_server: int) -> None:
    settings = load_settings(chroma_host="127.0.0.1", chroma_port=chroma_server, collection_prefix="bulk")
    store = ChromaStore(make_client(host="127.0.0.1", port=chroma_server), "bulk")
    service = MemoryService(settings, store, HashEmbedder(), LocalAnalyzer())
    report = import_lines(service, lines(30), default_user="default", chunk_size=8)
    assert report.imported == 30
    assert sum(counts(service)) == 30


# ---------------------------------------------------------------- the command, with the real model


def _cli() -> list[str]:
    return [str(Path(sys.executable).with_name("memoryos-mcp"))]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    env["HOME"] = str(tmp_path)
    return env


def _stored(data_dir: Path, page_ids: list[str]) -> int:
    """How many of these pages are stored, read by a separate process (the data dir allows one at a time)."""
    code = (
        "import json, sys; from pathlib import Path\n"
        "from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client\n"
        "store = ChromaStore(make_client(data_dir=Path(sys.argv[1])))\n"
        "print(len(store.find_pages('default', json.loads(sys.stdin.read()))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        input=json.dumps(page_ids),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.slow
def test_killed_mid_import_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    from memoryos_mcp.service.bulk import parse_line

    source = tmp_path / "history.jsonl"
    data = lines(1500)  # enough that the import is still running when it is killed
    source.write_text("\n".join(data) + "\n")
    data_dir = tmp_path / "data"
    command = [*_cli(), "import", str(source), "--data-dir", str(data_dir), "--chunk-size", "25"]
    proc = subprocess.Popen(command, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    reported, seen = 0, b""
    deadline = time.monotonic() + 120
    while reported < 150 and time.monotonic() < deadline:  # wait until some chunks are reported done
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        counts_seen = [int(m) for m in re.findall(rb"\| *(\d+)/1500", seen)]
        reported = max(counts_seen, default=0)
    assert 0 < reported < 1500, seen[-500:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    settings = load_settings(data_dir=data_dir)
    ids = [parse_line(i + 1, line, settings, "default").page_id for i, line in enumerate(data)]
    assert _stored(data_dir, ids[:reported]) == reported  # every line reported done survived kill -9

    done = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported, skipped = map(int, re.search(r"imported (\d+), skipped (\d+)", done.stdout).groups())  # type: ignore[union-attr]
    assert imported + skipped == 1500 and skipped >= reported and imported > 0  # it was killed mid-way
    assert _stored(data_dir, ids) == 1500

    code = (
        "import sys; from pathlib import Path\n"
        "from tests.helpers.fakes import mid_term_pages\n"
        "from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client\n"
        "store = ChromaStore(make_client(data_dir=Path(sys.argv[1])))\n"
        "stm = store.list_stm_pages('default'); mtm = mid_term_pages(store, 'default')\n"
        "ids = [p.id for p in stm + mtm]\n"
        "print(len(ids), len(set(ids)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1500", "1500"]  # no page in both tiers, none twice


@pytest.mark.slow
def test_the_command_reports_a_data_dir_in_use(tmp_path: Path) -> None:
    make_client(
        data_dir=tmp_path / "data"
    )  # this test process holds the directory, as a running server would
    source = tmp_path / "x.jsonl"
    source.write_text("\n".join(lines(3)) + "\n")
    done = subprocess.run(
        [*_cli(), "import", str(source), "--data-dir", str(tmp_path / "data")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "another process is using the memory directory" in done.stderr
