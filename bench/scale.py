"""Memory at scale: bulk import, cold start, the agent loop and memory use at 1k / 10k / 100k pages a user,
and many users within a cache budget.

    .venv/bin/python bench/scale.py                                   # everything (about 1 h on 2 cores)
    .venv/bin/python bench/scale.py --sizes 1000,10000 --no-users     # a quicker look
    .venv/bin/python bench/scale.py --keep-dir D --reuse ...          # serve again on D's earlier imports
    .venv/bin/python bench/scale.py --sizes 1000,100000 --no-users --rounds 5   # the serving half 5 times

For each size N (one user, a synthetic year of chat from bench/synth.py, ~265 characters a page):
  - the raw batched-embedding rate of the same texts (each page's exchange and its sentences), measured in
    this process (a sample of up to --raw-sample pages, one encode call), and the import rate of
    `memoryos-mcp import` over all N lines (the import phase itself, from the command's summary; the model
    load is not counted);
  - a server started over stdio on that data: the first retrieve_memory of the user after the start (timed
    once the service is up: the embedding model loads in the background from launch), then --cycles
    cycles of add_memory + retrieve_memory, as an agent does; peak RSS of the server.
With --rounds R the serving half runs R times, the sizes taking turns (each on a fresh copy of its import),
and the table gives each serving figure's median over the rounds; the ratio of the retrieve p50 at each
size to the smallest size's is taken within each round (a shared 2-core machine drifts between minutes:
one round's ratio alone ranged 1.4-1.7 for the same code) and reported per round and as their median.
With --users U --pages-per-user P: U users of P pages imported in one file, served with
index_cache_mb = --budget-mb (smaller than their total): each user's first retrieval, the cache size and
RSS after all of them, and whether users evicted and reloaded answer exactly as they did first.

LLM-free; embedded Chroma in a temporary directory. Writes one table and, with --json, the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import percentile  # noqa: E402
from stdio import RawStdio  # noqa: E402
from synth import QUERIES, conversation, write_jsonl  # noqa: E402
from tqdm import tqdm  # noqa: E402

EXE = Path(sys.executable).with_name("memoryos-mcp")
USER = "bench"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    env.update(extra)
    return env


def raw_embedding_rate(path: Path, sample: int) -> tuple[float, int]:
    """Pages per second of one batched encode call over what an import embeds for the first `sample` pages of
    the file — each page's exchange and its sentences (core.memory.embed_pages) — with the embedder the
    server uses, in this process, with nothing else running."""
    from memoryos_mcp.adapters.embedder import make_embedder
    from memoryos_mcp.core.embedding import embed_pages
    from memoryos_mcp.core.models import Page

    pages = []
    with path.open() as lines:
        for n, line in enumerate(lines):
            item = json.loads(line)
            pages.append(Page(str(n), "u", item["user_input"], item["agent_response"], "", n))
            if len(pages) >= sample:
                break
    embedder = make_embedder()  # the backend the server and the import use
    embed_pages(embedder, pages[:64])  # warm up
    started = time.perf_counter()
    embed_pages(embedder, pages)
    return len(pages) / (time.perf_counter() - started), len(pages)


def run_import(path: Path, data_dir: Path, log: Path, budget_mb: int | None = None) -> dict[str, float]:
    started = time.perf_counter()
    with log.open("ab") as err:
        done = subprocess.run(
            [str(EXE), "import", str(path), "--data-dir", str(data_dir)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"import failed ({done.returncode}): {done.stdout}\nsee {log}")
    match = re.search(r"imported (\d+), skipped (\d+).*?, ([\d.]+) s, ([\d.]+) pages/s", done.stdout)
    assert match, done.stdout
    return {
        "imported": int(match.group(1)),
        "import_s": float(match.group(3)),
        "import_pages_per_s": float(match.group(4)),
        "import_wall_s": round(wall, 1),
    }


class Server:
    """`memoryos-mcp serve` over stdio on a data dir; waits until the service is up."""

    def __init__(self, data_dir: Path, log: Path, verbose: bool = False, **env: str) -> None:
        self.err = log.open("ab")
        command = [str(EXE), "serve", "--data-dir", str(data_dir), *(["-v"] if verbose else [])]
        self.rpc = RawStdio(command, _env(**env), stderr=self.err)
        self.rpc.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "scale-bench", "version": "0"},
            },
        )
        self.rpc.notify("notifications/initialized")
        self.rpc.call_tool(
            "memory_stats", {"user_id": "nobody"}
        )  # returns once the model and Chroma are loaded
        self.ready_s = time.perf_counter() - self.rpc.started

    def call(self, tool: str, **arguments: Any) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        result = self.rpc.call_tool(tool, arguments)
        return result, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.rpc.close()
        self.err.close()


def imported(size: int, raw_sample: int, tmp: Path, log: Path, reuse: bool, keep: bool) -> dict[str, Any]:
    """Import `size` pages into tmp/data-{size}. `keep`: a copy of the import is kept beside it; `reuse`: a
    copy kept earlier is put back (same path) with its figures instead, so the serving half can be measured
    again without the ~10 min import of 100k pages."""
    data_dir, pristine = tmp / f"data-{size}", tmp / f"imported-{size}"
    saved = pristine.with_suffix(".json")
    if reuse and saved.exists() and pristine.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.copytree(pristine, data_dir)
        return {**json.loads(saved.read_text()), "import_reused": True}
    shutil.rmtree(data_dir, ignore_errors=True)
    source = write_jsonl(tmp / f"history-{size}.jsonl", size, seed=size, user_id=USER)
    raw_rate, raw_n = raw_embedding_rate(source, min(size, raw_sample))
    figures: dict[str, Any] = {
        "pages": size,
        "raw_embed_pages_per_s": round(raw_rate, 1),
        "raw_embed_sample": raw_n,
    }
    figures.update(run_import(source, data_dir, log))
    figures["import_vs_raw"] = round(figures["import_pages_per_s"] / raw_rate, 2)
    if keep:
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(data_dir, pristine)
        saved.write_text(json.dumps(figures))
    return figures


SERVING = (
    "server_ready_s", "first_retrieve_ms", "retrieve_p50_ms", "retrieve_p95_ms", "add_p50_ms", "add_p95_ms",
    "peak_rss_mb",
)  # fmt: skip


def one_user(
    size: int, cycles: int, raw_sample: int, tmp: Path, reuse: bool = False, keep: bool = False
) -> dict[str, Any]:
    log = tmp / f"server-{size}.log"
    figures = imported(size, raw_sample, tmp, log, reuse, keep or reuse)
    data_dir = tmp / f"data-{size}"
    server = Server(data_dir, log)
    figures["server_ready_s"] = round(server.ready_s, 1)
    _, first = server.call("retrieve_memory", query=QUERIES[0], user_id=USER)
    figures["first_retrieve_ms"] = round(first, 1)
    more = conversation(cycles, seed=size + 1)
    add_ms, retrieve_ms = [], []
    for i, item in enumerate(tqdm(more, total=cycles, desc=f"{size} pages: add+retrieve", file=sys.stderr)):
        item["timestamp"] = f"2025-06-{1 + i % 28:02d}T20:{i % 60:02d}:00"
        _, ms = server.call("add_memory", user_id=USER, **item)
        add_ms.append(ms)
        _, ms = server.call("retrieve_memory", query=QUERIES[i % len(QUERIES)], user_id=USER)
        retrieve_ms.append(ms)
    stats, _ = server.call("memory_stats", user_id=USER)
    server.close()
    figures.update(
        retrieve_p50_ms=round(statistics.median(retrieve_ms), 1),
        retrieve_p95_ms=round(percentile(retrieve_ms, 95), 1),
        add_p50_ms=round(statistics.median(add_ms), 1),
        add_p95_ms=round(percentile(add_ms, 95), 1),
        peak_rss_mb=stats["peak_rss_mb"],
        segments=stats["segments"],
        archived_segments=stats["archived_segments"],
        indexed_pages=stats["indexed_pages"],
        cache_mb=stats["cache_mb"],
    )
    return figures


def over_rounds(rounds: list[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per size (import figures of the first round, serving figures as medians over the rounds) and,
    per size, its retrieve p50 divided by the smallest size's in the same round."""
    rows, ratios = [], []
    for i, first in enumerate(rounds[0]):
        runs = [r[i] for r in rounds]
        row = dict(first)
        for key in SERVING:
            row[key] = round(statistics.median(run[key] for run in runs), 1)
        row["retrieve_p50_ms_rounds"] = [run["retrieve_p50_ms"] for run in runs]
        rows.append(row)
        within = [
            run["retrieve_p50_ms"] / r[0]["retrieve_p50_ms"] for run, r in zip(runs, rounds, strict=True)
        ]
        ratios.append(
            {
                "pages": row["pages"],
                "per_round": [round(x, 2) for x in within],
                "median": round(statistics.median(within), 2),
            }
        )
    return rows, ratios


