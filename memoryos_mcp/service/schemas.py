"""Pydantic models of what the tools return; the MCP client gets them as structured output with a schema."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from memoryos_mcp.core.context import LeftOut
from memoryos_mcp.core.control import ForgetReport
from memoryos_mcp.core.memory import AddResult, Retrieval
from memoryos_mcp.core.models import (
    Fact,
    Page,
    Scalar,
    ScoredFact,
    ScoredSegment,
    ScoreParts,
    Segment,
    UserProfile,
    profile_lines,
)
from memoryos_mcp.core.text import page_sentences


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds") if seconds else ""


class WhyOut(BaseModel):
    """Why a page was recalled: the parts of its score (standard deviations over the user's pages; they add up
    to the score)."""

    lexical: float = Field(
        description="BM25 of the page with its dialogue context (the pages beside it), weighted"
    )
    dense: float = Field(description="cosine of its context vector with the query, weighted")
    time_cue: float = Field(description="a question about time, and the page mentions time")
    date_cue: float = Field(description="dated on a day or month the query names")
    best_sentence: float = Field(description="the re-ordering by the page's best sentence")
    sentence: str | None = Field(None, description="the page's sentence that matched best")
    sentence_cosine: float
    context_page_ids: list[str] = Field(description="the pages whose words and vector count as its context")

    @classmethod
    def of(cls, page: Page, why: ScoreParts) -> WhyOut:
        sentences = page_sentences(page)
        index = why.sentence_index
        return cls(
            lexical=round(why.lexical, 4),
            dense=round(why.dense, 4),
            time_cue=round(why.time_cue, 4),
            date_cue=round(why.date_cue, 4),
            best_sentence=round(why.best_sentence, 4),
            sentence=sentences[index] if index is not None and index < len(sentences) else None,
            sentence_cosine=round(why.sentence_cosine, 4),
            context_page_ids=why.context_page_ids,
        )


class PageOut(BaseModel):
    """One stored exchange."""

    id: str
    user_input: str
    agent_response: str
    timestamp: str = Field(description="ISO-8601 time of the exchange")
    tier: str = Field(description="short_term or mid_term")
    segment_id: str | None = Field(None, description="mid-term segment holding the page")
    score: float | None = Field(
        None,
        description="relevance to the query (mid-term pages): BM25 and cosine, each standardised over the "
        "user's pages and mixed; higher is better, only the order and the gaps mean something",
    )
    chain_summary: str = Field("", description="running summary of the dialogue chain the page belongs to")
    metadata: dict[str, Scalar] = Field(
        default_factory=dict, description="caller metadata given to add_memory"
    )
    why: WhyOut | None = Field(None, description="with explain=true: the parts of its score")

    @classmethod
    def of(cls, page: Page, tier: str, score: float | None = None, why: ScoreParts | None = None) -> PageOut:
        return cls(
            why=None if why is None else WhyOut.of(page, why),
            id=page.id,
            user_input=page.user_input,
            agent_response=page.agent_response,
            timestamp=page.timestamp,
            tier=tier,
            segment_id=page.segment_id or None,
            score=None if score is None else round(score, 4),
            chain_summary=page.chain_summary,
            metadata=page.metadata,
        )


class SegmentOut(BaseModel):
    """A mid-term topic segment."""

    id: str
    summary: str
    keywords: list[str]
    score: float = Field(
        description="stage-one relevance: the paper's F_score (cosine + keyword Jaccard) mixed with the "
        "segment's best page score, both standardised"
    )
    heat: float = Field(description="α·N_visit + β·L_interaction + γ·exp(−Δt/μ)")
    n_visit: int
    l_interaction: int
    page_count: int

    @classmethod
    def of(cls, scored: ScoredSegment) -> SegmentOut:
        s = scored.segment
        return cls(
            id=s.id,
            summary=s.summary,
            keywords=s.keywords,
            score=round(scored.score, 4),
            heat=round(scored.heat, 4),
            n_visit=s.n_visit,
            l_interaction=s.l_interaction,
            page_count=s.page_count,
        )


class FactOut(BaseModel):
    """A long-term fact about the user, or a trait of the assistant."""

    id: str
    text: str
    created_at: str
    score: float | None = None

    @classmethod
    def of(cls, fact: Fact, score: float | None = None) -> FactOut:
        return cls(
            id=fact.id,
            text=fact.text,
            created_at=_iso(fact.created_at),
            score=None if score is None else round(score, 4),
        )

    @classmethod
    def scored(cls, scored: ScoredFact) -> FactOut:
        return cls.of(scored.fact, scored.score)


class TraitOut(BaseModel):
    level: str = Field(description="High, Medium or Low")
    evidence: str


class ProfileOut(BaseModel):
    """The user's long-term persona: static facts and trait dimensions by group."""

    static: dict[str, str] = Field(default_factory=dict, description="name, age, location, occupation, ...")
    traits: dict[str, dict[str, TraitOut]] = Field(
        default_factory=dict,
        description="group (basic needs & personality, AI alignment, content interests) → dimension → level",
    )
    updated_at: str = ""
    set_by_person: list[str] = Field(
        default_factory=list, description="static keys the person set or removed: learning never changes them"
    )

    def lines(self) -> list[str]:
        return profile_lines(self.static, self.traits)

    @classmethod
    def of(cls, profile: UserProfile | None) -> ProfileOut:
        if profile is None:
            return cls()
        return cls(
            set_by_person=profile.set_by_person,
            static=profile.static,
            traits={
                g: {d: TraitOut(level=t.level, evidence=t.evidence) for d, t in dims.items()}
                for g, dims in profile.traits.items()
            },
            updated_at=_iso(profile.updated_at),
        )


