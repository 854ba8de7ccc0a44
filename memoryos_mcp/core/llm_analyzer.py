"""The LLM analyzer: one call per evicted batch for chains and topics, one per batch for segment refresh,
one per hot segment for the persona. Answers are validated; anything unusable raises LLMError."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from pydantic import BaseModel

from memoryos_mcp.core import prompts
from memoryos_mcp.core.models import Page, Segment, UserProfile
from memoryos_mcp.core.protocols import BatchAnalysis, ChainHead, LLMUsage, PersonaUpdate, TopicProposal
from memoryos_mcp.core.text import extract_keywords
from memoryos_mcp.errors import LLMError

M = TypeVar("M", bound=BaseModel)

# Values a model writes when it has nothing to say; they must never overwrite a real profile entry.
_EMPTY_VALUES = {"", "unknown", "n/a", "na", "none", "null", "not mentioned", "not specified", "unspecified", "-", "?"}


class JSONChat(Protocol):
    """A chat model that answers with JSON validated against a pydantic model (adapters implement it)."""

    def complete_json(self, system: str, prompt: str, schema: type[M], usage: LLMUsage) -> M: ...


class LLMAnalyzer:
    """Implements MemoryAnalyzer with a language model."""

    def __init__(self, chat: JSONChat, max_topics: int = 3) -> None:
        self.chat = chat
        self.max_topics = max_topics

    @property
    def can_extract_persona(self) -> bool:
        return True

    @property
    def writes_summaries(self) -> bool:
        return True

    def analyze_batch(self, pages: Sequence[Page], head: ChainHead | None, usage: LLMUsage) -> BatchAnalysis:
        prompt = prompts.batch_prompt(
            pages, head.chain_summary if head else "", head.last_page_text if head else "", self.max_topics
        )
        answer = self.chat.complete_json(prompts.SYSTEM, prompt, prompts.BatchAnswer, usage)
        n = len(pages)
        by_index = {p.index: p for p in answer.pages if 1 <= p.index <= n}
        if len(by_index) != n:
            raise LLMError(f"chain answer covered {len(by_index)} of {n} pages")
        continuous = [by_index[i + 1].continues_previous for i in range(n)]
        if head is None:
            continuous[0] = False  # nothing before the first page ever stored
        summaries = [by_index[i + 1].chain_summary.strip() for i in range(n)]
        topics: list[TopicProposal] = []
        covered: set[int] = set()
        for topic in answer.topics[: self.max_topics]:
            indexes = sorted({i - 1 for i in topic.pages if 1 <= i <= n and (i - 1) not in covered})
            if not indexes or not topic.summary.strip():
                continue
            covered.update(indexes)
            keywords = _keywords(topic.keywords)
            topics.append(TopicProposal(topic.summary.strip(), keywords or extract_keywords(topic.summary), indexes))
        if not topics:
            raise LLMError("chain answer proposed no usable topic")
        # Pages the model forgot still need a segment: they join the last topic rather than being dropped.
        missing = [i for i in range(n) if i not in covered]
        if missing:
            topics[-1].page_indexes = sorted(topics[-1].page_indexes + missing)
        return BatchAnalysis(continuous=continuous, chain_summaries=summaries, topics=topics)

    def merge_segments(
        self, merges: Sequence[tuple[Segment, Sequence[str]]], usage: LLMUsage
    ) -> list[tuple[str, list[str]]]:
        answer = self.chat.complete_json(prompts.SYSTEM, prompts.merge_prompt(merges), prompts.MergeAnswer, usage)
        by_id = {s.id.strip().upper(): s for s in answer.segments}
        refreshed: list[tuple[str, list[str]]] = []
        for n in range(1, len(merges) + 1):
            got = by_id.get(f"S{n}")
            if got is None or not got.summary.strip():
                raise LLMError(f"segment refresh answer is missing S{n}")
            refreshed.append((got.summary.strip(), _keywords(got.keywords)))
        return refreshed

    def extract_persona(self, profile: UserProfile, pages: Sequence[Page], usage: LLMUsage) -> PersonaUpdate:
        answer = self.chat.complete_json(
            prompts.SYSTEM, prompts.persona_prompt(profile, pages), prompts.PersonaAnswer, usage
        )
        static = {
            k.strip().lower(): v.strip()
            for k, v in answer.profile.static.items()
            if k.strip() and v.strip().lower() not in _EMPTY_VALUES
        }
        traits = {
            group: {
                dim.strip(): (t.level, t.evidence.strip())
                for dim, t in dims.items()
                if dim.strip() and t.evidence.strip().lower() not in _EMPTY_VALUES
            }
            for group, dims in answer.profile.traits.items()
            if group in prompts.TRAIT_GROUPS
        }
        return PersonaUpdate(
            static=static,
            traits={g: d for g, d in traits.items() if d},
            user_facts=_facts(answer.user_facts),
            assistant_traits=_facts(answer.assistant_traits),
        )


def _keywords(items: Sequence[str], limit: int = 8) -> list[str]:
    return [k.strip().lower() for k in items if k.strip()][:limit]


def _facts(items: Sequence[str], limit: int = 400) -> list[str]:
    return [f.strip()[:limit] for f in items if f.strip() and f.strip().lower() not in _EMPTY_VALUES]
