"""The ports the memory model needs. Adapters implement them; tests pass fakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from memoryos_mcp.core.models import Fact, FactKind, Page, Segment, UserProfile, Vector


class Embedder(Protocol):
    """Turns texts into unit-length vectors of a fixed dimension."""

    def embed(self, texts: Sequence[str]) -> list[Vector]: ...


@dataclass
class ChainHead:
    """The last page that reached mid-term memory: what the next evicted page is compared with."""

    user_id: str
    chain_id: str
    chain_summary: str
    last_page_id: str
    last_page_text: str
    embedding: Vector


class MemoryStore(Protocol):
    """Durable storage of the three tiers. Every read is filtered by user_id; every write is durable on return."""

    # short-term memory
    def add_stm_page(self, page: Page) -> None: ...
    def list_stm_pages(self, user_id: str) -> list[Page]: ...
    def delete_stm_pages(self, user_id: str, page_ids: Sequence[str]) -> None: ...

    # mid-term memory
    def existing_mtm_page_ids(self, user_id: str, page_ids: Sequence[str]) -> set[str]: ...
    def upsert_mtm_pages(self, pages: Sequence[Page]) -> None: ...
    def get_mtm_pages(self, user_id: str, segment_ids: Sequence[str], *, analyzed: bool | None = None) -> list[Page]: ...
    def mtm_page_ids(self, user_id: str) -> list[str]: ...
    def get_mtm_pages_by_id(self, user_id: str, page_ids: Sequence[str]) -> list[Page]: ...
    def list_segments(self, user_id: str, *, include_archived: bool = False) -> list[Segment]: ...
    def upsert_segments(self, segments: Sequence[Segment]) -> None: ...
    def update_segments(self, segments: Sequence[Segment]) -> None:
        """Write existing segments but leave N_visit and last_access as stored: retrievals own those."""
        ...
    def record_visits(self, segments: Sequence[Segment]) -> None:
        """Persist only N_visit and last_access (cheaper than a full upsert: no vector index work)."""
        ...
    def get_chain_head(self, user_id: str) -> ChainHead | None: ...
    def put_chain_head(self, head: ChainHead) -> None: ...

    # long-term persona memory
    def get_profile(self, user_id: str) -> UserProfile | None: ...
    def put_profile(self, profile: UserProfile, embedding: Vector) -> None: ...
    def list_facts(self, user_id: str, kind: FactKind) -> list[Fact]: ...
    def add_facts(self, facts: Sequence[Fact]) -> None: ...
    def delete_facts(self, user_id: str, fact_ids: Sequence[str]) -> None: ...
    def query_facts(self, user_id: str, kind: FactKind, embedding: Vector, n: int) -> list[tuple[Fact, float]]: ...

    def count(self, user_id: str) -> dict[str, int]: ...


@dataclass
class LLMUsage:
    """What the language model cost during one operation, and until when it may still spend."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0
    deadline: float | None = None  # time.monotonic() value after which no new LLM request starts

    def add(self, other: LLMUsage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.failures += other.failures


@dataclass
class TopicProposal:
    """One topic of an evicted batch: which pages (by index in the batch) it covers."""

    summary: str
    keywords: list[str]
    page_indexes: list[int]


@dataclass
class BatchAnalysis:
    """Chain continuity and topics for a batch of pages leaving short-term memory."""

    continuous: list[bool]  # page i continues the chain of page i-1 (page 0: of the chain head)
    chain_summaries: list[str]  # running chain summary each page carries
    topics: list[TopicProposal]


@dataclass
class PersonaUpdate:
    """What one promotion learned: profile changes, new user facts, new assistant traits."""

    static: dict[str, str] = field(default_factory=dict)
    traits: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # group -> dim -> (level, evidence)
    user_facts: list[str] = field(default_factory=list)
    assistant_traits: list[str] = field(default_factory=list)


class MemoryAnalyzer(Protocol):
    """The seam for the language model: the no-LLM analyzer and the LLM analyzer both implement it."""

    @property
    def can_extract_persona(self) -> bool: ...

    def analyze_batch(self, pages: Sequence[Page], head: ChainHead | None, usage: LLMUsage) -> BatchAnalysis: ...

    def merge_segments(
        self, merges: Sequence[tuple[Segment, Sequence[str]]], usage: LLMUsage
    ) -> list[tuple[str, list[str]]]:
        """Refreshed (summary, extra keywords) of each segment after the topic summaries were merged into it."""
        ...

    def extract_persona(self, profile: UserProfile, pages: Sequence[Page], usage: LLMUsage) -> PersonaUpdate: ...