def many_users(users: int, pages_per_user: int, budget_mb: int, tmp: Path) -> dict[str, Any]:
    source = tmp / "users.jsonl"
    with source.open("w") as out:
        for u in range(users):
            for item in conversation(pages_per_user, seed=10_000 + u):
                item["user_id"] = f"user{u:03d}"
                out.write(json.dumps(item) + "\n")
    data_dir, log = tmp / "data-users", tmp / "server-users.log"
    figures: dict[str, Any] = {"users": users, "pages_per_user": pages_per_user, "budget_mb": budget_mb}
    figures.update(run_import(source, data_dir, log))
    server = Server(data_dir, log, MEMORYOS_INDEX_CACHE_MB=str(budget_mb))
    first: dict[str, list[tuple[str, float]]] = {}
    load_ms, cache_mb = [], []
    names = [f"user{u:03d}" for u in range(users)]
    for name in tqdm(names, desc="users: first retrieval", file=sys.stderr):
        result, ms = server.call("retrieve_memory", query=QUERIES[2], user_id=name, include_short_term=False)
        load_ms.append(ms)
        first[name] = [(p["id"], p["score"]) for p in result["mid_term"]]
        stats, _ = server.call("memory_stats", user_id=name)
        cache_mb.append(stats["cache_mb"])
    cached_after = stats["cached_users"]
    again = names[: min(20, users)]  # the least recently used: evicted long ago
    same = 0
    for name in again:
        result, _ = server.call("retrieve_memory", query=QUERIES[2], user_id=name, include_short_term=False)
        same += [(p["id"], p["score"]) for p in result["mid_term"]] == first[name]
    stats, _ = server.call("memory_stats", user_id=again[-1])
    server.close()
    figures.update(
        user_load_retrieve_p50_ms=round(statistics.median(load_ms), 1),
        user_load_retrieve_p95_ms=round(percentile(load_ms, 95), 1),
        cache_mb_max=max(cache_mb),
        cached_users_at_end=cached_after,
        reloaded_users_answering_the_same=f"{same}/{len(again)}",
        peak_rss_mb=stats["peak_rss_mb"],
    )
    return figures


