"""Export → import round trip: seconds, file size, and whether the copy is the same memory.

    .venv/bin/python bench/portable.py                     # 5,000 pages (about 3 min on 2 cores, mostly the set-up import)
    .venv/bin/python bench/portable.py --pages 20000 --json bench/results/portable.json

One user with a synthetic history (bench/synth.py) is imported through `memoryos-mcp import` with the real
embedding model (set-up, not measured); then `memoryos-mcp export --out` and `memoryos-mcp import` of that
file into an empty data directory are timed as commands (process start included). Finally both data
directories are opened in this process and compared: memory_stats, and retrieve_memory of the synth
queries (page ids, order, scores). LLM-free; embedded Chroma in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from synth import QUERIES, write_jsonl  # noqa: E402

EXE = Path(sys.executable).with_name("memoryos-mcp")
USER = "bench"


def _run(*args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    started = time.monotonic()
    done = subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def compare(source: Path, target: Path) -> dict[str, Any]:
    from memoryos_mcp.adapters.embedder import make_embedder
    from memoryos_mcp.service.facade import MemoryService
    from memoryos_mcp.service.settings import load_settings

    embedder = make_embedder()
    answers = []
    for data_dir in (source, target):
        service = MemoryService.create(load_settings(data_dir=data_dir), embedder=embedder)
        s = service.stats(USER)
        counts = (s.short_term_pages, s.mid_term_pages, s.segments, s.archived_segments, s.indexed_pages)
        found = [
            [(p.id, round(p.score, 5)) for p in service.retrieve_memory(q, user_id=USER).mid_term]
            for q in QUERIES
        ]
        answers.append((counts, found))
    (a_counts, a_found), (b_counts, b_found) = answers
    return {
        "stats": a_counts,
        "stats_equal": a_counts == b_counts,
        "retrievals_equal": a_found == b_found,
        "queries": len(QUERIES),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep-dir", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memoryos-portable-"))
    source, target, dump = work / "source", work / "target", work / "memory.jsonl"
    history = write_jsonl(work / "history.jsonl", args.pages, seed=7, user_id=USER)
    print(f"set-up: importing {args.pages} pages with the embedding model…", file=sys.stderr)
    setup_s, _ = _run("import", str(history), "--data-dir", str(source))

    export_s, export_log = _run("export", "--data-dir", str(source), "--user-id", USER, "--out", str(dump))
    import_s, import_log = _run("import", str(dump), "--data-dir", str(target))
    restored = re.search(r"restored .*", import_log)
    figures = {
        "pages": args.pages,
        "setup_import_s": round(setup_s, 1),
        "export_s": round(export_s, 1),
        "export_mb": round(dump.stat().st_size / 1e6, 1),
        "import_s": round(import_s, 1),
        "import_summary": restored.group(0) if restored else import_log[-300:],
        **compare(source, target),
    }
    print(
        f"\n| pages | export s | file MB | import s | pages/s round trip | stats equal | {len(QUERIES)} retrievals equal |"
    )
    print("|---:|---:|---:|---:|---:|:-:|:-:|")
    rate = args.pages / (figures["export_s"] + figures["import_s"])
    print(
        f"| {args.pages:,} | {figures['export_s']} | {figures['export_mb']} | {figures['import_s']} | {rate:.0f} "
        f"| {'yes' if figures['stats_equal'] else 'NO'} | {'yes' if figures['retrievals_equal'] else 'NO'} |"
    )
    print(f"\n{figures['import_summary']}\nstats (stm, mtm, segments, archived, indexed): {figures['stats']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if args.keep_dir:
        print(f"kept {work}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
