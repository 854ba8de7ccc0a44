"""The int8 screen ranks exactly: at 100k pages, screened retrieval equals exact retrieval, query by query.

    .venv/bin/python bench/scale.py --sizes 100000 --no-users --keep-dir D --reuse   # once: D/imported-100000
    .venv/bin/python bench/screen.py --data-dir D/imported-100000 --queries 300

Loads the user's page index as the server does (from its snapshot), makes an unscreened copy of it, and for
each query — the synthetic benchmark's questions and user turns drawn from the history — ranks segments and
pages both ways with the same arguments retrieve_memory uses (query embedding, F_scores of the active
segments, top_m, top_k). Prints the kernel this CPU got, how many queries differ (segments, page ids or
their order in the top k, or a score by more than 1e-5: must be 0), and the time of each ranking (p50/p95).
No visits are recorded; the data dir changes only where an index snapshot of an earlier version is saved
again (as the server would).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import percentile, report_figures  # noqa: E402
from synth import QUERIES  # noqa: E402

from memoryos_mcp.core.pipeline import rank_segments  # noqa: E402
from memoryos_mcp.core.recall import mean_direction  # noqa: E402
from memoryos_mcp.core.text import extract_keywords  # noqa: E402
from memoryos_mcp.index.page_index import PageIndex  # noqa: E402
from memoryos_mcp.index.screen import dot_kernel  # noqa: E402
from memoryos_mcp.index.snapshot_format import pack_snapshot  # noqa: E402
from memoryos_mcp.service.facade import MemoryService  # noqa: E402
from memoryos_mcp.service.settings import load_settings  # noqa: E402


def queries(history: Path | None, n: int, seed: int = 0) -> list[str]:
    """The benchmark's questions, then user turns of the history (first sentence) until there are n."""
    chosen = list(QUERIES)[:n]
    if history is not None and history.exists() and len(chosen) < n:
        turns = [json.loads(line)["user_input"] for line in history.open()]
        rng = random.Random(seed)
        for turn in rng.sample(turns, min(len(turns), n - len(chosen))):
            chosen.append(turn.split(". ")[0].split("? ")[0])
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="a data dir kept by bench/scale.py")
    parser.add_argument("--user", default="bench")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--history", type=Path, help="JSON Lines the user turns are drawn from (default: beside)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    service = MemoryService.create(load_settings(data_dir=args.data_dir))
    memory = service.memory
    state = memory.state(args.user)
    screened = state.index
    if len(screened) < screened.screen_from:
        parser.error(f"the index of {args.user!r} has {len(screened)} pages: too few to be screened")
    exact = PageIndex.restore(pack_snapshot(screened.export()), screen_from=10**12)
    segments = list(state.segments.values())
    history = args.history or args.data_dir.parent / f"history-{args.data_dir.name.split('-')[-1]}.jsonl"
    asked = queries(history, args.queries)
    weights, params = memory.weights, memory.params
    differ, screened_ms, exact_ms = 0, [], []
    for query in asked:
        vector = mean_direction(memory.embedder.embed(screened.query_texts(query, weights)))
        by_f = rank_segments(segments, vector, extract_keywords(query, limit=12), len(segments))
        call = ([s for s, _ in by_f], [f for _, f in by_f])
        results = []
        for index, times in ((screened, screened_ms), (exact, exact_ms)):
            started = time.perf_counter()
            results.append(
                index.rank(query, vector, *call, top_m=params.top_m, top_k=params.top_k, weights=weights)
            )
            times.append((time.perf_counter() - started) * 1000)
        (seg_a, pages_a), (seg_b, pages_b) = results
        same = (
            [s.id for s, _ in seg_a] == [s.id for s, _ in seg_b]
            and [p.id for p, _ in pages_a] == [p.id for p, _ in pages_b]
            and np.allclose([x for _, x in pages_a], [x for _, x in pages_b], rtol=0, atol=1e-5)
        )
        differ += not same
    report_figures(
        {
            "indexed_pages": len(screened),
            "screen_kernel": f"{dot_kernel().name} ({dot_kernel().reason})",
            "queries": len(asked),
            "queries_differing": differ,
            "rank_screened_p50_ms": round(statistics.median(screened_ms), 2),
            "rank_screened_p95_ms": round(percentile(screened_ms, 95), 2),
            "rank_exact_p50_ms": round(statistics.median(exact_ms), 2),
            "rank_exact_p95_ms": round(percentile(exact_ms, 95), 2),
        },
        args.json,
    )
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
