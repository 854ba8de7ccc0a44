"""Promotion MTM→LPM: hot segments (heat ≥ τ) are analysed into the user's profile, facts and assistant traits."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from memoryos_mcp.core.models import Fact, FactKind, Segment, TraitLevel, UserProfile
from memoryos_mcp.core.pipeline import AddResult, MemoryParams
from memoryos_mcp.core.protocols import Embedder, MemoryAnalyzer, PersonaUpdate
from memoryos_mcp.core.state import Draft

logger = logging.getLogger(__name__)


def fact_id(user_id: str, kind: FactKind, text: str) -> str:
    """Deterministic, so re-adding the same fact after a retry is an idempotent upsert."""
    digest = hashlib.sha1(f"{user_id}\x1f{kind}\x1f{' '.join(text.lower().split())}".encode()).hexdigest()
    return f"fact_{digest[:20]}"


def profile_text(profile: UserProfile) -> str:
    return "\n".join(profile.lines()) or "(empty profile)"


class Promotion:
    """Turns the unanalysed pages of hot segments into long-term persona memory."""

    def __init__(
        self,
        embedder: Embedder,
        analyzer: MemoryAnalyzer,
        params: MemoryParams,
        clock: Callable[[], float],
    ) -> None:
        self.embedder = embedder
        self.analyzer = analyzer
        self.params = params
        self.clock = clock

    def promote_hot_segments(self, draft: Draft, result: AddResult, deadline: float | None = None) -> None:
        """Every active segment with heat ≥ τ and new pages has them turned into profile, facts and traits."""
        now = self.clock()
        hot = sorted(
            (
                s
                for s in draft.segments.values()
                if s.l_interaction > 0 and self.params.heat(s, now) >= self.params.tau
            ),
            key=lambda s: -self.params.heat(s, now),
        )
        if not hot:
            return
        if not self.analyzer.can_extract_persona:
            result.promotion_pending.extend(s.id for s in hot)
            return
        for i, segment in enumerate(hot):
            if deadline is not None and time.monotonic() >= deadline:
                result.promotion_pending.extend(s.id for s in hot[i:])
                result.notes.append("time budget reached; remaining promotions run on a later call")
                return
            if not self._promote(draft, segment, result):
                result.promotion_pending.extend(s.id for s in hot[i:])
                return
            result.segments_promoted.append(segment.id)

    def _promote(self, draft: Draft, segment: Segment, result: AddResult) -> bool:
        pages = draft.unanalysed_pages(segment.id)
        if pages:
            profile = draft.profile or UserProfile(user_id=draft.user_id)
            try:
                update = self.analyzer.extract_persona(profile, pages, result.usage)
            except Exception as exc:  # the adapter logs; the segment stays hot and is retried later
                result.usage.failures += 1
                result.notes.append(f"promotion of {segment.id} deferred: {exc}")
                return False
            self._merge_persona(draft, profile, update, segment, [p.id for p in pages], result)
            draft.analyzed.update(p.id for p in pages)
        # L_interaction counts pages since the last promotion (paper), so it restarts here.
        segment.l_interaction = 0
        draft.touch(segment.id)
        return True

    def _merge_persona(
        self,
        draft: Draft,
        profile: UserProfile,
        update: PersonaUpdate,
        segment: Segment,
        sources: list[str],
        result: AddResult,
    ) -> None:
        changed = False
        for key, value in update.static.items():
            if key.strip() in profile.set_by_person:  # the person's word on it stands
                continue
            if key.strip() and value.strip() and profile.static.get(key) != value.strip():
                profile.static[key.strip()] = value.strip()
                changed = True
        for group, dims in update.traits.items():
            for dim, (level, evidence) in dims.items():
                if level in ("High", "Medium", "Low") and dim.strip():
                    profile.traits.setdefault(group, {})[dim.strip()] = TraitLevel(
                        level=level, evidence=evidence
                    )
                    changed = True
        # An empty or degenerate answer never overwrites a good profile: only non-empty values were applied.
        if changed:
            profile.updated_at = self.clock()
            draft.profile = profile
            draft.profile_embedding = self.embedder.embed([profile_text(profile)])[0]
        self._add_facts(draft, segment, "user_fact", update.user_facts, sources, result)
        self._add_facts(draft, segment, "assistant_trait", update.assistant_traits, sources, result)

    def _add_facts(
        self,
        draft: Draft,
        segment: Segment,
        kind: FactKind,
        texts: Sequence[str],
        sources: list[str],
        result: AddResult,
    ) -> None:
        texts = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
        if not texts:
            return
        existing = draft.facts[kind]
        corrected = [f for f in existing if f.corrected_from and f.embedding is not None]
        # What the person corrected also matches the text it replaced: learning that again only adds sources.
        vectors = self.embedder.embed(texts + [f.corrected_from for f in corrected])
        embeddings, before = vectors[: len(texts)], vectors[len(texts) :]
        holders = [f for f in existing if f.embedding is not None] + corrected
        kept = [np.asarray(f.embedding, dtype=np.float32) for f in holders[: len(holders) - len(corrected)]]
        kept += [np.asarray(v, dtype=np.float32) for v in before]
        now = self.clock()
        new: list[Fact] = []
        supported: dict[str, Fact] = {}  # existing facts these pages also support: provenance grows
        for offset, (text, embedding) in enumerate(zip(texts, embeddings, strict=True)):
            vector = np.asarray(embedding, dtype=np.float32)
            if kept:
                similarity = [float(v @ vector) for v in kept]
                best = int(np.argmax(similarity))
                if similarity[best] >= self.params.fact_duplicate_cosine:
                    twin = holders[best]
                    added = [p for p in sources if p not in twin.source_pages]
                    if added:
                        # A copy: the draft's lists share Fact objects with the live state until commit.
                        grown = dataclasses.replace(twin, source_pages=twin.source_pages + added)
                        holders[:] = [grown if f is twin else f for f in holders]  # a corrected one twice
                        for group in (existing, new):
                            group[:] = [grown if f is twin else f for f in group]
                        if grown.id not in {f.id for f in new}:
                            supported[grown.id] = grown
                    continue
            kept.append(vector)
            new.append(
                Fact(
                    id=fact_id(draft.user_id, kind, text),
                    user_id=draft.user_id,
                    kind=kind,
                    text=text,
                    created_at=now + offset * 1e-6,  # keeps FIFO order inside one batch
                    source_segment=segment.id,
                    source_pages=list(sources),
                    embedding=vector,
                )
            )
            holders.append(new[-1])
        if supported:  # rewritten with the longer provenance (the draft's copies are its own)
            draft.facts_added = [f for f in draft.facts_added if f.id not in supported] + list(
                supported.values()
            )
        if not new:
            return
        draft.facts_added.extend(new)
        result.facts_added += len(new)
        everything = sorted(existing + new, key=lambda f: f.created_at)
        overflow = len(everything) - self.params.lpm_capacity
        dropped = everything[:overflow] if overflow > 0 else []
        draft.facts[kind] = everything[len(dropped) :]
        if dropped:
            gone = {f.id for f in dropped}
            fresh = {f.id for f in new}
            draft.facts_added = [f for f in draft.facts_added if f.id not in gone]
            draft.facts_deleted.extend(f.id for f in dropped if f.id not in fresh)
            result.facts_dropped.extend(f.text for f in dropped)
            logger.info("%s list of %s over capacity: dropped %d oldest", kind, draft.user_id, len(dropped))
