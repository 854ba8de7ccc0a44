"""A scripted "good model" for the fake OpenAI server: answers each pipeline prompt correctly.

It reads the topic of each page from a marker word in the page text (hiking, cooking, ...), so tests
know exactly which chains, topics and facts a correct model would produce.
"""

from __future__ import annotations

import re
from typing import Any

TOPIC_WORDS = ("hiking", "cooking", "guitar", "taxes")
_PAGE = re.compile(r"^Page (\d+) \[([^\]]*)\]\nUser: (.*)$", re.MULTILINE)
_SEGMENT = re.compile(r"^Segment (S\d+)$", re.MULTILINE)


def _topic(text: str) -> str:
    lowered = text.lower()
    return next((w for w in TOPIC_WORDS if w in lowered), "misc")


def _prompt(request: dict[str, Any]) -> str:
    # The task prompt is the first user message; a repair request appends more after it.
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def good_answer(request: dict[str, Any]) -> dict[str, Any]:
    prompt = _prompt(request)
    if "TASK: chain_and_topics" in prompt:
        return _chain_answer(prompt)
    if "TASK: refresh_segments" in prompt:
        return {
            "segments": [
                {"id": sid, "summary": f"refreshed {sid}", "keywords": ["refreshed"]}
                for sid in _SEGMENT.findall(prompt)
            ]
        }
    if "TASK: persona" in prompt:
        return persona_answer(prompt)
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")


def _chain_answer(prompt: str) -> dict[str, Any]:
    previous = re.search(r"already in memory\):\n(.*)", prompt)
    last_topic = _topic(previous.group(1)) if previous else None
    pages, groups = [], {}
    for index, _, text in _PAGE.findall(prompt):
        topic = _topic(text)
        pages.append(
            {
                "index": int(index),
                "continues_previous": topic == last_topic,
                "chain_summary": f"chain about {topic}",
            }
        )
        groups.setdefault(topic, []).append(int(index))
        last_topic = topic
    topics = [{"summary": f"All about {t}.", "keywords": [t], "pages": idx} for t, idx in groups.items()]
    return {"pages": pages, "topics": topics}


def persona_answer(prompt: str) -> dict[str, Any]:
    facts, traits = [], {}
    for _, when, text in _PAGE.findall(prompt):
        facts.append(f"[{when[:10]}] The user said: {text.strip()}")
        traits[_topic(text)] = {"level": "High", "evidence": text.strip()[:60]}
    static = {"name": "Maya"} if "Maya" in prompt else {}
    assistant = ["The assistant is called Memo."] if "I am Memo" in prompt else []
    return {
        "profile": {"static": static, "traits": {"content_interests": traits}},
        "user_facts": facts,
        "assistant_traits": assistant,
    }


def lazy_answer(request: dict[str, Any]) -> dict[str, Any]:
    """A compliant but lazy model: JSON in the requested shape, but covering only the first page or segment
    and copying the "..." of the prompt's example (what Gemma 3 270M answers under a JSON schema)."""
    prompt = _prompt(request)
    if "TASK: chain_and_topics" in prompt:
        return {
            "pages": [{"index": 1, "continues_previous": True, "chain_summary": "..."}],
            "topics": [{"summary": "...", "keywords": ["..."], "pages": [1]}],
        }
    if "TASK: refresh_segments" in prompt:
        return {"segments": [{"id": "S1", "summary": "...", "keywords": ["..."]}]}
    if "TASK: persona" in prompt:
        return {
            "profile": {
                "static": {"name": "..."},
                "traits": {"content_interests": {"hiking": {"level": "High", "evidence": "..."}}},
            },
            "user_facts": ["..."],
            "assistant_traits": [],
        }
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")
