"""The ports the memory model needs. Adapters implement them; tests pass fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memoryos_mcp.core.models import Fact, FactKind, Page, ScoreParts, Segment, UserProfile, Vector
from memoryos_mcp.core.weights import RetrievalWeights


class Embedder(Protocol):
    """Turns texts into unit-length vectors of a fixed dimension (rows of a float32 array)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class PausableEmbedder(Protocol):
    """An embedder that can pause one long call between its runs of the model (for background work, so
    that calls made meanwhile need not wait for all of it)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
    def embed_pausing(self, texts: Sequence[str], pause: Callable[[], None] | None) -> np.ndarray:
        """embed(), calling pause() before each run of the model, with the model free meanwhile."""
        ...


class PageIndex(Protocol):
    """One user's mid-term pages (of the active segments), indexed for retrieval and changed in place
    (index/page_index.py implements it). Not thread-safe: the owner serialises changes and queries."""

    restored_from_older: bool  # restored from an earlier version's snapshot: worth saving again

    def __len__(self) -> int: ...
    def __contains__(self, page_id: object) -> bool: ...
    @property
    def dim(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def get(self, page_id: str) -> Page | None: ...
    def pages(self) -> Iterator[Page]: ...
    def segment_pages(self, segment_id: str) -> list[Page]: ...
    def segment_ids(self) -> set[str]: ...
    def newest(
        self, window: tuple[float, float] | None, below: tuple[float, int] | None, limit: int
    ) -> list[Page]: ...
    def ids_dated_before(self, moment: float) -> list[str]: ...
    def ids_starting_with(self, prefix: str) -> list[str]: ...
    def day_counts(self) -> dict[str, int]: ...
    def participants(self) -> frozenset[str]: ...
    def query_texts(self, query: str, weights: RetrievalWeights) -> list[str]: ...
    def rank(
        self,
        query: str,
        query_embedding: np.ndarray,
        segments: Sequence[Segment],
        f_scores: Sequence[float],
        *,
        top_m: int,
        top_k: int,
        weights: RetrievalWeights,
        window: tuple[float, float] | None = None,
    ) -> tuple[list[tuple[Segment, float]], list[tuple[Page, float]]]: ...
    def explain(
        self,
        query: str,
        query_embedding: np.ndarray,
        weights: RetrievalWeights,
        hits: Sequence[tuple[Page, float]],
    ) -> list[ScoreParts]: ...
    def add(self, pages: Sequence[Page]) -> None: ...
    def remove(self, page_ids: Iterable[str]) -> int: ...
    def remove_segments(self, segment_ids: Iterable[str]) -> int: ...
    def mark_analyzed(self, page_ids: Iterable[str]) -> None: ...
    def set_sentences(self, pages: Iterable[Page]) -> int: ...
    def export(self) -> dict[str, Any]: ...


class PageIndexes(Protocol):
    """Makes page indexes: empty ones, and ones restored from what an index exported (a snapshot)."""

    def new(self, context_window: int) -> PageIndex: ...
    def restore(self, data: dict[str, Any]) -> PageIndex: ...


@dataclass
class ChainHead:
    """The last page that reached mid-term memory: what the next evicted page is compared with."""

    user_id: str
    chain_id: str
    chain_summary: str
    last_page_id: str
    last_page_text: str
    embedding: Vector


@dataclass
class Change:
    """One entry of a user's change log: what a write did to the set of indexed mid-term pages.

    Every add, import chunk or forget writes one, numbered in sequence; a process whose cached state is at
    an older number replays the entries after it instead of reloading the user.
    """

    seq: int
    pages_added: list[str] = field(default_factory=list)  # entered mid-term memory
    pages_analyzed: list[str] = field(
        default_factory=list
    )  # read by a promotion (already in mid-term memory)
    pages_removed: list[str] = field(default_factory=list)
    segments_removed: list[str] = field(
        default_factory=list
    )  # archived or deleted: their pages leave retrieval
    epoch: str = ""  # the incarnation of the user's memory (see Version.epoch)
    mid_term_pages: int = 0  # counts after the change, for stats without a scan
    archived_segments: int = 0


@dataclass(frozen=True)
class Version:
    """The newest change of a user (seq 0: none yet) and the counts it left."""

    seq: int
    mid_term_pages: int | None = None  # None: written by a version without counts; count by scanning
    archived_segments: int | None = None
    # Set by the first change after the user had no memory (new, or all forgotten): a cached state or an
    # index snapshot of another epoch describes memory that no longer exists. "" for older stores.
    epoch: str = ""


class MemoryStore(Protocol):
    """Durable storage of the three tiers. Reads return only the given user's records; writes are durable
    on return. Reads and writes of any size are split under the backend's batch limit."""

    @property
    def shared(self) -> bool:
        """True when other processes may write the same memory (a Chroma server): writers take a lease."""
        ...

    # short-term memory
    def put_stm_pages(self, pages: Sequence[Page]) -> None: ...
    def list_stm_pages(self, user_id: str) -> list[Page]: ...
    def delete_stm_pages(self, user_id: str, page_ids: Sequence[str]) -> None: ...

    # mid-term memory
    def put_mtm_pages(self, pages: Sequence[Page]) -> None: ...
    def find_pages(self, user_id: str, page_ids: Sequence[str]) -> dict[str, str]:
        """Which of these pages exist, and in which tier ("short_term" or "mid_term"; a page an interrupted
        move left in both counts as mid_term)."""
        ...

    def get_mtm_pages(self, user_id: str, page_ids: Sequence[str]) -> list[Page]: ...
    def mark_analyzed(self, user_id: str, page_ids: Sequence[str]) -> None:
        """Record that a promotion read these mid-term pages."""
        ...

    def pages_of_segments(self, user_id: str, segment_ids: Sequence[str]) -> list[Page]:
        """Every mid-term page of these segments, in conversation order, with embeddings."""
        ...

    def put_sentences(self, user_id: str, tier: str, pages: Sequence[Page]) -> None:
        """Store the sentence vectors of these pages of `tier` ("short_term" or "mid_term"), nothing else;
        they no longer wait for them."""
        ...

    def waiting_for_sentences(self, user_id: str, limit: int) -> list[Page]:
        """Up to `limit` pages of the user (either tier) stored without sentence vectors (sentences=None)."""
        ...

    def count_waiting_for_sentences(self, user_id: str) -> int: ...

    def list_segments(self, user_id: str, *, include_archived: bool = False) -> list[Segment]: ...
    def put_segments(self, segments: Sequence[Segment], *, new: bool) -> None:
        """Write segments. new=False leaves N_visit and last_access as stored: retrievals own those."""
        ...

    def write_mid_term(
        self,
        new_segments: Sequence[Segment],
        changed_segments: Sequence[Segment],
        pages: Sequence[Page],
        head: ChainHead | None,
    ) -> None:
        """What one eviction changed in mid-term memory, in as few writes as the backend allows: new segments,
        moved pages and the chain head first, then changed segments (N_visit and last access kept as stored)."""
        ...

    def record_visits(
        self, user_id: str, segment_ids: Sequence[str], now: float
    ) -> dict[str, tuple[int, float]]:
        """N_visit += 1 and last access = now on the stored segments; returns the values written."""
        ...

    def get_chain_head(self, user_id: str) -> ChainHead | None: ...
    def put_chain_head(self, head: ChainHead) -> None: ...

    # long-term persona memory
    def get_profile(self, user_id: str) -> UserProfile | None: ...
    def put_profile(self, profile: UserProfile, embedding: Vector) -> None: ...
    def list_facts(self, user_id: str, kind: FactKind) -> list[Fact]: ...
    def add_facts(self, facts: Sequence[Fact]) -> None: ...
    def delete_facts(self, user_id: str, fact_ids: Sequence[str]) -> None: ...

    # change log: how processes sharing the store learn what changed
    def read_version(self, user_id: str) -> Version: ...
    def read_changes(self, user_id: str, after: int, upto: int) -> list[Change] | None:
        """Entries after..upto in order; None when some are no longer kept (the reader reloads instead)."""
        ...

    def append_change(self, user_id: str, change: Change, writer: str = "") -> int:
        """Append the entry at change.seq, or at the next free seq when another writer took that one (it then
        sets change.seq), and set the version to it; returns the seq used."""
        ...

    def count_mid_term(self, user_id: str) -> tuple[int, int]:
        """(mid-term pages, archived segments) by scanning: for users whose version carries no counts."""
        ...

    def delete_mid_term(self, user_id: str, record_ids: Sequence[str]) -> None:
        """Delete mid-term pages or segments of this user by id (others' ids are ignored)."""
        ...

    def delete_chain_head(self, user_id: str) -> None: ...
    def delete_user(self, user_id: str) -> int:
        """Delete every record of the user in every collection but its write lease; returns how many."""
        ...

    def acquire_lease(self, user_id: str, owner: str, ttl_s: float) -> bool:
        """Take the user's write lease if it is free or expired; True when `owner` holds it."""
        ...

    def renew_lease(self, user_id: str, owner: str, ttl_s: float) -> bool:
        """Push the expiry of a lease `owner` holds; False when it no longer holds it."""
        ...

    def release_lease(self, user_id: str, owner: str) -> None: ...

    # export / import (issue 9)
    def user_ids(self) -> list[str]:
        """Every user with memory in this store."""
        ...

    def profile_embedding(self, user_id: str) -> Vector | None: ...
    def record_owners(self, ids: Sequence[str]) -> dict[str, str]:
        """Which user holds each of these record ids in any tier (ids nobody holds are absent)."""
        ...


