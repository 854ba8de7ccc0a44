"""MemoryService: the facade every entry point uses — validation, per-user locking, error mapping."""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from memoryos_mcp.core.control import decode_cursor, encode_cursor
from memoryos_mcp.core.errors import InvalidInputError, MemoryOSError, StorageError
from memoryos_mcp.core.memory import MemoryOS
from memoryos_mcp.core.models import Page
from memoryos_mcp.core.protocols import Embedder, IndexSnapshots, LLMUsage, MemoryAnalyzer, MemoryStore
from memoryos_mcp.index.page_index import PageIndexes
from memoryos_mcp.service import validation
from memoryos_mcp.service.access import resolve_user
from memoryos_mcp.service.foreground import Foreground
from memoryos_mcp.service.schemas import (
    AddMemoryResult,
    FactOut,
    ForgetMemoryResult,
    ListedFactOut,
    ListedSegmentOut,
    ListMemoriesResult,
    MemoryStats,
    PageOut,
    ProfileOut,
    RetrieveMemoryResult,
    UpdateMemoryResult,
    UserProfileResult,
)
from memoryos_mcp.service.settings import Settings
from memoryos_mcp.service.wiring import make_analyzer, make_snapshots, open_store, params_from

logger = logging.getLogger(__name__)
T = TypeVar("T")

NO_LLM_NOTE = (
    "Profile, user knowledge and assistant traits are extracted by a language model, and none is configured. "
    "Set MEMORYOS_LLM_BASE_URL / MEMORYOS_LLM_API_KEY (or OPENAI_API_KEY) to enable profiling; "
    "storing and retrieving memories works without one."
)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # macOS reports bytes, Linux KiB