class AddMemoryResult(BaseModel):
    """The stored page and what the memory pipeline did."""

    page_id: str
    user_id: str
    timestamp: str
    already_stored: bool = Field(
        False, description="true when a page with this idempotency_key was stored before: nothing was added"
    )
    moved_to_mid_term: list[str] = Field(description="ids of pages that left short-term memory")
    segments_created: list[str]
    segments_merged: list[str]
    segments_archived: list[str] = Field(description="coldest segments archived (kept, out of retrieval)")
    segments_promoted: list[str] = Field(description="hot segments analysed into the long-term persona")
    promotion_pending: list[str] = Field(description="hot segments waiting for an LLM or a later call")
    facts_added: int
    facts_dropped: list[str] = Field(description="oldest facts dropped to stay within lpm_capacity")
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    llm_failures: int = Field(
        description="LLM steps that failed; their work stays pending or used the local fallback"
    )
    notes: list[str]

    @classmethod
    def of(cls, result: AddResult) -> AddMemoryResult:
        u = result.usage
        return cls(
            page_id=result.page.id,
            user_id=result.page.user_id,
            timestamp=result.page.timestamp,
            already_stored=result.already_stored,
            moved_to_mid_term=result.moved_to_mid_term,
            segments_created=result.segments_created,
            segments_merged=result.segments_merged,
            segments_archived=result.segments_archived,
            segments_promoted=result.segments_promoted,
            promotion_pending=result.promotion_pending,
            facts_added=result.facts_added,
            facts_dropped=result.facts_dropped,
            llm_calls=u.calls,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            llm_failures=u.failures,
            notes=result.notes,
        )


class LeftOutOut(BaseModel):
    """What a max_tokens budget left out, best first: short-term pages, mid-term pages, then the persona."""

    max_tokens: int
    short_term_pages: int
    mid_term_pages: int
    user_facts: int
    assistant_traits: int
    profile: bool

    @classmethod
    def of(cls, left: LeftOut, max_tokens: int) -> LeftOutOut:
        return cls(
            max_tokens=max_tokens,
            short_term_pages=left.short_term_pages,
            mid_term_pages=left.mid_term_pages,
            user_facts=left.user_facts,
            assistant_traits=left.assistant_traits,
            profile=left.profile,
        )


