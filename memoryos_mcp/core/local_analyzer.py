"""The no-LLM analyzer: chains by embedding similarity, extractive summaries, local keywords.

Profile and trait extraction need a language model, so this analyzer reports it cannot do them
instead of inventing a persona.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memoryos_mcp.core.models import Page, Segment, UserProfile
from memoryos_mcp.core.protocols import (
    BatchAnalysis,
    ChainHead,
    LLMUsage,
    PersonaUpdate,
    TopicProposal,
)
from memoryos_mcp.core.scoring import cosine
from memoryos_mcp.core.text import exchange_text, extract_keywords, extractive_summary


class LocalAnalyzer:
    """Implements MemoryAnalyzer without a language model."""

    def __init__(self, chain_threshold: float = 0.2, max_topics: int = 3) -> None:
        self.chain_threshold = chain_threshold
        self.max_topics = max_topics

    @property
    def can_extract_persona(self) -> bool:
        return False

    @property
    def writes_summaries(self) -> bool:
        return False

    def analyze_batch(self, pages: Sequence[Page], head: ChainHead | None, usage: LLMUsage) -> BatchAnalysis:
        continuous: list[bool] = []
        summaries: list[str] = []
        runs: list[list[int]] = []
        prev_embedding = head.embedding if head else None
        running = head.chain_summary if head else ""
        for i, page in enumerate(pages):
            assert page.embedding is not None, "pages reach the analyzer with their embeddings"
            linked = (
                prev_embedding is not None and cosine(prev_embedding, page.embedding) >= self.chain_threshold
            )
            continuous.append(linked)
            text = exchange_text(page)
            running = extractive_summary([running, text] if linked else [text], max_sentences=3)
            summaries.append(running)
            if linked and runs:
                runs[-1].append(i)
            else:
                runs.append([i])
            prev_embedding = page.embedding
        # A batch is small; if its chains are many, fold the tail into the last topic rather than
        # exceed the "at most a few topics" the paper allows.
        while len(runs) > self.max_topics:
            tail = runs.pop()
            runs[-1].extend(tail)
        topics = [self._topic([pages[i] for i in run], run) for run in runs]
        return BatchAnalysis(continuous=continuous, chain_summaries=summaries, topics=topics)

    def _topic(self, pages: Sequence[Page], indexes: list[int]) -> TopicProposal:
        texts = [exchange_text(p) for p in pages]
        total = np.sum([np.asarray(p.embedding, dtype=np.float64) for p in pages], axis=0)
        norm = float(np.linalg.norm(total))
        return TopicProposal(
            summary=extractive_summary(texts, max_sentences=3),
            keywords=extract_keywords(" ".join(texts), limit=8),
            page_indexes=indexes,
            # The summary is made of these pages' sentences: their centroid stands for it, with no model call.
            embedding=(total / norm if norm else total).astype(np.float32),
        )

    def merge_segments(
        self, merges: Sequence[tuple[Segment, Sequence[str]]], usage: LLMUsage
    ) -> list[tuple[str, list[str]]]:
        return [
            (extractive_summary([segment.summary, *summaries], max_sentences=4, max_chars=500), [])
            for segment, summaries in merges
        ]

    def extract_persona(self, profile: UserProfile, pages: Sequence[Page], usage: LLMUsage) -> PersonaUpdate:
        raise NotImplementedError(
            "profile and trait extraction needs an LLM; configure llm_base_url or an API key"
        )
