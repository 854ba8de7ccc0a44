"""The LLM analyzer: one call per evicted batch for chains and topics, one per batch for segment refresh,
one per hot segment for the persona.

Answers are validated by the chat adapter; this module says what makes a valid answer usable. An answer that
leaves pages uncovered, proposes no usable topic or misses a segment raises LLMAnswerUnusable: the adapter
counts it as a failure of the model (it rests like one that answers malformed JSON) and the pipeline goes on
with the local analysis at once, instead of asking again a model that keeps answering the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from memoryos_mcp.core import prompts
from memoryos_mcp.core.errors import LLMAnswerUnusable
from memoryos_mcp.core.models import Page, Segment, UserProfile
from memoryos_mcp.core.protocols import BatchAnalysis, ChainHead, LLMUsage, PersonaUpdate, TopicProposal
from memoryos_mcp.core.text import exchange_text, extract_keywords, extractive_summary

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Values a model writes when it has nothing to say; they must never overwrite a real profile entry.
_EMPTY_VALUES = {
    "",
    "unknown",
    "n/a",
    "na",
    "none",
    "null",
    "not mentioned",
    "not specified",
    "unspecified",
    "-",
    "?",
}


def blank(text: str) -> bool:
    """True for text that says nothing: empty, a stock "unknown", or no letter or digit at all — such as the
    "..." of the prompt's example, which small models copy."""
    stripped = text.strip()
    return stripped.lower() in _EMPTY_VALUES or not any(ch.isalnum() for ch in stripped)


class JSONChat(Protocol):
    """A chat model that answers with JSON (adapters implement it)."""

    def complete_json(
        self,
        system: str,
        prompt: str,
        shape: type[M],
        usage: LLMUsage,
        *,
        use: Callable[[M], T],
        json_schema: Mapping[str, Any] | None = None,
        name: str = "answer",
    ) -> T:
        """The answer to `prompt`, validated against `shape` and turned into a result by `use`.

        `json_schema` (default: shape's own) constrains decoding where the endpoint can; `name` names it.
        `use` raises LLMAnswerUnusable for a valid answer that cannot be used: that counts as a failure of
        the model, like an answer that never validates. Any failure raises LLMError.
        """
        ...


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
        n = len(pages)
        prompt = prompts.batch_prompt(
            pages, head.chain_summary if head else "", head.last_page_text if head else "", self.max_topics
        )
        return self.chat.complete_json(
            prompts.SYSTEM,
            prompt,
            prompts.BatchAnswer,
            usage,
            use=lambda answer: self._batch_analysis(answer, pages, head),
            json_schema=prompts.batch_schema(n, self.max_topics),
            name="chain_and_topics",
        )

    def _batch_analysis(
        self, answer: prompts.BatchAnswer, pages: Sequence[Page], head: ChainHead | None
    ) -> BatchAnalysis:
        n = len(pages)
        by_index = {p.index: p for p in answer.pages if 1 <= p.index <= n}
        if len(by_index) != n:
            raise LLMAnswerUnusable(f"chain answer covered {len(by_index)} of {n} pages")
        continuous = [by_index[i + 1].continues_previous for i in range(n)]
        if head is None:
            continuous[0] = False  # nothing before the first page ever stored
        summaries: list[str] = []
        running = head.chain_summary if head else ""
        for i, page in enumerate(pages):
            summary = by_index[i + 1].chain_summary.strip()
            if blank(
                summary
            ):  # a page left without a summary gets the extractive one the local analysis writes
                text = exchange_text(page)
                summary = extractive_summary([running, text] if continuous[i] else [text], max_sentences=3)
            summaries.append(summary)
            running = summary
        topics: list[TopicProposal] = []
        covered: set[int] = set()
        for topic in answer.topics[: self.max_topics]:
            indexes = sorted({i - 1 for i in topic.pages if 1 <= i <= n and (i - 1) not in covered})
            if not indexes or blank(topic.summary):
                continue
            covered.update(indexes)
            keywords = _keywords(topic.keywords)
            topics.append(
                TopicProposal(topic.summary.strip(), keywords or extract_keywords(topic.summary), indexes)
            )
        if not topics:
            raise LLMAnswerUnusable("chain answer proposed no usable topic")
        # Pages the model forgot still need a segment: they join the last topic rather than being dropped.
        missing = [i for i in range(n) if i not in covered]
        if missing:
            topics[-1].page_indexes = sorted(topics[-1].page_indexes + missing)
        return BatchAnalysis(continuous=continuous, chain_summaries=summaries, topics=topics)

    def merge_segments(
        self, merges: Sequence[tuple[Segment, Sequence[str]]], usage: LLMUsage
    ) -> list[tuple[str, list[str]]]:
        n = len(merges)

        def refreshed(answer: prompts.MergeAnswer) -> list[tuple[str, list[str]]]:
            by_id = {s.id.strip().upper(): s for s in answer.segments}
            out: list[tuple[str, list[str]]] = []
            for i in range(1, n + 1):
                got = by_id.get(f"S{i}")
                if got is None or blank(got.summary):
                    raise LLMAnswerUnusable(f"segment refresh answer is missing S{i}")
                out.append((got.summary.strip(), _keywords(got.keywords)))
            return out

        return self.chat.complete_json(
            prompts.SYSTEM,
            prompts.merge_prompt(merges),
            prompts.MergeAnswer,
            usage,
            use=refreshed,
            json_schema=prompts.merge_schema(n),
            name="refresh_segments",
        )

    def extract_persona(self, profile: UserProfile, pages: Sequence[Page], usage: LLMUsage) -> PersonaUpdate:
        # An answer that learned nothing is a valid answer (the pages may say nothing about the user); the
        # placeholders a small model copies from the example are dropped like "unknown".
        return self.chat.complete_json(
            prompts.SYSTEM,
            prompts.persona_prompt(profile, pages),
            prompts.PersonaAnswer,
            usage,
            use=_persona_update,
            json_schema=prompts.persona_schema(),
            name="persona",
        )


# Keys of the answer's own shape: a small model that loses its place writes them as profile facts
# (Gemma 3 270M stored "traits": "content_interests:").
_SHAPE_WORDS = {
    "profile",
    "static",
    "traits",
    "user_facts",
    "assistant_traits",
    "level",
    "evidence",
    *prompts.TRAIT_GROUPS,
}


def _persona_update(answer: prompts.PersonaAnswer) -> PersonaUpdate:
    static = {
        k.strip().lower(): v.strip()
        for k, v in answer.profile.static.items()
        if not blank(k) and k.strip().lower() not in _SHAPE_WORDS and not blank(v)
    }
    traits = {
        group: {
            dim.strip(): (t.level, t.evidence.strip())
            for dim, t in dims.items()
            if not blank(dim) and not blank(t.evidence)
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
    return [k.strip().lower() for k in items if not blank(k)][:limit]


def _facts(items: Sequence[str], limit: int = 400) -> list[str]:
    return [f.strip()[:limit] for f in items if not blank(f)]
