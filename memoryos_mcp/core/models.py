"""Records of the three tiers, in the paper's terms."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Scalar = str | int | float | bool
Vector = np.ndarray  # float32, unit length (an embedding)

FactKind = Literal["user_fact", "assistant_trait"]


def page_id_for(user_id: str, key: str) -> str:
    """The page id an idempotency key (or an import line's content) stands for: per user, so two users may
    use the same key."""
    return "pg_" + hashlib.sha256(f"{user_id}\x1f{key}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SentenceVectors:
    """A page's sentences, each embedded on its own, in int8: one scale per sentence (its largest absolute
    value / 127). A question is often answered by one sentence of a long exchange, whose own vector matches
    it better than the page's (LoCoMo dev, held out: multi-hop +5, open-domain +7.6 points at @10); int8
    ranks as float32 does and takes a quarter of the memory."""

    codes: np.ndarray  # int8, (sentences, dim)
    scales: np.ndarray  # float32, (sentences,)

    @classmethod
    def quantize(cls, vectors: np.ndarray) -> SentenceVectors:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        scales = np.abs(vectors).max(axis=1) / 127.0
        safe = np.where(scales == 0, 1.0, scales)
        codes = np.rint(vectors / safe[:, None]).astype(np.int8)
        return cls(codes, scales.astype(np.float32))

    def __len__(self) -> int:
        return len(self.scales)

    def __eq__(self, other: object) -> bool:  # arrays: compared by value, as a page's other fields are
        return isinstance(other, SentenceVectors) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def vectors(self) -> np.ndarray:
        return self.codes.astype(np.float32) * self.scales[:, None]

    def to_bytes(self) -> bytes:
        """Scales (float32, little-endian), then codes: what the store and an export keep."""
        return self.scales.astype("<f4").tobytes() + self.codes.tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes, dim: int) -> SentenceVectors:
        count, rest = divmod(len(raw), 4 + dim)
        if rest or not count:
            raise ValueError(f"{len(raw)} bytes are not whole sentences of {dim} dimensions")
        scales = np.frombuffer(raw[: 4 * count], dtype="<f4").astype(np.float32)
        codes = np.frombuffer(raw[4 * count :], dtype=np.int8).reshape(count, dim).copy()
        return cls(codes, scales)

    def to_text(self) -> str:
        """to_bytes() in base64: the form a Chroma metadata field and an export line hold."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_text(cls, text: str, dim: int) -> SentenceVectors:
        """What to_text() gave; ValueError when it is not base64 of whole sentences of `dim` dimensions."""
        return cls.from_bytes(base64.b64decode(text, validate=True), dim)  # binascii.Error is a ValueError


@dataclass(slots=True)
class Page:
    """One exchange: what the user said, what the agent answered, when."""

    id: str
    user_id: str
    user_input: str
    agent_response: str
    timestamp: str  # ISO-8601, as given by the caller (or "now")
    added_at: int  # ns since epoch when stored; orders the short-term FIFO
    metadata: dict[str, Scalar] = field(default_factory=dict)
    chain_id: str = ""
    chain_summary: str = ""
    segment_id: str = ""  # empty while the page is in short-term memory
    analyzed: bool = False  # True once its segment's promotion has read it
    embedding: Vector | None = None
    sentences: SentenceVectors | None = None  # None: stored before sentences were embedded