class RetrieveMemoryResult(BaseModel):
    """Memory relevant to a query, from all three tiers, plus a ready-to-use context text."""

    query: str
    user_id: str
    short_term: list[PageOut] = Field(description="the most recent pages, oldest first")
    mid_term: list[PageOut] = Field(description="top-k pages from the top-m segments, best first")
    segments: list[SegmentOut]
    user_facts: list[FactOut]
    assistant_traits: list[FactOut]
    profile: ProfileOut
    assistant_profile: str
    context: str = Field(
        description="all of the above as one compact text for the host model: each page once, with the "
        "short ids forget_memory takes"
    )
    left_out: LeftOutOut | None = Field(
        None, description="with max_tokens: what did not fit (left out of this result too); null: nothing"
    )

    @classmethod
    def of(cls, user_id: str, r: Retrieval, max_tokens: int | None = None) -> RetrieveMemoryResult:
        return cls(
            query=r.query,
            user_id=user_id,
            short_term=[PageOut.of(p, "short_term") for p in r.short_term],
            mid_term=[PageOut.of(sp.page, "mid_term", sp.score, sp.why) for sp in r.mid_term],
            segments=[SegmentOut.of(s) for s in r.segments],
            user_facts=[FactOut.scored(f) for f in r.user_facts],
            assistant_traits=[FactOut.scored(f) for f in r.assistant_traits],
            profile=ProfileOut.of(r.profile),
            assistant_profile=r.assistant_profile,
            context=r.context,
            left_out=LeftOutOut.of(r.left_out, max_tokens) if r.left_out.any and max_tokens else None,
        )


class UserProfileResult(BaseModel):
    """The long-term persona of one user."""

    user_id: str
    profile: ProfileOut
    user_knowledge: list[FactOut] | None = Field(None, description="facts about the user, oldest first")
    assistant_traits: list[FactOut] | None = Field(
        None, description="facts about the assistant, oldest first"
    )
    profiling_available: bool = Field(description="False when no LLM is configured: profiles then stay empty")
    note: str = ""


class MemoryStats(BaseModel):
    """Counts per tier for one user, and server-wide LLM usage."""

    user_id: str
    short_term_pages: int
    mid_term_pages: int
    segments: int
    archived_segments: int
    indexed_pages: int = Field(description="mid-term pages of the active segments: what retrieval searches")
    pages_waiting_for_sentences: int = Field(
        0,
        description="pages stored by a bulk import whose sentence vectors the server is still filling in "
        "(they are retrievable meanwhile, ranked by their whole exchange)",
    )
    user_facts: int
    assistant_traits: int
    cache_mb: float = Field(
        description="server-wide memory of cached user state and indexes (budget: index_cache_mb)"
    )
    cached_users: int = Field(description="users whose state is cached now")
    llm_configured: bool
    llm_calls_total: int
    prompt_tokens_total: int
    completion_tokens_total: int
    llm_failures_total: int
    peak_rss_mb: float


class ListedSegmentOut(BaseModel):
    """A mid-term segment as listed (no query: no score)."""

    id: str
    summary: str
    keywords: list[str]
    page_count: int
    heat: float = Field(description="α·N_visit + β·L_interaction + γ·exp(−Δt/μ), now")
    n_visit: int
    l_interaction: int
    last_access: str
    created_at: str
    archived: bool = Field(description="archived segments are kept but out of retrieval")

    @classmethod
    def of(cls, segment: Segment, heat: float) -> ListedSegmentOut:
        return cls(
            id=segment.id,
            summary=segment.summary,
            keywords=segment.keywords,
            page_count=segment.page_count,
            heat=round(heat, 4),
            n_visit=segment.n_visit,
            l_interaction=segment.l_interaction,
            last_access=_iso(segment.last_access),
            created_at=_iso(segment.created_at),
            archived=segment.archived,
        )


