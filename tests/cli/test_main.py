"""The operator commands list / forget / stats, run as the installed `memoryos-mcp` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    env["HOME"] = str(tmp_path)
    command = [
        sys.executable,
        "-m",
        "memoryos_mcp",
        *args,
        "--data-dir",
        str(tmp_path / "data"),
        "--user-id",
        "ana",
    ]
    return subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=180)


def test_import_list_forget_and_stats_from_the_command_line(tmp_path: Path) -> None:
    history = "\n".join(
        json.dumps(
            {
                "user_input": f"note {i} about {'the garden' if i % 2 else 'my guitar'}",
                "timestamp": f"2024-03-{i + 1:02d}T10:00:00",
            }
        )
        for i in range(20)
    )
    assert _run(tmp_path, "import", "-", stdin=history).returncode == 0
    listed = _run(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    pages = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(pages) == 20 and pages[0]["timestamp"] > pages[-1]["timestamp"]
    assert {p["tier"] for p in pages} == {"short_term", "mid_term"}
    older = [p["id"] for p in pages if p["timestamp"] < "2024-03-03"]
    target = pages[0]["id"]

    forgot = _run(tmp_path, "forget", "--page-id", target, "--before", "2024-03-03")
    assert forgot.returncode == 0, forgot.stderr
    result = json.loads(forgot.stdout)
    assert sorted(result["page_ids_removed"]) == sorted([target, *older]) and result["pages_removed"] == 3

    refused = _run(tmp_path, "forget", "--all", "--confirm", "someone")
    assert refused.returncode == 2 and "confirm='ana'" in refused.stderr

    stats = json.loads(_run(tmp_path, "stats").stdout)
    assert stats["user_id"] == "ana" and stats["short_term_pages"] + stats["mid_term_pages"] == 17
    assert {
        json.loads(line)["id"] for line in _run(tmp_path, "list", "--limit", "5").stdout.splitlines()
    } <= {p["id"] for p in pages} - {target, *older}

    everything = _run(tmp_path, "forget", "--all", "--confirm", "ana")
    assert everything.returncode == 0 and json.loads(everything.stdout)["pages_removed"] == 17
    assert _run(tmp_path, "list").stdout == ""