def table(rows: list[dict[str, Any]]) -> str:
    keys = [
        ("pages", "pages"),
        ("raw_embed_pages_per_s", "raw embed/s"),
        ("import_pages_per_s", "import/s"),
        ("import_vs_raw", "import÷raw"),
        ("import_s", "import s"),
        ("first_retrieve_ms", "1st retrieve ms"),
        ("retrieve_p50_ms", "retr p50"),
        ("retrieve_p95_ms", "retr p95"),
        ("add_p50_ms", "add p50"),
        ("add_p95_ms", "add p95"),
        ("indexed_pages", "indexed"),
        ("segments", "segments"),
        ("archived_segments", "archived"),
        ("peak_rss_mb", "RSS MB"),
    ]
    head = " | ".join(label for _, label in keys)
    lines = [f"| {head} |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in keys) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="pages of the one-user runs, comma-separated"
    )
    parser.add_argument("--cycles", type=int, default=50, help="add_memory + retrieve_memory cycles per size")
    parser.add_argument("--raw-sample", type=int, default=4000, help="pages embedded to measure the raw rate")
    parser.add_argument("--users", type=int, default=100, help="users of the many-users run")
    parser.add_argument("--pages-per-user", type=int, default=1000)
    parser.add_argument("--budget-mb", type=int, default=64, help="index_cache_mb of the many-users run")
    parser.add_argument("--no-users", action="store_true", help="skip the many-users run")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument(
        "--keep-dir", type=Path, help="work here and keep the data (default: a temporary dir)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="serve each size this many times, the sizes taking turns"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep-dir: keep a copy of each import, or serve again on the copy an earlier run kept",
    )
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results: dict[str, Any] = {"sizes": [], "users": None}
    with tempfile.TemporaryDirectory(prefix="memoryos-scale-") as scratch:
        tmp = args.keep_dir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        reuse = args.reuse and bool(args.keep_dir)
        rounds: list[list[dict[str, Any]]] = []
        for number in range(args.rounds):
            rounds.append([])
            for size in sizes:
                # later rounds serve a copy of the first round's import, kept beside it
                row = one_user(size, args.cycles, args.raw_sample, tmp, reuse or number > 0, args.rounds > 1)
                rounds[-1].append(row)
                print(json.dumps({"round": number + 1, **row}), file=sys.stderr)
        results["sizes"], results["ratios"] = over_rounds(rounds)
        if not args.no_users:
            results["users"] = many_users(args.users, args.pages_per_user, args.budget_mb, tmp)
    print(table(results["sizes"]))
    if len(sizes) > 1:
        print(f"\nretrieve p50 / p50 at {sizes[0]} pages, within each of {args.rounds} round(s):")
        for ratio in results["ratios"][1:]:
            print(f"  {ratio['pages']:>7} pages: {ratio['per_round']}  median {ratio['median']}")
    if results["users"]:
        print()
        for key, value in results["users"].items():
            print(f"{key:<36} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
