"""What the user controls: listing what is remembered, and forgetting it with what was learned from it.

Forgetting cascades: a segment that lost pages gets its summary, keywords and embedding recomputed from
the pages it keeps (removed when none are left); the dialogue chain summaries that followed a forgotten
page are recomputed from the pages kept; facts whose every source page is forgotten go too. The profile's
static fields and traits carry no provenance and stay until everything is forgotten.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from memoryos_mcp.core.dates import epoch_seconds
from memoryos_mcp.core.errors import InvalidInputError
from memoryos_mcp.core.models import Fact, Page, Segment
from memoryos_mcp.core.pipeline import MemoryParams, centroid
from memoryos_mcp.core.protocols import ChainHead, Change, Embedder, LLMUsage, MemoryAnalyzer, MemoryStore
from memoryos_mcp.core.state import ArchiveCatalog, UserState, copy_segment
from memoryos_mcp.core.text import exchange_text, extract_keywords, extractive_summary, topic_text

logger = logging.getLogger(__name__)

Tier = Literal["short_term", "mid_term", "all"]
PageKey = tuple[float, int, str]  # (page date, time stored, id): newest first is descending


def page_key(page: Page) -> PageKey:
    epoch = epoch_seconds(page.timestamp)
    return (-math.inf if math.isnan(epoch) else epoch, page.added_at, page.id)


def encode_cursor(body: dict[str, object]) -> str:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> dict[str, object]:
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or body.get("k") != kind:
        raise InvalidInputError(
            "cursor is not one this server returned for this listing: pass next_cursor from the previous "
            "list_memories result unchanged, with the same kind"
        )
    return body


@dataclass
class PageListing:
    pages: list[tuple[Page, str]]  # (page, tier), newest first
    next_below: PageKey | None  # where the next listing starts; None: nothing more


@dataclass
class ForgetReport:
    """What a forget removed (ids), and the ids it did not know."""

    pages_removed: list[str] = field(default_factory=list)
    segments_removed: list[str] = field(default_factory=list)
    segments_recomputed: list[str] = field(default_factory=list)
    chain_pages_recomputed: list[str] = field(default_factory=list)
    facts_removed: list[str] = field(default_factory=list)
    facts_trimmed: list[str] = field(
        default_factory=list
    )  # kept, with the forgotten pages out of their sources
    unknown_page_ids: list[str] = field(default_factory=list)
    unknown_fact_ids: list[str] = field(default_factory=list)
    page_count: int = 0  # pages removed (with everything=True, mid-term pages are counted, not listed)
    segment_count: int = 0
    everything: bool = False
    profile_removed: bool = False
    records_removed: int = 0
    dry_run: bool = False  # what a forget would do; nothing was changed
    usage: LLMUsage = field(default_factory=LLMUsage)


class Control:
    """Listing and forgetting over a user's cached state and the store."""

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        analyzer: Callable[[], MemoryAnalyzer],
        params: MemoryParams,
        clock: Callable[[], float],
        account: Callable[[UserState], None] = lambda state: None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.analyzer = analyzer
        self.params = params
        self.clock = clock
        self.account = account  # a state grew (its archive catalog was read): the cache's budget re-checked

    # ------------------------------------------------------------------ listing

    def list_pages(
        self,
        state: UserState,
        tier: Tier,
        window: tuple[float, float] | None,
        limit: int,
        below: PageKey | None,
    ) -> PageListing:
        """Pages newest first (page date, then time stored), `limit` of them after `below`."""

        def wanted(page: Page) -> bool:
            key = page_key(page)
            if window is not None and not window[0] <= key[0] <= window[1]:
                return False
            return below is None or key < below

        with state.lock:
            stm = list(state.stm)
            indexed = (
                state.index.newest(window, below[:2] if below else None, limit)
                if tier != "short_term"
                else []
            )
        stm_ids = {p.id for p in stm}
        found: list[tuple[Page, str]] = []
        if tier != "mid_term":
            found.extend((p, "short_term") for p in stm if wanted(p))
        if tier != "short_term":
            found.extend((p, "mid_term") for p in indexed if p.id not in stm_ids and wanted(p))
            # archived pages are out of the index: their keys (one read, kept), then only the pages shown
            shown: list[str] = []
            for key in self.archive(state).keys:
                if key[2] not in stm_ids and (window is None or window[0] <= key[0] <= window[1]):
                    if below is None or key < below:
                        shown.append(key[2])
                        if len(shown) > limit:
                            break
            if shown:
                found.extend((p, "mid_term") for p in self.store.get_mtm_pages(state.user_id, shown))
        found.sort(key=lambda item: page_key(item[0]), reverse=True)
        more = len(found) > limit
        found = found[:limit]
        return PageListing(found, page_key(found[-1][0]) if more and found else None)

    def all_segments(self, state: UserState) -> list[Segment]:
        """Active segments (cached, with current visits) and archived ones, newest first."""
        with state.lock:
            active = dict(state.segments)
        archived = self.archive(state).segments.values()
        return sorted([*active.values(), *archived], key=lambda s: (s.created_at, s.id), reverse=True)

    def archive(self, state: UserState) -> ArchiveCatalog:
        """The user's archived segments and their pages' keys: cached on the state, read when not there."""
        with state.lock:
            found, seq = state.archive, state.seq
        if found is not None:
            return found
        segments = {sid: replace(s, embedding=None) for sid, s in self._archived(state.user_id).items()}
        pages = self.store.pages_of_segments(state.user_id, list(segments)) if segments else []
        days = Counter(p.timestamp[:10] for p in pages)
        catalog = ArchiveCatalog(segments, sorted((page_key(p) for p in pages), reverse=True), dict(days))
        with state.lock:
            kept = state.seq == seq  # nothing changed while it was read: keep it
            if kept:
                state.archive = catalog
        if kept:
            self.account(state)
        return catalog

    # ------------------------------------------------------------------ forgetting

    def forget(
        self,
        state: UserState,
        page_ids: Sequence[str],
        fact_ids: Sequence[str],
        before: float | None,
        writer: str,
        dry_run: bool = False,
    ) -> tuple[ForgetReport, Change | None]:
        """Remove pages and facts of `state`'s user durably, with the cascade; then bring `state` along.
        Returns the report and the change-log entry written (None when nothing was removed). `dry_run`: the
        report of what it would do (segments to recompute are named, not recomputed), nothing written."""
        uid = state.user_id
        report = ForgetReport(dry_run=dry_run)
        archived = functools.cache(lambda: self._archived(uid))  # read once, and only if needed
        stm_targets, mtm_targets = self._targets(state, page_ids, before, report)
        forgotten = stm_targets | set(mtm_targets)

        # Segments that lost pages: recomputed from what they keep, or removed.
        by_segment: dict[str, list[str]] = {}
        for page in mtm_targets.values():
            by_segment.setdefault(page.segment_id, []).append(page.id)
        kept_by_segment = {
            sid: [p for p in pages if p.id not in forgotten]
            for sid, pages in _group(self.store.pages_of_segments(uid, list(by_segment))).items()
        }
        changed_segments: list[Segment] = []
        emptied: list[Segment] = []
        for sid in by_segment:
            source = state.segments.get(sid) or archived().get(sid)
            if source is None:
                continue
            segment = copy_segment(source)
            kept = kept_by_segment.get(sid, [])
            if not kept:
                emptied.append(segment)
                continue
            if not dry_run:
                self._recompute(segment, kept, report.usage)
            changed_segments.append(segment)
        report.segments_removed = [s.id for s in emptied]
        report.segments_recomputed = [s.id for s in changed_segments]

        # Chain summaries that followed a forgotten page may quote it: recomputed from the pages kept.
        rewritten, head, head_changed = self._rechain(state, forgotten, mtm_targets, kept_by_segment)
        report.chain_pages_recomputed = [p.id for p in rewritten]

        # Facts: named ones, and those learned only from forgotten pages; provenance trimmed on the rest.
        facts_removed: list[Fact] = []
        facts_trimmed: list[Fact] = []
        named = set(fact_ids)
        known_facts = {f.id for kind in state.facts.values() for f in kind}
        report.unknown_fact_ids = [fid for fid in dict.fromkeys(fact_ids) if fid not in known_facts]
        for kind in state.facts.values():
            for fact in kind:
                left = [p for p in fact.source_pages if p not in forgotten]
                if fact.id in named or (fact.source_pages and not left):
                    facts_removed.append(fact)
                elif len(left) < len(fact.source_pages):
                    facts_trimmed.append(replace(fact, source_pages=left))
        report.facts_removed = [f.id for f in facts_removed]
        report.facts_trimmed = [f.id for f in facts_trimmed]
        report.pages_removed = sorted(forgotten)
        report.page_count, report.segment_count = len(forgotten), len(emptied)
        if dry_run or (not forgotten and not facts_removed):
            return report, None

        # Writes: what stays first, then the deletions, then one change-log entry.
        self.store.put_segments(changed_segments, new=False)
        self.store.put_mtm_pages(rewritten)
        if head_changed:
            if head is None:
                self.store.delete_chain_head(uid)
            else:
                self.store.put_chain_head(head)
        self.store.add_facts(facts_trimmed)
        self.store.delete_stm_pages(uid, sorted(stm_targets))
        self.store.delete_mid_term(uid, sorted(set(mtm_targets) | {s.id for s in emptied}))
        self.store.delete_facts(uid, [f.id for f in facts_removed])
        removed_archived = sum(1 for s in emptied if s.archived)
        change = Change(
            seq=state.seq + 1,
            pages_removed=sorted(set(mtm_targets)) + [p.id for p in rewritten],
            pages_added=[p.id for p in rewritten],  # re-read by replicas: their chain summaries changed
            segments_removed=[s.id for s in emptied],
            epoch=state.epoch,
            mid_term_pages=max(0, state.mid_term_pages - len(mtm_targets)),
            archived_segments=max(0, state.archived_segments - removed_archived),
        )
        self.store.append_change(uid, change, writer)
        if change.seq != state.seq + 1:  # another writer's entry came between: the caller reloads the state
            return report, change

        with state.lock:
            state.stm = [p for p in state.stm if p.id not in stm_targets]
            state.in_both_tiers -= forgotten
            for segment in changed_segments:
                if segment.id in state.segments:
                    live = state.segments[segment.id]
                    segment.n_visit, segment.last_access = live.n_visit, live.last_access
                    state.segments[segment.id] = segment
            for segment in emptied:
                state.segments.pop(segment.id, None)
            state.index.remove(set(mtm_targets) | {p.id for p in rewritten})
            state.index.remove_segments([s.id for s in emptied])
            state.index.add([p for p in rewritten if p.segment_id in state.segments])
            if head_changed:
                state.chain_head = head
            gone = {f.id for f in facts_removed}
            trimmed = {f.id: f for f in facts_trimmed}
            state.facts = {
                kind: [trimmed.get(f.id, f) for f in items if f.id not in gone]
                for kind, items in state.facts.items()
            }
            state.mid_term_pages, state.archived_segments = change.mid_term_pages, change.archived_segments
            state.archive = None  # archived pages or segments may be gone
            state.seq = change.seq
            state.measure()
        return report, change

    def _archived(self, user_id: str) -> dict[str, Segment]:
        """Archived segments by id (they are out of the cached state: a store read)."""
        return {s.id: s for s in self.store.list_segments(user_id, include_archived=True) if s.archived}

    def _targets(
        self,
        state: UserState,
        page_ids: Sequence[str],
        before: float | None,
        report: ForgetReport,
    ) -> tuple[set[str], dict[str, Page]]:
        """The short-term ids and the mid-term pages to forget. Ids of other users are unknown here."""
        uid = state.user_id
        stm_ids = {p.id for p in state.stm}
        stm_targets: set[str] = set()
        mtm_targets: dict[str, Page] = {}
        elsewhere: list[str] = []
        for pid in dict.fromkeys(page_ids):
            indexed = state.index.get(pid)
            if pid in stm_ids:
                stm_targets.add(pid)
            elif indexed is not None:
                mtm_targets[pid] = indexed
            else:
                elsewhere.append(pid)
        if before is not None:
            stm_targets |= {p.id for p in state.stm if epoch_seconds(p.timestamp) < before}
            for pid in state.index.ids_dated_before(before):
                mtm_targets.setdefault(pid, state.index.get(pid))  # type: ignore[arg-type]
        if before is not None:  # archived pages by their keys, then only those dated earlier are read
            dated = [k[2] for k in self.archive(state).keys if -math.inf < k[0] < before]
            for page in self.store.get_mtm_pages(uid, dated):
                mtm_targets.setdefault(page.id, page)
        if elsewhere:
            found = self.store.find_pages(uid, elsewhere)  # only this user's pages are found
            for page in self.store.get_mtm_pages(uid, [p for p, tier in found.items() if tier == "mid_term"]):
                mtm_targets.setdefault(page.id, page)
            stm_targets |= {p for p, tier in found.items() if tier == "short_term"}
            report.unknown_page_ids = [p for p in elsewhere if p not in found]
        # A page an interrupted move left in both tiers goes from both.
        both = sorted(stm_targets & state.in_both_tiers)
        for page in self.store.get_mtm_pages(uid, both):
            mtm_targets.setdefault(page.id, page)
        return stm_targets, mtm_targets

    def _recompute(self, segment: Segment, kept: Sequence[Page], usage: LLMUsage) -> None:
        """Summary, keywords and e_s from the pages a segment keeps (nothing of the forgotten ones survives)."""
        texts = [exchange_text(p) for p in kept]
        summary = extractive_summary(texts, max_sentences=4, max_chars=500)
        keywords: Counter[str] = Counter(word for text in texts for word in extract_keywords(text, limit=8))
        segment.summary, segment.keyword_counts, segment.page_count = summary, dict(keywords), len(kept)
        segment.add_keywords([])  # clears the cached K_segment
        # L_interaction counts the pages added since the last promotion (those it has not analysed): forgotten
        # pages no longer heat the segment towards the next one
        segment.l_interaction = min(segment.l_interaction, sum(1 for p in kept if not p.analyzed))
        analyzer = self.analyzer()
        if analyzer.writes_summaries:
            try:  # the LLM rewrites the summary from the kept pages' extract (never from the old summary)
                blank = replace(segment, summary="", keyword_counts={})
                ((written, extra),) = analyzer.merge_segments([(blank, [summary])], usage)
                if written.strip():
                    segment.summary = written.strip()
                segment.add_keywords(extra)
            except Exception as exc:  # the local summary stands
                usage.failures += 1
                logger.warning("segment %s recomputed without the LLM: %s", segment.id, exc)
            segment.embedding = self.embedder.embed([topic_text(segment.summary, segment.keywords)])[0]
        else:
            segment.embedding = centroid([(p.embedding, 1.0) for p in kept if p.embedding is not None])

    def _rechain(
        self,
        state: UserState,
        forgotten: set[str],
        mtm_targets: dict[str, Page],
        kept_by_segment: dict[str, list[Page]],
    ) -> tuple[list[Page], ChainHead | None, bool]:
        """Kept pages whose chain summary followed a forgotten page, with summaries recomputed (and their
        embeddings); the chain head as it must be now, and whether it changed."""
        chains: dict[str, int] = {}  # chain id -> time stored of its first forgotten page
        for page in mtm_targets.values():
            if page.chain_id:
                chains[page.chain_id] = min(chains.get(page.chain_id, page.added_at), page.added_at)
        head = state.chain_head
        if not chains:
            return [], head, False
        members: dict[str, Page] = {}
        with state.lock:
            for page in state.index.pages():
                if page.chain_id in chains and page.id not in forgotten:
                    members[page.id] = page
        for pages in kept_by_segment.values():  # archived segments' pages are not in the index
            for page in pages:
                if page.chain_id in chains:
                    members.setdefault(page.id, page)
        rewritten: list[Page] = []
        last_of_chain: dict[str, Page] = {}
        for chain_id, first_gone in chains.items():
            pages = sorted(
                (p for p in members.values() if p.chain_id == chain_id), key=lambda p: (p.added_at, p.id)
            )
            before = [p for p in pages if p.added_at < first_gone]
            running = before[-1].chain_summary if before else ""
            for page in pages:
                if page.added_at < first_gone:
                    continue
                running = extractive_summary(
                    [running, exchange_text(page)] if running else [exchange_text(page)], max_sentences=3
                )
                if running != page.chain_summary:
                    rewritten.append(replace(page, chain_summary=running))
            if pages:
                last_of_chain[chain_id] = next((r for r in rewritten if r.id == pages[-1].id), pages[-1])
        # The index keeps no vectors on its page records: the rewritten pages are read back with theirs.
        with_vectors = {p.id: p for p in self.store.get_mtm_pages(state.user_id, [p.id for p in rewritten])}
        rewritten = [
            replace(p, embedding=with_vectors[p.id].embedding, sentences=with_vectors[p.id].sentences)
            for p in rewritten
            if p.id in with_vectors
        ]
        if head is None or head.chain_id not in chains:
            return rewritten, head, False
        last = last_of_chain.get(head.chain_id)
        if last is None:
            return rewritten, None, True  # the whole chain is forgotten: the next page starts a new one
        vector = with_vectors[last.id].embedding if last.id in with_vectors else None
        if vector is None:
            vector = next(iter(self.store.get_mtm_pages(state.user_id, [last.id])), last).embedding
        new_head = ChainHead(
            user_id=state.user_id,
            chain_id=head.chain_id,
            chain_summary=last.chain_summary,
            last_page_id=last.id,
            last_page_text=exchange_text(last),
            embedding=vector if vector is not None else head.embedding,
        )
        return rewritten, new_head, True


def _group(pages: Sequence[Page]) -> dict[str, list[Page]]:
    groups: dict[str, list[Page]] = {}
    for page in pages:
        groups.setdefault(page.segment_id, []).append(page)
    return groups