class IndexSnapshots(Protocol):
    """Saved page indexes (a cache on local disk): export() of an index and the change-log seq it reflects."""

    def save(self, user_id: str, seq: int, exported: dict[str, Any], epoch: str = "") -> None: ...
    def load(self, user_id: str, context_window: int) -> tuple[dict[str, Any], int] | None:
        """(exported, seq); exported["memory_epoch"] holds the Version.epoch it was saved with."""
        ...

    def delete(self, user_id: str) -> None: ...


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
    embedding: Vector | None = None  # e_p; None: the pipeline embeds summary and keywords


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
    traits: dict[str, dict[str, tuple[str, str]]] = field(
        default_factory=dict
    )  # group -> dim -> (level, evidence)
    user_facts: list[str] = field(default_factory=list)
    assistant_traits: list[str] = field(default_factory=list)


class MemoryAnalyzer(Protocol):
    """The seam for the language model: the no-LLM analyzer and the LLM analyzer both implement it."""

    @property
    def can_extract_persona(self) -> bool: ...

    @property
    def writes_summaries(self) -> bool:
        """True when summaries are written (an LLM): they are embedded. False when extractive: topics and
        segments are then represented by the centroid of their pages' embeddings instead."""
        ...

    def analyze_batch(
        self, pages: Sequence[Page], head: ChainHead | None, usage: LLMUsage
    ) -> BatchAnalysis: ...

    def merge_segments(
        self, merges: Sequence[tuple[Segment, Sequence[str]]], usage: LLMUsage
    ) -> list[tuple[str, list[str]]]:
        """Refreshed (summary, extra keywords) of each segment after the topic summaries were merged into it."""
        ...

    def extract_persona(
        self, profile: UserProfile, pages: Sequence[Page], usage: LLMUsage
    ) -> PersonaUpdate: ...
