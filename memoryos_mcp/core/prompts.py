"""Prompts of the LLM-driven pipeline and the JSON shapes the answers must have.

Each answer has two shapes: a pydantic model that validates whatever comes back, and a JSON schema for the
endpoints that constrain decoding to one (llama.cpp, vLLM, Ollama, OpenAI). The schema is tightened to the
question — exactly one entry per page, in order; one per segment — because a small model left free stops
after the first page. No tool calling and no strict mode: local servers often lack them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from memoryos_mcp.core.models import Page, Segment, UserProfile

TRAIT_GROUPS = {
    "basic_needs_personality": "basic needs & personality (e.g. openness, extraversion, need for security)",
    "ai_alignment": "AI-alignment preferences (e.g. preferred answer length, formality, proactivity)",
    "content_interests": "content interests (e.g. sports, technology, cooking, travel)",
}

_TEXT: dict[str, Any] = {"type": "string"}


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema object with these properties, all required, nothing else (properties keep their order,
    which grammar-constrained decoders follow)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


SYSTEM = (
    "You maintain the long-term memory of an AI assistant, following the MemoryOS design. "
    "Answer with one JSON object only — no prose, no markdown fences — exactly in the requested shape. "
    "Use only what the conversation says; never invent facts."
)


# ---------------------------------------------------------------- chain and topics (STM → MTM)


class PageChain(BaseModel):
    index: int
    continues_previous: bool = Field(
        description="does this page continue the conversation of the page before it"
    )
    chain_summary: str


class TopicOut(BaseModel):
    summary: str
    keywords: list[str]
    pages: list[int]


class BatchAnswer(BaseModel):
    pages: list[PageChain]
    topics: list[TopicOut]


def batch_schema(n_pages: int, max_topics: int) -> dict[str, Any]:
    """BatchAnswer's JSON schema for `n_pages` pages: pages 1..n in order, 1..max_topics topics over them."""
    pages = [
        _object(
            index={"type": "integer", "const": i}, continues_previous={"type": "boolean"}, chain_summary=_TEXT
        )
        for i in range(1, n_pages + 1)
    ]
    page_number = {"type": "integer", "minimum": 1, "maximum": n_pages}
    topic = _object(
        summary=_TEXT,
        keywords={"type": "array", "items": _TEXT, "maxItems": 8},
        pages={"type": "array", "items": page_number, "minItems": 1, "maxItems": n_pages},
    )
    return _object(
        pages={
            "type": "array",
            "prefixItems": pages,
            "items": False,
            "minItems": n_pages,
            "maxItems": n_pages,
        },
        topics={"type": "array", "items": topic, "minItems": 1, "maxItems": max_topics},
    )


def _page_block(i: int, page: Page, limit: int = 1500) -> str:
    return (
        f"Page {i} [{page.timestamp}]\n"
        f"User: {page.user_input[:limit]}\n"
        f"Assistant: {page.agent_response[:limit]}"
    )


def batch_prompt(pages: Sequence[Page], previous_summary: str, previous_text: str, max_topics: int) -> str:
    previous = (
        f"The page before page 1 (already in memory):\n{previous_text[:1500]}\nIts chain summary: {previous_summary}"
        if previous_text
        else "There is no earlier page: page 1 starts a new chain."
    )
    pages_text = "\n\n".join(_page_block(i + 1, p) for i, p in enumerate(pages))
    return f"""TASK: chain_and_topics
These pages of a conversation are moving from short-term to mid-term memory.

{previous}

{pages_text}

For every page decide whether it continues the conversation of the page right before it (same thread of
talk), and write the running summary of its dialogue chain: if it continues, update the previous chain
summary with this page; if not, summarise this page alone. Then group the pages into at most {max_topics}
topics; each topic has a one- or two-sentence summary, 3 to 8 lowercase keywords, and the page numbers it
covers. Every page belongs to exactly one topic.

Reply with JSON of this shape:
{{"pages": [{{"index": 1, "continues_previous": true, "chain_summary": "..."}}],
  "topics": [{{"summary": "...", "keywords": ["..."], "pages": [1, 2]}}]}}"""


# ---------------------------------------------------------------- segment refresh


