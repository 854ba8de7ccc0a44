"""LLM calls and tokens per add_memory over a LoCoMo conversation, with the fake OpenAI server counting.

    .venv/bin/python bench/llm_calls.py [--conversation conv-26] [--model keyword|lazy] [--json FILE]

Replays the conversation's pages (built as bench/locomo.py builds them) through MemoryService with the real
embedding model, embedded Chroma in a temp dir, and the LLM pipeline pointed at tests/fake_openai.py. The fake
answers every prompt with well-formed JSON derived from the pages (keywords stand in for a model's judgement),
so the figures count what our pipeline asks, not what a model knows. Prompt tokens are the fake's count
(whitespace words of all messages), which is lower than a BPE tokenizer's by roughly a third.

`--model lazy` is a compliant but lazy endpoint instead: JSON in the requested shape that covers only the first
page (or segment) and copies the example's "..." — what a very small local model answers under a JSON schema.
The cool-down is 0 by default (`--cooldown-s`), the worst case: the model is asked again at every batch.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import report_figures  # noqa: E402
from locomo import load_conversations  # noqa: E402

from memoryos_mcp.core.text import extract_keywords  # noqa: E402
from tests.helpers.fake_openai import FakeOpenAIServer  # noqa: E402

_PAGE = re.compile(r"^Page (\d+) \[([^\]]*)\]\nUser: (.*)\nAssistant: (.*)$", re.MULTILINE)
_SEGMENT = re.compile(r"^Segment (S\d+)$", re.MULTILINE)


def keyword_model(request: dict[str, Any]) -> dict[str, Any]:
    """A stand-in model: chains by shared keywords, topics by each page's top keyword."""
    prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
    if "TASK: chain_and_topics" in prompt:
        previous = re.search(r"already in memory\):\n(.*)", prompt)
        last = set(extract_keywords(previous.group(1))) if previous else set()
        pages, groups = [], {}
        for index, _, user, assistant in _PAGE.findall(prompt):
            words = extract_keywords(f"{user} {assistant}", limit=5)
            pages.append(
                {
                    "index": int(index),
                    "continues_previous": bool(last & set(words)),
                    "chain_summary": f"{user[:120]}",
                }
            )
            groups.setdefault(words[0] if words else "chat", []).append(int(index))
            last = set(words)
        topics = [
            {"summary": f"Talk about {t}.", "keywords": [t], "pages": idx}
            for t, idx in list(groups.items())[:3]
        ]
        return {"pages": pages, "topics": topics}
    if "TASK: refresh_segments" in prompt:
        return {
            "segments": [
                {"id": sid, "summary": f"Updated segment {sid}.", "keywords": []}
                for sid in _SEGMENT.findall(prompt)
            ]
        }
    facts = [f"[{when[:10]}] {user[:100]}" for _, when, user, _ in _PAGE.findall(prompt) if user]
    return {"profile": {"static": {}, "traits": {}}, "user_facts": facts[:5], "assistant_traits": []}


def lazy_model(request: dict[str, Any]) -> dict[str, Any]:
    """A compliant but lazy endpoint: the right shape, one page or segment covered, the example's "..."."""
    prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
    if "TASK: chain_and_topics" in prompt:
        return {
            "pages": [{"index": 1, "continues_previous": True, "chain_summary": "..."}],
            "topics": [{"summary": "...", "keywords": ["..."], "pages": [1]}],
        }
    if "TASK: refresh_segments" in prompt:
        return {"segments": [{"id": "S1", "summary": "...", "keywords": ["..."]}]}
    return {
        "profile": {"static": {"name": "..."}, "traits": {}},
        "user_facts": ["..."],
        "assistant_traits": [],
    }


MODELS = {"keyword": keyword_model, "lazy": lazy_model}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversation", default="conv-26")
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
    )
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="keyword", help="how the fake endpoint answers"
    )
    parser.add_argument(
        "--cooldown-s", type=float, default=0.0, help="MEMORYOS_LLM_COOLDOWN_S for the run (default 0)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from memoryos_mcp.service.facade import MemoryService
    from memoryos_mcp.service.settings import load_settings

    (conversation,) = load_conversations(args.data, [args.conversation])
    per_add: list[dict[str, int]] = []
    page_ids: list[str] = []
    kinds: Counter[str] = Counter()
    with FakeOpenAIServer(default=MODELS[args.model]) as fake, tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            llm_base_url=fake.base_url,
            llm_api_key="bench",
            llm_cooldown_s=args.cooldown_s,
        )
        service = MemoryService.create(settings)
        started = time.monotonic()
        for page in tqdm(conversation.pages, desc=f"replaying {conversation.sample_id}", file=sys.stderr):
            result = service.add_memory(
                page.user_input,
                page.agent_response,
                conversation.user_id,
                page.timestamp,
                {"turns": " ".join(page.turns)},
            )
            page_ids.append(result.page_id)
            per_add.append(
                {
                    "calls": result.llm_calls,
                    "failures": result.llm_failures,
                    "prompt": result.prompt_tokens,
                    "completion": result.completion_tokens,
                }
            )
        elapsed = time.monotonic() - started
        before = fake.request_count
        service.retrieve_memory("What did they talk about?", conversation.user_id)
        retrieval_calls = fake.request_count - before
        for request in fake.requests:
            kinds[re.search(r"TASK: (\w+)", request["messages"][1]["content"]).group(1)] += 1  # type: ignore[union-attr]
        stats = service.stats(conversation.user_id)
        # Every page must be findable: retrieved (short-term or top-10 mid-term) when asked with its own words.
        found = 0
        for page, page_id in zip(conversation.pages, page_ids, strict=True):
            query = (page.user_input or page.agent_response)[:300]
            hits = service.retrieve_memory(query, conversation.user_id)
            found += page_id in {p.id for p in hits.short_term + hits.mid_term}

    n = len(per_add)
    calls = sum(a["calls"] for a in per_add)
    figures = {
        "conversation": conversation.sample_id,
        "model": args.model,
        "add_memory_calls": n,
        "llm_calls_total": calls,
        "llm_calls_per_add": round(calls / n, 3),
        "llm_calls_by_task": dict(kinds),
        "max_llm_calls_in_one_add": max(a["calls"] for a in per_add),
        "failed_analyses": sum(a["failures"] for a in per_add),
        "prompt_tokens_per_add": round(sum(a["prompt"] for a in per_add) / n, 1),
        "prompt_tokens_per_llm_call": round(sum(a["prompt"] for a in per_add) / max(calls, 1), 1),
        "completion_tokens_per_add": round(sum(a["completion"] for a in per_add) / n, 1),
        "mean_add_ms": round(elapsed / n * 1000, 1),
        "retrieval_llm_calls": retrieval_calls,
        "pages_stored": stats.short_term_pages + stats.mid_term_pages,
        "pages_retrieved_by_their_own_words": found,
        "segments": stats.segments,
        "user_facts": stats.user_facts,
    }
    report_figures(figures, args.json)


if __name__ == "__main__":
    main()