class ListedFactOut(BaseModel):
    """A long-term fact with where it came from."""

    id: str
    kind: str = Field(description="user_fact (about the user) or assistant_trait (about you)")
    text: str
    created_at: str
    source_pages: list[str] = Field(
        description="pages it was learned from; forgetting all of them forgets it"
    )
    corrected_from: str = Field("", description="set when the person corrected it: what it said before")
    corrected_at: str = ""

    @classmethod
    def of(cls, fact: Fact) -> ListedFactOut:
        return cls(
            id=fact.id,
            kind=fact.kind,
            text=fact.text,
            created_at=_iso(fact.created_at),
            source_pages=fact.source_pages,
            corrected_from=fact.corrected_from,
            corrected_at=_iso(fact.corrected_at),
        )


class UpdateMemoryResult(BaseModel):
    """What the person changed: a fact's text, or a profile entry."""

    user_id: str
    fact: ListedFactOut | None = Field(None, description="the fact as it reads now")
    profile: ProfileOut | None = Field(None, description="the profile as it reads now")


class MemoryPageResult(BaseModel):
    """Where the person opens the memory page."""

    user_id: str
    address: str = Field(
        description="open in a browser on this machine: a loopback address carries a ticket that lets one "
        "browser in, once, within an hour; with bearer tokens, the page's login form"
    )


class ListMemoriesResult(BaseModel):
    """One page of what is remembered about a user, newest first."""

    user_id: str
    kind: str = Field(description="pages, segments or facts: which list below is filled")
    pages: list[PageOut] | None = None
    segments: list[ListedSegmentOut] | None = None
    facts: list[ListedFactOut] | None = None
    profile: ProfileOut | None = Field(None, description="with kind=facts: the long-term profile too")
    next_cursor: str | None = Field(
        None, description="pass as cursor to get the next page; absent when no more remain"
    )


class ForgetMemoryResult(BaseModel):
    """What forget_memory removed, and the ids it did not find for this user."""

    user_id: str
    everything: bool = Field(description="true when all of the user's memory was removed")
    pages_removed: int
    page_ids_removed: list[str] = Field(
        description="ids of the pages removed (with everything: the short-term ones)"
    )
    segments_removed: int = Field(description="segments left without pages, removed")
    segments_recomputed: int = Field(
        description="segments that lost pages: summary, keywords and embedding recomputed"
    )
    chain_summaries_recomputed: int = Field(
        description="kept pages whose dialogue-chain summary followed a forgotten page"
    )
    facts_removed: int
    fact_ids_removed: list[str] = Field(
        description="named facts, and facts learned only from forgotten pages"
    )
    fact_ids_trimmed: list[str] = Field(
        default_factory=list,
        description="facts kept, learned from other pages too: the forgotten pages leave their provenance",
    )
    profile_removed: bool
    unknown_page_ids: list[str] = Field(description="not pages of this user (nothing was done with them)")
    unknown_fact_ids: list[str] = Field(description="not facts of this user (nothing was done with them)")
    dry_run: bool = Field(False, description="true: what a forget would do; nothing was changed")

    @classmethod
    def of(cls, user_id: str, r: ForgetReport) -> ForgetMemoryResult:
        return cls(
            user_id=user_id,
            everything=r.everything,
            pages_removed=r.page_count,
            page_ids_removed=r.pages_removed,
            segments_removed=r.segment_count,
            segments_recomputed=len(r.segments_recomputed),
            chain_summaries_recomputed=len(r.chain_pages_recomputed),
            facts_removed=len(r.facts_removed),
            fact_ids_removed=r.facts_removed,
            fact_ids_trimmed=r.facts_trimmed,
            dry_run=r.dry_run,
            profile_removed=r.profile_removed,
            unknown_page_ids=r.unknown_page_ids,
            unknown_fact_ids=r.unknown_fact_ids,
        )