class SegmentRefresh(BaseModel):
    id: str
    summary: str
    keywords: list[str] = Field(default_factory=list)


class MergeAnswer(BaseModel):
    segments: list[SegmentRefresh]


def merge_schema(n_segments: int) -> dict[str, Any]:
    """MergeAnswer's JSON schema for segments S1..Sn, in order."""
    segments = [
        _object(
            id={"type": "string", "const": f"S{i}"},
            summary=_TEXT,
            keywords={"type": "array", "items": _TEXT, "maxItems": 8},
        )
        for i in range(1, n_segments + 1)
    ]
    return _object(
        segments={
            "type": "array",
            "prefixItems": segments,
            "items": False,
            "minItems": n_segments,
            "maxItems": n_segments,
        }
    )


def merge_prompt(merges: Sequence[tuple[Segment, Sequence[str]]]) -> str:
    blocks = []
    for n, (segment, topic_summaries) in enumerate(merges, 1):
        new = "\n".join(f"- {t}" for t in topic_summaries)
        blocks.append(
            f"Segment S{n}\nCurrent summary: {segment.summary}\nCurrent keywords: {', '.join(segment.keywords)}\n"
            f"New material:\n{new}"
        )
    return f"""TASK: refresh_segments
New conversation material was merged into these mid-term memory segments. For each segment write an updated
summary (at most three sentences, covering old and new material) and 3 to 8 lowercase keywords.

{chr(10).join(blocks)}

Reply with JSON of this shape:
{{"segments": [{{"id": "S1", "summary": "...", "keywords": ["..."]}}]}}"""


# ---------------------------------------------------------------- persona (MTM → LPM)


class TraitOut(BaseModel):
    level: Literal["High", "Medium", "Low"]
    evidence: str


class ProfileAnswer(BaseModel):
    static: dict[str, str] = Field(default_factory=dict)
    traits: dict[str, dict[str, TraitOut]] = Field(default_factory=dict)


class PersonaAnswer(BaseModel):
    profile: ProfileAnswer = Field(default_factory=ProfileAnswer)
    user_facts: list[str] = Field(default_factory=list)
    assistant_traits: list[str] = Field(default_factory=list)


def persona_schema() -> dict[str, Any]:
    """PersonaAnswer's JSON schema: trait dimensions only in the three groups, levels High/Medium/Low."""
    trait = _object(level={"type": "string", "enum": ["High", "Medium", "Low"]}, evidence=_TEXT)
    groups = {"type": "object", "additionalProperties": trait}
    profile = _object(
        static={"type": "object", "additionalProperties": _TEXT},
        traits={
            "type": "object",
            "properties": dict.fromkeys(TRAIT_GROUPS, groups),
            "additionalProperties": False,
        },
    )
    facts = {"type": "array", "items": _TEXT, "maxItems": 20}
    return _object(profile=profile, user_facts=facts, assistant_traits=facts)


def persona_prompt(profile: UserProfile, pages: Sequence[Page]) -> str:
    current = profile.lines()
    groups = "\n".join(f'- "{key}": {text}' for key, text in TRAIT_GROUPS.items())
    pages_text = "\n\n".join(_page_block(i + 1, p, limit=1000) for i, p in enumerate(pages))
    return f"""TASK: persona
Update the user's long-term profile from these conversation pages.

Current profile:
{chr(10).join(current) or "(empty)"}

Pages:
{pages_text}

Return:
1. "profile": "static" — stable facts stated in the pages (keys such as name, age, location, occupation,
   family, pets), only ones the pages support; "traits" — dimensions in these groups, each with level
   "High", "Medium" or "Low" and one line of evidence from the pages:
{groups}
   Only include what the pages show; leave out anything unknown.
2. "user_facts": new facts about the user or their life, each short, self-contained, and dated with the
   page's date, e.g. "[2023-05-08] Caroline went to an LGBTQ support group."
3. "assistant_traits": facts about the assistant itself stated in the pages (its name, promises, stated
   preferences), same format; often none.

Reply with JSON of this shape:
{{"profile": {{"static": {{"name": "..."}}, "traits": {{"content_interests": {{"hiking": {{"level": "High", "evidence": "..."}}}}}}}},
  "user_facts": ["..."], "assistant_traits": []}}"""