class MemoryService:
    """Validated, serialised-per-user access to one MemoryOS instance."""

    def __init__(
        self,
        settings: Settings,
        store: MemoryStore,
        embedder: Embedder,
        analyzer: MemoryAnalyzer,
        snapshots: IndexSnapshots | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.memory = MemoryOS(
            store,
            embedder,
            analyzer,
            params_from(settings),
            cache_budget_bytes=settings.index_cache_mb * 1024 * 1024,
            snapshots=snapshots,
            indexes=PageIndexes(),
        )
        self.usage_total = LLMUsage()
        # Per user: adds are serialised with adds, retrievals with retrievals; an add and a retrieval may
        # overlap, so a retrieval never waits for an add's LLM work (the store keeps their writes apart).
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.foreground = Foreground()  # calls under way: background work (backfill.py) waits for a pause

    @classmethod
    def create(cls, settings: Settings, *, embedder: Embedder | None = None) -> MemoryService:
        """Build the real adapters from settings (Chroma, the embedding model, a language model or none)."""
        store = open_store(settings)
        if embedder is None:
            from memoryos_mcp.adapters.embedder import make_embedder

            embedder = make_embedder(
                settings.embedding_model, settings.embedding_device, settings.embedding_backend
            )
        return cls(settings, store, embedder, make_analyzer(settings), make_snapshots(settings))

    @classmethod
    def for_serving(cls, settings: Settings) -> MemoryService:
        """`create`, and the int8 screen's kernel chosen now (a server's start-up runs in the background):
        once per process, checked against exact products (integer kernels differ between CPUs), ~0.5 s; with
        -v the log names it and why. Commands that never rank (export, import, list) leave it to first use."""
        service = cls.create(settings)
        from memoryos_mcp.index.screen import dot_kernel

        dot_kernel()
        return service

    def _lock(self, user_id: str, kind: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((user_id, kind), threading.Lock())

    def user(self, requested: str | None) -> str:
        """The user a call acts for: the one it names (valid, and among allowed_users when those are set), or
        the default user. The one place this is decided (service/access.resolve_user); over HTTP the contract
        resolves the token's users first, the same way."""
        allowed = self.settings.allowed_users
        return resolve_user(
            requested,
            default=self.settings.user_id,
            grant=None,
            allowed=None if allowed is None else frozenset(allowed),
        )

    def run(
        self, user_id: str, what: str, fn: Callable[[], T], lock: str | None = None, foreground: bool = True
    ) -> T:
        """One call of the service for a user: `fn` run under the user's lock of that kind ("add": writes,
        "retrieve": reads that rank; None: none), counted as a call under way unless `foreground` is False
        (background work waits for those), any failure of the store raised as one StorageError saying `what`."""
        if foreground:
            self.foreground.enter()
        try:
            with self._lock(user_id, lock) if lock else contextlib.nullcontext():
                try:
                    return fn()
                except MemoryOSError:
                    raise
                except Exception as exc:
                    # Chroma and friends raise many types; the caller needs one actionable message.
                    logger.exception("%s failed for user %s", what, user_id)
                    raise StorageError(f"{what} failed in the memory store: {exc}") from exc
        finally:
            if foreground:
                self.foreground.leave()

    # ------------------------------------------------------------------ operations

    def add_memory(
        self,
        user_input: str | None,
        agent_response: str | None,
        user_id: str | None = None,
        timestamp: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AddMemoryResult:
        s = self.settings
        uid = self.user(user_id)
        ui, ar = validation.exchange(user_input, agent_response, s.max_text_chars)
        ts = validation.timestamp(timestamp)
        meta = validation.metadata(
            metadata, max_keys=s.max_metadata_keys, max_value_chars=s.max_metadata_value_chars
        )
        key = validation.idempotency_key(idempotency_key)
        deadline = time.monotonic() + s.add_time_budget_s
        result = self.run(
            uid,
            "add_memory",
            lambda: self.memory.add_page(uid, ui, ar, ts, meta, deadline, idempotency_key=key),
            lock="add",
        )
        self.count_usage(result.usage)
        return AddMemoryResult.of(result)

    def count_usage(self, usage: LLMUsage) -> None:
        """Add a write's LLM calls and tokens to the server's totals (memory_stats)."""
        with self._locks_guard:  # writes of different users finish in parallel threads
            self.usage_total.add(usage)

    def put_sentences(self, user_id: str, pages: Sequence[Page], foreground: bool = True) -> int:
        """Store sentence vectors embedded after their pages (backfill.py); how many pages were written."""
        return self.run(
            user_id,
            "storing sentence vectors",
            lambda: self.memory.put_sentences(user_id, pages),
            lock="add",
            foreground=foreground,
        )

    def retrieve_memory(
        self,
        query: str | None,
        user_id: str | None = None,
        top_k: int | None = None,
        top_m: int | None = None,
        include_short_term: bool = True,
        include_archived: bool = False,
        since: str | None = None,
        until: str | None = None,
        max_tokens: int | None = None,
        explain: bool = False,
        record_visits: bool = True,
    ) -> RetrieveMemoryResult:
        """Memory relevant to a query (the paper's retrieval). `explain`: each mid-term page with the parts of
        its score; `record_visits=False`: looking, not recalling (a person browsing): no segment is heated."""
        s = self.settings
        uid = self.user(user_id)
        q = validation.query(query, s.max_text_chars)
        k = validation.positive(top_k, "top_k", 100)
        m = validation.positive(top_m, "top_m", 50)
        window = validation.time_range(since, until)
        budget = validation.max_tokens(max_tokens if max_tokens is not None else s.retrieve_max_tokens)
        retrieval = self.run(
            uid,
            "retrieve_memory",
            lambda: self.memory.retrieve(
                uid,
                q,
                top_k=k,
                top_m=m,
                include_short_term=include_short_term,
                include_archived=include_archived,
                window=window,
                max_tokens=budget,
                record_visits=record_visits,
                explain=explain,
            ),
            lock="retrieve",
        )
        return RetrieveMemoryResult.of(uid, retrieval, budget)

    def get_user_profile(
        self,
        user_id: str | None = None,
        include_knowledge: bool = True,
        include_assistant_traits: bool = True,
    ) -> UserProfileResult:
        uid = self.user(user_id)

        def read() -> UserProfileResult:
            state = self.memory.state(uid)
            profile = state.profile
            knowledge = state.facts.get("user_fact", []) if include_knowledge else None
            traits = state.facts.get("assistant_trait", []) if include_assistant_traits else None
            available = self.memory.analyzer.can_extract_persona
            return UserProfileResult(
                user_id=uid,
                profile=ProfileOut.of(profile),
                user_knowledge=None if knowledge is None else [FactOut.of(f) for f in knowledge],
                assistant_traits=None if traits is None else [FactOut.of(f) for f in traits],
                profiling_available=available,
                note="" if available else NO_LLM_NOTE,
            )

        return self.run(uid, "get_user_profile", read)

    def list_memories(
        self,
        user_id: str | None = None,
        kind: str | None = None,
        tier: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        segment_id: str | None = None,
        page_ids: Sequence[str] | None = None,
    ) -> ListMemoriesResult:
        """Browse what is remembered, newest first, in pages of `limit` (cursor: the previous next_cursor);
        `segment_id`: the pages of one segment; `page_ids`: these pages (e.g. the sources of a fact)."""
        uid = self.user(user_id)
        what = validation.choice(kind, "kind", ("pages", "segments", "facts"), "pages")
        if page_ids is not None:
            if what != "pages" or segment_id is not None or cursor is not None:
                raise InvalidInputError("page_ids lists those pages: use it with kind=pages, alone")
            ids = validation.id_list(page_ids, "page_ids")
            found = self.run(uid, "list_memories", lambda: self.memory.pages_by_id(uid, ids), lock="retrieve")
            return ListMemoriesResult(user_id=uid, kind="pages", pages=[PageOut.of(p, t) for p, t in found])
        if segment_id is not None:
            if what != "pages":
                raise InvalidInputError("segment_id lists a segment's pages: use it with kind=pages")
            return self._segment_listing(
                uid, segment_id, validation.positive(limit, "limit", 200) or 50, cursor
            )
        level = validation.choice(tier, "tier", ("short_term", "mid_term", "all"), "all")
        window = validation.time_range(since, until)
        n = validation.positive(limit, "limit", 200) or 50
        body = decode_cursor(cursor, what) if cursor else None
        result = ListMemoriesResult(user_id=uid, kind=what)
        if what == "pages":
            below = None
            if body is not None:
                try:
                    below = (
                        -math.inf if body["e"] is None else float(body["e"]),
                        int(body["a"]),
                        str(body["i"]),
                    )  # type: ignore[arg-type]
                except (KeyError, TypeError, ValueError):
                    raise InvalidInputError(
                        "cursor is damaged: pass next_cursor from the previous result unchanged"
                    ) from None
            listing = self.run(
                uid,
                "list_memories",
                lambda: self.memory.list_pages(uid, level, window, n, below),
                lock="retrieve",  # type: ignore[arg-type]
            )
            result.pages = [PageOut.of(p, tier) for p, tier in listing.pages]
            if listing.next_below is not None:
                e, a, i = listing.next_below
                result.next_cursor = encode_cursor(
                    {"k": "pages", "e": None if e == -math.inf else e, "a": a, "i": i}
                )
            return result
        offset = int(body.get("o", 0)) if body is not None and isinstance(body.get("o"), int) else 0
        now = time.time()
        if what == "segments":
            segments = self.run(uid, "list_memories", lambda: self.memory.all_segments(uid))
            if window is not None:
                segments = [x for x in segments if window[0] <= x.created_at <= window[1]]
            chosen = segments[offset : offset + n]
            result.segments = [ListedSegmentOut.of(x, self.memory.params.heat(x, now)) for x in chosen]
            more = offset + n < len(segments)
        else:
            state = self.run(uid, "list_memories", lambda: self.memory.state(uid))
            facts = sorted(
                (f for items in state.facts.values() for f in items),
                key=lambda f: (f.created_at, f.id),
                reverse=True,
            )
            if window is not None:
                facts = [f for f in facts if window[0] <= f.created_at <= window[1]]
            result.facts = [ListedFactOut.of(f) for f in facts[offset : offset + n]]
            result.profile = ProfileOut.of(state.profile)
            more = offset + n < len(facts)
        if more:
            result.next_cursor = encode_cursor({"k": what, "o": offset + n})
        return result

    def _segment_listing(self, uid: str, segment_id: str, n: int, cursor: str | None) -> ListMemoriesResult:
        body = decode_cursor(cursor, "segment") if cursor else None
        offset = int(body.get("o", 0)) if body is not None and isinstance(body.get("o"), int) else 0
        pages = self.run(
            uid, "list_memories", lambda: self.memory.segment_pages(uid, segment_id), lock="retrieve"
        )
        if not pages and segment_id not in {s.id for s in self.memory.all_segments(uid)}:
            raise InvalidInputError(
                f"user {uid!r} has no segment {segment_id!r}; list_memories with kind=segments shows them"
            )
        newest = pages[::-1]
        result = ListMemoriesResult(
            user_id=uid, kind="pages", pages=[PageOut.of(p, "mid_term") for p in newest[offset : offset + n]]
        )
        if offset + n < len(newest):
            result.next_cursor = encode_cursor({"k": "segment", "o": offset + n})
        return result

    def timeline(self, user_id: str | None = None) -> dict[str, int]:
        """Pages per day, every tier (archived segments too): the memory page's picture of time."""
        uid = self.user(user_id)
        return self.run(uid, "timeline", lambda: self.memory.day_counts(uid))

    def forget_memory(
        self,
        user_id: str | None = None,
        page_ids: Sequence[str] | None = None,
        fact_ids: Sequence[str] | None = None,
        before: str | None = None,
        everything: bool = False,
        confirm: str | None = None,
        dry_run: bool = False,
    ) -> ForgetMemoryResult:
        """Forget pages and facts for good, with what was learned only from them; `dry_run`: say what would go
        (the preview a person confirms), changing nothing."""
        uid = self.user(user_id)
        pages = validation.id_list(page_ids, "page_ids")
        facts = validation.id_list(fact_ids, "fact_ids")
        if everything:
            if pages or facts or before:
                raise InvalidInputError(
                    "all=true forgets everything of the user: do not combine it with page_ids, fact_ids or before"
                )
            if confirm != uid and not dry_run:
                raise InvalidInputError(
                    f"forgetting all memory of user {uid!r} cannot be undone: pass confirm={uid!r} (the user_id "
                    "itself) together with all=true"
                )
            report = self.run(uid, "forget_memory", lambda: self.memory.forget_all(uid, dry_run), lock="add")
            return ForgetMemoryResult.of(uid, report)
        moment = validation.moment(before, "before") if before is not None else None
        if not pages and not facts and moment is None:
            raise InvalidInputError(
                "forget_memory needs something to forget: page_ids, fact_ids, before (a date), or all=true "
                "with confirm=<user_id>"
            )
        report = self.run(
            uid, "forget_memory", lambda: self.memory.forget(uid, pages, facts, moment, dry_run), lock="add"
        )
        self.count_usage(report.usage)
        return ForgetMemoryResult.of(uid, report)

    def update_memory(
        self,
        user_id: str | None = None,
        fact_id: str | None = None,
        text: str | None = None,
        profile_key: str | None = None,
        profile_value: str | None = None,
    ) -> UpdateMemoryResult:
        """The person's correction: a fact's text (fact_id + text; its sources kept, marked as the person's),
        or one static profile entry (profile_key, with profile_value; none removes it). What the person set is
        never overwritten by what is learned later."""
        uid = self.user(user_id)
        if (fact_id is None) == (profile_key is None):
            raise InvalidInputError(
                "update_memory changes one thing: fact_id with text (a fact's new text), or profile_key with "
                "profile_value (a profile entry; leave profile_value out to remove it)"
            )
        if fact_id is not None:
            new_text = validation.text(text, "text", self.settings.max_text_chars).strip()
            if not new_text:
                raise InvalidInputError(
                    "text must say what the fact is now (to remove it: forget_memory fact_ids)"
                )
            fid = validation.id_list([fact_id], "fact_id")[0]
            fact = self.run(
                uid, "update_memory", lambda: self.memory.correct_fact(uid, fid, new_text), lock="add"
            )
            return UpdateMemoryResult(user_id=uid, fact=ListedFactOut.of(fact))
        key = validation.profile_key(profile_key)
        value = (
            None if profile_value is None else validation.text(profile_value, "profile_value", 1000).strip()
        )
        profile = self.run(
            uid, "update_memory", lambda: self.memory.set_profile_entry(uid, key, value or None), lock="add"
        )
        return UpdateMemoryResult(user_id=uid, profile=ProfileOut.of(profile))

    def stats(self, user_id: str | None = None) -> MemoryStats:
        uid = self.user(user_id)
        state = self.run(uid, "stats", lambda: self.memory.state(uid))
        u = self.usage_total
        return MemoryStats(
            user_id=uid,
            short_term_pages=len(state.stm),
            mid_term_pages=state.mid_term_pages,
            segments=len(state.segments),
            archived_segments=state.archived_segments,
            indexed_pages=len(state.index),
            pages_waiting_for_sentences=self.run(
                uid, "stats", lambda: self.store.count_waiting_for_sentences(uid)
            ),
            user_facts=len(state.facts.get("user_fact", [])),
            assistant_traits=len(state.facts.get("assistant_trait", [])),
            cache_mb=round(self.memory.states.nbytes / (1024 * 1024), 1),
            cached_users=len(self.memory.states.cached_users()),
            llm_configured=self.memory.analyzer.can_extract_persona,
            llm_calls_total=u.calls,
            prompt_tokens_total=u.prompt_tokens,
            completion_tokens_total=u.completion_tokens,
            llm_failures_total=u.failures,
            peak_rss_mb=round(peak_rss_mb(), 1),
        )