@dataclass
class Segment:
    """A mid-term topic group of pages with summary, keywords and heat inputs."""

    id: str
    user_id: str
    summary: str
    keyword_counts: dict[str, int]  # K_segment with how often each keyword was contributed
    created_at: float
    last_access: float  # seconds since epoch; Δt in the recency term is measured from here
    n_visit: int = 0  # N_visit: times retrieved
    l_interaction: int = 0  # L_interaction: pages added since the last promotion
    page_count: int = 0
    archived: bool = False
    embedding: Vector | None = None
    _keywords: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    _keyword_set: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    KEYWORD_LIMIT = 20

    def add_keywords(self, words: Iterable[str]) -> None:
        """Count keywords a merged topic or a refresh contributed."""
        for word in words:
            self.keyword_counts[word] = self.keyword_counts.get(word, 0) + 1
        self._keywords = self._keyword_set = None

    @property
    def keywords(self) -> list[str]:
        """K_segment: the most contributed keywords (capped so Jaccard stays meaningful as segments grow).

        Cached: every topic of every eviction is matched against every active segment's keywords."""
        if self._keywords is None:
            ranked = sorted(self.keyword_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            self._keywords = [word for word, _ in ranked[: self.KEYWORD_LIMIT]]
        return self._keywords

    @property
    def keyword_set(self) -> frozenset[str]:
        if self._keyword_set is None:
            self._keyword_set = frozenset(self.keywords)
        return self._keyword_set


@dataclass
class Fact:
    """A long-term persona fact: about the user (user knowledge) or about the agent (assistant trait)."""

    id: str
    user_id: str
    kind: FactKind
    text: str
    created_at: float
    source_segment: str = ""
    embedding: Vector | None = None
    # Provenance: the pages it was learned from (every promotion that extracted it, or a near-duplicate of
    # it). Forgetting all of them forgets the fact; empty for facts stored before provenance was recorded.
    source_pages: list[str] = field(default_factory=list)
    # Set when the person corrected the text (update_memory): what it said before. A later promotion that
    # learns either text again only adds to the provenance; the person's text stands.
    corrected_from: str = ""
    corrected_at: float = 0.0


@dataclass
class TraitLevel:
    """One profile trait dimension, e.g. 'curiosity': High, with one line of evidence."""

    level: Literal["High", "Medium", "Low"]
    evidence: str


@dataclass
class UserProfile:
    """Long-term persona of one user: static facts and trait dimensions in the paper's three groups."""

    user_id: str
    static: dict[str, str] = field(default_factory=dict)  # name, age, location, occupation, ...
    traits: dict[str, dict[str, TraitLevel]] = field(default_factory=dict)  # group -> dimension -> level
    updated_at: float = 0.0
    # Static keys the person set or removed (update_memory): a promotion never changes them.
    set_by_person: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.static and not any(self.traits.values())

    def lines(self) -> list[str]:
        """One line per static fact and per trait, as shown to models and embedded."""
        return profile_lines(self.static, self.traits)


def profile_lines(static: Mapping[str, str], traits: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A profile as lines — `key: value`, then `group / dimension: level (evidence)` — for the profile and its
    published form alike (anything with a level and evidence is a trait)."""
    out = [f"{key}: {value}" for key, value in static.items()]
    for group, dims in traits.items():
        out.extend(f"{group} / {dim}: {t.level} ({t.evidence})" for dim, t in dims.items())
    return out


@dataclass
class ScoreParts:
    """Why a page was recalled: the parts of its score, each in standard deviations over the user's pages
    (they add up to the score). The page is scored with its dialogue context: its own words and vector plus
    its neighbours' (context_page_ids)."""

    lexical: float  # BM25 of the page with its dialogue context, weighted
    dense: float  # cosine of its context vector with the query, weighted
    time_cue: float  # a question about time, and the page mentions time
    date_cue: float  # dated on a day or month the query names
    best_sentence: float  # the re-ordering by its best sentence
    sentence_index: int | None  # which of the page's sentences (core.text.page_sentences) matched best
    sentence_cosine: float
    context_page_ids: list[str] = field(default_factory=list)


@dataclass
class ScoredPage:
    page: Page
    score: float
    tier: Literal["short_term", "mid_term"]
    why: ScoreParts | None = None  # asked for (explain): the parts of the score


@dataclass
class ScoredSegment:
    segment: Segment
    score: float
    heat: float


@dataclass
class ScoredFact:
    fact: Fact
    score: float
