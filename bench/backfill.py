"""Bulk import at the page rate on LoCoMo pages, then the server's sentence backfill beside an agent loop.

    .venv/bin/python bench/backfill.py --pages 10000            # ~15 min on 2 cores
    .venv/bin/python bench/backfill.py --pages 1000 --with-now  # also `import --sentences now`, for comparison

Pages: the LoCoMo development conversations as bench/locomo.py replays them (~265 characters, ~6 sentences a
page), repeated with their dates moved on by two years a pass until there are --pages; one user.

  1. The raw rates of the configured embedding backend, in this process, on a sample of the pages: each page's
     exchange alone (what the import embeds now), and the sentences alone (what the backfill embeds), each in
     one call (the model's own batching).
  2. `memoryos-mcp import` of all pages (the import phase, from its summary): its rate over the
     exchanges-alone rate. Target ≥ 0.75.
  3. `memoryos-mcp serve` on the result, and an agent loop beside the backfill: retrieve_memory, --think-s
     of the host model's own work, add_memory; until memory_stats says no page waits; the backfill's
     time (from the service being up) over the time the sentences-alone rate needs for the pages that
     waited (target ≤ 1.2), the loop's retrieve p50/p95 meanwhile (target p95 ≤ 100 ms), and the same
     loop's retrieve p50/p95 afterwards, with nothing in the background.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import percentile, report_figures  # noqa: E402
from locomo import DEFAULT_DATA, load_conversations  # noqa: E402
from scale import EXE, USER, Server, _env  # noqa: E402

from memoryos_mcp.core.embedding import embed_sentences  # noqa: E402
from memoryos_mcp.core.models import Page  # noqa: E402
from memoryos_mcp.core.text import exchange_text  # noqa: E402


def locomo_lines(path: Path, n: int) -> tuple[list[dict[str, Any]], list[str]]:
    """n import lines from the LoCoMo conversations (passes dated two years apart), and their questions."""
    conversations = load_conversations(path)
    pages = [p for c in conversations for p in c.pages if p.timestamp]
    questions = [q.question for c in conversations for q in c.questions]
    lines: list[dict[str, Any]] = []
    passes = 0
    while len(lines) < n:
        for page in pages[: n - len(lines)]:
            year = int(page.timestamp[:4]) + 2 * passes
            lines.append(
                {
                    "user_input": page.user_input,
                    "agent_response": page.agent_response,
                    "timestamp": f"{year}{page.timestamp[4:]}",
                }
            )
        passes += 1
    return lines, questions


def raw_rates(lines: list[dict[str, Any]], sample: int) -> dict[str, float]:
    """Pages per second of the configured embedder: exchanges alone, and sentences alone."""
    from memoryos_mcp.adapters.embedder import make_embedder

    embedder = make_embedder()
    pages = [
        Page(str(i), USER, line["user_input"], line["agent_response"], line["timestamp"], i)
        for i, line in enumerate(lines[:sample])
    ]
    embedder.embed([exchange_text(p) for p in pages[:64]])  # warm up
    started = time.perf_counter()
    vectors = embedder.embed([exchange_text(p) for p in pages])
    exchanges = len(pages) / (time.perf_counter() - started)
    with_vectors = [replace(p, embedding=v) for p, v in zip(pages, vectors, strict=True)]
    started = time.perf_counter()
    embed_sentences(embedder, with_vectors)
    sentences = len(pages) / (time.perf_counter() - started)
    return {
        "raw_exchanges_pages_per_s": round(exchanges, 1),
        "raw_sentences_pages_per_s": round(sentences, 1),
    }


def run_import(path: Path, data_dir: Path, log: Path, *extra: str) -> float:
    """The import phase's pages per second, from the command's summary."""
    with log.open("ab") as err:
        done = subprocess.run(
            [str(EXE), "import", str(path), "--data-dir", str(data_dir), *extra],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"import failed ({done.returncode}): {done.stdout}\nsee {log}")
    match = re.search(r"imported (\d+).*?([\d.]+) pages/s", done.stdout)
    assert match, done.stdout
    return float(match.group(2))


def agent_loop(
    server: Server, questions: list[str], lines: list[dict[str, Any]], think_s: float, turns: int | None
) -> tuple[list[float], list[float], float]:
    """Turns of retrieve, the host model's --think-s, add; until no page waits (turns=None: memory_stats is asked every fifth
    turn) or for `turns` turns. Returns the retrieve and add times, and the loop's seconds."""
    started = time.perf_counter()
    retrieve_ms: list[float] = []
    add_ms: list[float] = []
    turn = 0
    while turns is None or turn < turns:
        _, ms = server.call("retrieve_memory", query=questions[turn % len(questions)], user_id=USER)
        retrieve_ms.append(ms)
        time.sleep(think_s)  # the host model answers, then the exchange is stored
        line = lines[turn % len(lines)]
        item = {**line, "timestamp": f"2030-01-{1 + turn % 28:02d}T10:{turn % 60:02d}:00"}
        _, ms = server.call("add_memory", user_id=USER, **item)
        add_ms.append(ms)
        turn += 1
        if turns is None and turn % 5 == 0:
            stats, _ = server.call("memory_stats", user_id=USER)
            if stats["pages_waiting_for_sentences"] == 0:
                break
    return retrieve_ms, add_ms, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=10000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo JSON")
    parser.add_argument(
        "--raw-sample", type=int, default=2000, help="pages embedded to measure the raw rates"
    )
    parser.add_argument("--think-s", type=float, default=1.0, help="the host model's time between turns")
    parser.add_argument("--after-turns", type=int, default=40, help="loop turns once nothing waits")
    parser.add_argument("--with-now", action="store_true", help="also time `import --sentences now`")
    parser.add_argument(
        "--keep-dir", type=Path, help="work here and keep the data (default: a temporary dir)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "backfill.json")
    args = parser.parse_args()

    lines, questions = locomo_lines(args.data, args.pages)
    figures: dict[str, Any] = {"pages": len(lines)}
    figures.update(raw_rates(lines, min(args.raw_sample, len(lines))))
    with tempfile.TemporaryDirectory(prefix="memoryos-backfill-") as scratch:
        tmp = args.keep_dir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        source, log = tmp / "locomo.jsonl", tmp / "server.log"
        source.write_text("".join(json.dumps({**line, "user_id": USER}) + "\n" for line in lines))
        if args.with_now:
            figures["import_now_pages_per_s"] = run_import(
                source, tmp / "data-now", log, "--sentences", "now"
            )
        data_dir = tmp / "data"
        figures["import_pages_per_s"] = run_import(source, data_dir, log)
        figures["import_vs_raw_exchanges"] = round(
            figures["import_pages_per_s"] / figures["raw_exchanges_pages_per_s"], 2
        )
        server = Server(
            data_dir, log, verbose=True
        )  # returns once the service is up: the backfill starts then
        stats, _ = server.call("memory_stats", user_id=USER)
        waiting = stats["pages_waiting_for_sentences"]
        during, adds, _ = agent_loop(server, questions, lines, args.think_s, None)
        after, _, _ = agent_loop(server, questions, lines, args.think_s, args.after_turns)
        server.close()
        # The server logs (-v) when the user's last waiting page got its vectors, and how long it took.
        done = re.findall(
            r"sentence vectors filled in for (\d+) page\(s\) of \S+ in ([\d.]+) s", log.read_text()
        )
        assert done, f"the server did not log the end of the backfill: see {log}"
        seconds = float(done[-1][1])
    embedding_s = waiting / figures["raw_sentences_pages_per_s"]
    figures.update(
        pages_waiting_at_start=waiting,
        backfill_s=round(seconds, 1),
        backfill_embedding_s=round(embedding_s, 1),
        backfill_vs_embedding=round(seconds / embedding_s, 2) if embedding_s else None,
        loop_turns_during=len(during),
        retrieve_p50_ms_during=round(statistics.median(during), 1),
        retrieve_p95_ms_during=round(percentile(during, 95), 1),
        add_p50_ms_during=round(statistics.median(adds), 1),
        retrieve_p50_ms_after=round(statistics.median(after), 1),
        retrieve_p95_ms_after=round(percentile(after, 95), 1),
    )
    report_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
