"""Start-up, latency and memory of the stdio server, measured the way a desktop client sees them.

    .venv/bin/python bench/latency.py [--pages 500] [--json bench/results/latency.json]

Reports: time from launch to the `initialize` reply (and to `tools/list`), time until the first tool
call is answered (embedding model and Chroma loaded), warm add_memory and retrieve_memory median/p95 with
--pages pages stored, and the server's peak RSS (from the memory_stats tool). Uses the real embedding
model and embedded Chroma in a temp dir; LLM-free.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import percentile, report_figures  # noqa: E402
from stdio import RawStdio  # noqa: E402

TOPICS = {
    "hiking": ["trail", "summit", "boots", "ridge", "valley", "camping", "map", "forest"],
    "cooking": ["bread", "oven", "sauce", "garlic", "risotto", "dough", "spices", "soup"],
    "work": ["migration", "pipeline", "deadline", "manager", "release", "tests", "backfill", "meeting"],
    "music": ["guitar", "chords", "concert", "piano", "melody", "band", "rehearsal", "album"],
    "travel": ["flight", "hotel", "museum", "train", "passport", "beach", "luggage", "tickets"],
}


def _page(rng: random.Random, n: int) -> tuple[str, str]:
    topic = rng.choice(list(TOPICS))
    words = rng.sample(TOPICS[topic], 3)
    return (
        f"Entry {n}: today the {words[0]} and the {words[1]} made me think about {topic}.",
        f"Interesting — tell me more about the {words[2]}.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=500, help="pages stored before timing warm calls")
    parser.add_argument("--samples", type=int, default=50, help="timed calls of each tool")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    exe = Path(sys.executable).with_name("memoryos-mcp")
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
        env["MEMORYOS_DATA_DIR"] = tmp
        server = RawStdio([str(exe), "serve"], env)
        server.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        )
        t_init = time.perf_counter() - server.started
        server.notify("notifications/initialized")
        server.request("tools/list")
        t_list = time.perf_counter() - server.started
        server.call_tool("memory_stats", {})
        t_ready = time.perf_counter() - server.started

        add_ms: list[float] = []
        for n in tqdm(range(args.pages), desc="storing pages", file=sys.stderr):
            user_input, response = _page(rng, n)
            t = time.perf_counter()
            server.call_tool(
                "add_memory", {"user_input": user_input, "agent_response": response, "metadata": {"n": n}}
            )
            add_ms.append((time.perf_counter() - t) * 1000)
        warm_add = add_ms[-args.samples :]

        retrieve_ms: list[float] = []
        for _ in tqdm(range(args.samples), desc="retrieving", file=sys.stderr):
            topic = rng.choice(list(TOPICS))
            query = f"what did I say about the {rng.choice(TOPICS[topic])}?"
            t = time.perf_counter()
            server.call_tool("retrieve_memory", {"query": query})
            retrieve_ms.append((time.perf_counter() - t) * 1000)
        stats = server.call_tool("memory_stats", {})
        server.close()

    figures = {
        "launch_to_initialize_s": round(t_init, 3),
        "launch_to_tools_list_s": round(t_list, 3),
        "launch_to_first_tool_result_s": round(t_ready, 2),
        "pages_stored": args.pages,
        "add_memory_ms_median": round(statistics.median(warm_add), 1),
        "add_memory_ms_p95": round(percentile(warm_add, 95), 1),
        "add_memory_ms_median_all": round(statistics.median(add_ms), 1),
        "retrieve_memory_ms_median": round(statistics.median(retrieve_ms), 1),
        "retrieve_memory_ms_p95": round(percentile(retrieve_ms, 95), 1),
        "segments": stats["segments"],
        "server_peak_rss_mb": stats["peak_rss_mb"],
    }
    report_figures(figures, args.json)


if __name__ == "__main__":
    main()
